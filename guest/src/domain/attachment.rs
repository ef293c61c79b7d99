use super::{Id, StorageError, Timestamp, echo};
use std::fmt;

/// The name every chat keeps its history under; no attachment may take it.
pub const HISTORY_FILE_NAME: &str = "history.md";

/// The longest attachment name, in bytes (the common file-name limit).
pub const MAX_NAME_BYTES: usize = 255;

/// The name of an attachment. `TryFrom` is the only way to make one, so an
/// `AttachmentName` is always a single, safe path component that is not the
/// history file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttachmentName(String);

/// Which attachment-name rule a name breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// The name is empty.
    Empty,
    /// The name is `.` or `..`.
    DotOrDotDot,
    /// The name contains `/`.
    Slash,
    /// The name contains `\`.
    Backslash,
    /// The name contains a NUL character.
    Nul,
    /// The name is longer than [`MAX_NAME_BYTES`].
    TooLong,
    /// The name is `history.md`, which every chat keeps for its history.
    Reserved,
}

/// A refused attachment name and the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentNameError {
    /// The refused name (cut short if very long).
    pub name: String,
    /// The rule it breaks.
    pub rule: NameRule,
}

impl AttachmentName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn rule_broken_by(name: &str) -> Option<NameRule> {
        if name.is_empty() {
            Some(NameRule::Empty)
        } else if name == "." || name == ".." {
            Some(NameRule::DotOrDotDot)
        } else if name.contains('/') {
            Some(NameRule::Slash)
        } else if name.contains('\\') {
            Some(NameRule::Backslash)
        } else if name.contains('\0') {
            Some(NameRule::Nul)
        } else if name.len() > MAX_NAME_BYTES {
            Some(NameRule::TooLong)
        } else if name == HISTORY_FILE_NAME {
            Some(NameRule::Reserved)
        } else {
            None
        }
    }
}

impl TryFrom<&str> for AttachmentName {
    type Error = AttachmentNameError;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        match AttachmentName::rule_broken_by(name) {
            None => Ok(AttachmentName(name.to_owned())),
            Some(rule) => Err(AttachmentNameError {
                name: echo(name),
                rule,
            }),
        }
    }
}

impl TryFrom<String> for AttachmentName {
    type Error = AttachmentNameError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        match AttachmentName::rule_broken_by(&name) {
            None => Ok(AttachmentName(name)),
            Some(rule) => Err(AttachmentNameError {
                name: echo(&name),
                rule,
            }),
        }
    }
}

impl fmt::Display for AttachmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<AttachmentNameError> for StorageError {
    fn from(e: AttachmentNameError) -> Self {
        match e.rule {
            NameRule::Reserved => StorageError::ReservedAttachmentName(e.name),
            _ => StorageError::InvalidAttachmentName(e.name),
        }
    }
}

/// The metadata of one attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatFile {
    /// The file's own id; a replaced name gets a new one.
    pub file_id: Id,
    /// The chat it belongs to.
    pub chat_id: Id,
    /// Its name, unique within the chat.
    pub name: AttachmentName,
    /// The media type the uploader gave.
    pub content_type: Option<String>,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The SHA-256 of its content, lowercase hex (none for files stored
    /// before digests were kept).
    pub sha256: Option<String>,
    /// When it was uploaded.
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str) -> Option<NameRule> {
        AttachmentName::try_from(name).err().map(|e| e.rule)
    }

    #[test]
    fn ordinary_names_are_accepted() {
        for name in [
            "report.pdf",
            "a",
            "..hidden",
            "...",
            ".env",
            "data (1).csv",
            "résumé.txt",
            "History.md",
            "history.md.bak",
            " ",
        ] {
            assert_eq!(AttachmentName::try_from(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn each_rule_has_its_own_error() {
        assert_eq!(rule(""), Some(NameRule::Empty));
        assert_eq!(rule("."), Some(NameRule::DotOrDotDot));
        assert_eq!(rule(".."), Some(NameRule::DotOrDotDot));
        assert_eq!(rule("a/b"), Some(NameRule::Slash));
        assert_eq!(rule("../x"), Some(NameRule::Slash));
        assert_eq!(rule("/etc/passwd"), Some(NameRule::Slash));
        assert_eq!(rule("a\\b"), Some(NameRule::Backslash));
        assert_eq!(rule("a\0b"), Some(NameRule::Nul));
        assert_eq!(rule("history.md"), Some(NameRule::Reserved));
    }

    #[test]
    fn names_are_limited_to_255_bytes_not_characters() {
        assert_eq!(rule(&"x".repeat(255)), None);
        assert_eq!(rule(&"x".repeat(256)), Some(NameRule::TooLong));
        // 128 two-byte characters are 256 bytes.
        assert_eq!(rule(&"é".repeat(128)), Some(NameRule::TooLong));
        assert_eq!(rule(&"é".repeat(127)), None);
    }

    #[test]
    fn the_reserved_name_maps_to_its_own_code() {
        let err: StorageError = AttachmentName::try_from("history.md").unwrap_err().into();
        assert_eq!(err.code(), "reserved_attachment_name");
        let err: StorageError = AttachmentName::try_from("a/b").unwrap_err().into();
        assert_eq!(err.code(), "invalid_attachment_name");
    }

    #[test]
    fn a_huge_name_is_echoed_short() {
        let err = AttachmentName::try_from("x".repeat(1 << 20)).unwrap_err();
        assert!(err.name.len() < 300);
    }
}
