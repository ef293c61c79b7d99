//! A test plugin: `plugin-probe COMMAND ARGS…` uses the `user-storage`
//! interface one way and prints what it got, one line, on standard output:
//!
//! - `list`: every chat's id, page by page (`limit` 2);
//! - `create-chat`: the new chat's id;
//! - `get-chat ID`: `ok ID` or the error's code;
//! - `get-chat-times ID N`: gets the chat N times (for a benchmark);
//! - `append CHAT TEXT`: `ok` or the code;
//! - `upload CHAT NAME SIZE`: SIZE bytes through the outgoing value; the
//!   file's id, size and SHA-256, or the code;
//! - `upload-then-exit CHAT NAME SIZE` / `upload-then-trap …`: the same
//!   bytes, then exits with status 3 / traps, without finishing;
//! - `read CHAT FILE`: the bytes read through the stream, and the record's size;
//! - `write-history CHAT TEXT`: replaces the history through an outgoing
//!   value; `ok` or the code;
//! - `read-history CHAT`: the bytes read through the stream, and the size given;
//! - `loop`: never ends; `oom`: grows its memory until it cannot.

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "chatstore:storage/plugin-imports",
        generate_all,
    });
}

#[cfg(target_arch = "wasm32")]
fn main() {
    use bindings::chatstore::storage::user_storage::{self as storage, Error};
    use bindings::wasi::io::streams::StreamError;

    fn code(e: &Error) -> &'static str {
        match e {
            Error::WorkspaceNotFound(_) => "workspace_not_found",
            Error::WorkspaceQuotaExceeded(_) => "workspace_quota_exceeded",
            Error::ChatNotFound(_) => "chat_not_found",
            Error::ChatHasActiveSandbox(_) => "chat_has_active_sandbox",
            Error::ChatFileNotFound(_) => "chat_file_not_found",
            Error::InvalidAttachmentName(_) => "invalid_attachment_name",
            Error::ReservedAttachmentName(_) => "reserved_attachment_name",
            Error::InvalidId(_) => "invalid_id",
            Error::InvalidHistory(_) => "invalid_history",
            Error::InvalidLimit(_) => "invalid_limit",
            Error::AfterNotFound(_) => "after_not_found",
            Error::ChatFileChanged(_) => "chat_file_changed",
            Error::StorageUnavailable(_) => "storage_unavailable",
        }
    }

    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let store = storage::open().expect("the host gives a store");
    // Writes `size` bytes of `x` to an outgoing value, as the stream takes them.
    let write = |chat: &str, name: &str, size: u64| -> Result<storage::Outgoing, Error> {
        let outgoing = store.upload_attachment(chat, name, None)?;
        let body = outgoing.body()?;
        let mut left = size;
        while left > 0 {
            let room = match body.check_write() {
                Ok(room) => room,
                Err(_) => break,
            };
            let n = room.min(left).min(64 << 10) as usize;
            if body.write(&vec![b'x'; n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        drop(body);
        Ok(outgoing)
    };
    match arg(0).as_str() {
        "list" => {
            let mut after = None;
            let mut ids = Vec::new();
            loop {
                let page = store.list_chats(2, after.as_deref()).expect("a page");
                ids.extend(page.data.iter().map(|c| c.chat_id.clone()));
                if !page.has_more {
                    break;
                }
                after = page.last_id;
            }
            println!("{}", ids.join(" "));
        }
        "create-chat" => match store.create_chat() {
            Ok(chat) => println!("{}", chat.chat_id),
            Err(e) => println!("{}", code(&e)),
        },
        "get-chat" => match store.get_chat(&arg(1)) {
            Ok(chat) => println!("ok {}", chat.chat_id),
            Err(e) => println!("{}", code(&e)),
        },
        "get-chat-times" => {
            let times: u32 = arg(2).parse().expect("a count");
            for _ in 0..times {
                store.get_chat(&arg(1)).expect("the chat");
            }
            println!("{times}");
        }
        "append" => match store.append_history(&arg(1), &arg(2)) {
            Ok(()) => println!("ok"),
            Err(e) => println!("{}", code(&e)),
        },
        "upload" => {
            let size = arg(3).parse().expect("a size");
            match write(&arg(1), &arg(2), size).and_then(storage::Outgoing::finish) {
                Ok(Some(file)) => println!(
                    "{} {} {}",
                    file.file_id,
                    file.size_bytes,
                    file.sha256.unwrap_or_default()
                ),
                Ok(None) => println!("no record"),
                Err(e) => println!("{}", code(&e)),
            }
        }
        "upload-then-exit" | "upload-then-trap" => {
            let size = arg(3).parse().expect("a size");
            let outgoing = write(&arg(1), &arg(2), size);
            if arg(0) == "upload-then-exit" {
                std::process::exit(3);
            }
            std::mem::forget(outgoing);
            unreachable!("a trap, mid-upload");
        }
        "read" => match store.read_attachment(&arg(1), &arg(2)) {
            Ok((file, stream)) => {
                let mut read = 0u64;
                loop {
                    match stream.blocking_read(1 << 20) {
                        Ok(bytes) => read += bytes.len() as u64,
                        Err(StreamError::Closed) => break,
                        Err(StreamError::LastOperationFailed(e)) => {
                            panic!("the stream failed: {}", e.to_debug_string())
                        }
                    }
                }
                println!("{read} {}", file.size_bytes);
            }
            Err(e) => println!("{}", code(&e)),
        },
        "write-history" => {
            let written = store.write_history(&arg(1)).and_then(|outgoing| {
                let body = outgoing.body()?;
                // At most 4096 bytes a call, as the stream's contract says;
                // a refused write ends it, and `finish` says why.
                for piece in arg(2).as_bytes().chunks(4096) {
                    if body.blocking_write_and_flush(piece).is_err() {
                        break;
                    }
                }
                drop(body);
                storage::Outgoing::finish(outgoing)
            });
            match written {
                Ok(None) => println!("ok"),
                Ok(Some(_)) => println!("a record for a history"),
                Err(e) => println!("{}", code(&e)),
            }
        }
        "read-history" => match store.read_history(&arg(1)) {
            Ok((stream, size)) => {
                let mut read = 0u64;
                while let Ok(bytes) = stream.blocking_read(1 << 20) {
                    read += bytes.len() as u64;
                }
                println!("{read} {size}");
            }
            Err(e) => println!("{}", code(&e)),
        },
        "loop" => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            let mut held = Vec::new();
            loop {
                held.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&held);
            }
        }
        other => {
            eprintln!("plugin-probe: unknown command {other:?}");
            std::process::exit(2);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {}
