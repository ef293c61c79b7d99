//! Metadata held in memory: fast, transactional within the process, and
//! gone when the process ends.

use crate::error::{PortError, PortResult};
use crate::model::{Chat, ChatFile, SandboxSession, Workspace};
use crate::names::AttachmentName;
use crate::ports::{
    ChatFileRepository, ChatRepository, HostRecords, SandboxSessionRepository, WorkspaceRepository,
};
use crate::unit::{Access, Effect, MetadataStore, MetadataTransaction};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

#[derive(Clone, Debug, Default)]
struct Tables {
    workspaces: HashMap<Uuid, Workspace>,
    chats: HashMap<Uuid, Chat>,
    files: HashMap<Uuid, ChatFile>,
    sandboxes: HashMap<Uuid, SandboxSession>,
}

/// Locks a mutex; every update below is a whole-value swap or a single
/// insert or remove, so a panic elsewhere leaves nothing half done.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The metadata of one process, in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryMetadata {
    committed: Arc<Mutex<Arc<Tables>>>,
}

impl MetadataStore for MemoryMetadata {
    fn begin(&self, access: Access) -> PortResult<Arc<dyn MetadataTransaction>> {
        Ok(Arc::new(MemoryTransaction {
            committed: self.committed.clone(),
            tables: Mutex::new(lock(&self.committed).clone()),
            access,
        }))
    }

    fn pending_effects(&self) -> PortResult<Vec<Effect>> {
        // Effects are applied before a call returns; a crash loses this
        // metadata along with them, so there is never anything to replay.
        Ok(Vec::new())
    }

    fn forget_effects(&self) -> PortResult<()> {
        Ok(())
    }
}

/// One call's view: a snapshot, copied on its first write, swapped in on commit.
#[derive(Debug)]
pub struct MemoryTransaction {
    committed: Arc<Mutex<Arc<Tables>>>,
    tables: Mutex<Arc<Tables>>,
    access: Access,
}

impl MemoryTransaction {
    fn read(&self) -> MutexGuard<'_, Arc<Tables>> {
        lock(&self.tables)
    }

    fn write<T>(&self, f: impl FnOnce(&mut Tables) -> T) -> PortResult<T> {
        if self.access == Access::Read {
            return Err(PortError::new("this call may only read"));
        }
        let mut tables = lock(&self.tables);
        Ok(f(Arc::make_mut(&mut tables)))
    }
}

impl MetadataTransaction for MemoryTransaction {
    fn commit(&self, _effects: &[Effect]) -> PortResult<()> {
        if self.access == Access::Write {
            *lock(&self.committed) = self.read().clone();
        }
        Ok(())
    }

    fn rollback(&self) {}
}

impl WorkspaceRepository for MemoryTransaction {
    fn get(&self, workspace_id: Uuid) -> PortResult<Option<Workspace>> {
        Ok(self.read().workspaces.get(&workspace_id).cloned())
    }

    fn get_by_user_id(&self, user_id: Uuid) -> PortResult<Option<Workspace>> {
        Ok(self
            .read()
            .workspaces
            .values()
            .find(|w| w.user_id == user_id)
            .cloned())
    }

    fn save(&self, workspace: &Workspace) -> PortResult<()> {
        self.write(|t| {
            // One workspace per user: a user's new workspace replaces the old one.
            t.workspaces
                .retain(|id, w| *id == workspace.workspace_id || w.user_id != workspace.user_id);
            t.workspaces
                .insert(workspace.workspace_id, workspace.clone());
        })
    }
}

impl ChatRepository for MemoryTransaction {
    fn get(&self, chat_id: Uuid) -> PortResult<Option<Chat>> {
        Ok(self.read().chats.get(&chat_id).cloned())
    }

    fn list_by_workspace_id(&self, workspace_id: Uuid) -> PortResult<Vec<Chat>> {
        let tables = self.read();
        Ok(tables
            .chats
            .values()
            .filter(|c| c.workspace_id == workspace_id)
            .cloned()
            .collect())
    }

    fn save(&self, chat: &Chat) -> PortResult<()> {
        self.write(|t| {
            t.chats.insert(chat.chat_id, chat.clone());
        })
    }

    fn delete(&self, chat_id: Uuid) -> PortResult<()> {
        self.write(|t| {
            t.chats.remove(&chat_id);
        })
    }
}

impl ChatFileRepository for MemoryTransaction {
    fn get(&self, file_id: Uuid) -> PortResult<Option<ChatFile>> {
        Ok(self.read().files.get(&file_id).cloned())
    }

    fn get_by_chat_id_and_name(
        &self,
        chat_id: Uuid,
        name: &AttachmentName,
    ) -> PortResult<Option<ChatFile>> {
        let tables = self.read();
        Ok(tables
            .files
            .values()
            .find(|f| f.chat_id == chat_id && &f.name == name)
            .cloned())
    }

    fn list_by_chat_id(&self, chat_id: Uuid) -> PortResult<Vec<ChatFile>> {
        let tables = self.read();
        Ok(tables
            .files
            .values()
            .filter(|f| f.chat_id == chat_id)
            .cloned()
            .collect())
    }

    fn save(&self, file: &ChatFile) -> PortResult<()> {
        self.write(|t| {
            // A name is unique within its chat: a new file of that name replaces the old.
            t.files.retain(|id, f| {
                *id == file.file_id || f.chat_id != file.chat_id || f.name != file.name
            });
            t.files.insert(file.file_id, file.clone());
        })
    }

    fn delete(&self, file_id: Uuid) -> PortResult<()> {
        self.write(|t| {
            t.files.remove(&file_id);
        })
    }

    fn delete_by_chat_id(&self, chat_id: Uuid) -> PortResult<()> {
        self.write(|t| t.files.retain(|_, f| f.chat_id != chat_id))
    }
}

impl SandboxSessionRepository for MemoryTransaction {
    fn get_active_by_chat_id(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>> {
        Ok(self.read().sandboxes.get(&chat_id).cloned())
    }
}

impl HostRecords for MemoryTransaction {
    fn start_sandbox(&self, session: &SandboxSession) -> PortResult<()> {
        self.write(|t| {
            t.sandboxes.insert(session.chat_id, session.clone());
        })
    }

    fn end_sandbox(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>> {
        self.write(|t| t.sandboxes.remove(&chat_id))
    }

    fn all_chats(&self) -> PortResult<Vec<Chat>> {
        Ok(self.read().chats.values().cloned().collect())
    }

    fn all_files(&self) -> PortResult<Vec<ChatFile>> {
        Ok(self.read().files.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    crate::adapters::suite::repository_suite!(((), super::MemoryMetadata::default()));
}
