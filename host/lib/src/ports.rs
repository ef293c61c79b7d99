//! The ports the storage component imports, as Rust traits: one trait per
//! WIT interface, with exactly the functions that interface has. Adapters
//! implement them; the binding layer turns the guest's calls into calls on
//! them after checking every id and name the guest passed.
//!
//! What the host does with metadata outside the component (sandbox
//! sessions starting and ending, `fsck`'s full listings) is [`HostRecords`],
//! which no guest can reach.

use crate::content::Content;
use crate::error::PortResult;
use crate::model::{Chat, ChatFile, SandboxSession, Workspace, WorkspaceUsage};
use crate::names::AttachmentName;
use crate::staging::StagedContent;
use std::sync::Arc;
use uuid::Uuid;

/// Workspace metadata (`workspace-repository`).
pub trait WorkspaceRepository: Send + Sync {
    /// The workspace with this id.
    fn get(&self, workspace_id: Uuid) -> PortResult<Option<Workspace>>;
    /// The workspace this user owns.
    fn get_by_user_id(&self, user_id: Uuid) -> PortResult<Option<Workspace>>;
    /// Stores the workspace, replacing any with the same id or the same user.
    fn save(&self, workspace: &Workspace) -> PortResult<()>;
}

/// Chat metadata (`chat-repository`).
pub trait ChatRepository: Send + Sync {
    /// The chat with this id, whatever its workspace.
    fn get(&self, chat_id: Uuid) -> PortResult<Option<Chat>>;
    /// The workspace's chats.
    fn list_by_workspace_id(&self, workspace_id: Uuid) -> PortResult<Vec<Chat>>;
    /// Stores the chat, replacing any with the same id.
    fn save(&self, chat: &Chat) -> PortResult<()>;
    /// Removes the chat; a missing chat is not an error.
    fn delete(&self, chat_id: Uuid) -> PortResult<()>;
}

/// Attachment metadata (`chat-file-repository`).
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
}

/// Sandbox sessions (`sandbox-session-repository`). The sandbox subsystem
/// starts and ends them through [`HostRecords`]; the component only asks
/// whether one is active.
pub trait SandboxSessionRepository: Send + Sync {
    /// The session active on this chat.
    fn get_active_by_chat_id(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>>;
}

/// The chat directories (`chat-storage`). Content never passes through
/// the guest: writes store content the host staged, reads open a file for
/// the host to serve.
pub trait ChatStorage: Send + Sync {
    /// Creates the chat's directory and an empty history if missing.
    fn ensure_chat(&self, chat: &Chat) -> PortResult<()>;
    /// The size of the chat's history on disk.
    fn history_size(&self, chat: &Chat) -> PortResult<u64>;
    /// Opens the chat's history to serve.
    fn open_history(&self, chat: &Chat) -> PortResult<Content>;
    /// Replaces the chat's history with staged content.
    fn write_history(&self, chat: &Chat, content: &StagedContent) -> PortResult<()>;
    /// Appends staged content to the chat's history.
    fn append_history(&self, chat: &Chat, content: &StagedContent) -> PortResult<()>;
    /// Removes the chat's directory and everything in it.
    fn delete_chat(&self, chat: &Chat) -> PortResult<()>;
    /// The size on disk of the attachment of this name, if there is one.
    fn attachment_size(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Option<u64>>;
    /// Stores staged content as the attachment of this name, replacing any.
    fn write_attachment(
        &self,
        chat: &Chat,
        name: &AttachmentName,
        content: &StagedContent,
    ) -> PortResult<()>;
    /// Opens an attachment to serve.
    fn open_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Content>;
    /// Removes an attachment; a missing one is not an error.
    fn delete_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<()>;
    /// Removes everything in the chat's directory but its history.
    fn clear_attachments(&self, chat: &Chat) -> PortResult<()>;
}

/// How much a workspace stores (`storage-usage`).
pub trait StorageUsage: Send + Sync {
    /// The bytes in the workspace's chat directories (sandbox files
    /// included), and the workspace's quota.
    fn get_workspace_usage(&self, workspace: &Workspace) -> PortResult<WorkspaceUsage>;
}

/// New identifiers (`id-generator`).
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

/// What the host does with metadata itself, outside any component: the
/// sandbox subsystem's sessions, and `fsck`'s view of every record.
pub trait HostRecords: Send + Sync {
    /// Marks the session active, replacing any other on its chat.
    fn start_sandbox(&self, session: &SandboxSession) -> PortResult<()>;
    /// Ends the chat's active session, if any; returns the one that ended.
    fn end_sandbox(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>>;
    /// Every chat of every workspace.
    fn all_chats(&self) -> PortResult<Vec<Chat>>;
    /// Every file of every chat.
    fn all_files(&self) -> PortResult<Vec<ChatFile>>;
}
