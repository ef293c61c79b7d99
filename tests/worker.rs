//! A worker process for the crash and multi-process tests.
//!
//! `chatstore-worker script DATA USER CHAT SEED`: runs the deterministic
//! script against the chat, printing `ack N` after operation N returns Ok,
//! until killed.
//!
//! `chatstore-worker upload DATA USER CHAT NAME SIZE GO_FILE QUOTA`: waits
//! until GO_FILE exists, uploads SIZE bytes as NAME with a workspace quota of
//! QUOTA bytes, prints `ok` or the error code.

use chatstore_host::{ChatStore, Uuid};
use chatstore_tests::script::{Model, Op, content};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let uuid = |i: usize| Uuid::try_parse(arg(i)).expect("a UUID argument");
    let quota = arg(7)
        .parse()
        .unwrap_or(chatstore_host::DEFAULT_QUOTA_BYTES);
    let store = ChatStore::builder()
        .data_dir(arg(1))
        .quota_bytes(quota)
        .build()
        .expect("store");
    let (user, chat) = (uuid(2), uuid(3));
    match arg(0) {
        "script" => {
            let seed: u64 = arg(4).parse().expect("a seed");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ready");
            let _ = out.flush();
            let mut model = Model::default();
            for i in 0.. {
                let op = model.op(seed, i);
                let result = match &op {
                    Op::Upload {
                        name,
                        version,
                        size,
                    } => store
                        .upload_attachment(
                            user,
                            chat,
                            name,
                            None,
                            &content(name, *version, *size)[..],
                        )
                        .map(drop),
                    Op::Delete { name } => {
                        let files = store.list_attachments(user, chat).expect("list");
                        let file = files
                            .iter()
                            .find(|f| f.name.as_str() == name)
                            .expect("the model's file");
                        store.delete_attachment(user, chat, file.file_id)
                    }
                    Op::Append { line } => store.append_history(user, chat, line.as_bytes()),
                    Op::Rewrite { text } => store.write_history(user, chat, text.as_bytes()),
                };
                if let Err(e) = result {
                    let _ = writeln!(out, "error {i} {e}");
                    return ExitCode::FAILURE;
                }
                model.apply(&op);
                let _ = writeln!(out, "ack {i}");
                let _ = out.flush();
            }
            ExitCode::SUCCESS
        }
        "upload" => {
            let size: usize = arg(5).parse().expect("a size");
            while !Path::new(arg(6)).exists() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let outcome =
                match store.upload_attachment(user, chat, arg(4), None, &vec![1u8; size][..]) {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e.code().to_owned(),
                };
            println!("{outcome}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("unknown mode {other:?}");
            ExitCode::FAILURE
        }
    }
}
