//! The host's own check of attachment names.
//!
//! The guest validates names too, but the host trusts no guest: every name
//! that reaches the filesystem adapter is an [`AttachmentName`], and this
//! module is the only way to make one.

use std::fmt;

/// The file every chat keeps its history in; no attachment may take its name.
pub const HISTORY_FILE_NAME: &str = "history.md";

/// The longest attachment name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// A valid attachment name: one path component, not `.` or `..`, without
/// `/`, `\` or NUL, at most 255 bytes, and not `history.md`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttachmentName(String);

/// Why a name is not a valid attachment name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is `.` or `..`.
    #[error("the name is `.` or `..`")]
    DotOrDotDot,
    /// The name contains `/` or `\`.
    #[error("the name contains a path separator")]
    Separator,
    /// The name contains NUL.
    #[error("the name contains NUL")]
    Nul,
    /// The name is longer than 255 bytes.
    #[error("the name is longer than 255 bytes")]
    TooLong,
    /// The name is the reserved `history.md`.
    #[error("the name is reserved for the chat history")]
    Reserved,
}

impl AttachmentName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        let refused = if name.is_empty() {
            Some(InvalidName::Empty)
        } else if name == "." || name == ".." {
            Some(InvalidName::DotOrDotDot)
        } else if name.bytes().any(|b| b == b'/' || b == b'\\') {
            Some(InvalidName::Separator)
        } else if name.bytes().any(|b| b == 0) {
            Some(InvalidName::Nul)
        } else if name.len() > MAX_NAME_BYTES {
            Some(InvalidName::TooLong)
        } else if name == HISTORY_FILE_NAME {
            Some(InvalidName::Reserved)
        } else {
            None
        };
        match refused {
            Some(why) => Err(why),
            None => Ok(AttachmentName(name)),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for AttachmentName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for AttachmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_single_components_are_names() {
        for name in ["a", "report.pdf", "...", "..a", ".env", "History.md", "é"] {
            assert_eq!(AttachmentName::new(name).unwrap().as_str(), name);
        }
        assert!(AttachmentName::new("x".repeat(255)).is_ok());
    }

    #[test]
    fn anything_that_could_leave_the_directory_is_refused() {
        use InvalidName::*;
        for (name, why) in [
            ("", Empty),
            (".", DotOrDotDot),
            ("..", DotOrDotDot),
            ("../x", Separator),
            ("/etc/passwd", Separator),
            ("a\\b", Separator),
            ("a\0", Nul),
            ("history.md", Reserved),
        ] {
            assert_eq!(AttachmentName::new(name), Err(why), "{name:?}");
        }
        assert_eq!(AttachmentName::new("x".repeat(256)), Err(TooLong));
    }
}
