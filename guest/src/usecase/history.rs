use super::{Storage, StorageResult};
use crate::domain::StagedContent;

impl Storage<'_> {
    /// Authorizes reading the chat's history: opens it for the host to serve.
    pub fn read_history(&self, user_id: &str, chat_id: &str) -> StorageResult<()> {
        let (_, chat) = self.users_chat(user_id, chat_id)?;
        Ok(self.ports.storage.open_history(&chat)?)
    }

    /// Replaces the chat's history with staged content; refused if that grows
    /// the workspace past its quota (net of the history's size on disk).
    pub fn write_history(
        &self,
        user_id: &str,
        chat_id: &str,
        content: &StagedContent,
    ) -> StorageResult<()> {
        let (workspace, chat) = self.users_chat(user_id, chat_id)?;
        // An empty history never grows the workspace.
        if content.size_bytes > 0 {
            let old_bytes = self.ports.storage.history_size(&chat)?;
            self.ensure_room(&workspace, old_bytes, content.size_bytes)?;
        }
        Ok(self.ports.storage.write_history(&chat, content)?)
    }

    /// Appends staged content to the chat's history; refused if that grows
    /// the workspace past its quota.
    pub fn append_history(
        &self,
        user_id: &str,
        chat_id: &str,
        content: &StagedContent,
    ) -> StorageResult<()> {
        let (workspace, chat) = self.users_chat(user_id, chat_id)?;
        self.ensure_room(&workspace, 0, content.size_bytes)?;
        Ok(self.ports.storage.append_history(&chat, content)?)
    }
}
