//! Restarts, crashes and racing writers: what was acknowledged stays, what
//! failed leaves nothing, and the quota holds.

use chatstore_host::adapters::postgres::ScratchDatabase;
use chatstore_host::fsck::fsck;
use chatstore_host::{ChatStore, Error, Metadata};
use chatstore_tests::script::{Model, content};
use chatstore_tests::{Harness, attachment, data_snapshot, history, snapshot};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use uuid::Uuid;

const WORKER: &str = env!("CARGO_BIN_EXE_chatstore-worker");

fn open(data: &Path) -> ChatStore {
    ChatStore::builder().data_dir(data).build().expect("store")
}

/// The attachments of a chat by name, with their bytes.
fn attachments(store: &ChatStore, user: Uuid, chat: Uuid) -> BTreeMap<String, Vec<u8>> {
    let files = store.list_attachments(user, chat).expect("list");
    files
        .into_iter()
        .map(|f| {
            let bytes = attachment(store, user, chat, f.file_id).expect("read");
            assert_eq!(
                bytes.len() as u64,
                f.size_bytes,
                "recorded size of {}",
                f.name
            );
            (f.name.to_string(), bytes)
        })
        .collect()
}

#[test]
fn everything_written_before_an_orderly_restart_reads_back_identically() {
    let h = Harness::new();
    let data = h.data_dir();
    let (user, chat) = h.user_with_chat();
    let second = h.store.create_chat(user).unwrap();
    h.store
        .write_history(user, chat.chat_id, "# before restart\n".as_bytes())
        .unwrap();
    h.store
        .append_history(user, chat.chat_id, "more\n".as_bytes())
        .unwrap();
    h.store
        .upload_attachment(
            user,
            chat.chat_id,
            "a.bin",
            Some("application/x"),
            &[9; 5000][..],
        )
        .unwrap();
    h.store
        .upload_attachment(user, second.chat_id, "b.txt", None, &b"bee"[..])
        .unwrap();
    h.store.start_sandbox(second.chat_id).unwrap();
    let before = (
        h.store.get_workspace(user).unwrap(),
        h.store.list_chats(user).unwrap(),
        h.store.list_attachments(user, chat.chat_id).unwrap(),
        h.store.list_attachments(user, second.chat_id).unwrap(),
        history(&h.store, user, chat.chat_id).unwrap(),
        attachments(&h.store, user, chat.chat_id),
        h.store.get_usage(user).unwrap(),
    );
    let disk = h.snapshot();
    let Harness { store, tmp, .. } = h;
    drop(store);

    let reopened = open(&data);
    let after = (
        reopened.get_workspace(user).unwrap(),
        reopened.list_chats(user).unwrap(),
        reopened.list_attachments(user, chat.chat_id).unwrap(),
        reopened.list_attachments(user, second.chat_id).unwrap(),
        history(&reopened, user, chat.chat_id).unwrap(),
        attachments(&reopened, user, chat.chat_id),
        reopened.get_usage(user).unwrap(),
    );
    assert_eq!(after, before);
    // The sandbox session survived too.
    assert_eq!(
        reopened.delete_chat(user, second.chat_id),
        Err(Error::ChatHasActiveSandbox(second.chat_id))
    );
    assert_eq!(data_snapshot(&data), disk);
    drop(tmp);
}

#[test]
fn sixteen_threads_racing_for_the_last_bytes_never_exceed_the_quota_with_sqlite_metadata() {
    sixteen_threads_racing_for_the_last_bytes(Metadata::Sqlite);
}

#[test]
fn sixteen_threads_racing_for_the_last_bytes_never_exceed_the_quota_with_memory_metadata() {
    sixteen_threads_racing_for_the_last_bytes(Metadata::Memory);
}

/// Two stores, each with its own connections and locks, on one PostgreSQL
/// database and one data directory: two hosts. Only PostgreSQL's locks
/// keep their writers apart.
#[test]
fn sixteen_threads_on_two_hosts_racing_for_the_last_bytes_never_exceed_the_quota_with_postgres_metadata()
 {
    let Some(db) = ScratchDatabase::from_env() else {
        return;
    };
    sixteen_threads_racing_for_the_last_bytes(Metadata::Postgres(db.url().to_owned()));
}

/// A second store on the harness's data directory and metadata, with the
/// same quota: another host.
fn second_host(h: &Harness, metadata: &Metadata, quota_bytes: u64) -> ChatStore {
    match metadata {
        Metadata::Memory => h.store.clone(),
        _ => h
            .another_store()
            .metadata(metadata.clone())
            .quota_bytes(quota_bytes)
            .build()
            .expect("second store"),
    }
}

fn sixteen_threads_racing_for_the_last_bytes(metadata: Metadata) {
    const WRITERS: usize = 16;
    const SIZE: usize = 10_000;
    const QUOTA: u64 = (WRITERS / 2 * SIZE) as u64;
    let h = Harness::with(|b| b.metadata(metadata.clone()).quota_bytes(QUOTA));
    let hosts = [h.store.clone(), second_host(&h, &metadata, QUOTA)];
    let (user, chat) = h.user_with_chat();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let outcomes: Vec<Result<(), Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (store, barrier) = (hosts[i % 2].clone(), barrier.clone());
                s.spawn(move || {
                    barrier.wait();
                    store
                        .upload_attachment(
                            user,
                            chat.chat_id,
                            &format!("w{i}"),
                            None,
                            &[i as u8; SIZE][..],
                        )
                        .map(drop)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Error::WorkspaceQuotaExceeded(_))))
        .count();
    assert_eq!((won, refused), (WRITERS / 2, WRITERS / 2), "{outcomes:?}");
    assert_eq!(
        h.store.get_usage(user).unwrap().used_bytes,
        (won * SIZE) as u64
    );
    assert_eq!(
        h.store.list_attachments(user, chat.chat_id).unwrap().len(),
        won
    );
}

#[test]
fn concurrent_appends_lose_no_update_with_sqlite_metadata() {
    concurrent_appends_lose_no_update(Metadata::Sqlite);
}

#[test]
fn concurrent_appends_lose_no_update_with_memory_metadata() {
    concurrent_appends_lose_no_update(Metadata::Memory);
}

#[test]
fn concurrent_appends_on_two_hosts_lose_no_update_with_postgres_metadata() {
    let Some(db) = ScratchDatabase::from_env() else {
        return;
    };
    concurrent_appends_lose_no_update(Metadata::Postgres(db.url().to_owned()));
}

fn concurrent_appends_lose_no_update(metadata: Metadata) {
    const THREADS: usize = 8;
    const APPENDS: usize = 10;
    let h = Harness::with(|b| b.metadata(metadata.clone()));
    let hosts = [
        h.store.clone(),
        second_host(&h, &metadata, chatstore_host::DEFAULT_QUOTA_BYTES),
    ];
    let (user, chat) = h.user_with_chat();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = hosts[t % 2].clone();
            s.spawn(move || {
                for i in 0..APPENDS {
                    store
                        .append_history(user, chat.chat_id, format!("t{t}-{i}\n").as_bytes())
                        .unwrap();
                }
            });
        }
    });
    let history = history(&h.store, user, chat.chat_id).unwrap();
    let mut lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), THREADS * APPENDS);
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), THREADS * APPENDS, "every append is there once");
    // Each thread's appends kept their order.
    for t in 0..THREADS {
        let mine: Vec<&str> = history
            .lines()
            .filter(|l| l.starts_with(&format!("t{t}-")))
            .collect();
        let expected: Vec<String> = (0..APPENDS).map(|i| format!("t{t}-{i}")).collect();
        assert_eq!(mine, expected);
    }
}

#[test]
fn sixteen_processes_racing_for_the_last_bytes_never_exceed_the_quota() {
    const WRITERS: usize = 16;
    const SIZE: usize = 10_000;
    const QUOTA: usize = WRITERS / 2 * SIZE;
    let h = Harness::with_quota(QUOTA as u64);
    let (user, chat) = h.user_with_chat();
    let data = h.data_dir();
    let go = h.tmp.path().join("go");
    let started = Instant::now();
    let children: Vec<_> = (0..WRITERS)
        .map(|i| {
            Command::new(WORKER)
                .args([
                    "upload",
                    data.to_str().unwrap(),
                    &user.to_string(),
                    &chat.chat_id.to_string(),
                ])
                .args([
                    format!("p{i}"),
                    SIZE.to_string(),
                    go.display().to_string(),
                    QUOTA.to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("worker")
        })
        .collect();
    // Let every worker load the component, then start them together.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, b"").unwrap();
    let outcomes: Vec<String> = children
        .into_iter()
        .map(|c| {
            String::from_utf8(c.wait_with_output().expect("worker output").stdout)
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    let won = outcomes.iter().filter(|o| *o == "ok").count();
    let refused = outcomes
        .iter()
        .filter(|o| *o == "workspace_quota_exceeded")
        .count();
    println!(
        "{WRITERS} processes: {won} uploaded, {refused} refused, {:?}",
        started.elapsed()
    );
    assert_eq!((won, refused), (WRITERS / 2, WRITERS / 2), "{outcomes:?}");
    assert_eq!(
        h.store.get_usage(user).unwrap().used_bytes,
        (won * SIZE) as u64
    );
    assert_eq!(
        h.store.list_attachments(user, chat.chat_id).unwrap().len(),
        won
    );
}

#[test]
fn sigkill_at_many_points_loses_nothing_acknowledged_and_leaves_nothing_torn() {
    const KILLS: u64 = 40;
    let started = Instant::now();
    let mut in_flight: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut total_acks = 0;
    for kill in 0..KILLS {
        let h = Harness::new();
        let data = h.data_dir();
        let (user, chat) = h.user_with_chat();
        let Harness { store, tmp, .. } = h;
        drop(store);
        let seed = 1000 + kill;
        let mut child = Command::new(WORKER)
            .args([
                "script",
                data.to_str().unwrap(),
                &user.to_string(),
                &chat.chat_id.to_string(),
                &seed.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("worker");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        assert_eq!(lines.next().expect("a line").expect("ready"), "ready");
        // Kill at a different moment each time: from at once to ~120 ms of work.
        std::thread::sleep(Duration::from_micros(kill * 3_000));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let acked = lines
            .map_while(Result::ok)
            .filter(|l| l.starts_with("ack "))
            .count() as u64;
        total_acks += acked;

        // Reopening recovers; then the chat must be exactly the state after
        // the acknowledged operations, or after one more (the one in flight
        // may have committed before the kill).
        let store = open(&data);
        let done = Model::after(seed, acked);
        let next = done.op(seed, acked);
        let mut one_more = done.clone();
        one_more.apply(&next);
        let actual = Model {
            files: attachments(&store, user, chat.chat_id)
                .into_iter()
                .map(|(name, bytes)| {
                    let version = [&done, &one_more]
                        .iter()
                        .filter_map(|m| m.files.get(&name))
                        .copied()
                        .find(|&v| bytes == content(&name, v, chatstore_tests::script::size_of(v)))
                        .unwrap_or_else(|| {
                            panic!(
                                "kill {kill}: {name} is torn or unknown ({} bytes)",
                                bytes.len()
                            )
                        });
                    (name, version)
                })
                .collect(),
            history: history(&store, user, chat.chat_id).unwrap(),
        };
        let committed = actual == one_more && one_more != done;
        assert!(
            actual == done || actual == one_more,
            "kill {kill} after {acked} acks: {actual:?}\nexpected {done:?}\nor {one_more:?}"
        );
        let entry = in_flight.entry(next.kind()).or_default();
        if committed {
            entry.0 += 1
        } else {
            entry.1 += 1
        }

        // Nothing half done is left: no staged file, and metadata and disk agree.
        let backend = ChatStore::builder().data_dir(&data).open_backend().unwrap();
        let report = fsck(&backend, false, |_| {}).unwrap();
        assert!(
            report.is_clean() && report.unregistered_files.is_empty(),
            "kill {kill}: {report:?}"
        );
        assert!(
            snapshot(&data.join("staging")).is_empty(),
            "kill {kill}: staging not empty"
        );
        drop(tmp);
    }
    println!(
        "{KILLS} kill points, {total_acks} acknowledged operations, in flight at the kill (committed, not): {in_flight:?}, {:?}",
        started.elapsed()
    );
}
