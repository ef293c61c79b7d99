//! Metadata held in memory: fast, transactional within the process, and
//! gone when the process ends.
//!
//! The tables are persistent maps (`imbl`): a snapshot is a copy of a few
//! pointers and a write copies only the path to what it changes, so a
//! call costs the same whatever other workspaces hold. Every lookup a call
//! makes goes through a key or an index, never a scan of the tables.

use crate::error::{PortError, PortResult};
use crate::model::{Chat, ChatFile, SandboxSession, Workspace};
use crate::names::AttachmentName;
use crate::ports::{
    ChatFileRepository, ChatRepository, HostRecords, SandboxSessionRepository, WorkspaceRepository,
};
use crate::unit::{
    Access, Count, Effect, MetadataStore, MetadataTransaction, Scope, UsageChange, UsageLedger,
};
use imbl::{HashMap, OrdMap, OrdSet};
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

#[derive(Clone, Debug, Default)]
struct Tables {
    workspaces: HashMap<Uuid, Workspace>,
    /// Each user's one workspace.
    workspace_of_user: HashMap<Uuid, Uuid>,
    chats: HashMap<Uuid, Chat>,
    /// Each workspace's chats.
    chats_of_workspace: HashMap<Uuid, OrdSet<Uuid>>,
    files: HashMap<Uuid, ChatFile>,
    /// Each chat's files, by name.
    files_of_chat: HashMap<Uuid, OrdMap<AttachmentName, Uuid>>,
    sandboxes: HashMap<Uuid, SandboxSession>,
    /// The usage ledger: counted workspaces' bytes.
    used_bytes: HashMap<Uuid, u64>,
    /// Each counted chat's bytes, by chat: (workspace, bytes).
    chat_bytes: HashMap<Uuid, (Uuid, u64)>,
    /// Each counted workspace's counted chats.
    counted_chats: HashMap<Uuid, OrdSet<Uuid>>,
    /// Workspaces' own quotas.
    quotas: HashMap<Uuid, u64>,
}

/// Adds `member` to the set under `key`.
fn index_insert(index: &mut HashMap<Uuid, OrdSet<Uuid>>, key: Uuid, member: Uuid) {
    index.entry(key).or_default().insert(member);
}

/// Takes `member` out of the set under `key`, and the set once empty.
fn index_remove(index: &mut HashMap<Uuid, OrdSet<Uuid>>, key: Uuid, member: Uuid) {
    if let Some(set) = index.get_mut(&key) {
        set.remove(&member);
        if set.is_empty() {
            index.remove(&key);
        }
    }
}

impl Tables {
    fn save_workspace(&mut self, workspace: &Workspace) {
        let (id, user) = (workspace.workspace_id, workspace.user_id);
        // One workspace per user: a user's new workspace replaces the old one.
        if let Some(old) = self.workspace_of_user.insert(user, id)
            && old != id
        {
            self.workspaces.remove(&old);
        }
        if let Some(before) = self.workspaces.insert(id, workspace.clone())
            && before.user_id != user
            && self.workspace_of_user.get(&before.user_id) == Some(&id)
        {
            self.workspace_of_user.remove(&before.user_id);
        }
    }

    fn save_chat(&mut self, chat: &Chat) {
        if let Some(before) = self.chats.insert(chat.chat_id, chat.clone())
            && before.workspace_id != chat.workspace_id
        {
            index_remove(
                &mut self.chats_of_workspace,
                before.workspace_id,
                chat.chat_id,
            );
        }
        index_insert(
            &mut self.chats_of_workspace,
            chat.workspace_id,
            chat.chat_id,
        );
    }

    fn delete_chat(&mut self, chat_id: Uuid) {
        if let Some(chat) = self.chats.remove(&chat_id) {
            index_remove(&mut self.chats_of_workspace, chat.workspace_id, chat_id);
        }
    }

    fn save_file(&mut self, file: &ChatFile) {
        let id = file.file_id;
        // A name is unique within its chat: a new file of that name replaces the old.
        if let Some(before) = self.files.insert(id, file.clone())
            && (before.chat_id, &before.name) != (file.chat_id, &file.name)
        {
            self.unindex_file(&before);
        }
        let names = self.files_of_chat.entry(file.chat_id).or_default();
        if let Some(old) = names.insert(file.name.clone(), id)
            && old != id
        {
            self.files.remove(&old);
        }
    }

    fn delete_file(&mut self, file_id: Uuid) {
        if let Some(file) = self.files.remove(&file_id) {
            self.unindex_file(&file);
        }
    }

    /// Takes `file`'s name out of its chat's index if the name is still its.
    fn unindex_file(&mut self, file: &ChatFile) {
        if let Some(names) = self.files_of_chat.get_mut(&file.chat_id) {
            if names.get(&file.name) == Some(&file.file_id) {
                names.remove(&file.name);
            }
            if names.is_empty() {
                self.files_of_chat.remove(&file.chat_id);
            }
        }
    }

    fn delete_files_of_chat(&mut self, chat_id: Uuid) {
        for (_, file_id) in self.files_of_chat.remove(&chat_id).unwrap_or_default() {
            self.files.remove(&file_id);
        }
    }

    fn change_usage(&mut self, change: &UsageChange) {
        let (workspace_id, chat_id) = change.chat();
        let Some(total) = self.used_bytes.get_mut(&workspace_id) else {
            return;
        };
        let before = self.chat_bytes.get(&chat_id).map_or(0, |&(_, b)| b);
        let after = change.after(before);
        *total = (*total + after).saturating_sub(before);
        match change {
            UsageChange::Drop { .. } => {
                self.chat_bytes.remove(&chat_id);
                index_remove(&mut self.counted_chats, workspace_id, chat_id);
            }
            _ => {
                self.chat_bytes.insert(chat_id, (workspace_id, after));
                index_insert(&mut self.counted_chats, workspace_id, chat_id);
            }
        }
    }

    fn set_count(&mut self, workspace_id: Uuid, count: &Count) {
        for chat_id in self.counted_chats.remove(&workspace_id).unwrap_or_default() {
            // Only if the chat is still counted in this workspace.
            if self.chat_bytes.get(&chat_id).map(|&(w, _)| w) == Some(workspace_id) {
                self.chat_bytes.remove(&chat_id);
            }
        }
        for &(chat_id, bytes) in &count.chats {
            self.chat_bytes.insert(chat_id, (workspace_id, bytes));
            index_insert(&mut self.counted_chats, workspace_id, chat_id);
        }
        self.used_bytes.insert(workspace_id, count.total);
    }
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
    fn begin(&self, access: Access, _scope: Scope) -> PortResult<Arc<dyn MetadataTransaction>> {
        Ok(Arc::new(MemoryTransaction {
            committed: self.committed.clone(),
            tables: Mutex::new(lock(&self.committed).clone()),
            writes: Mutex::default(),
            access,
        }))
    }

    fn pending_effects(&self, _scope: Scope) -> PortResult<Vec<Effect>> {
        // Effects are applied before a call returns; a crash loses this
        // metadata along with them, so there is never anything to replay.
        Ok(Vec::new())
    }

    fn forget_effects(&self, _scope: Scope) -> PortResult<()> {
        Ok(())
    }
}

/// One write, kept to be made again on the tables as they are at commit.
type Write = Box<dyn Fn(&mut Tables) + Send>;

/// One call's view: a snapshot, copied on its first write; on commit its
/// writes are made again on the committed tables, so that the commits of
/// other users' writers in between are kept.
pub struct MemoryTransaction {
    committed: Arc<Mutex<Arc<Tables>>>,
    tables: Mutex<Arc<Tables>>,
    writes: Mutex<Vec<Write>>,
    access: Access,
}

impl std::fmt::Debug for MemoryTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransaction")
            .field("access", &self.access)
            .field("writes", &lock(&self.writes).len())
            .finish()
    }
}

impl MemoryTransaction {
    fn read(&self) -> MutexGuard<'_, Arc<Tables>> {
        lock(&self.tables)
    }

    fn write<T>(&self, f: impl Fn(&mut Tables) -> T + Send + 'static) -> PortResult<T> {
        if self.access == Access::Read {
            return Err(PortError::new("this call may only read"));
        }
        let mut tables = lock(&self.tables);
        let result = f(Arc::make_mut(&mut tables));
        lock(&self.writes).push(Box::new(move |t| {
            f(t);
        }));
        Ok(result)
    }
}

impl MetadataTransaction for MemoryTransaction {
    fn commit(&self, _effects: &[Effect]) -> PortResult<()> {
        let writes = std::mem::take(&mut *lock(&self.writes));
        if !writes.is_empty() {
            let mut committed = lock(&self.committed);
            let tables = Arc::make_mut(&mut committed);
            for write in &writes {
                write(tables);
            }
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
        let tables = self.read();
        Ok((tables.workspace_of_user.get(&user_id))
            .and_then(|id| tables.workspaces.get(id))
            .cloned())
    }

    fn save(&self, workspace: &Workspace) -> PortResult<()> {
        let workspace = workspace.clone();
        self.write(move |t| t.save_workspace(&workspace))
    }
}

impl ChatRepository for MemoryTransaction {
    fn get(&self, chat_id: Uuid) -> PortResult<Option<Chat>> {
        Ok(self.read().chats.get(&chat_id).cloned())
    }

    fn list_by_workspace_id(&self, workspace_id: Uuid) -> PortResult<Vec<Chat>> {
        let tables = self.read();
        let Some(chats) = tables.chats_of_workspace.get(&workspace_id) else {
            return Ok(Vec::new());
        };
        Ok((chats.iter())
            .filter_map(|id| tables.chats.get(id).cloned())
            .collect())
    }

    fn save(&self, chat: &Chat) -> PortResult<()> {
        let chat = chat.clone();
        self.write(move |t| t.save_chat(&chat))
    }

    fn delete(&self, chat_id: Uuid) -> PortResult<()> {
        self.write(move |t| t.delete_chat(chat_id))
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
        Ok((tables.files_of_chat.get(&chat_id))
            .and_then(|names| names.get(name))
            .and_then(|id| tables.files.get(id))
            .cloned())
    }

    fn list_by_chat_id(&self, chat_id: Uuid) -> PortResult<Vec<ChatFile>> {
        let tables = self.read();
        let Some(names) = tables.files_of_chat.get(&chat_id) else {
            return Ok(Vec::new());
        };
        Ok((names.values())
            .filter_map(|id| tables.files.get(id).cloned())
            .collect())
    }

    fn save(&self, file: &ChatFile) -> PortResult<()> {
        let file = file.clone();
        self.write(move |t| t.save_file(&file))
    }

    fn delete(&self, file_id: Uuid) -> PortResult<()> {
        self.write(move |t| t.delete_file(file_id))
    }

    fn delete_by_chat_id(&self, chat_id: Uuid) -> PortResult<()> {
        self.write(move |t| t.delete_files_of_chat(chat_id))
    }
}

impl SandboxSessionRepository for MemoryTransaction {
    fn get_active_by_chat_id(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>> {
        Ok(self.read().sandboxes.get(&chat_id).cloned())
    }
}

impl HostRecords for MemoryTransaction {
    fn start_sandbox(&self, session: &SandboxSession) -> PortResult<()> {
        let session = session.clone();
        self.write(move |t| {
            t.sandboxes.insert(session.chat_id, session.clone());
        })
    }

    fn end_sandbox(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>> {
        self.write(move |t| t.sandboxes.remove(&chat_id))
    }

    fn all_chats(&self) -> PortResult<Vec<Chat>> {
        Ok(self.read().chats.values().cloned().collect())
    }

    fn all_files(&self) -> PortResult<Vec<ChatFile>> {
        Ok(self.read().files.values().cloned().collect())
    }
}

impl UsageLedger for MemoryTransaction {
    fn used_bytes(&self, workspace_id: Uuid) -> PortResult<Option<u64>> {
        Ok(self.read().used_bytes.get(&workspace_id).copied())
    }

    fn chat_bytes(&self, chat_id: Uuid) -> PortResult<Option<u64>> {
        Ok(self.read().chat_bytes.get(&chat_id).map(|&(_, b)| b))
    }

    fn change_usage(&self, changes: &[UsageChange]) -> PortResult<()> {
        let changes = changes.to_vec();
        self.write(move |t| changes.iter().for_each(|c| t.change_usage(c)))
    }

    fn set_count(&self, workspace_id: Uuid, count: &Count) -> PortResult<()> {
        let count = count.clone();
        self.write(move |t| t.set_count(workspace_id, &count))
    }

    fn quota(&self, workspace_id: Uuid) -> PortResult<Option<u64>> {
        Ok(self.read().quotas.get(&workspace_id).copied())
    }

    fn set_quota(&self, workspace_id: Uuid, quota_bytes: Option<u64>) -> PortResult<()> {
        self.write(move |t| match quota_bytes {
            Some(bytes) => t.quotas.insert(workspace_id, bytes),
            None => t.quotas.remove(&workspace_id),
        })
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    crate::adapters::suite::repository_suite!(((), super::MemoryMetadata::default()));
}
