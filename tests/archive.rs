//! A workspace exported as a tar archive and imported into a new or empty
//! one: what round-trips, and what an import refuses without writing.

use chatstore_host::{ChatFile, ChatStore, Error};
use chatstore_tests::{Harness, history};
use std::io::Read;
use uuid::Uuid;

/// A workspace with two chats, histories, and attachments of several kinds.
fn filled(h: &Harness) -> Uuid {
    let (user, first) = h.user_with_chat();
    h.store
        .write_history(user, first.chat_id, "# Plan\n**user:** go\n".as_bytes())
        .unwrap();
    h.store
        .upload_attachment(
            user,
            first.chat_id,
            "data.csv",
            Some("text/csv"),
            &b"a,b\n1,2\n"[..],
        )
        .unwrap();
    h.store
        .upload_attachment(
            user,
            first.chat_id,
            "café résumé.pdf",
            None,
            &[0u8, 255, 7, 1][..],
        )
        .unwrap();
    h.set_time(60);
    let second = h.store.create_chat(user).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    h.store
        .upload_attachment(
            user,
            second.chat_id,
            "big.bin",
            Some("application/octet-stream"),
            &big[..],
        )
        .unwrap();
    user
}

fn export(store: &ChatStore, user: Uuid) -> Vec<u8> {
    let mut archive = Vec::new();
    store.export_workspace(user, &mut archive).unwrap();
    archive
}

/// Everything that must survive a round trip, without ids.
/// A chat as it must survive: created at, history, files with their bytes.
type ChatView = (String, String, Vec<(ChatFileView, Vec<u8>)>);

fn contents(store: &ChatStore, user: Uuid) -> Vec<ChatView> {
    store
        .list_chats(user)
        .unwrap()
        .into_iter()
        .map(|chat| {
            let files = store
                .list_attachments(user, chat.chat_id)
                .unwrap()
                .into_iter()
                .map(|f| {
                    let (_, content) = store
                        .read_attachment(user, chat.chat_id, f.file_id)
                        .unwrap();
                    (view(&f), content.into_bytes().unwrap())
                })
                .collect();
            (
                chat.created_at.to_rfc3339(),
                history(store, user, chat.chat_id).unwrap(),
                files,
            )
        })
        .collect()
}

type ChatFileView = (String, Option<String>, u64, Option<String>, String);

fn view(f: &ChatFile) -> ChatFileView {
    (
        f.name.to_string(),
        f.content_type.clone(),
        f.size_bytes,
        f.sha256.clone(),
        f.created_at.to_rfc3339(),
    )
}

#[test]
fn a_workspace_round_trips_into_another_data_directory() {
    let from = Harness::new();
    let user = filled(&from);
    let archive = export(&from.store, user);

    let to = Harness::new();
    let summary = to.store.import_workspace(user, &archive[..]).unwrap();
    assert_eq!((summary.chats, summary.files), (2, 3));
    assert_eq!(contents(&to.store, user), contents(&from.store, user));
    assert_eq!(
        to.store.get_usage(user).unwrap().used_bytes,
        from.store.get_usage(user).unwrap().used_bytes
    );
    // New ids: the same archive can be restored beside its original.
    let chat_ids = |h: &Harness| -> Vec<Uuid> {
        let chats = h.store.list_chats(user).unwrap();
        chats.iter().map(|c| c.chat_id).collect()
    };
    let old = chat_ids(&from);
    assert!(chat_ids(&to).iter().all(|id| !old.contains(id)));
}

#[test]
fn an_archive_restores_beside_its_original_on_the_same_data_directory() {
    let h = Harness::new();
    let alice = filled(&h);
    let archive = export(&h.store, alice);
    let bob = Uuid::now_v7();
    h.store.ensure_workspace(bob).unwrap();
    h.store.import_workspace(bob, &archive[..]).unwrap();
    assert_eq!(contents(&h.store, bob), contents(&h.store, alice));
}

#[test]
fn an_import_into_a_workspace_with_chats_is_refused_and_changes_nothing() {
    let h = Harness::new();
    let user = filled(&h);
    let archive = export(&h.store, user);
    let before = h.snapshot();
    assert_eq!(
        h.store.import_workspace(user, &archive[..]),
        Err(Error::WorkspaceNotEmpty(user))
    );
    assert_eq!(h.snapshot(), before);
}

#[test]
fn an_import_past_the_quota_is_refused_and_changes_nothing() {
    let from = Harness::new();
    let user = filled(&from);
    let archive = export(&from.store, user);
    let to = Harness::with_quota(100_000);
    let before = to.snapshot();
    assert!(matches!(
        to.store.import_workspace(user, &archive[..]),
        Err(Error::WorkspaceQuotaExceeded(_))
    ));
    assert_eq!(
        to.snapshot(),
        before,
        "nothing written, nothing left staged"
    );
    assert_eq!(
        to.store.get_workspace(user),
        Err(Error::WorkspaceNotFound(user))
    );
}

/// An archive of `entries` (name, type, bytes), with the real manifest of
/// `valid` first unless `manifest` replaces it.
fn archive_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            header.set_size(0);
            header.set_link_name("/etc/passwd").unwrap();
        }
        // Written raw: the builder would refuse `..` and absolute names.
        let raw = &mut header.as_old_mut().name;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        let data: &[u8] = if *kind == tar::EntryType::Symlink {
            &[]
        } else {
            bytes
        };
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// The archive's entries, read back as (name, bytes).
fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut read = tar::Archive::new(archive);
    read.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

#[test]
fn truncated_corrupt_and_hostile_archives_are_refused_and_change_nothing() {
    let from = Harness::new();
    let user = filled(&from);
    let good = export(&from.store, user);
    let parts = entries(&good);
    let regular = tar::EntryType::Regular;
    let as_entries = |parts: &[(String, Vec<u8>)]| -> Vec<u8> {
        let borrowed: Vec<(&str, tar::EntryType, &[u8])> = parts
            .iter()
            .map(|(n, b)| (n.as_str(), regular, b.as_slice()))
            .collect();
        archive_of(&borrowed)
    };
    let with = |extra: (&str, tar::EntryType, &[u8])| -> Vec<u8> {
        let mut all: Vec<(&str, tar::EntryType, &[u8])> = parts
            .iter()
            .map(|(n, b)| (n.as_str(), regular, b.as_slice()))
            .collect();
        all.insert(1, extra);
        archive_of(&all)
    };
    let mut tampered = parts.clone();
    let last = tampered.len() - 1;
    tampered[last].1[0] ^= 1;
    let mut longer = parts.clone();
    longer[last].1.push(0);
    let mut manifest_last = parts.clone();
    manifest_last.rotate_left(1);
    let mut bad_name = parts.clone();
    bad_name[0].1 = String::from_utf8(bad_name[0].1.clone())
        .unwrap()
        .replace("data.csv", "../data.csv")
        .into_bytes();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("garbage", vec![0x5a; 4096]),
        ("a byte of content changed", as_entries(&tampered)),
        (
            "an entry longer than its manifest says",
            as_entries(&longer),
        ),
        ("the manifest not first", as_entries(&manifest_last)),
        ("an attachment name that is a path", as_entries(&bad_name)),
        ("an absolute path", with(("/etc/passwd", regular, b"x"))),
        (
            "a path with ..",
            with(("chats/../../escape", regular, b"x")),
        ),
        (
            "a symlink",
            with(("chats/link", tar::EntryType::Symlink, b"")),
        ),
        (
            "a directory",
            with(("chats/", tar::EntryType::Directory, b"")),
        ),
        (
            "an entry the manifest does not name",
            with(("chats/x/files/y", regular, b"x")),
        ),
        (
            "an entry twice",
            with((parts[1].0.as_str(), regular, parts[1].1.as_slice())),
        ),
        ("a missing entry", as_entries(&parts[..last])),
    ];
    let to = Harness::new();
    let before = to.snapshot();
    for (case, archive) in cases {
        match to.store.import_workspace(user, &archive[..]) {
            Err(Error::InvalidArchive(why)) => assert!(!why.is_empty(), "{case}"),
            other => panic!("{case}: {other:?}"),
        }
        assert_eq!(
            to.snapshot(),
            before,
            "{case}: nothing written, nothing left staged"
        );
    }
    assert_eq!(
        to.store.get_workspace(user),
        Err(Error::WorkspaceNotFound(user))
    );
    // And the untouched archive still imports.
    to.store.import_workspace(user, &good[..]).unwrap();
}
