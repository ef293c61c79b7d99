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

/// A valid attachment name: one path component in Unicode Normalization
/// Form C, not `.` or `..`, without `/`, `\\`, control or bidirectional
/// formatting characters, not beginning or ending with white space, at most
/// 255 bytes, and not `history.md` in any letter case.
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
    /// The name contains a C0 or C1 control character or DEL.
    #[error("the name contains a control character")]
    Control,
    /// The name contains a bidirectional formatting character.
    #[error("the name contains a bidirectional formatting character")]
    Bidi,
    /// The name begins or ends with white space.
    #[error("the name begins or ends with white space")]
    Whitespace,
    /// The name is not in Unicode Normalization Form C (a policy normalizes
    /// names before it hands them to a port).
    #[error("the name is not in Unicode Normalization Form C")]
    NotNormalized,
    /// The name is longer than 255 bytes.
    #[error("the name is longer than 255 bytes")]
    TooLong,
    /// The name is `history.md` in some letter case.
    #[error("the name is reserved for the chat history")]
    Reserved,
}

/// C0 controls, DEL and C1 controls.
fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Bidirectional marks, embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether `name` names the history file, in any letter case.
fn is_history_name(name: &str) -> bool {
    name.to_lowercase() == HISTORY_FILE_NAME
}

impl AttachmentName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        let padded = |c: Option<char>| c.is_some_and(char::is_whitespace);
        let refused = if name.is_empty() {
            Some(InvalidName::Empty)
        } else if name == "." || name == ".." {
            Some(InvalidName::DotOrDotDot)
        } else if name.bytes().any(|b| b == b'/' || b == b'\\') {
            Some(InvalidName::Separator)
        } else if name.bytes().any(|b| b == 0) {
            Some(InvalidName::Nul)
        } else if name.chars().any(is_control) {
            Some(InvalidName::Control)
        } else if name.chars().any(is_bidi_control) {
            Some(InvalidName::Bidi)
        } else if padded(name.chars().next()) || padded(name.chars().next_back()) {
            Some(InvalidName::Whitespace)
        } else if !unicode_normalization::is_nfc(&name) {
            Some(InvalidName::NotNormalized)
        } else if name.len() > MAX_NAME_BYTES {
            Some(InvalidName::TooLong)
        } else if is_history_name(&name) {
            Some(InvalidName::Reserved)
        } else {
            None
        };
        match refused {
            Some(why) => Err(why),
            None => Ok(AttachmentName(name)),
        }
    }

    /// Validates `name` in Normalization Form C: the name a policy stores
    /// for what a caller typed.
    pub fn normalized(name: &str) -> Result<Self, InvalidName> {
        use unicode_normalization::UnicodeNormalization;
        AttachmentName::new(name.nfc().collect::<String>())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The valid name closest to `stored`, a name an earlier version accepted
/// (NFC, controls and bidirectional characters as `_`, no white space at
/// either end, `history.md` in another case prefixed with `_`), then made
/// unique among `taken` with ` (2)`, ` (3)`… Only the last resort, `file`,
/// ignores what the name was.
pub fn closest_valid(stored: &str, taken: &std::collections::HashSet<String>) -> AttachmentName {
    use unicode_normalization::UnicodeNormalization;
    let cleaned: String = stored
        .nfc()
        .map(|c| {
            if is_control(c) || is_bidi_control(c) || c == '/' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut base = cleaned.trim().to_owned();
    if base.is_empty() || base == "." || base == ".." {
        base = "file".into();
    }
    if is_history_name(&base) {
        base.insert(0, '_');
    }
    let fit = |s: &str, room: usize| -> String {
        let mut end = s.len().min(room);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].trim_end().to_owned()
    };
    // `taken` is finite, and `file` with any suffix is valid: this ends.
    let mut n = 1u64;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!(" ({n})")
        };
        let candidate = fit(&base, MAX_NAME_BYTES - suffix.len()) + &suffix;
        match AttachmentName::new(candidate) {
            Ok(name) if !taken.contains(name.as_str()) => return name,
            Ok(_) => n += 1,
            Err(_) => base = "file".into(),
        }
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
    fn a_name_earlier_versions_accepted_gets_its_closest_valid_twin() {
        let taken: std::collections::HashSet<String> =
            ["_History.md".to_owned(), "x".to_owned()].into();
        let cases = [
            ("History.md", "_History.md (2)"),
            (" x ", "x (2)"),
            ("a\u{1}b", "a_b"),
            ("evil\u{202e}txt.exe", "evil_txt.exe"),
            ("re\u{301}sume\u{301}", "r\u{e9}sum\u{e9}"),
            ("   ", "file"),
        ];
        for (stored, expected) in cases {
            assert_eq!(
                closest_valid(stored, &taken).as_str(),
                expected,
                "{stored:?}"
            );
        }
        let long = "é".repeat(200);
        assert!(closest_valid(&long, &taken).as_str().len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn safe_single_components_are_names() {
        for name in ["a", "report.pdf", "...", "..a", ".env", "a b", "\u{e9}"] {
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
            ("HISTORY.MD", Reserved),
            ("History.md", Reserved),
            ("a\u{1}", Control),
            ("\u{7f}", Control),
            ("\u{9b}x", Control),
            ("a\u{202e}b", Bidi),
            ("\u{2067}", Bidi),
            (" ", Whitespace),
            ("x ", Whitespace),
            ("\u{a0}x", Whitespace),
            ("e\u{301}", NotNormalized),
        ] {
            assert_eq!(AttachmentName::new(name), Err(why), "{name:?}");
        }
        assert_eq!(
            AttachmentName::normalized("e\u{301}").unwrap().as_str(),
            "\u{e9}"
        );
        assert_eq!(AttachmentName::new("x".repeat(256)), Err(TooLong));
    }
}
