//! Reads the one text form of a chatstore id: a hyphenated UUID
//! (8-4-4-4-12 hexadecimal digits). The component reads every id that
//! reaches it here and the host every id that comes back, so it is written
//! for both: no table, no branch per digit, eight digits per step in one
//! 64-bit word.
#![no_std]
#![deny(missing_docs)]

/// Which digits an id may be written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// `0-9`, `a-f` and `A-F`: what a caller may give.
    Either,
    /// `0-9` and `a-f` only: the canonical form, what stored and lent ids hold.
    Lower,
}

/// The 16 bytes of the hyphenated UUID `s` written with `case`'s digits,
/// or `None` for anything else.
pub fn parse(s: &[u8], case: Case) -> Option<[u8; 16]> {
    let s: &[u8; 36] = s.try_into().ok()?;
    if [s[8], s[13], s[18], s[23]] != [b'-'; 4] {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            s[at..at + 4].try_into().unwrap_or_default(),
        ))
    };
    let groups = [
        word(0),
        half(9) | half(14) << 32,
        half(19) | half(24) << 32,
        word(28),
    ];
    // Put together in one integer: no copy loop in a component.
    let mut bytes = 0u128;
    for (i, group) in groups.into_iter().enumerate() {
        bytes |= u128::from(digits(group, case)?) << (32 * i);
    }
    Some(bytes.to_le_bytes())
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` (all below 0x80) that lies in `lo..=hi`.
const fn within(x: u64, lo: u8, hi: u8) -> u64 {
    let at_least_lo = x + (0x80 - lo as u64) * ONES;
    let above_hi = x + (0x7f - hi as u64) * ONES;
    at_least_lo & !above_hi & HIGH
}

/// Eight ASCII hexadecimal digits (the first in the lowest byte) as the
/// four bytes they write (the first in the lowest byte).
fn digits(x: u64, case: Case) -> Option<u32> {
    if x & HIGH != 0 {
        return None;
    }
    let decimal = within(x, b'0', b'9');
    let letter = match case {
        Case::Either => within(x | (0x20 * ONES), b'a', b'f'),
        Case::Lower => within(x, b'a', b'f'),
    };
    if decimal | letter != HIGH {
        return None;
    }
    // A digit's value is its low four bits, plus 9 for a letter.
    let value = (x & (0x0f * ONES)) + (letter >> 7) * 9;
    // Each pair of digits into one byte, then the four bytes together.
    let pairs = ((value << 4) | (value >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    Some((quads | (quads >> 16)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;
    use std::string::String;

    #[test]
    fn reads_exactly_what_the_uuid_crate_reads_as_hyphenated() {
        // Every byte at every place of an id in either case, and of one
        // with every digit; `Lower` also refuses any uppercase digit.
        for base in [
            "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a",
            "ABCDEF01-2345-6789-ABCD-EF0123456789",
            "01234567-89ab-cdef-0123-456789abcdef",
        ] {
            for at in 0..base.len() {
                for byte in 0..=u8::MAX {
                    let mut s = base.as_bytes().to_vec();
                    s[at] = byte;
                    let Ok(s) = String::from_utf8(s) else {
                        continue;
                    };
                    let expected = uuid::Uuid::try_parse(&s)
                        .ok()
                        .filter(|_| s.len() == 36)
                        .map(uuid::Uuid::into_bytes);
                    assert_eq!(parse(s.as_bytes(), Case::Either), expected, "{s:?}");
                    let lower = expected.filter(|_| !s.bytes().any(|b| b.is_ascii_uppercase()));
                    assert_eq!(parse(s.as_bytes(), Case::Lower), lower, "{s:?}");
                }
            }
        }
    }

    #[test]
    fn only_36_bytes_can_be_an_id() {
        let id = b"0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";
        assert!(parse(id, Case::Lower).is_some());
        assert_eq!(parse(&id[..35], Case::Either), None);
        assert_eq!(
            parse(b"0192f0c17d3a7c4e8a5b1f2e3d4c5b6a", Case::Either),
            None
        );
        assert_eq!(parse(b"", Case::Either), None);
    }
}
