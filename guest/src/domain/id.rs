use super::{StorageError, echo};
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
        match hyphenated(s.as_bytes()) {
            Some(bytes) => Ok(Id::from_bytes(bytes)),
            None => Err(StorageError::InvalidId(echo(s))),
        }
    }

    /// The canonical form as a new string (what crosses the boundary),
    /// without the formatting machinery `to_string` goes through.
    pub fn canonical(&self) -> String {
        self.encode().to_owned()
    }

    /// The canonical form in a buffer of its own, to lend as a `&str`
    /// (what a port call takes) without allocating.
    pub fn encode(&self) -> Canonical {
        let mut buffer = [0; Self::LEN];
        self.0.hyphenated().encode_lower(&mut buffer);
        Canonical(buffer)
    }

    /// The length of the canonical form.
    const LEN: usize = 36;

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
pub struct Canonical([u8; Id::LEN]);

impl std::ops::Deref for Canonical {
    type Target = str;

    fn deref(&self) -> &str {
        // Written by `encode_lower`: ASCII hexadecimal digits and hyphens.
        std::str::from_utf8(&self.0).expect("a canonical id is ASCII")
    }
}

/// The 16 bytes of a hyphenated UUID (8-4-4-4-12 hexadecimal digits) in
/// either case. Every id that crosses the boundary is parsed here, so it
/// is written for the component: one pass, a table lookup per digit, no
/// branch but the last.
fn hyphenated(s: &[u8]) -> Option<[u8; 16]> {
    let s: &[u8; Id::LEN] = s.try_into().ok()?;
    if [s[8], s[13], s[18], s[23]] != [b'-'; 4] {
        return None;
    }
    // Where each byte's two digits start.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut bytes = [0; 16];
    let mut bad = 0;
    for (byte, at) in bytes.iter_mut().zip(AT) {
        let (high, low) = (HEX[s[at] as usize], HEX[s[at + 1] as usize]);
        bad |= high | low;
        *byte = (high << 4) | low;
    }
    (bad <= 0x0f).then_some(bytes)
}

/// Each byte's value as a hexadecimal digit, or `0xff`.
const HEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        let digit = i as u8;
        if i < 10 {
            table[(b'0' + digit) as usize] = digit;
        } else {
            table[(b'a' + digit - 10) as usize] = digit;
            table[(b'A' + digit - 10) as usize] = digit;
        }
        i += 1;
    }
    table
};

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
    fn parses_exactly_what_the_uuid_crate_parses_as_hyphenated() {
        // Every byte at every place of a canonical id, in either case.
        for base in [
            "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a",
            "ABCDEF01-2345-6789-ABCD-EF0123456789",
        ] {
            for at in 0..base.len() {
                for byte in 0..=u8::MAX {
                    let mut s = base.as_bytes().to_vec();
                    s[at] = byte;
                    let Ok(s) = String::from_utf8(s) else {
                        continue;
                    };
                    let expected = Uuid::try_parse(&s).ok().filter(|_| s.len() == 36);
                    assert_eq!(Id::parse(&s).ok().map(|id| id.0), expected, "{s:?}");
                }
            }
        }
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
