use super::{StorageError, echo};
use chatstore_ids::Case;
use std::fmt;
use uuid::Uuid;

/// An id: a UUID, held as its 16 bytes and written in canonical form
/// (lowercase, hyphenated) only where it crosses the boundary. The only
/// ways to make one are [`Id::parse`] and [`Id::from_bytes`], so an `Id` is
/// always well formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(Uuid);

impl Id {
    /// Parses a hyphenated UUID in either case; refuses anything else with
    /// `invalid_id`, carrying the string (cut short if long).
    pub fn parse(s: &str) -> Result<Id, StorageError> {
        Id::read(s).ok_or_else(|| StorageError::InvalidId(echo(s)))
    }

    /// The id `s` writes (a hyphenated UUID in either case), if it is one:
    /// [`parse`](Self::parse) without building its error.
    pub fn read(s: &str) -> Option<Id> {
        chatstore_ids::parse(s.as_bytes(), Case::Either).map(Id::from_bytes)
    }

    /// The canonical form as a new string (what crosses the boundary),
    /// without the formatting machinery `to_string` goes through.
    pub fn canonical(&self) -> String {
        self.encode().to_owned()
    }

    /// The canonical form in a buffer of its own, to lend as a `&str`
    /// (what a port call takes) without allocating.
    pub fn encode(&self) -> Canonical {
        Canonical(chatstore_ids::encode(self.0.into_bytes()))
    }

    /// The id of 16 raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Id {
        Id(Uuid::from_bytes(bytes))
    }

    /// The id's 16 raw bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.into_bytes()
    }
}

/// The canonical form: lowercase, hyphenated.
impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// An id's canonical form, held in place: see [`Id::encode`].
pub struct Canonical([u8; chatstore_ids::LEN]);

impl std::ops::Deref for Canonical {
    type Target = str;

    fn deref(&self) -> &str {
        // SAFETY: only `Id::encode` makes a `Canonical`, and
        // `chatstore_ids::encode` writes ASCII hexadecimal digits and
        // hyphens alone (its tests compare every output with the `uuid`
        // crate's): always UTF-8, so not checked again on every lend.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canonical_uuid_parses_to_itself() {
        let s = "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";
        assert_eq!(Id::parse(s).unwrap().to_string(), s);
    }

    #[test]
    fn upper_case_is_normalised_to_lower_case() {
        let id = Id::parse("0192F0C1-7D3A-7C4E-8A5B-1F2E3D4C5B6A").unwrap();
        assert_eq!(id.to_string(), "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a");
    }

    #[test]
    fn the_canonical_form_is_the_displayed_one() {
        let id = Id::parse("0192F0C1-7D3A-7C4E-8A5B-1F2E3D4C5B6A").unwrap();
        assert_eq!(id.canonical(), "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a");
        assert_eq!(id.canonical(), id.to_string());
        assert_eq!(&*id.encode(), id.canonical());
    }

    #[test]
    fn malformed_ids_are_invalid_id() {
        for bad in [
            "",
            "..",
            "../../etc",
            "/etc/passwd",
            "0192f0c17d3a7c4e8a5b1f2e3d4c5b6a",
            "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6",
            "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6g",
            "0192f0c1+7d3a-7c4e-8a5b-1f2e3d4c5b6a",
            "{0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6}",
            "{0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a}",
            "urn:uuid:0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a",
        ] {
            assert_eq!(
                Id::parse(bad),
                Err(StorageError::InvalidId(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bytes_render_in_canonical_form() {
        let id = Id::from_bytes([
            0x01, 0x92, 0xf0, 0xc1, 0x7d, 0x3a, 0x7c, 0x4e, 0x8a, 0x5b, 0x1f, 0x2e, 0x3d, 0x4c,
            0x5b, 0x6a,
        ]);
        assert_eq!(id.to_string(), "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a");
    }
}
