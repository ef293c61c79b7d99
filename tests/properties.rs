//! Properties over generated input: the guest and the host agree on every
//! attachment name, and no sequence of writes breaks the quota or puts
//! metadata out of step with the disk.

use chatstore_guest::domain::{AttachmentName as GuestName, NameRule};
use chatstore_host::Error;
use chatstore_host::names::{AttachmentName as HostName, InvalidName};
use chatstore_tests::Harness;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs;

/// Failing cases are kept beside this file (the default looks for a
/// `lib.rs` this test target does not have).
fn regressions() -> Option<Box<dyn proptest::test_runner::FailurePersistence>> {
    Some(Box::new(
        proptest::test_runner::FileFailurePersistence::Direct("properties.proptest-regressions"),
    ))
}

/// Names built from the characters that matter to the rules, of any length
/// around the 255-byte limit, plus arbitrary text.
fn names() -> impl Strategy<Value = String> {
    let tricky = prop::sample::select(vec![
        "a",
        ".",
        "/",
        "\\",
        "\0",
        "é",
        "😀",
        " ",
        "history",
        ".md",
        "history.md",
        "HISTORY.MD",
        "..",
        "\u{1}",
        "\u{7f}",
        "\u{85}",
        "\u{202e}",
        "\u{2066}",
        "\u{a0}",
        "\u{3000}",
        "e\u{301}",
        "\u{301}",
    ]);
    prop_oneof![
        prop::collection::vec(tricky, 0..8).prop_map(|parts| parts.concat()),
        // Lengths on either side of 255 bytes, in 1-, 2- and 4-byte characters.
        (250usize..262).prop_map(|n| "x".repeat(n)),
        (125usize..131).prop_map(|n| "é".repeat(n)),
        (62usize..66, 0usize..4).prop_map(|(n, pad)| "😀".repeat(n) + &"x".repeat(pad)),
        "\\PC{0,40}",
        any::<String>(),
    ]
}

/// Which of the three outcomes a name has.
#[derive(Debug, PartialEq)]
enum Verdict {
    Valid,
    Invalid,
    Reserved,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: regressions(), ..ProptestConfig::default() })]

    #[test]
    fn guest_and_host_agree_on_every_name(name in names()) {
        use unicode_normalization::UnicodeNormalization;
        let guest = match GuestName::try_from(name.as_str()) {
            Ok(_) => Verdict::Valid,
            Err(e) if e.rule == NameRule::Reserved => Verdict::Reserved,
            Err(_) => Verdict::Invalid,
        };
        // The guest normalises to NFC; the host checks what it is passed,
        // which a policy passes normalised, and refuses anything else.
        let nfc: String = name.nfc().collect();
        let host = match HostName::new(nfc.as_str()) {
            Ok(_) => Verdict::Valid,
            Err(InvalidName::Reserved) => Verdict::Reserved,
            Err(_) => Verdict::Invalid,
        };
        prop_assert_eq!(&guest, &host, "{:?}", name);
        if nfc != name {
            prop_assert!(HostName::new(name.as_str()).is_err(), "{:?}", name);
        }
        // And both match the rules as written.
        let padded = |c: Option<char>| c.is_some_and(char::is_whitespace);
        let bidi = ['\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}',
            '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'];
        let expected = if nfc.is_empty() || nfc == "." || nfc == ".." || nfc.len() > 255
            || nfc.contains(['/', '\\'])
            || nfc.chars().any(char::is_control)
            || nfc.contains(bidi)
            || padded(nfc.chars().next())
            || padded(nfc.chars().next_back())
        {
            Verdict::Invalid
        } else if nfc.to_lowercase() == "history.md" {
            Verdict::Reserved
        } else {
            Verdict::Valid
        };
        prop_assert_eq!(guest, expected, "{:?}", name);
    }
}

#[derive(Clone, Debug)]
enum Step {
    Upload { name: usize, size: usize },
    Delete { name: usize },
    Append { size: usize },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => (0usize..4, 0usize..450).prop_map(|(name, size)| Step::Upload { name, size }),
        1 => (0usize..4).prop_map(|name| Step::Delete { name }),
        2 => (0usize..120).prop_map(|size| Step::Append { size }),
    ];
    prop::collection::vec(step, 1..20)
}

const QUOTA: u64 = 1000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: regressions(), ..ProptestConfig::default() })]

    #[test]
    fn no_sequence_of_writes_breaks_the_quota_or_the_metadata(steps in steps()) {
        let h = Harness::with_quota(QUOTA);
        let (user, chat) = h.user_with_chat();
        let c = chat.chat_id;
        let dir = h.chat_dir(&chat);
        // The model: name -> size, and the history's length.
        let mut model: BTreeMap<String, u64> = BTreeMap::new();
        let mut history = 0u64;
        for step in steps {
            let used: u64 = model.values().sum::<u64>() + history;
            match step {
                Step::Upload { name, size } => {
                    let name = format!("f{name}");
                    let old = model.get(&name).copied().unwrap_or(0);
                    let fits = size as u64 <= old || used - old + size as u64 <= QUOTA;
                    let result = h.store.upload_attachment(user, c, &name, None, &vec![b'u'; size][..]);
                    prop_assert_eq!(result.is_ok(), fits, "{:?}", result);
                    if fits {
                        model.insert(name, size as u64);
                    } else {
                        prop_assert!(matches!(result, Err(Error::WorkspaceQuotaExceeded(_))));
                    }
                }
                Step::Delete { name } => {
                    let name = format!("f{name}");
                    let files = h.store.list_attachments(user, c).unwrap();
                    if let Some(file) = files.iter().find(|f| f.name.as_str() == name) {
                        h.store.delete_attachment(user, c, file.file_id).unwrap();
                        model.remove(&name);
                    }
                }
                Step::Append { size } => {
                    let fits = size == 0 || used + size as u64 <= QUOTA;
                    let result = h.store.append_history(user, c, "h".repeat(size).as_bytes());
                    prop_assert_eq!(result.is_ok(), fits, "{:?}", result);
                    if fits {
                        history += size as u64;
                    }
                }
            }
            // The invariants, after every step.
            let usage = h.store.get_usage(user).unwrap();
            prop_assert!(usage.used_bytes <= QUOTA);
            prop_assert_eq!(usage.used_bytes, model.values().sum::<u64>() + history);
            let listed: BTreeMap<String, u64> = h
                .store
                .list_attachments(user, c)
                .unwrap()
                .into_iter()
                .map(|f| (f.name.to_string(), f.size_bytes))
                .collect();
            prop_assert_eq!(&listed, &model);
            let mut on_disk = BTreeMap::new();
            for entry in fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                if name != "history.md" {
                    on_disk.insert(name, entry.metadata().unwrap().len());
                }
            }
            prop_assert_eq!(&on_disk, &model);
            prop_assert_eq!(fs::metadata(dir.join("history.md")).unwrap().len(), history);
        }
    }
}
