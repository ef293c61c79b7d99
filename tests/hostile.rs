//! A hostile component in place of the storage policy: it loops, hoards
//! memory, panics, and feeds the ports every malformed id and name it can.
//! The host stays up, answers each call with a typed error, refuses every
//! hostile port call, and touches nothing.

use chatstore_host::{ChatStoreBuilder, ContentKind, Error, Uuid};
use chatstore_tests::{Harness, attachment, data_snapshot, history, snapshot};
use std::fs;
use std::time::{Duration, Instant};

/// The deadline of the looping guest's calls: short, since it always runs out.
const SHORT_DEADLINE: Duration = Duration::from_millis(300);

const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile.wasm"));

/// The hostile component with a small memory cap and the default deadline:
/// only the looping guest's test depends on running out of time.
fn hostile(b: ChatStoreBuilder) -> ChatStoreBuilder {
    b.component(HOSTILE).max_guest_memory(32 << 20)
}

/// A user id whose last digit picks the attack.
fn attack(n: u8) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-7000-8000-00000000000{n}")).unwrap()
}

fn guest_failure(e: Error) -> String {
    match e {
        Error::StorageUnavailable { port, message } if port == "guest" => message,
        other => panic!("expected the guest's failure, got {other:?}"),
    }
}

/// The hostile component answers every call it does not attack in with
/// this: proof that the store still runs calls.
fn still_serves(h: &Harness) {
    let answer = h.store.ensure_workspace(attack(9)).unwrap_err();
    assert_eq!(
        answer,
        Error::StorageUnavailable {
            port: "hostile".into(),
            message: "no attack chosen".into()
        }
    );
}

#[test]
fn a_guest_that_loops_forever_is_interrupted_at_its_deadline() {
    let h = Harness::with(|b| hostile(b).call_timeout(SHORT_DEADLINE));
    let started = Instant::now();
    let message = guest_failure(h.store.ensure_workspace(attack(1)).unwrap_err());
    println!("interrupted after {:?}: {message}", started.elapsed());
    assert!(message.contains("deadline of 300 ms"), "{message}");
    assert!(message.contains("interrupt"), "{message}");
    still_serves(&h);
}

#[test]
fn time_spent_in_ports_does_not_count_toward_the_deadline() {
    const PORT_DELAY: Duration = Duration::from_millis(250);
    let (h, faults) = Harness::with_faults_and(|b| b.call_timeout(SHORT_DEADLINE));
    let (user, _) = h.user_with_chat();
    faults.slow_down(None, PORT_DELAY);
    // Creating a chat makes several port calls: together far longer than the
    // deadline, while the guest itself runs for microseconds.
    let chat = h.store.create_chat(user);
    let slowed = PORT_DELAY * faults.calls().len() as u32;
    assert!(slowed > 2 * SHORT_DEADLINE, "only {slowed:?} in ports");
    assert!(chat.is_ok(), "{chat:?}");
}

#[test]
fn a_guest_that_allocates_without_bound_is_stopped_at_its_memory_cap() {
    let h = Harness::with(hostile);
    let message = guest_failure(h.store.ensure_workspace(attack(2)).unwrap_err());
    assert!(message.contains("trapped"), "{message}");
    still_serves(&h);
}

#[test]
fn a_guest_that_panics_is_a_typed_error_with_what_it_printed() {
    let h = Harness::with(hostile);
    let message = guest_failure(h.store.ensure_workspace(attack(3)).unwrap_err());
    assert!(message.contains("panics on purpose"), "{message}");
    still_serves(&h);
}

#[test]
fn an_instance_serves_one_user_only() {
    let h = Harness::with(hostile);
    let seen = |user: Uuid| report(h.store.ensure_workspace(user));
    let alice = attack(6);
    let bob = Uuid::parse_str("00000000-0000-7000-8000-000000000016").unwrap();
    assert_eq!(seen(alice), format!("{alice}"));
    // Alice's next call may reuse her instance; Bob's never does.
    assert_eq!(seen(alice), format!("{alice} {alice}"));
    assert_eq!(seen(bob), format!("{bob}"));
    assert_eq!(seen(alice), format!("{alice} {alice} {alice}"));
    // Another user's trap leaves her instance alone.
    guest_failure(h.store.ensure_workspace(attack(3)).unwrap_err());
    assert_eq!(seen(alice), format!("{alice} {alice} {alice} {alice}"));
    // An instance that trapped is not used again: the next call starts afresh.
    let carol = attack(7);
    assert_eq!(seen(carol), format!("{carol}"));
    guest_failure(h.store.ensure_workspace(carol).unwrap_err());
    assert_eq!(seen(carol), format!("{carol}"));
}

#[test]
fn an_answer_larger_than_the_host_lifts_traps_the_call() {
    let h = Harness::with(hostile);
    // 20 MiB of answer: within the guest's memory, past what the host lifts.
    let message = guest_failure(h.store.ensure_workspace(attack(5)).unwrap_err());
    assert!(message.contains("trapped"), "{message}");
    still_serves(&h);
}

#[test]
fn every_hostile_port_call_is_refused_and_nothing_outside_is_touched() {
    let h = Harness::with(hostile);
    // A sentinel tree beside the data directory, where `../` would lead.
    let sentinel = h.tmp.path().join("outside");
    fs::create_dir_all(sentinel.join("etc")).unwrap();
    fs::write(sentinel.join("etc/passwd"), b"root:x:0:0").unwrap();
    fs::write(h.tmp.path().join("outside.txt"), b"keep").unwrap();
    let outside_before = snapshot(h.tmp.path());
    let data_before = data_snapshot(&h.data_dir());

    let report = report(h.store.ensure_workspace(attack(4)));
    println!("{report}");
    let tried: usize = report
        .strip_prefix("tried ")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(tried > 300, "{report}");
    assert!(
        report.ends_with("accepted []"),
        "the host let something through: {report}"
    );

    assert_eq!(data_snapshot(&h.data_dir()), data_before);
    let outside_after: Vec<_> = snapshot(h.tmp.path())
        .into_iter()
        .filter(|(p, _)| !p.starts_with("data"))
        .collect();
    let outside_before: Vec<_> = outside_before
        .into_iter()
        .filter(|(p, _)| !p.starts_with("data"))
        .collect();
    assert_eq!(outside_after, outside_before);
    still_serves(&h);
}

#[test]
fn a_guest_cannot_read_or_touch_another_users_chat_through_the_ports() {
    let h = Harness::with(hostile);
    // Alice's data, written through the built-in policy on the same data directory.
    let builtin = chatstore_host::ChatStore::builder()
        .data_dir(h.data_dir())
        .build()
        .unwrap();
    let alice = Uuid::now_v7();
    let workspace = builtin.ensure_workspace(alice).unwrap();
    let chat = builtin.create_chat(alice).unwrap();
    builtin
        .write_history(alice, chat.chat_id, "# alice\n".as_bytes())
        .unwrap();
    let file = builtin
        .upload_attachment(alice, chat.chat_id, "secret.txt", None, &b"alice only"[..])
        .unwrap();
    builtin.start_sandbox(chat.chat_id).unwrap();
    let bob = Uuid::now_v7();
    let bob_workspace = builtin.ensure_workspace(bob).unwrap();
    let disk_before = data_snapshot(&h.data_dir());

    // Bob's call runs the hostile policy, aimed at Alice's chat.
    let report = report(
        h.store
            .delete_attachment(bob, chat.chat_id, workspace.workspace_id),
    );
    println!("{report}");
    assert!(
        report.ends_with("accepted []"),
        "the host let something through: {report}"
    );

    assert_eq!(data_snapshot(&h.data_dir()), disk_before);
    assert_eq!(
        builtin.list_attachments(alice, chat.chat_id).unwrap(),
        vec![file.clone()]
    );
    assert_eq!(
        attachment(&builtin, alice, chat.chat_id, file.file_id).unwrap(),
        b"alice only"
    );
    assert_eq!(history(&builtin, alice, chat.chat_id).unwrap(), "# alice\n");
    assert_eq!(builtin.get_workspace(alice).unwrap(), workspace);
    assert_eq!(builtin.list_chats(bob).unwrap(), vec![]);
    // Bob's workspace is still his, under its id.
    assert_eq!(builtin.get_workspace(bob).unwrap(), bob_workspace);
}

/// The hostile policy's report of what it did with the content of an upload.
fn abuse(h: &Harness, user: Uuid, chat: Uuid, content: chatstore_host::StagedContent) -> String {
    report(h.store.upload_staged(user, chat, "mine.bin", None, content))
}

#[test]
fn staged_content_is_stored_once_by_its_token_and_only_if_it_fits_one_call() {
    const QUOTA: u64 = 4 << 20;
    let h = Harness::with(|b| hostile(b).quota_bytes(QUOTA));
    let builtin = chatstore_host::ChatStore::builder()
        .data_dir(h.data_dir())
        .quota_bytes(QUOTA)
        .build()
        .unwrap();
    let bob = Uuid::now_v7();
    builtin.ensure_workspace(bob).unwrap();
    let chat = builtin.create_chat(bob).unwrap();
    const FILLED: u64 = 1 << 20;
    builtin
        .upload_attachment(
            bob,
            chat.chat_id,
            "filler",
            None,
            std::io::Read::take(std::io::repeat(2), FILLED),
        )
        .unwrap();
    let disk_before = data_snapshot(&h.data_dir());
    let stage = |bytes: u64| {
        h.store
            .staging()
            .stage(
                std::io::Read::take(std::io::repeat(1), bytes),
                ContentKind::Bytes,
                u64::MAX,
            )
            .unwrap()
    };

    // Small content: a forged token is refused, the real one is stored
    // once, and nothing else can be made of it.
    let report = abuse(&h, bob, chat.chat_id, stage(10));
    println!("{report}");
    let parts: Vec<&str> = report.split("; ").collect();
    assert!(
        parts[0].starts_with("forged refused (chat-storage: no content was staged"),
        "{report}"
    );
    assert_eq!(parts[1], "stored accepted", "{report}");
    for (part, what) in parts[2..].iter().zip(["again", "history", "append"]) {
        assert!(
            part.starts_with(&format!(
                "{what} refused (chat-storage: that staged content is already stored"
            )),
            "{report}"
        );
    }
    // Content past the room left under the quota (though not past the
    // quota itself): the policy ignores the quota, the host does not.
    let room = QUOTA - FILLED;
    let report = abuse(&h, bob, chat.chat_id, stage(room + 1));
    println!("{report}");
    assert!(
        report.contains(&format!(
            "stored refused (chat-storage: refused to grow the workspace by {} bytes",
            room + 1
        )),
        "{report}"
    );
    // The calls failed, so nothing they stored stays, staged or not.
    assert_eq!(data_snapshot(&h.data_dir()), disk_before);
    assert_eq!(builtin.get_usage(bob).unwrap().used_bytes, FILLED);
}

/// The message of the hostile policy's `storage-unavailable` answer from
/// its port `report`: what it tried and what the host did.
fn report<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result.unwrap_err() {
        Error::StorageUnavailable { port, message } if port == "report" => message,
        other => panic!("{other:?}"),
    }
}

/// The hostile store, and a chat of a new user made by the built-in policy
/// on the same data directory.
fn hostile_and_a_chat() -> (Harness, Uuid, chatstore_host::Chat) {
    let h = Harness::with(hostile);
    let builtin = chatstore_host::ChatStore::builder()
        .data_dir(h.data_dir())
        .build()
        .unwrap();
    let bob = Uuid::now_v7();
    builtin.ensure_workspace(bob).unwrap();
    let chat = builtin.create_chat(bob).unwrap();
    (h, bob, chat)
}

#[test]
fn a_call_serves_one_file() {
    let (h, bob, chat) = hostile_and_a_chat();
    let report = report(h.store.clear_attachments(bob, chat.chat_id));
    println!("{report}");
    assert!(
        report.starts_with("first accepted; second refused (chat-storage: a call opens one file"),
        "{report}"
    );
}

#[test]
fn the_hosts_checks_see_the_chat_rows_as_the_call_left_them() {
    let (h, bob, chat) = hostile_and_a_chat();
    let report = report(h.store.delete_chat(bob, chat.chat_id));
    assert_eq!(
        report,
        "deleted accepted: refused (chat-storage: no such chat); saved accepted: accepted"
    );
    // The call failed: its deletion was rolled back.
    assert_eq!(h.store.get_chat(bob, chat.chat_id), Ok(chat));
}

#[test]
fn a_policy_that_reads_a_chat_directory_where_the_built_in_one_does_not_is_served_under_the_lock() {
    // The built-in get-chat reads metadata alone, so the host first runs it
    // without the user's lock, where no chat directory is served; this
    // policy asks for the history's size there, and must get it (the call
    // runs again under the lock) and give the built-in's answer.
    let (h, bob, chat) = hostile_and_a_chat();
    for _ in 0..3 {
        assert_eq!(h.store.get_chat(bob, chat.chat_id), Ok(chat.clone()));
    }
    assert_eq!(
        h.store.get_chat(bob, Uuid::now_v7()),
        Err(Error::StorageUnavailable {
            port: "report".into(),
            message: "no such chat".into()
        })
    );
}
