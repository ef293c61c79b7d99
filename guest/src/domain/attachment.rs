use super::{Id, StorageError, Timestamp, echo};
use std::fmt;

/// The name every chat keeps its history under; no attachment may take it.
pub const HISTORY_FILE_NAME: &str = "history.md";

/// The longest attachment name, in bytes (the common file-name limit).
pub const MAX_NAME_BYTES: usize = 255;

/// The name of an attachment. `TryFrom` is the only way to make one, so an
/// `AttachmentName` is always a single, safe, printable path component in
/// Unicode Normalization Form C that is not the history file.
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
    /// The name contains another C0 or C1 control character or DEL.
    Control,
    /// The name contains a bidirectional formatting character, which can
    /// make a name display as another (`U+202E`).
    Bidi,
    /// The name begins or ends with white space (or is only white space).
    Whitespace,
    /// The name is longer than [`MAX_NAME_BYTES`].
    TooLong,
    /// The name is `history.md` in any letter case, which every chat keeps
    /// for its history.
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

/// C0 controls, DEL and C1 controls.
pub fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// The bidirectional formatting characters: marks, embeddings, overrides
/// and isolates.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

impl AttachmentName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The rule a name in Normalization Form C breaks, if any.
    fn rule_broken_by(name: &str) -> Option<NameRule> {
        // `char::is_whitespace` is Unicode's White_Space property.
        let padded = |c: Option<char>| c.is_some_and(char::is_whitespace);
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
        } else if name.chars().any(is_control) {
            Some(NameRule::Control)
        } else if name.chars().any(is_bidi_control) {
            Some(NameRule::Bidi)
        } else if padded(name.chars().next()) || padded(name.chars().next_back()) {
            Some(NameRule::Whitespace)
        } else if name.len() > MAX_NAME_BYTES {
            Some(NameRule::TooLong)
        } else if name.to_lowercase() == HISTORY_FILE_NAME {
            Some(NameRule::Reserved)
        } else {
            None
        }
    }
}

/// `name` in Normalization Form C, copied only when it is not already.
fn nfc(name: String) -> String {
    use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
    match is_nfc_quick(name.chars()) {
        IsNormalized::Yes => name,
        _ => name.nfc().collect(),
    }
}

impl TryFrom<String> for AttachmentName {
    type Error = AttachmentNameError;

    /// Normalizes `name` to NFC, so that a name and its canonically
    /// equivalent twin name the same attachment, then applies the rules.
    fn try_from(name: String) -> Result<Self, Self::Error> {
        let name = nfc(name);
        match AttachmentName::rule_broken_by(&name) {
            None => Ok(AttachmentName(name)),
            Some(rule) => Err(AttachmentNameError {
                name: echo(&name),
                rule,
            }),
        }
    }
}

impl TryFrom<&str> for AttachmentName {
    type Error = AttachmentNameError;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        AttachmentName::try_from(name.to_owned())
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
            "history.md.bak",
            "a b",
            "日本語.txt",
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
        for name in ["HISTORY.MD", "History.md", "hIsToRy.Md"] {
            assert_eq!(rule(name), Some(NameRule::Reserved), "{name:?}");
        }
        for name in [
            "a\u{1}b",
            "\u{1f}",
            "a\u{7f}",
            "\u{85}x",
            "x\u{9f}",
            "tab\there",
            "nl\n",
        ] {
            assert_eq!(rule(name), Some(NameRule::Control), "{name:?}");
        }
        for name in ["evil\u{202e}fdp.exe", "\u{200e}a", "a\u{2066}b", "\u{61c}"] {
            assert_eq!(rule(name), Some(NameRule::Bidi), "{name:?}");
        }
        for name in [" ", "   ", " x", "x ", "x\u{a0}", "\u{3000}x", "\u{2028}"] {
            assert_eq!(rule(name), Some(NameRule::Whitespace), "{name:?}");
        }
    }

    #[test]
    fn a_name_and_its_canonical_twin_are_the_same_name() {
        let composed = AttachmentName::try_from("r\u{e9}sum\u{e9}.txt").unwrap();
        let decomposed = AttachmentName::try_from("re\u{301}sume\u{301}.txt").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(decomposed.as_str(), "r\u{e9}sum\u{e9}.txt");
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
