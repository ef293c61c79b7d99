//! A storage policy: what each export of the `storage` interface does.

use super::{Storage, StorageResult};
use crate::domain::{Chat, ChatFile, SandboxOutput, StagedContent, Workspace, WorkspaceUsage};

/// A storage policy: one function per export of the `storage` interface,
/// each given the built-in use cases over the call's ports. Every function
/// defaults to the built-in rule, so a policy states only what it changes
/// (`tests/components/file-limit` changes one).
#[allow(missing_docs)] // Each function is the export of the same name.
pub trait Policy {
    fn ensure_workspace(s: &Storage, user_id: &str) -> StorageResult<Workspace> {
        s.ensure_workspace(user_id)
    }
    fn get_workspace(s: &Storage, user_id: &str) -> StorageResult<Workspace> {
        s.get_workspace(user_id)
    }
    fn get_usage(s: &Storage, user_id: &str) -> StorageResult<WorkspaceUsage> {
        s.get_usage(user_id)
    }
    fn create_chat(s: &Storage, user_id: &str) -> StorageResult<Chat> {
        s.create_chat(user_id)
    }
    fn list_chats(s: &Storage, user_id: &str) -> StorageResult<Vec<Chat>> {
        s.list_chats(user_id)
    }
    fn get_chat(s: &Storage, user_id: &str, chat_id: &str) -> StorageResult<Chat> {
        s.get_chat(user_id, chat_id)
    }
    fn delete_chat(s: &Storage, user_id: &str, chat_id: &str) -> StorageResult<()> {
        s.delete_chat(user_id, chat_id)
    }
    fn read_history(s: &Storage, user_id: &str, chat_id: &str) -> StorageResult<()> {
        s.read_history(user_id, chat_id)
    }
    fn write_history(
        s: &Storage,
        user_id: &str,
        chat_id: &str,
        content: &StagedContent,
    ) -> StorageResult<()> {
        s.write_history(user_id, chat_id, content)
    }
    fn append_history(
        s: &Storage,
        user_id: &str,
        chat_id: &str,
        content: &StagedContent,
    ) -> StorageResult<()> {
        s.append_history(user_id, chat_id, content)
    }
    fn upload_attachment(
        s: &Storage,
        user_id: &str,
        chat_id: &str,
        name: &str,
        content_type: Option<&str>,
        content: &StagedContent,
    ) -> StorageResult<ChatFile> {
        s.upload_attachment(user_id, chat_id, name, content_type, content)
    }
    fn list_attachments(s: &Storage, user_id: &str, chat_id: &str) -> StorageResult<Vec<ChatFile>> {
        s.list_attachments(user_id, chat_id)
    }
    fn get_attachment(
        s: &Storage,
        user_id: &str,
        chat_id: &str,
        file_id: &str,
    ) -> StorageResult<ChatFile> {
        s.get_attachment(user_id, chat_id, file_id)
    }
    fn read_attachment(
        s: &Storage,
        user_id: &str,
        chat_id: &str,
        file_id: &str,
    ) -> StorageResult<ChatFile> {
        s.read_attachment(user_id, chat_id, file_id)
    }
    fn delete_attachment(
        s: &Storage,
        user_id: &str,
        chat_id: &str,
        file_id: &str,
    ) -> StorageResult<()> {
        s.delete_attachment(user_id, chat_id, file_id)
    }
    fn clear_attachments(s: &Storage, user_id: &str, chat_id: &str) -> StorageResult<()> {
        s.clear_attachments(user_id, chat_id)
    }
    fn register_sandbox_outputs(
        s: &Storage,
        user_id: &str,
        chat_id: &str,
        outputs: &[SandboxOutput],
    ) -> StorageResult<Vec<StorageResult<ChatFile>>> {
        s.register_sandbox_outputs(user_id, chat_id, outputs)
    }
}

/// The built-in policy: every rule as the use cases state it.
pub struct BuiltIn;

impl Policy for BuiltIn {}
