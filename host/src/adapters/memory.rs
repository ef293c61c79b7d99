//! Metadata repositories held in memory: fast, and gone when the process ends.

use crate::error::PortResult;
use crate::model::{Chat, ChatFile, SandboxSession, Workspace};
use crate::names::AttachmentName;
use crate::ports::{
    ChatFileRepository, ChatRepository, SandboxSessionRepository, WorkspaceRepository,
};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// Locks a table; a panic while it was held poisons nothing we rely on,
/// since every update below is a single insert or remove.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Workspaces in memory.
#[derive(Debug, Default)]
pub struct MemoryWorkspaceRepository {
    by_id: Mutex<HashMap<Uuid, Workspace>>,
}

impl WorkspaceRepository for MemoryWorkspaceRepository {
    fn get(&self, workspace_id: Uuid) -> PortResult<Option<Workspace>> {
        Ok(lock(&self.by_id).get(&workspace_id).cloned())
    }

    fn get_by_user_id(&self, user_id: Uuid) -> PortResult<Option<Workspace>> {
        Ok(lock(&self.by_id)
            .values()
            .find(|w| w.user_id == user_id)
            .cloned())
    }

    fn save(&self, workspace: &Workspace) -> PortResult<()> {
        let mut by_id = lock(&self.by_id);
        // One workspace per user: saving a user's new workspace replaces the old one.
        by_id.retain(|id, w| *id == workspace.workspace_id || w.user_id != workspace.user_id);
        by_id.insert(workspace.workspace_id, workspace.clone());
        Ok(())
    }
}

/// Chats in memory.
#[derive(Debug, Default)]
pub struct MemoryChatRepository {
    by_id: Mutex<HashMap<Uuid, Chat>>,
}

impl ChatRepository for MemoryChatRepository {
    fn get(&self, chat_id: Uuid) -> PortResult<Option<Chat>> {
        Ok(lock(&self.by_id).get(&chat_id).cloned())
    }

    fn list_by_workspace_id(&self, workspace_id: Uuid) -> PortResult<Vec<Chat>> {
        let by_id = lock(&self.by_id);
        Ok(by_id
            .values()
            .filter(|c| c.workspace_id == workspace_id)
            .cloned()
            .collect())
    }

    fn save(&self, chat: &Chat) -> PortResult<()> {
        lock(&self.by_id).insert(chat.chat_id, chat.clone());
        Ok(())
    }

    fn delete(&self, chat_id: Uuid) -> PortResult<()> {
        lock(&self.by_id).remove(&chat_id);
        Ok(())
    }
}

/// Chat files in memory.
#[derive(Debug, Default)]
pub struct MemoryChatFileRepository {
    by_id: Mutex<HashMap<Uuid, ChatFile>>,
}

impl ChatFileRepository for MemoryChatFileRepository {
    fn get(&self, file_id: Uuid) -> PortResult<Option<ChatFile>> {
        Ok(lock(&self.by_id).get(&file_id).cloned())
    }

    fn get_by_chat_id_and_name(
        &self,
        chat_id: Uuid,
        name: &AttachmentName,
    ) -> PortResult<Option<ChatFile>> {
        let by_id = lock(&self.by_id);
        Ok(by_id
            .values()
            .find(|f| f.chat_id == chat_id && &f.name == name)
            .cloned())
    }

    fn list_by_chat_id(&self, chat_id: Uuid) -> PortResult<Vec<ChatFile>> {
        let by_id = lock(&self.by_id);
        Ok(by_id
            .values()
            .filter(|f| f.chat_id == chat_id)
            .cloned()
            .collect())
    }

    fn save(&self, file: &ChatFile) -> PortResult<()> {
        let mut by_id = lock(&self.by_id);
        // A name is unique within its chat: a new file of that name replaces the old.
        by_id.retain(|id, f| {
            *id == file.file_id || f.chat_id != file.chat_id || f.name != file.name
        });
        by_id.insert(file.file_id, file.clone());
        Ok(())
    }

    fn delete(&self, file_id: Uuid) -> PortResult<()> {
        lock(&self.by_id).remove(&file_id);
        Ok(())
    }

    fn delete_by_chat_id(&self, chat_id: Uuid) -> PortResult<()> {
        lock(&self.by_id).retain(|_, f| f.chat_id != chat_id);
        Ok(())
    }
}

/// Active sandbox sessions in memory, one per chat at most.
#[derive(Debug, Default)]
pub struct MemorySandboxSessionRepository {
    by_chat: Mutex<HashMap<Uuid, SandboxSession>>,
}

impl SandboxSessionRepository for MemorySandboxSessionRepository {
    fn get_active_by_chat_id(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>> {
        Ok(lock(&self.by_chat).get(&chat_id).cloned())
    }

    fn start(&self, session: &SandboxSession) -> PortResult<()> {
        lock(&self.by_chat).insert(session.chat_id, session.clone());
        Ok(())
    }

    fn end(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>> {
        Ok(lock(&self.by_chat).remove(&chat_id))
    }
}

#[cfg(test)]
mod tests {
    crate::adapters::suite::repository_suite!(
        super::MemoryWorkspaceRepository::default(),
        super::MemoryChatRepository::default(),
        super::MemoryChatFileRepository::default(),
        super::MemorySandboxSessionRepository::default()
    );
}
