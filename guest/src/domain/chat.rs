use super::{Id, Timestamp};

/// A conversation; it owns one working directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chat {
    /// The chat's own id.
    pub chat_id: Id,
    /// The workspace it belongs to.
    pub workspace_id: Id,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A code sandbox running on a chat's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxSession {
    /// The session's own id.
    pub session_id: Id,
    /// The chat whose directory it uses.
    pub chat_id: Id,
}
