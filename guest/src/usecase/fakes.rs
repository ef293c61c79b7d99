//! In-memory ports for the native unit tests of the use cases.

use super::ports::*;
use super::{Ports, Storage, StorageResult};
use crate::domain::*;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

/// A chat directory: its history and its attachments by name.
pub type ChatDir = (String, BTreeMap<String, Vec<u8>>);

#[derive(Default)]
pub struct Fakes {
    pub workspaces: RefCell<HashMap<Id, Workspace>>,
    pub chats: RefCell<HashMap<Id, Chat>>,
    pub files: RefCell<HashMap<Id, ChatFile>>,
    pub active_sandboxes: RefCell<HashMap<Id, SandboxSession>>,
    /// chat id -> (history, attachments)
    pub dirs: RefCell<HashMap<Id, ChatDir>>,
    pub quota_bytes: Cell<u64>,
    pub next_id: Cell<u128>,
    /// Ids count down when set, so id order is the reverse of creation order.
    pub ids_descend: Cell<bool>,
    pub now: Cell<Timestamp>,
    /// Content staged for the calls to come, by token.
    pub staged: RefCell<HashMap<String, Vec<u8>>>,
    /// What the last call opened for the host to serve.
    pub opened: RefCell<Option<Vec<u8>>>,
}

impl Fakes {
    pub fn new() -> Self {
        let fakes = Fakes::default();
        fakes.quota_bytes.set(1 << 30);
        fakes.next_id.set(1 << 64);
        fakes
    }

    pub fn storage(&self) -> Storage<'_> {
        Storage::new(Ports::all(self))
    }

    /// Stages content as the host would before a call.
    pub fn stage(&self, content: impl AsRef<[u8]>) -> StagedContent {
        let content = content.as_ref().to_vec();
        let token = format!("token-{}", self.staged.borrow().len());
        let staged = StagedContent {
            token: token.clone(),
            size_bytes: content.len() as u64,
            sha256: format!("digest of {} bytes", content.len()),
        };
        self.staged.borrow_mut().insert(token, content);
        staged
    }

    /// Runs a read use case and gives what it opened, as the host serves it.
    pub fn served<T>(&self, read: StorageResult<T>) -> StorageResult<Vec<u8>> {
        read?;
        Ok(self
            .opened
            .borrow_mut()
            .take()
            .expect("the use case opened a file"))
    }

    fn take_staged(&self, content: &StagedContent) -> PortResult<Vec<u8>> {
        self.staged
            .borrow_mut()
            .remove(&content.token)
            .ok_or_else(|| PortError {
                port: "chat-storage".into(),
                message: "no such staged content".into(),
            })
    }

    pub fn start_sandbox(&self, chat_id: &Id) {
        let session = SandboxSession {
            session_id: self.new_id().unwrap(),
            chat_id: *chat_id,
        };
        self.active_sandboxes.borrow_mut().insert(*chat_id, session);
    }

    pub fn used_bytes(&self) -> u64 {
        self.dirs
            .borrow()
            .values()
            .map(|(h, a)| h.len() as u64 + a.values().map(|c| c.len() as u64).sum::<u64>())
            .sum()
    }

    fn dir<T>(&self, chat: &Chat, f: impl FnOnce(&mut ChatDir) -> T) -> PortResult<T> {
        let mut dirs = self.dirs.borrow_mut();
        let dir = dirs.get_mut(&chat.chat_id).ok_or_else(|| PortError {
            port: "chat-storage".into(),
            message: "no such chat directory".into(),
        })?;
        Ok(f(dir))
    }
}

impl WorkspaceRepository for Fakes {
    fn get(&self, id: &Id) -> PortResult<Option<Workspace>> {
        Ok(self.workspaces.borrow().get(id).cloned())
    }
    fn get_by_user_id(&self, user_id: &Id) -> PortResult<Option<Workspace>> {
        let workspaces = self.workspaces.borrow();
        Ok(workspaces.values().find(|w| &w.user_id == user_id).cloned())
    }
    fn save(&self, w: &Workspace) -> PortResult<()> {
        self.workspaces
            .borrow_mut()
            .insert(w.workspace_id, w.clone());
        Ok(())
    }
}

impl ChatRepository for Fakes {
    fn get(&self, id: &Id) -> PortResult<Option<Chat>> {
        Ok(self.chats.borrow().get(id).cloned())
    }
    fn list_by_workspace_id(&self, id: &Id) -> PortResult<Vec<Chat>> {
        let chats = self.chats.borrow();
        Ok(chats
            .values()
            .filter(|c| &c.workspace_id == id)
            .cloned()
            .collect())
    }
    fn save(&self, c: &Chat) -> PortResult<()> {
        self.chats.borrow_mut().insert(c.chat_id, c.clone());
        Ok(())
    }
    fn delete(&self, id: &Id) -> PortResult<()> {
        self.chats.borrow_mut().remove(id);
        Ok(())
    }
}

impl ChatFileRepository for Fakes {
    fn get(&self, id: &Id) -> PortResult<Option<ChatFile>> {
        Ok(self.files.borrow().get(id).cloned())
    }
    fn get_by_chat_id_and_name(
        &self,
        chat_id: &Id,
        name: &AttachmentName,
    ) -> PortResult<Option<ChatFile>> {
        let files = self.files.borrow();
        Ok(files
            .values()
            .find(|f| &f.chat_id == chat_id && &f.name == name)
            .cloned())
    }
    fn list_by_chat_id(&self, chat_id: &Id) -> PortResult<Vec<ChatFile>> {
        let files = self.files.borrow();
        Ok(files
            .values()
            .filter(|f| &f.chat_id == chat_id)
            .cloned()
            .collect())
    }
    fn save(&self, f: &ChatFile) -> PortResult<()> {
        self.files.borrow_mut().insert(f.file_id, f.clone());
        Ok(())
    }
    fn delete(&self, id: &Id) -> PortResult<()> {
        self.files.borrow_mut().remove(id);
        Ok(())
    }
    fn delete_by_chat_id(&self, chat_id: &Id) -> PortResult<()> {
        self.files.borrow_mut().retain(|_, f| &f.chat_id != chat_id);
        Ok(())
    }
}

impl SandboxSessionRepository for Fakes {
    fn get_active_by_chat_id(&self, chat_id: &Id) -> PortResult<Option<SandboxSession>> {
        Ok(self.active_sandboxes.borrow().get(chat_id).cloned())
    }
}

impl ChatStorage for Fakes {
    fn ensure_chat(&self, chat: &Chat) -> PortResult<()> {
        self.dirs.borrow_mut().entry(chat.chat_id).or_default();
        Ok(())
    }
    fn history_size(&self, chat: &Chat) -> PortResult<u64> {
        self.dir(chat, |d| d.0.len() as u64)
    }
    fn open_history(&self, chat: &Chat) -> PortResult<()> {
        let history = self.dir(chat, |d| d.0.clone().into_bytes())?;
        *self.opened.borrow_mut() = Some(history);
        Ok(())
    }
    fn write_history(&self, chat: &Chat, content: &StagedContent) -> PortResult<()> {
        let text = String::from_utf8(self.take_staged(content)?).expect("text");
        self.dir(chat, |d| d.0 = text)
    }
    fn append_history(&self, chat: &Chat, content: &StagedContent) -> PortResult<()> {
        let text = String::from_utf8(self.take_staged(content)?).expect("text");
        self.dir(chat, |d| d.0.push_str(&text))
    }
    fn delete_chat(&self, chat: &Chat) -> PortResult<()> {
        self.dirs.borrow_mut().remove(&chat.chat_id);
        Ok(())
    }
    fn attachment_size(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Option<u64>> {
        self.dir(chat, |d| d.1.get(name.as_str()).map(|c| c.len() as u64))
    }
    fn write_attachment(
        &self,
        chat: &Chat,
        name: &AttachmentName,
        content: &StagedContent,
    ) -> PortResult<()> {
        let bytes = self.take_staged(content)?;
        self.dir(chat, |d| {
            d.1.insert(name.to_string(), bytes);
        })
    }
    fn open_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<()> {
        let bytes = self
            .dir(chat, |d| d.1.get(name.as_str()).cloned())?
            .ok_or_else(|| PortError {
                port: "chat-storage".into(),
                message: "no such attachment".into(),
            })?;
        *self.opened.borrow_mut() = Some(bytes);
        Ok(())
    }
    fn delete_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<()> {
        self.dir(chat, |d| {
            d.1.remove(name.as_str());
        })
    }
    fn clear_attachments(&self, chat: &Chat) -> PortResult<()> {
        self.dir(chat, |d| d.1.clear())
    }
}

impl StorageUsage for Fakes {
    fn get_workspace_usage(&self, workspace: &Workspace) -> PortResult<WorkspaceUsage> {
        let chats = self.chats.borrow();
        let dirs = self.dirs.borrow();
        let used_bytes = chats
            .values()
            .filter(|c| c.workspace_id == workspace.workspace_id)
            .filter_map(|c| dirs.get(&c.chat_id))
            .map(|(h, a)| h.len() as u64 + a.values().map(|c| c.len() as u64).sum::<u64>())
            .sum();
        Ok(WorkspaceUsage {
            workspace_id: workspace.workspace_id,
            used_bytes,
            quota_bytes: self.quota_bytes.get(),
        })
    }
}

impl IdGenerator for Fakes {
    fn new_id(&self) -> PortResult<Id> {
        let n = self.next_id.get();
        self.next_id
            .set(if self.ids_descend.get() { n - 1 } else { n + 1 });
        Ok(Id::from_bytes(n.to_be_bytes()))
    }
}

impl Clock for Fakes {
    fn now(&self) -> Timestamp {
        self.now.get()
    }
}
