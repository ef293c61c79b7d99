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
