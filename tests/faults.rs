//! Every use case, with a port failure injected at every position of its
//! port calls: each answers `storage_unavailable` and leaves metadata and
//! the data directory exactly as they were.

use chatstore_host::unit::{Access, Scope};
use chatstore_host::{Chat, ChatFile, Error, Uuid};
use chatstore_testkit::faults::{Fault, FaultInjector};
use chatstore_tests::{Harness, attachment, history};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The state a use case starts from.
struct World {
    h: Harness,
    faults: Arc<FaultInjector>,
    user: Uuid,
    chat: Chat,
    other_chat: Chat,
    file: ChatFile,
}

fn world() -> World {
    let (h, faults) = Harness::with_faults();
    let (user, chat) = h.user_with_chat();
    let other_chat = h.store.create_chat(user).unwrap();
    h.store
        .write_history(user, chat.chat_id, "# history\n".as_bytes())
        .unwrap();
    let file = h
        .store
        .upload_attachment(user, chat.chat_id, "a.txt", Some("text/plain"), &b"abc"[..])
        .unwrap();
    h.store
        .upload_attachment(user, other_chat.chat_id, "b.txt", None, &b"bee"[..])
        .unwrap();
    World {
        h,
        faults,
        user,
        chat,
        other_chat,
        file,
    }
}

/// Everything a use case could change: the files and every metadata row.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    disk: BTreeMap<PathBuf, Vec<u8>>,
    chats: Vec<String>,
    files: Vec<String>,
    workspace: String,
    sandboxes: Vec<String>,
}

fn fingerprint(w: &World) -> Fingerprint {
    w.faults.clear();
    let (chats, files, workspace, sandboxes) =
        w.h.store
            .with_ports(Access::Read, Scope::All, |p, records| {
                let mut chats: Vec<String> = records
                    .all_chats()
                    .unwrap()
                    .iter()
                    .map(|c| format!("{c:?}"))
                    .collect();
                let mut files: Vec<String> = records
                    .all_files()
                    .unwrap()
                    .iter()
                    .map(|f| format!("{f:?}"))
                    .collect();
                chats.sort();
                files.sort();
                let workspace = format!("{:?}", p.workspaces.get_by_user_id(w.user).unwrap());
                let sandboxes = [w.chat.chat_id, w.other_chat.chat_id]
                    .iter()
                    .map(|c| format!("{:?}", p.sandboxes.get_active_by_chat_id(*c).unwrap()))
                    .collect();
                Ok((chats, files, workspace, sandboxes))
            })
            .unwrap();
    Fingerprint {
        disk: w.h.snapshot(),
        chats,
        files,
        workspace,
        sandboxes,
    }
}

type UseCase = fn(&World) -> Result<(), Error>;

fn use_cases() -> Vec<(&'static str, UseCase)> {
    vec![
        ("ensure-workspace (new)", |w| {
            w.h.store.ensure_workspace(Uuid::now_v7()).map(drop)
        }),
        ("ensure-workspace (existing)", |w| {
            w.h.store.ensure_workspace(w.user).map(drop)
        }),
        ("get-workspace", |w| {
            w.h.store.get_workspace(w.user).map(drop)
        }),
        ("get-usage", |w| w.h.store.get_usage(w.user).map(drop)),
        ("create-chat", |w| w.h.store.create_chat(w.user).map(drop)),
        ("list-chats", |w| w.h.store.list_chats(w.user).map(drop)),
        ("get-chat", |w| {
            w.h.store.get_chat(w.user, w.chat.chat_id).map(drop)
        }),
        ("delete-chat", |w| {
            w.h.store.delete_chat(w.user, w.other_chat.chat_id)
        }),
        ("read-history", |w| {
            history(&w.h.store, w.user, w.chat.chat_id).map(drop)
        }),
        ("write-history", |w| {
            w.h.store
                .write_history(w.user, w.chat.chat_id, "# new\n".as_bytes())
        }),
        ("append-history", |w| {
            w.h.store
                .append_history(w.user, w.chat.chat_id, "more\n".as_bytes())
        }),
        ("upload-attachment (new)", |w| {
            w.h.store
                .upload_attachment(w.user, w.chat.chat_id, "new.bin", None, &[7; 5000][..])
                .map(drop)
        }),
        ("upload-attachment (replace)", |w| {
            w.h.store
                .upload_attachment(w.user, w.chat.chat_id, "a.txt", None, &b"replaced"[..])
                .map(drop)
        }),
        ("list-attachments", |w| {
            w.h.store.list_attachments(w.user, w.chat.chat_id).map(drop)
        }),
        ("get-attachment", |w| {
            w.h.store
                .get_attachment(w.user, w.chat.chat_id, w.file.file_id)
                .map(drop)
        }),
        ("read-attachment", |w| {
            attachment(&w.h.store, w.user, w.chat.chat_id, w.file.file_id).map(drop)
        }),
        ("delete-attachment", |w| {
            w.h.store
                .delete_attachment(w.user, w.chat.chat_id, w.file.file_id)
        }),
        ("clear-attachments", |w| {
            w.h.store.clear_attachments(w.user, w.chat.chat_id)
        }),
        ("start-sandbox", |w| {
            w.h.store.start_sandbox(w.chat.chat_id).map(drop)
        }),
    ]
}

#[test]
fn a_failure_at_any_port_call_of_any_use_case_changes_nothing() {
    let mut positions = 0;
    let mut report = Vec::new();
    for (name, use_case) in use_cases() {
        let w = world();
        let before = fingerprint(&w);
        let mut n = 1;
        loop {
            let fault = Fault::ALL[n % Fault::ALL.len()];
            w.faults.fail_nth(None, n, fault);
            let result = use_case(&w);
            if !w.faults.fired() {
                // The use case makes fewer than n port calls: it ran to the end.
                assert!(result.is_ok(), "{name} without a fault: {result:?}");
                break;
            }
            let calls = w.faults.calls();
            match result {
                Err(Error::StorageUnavailable { port, message }) => {
                    assert_eq!(port, calls[n - 1], "{name} #{n}: the failing port is named");
                    assert!(message.starts_with("injected"), "{name} #{n}: {message}");
                }
                other => panic!(
                    "{name}, failure at port call #{n} ({}): {other:?}",
                    calls[n - 1]
                ),
            }
            assert_eq!(
                fingerprint(&w),
                before,
                "{name}: failure at port call #{n} ({}) changed state",
                calls[n - 1]
            );
            n += 1;
        }
        positions += n - 1;
        report.push(format!("{name}: {}", n - 1));
        drop(w);
    }
    println!(
        "{} use cases × fault positions = {positions} failures injected: {}",
        report.len(),
        report.join(", ")
    );
    assert!(positions > 50);
}

#[test]
fn a_failure_of_one_chosen_port_is_reported_with_that_port() {
    let w = world();
    w.faults.fail_nth(Some("chat-storage"), 1, Fault::DiskFull);
    let err =
        w.h.store
            .upload_attachment(w.user, w.chat.chat_id, "c.txt", None, &b"x"[..])
            .unwrap_err();
    assert_eq!(
        err,
        Error::StorageUnavailable {
            port: "chat-storage".into(),
            message: "injected: no space left on device".into()
        }
    );
    w.faults.clear();
    assert_eq!(
        w.h.store
            .list_attachments(w.user, w.chat.chat_id)
            .unwrap()
            .len(),
        1
    );
    // The next call works.
    w.h.store
        .upload_attachment(w.user, w.chat.chat_id, "c.txt", None, &b"x"[..])
        .unwrap();
}

/// However many of the host's checks ask for a chat's row, a unit of work
/// reads it once (and again only after the guest saved or deleted a chat):
/// a call on a chat reads it once; a write that first finds the room its
/// content has, a call that first finds the chat's owner, and a new chat
/// (looked for, saved, then checked) read it twice.
#[test]
fn a_unit_of_work_reads_a_chats_row_once() {
    let twice = [
        "create-chat",
        "delete-chat",
        "write-history",
        "append-history",
        "upload-attachment (new)",
        "upload-attachment (replace)",
        "start-sandbox",
    ];
    let mut differ = Vec::new();
    for (name, use_case) in use_cases() {
        let w = world();
        w.faults.clear();
        use_case(&w).unwrap();
        let reads = (w.faults.calls().iter())
            .filter(|port| **port == "chat-repository")
            .count();
        let expected = match name {
            _ if twice.contains(&name) => 2,
            _ if name.contains("workspace") || name == "get-usage" => 0,
            _ => 1,
        };
        if reads != expected {
            differ.push(format!("{name}: {reads} reads, not {expected}"));
        }
    }
    assert!(differ.is_empty(), "{differ:#?}");
}
