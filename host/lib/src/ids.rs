//! How the host reads ids and echoes refused input. Ids are read and
//! written with the `uuid` crate; the contract's one text form is the
//! hyphenated one, and what the guest, the data directory and the journal
//! hold is its lowercase (canonical) spelling, as `Uuid`'s `Display` writes it.

use crate::error::Error;
use uuid::Uuid;

/// The most of a refused string an error carries, in bytes.
const ECHO_LIMIT: usize = 256;

/// `s`, cut at a character boundary to at most 256 bytes and marked with
/// `…` if cut: what errors and logs carry of input that may be huge or hostile.
pub fn echo(s: &str) -> String {
    if s.len() <= ECHO_LIMIT {
        return s.to_owned();
    }
    let mut end = ECHO_LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A hyphenated UUID in either case (`uuid` also reads the simple, braced
/// and URN forms, which the contract does not allow).
fn hyphenated(s: &str) -> Option<Uuid> {
    if s.len() != uuid::fmt::Hyphenated::LENGTH {
        return None;
    }
    Uuid::try_parse(s).ok()
}

/// Parses an id a caller gave: a hyphenated UUID in either case; anything
/// else is `invalid_id`, carrying the string as the component would.
pub fn parse_id(s: &str) -> Result<Uuid, Error> {
    hyphenated(s).ok_or_else(|| Error::InvalidId(echo(s)))
}

/// An id in exactly the canonical form (lowercase, hyphenated): what the
/// guest, the data directory and the journal must hold.
pub(crate) fn parse_canonical(s: &str) -> Option<Uuid> {
    hyphenated(s).filter(|_| !s.bytes().any(|b| b.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";

    #[test]
    fn callers_may_give_either_case_the_guest_only_the_canonical_one() {
        let upper = ID.to_ascii_uppercase();
        assert_eq!(parse_id(&upper).unwrap().to_string(), ID);
        assert_eq!(parse_canonical(ID).unwrap().to_string(), ID);
        assert_eq!(parse_canonical(&upper), None);
        // One capital letter is enough to not be canonical.
        let mixed = format!("{}A", &ID[..35]);
        assert!(parse_id(&mixed).is_ok());
        assert_eq!(parse_canonical(&mixed), None);
    }

    #[test]
    fn only_the_hyphenated_form_is_an_id() {
        for bad in [
            "0192f0c17d3a7c4e8a5b1f2e3d4c5b6a",
            "{0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a}",
            "urn:uuid:0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a",
            "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6g",
            "0192f0c1+7d3a-7c4e-8a5b-1f2e3d4c5b6a",
            "0192f0c1-7d3a7-c4e-8a5b-1f2e3d4c5b6a",
            "../../etc",
            "",
        ] {
            assert_eq!(
                parse_id(bad),
                Err(Error::InvalidId(bad.to_owned())),
                "{bad}"
            );
            assert_eq!(parse_canonical(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_huge_refused_string_is_echoed_cut_at_a_character_boundary() {
        assert_eq!(echo("short"), "short");
        let echoed = echo(&"é".repeat(1000));
        assert!(echoed.ends_with('…'));
        assert_eq!(echoed.len(), 256 + '…'.len_utf8());
    }
}
