use super::{StorageError, echo};
use std::fmt;
use uuid::Uuid;

/// An id: a UUID, written in canonical form (lowercase, hyphenated) where
/// it crosses the boundary. The only ways to make one are [`Id::parse`]
/// and [`Id::from_bytes`], so an `Id` is always well formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(Uuid);

impl Id {
    /// Parses a hyphenated UUID in either case; refuses anything else with
    /// `invalid_id`, carrying the string (cut short if long).
    pub fn parse(s: &str) -> Result<Id, StorageError> {
        Id::read(s).ok_or_else(|| StorageError::InvalidId(echo(s)))
    }

    /// The id `s` writes (a hyphenated UUID in either case), if it is one:
    /// [`parse`](Self::parse) without building its error. (`uuid` also
    /// reads the simple, braced and URN forms, which the contract does not
    /// allow.)
    pub fn read(s: &str) -> Option<Id> {
        if s.len() != uuid::fmt::Hyphenated::LENGTH {
            return None;
        }
        Uuid::try_parse(s).ok().map(Id)
    }

    /// The canonical form: what crosses the boundary.
    pub fn canonical(&self) -> String {
        self.to_string()
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
        fmt::Display::fmt(&self.0.hyphenated(), f)
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
            "0192f0c1-7d3a7-c4e-8a5b-1f2e3d4c5b6a",
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
