//! A storage policy that differs from the built-in one on purpose: a chat
//! holds at most [`MAX_FILES`] attachments. Uploading a new name into a full
//! chat is refused with `workspace_quota_exceeded`; replacing an existing
//! name is still allowed. Every other rule is the built-in one.
//!
//! It is the worked example of `docs/testing-your-own-policy.md`, and the
//! conformance suite is expected to pinpoint exactly where it differs.

#![cfg(target_arch = "wasm32")]

use chatstore_guest::component::types::{Chat, ChatFile, StorageError, Workspace, WorkspaceUsage};
use chatstore_guest::component::{BuiltIn, Guest};

/// The most attachments one chat may hold.
pub const MAX_FILES: usize = 3;

struct FileLimit;

chatstore_guest::component::export!(FileLimit with_types_in chatstore_guest::component);

impl Guest for FileLimit {
    fn upload_attachment(
        user_id: String,
        chat_id: String,
        name: String,
        content_type: Option<String>,
        content: Vec<u8>,
    ) -> Result<ChatFile, StorageError> {
        // Ownership, ids and the workspace are checked by the built-in use case.
        let files = BuiltIn::list_attachments(user_id.clone(), chat_id.clone())?;
        let replaces = files.iter().any(|file| file.name == name);
        if files.len() >= MAX_FILES && !replaces {
            let workspace = BuiltIn::get_workspace(user_id)?;
            return Err(StorageError::WorkspaceQuotaExceeded(workspace.workspace_id));
        }
        BuiltIn::upload_attachment(user_id, chat_id, name, content_type, content)
    }

    // Everything else is the built-in policy.

    fn ensure_workspace(user_id: String) -> Result<Workspace, StorageError> {
        BuiltIn::ensure_workspace(user_id)
    }
    fn get_workspace(user_id: String) -> Result<Workspace, StorageError> {
        BuiltIn::get_workspace(user_id)
    }
    fn get_usage(user_id: String) -> Result<WorkspaceUsage, StorageError> {
        BuiltIn::get_usage(user_id)
    }
    fn create_chat(user_id: String) -> Result<Chat, StorageError> {
        BuiltIn::create_chat(user_id)
    }
    fn list_chats(user_id: String) -> Result<Vec<Chat>, StorageError> {
        BuiltIn::list_chats(user_id)
    }
    fn get_chat(user_id: String, chat_id: String) -> Result<Chat, StorageError> {
        BuiltIn::get_chat(user_id, chat_id)
    }
    fn delete_chat(user_id: String, chat_id: String) -> Result<(), StorageError> {
        BuiltIn::delete_chat(user_id, chat_id)
    }
    fn read_history(user_id: String, chat_id: String) -> Result<String, StorageError> {
        BuiltIn::read_history(user_id, chat_id)
    }
    fn write_history(
        user_id: String,
        chat_id: String,
        content: String,
    ) -> Result<(), StorageError> {
        BuiltIn::write_history(user_id, chat_id, content)
    }
    fn append_history(
        user_id: String,
        chat_id: String,
        content: String,
    ) -> Result<(), StorageError> {
        BuiltIn::append_history(user_id, chat_id, content)
    }
    fn list_attachments(user_id: String, chat_id: String) -> Result<Vec<ChatFile>, StorageError> {
        BuiltIn::list_attachments(user_id, chat_id)
    }
    fn get_attachment(
        user_id: String,
        chat_id: String,
        file_id: String,
    ) -> Result<ChatFile, StorageError> {
        BuiltIn::get_attachment(user_id, chat_id, file_id)
    }
    fn read_attachment(
        user_id: String,
        chat_id: String,
        file_id: String,
    ) -> Result<Vec<u8>, StorageError> {
        BuiltIn::read_attachment(user_id, chat_id, file_id)
    }
    fn delete_attachment(
        user_id: String,
        chat_id: String,
        file_id: String,
    ) -> Result<(), StorageError> {
        BuiltIn::delete_attachment(user_id, chat_id, file_id)
    }
    fn clear_attachments(user_id: String, chat_id: String) -> Result<(), StorageError> {
        BuiltIn::clear_attachments(user_id, chat_id)
    }
}
