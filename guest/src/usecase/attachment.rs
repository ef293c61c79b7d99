use super::{Storage, StorageResult, sort_by_creation};
use crate::domain::{AttachmentName, ChatFile, Id, SandboxOutput, StagedContent, StorageError};

impl Storage<'_> {
    /// Stores staged content as an attachment. An existing attachment of that
    /// name is replaced: new file id, old metadata and bytes gone, quota
    /// counted net of the replaced file's size on disk.
    pub fn upload_attachment(
        &self,
        user_id: &str,
        chat_id: &str,
        name: &str,
        content_type: Option<&str>,
        content: &StagedContent,
    ) -> StorageResult<ChatFile> {
        let (user_id, chat_id) = (Id::parse(user_id)?, Id::parse(chat_id)?);
        let name = AttachmentName::try_from(name)?;
        let workspace = self.workspace_of(&user_id)?;
        let chat = self.owned_chat(&workspace, &chat_id)?;
        let replaced = self
            .ports
            .files
            .get_by_chat_id_and_name(&chat.chat_id, &name)?;
        // What the replacement frees is what is on disk, whatever the metadata says.
        let old_bytes = self
            .ports
            .storage
            .attachment_size(&chat, &name)?
            .unwrap_or(0);
        self.ensure_room(&workspace, old_bytes, content.size_bytes)?;

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
            size_bytes: content.size_bytes,
            sha256: Some(content.sha256.clone()),
            created_at: self.ports.clock.now(),
        };
        self.ports.files.save(&file)?;
        Ok(file)
    }

    /// Records the files a sandbox session left in the chat's directory as
    /// its attachments: each by the attachment-name rules, and none while
    /// the workspace is over its quota (their bytes are already counted);
    /// one of an attachment's name updates that record (same file id, its
    /// size and digest now). One outcome per output, in order.
    pub fn register_sandbox_outputs(
        &self,
        user_id: &str,
        chat_id: &str,
        outputs: &[SandboxOutput],
    ) -> StorageResult<Vec<StorageResult<ChatFile>>> {
        let (workspace, chat) = self.users_chat(user_id, chat_id)?;
        let usage = self.ports.usage.get_workspace_usage(&workspace)?;
        let over_quota = usage.used_bytes > usage.quota_bytes;
        let mut outcomes = Vec::with_capacity(outputs.len());
        for output in outputs {
            let name = match AttachmentName::try_from(output.name.as_str()) {
                Ok(name) if !over_quota => name,
                Ok(_) => {
                    outcomes.push(Err(StorageError::WorkspaceQuotaExceeded(
                        workspace.workspace_id,
                    )));
                    continue;
                }
                Err(e) => {
                    outcomes.push(Err(e.into()));
                    continue;
                }
            };
            // A file the sandbox changed keeps its record's id and creation
            // time: the same attachment, with what is on disk now.
            let file = match self
                .ports
                .files
                .get_by_chat_id_and_name(&chat.chat_id, &name)?
            {
                Some(recorded) => ChatFile {
                    content_type: output.content_type.clone().or(recorded.content_type),
                    size_bytes: output.size_bytes,
                    sha256: Some(output.sha256.clone()),
                    ..recorded
                },
                None => ChatFile {
                    file_id: self.ports.ids.new_id()?,
                    chat_id: chat.chat_id,
                    name,
                    content_type: output.content_type.clone(),
                    size_bytes: output.size_bytes,
                    sha256: Some(output.sha256.clone()),
                    created_at: self.ports.clock.now(),
                },
            };
            self.ports.files.save(&file)?;
            outcomes.push(Ok(file));
        }
        Ok(outcomes)
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

    /// Authorizes reading one attachment: opens it for the host to serve
    /// and gives its record.
    pub fn read_attachment(
        &self,
        user_id: &str,
        chat_id: &str,
        file_id: &str,
    ) -> StorageResult<ChatFile> {
        let (_, chat) = self.users_chat(user_id, chat_id)?;
        let file = self.owned_file(&chat, &Id::parse(file_id)?)?;
        self.ports.storage.open_attachment(&chat, &file.name)?;
        Ok(file)
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
