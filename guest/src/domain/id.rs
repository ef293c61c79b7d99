use super::{StorageError, echo};
use std::fmt;

/// A UUID in canonical form (lowercase, hyphenated). The only ways to make
/// one are [`Id::parse`] and [`Id::from_canonical_bytes`], so an `Id` is
/// always well formed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(String);

const HYPHENS: [usize; 4] = [8, 13, 18, 23];

impl Id {
    /// Parses a hyphenated UUID in either case; refuses anything else with
    /// `invalid_id`.
    pub fn parse(s: &str) -> Result<Id, StorageError> {
        let well_formed = s.len() == 36
            && s.bytes().enumerate().all(|(i, b)| {
                if HYPHENS.contains(&i) {
                    b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            });
        if well_formed {
            Ok(Id(s.to_ascii_lowercase()))
        } else {
            Err(StorageError::InvalidId(echo(s)))
        }
    }

    /// The id of 16 raw bytes, in canonical form.
    pub fn from_canonical_bytes(bytes: [u8; 16]) -> Id {
        let mut s = String::with_capacity(36);
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            s.push_str(&format!("{b:02x}"));
        }
        Id(s)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canonical_uuid_parses_to_itself() {
        let s = "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";
        assert_eq!(Id::parse(s).unwrap().as_str(), s);
    }

    #[test]
    fn upper_case_is_normalised_to_lower_case() {
        let id = Id::parse("0192F0C1-7D3A-7C4E-8A5B-1F2E3D4C5B6A").unwrap();
        assert_eq!(id.as_str(), "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a");
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
        let id = Id::from_canonical_bytes([
            0x01, 0x92, 0xf0, 0xc1, 0x7d, 0x3a, 0x7c, 0x4e, 0x8a, 0x5b, 0x1f, 0x2e, 0x3d, 0x4c,
            0x5b, 0x6a,
        ]);
        assert_eq!(id.as_str(), "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a");
    }
}
