//! One test suite for every family of metadata repositories: the behaviour
//! the use cases rely on, whichever adapter stores it.

use crate::model::{Chat, ChatFile, SandboxSession, Timestamp, Workspace};
use crate::names::AttachmentName;
use crate::ports::{ChatFileRepository, ChatRepository, WorkspaceRepository};
use crate::unit::{Access, Count, MetadataStore, MetadataTransaction, Scope, UsageChange};
use uuid::Uuid;

/// Expands to one `#[test]` per behaviour. `$make` gives a fresh
/// `(guard, metadata)` pair; the guard (a temporary directory, say) lives
/// as long as the test. A `$make` that gives an `Option` skips the tests
/// when it gives `None` (no server to run them on).
macro_rules! repository_suite {
    (optional $make:expr) => {
        crate::adapters::suite::repository_suite!(@all $make);
    };
    ($make:expr) => {
        crate::adapters::suite::repository_suite!(@all Some($make));
    };
    (@all $make:expr) => {
        crate::adapters::suite::repository_suite!(@tests $make;
            workspace_is_found_by_id_and_by_user_id,
            saving_a_users_new_workspace_replaces_the_old_one,
            saving_a_workspace_again_updates_it,
            chat_crud_round_trips,
            chats_are_listed_only_for_their_workspace,
            deleting_a_missing_chat_is_not_an_error,
            a_chat_saved_in_another_workspace_is_listed_only_there,
            a_workspace_saved_for_another_user_leaves_the_first,
            chat_file_save_get_and_get_by_name,
            chat_files_are_listed_only_for_their_chat,
            deleting_one_file_keeps_the_others,
            deleting_by_chat_clears_only_that_chat,
            the_same_name_is_replaced_by_a_new_id,
            a_file_saved_under_a_new_name_frees_the_old_one,
            content_type_none_round_trips,
            a_started_sandbox_is_active_until_it_ends,
            the_host_sees_every_workspace,
        );
        crate::adapters::suite::repository_suite!(@whole $make;
            a_commit_is_seen_by_later_transactions,
            a_rollback_leaves_nothing,
            a_read_transaction_refuses_writes,
            two_users_writers_overlap_and_both_commits_are_kept,
            the_ledger_counts_only_counted_workspaces,
            the_ledger_follows_growth_replacement_and_removal,
            a_new_count_replaces_the_ledger,
            a_new_count_leaves_other_workspaces,
            a_transaction_reads_its_own_writes,
            a_workspace_keeps_its_own_quota_until_it_is_cleared,
            usage_and_quota_are_read_together_as_they_are_apart,
        );
    };
    (@tests $make:expr; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let Some((_guard, metadata)) = $make else { return };
                let tx = crate::unit::MetadataStore::begin(&metadata, crate::unit::Access::Write, crate::unit::Scope::All).unwrap();
                crate::adapters::suite::$name(&*tx);
                tx.commit(&[]).unwrap();
            }
        )*
    };
    (@whole $make:expr; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let Some((_guard, metadata)) = $make else { return };
                crate::adapters::suite::$name(&metadata);
            }
        )*
    };
}
pub(crate) use repository_suite;

fn at(seconds: i64) -> Timestamp {
    crate::model::timestamp(seconds, 7).expect("a time")
}

pub(crate) fn workspace(user_id: Uuid) -> Workspace {
    Workspace {
        workspace_id: Uuid::now_v7(),
        user_id,
        created_at: at(1),
    }
}

fn chat(workspace_id: Uuid) -> Chat {
    Chat {
        chat_id: Uuid::now_v7(),
        workspace_id,
        created_at: at(2),
    }
}

fn file(chat_id: Uuid, name: &str) -> ChatFile {
    ChatFile {
        file_id: Uuid::now_v7(),
        chat_id,
        name: AttachmentName::new(name).unwrap(),
        content_type: Some("text/plain".into()),
        size_bytes: 42,
        sha256: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
        created_at: at(3),
    }
}

fn sorted<T: Clone, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut items = items.to_vec();
    items.sort_by_key(key);
    items
}

pub fn workspace_is_found_by_id_and_by_user_id(repo: &dyn WorkspaceRepository) {
    let w = workspace(Uuid::now_v7());
    repo.save(&w).unwrap();
    assert_eq!(repo.get(w.workspace_id).unwrap(), Some(w.clone()));
    assert_eq!(repo.get_by_user_id(w.user_id).unwrap(), Some(w));
    assert_eq!(repo.get(Uuid::now_v7()).unwrap(), None);
    assert_eq!(repo.get_by_user_id(Uuid::now_v7()).unwrap(), None);
}

pub fn saving_a_users_new_workspace_replaces_the_old_one(repo: &dyn WorkspaceRepository) {
    let user = Uuid::now_v7();
    let old = workspace(user);
    let new = workspace(user);
    repo.save(&old).unwrap();
    repo.save(&new).unwrap();
    assert_eq!(repo.get_by_user_id(user).unwrap(), Some(new));
    assert_eq!(repo.get(old.workspace_id).unwrap(), None);
}

pub fn saving_a_workspace_again_updates_it(repo: &dyn WorkspaceRepository) {
    let mut w = workspace(Uuid::now_v7());
    repo.save(&w).unwrap();
    w.created_at = at(99);
    repo.save(&w).unwrap();
    assert_eq!(repo.get(w.workspace_id).unwrap(), Some(w));
}

pub fn chat_crud_round_trips(repo: &dyn ChatRepository) {
    let c = chat(Uuid::now_v7());
    assert_eq!(repo.get(c.chat_id).unwrap(), None);
    repo.save(&c).unwrap();
    assert_eq!(repo.get(c.chat_id).unwrap(), Some(c.clone()));
    repo.delete(c.chat_id).unwrap();
    assert_eq!(repo.get(c.chat_id).unwrap(), None);
}

pub fn chats_are_listed_only_for_their_workspace(repo: &dyn ChatRepository) {
    let (mine, theirs) = (Uuid::now_v7(), Uuid::now_v7());
    let a = chat(mine);
    let b = chat(mine);
    let other = chat(theirs);
    for c in [&a, &b, &other] {
        repo.save(c).unwrap();
    }
    let key = |c: &Chat| c.chat_id;
    assert_eq!(
        sorted(&repo.list_by_workspace_id(mine).unwrap(), key),
        sorted(&[a, b], key)
    );
    assert_eq!(repo.list_by_workspace_id(theirs).unwrap(), vec![other]);
    assert!(
        repo.list_by_workspace_id(Uuid::now_v7())
            .unwrap()
            .is_empty()
    );
}

pub fn deleting_a_missing_chat_is_not_an_error(repo: &dyn ChatRepository) {
    repo.delete(Uuid::now_v7()).unwrap();
}

pub fn a_chat_saved_in_another_workspace_is_listed_only_there(repo: &dyn ChatRepository) {
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let mut c = chat(first);
    let stays = chat(first);
    repo.save(&c).unwrap();
    repo.save(&stays).unwrap();
    c.workspace_id = second;
    repo.save(&c).unwrap();
    assert_eq!(repo.list_by_workspace_id(first).unwrap(), vec![stays]);
    assert_eq!(repo.list_by_workspace_id(second).unwrap(), vec![c]);
}

pub fn a_workspace_saved_for_another_user_leaves_the_first(repo: &dyn WorkspaceRepository) {
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let mut w = workspace(first);
    repo.save(&w).unwrap();
    w.user_id = second;
    repo.save(&w).unwrap();
    assert_eq!(repo.get_by_user_id(first).unwrap(), None);
    assert_eq!(repo.get_by_user_id(second).unwrap(), Some(w));
}

pub fn chat_file_save_get_and_get_by_name(repo: &dyn ChatFileRepository) {
    let f = file(Uuid::now_v7(), "notes.txt");
    repo.save(&f).unwrap();
    assert_eq!(repo.get(f.file_id).unwrap(), Some(f.clone()));
    assert_eq!(
        repo.get_by_chat_id_and_name(f.chat_id, &f.name).unwrap(),
        Some(f.clone())
    );
    let other_name = AttachmentName::new("other.txt").unwrap();
    assert_eq!(
        repo.get_by_chat_id_and_name(f.chat_id, &other_name)
            .unwrap(),
        None
    );
    assert_eq!(
        repo.get_by_chat_id_and_name(Uuid::now_v7(), &f.name)
            .unwrap(),
        None
    );
}

pub fn chat_files_are_listed_only_for_their_chat(repo: &dyn ChatFileRepository) {
    let (mine, theirs) = (Uuid::now_v7(), Uuid::now_v7());
    let a = file(mine, "a");
    let b = file(mine, "b");
    let other = file(theirs, "a");
    for f in [&a, &b, &other] {
        repo.save(f).unwrap();
    }
    let key = |f: &ChatFile| f.file_id;
    assert_eq!(
        sorted(&repo.list_by_chat_id(mine).unwrap(), key),
        sorted(&[a, b], key)
    );
    assert_eq!(repo.list_by_chat_id(theirs).unwrap(), vec![other]);
}

pub fn deleting_one_file_keeps_the_others(repo: &dyn ChatFileRepository) {
    let chat_id = Uuid::now_v7();
    let a = file(chat_id, "a");
    let b = file(chat_id, "b");
    repo.save(&a).unwrap();
    repo.save(&b).unwrap();
    repo.delete(a.file_id).unwrap();
    repo.delete(Uuid::now_v7()).unwrap();
    assert_eq!(repo.get(a.file_id).unwrap(), None);
    assert_eq!(repo.list_by_chat_id(chat_id).unwrap(), vec![b]);
}

pub fn deleting_by_chat_clears_only_that_chat(repo: &dyn ChatFileRepository) {
    let (mine, theirs) = (Uuid::now_v7(), Uuid::now_v7());
    repo.save(&file(mine, "a")).unwrap();
    repo.save(&file(mine, "b")).unwrap();
    let other = file(theirs, "a");
    repo.save(&other).unwrap();
    repo.delete_by_chat_id(mine).unwrap();
    assert!(repo.list_by_chat_id(mine).unwrap().is_empty());
    assert_eq!(repo.list_by_chat_id(theirs).unwrap(), vec![other]);
}

pub fn the_same_name_is_replaced_by_a_new_id(repo: &dyn ChatFileRepository) {
    let chat_id = Uuid::now_v7();
    let old = file(chat_id, "report.pdf");
    let new = ChatFile {
        size_bytes: 7,
        ..file(chat_id, "report.pdf")
    };
    repo.save(&old).unwrap();
    repo.save(&new).unwrap();
    assert_ne!(old.file_id, new.file_id);
    assert_eq!(repo.get(old.file_id).unwrap(), None);
    assert_eq!(
        repo.get_by_chat_id_and_name(chat_id, &new.name).unwrap(),
        Some(new.clone())
    );
    assert_eq!(repo.list_by_chat_id(chat_id).unwrap(), vec![new]);
}

pub fn a_file_saved_under_a_new_name_frees_the_old_one(repo: &dyn ChatFileRepository) {
    let chat_id = Uuid::now_v7();
    let mut f = file(chat_id, "draft.txt");
    let old_name = f.name.clone();
    repo.save(&f).unwrap();
    f.name = AttachmentName::new("final.txt").unwrap();
    repo.save(&f).unwrap();
    assert_eq!(
        repo.get_by_chat_id_and_name(chat_id, &old_name).unwrap(),
        None
    );
    assert_eq!(
        repo.get_by_chat_id_and_name(chat_id, &f.name).unwrap(),
        Some(f.clone())
    );
    // The old name is free for another file, which leaves this one be.
    let other = file(chat_id, "draft.txt");
    repo.save(&other).unwrap();
    let key = |f: &ChatFile| f.file_id;
    assert_eq!(
        sorted(&repo.list_by_chat_id(chat_id).unwrap(), key),
        sorted(&[f, other], key)
    );
}

pub fn content_type_none_round_trips(repo: &dyn ChatFileRepository) {
    let f = ChatFile {
        content_type: None,
        sha256: None,
        ..file(Uuid::now_v7(), "raw")
    };
    repo.save(&f).unwrap();
    assert_eq!(repo.get(f.file_id).unwrap(), Some(f));
}

pub fn a_started_sandbox_is_active_until_it_ends(repo: &dyn MetadataTransaction) {
    let chat_id = Uuid::now_v7();
    let session = SandboxSession {
        session_id: Uuid::now_v7(),
        chat_id,
    };
    assert_eq!(repo.get_active_by_chat_id(chat_id).unwrap(), None);
    repo.start_sandbox(&session).unwrap();
    assert_eq!(
        repo.get_active_by_chat_id(chat_id).unwrap(),
        Some(session.clone())
    );
    assert_eq!(repo.get_active_by_chat_id(Uuid::now_v7()).unwrap(), None);
    assert_eq!(repo.end_sandbox(chat_id).unwrap(), Some(session));
    assert_eq!(repo.get_active_by_chat_id(chat_id).unwrap(), None);
    assert_eq!(repo.end_sandbox(chat_id).unwrap(), None);
}

pub fn the_host_sees_every_workspace(tx: &dyn MetadataTransaction) {
    let (a, b) = (chat(Uuid::now_v7()), chat(Uuid::now_v7()));
    ChatRepository::save(tx, &a).unwrap();
    ChatRepository::save(tx, &b).unwrap();
    let fa = file(a.chat_id, "x");
    let fb = file(b.chat_id, "x");
    ChatFileRepository::save(tx, &fa).unwrap();
    ChatFileRepository::save(tx, &fb).unwrap();
    let key = |c: &Chat| c.chat_id;
    assert_eq!(sorted(&tx.all_chats().unwrap(), key), sorted(&[a, b], key));
    let key = |f: &ChatFile| f.file_id;
    assert_eq!(
        sorted(&tx.all_files().unwrap(), key),
        sorted(&[fa, fb], key)
    );
}

pub fn a_commit_is_seen_by_later_transactions(metadata: &dyn MetadataStore) {
    let w = workspace(Uuid::now_v7());
    let tx = metadata.begin(Access::Write, Scope::All).unwrap();
    WorkspaceRepository::save(&*tx, &w).unwrap();
    tx.commit(&[]).unwrap();
    drop(tx);
    let later = metadata.begin(Access::Read, Scope::All).unwrap();
    assert_eq!(
        WorkspaceRepository::get(&*later, w.workspace_id).unwrap(),
        Some(w)
    );
}

pub fn a_rollback_leaves_nothing(metadata: &dyn MetadataStore) {
    let w = workspace(Uuid::now_v7());
    let c = chat(w.workspace_id);
    let tx = metadata.begin(Access::Write, Scope::All).unwrap();
    WorkspaceRepository::save(&*tx, &w).unwrap();
    ChatRepository::save(&*tx, &c).unwrap();
    ChatFileRepository::save(&*tx, &file(c.chat_id, "a")).unwrap();
    tx.rollback();
    drop(tx);
    let later = metadata.begin(Access::Read, Scope::All).unwrap();
    assert_eq!(
        WorkspaceRepository::get(&*later, w.workspace_id).unwrap(),
        None
    );
    assert_eq!(ChatRepository::get(&*later, c.chat_id).unwrap(), None);
    assert!(later.list_by_chat_id(c.chat_id).unwrap().is_empty());
}

pub fn a_read_transaction_refuses_writes(metadata: &dyn MetadataStore) {
    let tx = metadata.begin(Access::Read, Scope::All).unwrap();
    let w = workspace(Uuid::now_v7());
    assert!(WorkspaceRepository::save(&*tx, &w).is_err());
    assert!(ChatRepository::delete(&*tx, Uuid::now_v7()).is_err());
    assert!(tx.delete_by_chat_id(Uuid::now_v7()).is_err());
    tx.rollback();
    drop(tx);
}

pub fn a_transaction_reads_its_own_writes(metadata: &dyn MetadataStore) {
    let c = chat(Uuid::now_v7());
    let tx = metadata.begin(Access::Write, Scope::All).unwrap();
    ChatRepository::save(&*tx, &c).unwrap();
    assert_eq!(
        ChatRepository::get(&*tx, c.chat_id).unwrap(),
        Some(c.clone())
    );
    ChatRepository::delete(&*tx, c.chat_id).unwrap();
    assert_eq!(ChatRepository::get(&*tx, c.chat_id).unwrap(), None);
    tx.commit(&[]).unwrap();
    drop(tx);
}

pub fn two_users_writers_overlap_and_both_commits_are_kept(metadata: &dyn MetadataStore) {
    let (alice, bob) = (workspace(Uuid::now_v7()), workspace(Uuid::now_v7()));
    let a = metadata
        .begin(Access::Write, Scope::User(alice.user_id))
        .unwrap();
    let b = metadata
        .begin(Access::Write, Scope::User(bob.user_id))
        .unwrap();
    // Both have read before either writes, as a call does.
    assert_eq!(a.get_by_user_id(alice.user_id).unwrap(), None);
    assert_eq!(b.get_by_user_id(bob.user_id).unwrap(), None);
    WorkspaceRepository::save(&*a, &alice).unwrap();
    a.commit(&[]).unwrap();
    drop(a);
    WorkspaceRepository::save(&*b, &bob).unwrap();
    b.commit(&[]).unwrap();
    drop(b);
    let later = metadata.begin(Access::Read, Scope::All).unwrap();
    assert_eq!(later.get_by_user_id(alice.user_id).unwrap(), Some(alice));
    assert_eq!(later.get_by_user_id(bob.user_id).unwrap(), Some(bob));
}

fn grow(workspace_id: Uuid, chat_id: Uuid, bytes: i64) -> UsageChange {
    UsageChange::Grow {
        workspace_id,
        chat_id,
        bytes,
    }
}

pub fn the_ledger_counts_only_counted_workspaces(metadata: &dyn MetadataStore) {
    let (w, c) = (Uuid::now_v7(), Uuid::now_v7());
    let tx = metadata.begin(Access::Write, Scope::All).unwrap();
    assert_eq!(tx.used_bytes(w).unwrap(), None);
    // Changes to a workspace never counted are left to its first count.
    tx.change_usage(&[grow(w, c, 10)]).unwrap();
    assert_eq!(tx.used_bytes(w).unwrap(), None);
    assert_eq!(tx.chat_bytes(c).unwrap(), None);
    tx.commit(&[]).unwrap();
    drop(tx);
}

pub fn the_ledger_follows_growth_replacement_and_removal(metadata: &dyn MetadataStore) {
    let (w, c1, c2) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let counted = Count {
        total: 100,
        chats: vec![(c1, 60)],
    };
    let tx = metadata.begin(Access::Write, Scope::All).unwrap();
    tx.set_count(w, &counted).unwrap();
    tx.change_usage(&[
        UsageChange::Set {
            workspace_id: w,
            chat_id: c2,
            bytes: 0,
        },
        grow(w, c2, 25),
        grow(w, c1, -10),
    ])
    .unwrap();
    tx.commit(&[]).unwrap();
    drop(tx);
    let tx = metadata.begin(Access::Write, Scope::All).unwrap();
    assert_eq!(tx.used_bytes(w).unwrap(), Some(115));
    assert_eq!(tx.chat_bytes(c1).unwrap(), Some(50));
    assert_eq!(tx.chat_bytes(c2).unwrap(), Some(25));
    tx.change_usage(&[
        UsageChange::Set {
            workspace_id: w,
            chat_id: c1,
            bytes: 5,
        },
        UsageChange::Drop {
            workspace_id: w,
            chat_id: c2,
        },
        // Never below zero, whatever a sandbox removed behind the ledger.
        grow(w, c1, -1000),
    ])
    .unwrap();
    assert_eq!(tx.used_bytes(w).unwrap(), Some(40));
    assert_eq!(tx.chat_bytes(c1).unwrap(), Some(0));
    assert_eq!(tx.chat_bytes(c2).unwrap(), None);
    tx.rollback();
    drop(tx);
    let later = metadata.begin(Access::Read, Scope::All).unwrap();
    assert_eq!(later.used_bytes(w).unwrap(), Some(115));
}

pub fn a_new_count_replaces_the_ledger(metadata: &dyn MetadataStore) {
    let (w, c1, c2) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let tx = metadata.begin(Access::Write, Scope::All).unwrap();
    tx.set_count(
        w,
        &Count {
            total: 10,
            chats: vec![(c1, 10)],
        },
    )
    .unwrap();
    tx.set_count(
        w,
        &Count {
            total: 7,
            chats: vec![(c2, 3)],
        },
    )
    .unwrap();
    tx.commit(&[]).unwrap();
    drop(tx);
    let later = metadata.begin(Access::Read, Scope::All).unwrap();
    assert_eq!(later.used_bytes(w).unwrap(), Some(7));
    assert_eq!(later.chat_bytes(c1).unwrap(), None);
    assert_eq!(later.chat_bytes(c2).unwrap(), Some(3));
}

pub fn a_new_count_leaves_other_workspaces(metadata: &dyn MetadataStore) {
    let (w, other, c, theirs) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let tx = metadata.begin(Access::Write, Scope::All).unwrap();
    let count = |chat, bytes| Count {
        total: bytes,
        chats: vec![(chat, bytes)],
    };
    tx.set_count(other, &count(theirs, 5)).unwrap();
    tx.set_count(w, &count(c, 10)).unwrap();
    tx.set_count(w, &count(c, 4)).unwrap();
    // A chat last counted in `other` is no longer `w`'s to clear.
    let moved = Uuid::now_v7();
    tx.set_count(w, &count(moved, 1)).unwrap();
    tx.set_count(other, &count(moved, 6)).unwrap();
    tx.set_count(w, &count(c, 4)).unwrap();
    tx.commit(&[]).unwrap();
    drop(tx);
    let later = metadata.begin(Access::Read, Scope::All).unwrap();
    assert_eq!(later.chat_bytes(c).unwrap(), Some(4));
    assert_eq!(later.used_bytes(other).unwrap(), Some(6));
    assert_eq!(later.chat_bytes(theirs).unwrap(), None);
    assert_eq!(later.chat_bytes(moved).unwrap(), Some(6));
}

pub fn a_workspace_keeps_its_own_quota_until_it_is_cleared(metadata: &dyn MetadataStore) {
    let (w, other) = (Uuid::now_v7(), Uuid::now_v7());
    let tx = metadata.begin(Access::Write, Scope::All).unwrap();
    assert_eq!(tx.quota(w).unwrap(), None);
    tx.set_quota(w, Some(5_000)).unwrap();
    tx.set_quota(w, Some(7_000)).unwrap();
    tx.commit(&[]).unwrap();
    drop(tx);
    let later = metadata.begin(Access::Write, Scope::All).unwrap();
    assert_eq!(later.quota(w).unwrap(), Some(7_000));
    assert_eq!(later.quota(other).unwrap(), None);
    later.set_quota(w, None).unwrap();
    later.commit(&[]).unwrap();
    drop(later);
    let read = metadata.begin(Access::Read, Scope::All).unwrap();
    assert_eq!(read.quota(w).unwrap(), None);
    assert!(read.set_quota(w, Some(1)).is_err(), "a read refuses it");
}

pub fn usage_and_quota_are_read_together_as_they_are_apart(metadata: &dyn MetadataStore) {
    let (w, other) = (Uuid::now_v7(), Uuid::now_v7());
    let tx = metadata.begin(Access::Write, Scope::All).unwrap();
    assert_eq!(tx.usage_and_quota(w).unwrap(), (None, None));
    tx.set_count(
        w,
        &Count {
            total: 300,
            chats: vec![],
        },
    )
    .unwrap();
    assert_eq!(tx.usage_and_quota(w).unwrap(), (Some(300), None));
    tx.set_quota(w, Some(7_000)).unwrap();
    tx.set_count(
        other,
        &Count {
            total: 5,
            chats: vec![],
        },
    )
    .unwrap();
    assert_eq!(tx.usage_and_quota(w).unwrap(), (Some(300), Some(7_000)));
    assert_eq!(tx.usage_and_quota(other).unwrap(), (Some(5), None));
    tx.commit(&[]).unwrap();
    drop(tx);
}
