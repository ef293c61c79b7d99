//! A deterministic script of storage operations and the state it should
//! leave, shared by the crash worker and the tests that check after it.

use std::collections::BTreeMap;

/// One operation of the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Upload `name` at `version` (new or replacing).
    Upload {
        name: String,
        version: u64,
        size: usize,
    },
    /// Delete the attachment `name`.
    Delete { name: String },
    /// Append one line to the history.
    Append { line: String },
    /// Replace the whole history.
    Rewrite { text: String },
}

impl Op {
    /// A short word for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Upload { .. } => "upload",
            Op::Delete { .. } => "delete",
            Op::Append { .. } => "append",
            Op::Rewrite { .. } => "rewrite",
        }
    }
}

/// What the chat should hold: attachment name → version, and the history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub files: BTreeMap<String, u64>,
    pub history: String,
}

/// The bytes of `name` at `version`: a repeated marker, so a torn or mixed
/// file cannot pass for a whole one.
pub fn content(name: &str, version: u64, size: usize) -> Vec<u8> {
    let marker = format!("<{name}@{version}>");
    marker.bytes().cycle().take(size).collect()
}

/// The size of `name` at `version`.
pub fn size_of(version: u64) -> usize {
    // Deterministic, from empty to 96 KiB.
    ((version.wrapping_mul(2654435761) >> 7) % (96 * 1024)) as usize
}

/// A tiny deterministic generator (SplitMix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Model {
    /// Operation number `i` of the script, given the state before it.
    pub fn op(&self, seed: u64, i: u64) -> Op {
        let r = mix(seed ^ mix(i));
        let existing: Vec<&String> = self.files.keys().collect();
        match r % 10 {
            0..=3 => {
                let name = format!("f{}.bin", i % 12);
                Op::Upload {
                    name,
                    version: i,
                    size: size_of(i),
                }
            }
            4..=5 if !existing.is_empty() => {
                let name = existing[(r >> 8) as usize % existing.len()].clone();
                Op::Upload {
                    name,
                    version: i,
                    size: size_of(i),
                }
            }
            6 if !existing.is_empty() => {
                let name = existing[(r >> 8) as usize % existing.len()].clone();
                Op::Delete { name }
            }
            7 => Op::Rewrite {
                text: format!(
                    "# rewritten at {i}\n{}\n",
                    "r".repeat((r >> 16) as usize % 20_000)
                ),
            },
            _ => Op::Append {
                line: format!("line {i}: {}\n", "x".repeat((r >> 16) as usize % 4_000)),
            },
        }
    }

    /// The state after `op`.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Upload { name, version, .. } => {
                self.files.insert(name.clone(), *version);
            }
            Op::Delete { name } => {
                self.files.remove(name);
            }
            Op::Append { line } => self.history.push_str(line),
            Op::Rewrite { text } => self.history = text.clone(),
        }
    }

    /// The state after operations `0..n` of the script.
    pub fn after(seed: u64, n: u64) -> Model {
        let mut model = Model::default();
        for i in 0..n {
            let op = model.op(seed, i);
            model.apply(&op);
        }
        model
    }
}
