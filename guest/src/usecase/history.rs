use super::{Storage, StorageResult};

impl Storage<'_> {
    /// The chat's history.
    pub fn read_history(&self, user_id: &str, chat_id: &str) -> StorageResult<String> {
        let (_, chat) = self.users_chat(user_id, chat_id)?;
        Ok(self.ports.storage.read_history(&chat)?)
    }

    /// Replaces the chat's history; refused if that grows the workspace past its quota.
    pub fn write_history(&self, user_id: &str, chat_id: &str, content: &str) -> StorageResult<()> {
        let (workspace, chat) = self.users_chat(user_id, chat_id)?;
        let new_bytes = content.len() as u64;
        // Reading the old history costs a copy, so only when the write could grow it.
        if new_bytes > 0 {
            let old_bytes = self.ports.storage.read_history(&chat)?.len() as u64;
            self.ensure_room(&workspace, old_bytes, new_bytes)?;
        }
        Ok(self.ports.storage.write_history(&chat, content)?)
    }

    /// Appends to the chat's history; refused if that grows the workspace past its quota.
    pub fn append_history(&self, user_id: &str, chat_id: &str, content: &str) -> StorageResult<()> {
        let (workspace, chat) = self.users_chat(user_id, chat_id)?;
        self.ensure_room(&workspace, 0, content.len() as u64)?;
        Ok(self.ports.storage.append_history(&chat, content)?)
    }
}
