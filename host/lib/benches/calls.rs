//! Per-call cost of use cases through the component: each call instantiates
//! a fresh guest, runs the use case, and goes through the real adapters.
//!
//! `cargo bench -p chatstore-host --bench calls` prints a table; no
//! assertions, just figures.

use chatstore_host::{ChatStore, Metadata, Uuid};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn measure(name: &str, iterations: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..iterations / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let per_call = started.elapsed() / iterations;
    println!(
        "{name:<36} {:>9.1} µs/call  ({iterations} calls)",
        micros(per_call)
    );
    per_call
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let started = Instant::now();
    let store = ChatStore::builder()
        .data_dir(dir.path())
        .build()
        .expect("store");
    println!(
        "{:<36} {:>9.1} ms",
        "compile component + open store",
        micros(started.elapsed()) / 1000.0
    );
    println!(
        "component size: {} bytes",
        chatstore_host::STORAGE_COMPONENT.len()
    );

    let user = Uuid::now_v7();
    store.ensure_workspace(user).expect("workspace");
    let chat = store.create_chat(user).expect("chat");
    store
        .write_history(
            user,
            chat.chat_id,
            "line of history\n".repeat(64).as_bytes(),
        )
        .expect("history");
    let kib = vec![7u8; 1024];
    let mib = vec![7u8; 1 << 20];
    let file = store
        .upload_attachment(user, chat.chat_id, "one-kib", None, &kib[..])
        .expect("upload");

    measure("get-workspace", 2000, || {
        black_box(store.get_workspace(user).expect("get-workspace"));
    });
    measure("get-chat", 2000, || {
        black_box(store.get_chat(user, chat.chat_id).expect("get-chat"));
    });
    measure("read-history (1 KiB)", 2000, || {
        black_box(
            store
                .read_history(user, chat.chat_id)
                .expect("read-history"),
        );
    });
    measure("read-attachment (1 KiB)", 2000, || {
        black_box(
            store
                .read_attachment(user, chat.chat_id, file.file_id)
                .expect("read"),
        );
    });
    measure("upload-attachment (1 KiB, fsync)", 300, || {
        black_box(
            store
                .upload_attachment(user, chat.chat_id, "kib", None, &kib[..])
                .expect("upload"),
        );
    });
    measure("upload-attachment (1 MiB, fsync)", 50, || {
        black_box(
            store
                .upload_attachment(user, chat.chat_id, "mib", None, &mib[..])
                .expect("upload"),
        );
    });
    measure("create-chat (mkdir + history.md)", 300, || {
        black_box(store.create_chat(user).expect("create-chat"));
    });

    other_workspaces_cost_nothing();
}

/// One workspace never waits for another: with the metadata in memory, a
/// write of one user's costs the same however much other users hold.
/// `FILES` (default 10000) is what the other user uploads, over 100 chats.
fn other_workspaces_cost_nothing() {
    let files: usize = std::env::var("FILES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = ChatStore::builder()
        .data_dir(dir.path())
        .metadata(Metadata::Memory)
        .build()
        .expect("store");
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    store.ensure_workspace(alice).expect("workspace");
    store.ensure_workspace(bob).expect("workspace");
    let mut quota = 1u64 << 30;
    let mut set_quota = || {
        quota += 1;
        black_box(store.set_quota(alice, Some(quota)).expect("set-quota"));
    };
    let alone = measure("set-quota, memory, store empty", 2000, &mut set_quota);
    let chats: Vec<_> = (0..100)
        .map(|_| store.create_chat(bob).expect("chat").chat_id)
        .collect();
    for i in 0..files {
        let name = format!("f{i}.txt");
        (store.upload_attachment(bob, chats[i % chats.len()], &name, None, &b"x"[..]))
            .expect("upload");
        if i % 2000 == 1999 {
            eprintln!("   {}/{files} of the other user's files", i + 1);
        }
    }
    let beside = measure(
        &format!("set-quota, memory, {files} others' files"),
        2000,
        &mut set_quota,
    );
    println!(
        "{:<36} {:>9.2}x",
        "  with the others' files vs without",
        beside.as_secs_f64() / alone.as_secs_f64()
    );
}
