//! `fsck`: compares the metadata with the chat directories.
//!
//! It runs holding the data directory's lock alone, after recovery, so
//! it sees no call half done. What it reports:
//!
//! - `missing_chat_dirs`: a chat row whose directory (or `history.md`) is gone;
//! - `orphan_chat_dirs`: a chat directory no chat row names;
//! - `missing_files`: a file row whose bytes are gone;
//! - `unregistered_files`: a top-level file in a chat directory that is
//!   neither `history.md` nor a file row (an orphan attachment, or a file a
//!   sandbox wrote);
//! - `size_mismatches`: a file row whose size differs from the bytes on disk;
//! - `missing_digests`: a file row without the SHA-256 of its content (stored
//!   before digests were kept);
//! - `unreadable_chat_dirs`: a chat directory that could not be read (a
//!   sandbox took the permission away, say): checked no further, and the
//!   rest of the data directory still is;
//! - `moved_aside`: what was moved to a workspace's `lost+found/` because it
//!   stood where a committed change had to put or remove a file, or what a
//!   change that could not be applied left (left for an operator);
//! - `usage_drift`: a workspace whose bytes in the usage ledger are not the
//!   bytes under its directory (a sandbox wrote since its session ended, or
//!   its session has not ended yet). Not a problem by itself: the ledger
//!   counts a sandbox's work when its session ends.
//!
//! `--repair` changes only what holds no acknowledged data: it recreates
//! missing chat directories and histories (empty), drops rows whose bytes
//! are gone, sets recorded sizes and digests to those of the bytes on disk
//! (size mismatches, missing digests), moves orphan chat directories to
//! `lost+found/`, and counts every workspace's disk into the usage ledger.
//! Unregistered files are left where they are: they may be a sandbox's work.

use crate::adapters::DataDirBackend;
use crate::error::PortError;
use crate::names::HISTORY_FILE_NAME;
use crate::unit::{Access, Backend, Scope};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// A chat directory, by ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatDirRef {
    /// The workspace.
    pub workspace_id: Uuid,
    /// The chat.
    pub chat_id: Uuid,
}

/// A file in a chat directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileRef {
    /// The file's row, if it has one.
    pub file_id: Option<Uuid>,
    /// The chat.
    pub chat_id: Uuid,
    /// The file's name.
    pub name: String,
}

/// A file whose recorded size is not its size on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SizeMismatch {
    /// The file's row.
    pub file_id: Uuid,
    /// The chat.
    pub chat_id: Uuid,
    /// The file's name.
    pub name: String,
    /// The size the metadata records.
    pub recorded_bytes: u64,
    /// The size on disk.
    pub on_disk_bytes: u64,
}

/// A chat directory `fsck` could not read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnreadableChatDir {
    /// The workspace.
    pub workspace_id: Uuid,
    /// The chat.
    pub chat_id: Uuid,
    /// Why.
    pub error: String,
}

/// Something in a workspace's `lost+found/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MovedAside {
    /// The workspace.
    pub workspace_id: Uuid,
    /// Its path under the workspace's `lost+found/`: `<chat-id>.<id>/<name>`.
    pub path: String,
}

/// A workspace whose usage ledger is not what its directory holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageDrift {
    /// The workspace.
    pub workspace_id: Uuid,
    /// The bytes the ledger holds.
    pub ledger_bytes: u64,
    /// The bytes under the workspace's directory.
    pub on_disk_bytes: u64,
}

/// What `fsck` found, and what it repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    /// Chat rows checked.
    pub chats_checked: usize,
    /// File rows checked.
    pub files_checked: usize,
    /// Chat rows without a directory or history.
    pub missing_chat_dirs: Vec<ChatDirRef>,
    /// Chat directories without a chat row.
    pub orphan_chat_dirs: Vec<ChatDirRef>,
    /// File rows without bytes.
    pub missing_files: Vec<FileRef>,
    /// Files on disk without a row.
    pub unregistered_files: Vec<FileRef>,
    /// Rows whose size is not the size on disk.
    pub size_mismatches: Vec<SizeMismatch>,
    /// Rows without a SHA-256 of their content.
    pub missing_digests: Vec<FileRef>,
    /// Chat directories that could not be read.
    pub unreadable_chat_dirs: Vec<UnreadableChatDir>,
    /// What is in the workspaces' `lost+found/`.
    pub moved_aside: Vec<MovedAside>,
    /// Workspaces whose usage ledger is not their bytes on disk.
    pub usage_drift: Vec<UsageDrift>,
    /// Whether the problems above were repaired.
    pub repaired: bool,
}

impl FsckReport {
    /// Whether metadata and directories agree (unregistered files aside).
    pub fn is_clean(&self) -> bool {
        self.missing_chat_dirs.is_empty()
            && self.orphan_chat_dirs.is_empty()
            && self.missing_files.is_empty()
            && self.size_mismatches.is_empty()
            && self.unreadable_chat_dirs.is_empty()
    }
}

/// How far `fsck` has got: chats done out of all chats.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Chats checked so far.
    pub done: usize,
    /// Chats to check.
    pub total: usize,
}

fn io(e: std::io::Error) -> PortError {
    PortError::new(format!("fsck: {e}"))
}

/// Checks (and with `repair`, fixes) the data directory; calls `progress`
/// as chats are checked.
pub fn fsck(
    backend: &DataDirBackend,
    repair: bool,
    mut progress: impl FnMut(Progress),
) -> Result<FsckReport, PortError> {
    // A write unit of work: exclusive lock, recovery done, one transaction.
    let unit = backend.begin(Access::Write, Scope::All)?;
    let (ports, records) = (unit.ports(), unit.records());
    let data = backend.data_dir();
    let chats = records.all_chats()?;
    let files = records.all_files()?;
    let mut report = FsckReport {
        chats_checked: chats.len(),
        files_checked: files.len(),
        repaired: repair,
        ..FsckReport::default()
    };

    let mut files_by_chat: HashMap<Uuid, Vec<_>> = HashMap::new();
    for file in files {
        files_by_chat.entry(file.chat_id).or_default().push(file);
    }
    let known: HashSet<(Uuid, Uuid)> = chats.iter().map(|c| (c.workspace_id, c.chat_id)).collect();
    for (workspace_id, chat_id) in data.chat_dirs().map_err(io)? {
        if !known.contains(&(workspace_id, chat_id)) {
            report.orphan_chat_dirs.push(ChatDirRef {
                workspace_id,
                chat_id,
            });
        }
    }

    let total = chats.len();
    for (done, chat) in chats.iter().enumerate() {
        if done % 1000 == 0 {
            progress(Progress { done, total });
        }
        let rows = files_by_chat.remove(&chat.chat_id).unwrap_or_default();
        let on_disk = match data.chat_files(chat.workspace_id, chat.chat_id) {
            Ok(found) => found,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            // One chat directory's trouble is reported, not fsck's end.
            Err(e) => {
                report.unreadable_chat_dirs.push(UnreadableChatDir {
                    workspace_id: chat.workspace_id,
                    chat_id: chat.chat_id,
                    error: e.to_string(),
                });
                files_by_chat.remove(&chat.chat_id);
                continue;
            }
        };
        if !on_disk.contains_key(HISTORY_FILE_NAME) {
            report.missing_chat_dirs.push(ChatDirRef {
                workspace_id: chat.workspace_id,
                chat_id: chat.chat_id,
            });
        }
        let registered: HashSet<&str> = rows.iter().map(|f| f.name.as_str()).collect();
        for (name, _) in on_disk
            .iter()
            .filter(|(n, _)| *n != HISTORY_FILE_NAME && !registered.contains(n.as_str()))
        {
            report.unregistered_files.push(FileRef {
                file_id: None,
                chat_id: chat.chat_id,
                name: name.clone(),
            });
        }
        for row in rows {
            match on_disk.get(row.name.as_str()) {
                None => report.missing_files.push(FileRef {
                    file_id: Some(row.file_id),
                    chat_id: row.chat_id,
                    name: row.name.to_string(),
                }),
                Some(&size) if size != row.size_bytes => {
                    report.size_mismatches.push(SizeMismatch {
                        file_id: row.file_id,
                        chat_id: row.chat_id,
                        name: row.name.to_string(),
                        recorded_bytes: row.size_bytes,
                        on_disk_bytes: size,
                    })
                }
                Some(_) if row.sha256.is_none() => report.missing_digests.push(FileRef {
                    file_id: Some(row.file_id),
                    chat_id: row.chat_id,
                    name: row.name.to_string(),
                }),
                Some(_) => {}
            }
        }
    }
    for (workspace_id, path) in data.moved_aside().map_err(io)? {
        report.moved_aside.push(MovedAside { workspace_id, path });
    }
    let mut workspaces: Vec<Uuid> = chats.iter().map(|c| c.workspace_id).collect();
    workspaces.sort();
    workspaces.dedup();
    for &workspace_id in &workspaces {
        let Some(workspace) = ports.workspaces.get(workspace_id)? else {
            continue;
        };
        let ledger_bytes = ports.usage.get_workspace_usage(&workspace)?.used_bytes;
        let on_disk_bytes = data.count(workspace_id).map_err(io)?.total;
        if ledger_bytes != on_disk_bytes {
            report.usage_drift.push(UsageDrift {
                workspace_id,
                ledger_bytes,
                on_disk_bytes,
            });
        }
    }
    // Rows of files whose chat row is gone.
    for row in files_by_chat.into_values().flatten() {
        report.missing_files.push(FileRef {
            file_id: Some(row.file_id),
            chat_id: row.chat_id,
            name: row.name.to_string(),
        });
    }
    progress(Progress { done: total, total });

    if !repair {
        unit.rollback();
        report
            .unregistered_files
            .sort_by(|a, b| (a.chat_id, &a.name).cmp(&(b.chat_id, &b.name)));
        return Ok(report);
    }
    for dir in &report.missing_chat_dirs {
        data.ensure_chat_dir(dir.workspace_id, dir.chat_id)
            .map_err(io)?;
    }
    for dir in &report.orphan_chat_dirs {
        data.move_to_lost_and_found(dir.workspace_id, dir.chat_id)
            .map_err(io)?;
    }
    for missing in &report.missing_files {
        if let Some(file_id) = missing.file_id {
            ports.files.delete(file_id)?;
        }
    }
    // Sizes and digests become those of the bytes on disk.
    let redigest = report
        .size_mismatches
        .iter()
        .map(|m| m.file_id)
        .chain(report.missing_digests.iter().filter_map(|f| f.file_id));
    for file_id in redigest {
        let Some(mut row) = ports.files.get(file_id)? else {
            continue;
        };
        let Some(chat) = chats.iter().find(|c| c.chat_id == row.chat_id) else {
            continue;
        };
        // A file a sandbox changed again since it was checked stays reported.
        let Ok((size, sha256)) = data.digest(chat.workspace_id, chat.chat_id, row.name.as_str())
        else {
            continue;
        };
        row.size_bytes = size;
        row.sha256 = Some(sha256);
        ports.files.save(&row)?;
    }
    for &workspace_id in &workspaces {
        unit.recount(workspace_id, None)?;
    }
    unit.commit()?;
    report
        .unregistered_files
        .sort_by(|a, b| (a.chat_id, &a.name).cmp(&(b.chat_id, &b.name)));
    Ok(report)
}
