//! Components that use the storage: the test plugin (`components/plugin-probe`)
//! run by a host of this file's own — its own `Engine`, `Linker` and WASI
//! context, as any wasmtime application's — that offers the interface with
//! `chatstore_host::plugin::add_to_linker`; and by `run_command`, as
//! `chatstore run` does.

use chatstore_host::plugin::{
    HasUserStorage, PluginError, PluginLimits, UserStorage, UserStorageView, add_to_linker,
    run_command,
};
use chatstore_host::{ChatStore, Uuid};
use chatstore_tests::Harness;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

const PROBE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugin-probe.wasm"));

/// An application's own store data: WASI, and the storage bound to a user.
struct App {
    wasi: WasiCtx,
    table: ResourceTable,
    storage: UserStorage,
}

impl WasiView for App {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HasUserStorage for App {
    fn user_storage(&mut self) -> UserStorageView<'_> {
        UserStorageView {
            storage: &self.storage,
            table: &mut self.table,
        }
    }
}

/// Runs the probe as `user` with `args` in the application's own host:
/// whether `wasi:cli/run` answered success, and what it printed.
fn probe(store: &ChatStore, user: Uuid, args: &[&str]) -> (bool, String) {
    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, PROBE).unwrap();
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    add_to_linker(&mut linker).unwrap();
    let stdout = MemoryOutputPipe::new(1 << 20);
    let argv: Vec<&str> = std::iter::once("plugin-probe")
        .chain(args.iter().copied())
        .collect();
    let wasi = WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .inherit_stderr()
        .args(&argv)
        .build();
    let app = App {
        wasi,
        table: ResourceTable::new(),
        storage: UserStorage::new(store.clone(), user),
    };
    let mut wasm_store = wasmtime::Store::new(&engine, app);
    let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(
        &mut wasm_store,
        &component,
        &linker,
    )
    .unwrap();
    let ran = command.wasi_cli_run().call_run(&mut wasm_store);
    let printed = String::from_utf8_lossy(&stdout.contents())
        .trim()
        .to_owned();
    (matches!(ran, Ok(Ok(()))), printed)
}

fn staged(h: &Harness) -> usize {
    std::fs::read_dir(h.data_dir().join("staging"))
        .unwrap()
        .count()
}

#[test]
fn a_plugin_sees_only_its_users_workspace() {
    let h = Harness::new();
    let (alice, alices_chat) = h.user_with_chat();
    let file = h
        .store
        .upload_attachment(alice, alices_chat.chat_id, "a.txt", None, &b"alice's"[..])
        .unwrap();
    let (bob, bobs_chat) = h.user_with_chat();
    let (alices, bobs) = (
        alices_chat.chat_id.to_string(),
        bobs_chat.chat_id.to_string(),
    );
    let file = file.file_id.to_string();

    assert_eq!(probe(&h.store, bob, &["list"]), (true, bobs.clone()));
    assert_eq!(
        probe(&h.store, bob, &["get-chat", &alices]).1,
        "chat_not_found"
    );
    assert_eq!(
        probe(&h.store, bob, &["read", &alices, &file]).1,
        "chat_not_found"
    );
    assert_eq!(
        probe(&h.store, bob, &["upload", &alices, "b.txt", "3"]).1,
        "chat_not_found"
    );
    assert_eq!(
        probe(&h.store, bob, &["append", &alices, "bob was here"]).1,
        "chat_not_found"
    );
    // The same calls as Alice work: the refusals were the binding's.
    assert_eq!(
        probe(&h.store, alice, &["get-chat", &alices]).1,
        format!("ok {alices}")
    );
    assert_eq!(probe(&h.store, alice, &["read", &alices, &file]).1, "7 7");
    assert_eq!(
        probe(&h.store, bob, &["get-chat", "not-an-id"]).1,
        "invalid_id"
    );
    assert_eq!(
        chatstore_tests::history(&h.store, alice, alices_chat.chat_id).unwrap(),
        ""
    );
    assert_eq!(
        h.store
            .list_attachments(alice, alices_chat.chat_id)
            .unwrap()
            .len(),
        1
    );
    let nobody = Uuid::now_v7();
    assert!(
        !probe(&h.store, nobody, &["list"]).0,
        "no workspace, no page"
    );
    assert_eq!(
        probe(&h.store, nobody, &["create-chat"]).1,
        "workspace_not_found"
    );
}

#[test]
fn an_upload_streams_into_staging_and_stores_the_file() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let chat_id = chat.chat_id.to_string();
    let size = 3_000_001u64;
    let (ok, printed) = probe(
        &h.store,
        user,
        &["upload", &chat_id, "big.bin", &size.to_string()],
    );
    assert!(ok, "{printed}");
    let fields: Vec<&str> = printed.split(' ').collect();
    let file = h
        .store
        .list_attachments(user, chat.chat_id)
        .unwrap()
        .remove(0);
    assert_eq!(fields[0], file.file_id.to_string());
    assert_eq!(file.size_bytes, size);
    let content = chatstore_tests::attachment(&h.store, user, chat.chat_id, file.file_id).unwrap();
    assert!(content.iter().all(|&b| b == b'x') && content.len() as u64 == size);
    assert_eq!(Some(fields[2].to_owned()), file.sha256);
    assert_eq!(staged(&h), 0);
}

#[test]
fn an_upload_past_the_quota_is_cut_off_and_leaves_nothing() {
    let h = Harness::with_quota(100_000);
    let (user, chat) = h.user_with_chat();
    let chat_id = chat.chat_id.to_string();
    let before = h.snapshot();
    let (_, printed) = probe(&h.store, user, &["upload", &chat_id, "big.bin", "1000000"]);
    assert_eq!(printed, "workspace_quota_exceeded");
    assert_eq!(h.snapshot(), before, "the data directory changed");
    // Room for it, it is stored.
    let (_, printed) = probe(&h.store, user, &["upload", &chat_id, "small.bin", "90000"]);
    assert!(printed.contains(" 90000 "), "{printed}");
}

#[test]
fn a_plugin_that_exits_or_traps_mid_upload_leaves_nothing_staged() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let chat_id = chat.chat_id.to_string();
    let before = h.snapshot();
    for how in ["upload-then-exit", "upload-then-trap"] {
        let (ok, _) = probe(&h.store, user, &[how, &chat_id, "half.bin", "500000"]);
        assert!(!ok, "{how}");
        assert_eq!(staged(&h), 0, "{how}");
        assert_eq!(h.snapshot(), before, "{how}");
    }
    assert!(
        h.store
            .list_attachments(user, chat.chat_id)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_looping_plugin_is_stopped_at_its_deadline_and_the_store_serves_on() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let limits = PluginLimits {
        timeout: Duration::from_millis(300),
        ..PluginLimits::default()
    };
    let storage = UserStorage::new(h.store.clone(), user);
    let ran = run_command(
        storage,
        PROBE,
        &["plugin-probe".into(), "loop".into()],
        limits,
        None,
    );
    assert!(matches!(ran, Err(PluginError::TimedOut(_))), "{ran:?}");
    assert_eq!(h.store.get_chat(user, chat.chat_id).unwrap(), chat);
}

#[test]
fn a_plugin_that_exhausts_its_memory_traps_cleanly() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let limits = PluginLimits {
        memory_bytes: 64 << 20,
        ..PluginLimits::default()
    };
    let storage = UserStorage::new(h.store.clone(), user);
    let ran = run_command(
        storage,
        PROBE,
        &["plugin-probe".into(), "oom".into()],
        limits,
        None,
    );
    assert!(matches!(ran, Err(PluginError::Trapped(_))), "{ran:?}");
    assert_eq!(h.store.get_chat(user, chat.chat_id).unwrap(), chat);
}

#[test]
fn a_history_is_replaced_through_an_outgoing_value_and_read_through_a_stream() {
    let h = Harness::with_quota(10_000);
    let (user, chat) = h.user_with_chat();
    let chat_id = chat.chat_id.to_string();
    h.store
        .append_history(user, chat.chat_id, &b"old\n"[..])
        .unwrap();
    let text = "# Title\n\nnew ✓\n";
    assert_eq!(
        probe(&h.store, user, &["write-history", &chat_id, text]).1,
        "ok"
    );
    assert_eq!(
        chatstore_tests::history(&h.store, user, chat.chat_id).unwrap(),
        text
    );
    let size = text.len().to_string();
    assert_eq!(
        probe(&h.store, user, &["read-history", &chat_id]).1,
        format!("{size} {size}")
    );
    // Past the room, refused, and the history stays as it was.
    let long = "x".repeat(20_000);
    assert_eq!(
        probe(&h.store, user, &["write-history", &chat_id, &long]).1,
        "workspace_quota_exceeded"
    );
    assert_eq!(
        chatstore_tests::history(&h.store, user, chat.chat_id).unwrap(),
        text
    );
    assert_eq!(staged(&h), 0);
}
