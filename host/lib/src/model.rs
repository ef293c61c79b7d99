//! The values the host API speaks in.

use crate::names::AttachmentName;
use serde::{Serialize, Serializer};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use uuid::Uuid;

/// A point in time, UTC, counted from the Unix epoch (the WIT `timestamp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// Nanoseconds past `seconds`, below 1_000_000_000.
    pub nanoseconds: u32,
}

impl Timestamp {
    const NANOS_PER_SECOND: i128 = 1_000_000_000;

    /// The timestamp `nanos` nanoseconds from the epoch (negative: before it).
    fn from_unix_nanos(nanos: i128) -> Timestamp {
        Timestamp {
            seconds: i64::try_from(nanos.div_euclid(Self::NANOS_PER_SECOND)).unwrap_or(i64::MAX),
            nanoseconds: nanos.rem_euclid(Self::NANOS_PER_SECOND) as u32,
        }
    }

    /// The timestamp of a system time (times before the epoch are negative).
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        Timestamp::from_unix_nanos(match t.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        })
    }

    /// The same instant as a `time` date-time, if it is within `time`'s range.
    pub fn to_offset_date_time(self) -> Option<OffsetDateTime> {
        let nanos =
            i128::from(self.seconds) * Self::NANOS_PER_SECOND + i128::from(self.nanoseconds);
        OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
    }

    /// RFC 3339 in UTC, with as many fractional digits as needed
    /// (`2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.5Z`); outside the
    /// years 0000–9999, which RFC 3339 cannot write, seconds and
    /// nanoseconds since the epoch (`253402300800.000000000`).
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }

    /// RFC 3339 text without an allocation, for the years it can write.
    fn rfc3339(self) -> Option<Rfc3339Text> {
        let days = self.seconds.div_euclid(86_400);
        let second_of_day = self.seconds.rem_euclid(86_400) as u32;
        // Days to a civil date (proleptic Gregorian), in eras of 400 years
        // starting on 0000-03-01 (Howard Hinnant's `civil_from_days`).
        let z = days.checked_add(719_468)?;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097) as u32;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        };
        let year = era
            .checked_mul(400)?
            .checked_add(i64::from(year_of_era) + i64::from(month <= 2))?;
        if !(0..=9999).contains(&year) || self.nanoseconds >= 1_000_000_000 {
            return None;
        }
        let mut text = Rfc3339Text {
            bytes: *b"0000-00-00T00:00:00.000000000Z",
            len: 20,
        };
        let mut digits = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                text.bytes[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        digits(0, 4, year as u32);
        digits(5, 2, month);
        digits(8, 2, day);
        digits(11, 2, second_of_day / 3600);
        digits(14, 2, second_of_day / 60 % 60);
        digits(17, 2, second_of_day % 60);
        if self.nanoseconds != 0 {
            digits(20, 9, self.nanoseconds);
            let mut end = 29;
            while text.bytes[end - 1] == b'0' {
                end -= 1;
            }
            text.len = end;
        } else {
            text.len = 19;
        }
        text.bytes[text.len] = b'Z';
        text.len += 1;
        Some(text)
    }

    /// The system time of this timestamp (the epoch if `time` cannot represent it).
    pub fn to_system_time(self) -> SystemTime {
        self.to_offset_date_time()
            .map_or(UNIX_EPOCH, SystemTime::from)
    }
}

/// A timestamp's RFC 3339 text, on the stack.
struct Rfc3339Text {
    bytes: [u8; 30],
    len: usize,
}

impl Rfc3339Text {
    fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rfc3339() {
            Some(text) => f.write_str(text.as_str()),
            None => write!(f, "{}.{:09}", self.seconds, self.nanoseconds),
        }
    }
}

/// Serialized as RFC 3339 text, as the CLI and the HTTP API show it.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339() {
            Some(text) => s.serialize_str(text.as_str()),
            None => s.collect_str(self),
        }
    }
}

/// The one workspace a user owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Workspace {
    /// The workspace's own id.
    pub workspace_id: Uuid,
    /// The owner; one workspace per user.
    pub user_id: Uuid,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// The bytes a workspace stores and the most it may store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkspaceUsage {
    /// The workspace this usage is of.
    pub workspace_id: Uuid,
    /// Every byte in the workspace's chat directories, sandbox files included.
    pub used_bytes: u64,
    /// The quota.
    pub quota_bytes: u64,
}

/// A conversation; it owns one working directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Chat {
    /// The chat's own id.
    pub chat_id: Uuid,
    /// The workspace it belongs to.
    pub workspace_id: Uuid,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// The metadata of one attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatFile {
    /// The file's own id; replacing a name gives a new one.
    pub file_id: Uuid,
    /// The chat it belongs to.
    pub chat_id: Uuid,
    /// Its name, unique within the chat.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: AttachmentName,
    /// The media type the uploader gave.
    pub content_type: Option<String>,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The SHA-256 of its content, 64 lowercase hex digits (none for a file
    /// stored before digests were kept).
    pub sha256: Option<String>,
    /// When it was uploaded.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// A code sandbox running on a chat's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxSession {
    /// The session's own id.
    pub session_id: Uuid,
    /// The chat whose directory it uses.
    pub chat_id: Uuid,
}

/// A regular file a sandbox session left in its chat's directory, as the
/// host found it, for the policy to register (`register-sandbox-outputs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxOutput {
    /// The file's name in the chat directory, not yet checked by any rule.
    pub name: String,
    /// The media type inferred from the name's extension, if any.
    pub content_type: Option<String>,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

/// A sandbox session just started, with what the sandbox subsystem needs
/// to run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxStart {
    /// The session's own id.
    pub session_id: Uuid,
    /// The chat whose directory it uses.
    pub chat_id: Uuid,
    /// The chat's working directory, an absolute path on this host to mount
    /// as the sandbox's working directory (`null` for a store whose chats
    /// have no directory, such as one built on fake ports).
    pub working_dir: Option<String>,
    /// How many bytes the workspace may still grow by: the sandbox's disk
    /// limit. What it writes is counted when its session ends.
    pub room_bytes: u64,
}

/// A sandbox session that ended, and what became of the files it left in
/// the chat's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxEnd {
    /// The session's own id.
    pub session_id: Uuid,
    /// The chat whose directory it used.
    pub chat_id: Uuid,
    /// Files it created or changed, now recorded as the chat's attachments.
    pub registered: Vec<ChatFile>,
    /// What it left that is not recorded, and why; left where it is.
    pub unregistered: Vec<Unregistered>,
}

impl SandboxEnd {
    /// The session that ended.
    pub fn session(&self) -> SandboxSession {
        SandboxSession {
            session_id: self.session_id,
            chat_id: self.chat_id,
        }
    }
}

/// Something a sandbox left in a chat directory that is not an attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unregistered {
    /// Its name in the chat directory (lossy if it is not UTF-8).
    pub name: String,
    /// Why: a storage error's code (`invalid_attachment_name`,
    /// `reserved_attachment_name`, `workspace_quota_exceeded`), or
    /// `not_a_regular_file`, `not_examined` (past the first 10,000 entries).
    pub reason: String,
    /// The same, for people.
    pub message: String,
}

impl SandboxStart {
    /// The session that started.
    pub fn session(&self) -> SandboxSession {
        SandboxSession {
            session_id: self.session_id,
            chat_id: self.chat_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339_utc() {
        let t = Timestamp {
            seconds: 1_767_225_600,
            nanoseconds: 0,
        };
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00Z");
        let t = Timestamp {
            seconds: 1_767_225_600,
            nanoseconds: 500_000_000,
        };
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00.5Z");
    }

    #[test]
    fn timestamps_render_as_the_time_crate_renders_rfc3339_in_every_year_it_can() {
        use time::format_description::well_known::Rfc3339;
        let as_time_renders = |t: Timestamp| {
            t.to_offset_date_time()
                .and_then(|d| d.format(&Rfc3339).ok())
        };
        let mut seconds = vec![
            0,
            -1,
            86_399,
            86_400,
            951_782_400,     // 2000-02-29
            4_107_542_400,   // 2100-03-01, after a February of 28 days
            -2_203_891_200,  // 1900-03-01
            -62_167_219_200, // 0000-01-01, the first second RFC 3339 can write
            253_402_300_799, // 9999-12-31T23:59:59, the last
        ];
        // And a spread of others, from before year 0 to after 9999.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seconds.push((x % 330_000_000_000) as i64 - 70_000_000_000);
        }
        for (i, seconds) in seconds.into_iter().enumerate() {
            let nanoseconds = [0, 500_000_000, 123_456_789, 1, 100, 999_999_999][i % 6];
            let t = Timestamp {
                seconds,
                nanoseconds,
            };
            let expected =
                as_time_renders(t).unwrap_or_else(|| format!("{seconds}.{nanoseconds:09}"));
            assert_eq!(t.to_rfc3339(), expected, "{seconds} s {nanoseconds} ns");
            assert_eq!(t.to_string(), expected);
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{expected}\"")
            );
        }
        // The years around the range's ends fall back as `time` does.
        for seconds in [-62_167_219_201, 253_402_300_800, i64::MIN, i64::MAX] {
            let t = Timestamp {
                seconds,
                nanoseconds: 0,
            };
            assert_eq!(t.to_rfc3339(), format!("{seconds}.000000000"));
        }
    }

    #[test]
    fn timestamps_round_trip_through_system_time() {
        for ts in [
            Timestamp {
                seconds: 0,
                nanoseconds: 0,
            },
            Timestamp {
                seconds: 1_700_000_000,
                nanoseconds: 123_456_789,
            },
            Timestamp {
                seconds: -1,
                nanoseconds: 500_000_000,
            },
            Timestamp {
                seconds: -86_400,
                nanoseconds: 0,
            },
        ] {
            assert_eq!(Timestamp::from_system_time(ts.to_system_time()), ts);
        }
    }
}
