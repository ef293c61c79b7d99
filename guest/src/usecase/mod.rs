//! The storage use cases, written against the port traits.
//!
//! Every use case takes the trusted caller's user id and is scoped to that
//! user's workspace: a chat or file of another workspace answers exactly as a
//! missing one does.

mod attachment;
mod chat;
mod history;
mod policy;
pub mod ports;
mod workspace;

pub use policy::{BuiltIn, Policy};

use crate::domain::{Chat, ChatFile, Id, StorageError, Workspace};
use ports::{
    ChatFileRepository, ChatRepository, ChatStorage, Clock, IdGenerator, SandboxSessionRepository,
    StorageUsage, WorkspaceRepository,
};

/// What every use case returns.
pub type StorageResult<T> = Result<T, StorageError>;

/// The ports the use cases run against.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    /// Workspace metadata.
    pub workspaces: &'a dyn WorkspaceRepository,
    /// Chat metadata.
    pub chats: &'a dyn ChatRepository,
    /// Attachment metadata.
    pub files: &'a dyn ChatFileRepository,
    /// Sandbox sessions.
    pub sandboxes: &'a dyn SandboxSessionRepository,
    /// The chat directories.
    pub storage: &'a dyn ChatStorage,
    /// Usage accounting.
    pub usage: &'a dyn StorageUsage,
    /// Id generation.
    pub ids: &'a dyn IdGenerator,
    /// The time.
    pub clock: &'a dyn Clock,
}

impl<'a> Ports<'a> {
    /// Every port from one value that implements them all.
    pub fn all<T>(ports: &'a T) -> Self
    where
        T: WorkspaceRepository
            + ChatRepository
            + ChatFileRepository
            + SandboxSessionRepository
            + ChatStorage
            + StorageUsage
            + IdGenerator
            + Clock,
    {
        Ports {
            workspaces: ports,
            chats: ports,
            files: ports,
            sandboxes: ports,
            storage: ports,
            usage: ports,
            ids: ports,
            clock: ports,
        }
    }
}

/// The use cases; one method per export of the `storage` interface.
pub struct Storage<'a> {
    ports: Ports<'a>,
}

impl<'a> Storage<'a> {
    /// The use cases over these ports.
    pub fn new(ports: Ports<'a>) -> Self {
        Storage { ports }
    }

    /// The ports the use cases run against, for policies that need more
    /// than the use cases give.
    pub fn ports(&self) -> Ports<'a> {
        self.ports
    }

    /// The user's workspace, or `workspace_not_found`.
    fn workspace_of(&self, user_id: &Id) -> StorageResult<Workspace> {
        self.ports
            .workspaces
            .get_by_user_id(user_id)?
            .ok_or(StorageError::WorkspaceNotFound(*user_id))
    }

    /// The chat if it belongs to the workspace; any other chat is "not found".
    fn owned_chat(&self, workspace: &Workspace, chat_id: &Id) -> StorageResult<Chat> {
        match self.ports.chats.get(chat_id)? {
            Some(chat) if chat.workspace_id == workspace.workspace_id => Ok(chat),
            _ => Err(StorageError::ChatNotFound(*chat_id)),
        }
    }

    /// The user's workspace and one of its chats.
    fn users_chat(&self, user_id: &str, chat_id: &str) -> StorageResult<(Workspace, Chat)> {
        let (user_id, chat_id) = (Id::parse(user_id)?, Id::parse(chat_id)?);
        let workspace = self.workspace_of(&user_id)?;
        let chat = self.owned_chat(&workspace, &chat_id)?;
        Ok((workspace, chat))
    }

    /// The file if it belongs to the chat; any other file is "not found".
    fn owned_file(&self, chat: &Chat, file_id: &Id) -> StorageResult<ChatFile> {
        match self.ports.files.get(file_id)? {
            Some(file) if file.chat_id == chat.chat_id => Ok(file),
            _ => Err(StorageError::ChatFileNotFound(*file_id)),
        }
    }

    /// Refuses with `chat_has_active_sandbox` while a sandbox runs on the chat.
    fn ensure_no_active_sandbox(&self, chat: &Chat) -> StorageResult<()> {
        match self.ports.sandboxes.get_active_by_chat_id(&chat.chat_id)? {
            Some(_) => Err(StorageError::ChatHasActiveSandbox(chat.chat_id)),
            None => Ok(()),
        }
    }

    /// Refuses with `workspace_quota_exceeded` if replacing `old_bytes` by
    /// `new_bytes` would grow the workspace past its quota.
    fn ensure_room(
        &self,
        workspace: &Workspace,
        old_bytes: u64,
        new_bytes: u64,
    ) -> StorageResult<()> {
        if new_bytes <= old_bytes {
            return Ok(());
        }
        let usage = self.ports.usage.get_workspace_usage(workspace)?;
        if usage.fits(old_bytes, new_bytes) {
            Ok(())
        } else {
            Err(StorageError::WorkspaceQuotaExceeded(workspace.workspace_id))
        }
    }
}

/// Sorts by `(created-at, id)`, the order of every list the use cases return.
fn sort_by_creation<T>(items: &mut [T], key: impl Fn(&T) -> (crate::domain::Timestamp, &Id)) {
    items.sort_by(|a, b| key(a).cmp(&key(b)));
}

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;
