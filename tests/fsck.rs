//! `fsck` finds every way metadata and chat directories can disagree, and
//! `--repair` fixes what it can without losing acknowledged data.

use chatstore_host::fsck::{ChatDirRef, fsck};
use chatstore_host::unit::{Access, Scope};
use chatstore_tests::{Harness, attachment, history};
use std::fs;

#[test]
fn a_consistent_data_directory_is_clean() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    h.store
        .upload_attachment(user, chat.chat_id, "a", None, &b"abc"[..])
        .unwrap();
    let backend = h.backend();
    let report = fsck(&backend, false, |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.chats_checked, report.files_checked), (1, 1));
}

#[test]
fn every_disagreement_is_reported_and_repaired() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let gone = h.store.create_chat(user).unwrap();
    let c = chat.chat_id;
    let missing = h
        .store
        .upload_attachment(user, c, "missing.txt", None, &b"will vanish"[..])
        .unwrap();
    let grown = h
        .store
        .upload_attachment(user, c, "grown.txt", None, &b"short"[..])
        .unwrap();
    let dir = h.chat_dir(&chat);
    fs::remove_file(dir.join("missing.txt")).unwrap();
    fs::write(dir.join("grown.txt"), b"much longer now").unwrap();
    fs::write(dir.join("sandbox-output.csv"), b"1,2\n").unwrap();
    fs::remove_dir_all(h.chat_dir(&gone)).unwrap();
    let orphan = h.data_dir().join(format!(
        "workspaces/{}/chats/{}",
        chat.workspace_id,
        uuid::Uuid::now_v7()
    ));
    fs::create_dir_all(&orphan).unwrap();
    fs::write(orphan.join("history.md"), b"# nobody's\n").unwrap();

    let backend = h.backend();
    let report = fsck(&backend, false, |_| {}).unwrap();
    assert_eq!(
        report.missing_chat_dirs,
        vec![ChatDirRef {
            workspace_id: gone.workspace_id,
            chat_id: gone.chat_id
        }]
    );
    assert_eq!(report.orphan_chat_dirs.len(), 1);
    assert_eq!(report.missing_files.len(), 1);
    assert_eq!(report.missing_files[0].file_id, Some(missing.file_id));
    assert_eq!(report.size_mismatches.len(), 1);
    assert_eq!(report.size_mismatches[0].file_id, grown.file_id);
    assert_eq!(
        (
            report.size_mismatches[0].recorded_bytes,
            report.size_mismatches[0].on_disk_bytes
        ),
        (5, 15)
    );
    assert_eq!(report.unregistered_files.len(), 1);
    assert_eq!(report.unregistered_files[0].name, "sandbox-output.csv");
    assert!(!report.is_clean());
    // A report alone changes nothing.
    assert!(orphan.exists());

    let repaired = fsck(&backend, true, |_| {}).unwrap();
    assert!(repaired.repaired);
    let again = fsck(&backend, false, |_| {}).unwrap();
    assert!(again.is_clean(), "{again:?}");
    drop(backend);

    // Acknowledged data is all still there; nothing the sandbox wrote was touched.
    let files = h.store.list_attachments(user, c).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].size_bytes, 15);
    // The digest follows the bytes on disk too.
    assert_eq!(
        files[0].sha256.as_deref(),
        Some(sha256(b"much longer now").as_str())
    );
    assert_eq!(
        attachment(&h.store, user, c, grown.file_id).unwrap(),
        b"much longer now"
    );
    assert_eq!(fs::read(dir.join("sandbox-output.csv")).unwrap(), b"1,2\n");
    assert_eq!(history(&h.store, user, gone.chat_id).unwrap(), "");
    let found = h.data_dir().join("lost+found");
    let moved: Vec<_> = fs::read_dir(&found)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        fs::read(moved[0].join("history.md")).unwrap(),
        b"# nobody's\n"
    );
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_file_stored_before_digests_gets_its_digest_from_repair() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let file = h
        .store
        .upload_attachment(user, chat.chat_id, "old.txt", None, &b"from before"[..])
        .unwrap();
    // What a row from before digests were kept looks like.
    h.store
        .with_ports(Access::Write, Scope::All, |ports, _| {
            let mut row = ports.files.get(file.file_id).unwrap().unwrap();
            row.sha256 = None;
            ports.files.save(&row).unwrap();
            Ok(())
        })
        .unwrap();
    let backend = h.backend();
    let report = fsck(&backend, false, |_| {}).unwrap();
    assert_eq!(report.missing_digests.len(), 1, "{report:?}");
    assert_eq!(report.missing_digests[0].file_id, Some(file.file_id));
    fsck(&backend, true, |_| {}).unwrap();
    assert!(
        fsck(&backend, false, |_| {})
            .unwrap()
            .missing_digests
            .is_empty()
    );
    drop(backend);
    let row = h
        .store
        .get_attachment(user, chat.chat_id, file.file_id)
        .unwrap();
    assert_eq!(row.sha256.as_deref(), Some(sha256(b"from before").as_str()));
}

#[test]
fn what_a_change_moved_aside_is_listed_and_an_unreadable_chat_does_not_stop_the_rest() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let dir = h.chat_dir(&chat);
    fs::create_dir_all(dir.join("report.txt/work")).unwrap();
    h.store
        .upload_attachment(user, chat.chat_id, "report.txt", None, &b"mine"[..])
        .unwrap();
    let report = fsck(&h.backend(), false, |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.moved_aside.len(), 1, "{report:?}");
    assert!(
        report.moved_aside[0]
            .path
            .starts_with(&format!("{}.", chat.chat_id))
            && report.moved_aside[0].path.ends_with("/report.txt"),
        "{report:?}"
    );
    assert_eq!(report.moved_aside[0].workspace_id, chat.workspace_id);
}
