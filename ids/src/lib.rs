//! Reads and writes the one text form of a chatstore id: a hyphenated
//! UUID (8-4-4-4-12 hexadecimal digits). The component reads and writes
//! every id that crosses its boundary here, and the host reads every id
//! that comes back, so it is written for both: no table, no branch per
//! digit, eight digits per step in one 64-bit word.
#![no_std]
#![deny(missing_docs)]

/// The length of an id's text form.
pub const LEN: usize = 36;

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
    let s: &[u8; LEN] = s.try_into().ok()?;
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

/// The canonical form of a UUID's 16 bytes: lowercase, hyphenated.
pub fn encode(bytes: [u8; 16]) -> [u8; LEN] {
    let group = |at: usize| {
        hex(u32::from_le_bytes([
            bytes[at],
            bytes[at + 1],
            bytes[at + 2],
            bytes[at + 3],
        ]))
    };
    let [a, b, c, d] = [group(0), group(4), group(8), group(12)];
    const DASH: u64 = b'-' as u64;
    // 8 digits, "-", 4, "-", 4, "-", 4, "-", 12, in four words and a half.
    let words = [
        a,
        DASH | (b & 0xffff_ffff) << 8 | DASH << 40 | (b >> 32) << 48,
        b >> 48 | DASH << 16 | (c & 0xffff_ffff) << 24 | DASH << 56,
        c >> 32 | d << 32,
    ];
    let mut text = [0; LEN];
    for (at, word) in (0..32).step_by(8).zip(words) {
        text[at..at + 8].copy_from_slice(&word.to_le_bytes());
    }
    text[32..].copy_from_slice(&((d >> 32) as u32).to_le_bytes());
    text
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

/// Four bytes (the first in the lowest byte) as their eight lowercase
/// hexadecimal digits (the first in the lowest byte).
fn hex(x: u32) -> u64 {
    // Byte i to the low half of 16-bit lane i, then its two digits' values
    // to bytes 2i and 2i + 1.
    let spread = u64::from(x);
    let spread = (spread | spread << 16) & 0x0000_ffff_0000_ffff;
    let spread = (spread | spread << 8) & 0x00ff_00ff_00ff_00ff;
    let value = ((spread >> 4) & (0x0f * ONES)) | ((spread & (0x0f * ONES)) << 8);
    // '0' + value, and 39 more ('a' - '0' - 10) where value is 10 or more.
    let letter = ((value + 0x76 * ONES) & HIGH) >> 7;
    value + u64::from(b'0') * ONES + letter * 39
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;
    use std::string::{String, ToString};

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
    fn writes_what_the_uuid_crate_writes() {
        // Every value of every byte, beside bytes of every digit.
        for at in 0..16 {
            for byte in 0..=u8::MAX {
                let mut bytes: [u8; 16] = core::array::from_fn(|i| (i as u8) * 17);
                bytes[at] = byte;
                let text = encode(bytes);
                let expected = uuid::Uuid::from_bytes(bytes).hyphenated().to_string();
                assert_eq!(core::str::from_utf8(&text).unwrap(), expected);
                assert_eq!(parse(&text, Case::Lower), Some(bytes));
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
