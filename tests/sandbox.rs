//! The chat directory belongs to the sandbox: whatever a process can make
//! there costs at most the calls on that chat — a typed error or the right
//! answer — and never a hang, an abort, another user's write, a new
//! process's start or `fsck`.
//!
//! Every planting below is tried against every use case that touches the
//! chat; after each, a bystander reads and writes, a new store opens the
//! data directory (and recovers), and `fsck` runs.

use chatstore_host::fsck::fsck;
use chatstore_host::{Chat, ChatStore, Error};
use chatstore_tests::{Harness, attachment, history};
use rustix::fs::{CWD, FileType, Mode, OFlags};
use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;
use uuid::Uuid;

/// The attachment a planting stands in the way of.
const NAME: &str = "report.txt";

/// Long enough that only a hang reaches it.
const WATCHDOG: Duration = Duration::from_secs(600);

fn fifo(path: &Path) {
    rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
}

fn replace_with(path: &Path, make: impl FnOnce(&Path)) {
    let _ = fs::remove_file(path);
    make(path);
}

/// `depth` nested directories under `top`, made through descriptors (the
/// path would be far past `PATH_MAX`), with a file at the bottom.
fn deep_tree(top: &Path, depth: usize) {
    fs::create_dir(top).unwrap();
    let mut dir = rustix::fs::open(top, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    for _ in 0..depth {
        rustix::fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(&dir, "d", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
            .unwrap();
    }
    let file = rustix::fs::openat(
        &dir,
        "bottom",
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    rustix::io::write(&file, b"at the bottom").unwrap();
}

/// What a sandbox can do to its working directory, by name.
fn plant(planting: &str, chat_dir: &Path, outside: &Path, elsewhere: &Path) {
    let history = chat_dir.join("history.md");
    let report = chat_dir.join(NAME);
    match planting {
        "directory at an attachment's name" => {
            fs::create_dir_all(report.join("inner")).unwrap();
            fs::write(report.join("inner/work.py"), b"print(1)").unwrap();
        }
        "directory at history.md" => replace_with(&history, |p| fs::create_dir(p).unwrap()),
        "FIFO at history.md" => replace_with(&history, fifo),
        // The same device as /dev/zero: endless bytes to whoever reads it.
        "device node at history.md" => replace_with(&history, |p| {
            let zero = rustix::fs::makedev(1, 5);
            let mode = Mode::from_raw_mode(0o666);
            rustix::fs::mknodat(CWD, p, FileType::CharacterDevice, mode, zero).unwrap();
        }),
        "FIFO at an attachment's name" => replace_with(&report, fifo),
        "socket at an attachment's name" => replace_with(&report, |p| {
            let socket = rustix::net::socket(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::STREAM,
                None,
            )
            .unwrap();
            // A socket's path must be short: bound nearby, then moved in.
            let short = std::env::temp_dir().join(format!("{}.sock", Uuid::now_v7().simple()));
            rustix::net::bind(&socket, &rustix::net::SocketAddrUnix::new(&short).unwrap()).unwrap();
            fs::rename(&short, p).unwrap();
        }),
        "symlink history.md to outside" => replace_with(&history, |p| {
            std::os::unix::fs::symlink(outside, p).unwrap()
        }),
        "symlink to another chat's history" => replace_with(&report, |p| {
            std::os::unix::fs::symlink(elsewhere, p).unwrap()
        }),
        "symlink to itself" => {
            replace_with(&report, |p| std::os::unix::fs::symlink(NAME, p).unwrap())
        }
        "symlink directory to outside" => {
            std::os::unix::fs::symlink(outside.parent().unwrap(), chat_dir.join("out")).unwrap()
        }
        "hard link of history.md at an attachment's name" => {
            replace_with(&report, |p| fs::hard_link(&history, p).unwrap())
        }
        "sparse 100 GiB history" => fs::OpenOptions::new()
            .write(true)
            .open(&history)
            .unwrap()
            .set_len(100 << 30)
            .unwrap(),
        "10,000-deep tree" => deep_tree(&chat_dir.join("deep"), 10_000),
        "100,000 entries" => {
            fs::create_dir(chat_dir.join("wide")).unwrap();
            for i in 0..100_000 {
                fs::File::create(chat_dir.join(format!("wide/{i}"))).unwrap();
            }
        }
        other => panic!("no planting {other}"),
    }
}

/// Every use case that touches the chat, in an order that ends with its
/// deletion; each answer is recorded as `Ok` or the error's code.
fn use_cases(
    store: &ChatStore,
    user: Uuid,
    chat: &Chat,
    uploaded: Uuid,
) -> Vec<(&'static str, Result<(), Error>)> {
    let c = chat.chat_id;
    let mut answers = Vec::new();
    let mut record = |what, answer: Result<(), Error>| answers.push((what, answer));
    record("read-history", store.read_history(user, c).map(drop));
    record(
        "history tail",
        store.read_history(user, c).and_then(|content| {
            let len = content.len();
            let tail = content
                .range(len.saturating_sub(8), len.saturating_sub(1))
                .map_err(|e| Error::StorageUnavailable {
                    port: "test".into(),
                    message: e.to_string(),
                });
            if len == 0 { Ok(()) } else { tail.map(drop) }
        }),
    );
    record(
        "append-history",
        store.append_history(user, c, &b"\nnext message"[..]),
    );
    record(
        "read-attachment",
        store.read_attachment(user, c, uploaded).map(drop),
    );
    record(
        "upload",
        store
            .upload_attachment(user, c, NAME, None, &b"uploaded over it"[..])
            .map(drop),
    );
    record(
        "list-attachments",
        store.list_attachments(user, c).map(drop),
    );
    record("get-usage", store.get_usage(user).map(drop));
    record(
        "write-history",
        store.write_history(user, c, &b"rewritten"[..]),
    );
    record(
        "delete-attachment",
        store.delete_attachment(user, c, uploaded),
    );
    record("clear-attachments", store.clear_attachments(user, c));
    record("delete-chat", store.delete_chat(user, c));
    answers
}

/// What `planting` does to one chat, and that nobody else notices.
fn survives(planting: &'static str) -> Vec<(&'static str, Result<(), Error>)> {
    let (done, answers) = mpsc::channel();
    std::thread::spawn(move || {
        let h = Harness::with_quota(1 << 30);
        let (user, chat) = h.user_with_chat();
        let (bystander, theirs) = h.user_with_chat();
        h.store
            .append_history(bystander, theirs.chat_id, &b"mine"[..])
            .unwrap();
        let uploaded = h
            .store
            .upload_attachment(user, chat.chat_id, "a.txt", None, &b"a file"[..])
            .unwrap()
            .file_id;
        let outside = h.tmp.path().join("outside.txt");
        fs::write(&outside, b"outside the data directory").unwrap();
        let elsewhere = h.chat_dir(&theirs).join("history.md");
        // A sandbox session plants it; its end counts what it left.
        h.store.start_sandbox(chat.chat_id).unwrap();
        plant(planting, &h.chat_dir(&chat), &outside, &elsewhere);
        h.store.end_sandbox(chat.chat_id).unwrap();

        let answers = use_cases(&h.store, user, &chat, uploaded);

        // Nobody else noticed: the bystander reads and writes, a new
        // process opens the data directory, fsck runs, nothing outside moved.
        let bystander_file = h
            .store
            .upload_attachment(bystander, theirs.chat_id, "b.txt", None, &b"still mine"[..])
            .unwrap_or_else(|e| panic!("{planting}: the bystander's write failed: {e}"));
        assert_eq!(
            attachment(&h.store, bystander, theirs.chat_id, bystander_file.file_id).unwrap(),
            b"still mine"
        );
        h.store
            .append_history(bystander, theirs.chat_id, &b" and more"[..])
            .unwrap();
        assert_eq!(
            history(&h.store, bystander, theirs.chat_id).unwrap(),
            "mine and more"
        );
        let reopened = ChatStore::builder()
            .data_dir(h.data_dir())
            .build()
            .unwrap_or_else(|e| panic!("{planting}: a new process cannot start: {e}"));
        assert_eq!(
            history(&reopened, bystander, theirs.chat_id).unwrap(),
            "mine and more"
        );
        let report = fsck(&h.backend(), false, |_| {})
            .unwrap_or_else(|e| panic!("{planting}: fsck failed: {e}"));
        assert!(report.is_clean(), "{planting}: {report:?}");
        assert_eq!(fs::read(&outside).unwrap(), b"outside the data directory");
        let _ = done.send(answers);
    });
    answers
        .recv_timeout(WATCHDOG)
        .unwrap_or_else(|_| panic!("{planting}: a call hung or the checks failed"))
}

fn code(answer: &Result<(), Error>) -> String {
    match answer {
        Ok(()) => "ok".into(),
        Err(Error::StorageUnavailable { port, .. }) => format!("storage_unavailable ({port})"),
        Err(e) => e.code().into(),
    }
}

/// The answers by use case, for the assertions and for the test's output.
fn answers_of(planting: &'static str) -> std::collections::BTreeMap<&'static str, String> {
    let answers = survives(planting);
    for (what, answer) in &answers {
        println!("{planting}: {what}: {answer:?}");
        // A trap is the policy's failure, never what a planting may cause.
        assert!(
            !matches!(answer, Err(Error::StorageUnavailable { port, .. }) if port == "guest"),
            "{planting}: {what}: {answer:?}"
        );
    }
    answers
        .iter()
        .map(|(what, answer)| (*what, code(answer)))
        .collect()
}

#[test]
fn a_directory_at_an_attachments_name_is_moved_aside_by_the_upload_that_needs_the_name() {
    let answers = answers_of("directory at an attachment's name");
    assert!(answers.values().all(|a| a == "ok"), "{answers:?}");
}

#[test]
fn a_directory_at_history_md_is_a_typed_error_until_the_history_is_written() {
    let answers = answers_of("directory at history.md");
    assert_eq!(answers["read-history"], "chat_file_changed");
    assert_eq!(answers["write-history"], "ok");
    assert_eq!(answers["delete-chat"], "ok");
}

#[test]
fn a_fifo_at_history_md_never_blocks_a_read() {
    let answers = answers_of("FIFO at history.md");
    assert_eq!(answers["read-history"], "chat_file_changed");
    assert_eq!(answers["write-history"], "ok");
    assert_eq!(answers["delete-chat"], "ok");
}

#[test]
fn a_device_node_at_history_md_is_never_read() {
    // Making a device node needs CAP_MKNOD (root, as CI runs).
    let probe = tempfile::tempdir().unwrap();
    let made = rustix::fs::mknodat(
        CWD,
        probe.path().join("probe"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o600),
        rustix::fs::makedev(1, 5),
    );
    if made == Err(rustix::io::Errno::PERM) {
        println!("skipped: this user may not make device nodes");
        return;
    }
    let answers = answers_of("device node at history.md");
    assert_eq!(answers["read-history"], "chat_file_changed");
    assert_eq!(answers["write-history"], "ok");
    assert_eq!(answers["delete-chat"], "ok");
}

#[test]
fn a_fifo_or_socket_at_an_attachments_name_is_replaced_by_the_upload() {
    for planting in [
        "FIFO at an attachment's name",
        "socket at an attachment's name",
    ] {
        let answers = answers_of(planting);
        assert_eq!(answers["upload"], "ok", "{planting}");
        assert_eq!(answers["delete-chat"], "ok", "{planting}");
    }
}

#[test]
fn symlinks_are_never_followed() {
    let answers = answers_of("symlink history.md to outside");
    assert_eq!(answers["read-history"], "chat_file_changed");
    assert_eq!(answers["write-history"], "ok");
    for planting in [
        "symlink to another chat's history",
        "symlink to itself",
        "symlink directory to outside",
    ] {
        let answers = answers_of(planting);
        assert_eq!(answers["upload"], "ok", "{planting}");
        assert_eq!(answers["delete-chat"], "ok", "{planting}");
    }
}

#[test]
fn a_hard_link_is_a_regular_file_of_the_chat() {
    let answers = answers_of("hard link of history.md at an attachment's name");
    assert!(answers.values().all(|a| a == "ok"), "{answers:?}");
}

#[test]
fn a_sparse_100_gib_history_is_served_in_bounded_memory_and_counts_against_the_quota() {
    let answers = answers_of("sparse 100 GiB history");
    assert_eq!(answers["read-history"], "ok");
    assert_eq!(answers["history tail"], "ok");
    assert_eq!(answers["append-history"], "workspace_quota_exceeded");
    assert_eq!(answers["upload"], "workspace_quota_exceeded");
    // Shrinking it is always allowed.
    assert_eq!(answers["write-history"], "ok");
    assert_eq!(answers["delete-chat"], "ok");
}

#[test]
fn a_ten_thousand_level_tree_is_walked_counted_and_removed() {
    let answers = answers_of("10,000-deep tree");
    assert!(answers.values().all(|a| a == "ok"), "{answers:?}");
}

#[test]
fn a_hundred_thousand_entries_are_walked_and_removed() {
    let answers = answers_of("100,000 entries");
    assert!(answers.values().all(|a| a == "ok"), "{answers:?}");
}
