//! The ports the use cases need. The component implements them with the
//! WIT imports; native tests implement them in memory.

use crate::domain::{
    AttachmentName, Chat, ChatFile, Id, PortError, SandboxSession, StagedContent, Timestamp,
    Workspace, WorkspaceUsage,
};

/// What every port call returns.
pub type PortResult<T> = Result<T, PortError>;

/// Workspace metadata.
pub trait WorkspaceRepository {
    /// The workspace with this id.
    fn get(&self, workspace_id: &Id) -> PortResult<Option<Workspace>>;
    /// The workspace this user owns.
    fn get_by_user_id(&self, user_id: &Id) -> PortResult<Option<Workspace>>;
    /// Stores the workspace.
    fn save(&self, workspace: &Workspace) -> PortResult<()>;
}

/// Chat metadata.
pub trait ChatRepository {
    /// The chat with this id, whatever its workspace.
    fn get(&self, chat_id: &Id) -> PortResult<Option<Chat>>;
    /// The workspace's chats, in any order.
    fn list_by_workspace_id(&self, workspace_id: &Id) -> PortResult<Vec<Chat>>;
    /// Stores the chat.
    fn save(&self, chat: &Chat) -> PortResult<()>;
    /// Removes the chat's metadata.
    fn delete(&self, chat_id: &Id) -> PortResult<()>;
}

/// Attachment metadata.
pub trait ChatFileRepository {
    /// The file with this id, whatever its chat.
    fn get(&self, file_id: &Id) -> PortResult<Option<ChatFile>>;
    /// The chat's file of this name.
    fn get_by_chat_id_and_name(
        &self,
        chat_id: &Id,
        name: &AttachmentName,
    ) -> PortResult<Option<ChatFile>>;
    /// The chat's files, in any order.
    fn list_by_chat_id(&self, chat_id: &Id) -> PortResult<Vec<ChatFile>>;
    /// Stores the file.
    fn save(&self, file: &ChatFile) -> PortResult<()>;
    /// Removes one file's metadata.
    fn delete(&self, file_id: &Id) -> PortResult<()>;
    /// Removes the metadata of every file of the chat.
    fn delete_by_chat_id(&self, chat_id: &Id) -> PortResult<()>;
}

/// Sandbox sessions.
pub trait SandboxSessionRepository {
    /// The session active on this chat, if any.
    fn get_active_by_chat_id(&self, chat_id: &Id) -> PortResult<Option<SandboxSession>>;
}

/// The chat directories, named by chat and attachment name only. Content
/// stays in the host: it is stored by staged token and opened for the host
/// to serve.
pub trait ChatStorage {
    /// Creates the chat's directory and empty history if missing.
    fn ensure_chat(&self, chat: &Chat) -> PortResult<()>;
    /// The size of the chat's history on disk.
    fn history_size(&self, chat: &Chat) -> PortResult<u64>;
    /// Opens the chat's history for the host to serve.
    fn open_history(&self, chat: &Chat) -> PortResult<()>;
    /// Replaces the chat's history with staged content.
    fn write_history(&self, chat: &Chat, content: &StagedContent) -> PortResult<()>;
    /// Appends staged content to the chat's history.
    fn append_history(&self, chat: &Chat, content: &StagedContent) -> PortResult<()>;
    /// Removes the chat's directory.
    fn delete_chat(&self, chat: &Chat) -> PortResult<()>;
    /// The size on disk of the attachment of this name, if any.
    fn attachment_size(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Option<u64>>;
    /// Stores staged content as the attachment of this name.
    fn write_attachment(
        &self,
        chat: &Chat,
        name: &AttachmentName,
        content: &StagedContent,
    ) -> PortResult<()>;
    /// Opens an attachment for the host to serve.
    fn open_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<()>;
    /// Removes an attachment's bytes.
    fn delete_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<()>;
    /// Removes every attachment, keeping the history.
    fn clear_attachments(&self, chat: &Chat) -> PortResult<()>;
}

/// How much a workspace stores.
pub trait StorageUsage {
    /// The bytes in the workspace's chat directories and its quota.
    fn get_workspace_usage(&self, workspace: &Workspace) -> PortResult<WorkspaceUsage>;
}

/// New identifiers.
pub trait IdGenerator {
    /// A new, unique id.
    fn new_id(&self) -> PortResult<Id>;
}

/// The time. In the component this is the WASI wall clock, which the host controls.
pub trait Clock {
    /// Now.
    fn now(&self) -> Timestamp;
}
