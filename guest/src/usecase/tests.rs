//! The policy, tested natively against in-memory ports.

use super::fakes::Fakes;
use crate::domain::{StorageError, Timestamp};

const ALICE: &str = "00000000-0000-7000-8000-00000000000a";
const BOB: &str = "00000000-0000-7000-8000-00000000000b";

fn code<T: std::fmt::Debug>(r: Result<T, StorageError>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn ensure_workspace_is_idempotent() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    let first = s.ensure_workspace(ALICE).unwrap();
    let second = s.ensure_workspace(ALICE).unwrap();
    assert_eq!(first, second);
    assert_eq!(fakes.workspaces.borrow().len(), 1);
}

#[test]
fn every_call_without_a_workspace_is_workspace_not_found() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    let chat = "00000000-0000-7000-8000-000000000001";
    assert_eq!(code(s.get_workspace(ALICE)), "workspace_not_found");
    assert_eq!(code(s.get_usage(ALICE)), "workspace_not_found");
    assert_eq!(code(s.create_chat(ALICE)), "workspace_not_found");
    assert_eq!(code(s.list_chats(ALICE)), "workspace_not_found");
    assert_eq!(code(s.get_chat(ALICE, chat)), "workspace_not_found");
    assert_eq!(code(s.delete_chat(ALICE, chat)), "workspace_not_found");
    assert_eq!(code(s.read_history(ALICE, chat)), "workspace_not_found");
    assert_eq!(
        code(s.upload_attachment(ALICE, chat, "a", None, &fakes.stage(b"x"))),
        "workspace_not_found"
    );
    assert_eq!(
        code(s.clear_attachments(ALICE, chat)),
        "workspace_not_found"
    );
}

#[test]
fn malformed_ids_are_invalid_id() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    assert_eq!(
        s.ensure_workspace("../../etc"),
        Err(StorageError::InvalidId("../../etc".into()))
    );
    s.ensure_workspace(ALICE).unwrap();
    assert_eq!(code(s.get_chat(ALICE, "..")), "invalid_id");
    assert_eq!(fakes.workspaces.borrow().len(), 1);
}

#[test]
fn creating_a_chat_creates_its_directory_with_an_empty_history() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    assert_eq!(
        fakes
            .served(s.read_history(ALICE, &chat.chat_id.to_string()))
            .unwrap(),
        b""
    );
    assert!(fakes.dirs.borrow().contains_key(&chat.chat_id));
}

#[test]
fn another_users_chat_is_not_found() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    s.ensure_workspace(BOB).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    assert_eq!(
        s.get_chat(BOB, id),
        Err(StorageError::ChatNotFound(chat.chat_id))
    );
    assert_eq!(code(s.read_history(BOB, id)), "chat_not_found");
    assert_eq!(
        code(s.write_history(BOB, id, &fakes.stage("x"))),
        "chat_not_found"
    );
    assert_eq!(code(s.delete_chat(BOB, id)), "chat_not_found");
    assert_eq!(
        code(s.upload_attachment(BOB, id, "a", None, &fakes.stage(b"x"))),
        "chat_not_found"
    );
    assert!(s.list_chats(BOB).unwrap().is_empty());
    assert_eq!(s.get_chat(ALICE, id).unwrap(), chat);
}

#[test]
fn a_file_of_another_chat_is_not_found() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let one = s.create_chat(ALICE).unwrap();
    let two = s.create_chat(ALICE).unwrap();
    let file = s
        .upload_attachment(
            ALICE,
            &one.chat_id.to_string(),
            "a.txt",
            None,
            &fakes.stage(b"x"),
        )
        .unwrap();
    let (two, fid) = (&two.chat_id.to_string(), &file.file_id.to_string());
    assert_eq!(
        code(s.get_attachment(ALICE, two, fid)),
        "chat_file_not_found"
    );
    assert_eq!(
        code(s.read_attachment(ALICE, two, fid)),
        "chat_file_not_found"
    );
    assert_eq!(
        code(s.delete_attachment(ALICE, two, fid)),
        "chat_file_not_found"
    );
    assert_eq!(
        s.list_attachments(ALICE, &one.chat_id.to_string()).unwrap(),
        vec![file]
    );
}

#[test]
fn lists_are_ordered_by_creation_time_then_id() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    fakes.ids_descend.set(true);
    let at = |seconds| Timestamp {
        seconds,
        nanoseconds: 0,
    };
    fakes.now.set(at(20));
    let late = s.create_chat(ALICE).unwrap();
    fakes.now.set(at(10));
    let early_a = s.create_chat(ALICE).unwrap();
    let early_b = s.create_chat(ALICE).unwrap();
    // Same time: the smaller id first; ids descend, so early_b's is smaller.
    assert!(early_b.chat_id < early_a.chat_id);
    assert_eq!(
        s.list_chats(ALICE).unwrap(),
        vec![early_b.clone(), early_a, late.clone()]
    );

    let chat = &early_b.chat_id.to_string();
    fakes.now.set(at(30));
    let f_late = s
        .upload_attachment(ALICE, chat, "late", None, &fakes.stage(b""))
        .unwrap();
    fakes.now.set(at(5));
    let f_first = s
        .upload_attachment(ALICE, chat, "first", None, &fakes.stage(b""))
        .unwrap();
    assert_eq!(
        s.list_attachments(ALICE, chat).unwrap(),
        vec![f_first, f_late]
    );
}

#[test]
fn bad_attachment_names_are_refused_before_anything_is_written() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    for (name, want) in [
        ("", "invalid_attachment_name"),
        (".", "invalid_attachment_name"),
        ("..", "invalid_attachment_name"),
        ("../x", "invalid_attachment_name"),
        ("a\\b", "invalid_attachment_name"),
        ("a\0b", "invalid_attachment_name"),
        ("history.md", "reserved_attachment_name"),
    ] {
        assert_eq!(
            code(s.upload_attachment(ALICE, id, name, None, &fakes.stage(b"x"))),
            want,
            "{name:?}"
        );
    }
    let long = "x".repeat(256);
    assert_eq!(
        code(s.upload_attachment(ALICE, id, &long, None, &fakes.stage(b"x"))),
        "invalid_attachment_name"
    );
    assert!(fakes.files.borrow().is_empty());
    assert_eq!(fakes.used_bytes(), 0);
}

#[test]
fn replacing_a_name_gives_a_new_file_id() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    let old = s
        .upload_attachment(ALICE, id, "a.txt", Some("text/plain"), &fakes.stage(b"old"))
        .unwrap();
    let new = s
        .upload_attachment(ALICE, id, "a.txt", None, &fakes.stage(b"newer"))
        .unwrap();
    assert_ne!(old.file_id, new.file_id);
    assert_eq!(
        code(s.get_attachment(ALICE, id, &old.file_id.to_string())),
        "chat_file_not_found"
    );
    assert_eq!(s.list_attachments(ALICE, id).unwrap(), vec![new.clone()]);
    assert_eq!(
        fakes
            .served(s.read_attachment(ALICE, id, &new.file_id.to_string()))
            .unwrap(),
        b"newer"
    );
    assert_eq!(new.sha256.as_deref(), Some("digest of 5 bytes"));
    assert_eq!(new.size_bytes, 5);
}

#[test]
fn an_upload_past_the_quota_is_refused_and_changes_nothing() {
    let fakes = Fakes::new();
    fakes.quota_bytes.set(10);
    let s = fakes.storage();
    let ws = s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    s.upload_attachment(ALICE, id, "a", None, &fakes.stage(b"123456"))
        .unwrap();
    assert_eq!(
        s.upload_attachment(ALICE, id, "b", None, &fakes.stage(b"12345")),
        Err(StorageError::WorkspaceQuotaExceeded(ws.workspace_id))
    );
    assert_eq!(fakes.files.borrow().len(), 1);
    assert_eq!(fakes.used_bytes(), 6);
    s.upload_attachment(ALICE, id, "b", None, &fakes.stage(b"1234"))
        .unwrap();
    assert_eq!(s.get_usage(ALICE).unwrap().used_bytes, 10);
}

#[test]
fn quota_is_counted_net_of_the_replaced_file() {
    let fakes = Fakes::new();
    fakes.quota_bytes.set(10);
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    s.upload_attachment(ALICE, id, "a", None, &fakes.stage(b"12345678"))
        .unwrap();
    // 8 used; replacing the 8 bytes by 10 fits, adding 10 more would not.
    s.upload_attachment(ALICE, id, "a", None, &fakes.stage(b"1234567890"))
        .unwrap();
    assert_eq!(fakes.used_bytes(), 10);
}

#[test]
fn shrinking_writes_pass_even_over_quota() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    s.upload_attachment(ALICE, id, "a", None, &fakes.stage(b"1234567890"))
        .unwrap();
    s.write_history(ALICE, id, &fakes.stage("hello")).unwrap();
    fakes.quota_bytes.set(5);
    s.upload_attachment(ALICE, id, "a", None, &fakes.stage(b"123"))
        .unwrap();
    s.write_history(ALICE, id, &fakes.stage("hi")).unwrap();
    assert_eq!(
        code(s.append_history(ALICE, id, &fakes.stage("!"))),
        "workspace_quota_exceeded"
    );
    assert_eq!(
        code(s.write_history(ALICE, id, &fakes.stage("hey"))),
        "workspace_quota_exceeded"
    );
    assert_eq!(fakes.served(s.read_history(ALICE, id)).unwrap(), b"hi");
}

#[test]
fn history_writes_and_appends_count_against_the_quota() {
    let fakes = Fakes::new();
    fakes.quota_bytes.set(8);
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    s.write_history(ALICE, id, &fakes.stage("# a\n")).unwrap();
    s.append_history(ALICE, id, &fakes.stage("b\n")).unwrap();
    assert_eq!(
        code(s.append_history(ALICE, id, &fakes.stage("ccc"))),
        "workspace_quota_exceeded"
    );
    assert_eq!(
        code(s.write_history(ALICE, id, &fakes.stage("123456789"))),
        "workspace_quota_exceeded"
    );
    s.write_history(ALICE, id, &fakes.stage("12345678"))
        .unwrap();
    assert_eq!(
        fakes.served(s.read_history(ALICE, id)).unwrap(),
        b"12345678"
    );
}

#[test]
fn an_active_sandbox_blocks_delete_chat_and_clear_attachments() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    s.upload_attachment(ALICE, id, "a", None, &fakes.stage(b"x"))
        .unwrap();
    fakes.start_sandbox(&chat.chat_id);
    assert_eq!(
        s.delete_chat(ALICE, id),
        Err(StorageError::ChatHasActiveSandbox(chat.chat_id))
    );
    assert_eq!(
        code(s.clear_attachments(ALICE, id)),
        "chat_has_active_sandbox"
    );
    assert_eq!(s.list_attachments(ALICE, id).unwrap().len(), 1);
    // Uploads and history stay allowed: the sandbox works in the directory.
    s.append_history(ALICE, id, &fakes.stage("ok")).unwrap();
    fakes.active_sandboxes.borrow_mut().clear();
    s.clear_attachments(ALICE, id).unwrap();
    assert!(s.list_attachments(ALICE, id).unwrap().is_empty());
    assert_eq!(fakes.served(s.read_history(ALICE, id)).unwrap(), b"ok");
}

#[test]
fn deleting_a_chat_removes_its_metadata_files_and_directory() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let keep = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    s.upload_attachment(ALICE, id, "a", None, &fakes.stage(b"x"))
        .unwrap();
    s.upload_attachment(
        ALICE,
        &keep.chat_id.to_string(),
        "a",
        None,
        &fakes.stage(b"y"),
    )
    .unwrap();
    s.delete_chat(ALICE, id).unwrap();
    assert_eq!(code(s.get_chat(ALICE, id)), "chat_not_found");
    assert!(!fakes.dirs.borrow().contains_key(&chat.chat_id));
    assert_eq!(fakes.files.borrow().len(), 1);
    assert_eq!(s.list_chats(ALICE).unwrap(), vec![keep]);
}

#[test]
fn deleting_an_attachment_removes_bytes_and_metadata() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    let file = s
        .upload_attachment(ALICE, id, "a", None, &fakes.stage(b"xyz"))
        .unwrap();
    s.delete_attachment(ALICE, id, &file.file_id.to_string())
        .unwrap();
    assert_eq!(fakes.used_bytes(), 0);
    assert_eq!(
        code(s.read_attachment(ALICE, id, &file.file_id.to_string())),
        "chat_file_not_found"
    );
}

#[test]
fn a_failing_port_is_storage_unavailable() {
    let fakes = Fakes::new();
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    // The directory vanished under the chat: the storage port fails.
    fakes.dirs.borrow_mut().clear();
    let err = s
        .read_history(ALICE, &chat.chat_id.to_string())
        .unwrap_err();
    assert_eq!(err.code(), "storage_unavailable");
}

#[test]
fn a_replacement_frees_what_is_on_disk_not_what_the_metadata_says() {
    let fakes = Fakes::new();
    fakes.quota_bytes.set(10);
    let s = fakes.storage();
    s.ensure_workspace(ALICE).unwrap();
    let chat = s.create_chat(ALICE).unwrap();
    let id = &chat.chat_id.to_string();
    s.upload_attachment(ALICE, id, "a", None, &fakes.stage(b"12"))
        .unwrap();
    // A sandbox grew the file to 8 bytes: 8 are used, the metadata says 2.
    fakes
        .dirs
        .borrow_mut()
        .get_mut(&chat.chat_id)
        .unwrap()
        .1
        .insert("a".into(), b"12345678".to_vec());
    s.upload_attachment(ALICE, id, "a", None, &fakes.stage(b"123456789"))
        .unwrap();
    assert_eq!(fakes.used_bytes(), 9);
}
