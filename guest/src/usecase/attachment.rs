use super::{Storage, StorageResult, sort_by_creation};
use crate::domain::{AttachmentName, ChatFile, Id};

impl Storage<'_> {
    /// Stores an attachment. An existing attachment of that name is replaced:
    /// new file id, old metadata and bytes gone, quota counted net of it.
    pub fn upload_attachment(
        &self,
        user_id: &str,
        chat_id: &str,
        name: &str,
        content_type: Option<&str>,
        content: &[u8],
    ) -> StorageResult<ChatFile> {
        let (user_id, chat_id) = (Id::parse(user_id)?, Id::parse(chat_id)?);
        let name = AttachmentName::try_from(name)?;
        let workspace = self.workspace_of(&user_id)?;
        let chat = self.owned_chat(&workspace, &chat_id)?;
        let replaced = self
            .ports
            .files
            .get_by_chat_id_and_name(&chat.chat_id, &name)?;
        let old_bytes = replaced.as_ref().map_or(0, |f| f.size_bytes);
        self.ensure_room(&workspace, old_bytes, content.len() as u64)?;

        let file_id = self.ports.ids.new_id()?;
        self.ports.storage.write_attachment(&chat, &name, content)?;
        if let Some(replaced) = replaced {
            self.ports.files.delete(&replaced.file_id)?;
        }
        let file = ChatFile {
            file_id,
            chat_id: chat.chat_id,
            name,
            content_type: content_type.map(str::to_owned),
            size_bytes: content.len() as u64,
            created_at: self.ports.clock.now(),
        };
        self.ports.files.save(&file)?;
        Ok(file)
    }

    /// The chat's attachments, ordered by `(created-at, file-id)`.
    pub fn list_attachments(&self, user_id: &str, chat_id: &str) -> StorageResult<Vec<ChatFile>> {
        let (_, chat) = self.users_chat(user_id, chat_id)?;
        let mut files = self.ports.files.list_by_chat_id(&chat.chat_id)?;
        files.retain(|file| file.chat_id == chat.chat_id);
        sort_by_creation(&mut files, |f| (f.created_at, &f.file_id));
        Ok(files)
    }

    /// One attachment's metadata.
    pub fn get_attachment(
        &self,
        user_id: &str,
        chat_id: &str,
        file_id: &str,
    ) -> StorageResult<ChatFile> {
        let (_, chat) = self.users_chat(user_id, chat_id)?;
        self.owned_file(&chat, &Id::parse(file_id)?)
    }

    /// One attachment's bytes.
    pub fn read_attachment(
        &self,
        user_id: &str,
        chat_id: &str,
        file_id: &str,
    ) -> StorageResult<Vec<u8>> {
        let (_, chat) = self.users_chat(user_id, chat_id)?;
        let file = self.owned_file(&chat, &Id::parse(file_id)?)?;
        Ok(self.ports.storage.read_attachment(&chat, &file.name)?)
    }

    /// Removes one attachment: its bytes, then its metadata.
    pub fn delete_attachment(
        &self,
        user_id: &str,
        chat_id: &str,
        file_id: &str,
    ) -> StorageResult<()> {
        let (_, chat) = self.users_chat(user_id, chat_id)?;
        let file = self.owned_file(&chat, &Id::parse(file_id)?)?;
        self.ports.storage.delete_attachment(&chat, &file.name)?;
        self.ports.files.delete(&file.file_id)?;
        Ok(())
    }

    /// Removes every attachment of the chat and keeps its history; refused
    /// while a sandbox is active on it.
    pub fn clear_attachments(&self, user_id: &str, chat_id: &str) -> StorageResult<()> {
        let (_, chat) = self.users_chat(user_id, chat_id)?;
        self.ensure_no_active_sandbox(&chat)?;
        self.ports.storage.clear_attachments(&chat)?;
        self.ports.files.delete_by_chat_id(&chat.chat_id)?;
        Ok(())
    }
}
