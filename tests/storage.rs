//! The policy's rules (docs/rules.md), observed through the real
//! component and the real filesystem: each rule from the host API and on disk.

use chatstore_host::unit::{Access, Scope};
use chatstore_host::{ChatStore, Error, PageRequest, Timestamp};
use chatstore_tests::{Harness, START, attachment, history};
use sha2::{Digest, Sha256};
use std::fs;
use uuid::Uuid;

fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> &'static str {
    r.expect_err("the call should fail").code()
}

// ---- workspaces ----

#[test]
fn ensure_workspace_is_idempotent() {
    let h = Harness::new();
    let user = Uuid::now_v7();
    let first = h.store.ensure_workspace(user).unwrap();
    h.set_time(60);
    let second = h.store.ensure_workspace(user).unwrap();
    assert_eq!(first, second);
    assert_eq!(first.user_id, user);
    assert_eq!(h.store.get_workspace(user).unwrap(), first);
}

#[test]
fn each_user_gets_a_workspace_of_their_own() {
    let h = Harness::new();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let wa = h.store.ensure_workspace(a).unwrap();
    let wb = h.store.ensure_workspace(b).unwrap();
    assert_ne!(wa.workspace_id, wb.workspace_id);
}

#[test]
fn the_guest_reads_the_time_the_host_sets() {
    let h = Harness::new();
    h.set_time(42);
    let (_, chat) = h.user_with_chat();
    assert_eq!(
        chat.created_at,
        Timestamp::from_timestamp(START + 42, 0).unwrap()
    );
    assert_eq!(std::time::SystemTime::from(chat.created_at), h.now());
}

#[test]
fn every_call_for_a_user_without_a_workspace_is_workspace_not_found() {
    let h = Harness::new();
    let (owner, chat) = h.user_with_chat();
    let file = h
        .store
        .upload_attachment(owner, chat.chat_id, "a.txt", None, &b"x"[..])
        .unwrap();
    let stranger = Uuid::now_v7();
    let (c, f) = (chat.chat_id, file.file_id);
    let s = &h.store;
    let codes = [
        code(s.get_workspace(stranger)),
        code(s.get_usage(stranger)),
        code(s.create_chat(stranger)),
        code(s.list_chats(stranger)),
        code(s.get_chat(stranger, c)),
        code(s.delete_chat(stranger, c)),
        code(history(s, stranger, c)),
        code(s.write_history(stranger, c, "x".as_bytes())),
        code(s.append_history(stranger, c, "x".as_bytes())),
        code(s.upload_attachment(stranger, c, "b.txt", None, &b"x"[..])),
        code(s.list_attachments(stranger, c)),
        code(s.get_attachment(stranger, c, f)),
        code(attachment(s, stranger, c, f)),
        code(s.delete_attachment(stranger, c, f)),
        code(s.clear_attachments(stranger, c)),
    ];
    assert!(
        codes.iter().all(|c| *c == "workspace_not_found"),
        "{codes:?}"
    );
    assert_eq!(
        s.get_workspace(stranger),
        Err(Error::WorkspaceNotFound(stranger))
    );
    // The owner's chat is untouched.
    assert_eq!(s.list_attachments(owner, c).unwrap(), vec![file]);
}

// ---- chats ----

#[test]
fn creating_a_chat_creates_its_directory_and_an_empty_history() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let dir = h.chat_dir(&chat);
    assert!(dir.is_dir());
    assert_eq!(fs::read(dir.join("history.md")).unwrap(), b"");
    assert_eq!(history(&h.store, user, chat.chat_id).unwrap(), "");
    assert_eq!(h.store.get_chat(user, chat.chat_id).unwrap(), chat);
}

#[test]
fn chats_are_listed_by_creation_time_then_id() {
    let h = Harness::new();
    let user = Uuid::now_v7();
    h.store.ensure_workspace(user).unwrap();
    h.set_time(30);
    let late = h.store.create_chat(user).unwrap();
    h.set_time(10);
    let early_1 = h.store.create_chat(user).unwrap();
    let early_2 = h.store.create_chat(user).unwrap();
    let mut early = [early_1, early_2];
    early.sort_by_key(|c| c.chat_id);
    let listed = h.store.list_chats(user).unwrap();
    assert_eq!(listed, vec![early[0].clone(), early[1].clone(), late]);
}

#[test]
fn attachments_are_listed_by_creation_time_then_id() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let c = chat.chat_id;
    h.set_time(50);
    let late = h
        .store
        .upload_attachment(user, c, "late", None, &b"1"[..])
        .unwrap();
    h.set_time(20);
    let a = h
        .store
        .upload_attachment(user, c, "a", None, &b"2"[..])
        .unwrap();
    let b = h
        .store
        .upload_attachment(user, c, "b", None, &b"3"[..])
        .unwrap();
    let mut early = [a, b];
    early.sort_by_key(|f| f.file_id);
    let listed = h.store.list_attachments(user, c).unwrap();
    assert_eq!(listed, vec![early[0].clone(), early[1].clone(), late]);
}

#[test]
fn deleting_a_chat_removes_its_metadata_files_and_directory() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let other = h.store.create_chat(user).unwrap();
    let file = h
        .store
        .upload_attachment(user, chat.chat_id, "a.txt", None, &b"abc"[..])
        .unwrap();
    h.store
        .upload_attachment(user, other.chat_id, "a.txt", None, &b"keep"[..])
        .unwrap();
    let dir = h.chat_dir(&chat);
    assert!(dir.join("a.txt").is_file());

    h.store.delete_chat(user, chat.chat_id).unwrap();

    assert!(!dir.exists());
    assert_eq!(
        h.store.get_chat(user, chat.chat_id),
        Err(Error::ChatNotFound(chat.chat_id))
    );
    assert_eq!(
        code(h.store.get_attachment(user, chat.chat_id, file.file_id)),
        "chat_not_found"
    );
    let files = h.store.with_ports(Access::Read, Scope::All, |p, _| {
        Ok(p.files.list_by_chat_id(chat.chat_id).unwrap())
    });
    assert!(files.unwrap().is_empty());
    assert_eq!(h.store.list_chats(user).unwrap(), vec![other.clone()]);
    assert_eq!(fs::read(h.chat_dir(&other).join("a.txt")).unwrap(), b"keep");
}

#[test]
fn an_active_sandbox_blocks_deleting_the_chat() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    h.store
        .upload_attachment(user, chat.chat_id, "a.txt", None, &b"abc"[..])
        .unwrap();
    h.store.start_sandbox(chat.chat_id).unwrap();
    let before = h.snapshot();

    assert_eq!(
        h.store.delete_chat(user, chat.chat_id),
        Err(Error::ChatHasActiveSandbox(chat.chat_id))
    );
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.store.get_chat(user, chat.chat_id).unwrap(), chat);

    h.store.end_sandbox(chat.chat_id).unwrap();
    h.store.delete_chat(user, chat.chat_id).unwrap();
    assert!(!h.chat_dir(&chat).exists());
}

#[test]
fn a_started_sandbox_is_told_its_working_directory_and_the_room_left() {
    let h = Harness::with_quota(10_000);
    let (user, chat) = h.user_with_chat();
    h.store
        .upload_attachment(user, chat.chat_id, "a.txt", None, &[1u8; 2_500][..])
        .unwrap();
    let started = h.store.start_sandbox(chat.chat_id).unwrap();
    assert_eq!(started.chat_id, chat.chat_id);
    let working_dir = std::path::PathBuf::from(started.working_dir.clone().unwrap());
    assert!(working_dir.is_absolute(), "{working_dir:?}");
    assert_eq!(
        working_dir,
        fs::canonicalize(h.chat_dir(&chat)).unwrap(),
        "the chat's own directory"
    );
    assert_eq!(fs::read(working_dir.join("a.txt")).unwrap(), [1u8; 2_500]);
    assert_eq!(started.room_bytes, 10_000 - 2_500);
    // The session it answers is the one that blocks deletes.
    assert_eq!(
        h.store.delete_chat(user, chat.chat_id),
        Err(Error::ChatHasActiveSandbox(chat.chat_id))
    );
    assert_eq!(
        h.store
            .end_sandbox(chat.chat_id)
            .unwrap()
            .map(|end| end.session()),
        Some(started.session())
    );
}

#[test]
fn a_sandbox_in_a_workspace_past_its_quota_has_no_room() {
    let h = Harness::with_quota(1_000);
    let (user, chat) = h.user_with_chat();
    h.store.start_sandbox(chat.chat_id).unwrap();
    fs::write(h.chat_dir(&chat).join("out.bin"), [0u8; 1_500]).unwrap();
    h.store.end_sandbox(chat.chat_id).unwrap();
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 1_500);
    assert_eq!(h.store.start_sandbox(chat.chat_id).unwrap().room_bytes, 0);
}

#[test]
fn a_sandbox_cannot_start_on_a_missing_chat() {
    let h = Harness::new();
    let missing = Uuid::now_v7();
    assert_eq!(
        h.store.start_sandbox(missing),
        Err(Error::ChatNotFound(missing))
    );
}

// ---- ownership ----

#[test]
fn another_user_can_neither_see_nor_touch_a_chat() {
    let h = Harness::new();
    let (alice, chat) = h.user_with_chat();
    let c = chat.chat_id;
    h.store
        .write_history(alice, c, "# private\n".as_bytes())
        .unwrap();
    let file = h
        .store
        .upload_attachment(alice, c, "secret.txt", None, &b"alice only"[..])
        .unwrap();
    let f = file.file_id;
    let bob = Uuid::now_v7();
    h.store.ensure_workspace(bob).unwrap();
    let before = h.snapshot();
    let s = &h.store;

    assert!(s.list_chats(bob).unwrap().is_empty());
    assert_eq!(s.get_chat(bob, c), Err(Error::ChatNotFound(c)));
    assert_eq!(history(s, bob, c), Err(Error::ChatNotFound(c)));
    assert_eq!(
        s.write_history(bob, c, "mine".as_bytes()),
        Err(Error::ChatNotFound(c))
    );
    assert_eq!(
        s.append_history(bob, c, "mine".as_bytes()),
        Err(Error::ChatNotFound(c))
    );
    assert_eq!(
        s.upload_attachment(bob, c, "x", None, &b"x"[..])
            .unwrap_err(),
        Error::ChatNotFound(c)
    );
    assert_eq!(s.list_attachments(bob, c), Err(Error::ChatNotFound(c)));
    assert_eq!(s.get_attachment(bob, c, f), Err(Error::ChatNotFound(c)));
    assert_eq!(attachment(s, bob, c, f), Err(Error::ChatNotFound(c)));
    assert_eq!(s.delete_attachment(bob, c, f), Err(Error::ChatNotFound(c)));
    assert_eq!(s.clear_attachments(bob, c), Err(Error::ChatNotFound(c)));
    assert_eq!(s.delete_chat(bob, c), Err(Error::ChatNotFound(c)));

    // Bob's own chat cannot reach Alice's file either.
    let bobs = s.create_chat(bob).unwrap();
    assert_eq!(
        s.get_attachment(bob, bobs.chat_id, f),
        Err(Error::ChatFileNotFound(f))
    );
    assert_eq!(
        attachment(s, bob, bobs.chat_id, f),
        Err(Error::ChatFileNotFound(f))
    );
    assert_eq!(
        s.delete_attachment(bob, bobs.chat_id, f),
        Err(Error::ChatFileNotFound(f))
    );

    let after: Vec<_> = h
        .snapshot()
        .into_iter()
        .filter(|(p, _)| before.contains_key(p))
        .collect();
    assert_eq!(after, before.into_iter().collect::<Vec<_>>());
    assert_eq!(attachment(s, alice, c, f).unwrap(), b"alice only");
    assert_eq!(history(s, alice, c).unwrap(), "# private\n");
}

#[test]
fn a_file_of_another_chat_of_the_same_user_is_not_found() {
    let h = Harness::new();
    let (user, one) = h.user_with_chat();
    let two = h.store.create_chat(user).unwrap();
    let file = h
        .store
        .upload_attachment(user, one.chat_id, "a", None, &b"x"[..])
        .unwrap();
    let f = file.file_id;
    assert_eq!(
        h.store.get_attachment(user, two.chat_id, f),
        Err(Error::ChatFileNotFound(f))
    );
    assert_eq!(
        h.store.delete_attachment(user, two.chat_id, f),
        Err(Error::ChatFileNotFound(f))
    );
    assert!(h.chat_dir(&one).join("a").is_file());
}

// ---- history ----

#[test]
fn history_is_written_appended_and_read_back_from_history_md() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let path = h.chat_dir(&chat).join("history.md");
    h.store
        .write_history(user, chat.chat_id, "# Chat\n".as_bytes())
        .unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "# Chat\n");
    h.store
        .append_history(user, chat.chat_id, "**user:** hi\n".as_bytes())
        .unwrap();
    h.store
        .append_history(user, chat.chat_id, "**agent:** hello ✓\n".as_bytes())
        .unwrap();
    let expected = "# Chat\n**user:** hi\n**agent:** hello ✓\n";
    assert_eq!(fs::read_to_string(&path).unwrap(), expected);
    assert_eq!(history(&h.store, user, chat.chat_id).unwrap(), expected);
    h.store
        .write_history(user, chat.chat_id, "".as_bytes())
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"");
}

// ---- attachments ----

#[test]
fn an_upload_puts_the_bytes_in_the_chat_directory() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    h.set_time(5);
    let content: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let file = h
        .store
        .upload_attachment(
            user,
            chat.chat_id,
            "data.bin",
            Some("application/octet-stream"),
            &content[..],
        )
        .unwrap();
    assert_eq!(file.chat_id, chat.chat_id);
    assert_eq!(file.name.as_str(), "data.bin");
    assert_eq!(
        file.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(file.size_bytes, 100_000);
    assert_eq!(file.created_at.timestamp(), START + 5);
    assert_eq!(
        fs::read(h.chat_dir(&chat).join("data.bin")).unwrap(),
        content
    );
    assert_eq!(
        attachment(&h.store, user, chat.chat_id, file.file_id).unwrap(),
        content
    );
    assert_eq!(
        h.store
            .get_attachment(user, chat.chat_id, file.file_id)
            .unwrap(),
        file
    );
}

#[test]
fn replacing_a_name_gives_a_new_file_id_and_drops_the_old_file() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let c = chat.chat_id;
    let old = h
        .store
        .upload_attachment(user, c, "report.md", Some("text/markdown"), &b"old"[..])
        .unwrap();
    let new = h
        .store
        .upload_attachment(user, c, "report.md", None, &b"new and longer"[..])
        .unwrap();
    assert_ne!(old.file_id, new.file_id);
    assert_eq!(
        h.store.get_attachment(user, c, old.file_id),
        Err(Error::ChatFileNotFound(old.file_id))
    );
    assert_eq!(
        h.store.list_attachments(user, c).unwrap(),
        vec![new.clone()]
    );
    assert_eq!(new.content_type, None);
    let dir = h.chat_dir(&chat);
    assert_eq!(fs::read(dir.join("report.md")).unwrap(), b"new and longer");
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["history.md", "report.md"]);
}

#[test]
fn deleting_an_attachment_removes_its_bytes_and_metadata() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let file = h
        .store
        .upload_attachment(user, chat.chat_id, "a.txt", None, &b"abc"[..])
        .unwrap();
    h.store
        .delete_attachment(user, chat.chat_id, file.file_id)
        .unwrap();
    assert!(!h.chat_dir(&chat).join("a.txt").exists());
    assert_eq!(
        attachment(&h.store, user, chat.chat_id, file.file_id),
        Err(Error::ChatFileNotFound(file.file_id))
    );
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 0);
}

#[test]
fn bad_attachment_names_are_refused_with_their_codes_and_change_nothing() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let before = h.snapshot();
    let long = "n".repeat(256);
    let cases: [(&str, Error); 9] = [
        ("", Error::InvalidAttachmentName("".into())),
        (".", Error::InvalidAttachmentName(".".into())),
        ("..", Error::InvalidAttachmentName("..".into())),
        ("../x", Error::InvalidAttachmentName("../x".into())),
        (
            "/etc/passwd",
            Error::InvalidAttachmentName("/etc/passwd".into()),
        ),
        ("a\\b", Error::InvalidAttachmentName("a\\b".into())),
        ("a\0b", Error::InvalidAttachmentName("a\0b".into())),
        (&long, Error::InvalidAttachmentName(long.clone())),
        (
            "history.md",
            Error::ReservedAttachmentName("history.md".into()),
        ),
    ];
    for (name, expected) in cases {
        let got = h
            .store
            .upload_attachment(user, chat.chat_id, name, None, &b"payload"[..]);
        assert_eq!(got.unwrap_err(), expected, "{name:?}");
    }
    assert_eq!(h.snapshot(), before);
    assert!(
        h.store
            .list_attachments(user, chat.chat_id)
            .unwrap()
            .is_empty()
    );
    // 255 bytes is still a name.
    h.store
        .upload_attachment(user, chat.chat_id, &"n".repeat(255), None, &b"ok"[..])
        .unwrap();
}

#[test]
fn clearing_attachments_keeps_the_history_and_is_blocked_by_a_sandbox() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let c = chat.chat_id;
    h.store
        .write_history(user, c, "# kept\n".as_bytes())
        .unwrap();
    h.store
        .upload_attachment(user, c, "a", None, &b"1"[..])
        .unwrap();
    h.store
        .upload_attachment(user, c, "b", None, &b"2"[..])
        .unwrap();
    let dir = h.chat_dir(&chat);
    fs::create_dir(dir.join("out")).unwrap();
    fs::write(dir.join("out/plot.png"), b"sandbox output").unwrap();

    h.store.start_sandbox(c).unwrap();
    let before = h.snapshot();
    assert_eq!(
        h.store.clear_attachments(user, c),
        Err(Error::ChatHasActiveSandbox(c))
    );
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.store.list_attachments(user, c).unwrap().len(), 2);

    h.store.end_sandbox(c).unwrap();
    h.store.clear_attachments(user, c).unwrap();
    assert!(h.store.list_attachments(user, c).unwrap().is_empty());
    let left: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["history.md"]);
    assert_eq!(history(&h.store, user, c).unwrap(), "# kept\n");
}

// ---- quota ----

#[test]
fn usage_counts_every_byte_in_the_chat_directories_including_sandbox_files() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let other = h.store.create_chat(user).unwrap();
    h.store
        .write_history(user, chat.chat_id, "12345".as_bytes())
        .unwrap();
    h.store
        .upload_attachment(user, chat.chat_id, "a", None, &[0; 100][..])
        .unwrap();
    h.store
        .upload_attachment(user, other.chat_id, "b", None, &[0; 20][..])
        .unwrap();
    h.store.start_sandbox(chat.chat_id).unwrap();
    fs::create_dir_all(h.chat_dir(&chat).join("work/deep")).unwrap();
    fs::write(h.chat_dir(&chat).join("work/deep/out.csv"), [0u8; 1000]).unwrap();
    // A sandbox's work counts once its session ends.
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 5 + 100 + 20);
    h.store.end_sandbox(chat.chat_id).unwrap();
    let usage = h.store.get_usage(user).unwrap();
    assert_eq!(usage.used_bytes, 5 + 100 + 20 + 1000);
    assert_eq!(usage.quota_bytes, chatstore_host::DEFAULT_QUOTA_BYTES);
    // Another workspace's bytes are not counted.
    let (stranger, theirs) = h.user_with_chat();
    h.store
        .upload_attachment(stranger, theirs.chat_id, "c", None, &[0; 7][..])
        .unwrap();
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 1125);
    assert_eq!(h.store.get_usage(stranger).unwrap().used_bytes, 7);
}

#[test]
fn an_upload_past_the_quota_is_refused_and_leaves_disk_and_metadata_unchanged() {
    let h = Harness::with_quota(1000);
    let (user, chat) = h.user_with_chat();
    let workspace = h.store.get_workspace(user).unwrap();
    h.store
        .upload_attachment(user, chat.chat_id, "a", None, &[1; 600][..])
        .unwrap();
    let files_before = h.store.list_attachments(user, chat.chat_id).unwrap();
    let disk_before = h.snapshot();

    let refused = h
        .store
        .upload_attachment(user, chat.chat_id, "b", None, &[2; 401][..]);
    assert_eq!(
        refused.unwrap_err(),
        Error::WorkspaceQuotaExceeded(workspace.workspace_id)
    );
    let refused = h
        .store
        .append_history(user, chat.chat_id, "x".repeat(401).as_bytes());
    assert_eq!(
        refused,
        Err(Error::WorkspaceQuotaExceeded(workspace.workspace_id))
    );
    let refused = h
        .store
        .write_history(user, chat.chat_id, "x".repeat(401).as_bytes());
    assert_eq!(
        refused,
        Err(Error::WorkspaceQuotaExceeded(workspace.workspace_id))
    );

    assert_eq!(h.snapshot(), disk_before);
    assert_eq!(
        h.store.list_attachments(user, chat.chat_id).unwrap(),
        files_before
    );
    // Exactly up to the quota still fits.
    h.store
        .upload_attachment(user, chat.chat_id, "b", None, &[2; 400][..])
        .unwrap();
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 1000);
}

#[test]
fn the_quota_is_counted_net_of_the_replaced_file() {
    let h = Harness::with_quota(1000);
    let (user, chat) = h.user_with_chat();
    h.store
        .upload_attachment(user, chat.chat_id, "a", None, &[1; 900][..])
        .unwrap();
    // 900 used: 1000 more would not fit as a new file, but does as a replacement.
    assert_eq!(
        code(
            h.store
                .upload_attachment(user, chat.chat_id, "b", None, &[2; 1000][..])
        ),
        "workspace_quota_exceeded"
    );
    h.store
        .upload_attachment(user, chat.chat_id, "a", None, &[2; 1000][..])
        .unwrap();
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 1000);
    assert_eq!(
        fs::read(h.chat_dir(&chat).join("a")).unwrap(),
        vec![2; 1000]
    );
}

#[test]
fn shrinking_writes_pass_even_when_a_sandbox_pushed_the_workspace_over_quota() {
    let h = Harness::with_quota(1000);
    let (user, chat) = h.user_with_chat();
    let c = chat.chat_id;
    h.store
        .upload_attachment(user, c, "a", None, &[1; 300][..])
        .unwrap();
    h.store
        .write_history(user, c, "h".repeat(100).as_bytes())
        .unwrap();
    // The sandbox writes past the quota behind the store's back.
    h.store.start_sandbox(c).unwrap();
    fs::write(h.chat_dir(&chat).join("sandbox.bin"), vec![0u8; 2000]).unwrap();
    h.store.end_sandbox(c).unwrap();
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 2400);

    h.store
        .upload_attachment(user, c, "a", None, &[1; 10][..])
        .unwrap();
    h.store.write_history(user, c, "short".as_bytes()).unwrap();
    assert_eq!(
        code(h.store.upload_attachment(user, c, "new", None, &b"x"[..])),
        "workspace_quota_exceeded"
    );
    assert_eq!(
        code(h.store.append_history(user, c, "x".as_bytes())),
        "workspace_quota_exceeded"
    );
    // Empty writes never grow anything.
    h.store
        .upload_attachment(user, c, "empty", None, &b""[..])
        .unwrap();
    h.store.append_history(user, c, "".as_bytes()).unwrap();
}

// ---- the host survives the guest ----

#[test]
fn content_never_enters_the_guest_so_its_memory_does_not_grow_with_it() {
    const SIZE: u64 = 512 << 20;
    let h = Harness::with(|b| b.max_guest_memory(16 << 20));
    let (user, chat) = h.user_with_chat();
    // 512 MiB, streamed from a reader that holds none of it.
    let content = std::io::Read::take(std::io::repeat(7), SIZE);
    let file = h
        .store
        .upload_attachment(user, chat.chat_id, "big.bin", None, content)
        .unwrap();
    assert_eq!(file.size_bytes, SIZE);
    let (_, mut served) = h
        .store
        .read_attachment(user, chat.chat_id, file.file_id)
        .unwrap();
    assert_eq!(served.len(), SIZE);
    let mut digest = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut read = 0;
    loop {
        let n = std::io::Read::read(&mut served, &mut buffer).unwrap();
        if n == 0 {
            break;
        }
        assert!(buffer[..n].iter().all(|&b| b == 7));
        digest.update(&buffer[..n]);
        read += n as u64;
    }
    assert_eq!(read, SIZE);
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(file.sha256.as_deref(), Some(hex.as_str()));
}

/// The bytes in regular files under the user's workspace directory.
fn bytes_on_disk(h: &Harness, user: Uuid) -> u64 {
    fn under(dir: &std::path::Path) -> u64 {
        fs::read_dir(dir).map_or(0, |entries| {
            entries
                .map(|e| e.unwrap())
                .map(|e| match e.file_type().unwrap() {
                    t if t.is_dir() => under(&e.path()),
                    t if t.is_file() => e.metadata().unwrap().len(),
                    _ => 0,
                })
                .sum()
        })
    }
    let workspace = h.store.get_workspace(user).unwrap();
    under(
        &h.data_dir()
            .join(format!("workspaces/{}", workspace.workspace_id)),
    )
}

#[test]
fn the_usage_ledger_follows_every_kind_of_write() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let (c, other) = (chat.chat_id, h.store.create_chat(user).unwrap().chat_id);
    let agrees = |after: &str| {
        assert_eq!(
            h.store.get_usage(user).unwrap().used_bytes,
            bytes_on_disk(&h, user),
            "after {after}"
        );
    };
    let a = h
        .store
        .upload_attachment(user, c, "a", None, &[1; 100][..])
        .unwrap();
    agrees("an upload");
    h.store
        .upload_attachment(user, c, "a", None, &[2; 40][..])
        .unwrap();
    agrees("a replacing upload");
    let b = h
        .store
        .upload_attachment(user, other, "b", None, &[3; 30][..])
        .unwrap();
    h.store
        .write_history(user, c, &b"0123456789\n"[..])
        .unwrap();
    agrees("a history write");
    h.store.write_history(user, c, &b"short\n"[..]).unwrap();
    agrees("a shrinking history write");
    h.store.append_history(user, c, &b"more\n"[..]).unwrap();
    agrees("an append");
    h.store.delete_attachment(user, other, b.file_id).unwrap();
    agrees("a deleted attachment");
    h.store
        .upload_attachment(user, c, "z", None, &[4; 9][..])
        .unwrap();
    h.store.clear_attachments(user, c).unwrap();
    agrees("cleared attachments");
    assert!(h.store.get_attachment(user, c, a.file_id).is_err());
    h.store
        .upload_attachment(user, other, "kept", None, &[5; 7][..])
        .unwrap();
    h.store.delete_chat(user, c).unwrap();
    agrees("a deleted chat");
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 7);
}

#[test]
fn bytes_written_behind_the_ledger_count_after_a_recount_and_fsck_reports_them() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    h.store
        .upload_attachment(user, chat.chat_id, "a", None, &[1; 10][..])
        .unwrap();
    fs::write(h.chat_dir(&chat).join("behind.bin"), [0u8; 500]).unwrap();
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 10);

    let report = chatstore_host::fsck::fsck(&h.backend(), false, |_| {}).unwrap();
    assert_eq!(report.usage_drift.len(), 1, "{report:?}");
    assert_eq!(report.usage_drift[0].ledger_bytes, 10);
    assert_eq!(report.usage_drift[0].on_disk_bytes, 510);
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 10);

    assert_eq!(h.store.recount_usage(user).unwrap().used_bytes, 510);
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 510);
    let report = chatstore_host::fsck::fsck(&h.backend(), false, |_| {}).unwrap();
    assert!(report.usage_drift.is_empty(), "{report:?}");
    assert_eq!(
        code(h.store.recount_usage(Uuid::now_v7())),
        "workspace_not_found"
    );
}

#[test]
fn content_staged_by_one_store_survives_another_opening_the_data_directory() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    // A server is streaming an upload into staging…
    let mut writer = h
        .store
        .staging()
        .begin(chatstore_host::ContentKind::Bytes, 1 << 20)
        .unwrap();
    writer.push(b"on its way in").unwrap();
    // …when a command opens the same data directory (and recovers it).
    let command = chatstore_host::ChatStore::builder()
        .data_dir(h.data_dir())
        .build()
        .unwrap();
    assert_eq!(command.list_chats(user).unwrap().len(), 1);
    let staged = writer.finish().unwrap();
    let file = h
        .store
        .upload_staged(user, chat.chat_id, "in.bin", None, staged)
        .unwrap();
    assert_eq!(
        attachment(&command, user, chat.chat_id, file.file_id).unwrap(),
        b"on its way in"
    );
}

#[test]
fn concurrent_appends_are_each_counted_once() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let h = &h;
            scope.spawn(move || {
                for i in 0..5 {
                    let line = format!("line {:04}\n", t * 5 + i);
                    h.store
                        .append_history(user, chat.chat_id, line.as_bytes())
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 400);
}

// ---- per-workspace quotas ----

#[test]
fn a_workspace_quota_of_its_own_holds_for_that_workspace_only() {
    let h = Harness::with_quota(10_000);
    let (user, chat) = h.user_with_chat();
    let (other, other_chat) = h.user_with_chat();
    assert_eq!(
        h.store.set_quota(user, Some(3_000)).unwrap().quota_bytes,
        3_000
    );
    let before = h.snapshot();
    assert_eq!(
        h.store
            .upload_attachment(user, chat.chat_id, "big.bin", None, &[0u8; 4_000][..])
            .map(drop),
        Err(Error::WorkspaceQuotaExceeded(chat.workspace_id))
    );
    assert_eq!(h.snapshot(), before, "a refused write leaves nothing");
    h.store
        .upload_attachment(
            other,
            other_chat.chat_id,
            "big.bin",
            None,
            &[0u8; 4_000][..],
        )
        .unwrap();

    // Kept across a restart, and cleared back to the configured quota.
    let reopened = ChatStore::builder()
        .data_dir(h.data_dir())
        .quota_bytes(10_000)
        .build()
        .unwrap();
    assert_eq!(reopened.get_usage(user).unwrap().quota_bytes, 3_000);
    assert_eq!(reopened.set_quota(user, None).unwrap().quota_bytes, 10_000);
    reopened
        .upload_attachment(user, chat.chat_id, "big.bin", None, &[0u8; 4_000][..])
        .unwrap();
}

#[test]
fn a_quota_below_the_usage_refuses_growth_and_lets_shrinking_writes_pass() {
    let h = Harness::with_quota(10_000);
    let (user, chat) = h.user_with_chat();
    let file = h
        .store
        .upload_attachment(user, chat.chat_id, "a.bin", None, &[0u8; 5_000][..])
        .unwrap();
    let usage = h.store.set_quota(user, Some(1_000)).unwrap();
    assert_eq!((usage.used_bytes, usage.quota_bytes), (5_000, 1_000));
    assert_eq!(
        h.store
            .append_history(user, chat.chat_id, &b"more"[..])
            .map(drop),
        Err(Error::WorkspaceQuotaExceeded(chat.workspace_id))
    );
    h.store
        .delete_attachment(user, chat.chat_id, file.file_id)
        .unwrap();
    h.store
        .append_history(user, chat.chat_id, &b"more"[..])
        .unwrap();
}

#[test]
fn a_quota_for_a_user_without_a_workspace_is_workspace_not_found() {
    let h = Harness::new();
    let nobody = Uuid::now_v7();
    assert_eq!(
        h.store.set_quota(nobody, Some(1)),
        Err(Error::WorkspaceNotFound(nobody))
    );
}

// ---- pages ----

#[test]
fn pages_of_chats_walk_them_in_created_order_and_stop_at_the_end() {
    let h = Harness::new();
    let (user, first) = h.user_with_chat();
    let mut chats = vec![first];
    for offset in 1..7 {
        // Created in a different order than the ids would sort: the page
        // order is the list's, (created_at, id).
        h.set_time(100 - offset * 10);
        chats.push(h.store.create_chat(user).unwrap());
    }
    let all = h.store.list_chats(user).unwrap();
    assert_eq!(all.len(), 7);
    let (mut walked, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = h
            .store
            .list_chats_page(user, &PageRequest::new(Some(3), after).unwrap())
            .unwrap();
        pages += 1;
        walked.extend(page.data.iter().cloned());
        after = page.last_id;
        if !page.has_more {
            break;
        }
    }
    assert_eq!((walked, pages), (all, 3));
}

#[test]
fn a_page_after_another_users_chat_is_after_not_found() {
    let h = Harness::new();
    let (alice, _) = h.user_with_chat();
    let (_, bobs) = h.user_with_chat();
    let page = PageRequest::new(None, Some(bobs.chat_id)).unwrap();
    assert_eq!(
        h.store.list_chats_page(alice, &page),
        Err(Error::AfterNotFound(bobs.chat_id))
    );
}

#[test]
fn pages_of_files_are_in_upload_order() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let ids: Vec<Uuid> = (0..5)
        .map(|i| {
            h.set_time(i);
            h.store
                .upload_attachment(user, chat.chat_id, &format!("f{i}"), None, &b"x"[..])
                .unwrap()
                .file_id
        })
        .collect();
    let page = PageRequest::new(Some(2), Some(ids[1])).unwrap();
    let page = h
        .store
        .list_attachments_page(user, chat.chat_id, &page)
        .unwrap();
    let got: Vec<Uuid> = page.data.iter().map(|f| f.file_id).collect();
    assert_eq!(
        (got, page.has_more, page.last_id),
        (ids[2..4].to_vec(), true, Some(ids[3]))
    );
}

// ---- sandbox outputs ----

#[test]
fn files_a_sandbox_leaves_become_attachments_and_the_rest_is_reported() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let data = h
        .store
        .upload_attachment(
            user,
            chat.chat_id,
            "data.csv",
            Some("text/csv"),
            &b"1,2\n"[..],
        )
        .unwrap();
    let kept = h
        .store
        .upload_attachment(user, chat.chat_id, "kept.txt", None, &b"same"[..])
        .unwrap();
    h.store.start_sandbox(chat.chat_id).unwrap();
    let dir = h.chat_dir(&chat);
    fs::write(dir.join("plot.png"), b"\x89PNG pixels").unwrap();
    fs::write(dir.join("data.csv"), b"1,2\n3,4\n").unwrap();
    fs::write(dir.join("HISTORY.md"), b"reserved").unwrap();
    fs::write(dir.join(" padded"), b"invalid").unwrap();
    fs::create_dir(dir.join("out")).unwrap();
    fs::write(dir.join("out/inner.txt"), b"nested").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();

    let end = h.store.end_sandbox(chat.chat_id).unwrap().unwrap();

    let mut registered: Vec<(String, Option<String>, u64)> = end
        .registered
        .iter()
        .map(|f| (f.name.to_string(), f.content_type.clone(), f.size_bytes))
        .collect();
    registered.sort();
    assert_eq!(
        registered,
        [
            ("data.csv".into(), Some("text/csv".into()), 8),
            ("plot.png".into(), Some("image/png".into()), 11),
        ]
    );
    let mut unregistered: Vec<(String, String)> = end
        .unregistered
        .iter()
        .map(|u| (u.name.clone(), u.reason.clone()))
        .collect();
    unregistered.sort();
    assert_eq!(
        unregistered,
        [
            (" padded".into(), "invalid_attachment_name".into()),
            ("HISTORY.md".into(), "reserved_attachment_name".into()),
            ("link".into(), "not_a_regular_file".into()),
            ("out".into(), "not_a_regular_file".into()),
        ]
    );
    // Listed and served like uploads; the changed file keeps its id.
    let files = h.store.list_attachments(user, chat.chat_id).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let changed = files
        .iter()
        .find(|f| f.name.as_str() == "data.csv")
        .unwrap();
    assert_eq!(
        (changed.file_id, changed.created_at, changed.size_bytes),
        (data.file_id, data.created_at, 8)
    );
    assert!(
        files.contains(&kept),
        "unchanged keeps its record as it was"
    );
    let plot = end
        .registered
        .iter()
        .find(|f| f.name.as_str() == "plot.png")
        .unwrap();
    assert_eq!(
        plot.sha256.as_deref(),
        Some(format!("{:x}", Sha256::digest(b"\x89PNG pixels")).as_str())
    );
    assert_eq!(
        attachment(&h.store, user, chat.chat_id, plot.file_id).unwrap(),
        b"\x89PNG pixels"
    );
    // What was not registered is where the sandbox left it.
    assert_eq!(fs::read(dir.join("HISTORY.md")).unwrap(), b"reserved");

    // A session that changes nothing registers nothing.
    h.store.start_sandbox(chat.chat_id).unwrap();
    let again = h.store.end_sandbox(chat.chat_id).unwrap().unwrap();
    assert!(again.registered.is_empty(), "{again:?}");
}

#[test]
fn outputs_of_a_sandbox_that_pushed_the_workspace_over_quota_are_not_registered() {
    let h = Harness::with_quota(1_000);
    let (user, chat) = h.user_with_chat();
    h.store.start_sandbox(chat.chat_id).unwrap();
    fs::write(h.chat_dir(&chat).join("huge.bin"), [0u8; 1_500]).unwrap();
    let end = h.store.end_sandbox(chat.chat_id).unwrap().unwrap();
    assert!(end.registered.is_empty());
    assert_eq!(end.unregistered.len(), 1);
    assert_eq!(end.unregistered[0].reason, "workspace_quota_exceeded");
    assert!(
        h.store
            .list_attachments(user, chat.chat_id)
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 1_500);
    // Back under the quota, the next session's end registers it.
    h.store.set_quota(user, Some(2_000)).unwrap();
    h.store.start_sandbox(chat.chat_id).unwrap();
    let end = h.store.end_sandbox(chat.chat_id).unwrap().unwrap();
    assert_eq!(end.registered.len(), 1);
}

#[test]
fn metadata_reads_wait_for_no_writer() {
    let h = Harness::new();
    let user = Uuid::now_v7();
    h.store.ensure_workspace(user).unwrap();
    let chat = h.store.create_chat(user).unwrap();
    // The user's writer is under way: it holds the user's lock until told.
    let (holding, held) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let writer = {
        let store = h.store.clone();
        std::thread::spawn(move || {
            store.with_ports(Access::Write, Scope::User(user), |_, _| {
                holding.send(()).unwrap();
                // Not a timing check: a watchdog, should a read wait here.
                Ok(released
                    .recv_timeout(std::time::Duration::from_secs(300))
                    .is_ok())
            })
        })
    };
    held.recv().unwrap();
    // Metadata comes from the metadata store's snapshot, without the lock.
    assert_eq!(h.store.get_chat(user, chat.chat_id), Ok(chat.clone()));
    assert_eq!(h.store.list_chats(user), Ok(vec![chat.clone()]));
    assert!(h.store.get_workspace(user).is_ok());
    assert_eq!(h.store.list_attachments(user, chat.chat_id), Ok(vec![]));
    release.send(()).unwrap();
    assert_eq!(
        writer.join().unwrap(),
        Ok(true),
        "a metadata read waited for the writer"
    );
    assert_eq!(history(&h.store, user, chat.chat_id).unwrap(), "");
}
