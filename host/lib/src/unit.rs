//! Units of work: each use-case call gets its ports from a [`Backend`] and
//! ends by committing or rolling back everything it did through them.
//!
//! A write's changes to chat directories are [`Effect`]s: recorded during
//! the call, journaled with the metadata commit, applied after it.

use crate::error::PortResult;
use crate::names::AttachmentName;
use crate::ports::{
    ChatFileRepository, ChatRepository, HostRecords, Ports, SandboxSessionRepository,
    WorkspaceRepository,
};
use crate::staging::Staging;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// Whether a call may change anything. Read calls share the data directory;
/// write calls take it for themselves, across threads and processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The call only reads.
    Read,
    /// The call may write.
    Write,
}

/// Where calls get their ports: one [`UnitOfWork`] per use-case call.
pub trait Backend: Send + Sync {
    /// Starts a unit of work for one call.
    fn begin(&self, access: Access) -> PortResult<Box<dyn UnitOfWork>>;
    /// Where content waits, staged, for the call that stores it.
    fn staging(&self) -> Arc<Staging>;
}

/// The ports of one call, and that call's fate: everything it did through
/// them is kept by [`commit`](UnitOfWork::commit) or dropped by
/// [`rollback`](UnitOfWork::rollback), metadata and files alike.
pub trait UnitOfWork: Send {
    /// The ports this call runs against.
    fn ports(&self) -> Ports;
    /// The host's own view of the same transaction.
    fn records(&self) -> Arc<dyn HostRecords>;
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
    /// Starts one call's transaction. Write transactions of one data
    /// directory never overlap (the caller holds its write lock).
    fn begin(&self, access: Access) -> PortResult<Arc<dyn MetadataTransaction>>;
    /// File effects committed but not yet known to be applied.
    fn pending_effects(&self) -> PortResult<Vec<Effect>>;
    /// Forgets the pending effects once they are applied.
    fn forget_effects(&self) -> PortResult<()>;
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

/// The four repositories and the host's records inside one transaction.
pub trait MetadataTransaction:
    WorkspaceRepository + ChatRepository + ChatFileRepository + SandboxSessionRepository + HostRecords
{
    /// Records `effects` in the journal and commits, atomically: after a
    /// crash either both the metadata and the journal are there, or neither.
    fn commit(&self, effects: &[Effect]) -> PortResult<()>;
    /// Drops everything the transaction wrote.
    fn rollback(&self);
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
    fn begin(&self, _access: Access) -> PortResult<Box<dyn UnitOfWork>> {
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
