//! A storage policy that differs from the built-in one on purpose: a chat
//! holds at most [`MAX_FILES`] attachments. Uploading a new name into a full
//! chat is refused with `workspace_quota_exceeded`; replacing an existing
//! name is still allowed. Every other rule is the built-in one.
//!
//! It is the worked example of `docs/testing-your-own-policy.md`, and the
//! conformance suite is expected to pinpoint exactly where it differs.

use chatstore_guest::domain::{ChatFile, StagedContent, StorageError};
use chatstore_guest::usecase::StorageResult;
use chatstore_guest::{Policy, Storage};

/// The most attachments one chat may hold.
pub const MAX_FILES: usize = 3;

/// The built-in policy, but for uploads into a full chat.
pub struct FileLimit;

impl Policy for FileLimit {
    fn upload_attachment(
        s: &Storage,
        user_id: &str,
        chat_id: &str,
        name: &str,
        content_type: Option<&str>,
        content: &StagedContent,
    ) -> StorageResult<ChatFile> {
        // Ownership, ids and the workspace are checked by the built-in use case.
        let files = s.list_attachments(user_id, chat_id)?;
        let replaces = files.iter().any(|file| file.name.as_str() == name);
        if files.len() >= MAX_FILES && !replaces {
            let workspace = s.get_workspace(user_id)?;
            return Err(StorageError::WorkspaceQuotaExceeded(workspace.workspace_id));
        }
        s.upload_attachment(user_id, chat_id, name, content_type, content)
    }
}

#[cfg(target_arch = "wasm32")]
chatstore_guest::export_policy!(FileLimit);
