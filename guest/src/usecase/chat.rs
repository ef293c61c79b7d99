use super::{Storage, StorageResult, sort_by_creation};
use crate::domain::{Chat, Id};

impl Storage<'_> {
    /// A new chat in the user's workspace, with its directory and an empty history.
    pub fn create_chat(&self, user_id: &str) -> StorageResult<Chat> {
        let workspace = self.workspace_of(&Id::parse(user_id)?)?;
        let chat = Chat {
            chat_id: self.ports.ids.new_id()?,
            workspace_id: workspace.workspace_id,
            created_at: self.ports.clock.now(),
        };
        // The directory first: a chat whose metadata exists always has one.
        self.ports.storage.ensure_chat(&chat)?;
        self.ports.chats.save(&chat)?;
        Ok(chat)
    }

    /// The user's chats, ordered by `(created-at, chat-id)`.
    pub fn list_chats(&self, user_id: &str) -> StorageResult<Vec<Chat>> {
        let workspace = self.workspace_of(&Id::parse(user_id)?)?;
        let mut chats = self
            .ports
            .chats
            .list_by_workspace_id(&workspace.workspace_id)?;
        // The repository is trusted for nothing: keep only this workspace's chats.
        chats.retain(|chat| chat.workspace_id == workspace.workspace_id);
        sort_by_creation(&mut chats, |c| (c.created_at, &c.chat_id));
        Ok(chats)
    }

    /// One of the user's chats.
    pub fn get_chat(&self, user_id: &str, chat_id: &str) -> StorageResult<Chat> {
        Ok(self.users_chat(user_id, chat_id)?.1)
    }

    /// Removes the chat's directory, its files' metadata and its own; refused
    /// while a sandbox is active on it.
    pub fn delete_chat(&self, user_id: &str, chat_id: &str) -> StorageResult<()> {
        let (_, chat) = self.users_chat(user_id, chat_id)?;
        self.ensure_no_active_sandbox(&chat)?;
        self.ports.storage.delete_chat(&chat)?;
        self.ports.files.delete_by_chat_id(&chat.chat_id)?;
        self.ports.chats.delete(&chat.chat_id)?;
        Ok(())
    }
}
