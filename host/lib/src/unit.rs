//! Units of work: each use-case call gets its ports from a [`Backend`] and
//! ends by committing or rolling back everything it did through them.
//!
//! A write's changes to chat directories are [`Effect`]s: recorded during
//! the call, journaled with the metadata commit, applied after it.

use crate::error::{PortError, PortResult};
use crate::names::AttachmentName;
use crate::ports::{
    ChatFileRepository, ChatRepository, HostRecords, Ports, SandboxSessionRepository,
    WorkspaceRepository,
};
use crate::staging::Staging;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// Whether a call may change anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The call only reads.
    Read,
    /// The call may write.
    Write,
}

/// Whose records a unit of work may touch, and so which writers it excludes.
///
/// Writers serialise per user (one user, one workspace, so the quota stays
/// exact), never per data directory: a write for one user takes that
/// user's lock for itself and shares the data directory; a read for a user
/// shares both, so it sees none of that user's writes half applied and
/// waits for no other user. A read of metadata alone takes neither
/// ([`Backend::begin_unlocked`]). The whole data directory is the scope of the
/// host's own maintenance (recovery at start, `fsck`): a write there
/// excludes every other call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One user's workspace.
    User(Uuid),
    /// Everything in the data directory.
    All,
}

/// Where calls get their ports: one [`UnitOfWork`] per use-case call.
pub trait Backend: Send + Sync {
    /// Starts a unit of work for one call on `scope`.
    fn begin(&self, access: Access, scope: Scope) -> PortResult<Box<dyn UnitOfWork>>;
    /// Starts a read of `scope`'s metadata alone that waits for no lock
    /// (the metadata store's own snapshot keeps it consistent). Whatever
    /// else its call touches fails, and [`UnitOfWork::needs_lock`] then
    /// says the call must run again in a unit from
    /// [`begin`](Backend::begin). By default, that unit straight away.
    fn begin_unlocked(&self, scope: Scope) -> PortResult<Box<dyn UnitOfWork>> {
        self.begin(Access::Read, scope)
    }
    /// Where content waits, staged, for the call that stores it.
    fn staging(&self) -> Arc<Staging>;
    /// The chat's working directory as an absolute path on this host, for a
    /// sandbox to mount; `None` where chats have no directory of their own.
    fn chat_dir(&self, _workspace_id: Uuid, _chat_id: Uuid) -> Option<std::path::PathBuf> {
        None
    }
    /// What a sandbox session left in the chat's directory: its regular
    /// files that `recorded` (the chat's attachments) does not describe,
    /// with their digests, and what cannot be an attachment. Where chats
    /// have no directory of their own, nothing.
    fn sandbox_outputs(
        &self,
        _workspace_id: Uuid,
        _chat_id: Uuid,
        _recorded: &[crate::model::ChatFile],
    ) -> PortResult<Outputs> {
        Ok(Outputs::default())
    }
}

/// What a sandbox session left in a chat directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Regular files to offer the policy.
    pub found: Vec<crate::model::SandboxOutput>,
    /// What is not offered, and why.
    pub unregistered: Vec<crate::model::Unregistered>,
}

/// The ports of one call, and that call's fate: everything it did through
/// them is kept by [`commit`](UnitOfWork::commit) or dropped by
/// [`rollback`](UnitOfWork::rollback), metadata and files alike.
pub trait UnitOfWork: Send {
    /// The ports this call runs against.
    fn ports(&self) -> Ports;
    /// The host's own view of the same transaction.
    fn records(&self) -> Arc<dyn HostRecords>;
    /// Counts what is on disk into the usage ledger: the chat directory
    /// `chat_id`, or with `None` the whole workspace; gives the workspace's
    /// bytes after. Where the ledger is not kept apart from the disk, there
    /// is nothing to count and it gives `None`.
    fn recount(&self, _workspace_id: Uuid, _chat_id: Option<Uuid>) -> PortResult<Option<u64>> {
        Ok(None)
    }
    /// Gives the workspace a quota of its own (`None`: the configured
    /// one again). Where usage comes from ports of the embedder's own, the
    /// quota is theirs too, and this is an error.
    fn set_quota(&self, _workspace_id: Uuid, _quota_bytes: Option<u64>) -> PortResult<()> {
        Err(PortError::new(
            "this store's quotas come from its own usage port",
        ))
    }
    /// Whether the call touched what a unit from
    /// [`Backend::begin_unlocked`] does not serve (a chat directory, a
    /// count on disk): its answer is void, and it runs again under its locks.
    fn needs_lock(&self) -> bool {
        false
    }
    /// Makes the call's effects durable and visible.
    fn commit(self: Box<Self>) -> PortResult<()>;
    /// Drops the call's effects.
    fn rollback(self: Box<Self>);
}

/// A change to a chat directory, recorded during a call and applied after
/// it commits. Applying one twice is the same as applying it once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Effect {
    /// Create the chat's directory with an empty `history.md`.
    CreateChat {
        /// The chat's workspace.
        workspace_id: Uuid,
        /// The chat.
        chat_id: Uuid,
    },
    /// Rename the staged file `staged` to `name` in the chat's directory.
    Install {
        /// The chat's workspace.
        workspace_id: Uuid,
        /// The chat.
        chat_id: Uuid,
        /// `history.md` or an attachment name.
        name: String,
        /// The file's name in `staging/`.
        staged: String,
    },
    /// Write the staged file `staged` into the chat's history at byte `at`,
    /// cutting off anything past `at` first, then remove the staged file.
    Append {
        /// The chat's workspace.
        workspace_id: Uuid,
        /// The chat.
        chat_id: Uuid,
        /// The message's file in `staging/`.
        staged: String,
        /// The history's length before the message.
        at: u64,
    },
    /// Remove the attachment `name`.
    Remove {
        /// The chat's workspace.
        workspace_id: Uuid,
        /// The chat.
        chat_id: Uuid,
        /// The attachment name.
        name: String,
    },
    /// Remove everything in the chat's directory but `history.md`.
    ClearAttachments {
        /// The chat's workspace.
        workspace_id: Uuid,
        /// The chat.
        chat_id: Uuid,
    },
    /// Remove the chat's directory.
    DeleteChat {
        /// The chat's workspace.
        workspace_id: Uuid,
        /// The chat.
        chat_id: Uuid,
    },
}

/// A metadata store with transactions and a journal of file effects.
pub trait MetadataStore: Send + Sync {
    /// Starts one call's transaction on `scope`. Write transactions of one
    /// scope never overlap; transactions of different users' scopes may,
    /// and each sees the others' commits. A store of one machine leaves the
    /// locks that keep them apart to the data directory (`flock`); a store
    /// that several hosts share ([`shared`](Self::shared)) takes `scope`'s
    /// locks itself, across hosts, and its transaction holds them from here
    /// until it is dropped (past its commit, for the call's file effects), so
    /// that its commit cannot outlive them.
    fn begin(&self, access: Access, scope: Scope) -> PortResult<Arc<dyn MetadataTransaction>>;
    /// File effects committed in `scope` (every scope's for
    /// [`Scope::All`]) but not yet known to be applied, oldest first.
    fn pending_effects(&self, scope: Scope) -> PortResult<Vec<Effect>>;
    /// Forgets `scope`'s pending effects once they are applied. It need not
    /// be durable by itself: a forgotten effect that comes back after a
    /// crash is applied again, which changes nothing.
    fn forget_effects(&self, scope: Scope) -> PortResult<()>;
    /// Every attachment's name as stored, unchecked: (file id, workspace
    /// id, chat id, name). For renaming what earlier versions stored under
    /// names the current rules refuse; a store that never did gives none.
    fn stored_names(&self) -> PortResult<Vec<StoredName>> {
        Ok(Vec::new())
    }
    /// Gives an attachment's row a new name.
    fn rename_file(&self, _file_id: Uuid, _name: &AttachmentName) -> PortResult<()> {
        Ok(())
    }
    /// What a store that several hosts share does for them; `None` for a
    /// store of one machine.
    fn shared(&self) -> Option<&dyn SharedStore> {
        None
    }
}

/// A metadata store that several hosts share: its transactions hold their
/// scope's locks themselves (see [`MetadataStore::begin`]), and it knows
/// whether other openings of it are live anywhere.
pub trait SharedStore: Send + Sync {
    /// Runs `clean` (removing staged content no journal names) only if no
    /// other opening of the store is live on any host, since its staged
    /// content may be in flight; says whether it ran.
    fn alone(&self, clean: &mut dyn FnMut() -> std::io::Result<()>) -> PortResult<bool>;
}

/// Locks that keep units of work apart (see [`Scope`]) across the threads
/// and processes of one machine: the data directory's (`flock`), for a
/// metadata store that does not take its own.
pub trait Locks: Send + Sync {
    /// Takes the locks a unit of work on `scope` needs: for a user, the
    /// store's shared and the user's shared for reading or exclusive for
    /// writing; for the whole store, the store's shared or exclusive.
    /// They are held until the [`Held`] is dropped.
    fn lock(&self, access: Access, scope: Scope) -> PortResult<Held>;
    /// Runs `clean` (removing staged content no journal names) only if no
    /// other opening of the data directory is live, since its staged
    /// content may be in flight; says whether it ran.
    fn alone(&self, clean: &mut dyn FnMut() -> std::io::Result<()>) -> PortResult<bool>;
}

/// Locks taken by [`Locks::lock`]; dropping it releases them.
pub struct Held(Box<dyn Lease>);

/// Locks that may be lost before they are released (as a database
/// session's are, or a test's). Dropping it releases them.
pub trait Lease: Send {
    /// Confirms the locks are still held: an error if they may not be, and
    /// then another writer may hold them. A write confirms them before its
    /// commit and again before its file effects.
    fn confirm(&mut self) -> PortResult<()>;
}

/// Locks that hold until dropped: a process's own.
struct Kept<T>(#[allow(dead_code)] T);

impl<T: Send> Lease for Kept<T> {
    fn confirm(&mut self) -> PortResult<()> {
        Ok(())
    }
}

impl Held {
    /// Holds `guard`, whose drop releases locks that hold until then.
    pub fn new(guard: impl Send + 'static) -> Held {
        Held(Box::new(Kept(guard)))
    }

    /// Holds locks that may be lost before they are dropped.
    pub fn lease(lease: impl Lease + 'static) -> Held {
        Held(Box::new(lease))
    }

    /// Confirms the locks are still held (see [`Lease::confirm`]).
    pub fn confirm(&mut self) -> PortResult<()> {
        self.0.confirm()
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

/// An attachment's name as stored, before any check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredName {
    /// The file.
    pub file_id: Uuid,
    /// Its chat's workspace.
    pub workspace_id: Uuid,
    /// Its chat.
    pub chat_id: Uuid,
    /// The name as stored.
    pub name: String,
}

/// A change to the usage ledger, recorded with the file effect that causes
/// it and committed in the same transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageChange {
    /// The chat's bytes (and so its workspace's) grow by `bytes`, or shrink
    /// if it is negative; never below zero.
    Grow {
        /// The chat's workspace.
        workspace_id: Uuid,
        /// The chat.
        chat_id: Uuid,
        /// How many bytes.
        bytes: i64,
    },
    /// The chat now holds `bytes`; its workspace changes by the difference.
    Set {
        /// The chat's workspace.
        workspace_id: Uuid,
        /// The chat.
        chat_id: Uuid,
        /// The chat's bytes.
        bytes: u64,
    },
    /// The chat is gone: its workspace shrinks by the chat's bytes.
    Drop {
        /// The chat's workspace.
        workspace_id: Uuid,
        /// The chat.
        chat_id: Uuid,
    },
}

impl UsageChange {
    /// The workspace and the chat it changes.
    pub fn chat(&self) -> (Uuid, Uuid) {
        match *self {
            UsageChange::Grow {
                workspace_id,
                chat_id,
                ..
            }
            | UsageChange::Set {
                workspace_id,
                chat_id,
                ..
            }
            | UsageChange::Drop {
                workspace_id,
                chat_id,
            } => (workspace_id, chat_id),
        }
    }

    /// The chat's bytes after the change, from its bytes before.
    pub fn after(&self, before: u64) -> u64 {
        match *self {
            UsageChange::Grow { bytes, .. } => before.saturating_add_signed(bytes),
            UsageChange::Set { bytes, .. } => bytes,
            UsageChange::Drop { .. } => 0,
        }
    }
}

/// What `change` does to the ledger as it stands in `ledger`: the chat's
/// bytes after it (`None`: the chat's row goes) and how much the
/// workspace's bytes change; `None` for a workspace never counted, which
/// is counted in full when next asked.
pub(crate) fn ledger_step(
    ledger: &(impl UsageLedger + ?Sized),
    change: &UsageChange,
) -> PortResult<Option<(Option<u64>, i64)>> {
    let (workspace_id, chat_id) = change.chat();
    if ledger.used_bytes(workspace_id)?.is_none() {
        return Ok(None);
    }
    let before = ledger.chat_bytes(chat_id)?.unwrap_or(0);
    let after = change.after(before);
    let delta = signed_bytes(after) - signed_bytes(before);
    let row = match change {
        UsageChange::Drop { .. } => None,
        _ => Some(after),
    };
    Ok(Some((row, delta)))
}

/// A count of bytes as a signed number (what SQLite's `INTEGER` holds, and
/// what a shrinking change needs); past `i64::MAX`, that.
pub(crate) fn signed_bytes(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A workspace's usage as counted on disk: everything under its directory,
/// and each chat directory's share.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// Bytes under the workspace's directory (chats, `lost+found/`).
    pub total: u64,
    /// Bytes under each chat directory.
    pub chats: Vec<(Uuid, u64)>,
}

/// The usage ledger: each workspace's bytes kept in the metadata, changed in
/// the transaction of every write, so a quota check costs one lookup
/// whatever the workspace holds. What a sandbox writes is not in it until a
/// count reconciles it (at the end of the sandbox's session, by `fsck`, or
/// on request).
pub trait UsageLedger {
    /// The workspace's bytes, or `None` if they were never counted.
    fn used_bytes(&self, workspace_id: Uuid) -> PortResult<Option<u64>>;
    /// The chat's bytes, or `None` if they were never counted.
    fn chat_bytes(&self, chat_id: Uuid) -> PortResult<Option<u64>>;
    /// Applies `changes` to workspaces already counted (the others are
    /// counted in full when next asked).
    fn change_usage(&self, changes: &[UsageChange]) -> PortResult<()>;
    /// Replaces the workspace's ledger with a count of its disk.
    fn set_count(&self, workspace_id: Uuid, count: &Count) -> PortResult<()>;
    /// The workspace's own quota, or `None` if it has the configured one.
    fn quota(&self, workspace_id: Uuid) -> PortResult<Option<u64>>;
    /// Gives the workspace a quota of its own, or with `None` the
    /// configured one again.
    fn set_quota(&self, workspace_id: Uuid, quota_bytes: Option<u64>) -> PortResult<()>;
    /// [`used_bytes`](Self::used_bytes) and [`quota`](Self::quota) of the
    /// workspace, in one lookup where the store can make it one.
    fn usage_and_quota(&self, workspace_id: Uuid) -> PortResult<(Option<u64>, Option<u64>)> {
        Ok((self.used_bytes(workspace_id)?, self.quota(workspace_id)?))
    }
}

/// The four repositories, the host's records and the usage ledger inside
/// one transaction.
pub trait MetadataTransaction:
    WorkspaceRepository
    + ChatRepository
    + ChatFileRepository
    + SandboxSessionRepository
    + HostRecords
    + UsageLedger
{
    /// Records `effects` in the journal and commits, atomically: after a
    /// crash either both the metadata and the journal are there, or neither.
    fn commit(&self, effects: &[Effect]) -> PortResult<()>;
    /// Drops everything the transaction wrote.
    fn rollback(&self);
    /// For a store that several hosts share, whose transactions hold their
    /// own locks: confirms they are still held after the commit, before its
    /// file effects (an error if they may not be: another writer may then
    /// hold them). A store of one machine has nothing to confirm.
    fn confirm_locks(&self) -> PortResult<()> {
        Ok(())
    }
}

/// Ports that are the same for every call, without transactions: for fakes
/// and your own adapters (`ChatStoreBuilder::build_with_ports`).
pub struct FixedPorts {
    /// The ports every call gets.
    pub ports: Ports,
    /// The host's records every call gets.
    pub records: Arc<dyn HostRecords>,
    /// Where content is staged; the `chat-storage` adapter stores it from there.
    pub staging: Arc<Staging>,
}

impl Backend for FixedPorts {
    fn begin(&self, _access: Access, _scope: Scope) -> PortResult<Box<dyn UnitOfWork>> {
        Ok(Box::new(FixedUnit {
            ports: self.ports.clone(),
            records: self.records.clone(),
        }))
    }

    fn staging(&self) -> Arc<Staging> {
        self.staging.clone()
    }
}

struct FixedUnit {
    ports: Ports,
    records: Arc<dyn HostRecords>,
}

impl UnitOfWork for FixedUnit {
    fn ports(&self) -> Ports {
        self.ports.clone()
    }

    fn records(&self) -> Arc<dyn HostRecords> {
        self.records.clone()
    }

    fn commit(self: Box<Self>) -> PortResult<()> {
        Ok(())
    }

    fn rollback(self: Box<Self>) {}
}
