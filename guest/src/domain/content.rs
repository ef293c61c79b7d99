/// Content the host staged for this call. The policy sees its size and
/// digest, never its bytes, and stores it by its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedContent {
    /// The host's handle for it, good for this call and one use.
    pub token: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

/// A regular file a sandbox session left in its chat's directory, as the
/// host found it: its name not yet checked by any rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxOutput {
    /// The file's name in the chat directory.
    pub name: String,
    /// The media type the host infers from the name, if any.
    pub content_type: Option<String>,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}
