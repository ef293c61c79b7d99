//! Entities, values and errors of the storage domain.

mod attachment;
mod chat;
mod content;
mod error;
mod id;
mod time;
mod workspace;

pub use attachment::{AttachmentName, AttachmentNameError, ChatFile, NameRule};
pub use chat::{Chat, SandboxSession};
pub use content::{SandboxOutput, StagedContent};
pub use error::{PortError, StorageError};
pub use id::Id;
pub use time::Timestamp;
pub use workspace::{Workspace, WorkspaceUsage};

/// Longest input echoed back inside an error, so a hostile megabyte-long
/// name or id does not come back in every error message.
const ECHO_LIMIT: usize = 256;

/// `s`, cut at a character boundary to at most [`ECHO_LIMIT`] bytes.
fn echo(s: &str) -> String {
    if s.len() <= ECHO_LIMIT {
        return s.to_owned();
    }
    let mut end = ECHO_LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
