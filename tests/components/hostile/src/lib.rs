//! A hostile policy component for the host's tests. `ensure-workspace`
//! picks the attack from the last digit of the user id:
//!
//! - `…1`: loops forever;
//! - `…2`: allocates without bound;
//! - `…3`: panics (a trap);
//! - `…4`: calls every port with hostile ids, names and values and answers
//!   `storage-unavailable` from port `report` with what the host let through.
//!
//! `delete-attachment(user, chat, workspace)` attacks another user's chat:
//! it reads, writes and deletes through every port with that chat's id and
//! its workspace's id (passed in the file-id slot), and reports the same way.
//!
//! `upload-attachment(user, chat, name, …, content)` abuses the staged
//! content it is given, in the user's own chat, ignoring the quota: a token
//! the host never issued, the content stored, then stored again under
//! another name, then a history and an append from the same token; and
//! reports what the host did with each.
//!
//! `clear-attachments(user, chat)` opens the chat's history for the host to
//! serve, then tries to open a second file in the same call, and reports.
//!
//! `delete-chat(user, chat)` deletes the chat's row, asks for the size of
//! its history, saves the row again, asks again, and reports each answer:
//! the host's checks must see the rows as the call left them.
//!
//! `get-chat(user, chat)` asks for the size of the chat's history (the
//! built-in policy reads metadata alone there), fails the call if the host
//! does not answer it, and otherwise answers as the built-in policy.
//!
//! `get-usage(user)` loops forever for a user id ending in `1`, as
//! `ensure-workspace` does; for anyone else it is the built-in policy's.
//!
//! Every other export is the built-in policy's. Native builds are empty.

#![cfg(target_arch = "wasm32")]

use chatstore_guest::component::imports::{
    chat_file_repository as files, chat_repository as chats, chat_storage as storage,
    sandbox_session_repository as sandboxes, storage_usage, workspace_repository as workspaces,
};
use chatstore_guest::component::types::{Chat, ChatFile, PortError, Timestamp, Workspace};
use chatstore_guest::domain::{self, StagedContent, StorageError};
use chatstore_guest::usecase::StorageResult;
use chatstore_guest::{Policy, Storage};

struct Hostile;

chatstore_guest::export_policy!(Hostile);

const GOOD: &str = "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";

/// A token the host never issued.
const FORGED: &str = "staged-999";

fn bad_ids() -> Vec<String> {
    vec![
        "../../etc".into(),
        "..".into(),
        "/etc/passwd".into(),
        String::new(),
        "not-a-uuid".into(),
        "0192F0C1-7D3A-7C4E-8A5B-1F2E3D4C5B6A".into(),
        "{0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a}".into(),
        "0192f0c17d3a7c4e8a5b1f2e3d4c5b6a".into(),
        "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a/../x".into(),
        "\0".into(),
        "a".repeat(1 << 20),
    ]
}

fn bad_names() -> Vec<String> {
    vec![
        String::new(),
        ".".into(),
        "..".into(),
        "../x".into(),
        "../../../../outside.txt".into(),
        "a/b".into(),
        "/etc/passwd".into(),
        "a\\b".into(),
        "a\0b".into(),
        "history.md".into(),
        "n".repeat(256),
        "n".repeat(1 << 20),
    ]
}

fn at() -> Timestamp {
    Timestamp {
        seconds: 0,
        nanoseconds: 0,
    }
}

fn chat(chat_id: &str, workspace_id: &str) -> Chat {
    Chat {
        chat_id: chat_id.into(),
        workspace_id: workspace_id.into(),
        created_at: at(),
    }
}

/// Runs every attack; returns (tried, the ones the host accepted).
fn attack() -> (usize, Vec<String>) {
    let mut tried = 0;
    let mut accepted = Vec::new();
    let mut expect_refusal = |what: String, outcome: Result<(), PortError>| {
        tried += 1;
        if outcome.is_ok() {
            accepted.push(what.chars().take(80).collect());
        }
    };
    for id in bad_ids() {
        let short: String = id.chars().take(40).collect();
        expect_refusal(
            format!("workspaces.get({short})"),
            workspaces::get(&id).map(drop),
        );
        expect_refusal(
            format!("workspaces.get-by-user-id({short})"),
            workspaces::get_by_user_id(&id).map(drop),
        );
        let w = Workspace {
            workspace_id: id.clone(),
            user_id: GOOD.into(),
            created_at: at(),
        };
        expect_refusal(format!("workspaces.save({short})"), workspaces::save(&w));
        expect_refusal(format!("chats.get({short})"), chats::get(&id).map(drop));
        expect_refusal(
            format!("chats.list({short})"),
            chats::list_by_workspace_id(&id).map(drop),
        );
        expect_refusal(
            format!("chats.save({short})"),
            chats::save(&chat(&id, GOOD)),
        );
        expect_refusal(format!("chats.delete({short})"), chats::delete(&id));
        expect_refusal(format!("files.get({short})"), files::get(&id).map(drop));
        expect_refusal(
            format!("files.list({short})"),
            files::list_by_chat_id(&id).map(drop),
        );
        expect_refusal(format!("files.delete({short})"), files::delete(&id));
        expect_refusal(
            format!("files.delete-by-chat({short})"),
            files::delete_by_chat_id(&id),
        );
        expect_refusal(
            format!("sandboxes.get({short})"),
            sandboxes::get_active_by_chat_id(&id).map(drop),
        );
        for c in [chat(&id, GOOD), chat(GOOD, &id)] {
            expect_refusal(
                format!("storage.ensure-chat({short})"),
                storage::ensure_chat(&c),
            );
            expect_refusal(
                format!("storage.open-history({short})"),
                storage::open_history(&c),
            );
            expect_refusal(
                format!("storage.history-size({short})"),
                storage::history_size(&c).map(drop),
            );
            expect_refusal(
                format!("storage.write-history({short})"),
                storage::write_history(&c, FORGED),
            );
            expect_refusal(
                format!("storage.append-history({short})"),
                storage::append_history(&c, FORGED),
            );
            expect_refusal(
                format!("storage.delete-chat({short})"),
                storage::delete_chat(&c),
            );
            expect_refusal(
                format!("storage.write-attachment({short})"),
                storage::write_attachment(&c, "a", FORGED),
            );
            expect_refusal(
                format!("storage.open-attachment({short})"),
                storage::open_attachment(&c, "a"),
            );
            expect_refusal(
                format!("storage.attachment-size({short})"),
                storage::attachment_size(&c, "a").map(drop),
            );
            expect_refusal(
                format!("storage.clear({short})"),
                storage::clear_attachments(&c),
            );
        }
    }
    let good = chat(GOOD, GOOD);
    for name in bad_names() {
        let short: String = name.chars().take(40).collect();
        expect_refusal(
            format!("storage.write-attachment({short:?})"),
            storage::write_attachment(&good, &name, FORGED),
        );
        expect_refusal(
            format!("storage.open-attachment({short:?})"),
            storage::open_attachment(&good, &name),
        );
        expect_refusal(
            format!("storage.attachment-size({short:?})"),
            storage::attachment_size(&good, &name).map(drop),
        );
        expect_refusal(
            format!("storage.delete-attachment({short:?})"),
            storage::delete_attachment(&good, &name),
        );
        expect_refusal(
            format!("files.get-by-name({short:?})"),
            files::get_by_chat_id_and_name(GOOD, &name).map(drop),
        );
        let file = ChatFile {
            file_id: GOOD.into(),
            chat_id: GOOD.into(),
            name: name.clone(),
            content_type: None,
            size_bytes: 1,
            sha256: None,
            created_at: at(),
        };
        expect_refusal(format!("files.save({short:?})"), files::save(&file));
    }
    let late = Chat {
        created_at: Timestamp {
            seconds: 0,
            nanoseconds: 2_000_000_000,
        },
        ..chat(GOOD, GOOD)
    };
    expect_refusal("chats.save(nanoseconds 2e9)".into(), chats::save(&late));
    for digest in ["../../etc/passwd", "ABC", &"A".repeat(64), &"0".repeat(65)] {
        let file = ChatFile {
            file_id: GOOD.into(),
            chat_id: GOOD.into(),
            name: "a.txt".into(),
            content_type: None,
            size_bytes: 1,
            sha256: Some(digest.to_owned()),
            created_at: at(),
        };
        expect_refusal(
            format!("files.save(sha256 {digest:.20})"),
            files::save(&file),
        );
    }
    (tried, accepted)
}

/// Attacks a chat of another user's workspace; returns (tried, what got through).
fn trespass(user: &str, theirs: &str, their_workspace: &str) -> (usize, Vec<String>) {
    let mut tried = 0;
    let mut accepted: Vec<String> = Vec::new();
    let mut check = |what: &str, got_through: bool| {
        tried += 1;
        if got_through {
            accepted.push(what.into());
        }
    };
    let mine = workspaces::get_by_user_id(user)
        .ok()
        .flatten()
        .map(|w| w.workspace_id)
        .unwrap_or_default();
    let their_chat = chat(theirs, their_workspace);
    check(
        "workspaces.get",
        matches!(workspaces::get(their_workspace), Ok(Some(_))),
    );
    check("chats.get", matches!(chats::get(theirs), Ok(Some(_))));
    check(
        "chats.list",
        matches!(chats::list_by_workspace_id(their_workspace), Ok(l) if !l.is_empty()),
    );
    check(
        "files.list",
        matches!(files::list_by_chat_id(theirs), Ok(l) if !l.is_empty()),
    );
    check(
        "files.get-by-name",
        matches!(
            files::get_by_chat_id_and_name(theirs, "secret.txt"),
            Ok(Some(_))
        ),
    );
    check(
        "sandboxes.get",
        matches!(sandboxes::get_active_by_chat_id(theirs), Ok(Some(_))),
    );
    check(
        "storage.open-history",
        storage::open_history(&their_chat).is_ok(),
    );
    check(
        "storage.history-size",
        storage::history_size(&their_chat).is_ok(),
    );
    check(
        "storage.open-attachment",
        storage::open_attachment(&their_chat, "secret.txt").is_ok(),
    );
    check(
        "storage.attachment-size",
        storage::attachment_size(&their_chat, "secret.txt").is_ok(),
    );
    check(
        "storage.write-history",
        storage::write_history(&their_chat, FORGED).is_ok(),
    );
    check(
        "storage.append-history",
        storage::append_history(&their_chat, FORGED).is_ok(),
    );
    check(
        "storage.write-attachment",
        storage::write_attachment(&their_chat, "secret.txt", FORGED).is_ok(),
    );
    check(
        "storage.delete-attachment",
        storage::delete_attachment(&their_chat, "secret.txt").is_ok(),
    );
    check(
        "storage.clear",
        storage::clear_attachments(&their_chat).is_ok(),
    );
    check(
        "storage.delete-chat",
        storage::delete_chat(&their_chat).is_ok(),
    );
    check(
        "storage.ensure-chat",
        storage::ensure_chat(&their_chat).is_ok(),
    );
    let usage_of_theirs = Workspace {
        workspace_id: their_workspace.into(),
        user_id: GOOD.into(),
        created_at: at(),
    };
    check(
        "usage.get",
        storage_usage::get_workspace_usage(&usage_of_theirs).is_ok(),
    );
    check("chats.delete", chats::delete(theirs).is_ok());
    check("chats.save (theirs)", chats::save(&their_chat).is_ok());
    check(
        "chats.save (moved into mine)",
        chats::save(&chat(theirs, &mine)).is_ok(),
    );
    check(
        "files.delete-by-chat",
        files::delete_by_chat_id(theirs).is_ok(),
    );
    let planted = ChatFile {
        file_id: GOOD.into(),
        chat_id: theirs.into(),
        name: "planted.txt".into(),
        content_type: None,
        size_bytes: 1,
        sha256: None,
        created_at: at(),
    };
    check("files.save", files::save(&planted).is_ok());
    let stolen = Workspace {
        workspace_id: their_workspace.into(),
        user_id: user.into(),
        created_at: at(),
    };
    check(
        "workspaces.save (take theirs)",
        workspaces::save(&stolen).is_ok(),
    );
    // The caller's own workspace keeps its id and its user.
    let second = Workspace {
        workspace_id: "01a00000-0000-7000-8000-00000000abcd".into(),
        user_id: user.into(),
        created_at: at(),
    };
    check(
        "workspaces.save (a second workspace)",
        workspaces::save(&second).is_ok(),
    );
    let given_away = Workspace {
        workspace_id: mine.clone(),
        user_id: "01a00000-0000-7000-8000-00000000dcba".into(),
        created_at: at(),
    };
    check(
        "workspaces.save (give mine away)",
        workspaces::save(&given_away).is_ok(),
    );
    (tried, accepted)
}

/// What the host did with a port call.
fn outcome(r: Result<(), PortError>) -> String {
    match r {
        Ok(()) => "accepted".to_owned(),
        Err(e) => format!("refused ({}: {})", e.port, e.message),
    }
}

/// The caller's own chat record, as the ports give it.
fn own_chat(chat_id: &str) -> Option<Chat> {
    chats::get(chat_id).ok().flatten()
}

/// Abuses the staged content of this call in the caller's own chat,
/// ignoring the quota; returns what the host did with each attempt.
fn abuse(chat_id: &str, name: &str, token: &str) -> String {
    let Some(chat) = own_chat(chat_id) else {
        return "no such chat".into();
    };
    let forged = outcome(storage::write_attachment(&chat, name, FORGED));
    let stored = outcome(storage::write_attachment(&chat, name, token));
    let again = outcome(storage::write_attachment(&chat, "copy.bin", token));
    let history = outcome(storage::write_history(&chat, token));
    let appended = outcome(storage::append_history(&chat, token));
    format!("forged {forged}; stored {stored}; again {again}; history {history}; append {appended}")
}

/// Opens two files to serve in one call; returns what the host did.
fn open_twice(chat_id: &str) -> String {
    let Some(chat) = own_chat(chat_id) else {
        return "no such chat".into();
    };
    let first = outcome(storage::open_history(&chat));
    let second = outcome(storage::open_history(&chat));
    format!("first {first}; second {second}")
}

/// Deletes the chat's row and saves it again, asking for its history's
/// size after each; returns what the host answered.
fn delete_and_save(chat_id: &str) -> String {
    let Some(chat) = own_chat(chat_id) else {
        return "no such chat".into();
    };
    let size = |chat: &Chat| outcome(storage::history_size(chat).map(drop));
    let deleted = outcome(chats::delete(chat_id));
    let after_delete = size(&chat);
    let saved = outcome(chats::save(&chat));
    let after_save = size(&chat);
    format!("deleted {deleted}: {after_delete}; saved {saved}: {after_save}")
}

/// The hostile component's answer: `storage-unavailable` from port `port`.
fn answer<T>(port: &str, message: String) -> StorageResult<T> {
    Err(StorageError::StorageUnavailable(domain::PortError {
        port: port.into(),
        message,
    }))
}

/// The callers this instance has served.
static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl Policy for Hostile {
    fn ensure_workspace(_: &Storage, user_id: &str) -> StorageResult<domain::Workspace> {
        match user_id.chars().last() {
            Some('1') => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some('2') => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some('3') => panic!("the hostile guest panics on purpose"),
            // An answer larger than the host lifts out of a guest.
            Some('5') => answer("report", "x".repeat(20 << 20)),
            // Every caller this instance has served: what a guest could
            // leak if an instance served two users.
            Some('6') => {
                let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
                seen.push(user_id.to_owned());
                answer("report", seen.join(" "))
            }
            // The same, but the second call of an instance traps.
            Some('7') => {
                let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
                seen.push(user_id.to_owned());
                if seen.len() > 1 {
                    panic!("the hostile guest traps on its second call");
                }
                answer("report", seen.join(" "))
            }
            Some('4') => {
                let (tried, accepted) = attack();
                answer("report", format!("tried {tried}; accepted {accepted:?}"))
            }
            _ => answer("hostile", "no attack chosen".into()),
        }
    }

    fn delete_attachment(
        _: &Storage,
        user_id: &str,
        chat_id: &str,
        workspace_id: &str,
    ) -> StorageResult<()> {
        let (tried, accepted) = trespass(user_id, chat_id, workspace_id);
        answer("report", format!("tried {tried}; accepted {accepted:?}"))
    }

    fn upload_attachment(
        _: &Storage,
        _: &str,
        chat_id: &str,
        name: &str,
        _: Option<&str>,
        content: &StagedContent,
    ) -> StorageResult<domain::ChatFile> {
        answer("report", abuse(chat_id, name, &content.token))
    }

    fn clear_attachments(_: &Storage, _: &str, chat_id: &str) -> StorageResult<()> {
        answer("report", open_twice(chat_id))
    }

    fn delete_chat(_: &Storage, _: &str, chat_id: &str) -> StorageResult<()> {
        answer("report", delete_and_save(chat_id))
    }

    fn get_usage(s: &Storage, user_id: &str) -> StorageResult<domain::WorkspaceUsage> {
        if user_id.ends_with('1') {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        s.get_usage(user_id)
    }

    fn get_chat(s: &Storage, user_id: &str, chat_id: &str) -> StorageResult<domain::Chat> {
        let Some(chat) = own_chat(chat_id) else {
            return answer("report", "no such chat".into());
        };
        if let Err(e) = storage::history_size(&chat) {
            return answer("report", format!("history-size refused: {}", e.message));
        }
        s.get_chat(user_id, chat_id)
    }
}
