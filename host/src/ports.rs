//! The ports the storage component imports, as Rust traits.
//!
//! Adapters implement these; the binding layer turns the guest's calls into
//! calls on them after checking every id and name the guest passed.

use crate::adapters::fs::Effect;
use crate::error::PortResult;
use crate::model::{Chat, ChatFile, SandboxSession, Workspace, WorkspaceUsage};
use crate::names::AttachmentName;
use std::sync::Arc;
use uuid::Uuid;

/// Workspace metadata.
pub trait WorkspaceRepository: Send + Sync {
    /// The workspace with this id.
    fn get(&self, workspace_id: Uuid) -> PortResult<Option<Workspace>>;
    /// The workspace this user owns.
    fn get_by_user_id(&self, user_id: Uuid) -> PortResult<Option<Workspace>>;
    /// Stores the workspace, replacing any with the same id or the same user.
    fn save(&self, workspace: &Workspace) -> PortResult<()>;
}

/// Chat metadata.
pub trait ChatRepository: Send + Sync {
    /// The chat with this id, whatever its workspace.
    fn get(&self, chat_id: Uuid) -> PortResult<Option<Chat>>;
    /// The workspace's chats.
    fn list_by_workspace_id(&self, workspace_id: Uuid) -> PortResult<Vec<Chat>>;
    /// Stores the chat, replacing any with the same id.
    fn save(&self, chat: &Chat) -> PortResult<()>;
    /// Removes the chat; a missing chat is not an error.
    fn delete(&self, chat_id: Uuid) -> PortResult<()>;
    /// Every chat of every workspace (host only: `fsck`).
    fn list_all(&self) -> PortResult<Vec<Chat>>;
}

/// Attachment metadata.
pub trait ChatFileRepository: Send + Sync {
    /// The file with this id, whatever its chat.
    fn get(&self, file_id: Uuid) -> PortResult<Option<ChatFile>>;
    /// The chat's file of this name.
    fn get_by_chat_id_and_name(
        &self,
        chat_id: Uuid,
        name: &AttachmentName,
    ) -> PortResult<Option<ChatFile>>;
    /// The chat's files.
    fn list_by_chat_id(&self, chat_id: Uuid) -> PortResult<Vec<ChatFile>>;
    /// Stores the file, replacing any with the same id or the same (chat, name).
    fn save(&self, file: &ChatFile) -> PortResult<()>;
    /// Removes one file; a missing file is not an error.
    fn delete(&self, file_id: Uuid) -> PortResult<()>;
    /// Removes every file of the chat.
    fn delete_by_chat_id(&self, chat_id: Uuid) -> PortResult<()>;
    /// Every file of every chat (host only: `fsck`).
    fn list_all(&self) -> PortResult<Vec<ChatFile>>;
}

/// Sandbox sessions. The sandbox subsystem starts and ends them; the
/// component only asks whether one is active.
pub trait SandboxSessionRepository: Send + Sync {
    /// The session active on this chat.
    fn get_active_by_chat_id(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>>;
    /// Marks the session active, replacing any other on its chat.
    fn start(&self, session: &SandboxSession) -> PortResult<()>;
    /// Ends the chat's active session, if any; returns the one that ended.
    fn end(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>>;
}

/// The chat directories.
pub trait ChatStorage: Send + Sync {
    /// Creates the chat's directory and an empty history if missing.
    fn ensure_chat(&self, chat: &Chat) -> PortResult<()>;
    /// The chat's history.
    fn read_history(&self, chat: &Chat) -> PortResult<String>;
    /// Replaces the chat's history.
    fn write_history(&self, chat: &Chat, content: &str) -> PortResult<()>;
    /// Appends to the chat's history.
    fn append_history(&self, chat: &Chat, content: &str) -> PortResult<()>;
    /// Removes the chat's directory and everything in it.
    fn delete_chat(&self, chat: &Chat) -> PortResult<()>;
    /// Stores an attachment, replacing any of that name.
    fn write_attachment(
        &self,
        chat: &Chat,
        name: &AttachmentName,
        content: &[u8],
    ) -> PortResult<()>;
    /// An attachment's bytes.
    fn read_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Vec<u8>>;
    /// Removes an attachment; a missing one is not an error.
    fn delete_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<()>;
    /// Removes everything in the chat's directory but its history.
    fn clear_attachments(&self, chat: &Chat) -> PortResult<()>;
}

/// How much a workspace stores.
pub trait StorageUsage: Send + Sync {
    /// The bytes in the workspace's chat directories (sandbox files
    /// included), and the workspace's quota.
    fn get_workspace_usage(&self, workspace: &Workspace) -> PortResult<WorkspaceUsage>;
}

/// New identifiers.
pub trait IdGenerator: Send + Sync {
    /// A new, unique id.
    fn new_id(&self) -> PortResult<Uuid>;
}

/// One adapter for each port, shared by every call.
#[derive(Clone)]
pub struct Ports {
    /// Workspace metadata.
    pub workspaces: Arc<dyn WorkspaceRepository>,
    /// Chat metadata.
    pub chats: Arc<dyn ChatRepository>,
    /// Attachment metadata.
    pub files: Arc<dyn ChatFileRepository>,
    /// Sandbox sessions.
    pub sandboxes: Arc<dyn SandboxSessionRepository>,
    /// The chat directories.
    pub storage: Arc<dyn ChatStorage>,
    /// Usage accounting.
    pub usage: Arc<dyn StorageUsage>,
    /// Id generation.
    pub ids: Arc<dyn IdGenerator>,
}

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
}

/// The ports of one call, and that call's fate: everything it did through
/// them is kept by [`commit`](UnitOfWork::commit) or dropped by
/// [`rollback`](UnitOfWork::rollback), metadata and files alike.
pub trait UnitOfWork: Send {
    /// The ports this call runs against.
    fn ports(&self) -> Ports;
    /// Makes the call's effects durable and visible.
    fn commit(self: Box<Self>) -> PortResult<()>;
    /// Drops the call's effects.
    fn rollback(self: Box<Self>);
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
}

/// The four repositories inside one transaction.
pub trait MetadataTransaction:
    WorkspaceRepository + ChatRepository + ChatFileRepository + SandboxSessionRepository
{
    /// Records `effects` in the journal and commits, atomically: after a
    /// crash either both the metadata and the journal are there, or neither.
    fn commit(&self, effects: &[Effect]) -> PortResult<()>;
    /// Drops everything the transaction wrote.
    fn rollback(&self);
}

/// Ports that are the same for every call, without transactions: for fakes
/// and your own adapters (`ChatStoreBuilder::build_with_ports`).
pub struct FixedPorts(pub Ports);

impl Backend for FixedPorts {
    fn begin(&self, _access: Access) -> PortResult<Box<dyn UnitOfWork>> {
        Ok(Box::new(FixedUnit(self.0.clone())))
    }
}

struct FixedUnit(Ports);

impl UnitOfWork for FixedUnit {
    fn ports(&self) -> Ports {
        self.0.clone()
    }

    fn commit(self: Box<Self>) -> PortResult<()> {
        Ok(())
    }

    fn rollback(self: Box<Self>) {}
}
