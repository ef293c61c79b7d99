//! `chatstore demo`: every storage flow, step by step, on the data directory.

use anyhow::{Context, Result};
use chatstore_host::{ChatStoreBuilder, Error};
use std::path::Path;
use std::time::Instant;
use uuid::Uuid;

/// Prints one numbered step.
struct Steps(usize);

impl Steps {
    fn step(&mut self, what: impl AsRef<str>) {
        self.0 += 1;
        println!("{:>2}. {}", self.0, what.as_ref());
    }
}

pub fn run(data_dir: &Path, builder: ChatStoreBuilder) -> Result<()> {
    let mut steps = Steps(0);
    let started = Instant::now();
    let store = builder.build().context("opening the store")?;
    steps.step(format!(
        "loaded the storage component and opened {} ({} ms)",
        data_dir.display(),
        started.elapsed().as_millis()
    ));

    let alice = Uuid::now_v7();
    let workspace = store.ensure_workspace(alice)?;
    steps.step(format!(
        "user {alice} has workspace {}",
        workspace.workspace_id
    ));
    let again = store.ensure_workspace(alice)?;
    steps.step(format!(
        "ensure-workspace again gives the same one: {}",
        again == workspace
    ));

    let chat = store.create_chat(alice)?;
    let chat_dir = data_dir
        .join("workspaces")
        .join(workspace.workspace_id.to_string())
        .join("chats")
        .join(chat.chat_id.to_string());
    steps.step(format!(
        "created chat {} in {}",
        chat.chat_id,
        chat_dir.display()
    ));

    store.write_history(alice, chat.chat_id, "# Quarterly report\n\n".as_bytes())?;
    store.append_history(
        alice,
        chat.chat_id,
        "**user:** summarise data.csv\n".as_bytes(),
    )?;
    store.append_history(
        alice,
        chat.chat_id,
        "**agent:** done, see summary.md\n".as_bytes(),
    )?;
    let history = store.read_history(alice, chat.chat_id)?.into_string()?;
    steps.step(format!("history.md now holds {} bytes:", history.len()));
    for line in history.lines() {
        println!("      | {line}");
    }

    let csv = store.upload_attachment(
        alice,
        chat.chat_id,
        "data.csv",
        Some("text/csv"),
        &b"q,revenue\n1,10\n2,12\n"[..],
    )?;
    steps.step(format!(
        "uploaded {} ({} bytes) as file {}",
        csv.name, csv.size_bytes, csv.file_id
    ));
    let replaced = store.upload_attachment(
        alice,
        chat.chat_id,
        "data.csv",
        Some("text/csv"),
        &b"q,revenue\n1,10\n2,12\n3,15\n"[..],
    )?;
    steps.step(format!(
        "uploaded data.csv again: new file id {}, the old one is {}",
        replaced.file_id,
        outcome(store.get_attachment(alice, chat.chat_id, csv.file_id))
    ));
    store.upload_attachment(
        alice,
        chat.chat_id,
        "summary.md",
        Some("text/markdown"),
        &b"Revenue grew 50%.\n"[..],
    )?;
    let files = store.list_attachments(alice, chat.chat_id)?;
    let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
    steps.step(format!(
        "the chat has {} attachments: {}",
        files.len(),
        names.join(", ")
    ));

    for bad in ["../escape.txt", "history.md", ""] {
        let refused = store.upload_attachment(alice, chat.chat_id, bad, None, &b"x"[..]);
        steps.step(format!(
            "uploading {bad:?} is refused: {}",
            outcome(refused)
        ));
    }

    let usage = store.get_usage(alice)?;
    steps.step(format!(
        "usage: {} of {} bytes",
        usage.used_bytes, usage.quota_bytes
    ));
    let room = usage.quota_bytes.saturating_sub(usage.used_bytes);
    match usize::try_from(room + 1) {
        Ok(one_past) if one_past <= 64 << 20 => {
            let refused = store.upload_attachment(
                alice,
                chat.chat_id,
                "too-big.bin",
                None,
                &vec![0; one_past][..],
            );
            steps.step(format!(
                "an upload one byte past the quota is refused: {}",
                outcome(refused)
            ));
        }
        _ => steps.step("(run with --quota-bytes 300 to see an upload refused for the quota)"),
    }

    let bob = Uuid::now_v7();
    store.ensure_workspace(bob)?;
    steps.step(format!(
        "user {bob} asks for alice's chat: {}; lists {} chats",
        outcome(store.get_chat(bob, chat.chat_id)),
        store.list_chats(bob)?.len()
    ));

    let session = store.start_sandbox(chat.chat_id)?;
    steps.step(format!(
        "sandbox session {} started on the chat",
        session.session_id
    ));
    steps.step(format!(
        "delete-chat is refused: {}",
        outcome(store.delete_chat(alice, chat.chat_id))
    ));
    steps.step(format!(
        "clear-attachments is refused: {}",
        outcome(store.clear_attachments(alice, chat.chat_id))
    ));
    store.end_sandbox(chat.chat_id)?;
    steps.step("sandbox session ended");

    store.clear_attachments(alice, chat.chat_id)?;
    steps.step(format!(
        "cleared attachments; {} left, history kept ({} bytes)",
        store.list_attachments(alice, chat.chat_id)?.len(),
        store.read_history(alice, chat.chat_id)?.len()
    ));
    store.delete_chat(alice, chat.chat_id)?;
    steps.step(format!(
        "deleted the chat; its directory exists: {}",
        chat_dir.exists()
    ));
    steps.step(format!("done in {} ms", started.elapsed().as_millis()));
    Ok(())
}

/// "ok" or the error's code, for the demo's narration.
fn outcome<T>(r: Result<T, Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.code().into(),
    }
}
