//! Instants as whole milliseconds since the Unix epoch, and the clock abstraction.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// The one accepted text form: RFC 3339, UTC, exactly millisecond precision.
///
/// Signed payloads are re-serialized by verifiers, so a timestamp must have exactly one
/// spelling; anything else is rejected rather than normalised.
const FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The earliest and latest instants we accept (years 1970 through 9999).
const MIN_MS: i64 = 0;
const MAX_MS: i64 = 253_402_300_799_999;

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// The error for a timestamp outside the supported range or in another spelling.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    /// Milliseconds outside 1970..=9999.
    #[error("timestamp {0} ms is outside 1970-01-01 .. 9999-12-31")]
    OutOfRange(i64),
    /// Text that is not `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    #[error("timestamp {0:?} is not of the form YYYY-MM-DDTHH:MM:SS.mmmZ")]
    Format(String),
}

impl Timestamp {
    /// The instant `ms` milliseconds after the epoch.
    pub fn from_millis(ms: i64) -> Result<Self, TimestampError> {
        if (MIN_MS..=MAX_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(TimestampError::OutOfRange(ms))
        }
    }

    /// The instant a `SystemTime` names, clamped into the supported range (a clock set before
    /// 1970 reads as the epoch). A conversion only: the caller reads the clock.
    pub fn from_system_time(time: std::time::SystemTime) -> Self {
        let ms = time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(MIN_MS, |d| i64::try_from(d.as_millis()).unwrap_or(MAX_MS));
        Self(ms.clamp(MIN_MS, MAX_MS))
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant moved by `ms` milliseconds, saturating at the supported range.
    pub fn add_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms).clamp(MIN_MS, MAX_MS))
    }

    /// This instant moved by whole seconds, saturating at the supported range.
    pub fn add_seconds(self, seconds: i64) -> Self {
        self.add_millis(seconds.saturating_mul(1000))
    }

    /// Milliseconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }

    /// Parses the canonical text form.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let format_error = || TimestampError::Format(text.chars().take(64).collect());
        let parsed = time::PrimitiveDateTime::parse(text, FORMAT).map_err(|_| format_error())?;
        let ms = parsed.assume_utc().unix_timestamp_nanos() / 1_000_000;
        let ms = i64::try_from(ms).map_err(|_| format_error())?;
        Self::from_millis(ms)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // In range by construction, so both conversions succeed.
        let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .map_err(|_| fmt::Error)?;
        let text = dt.format(FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A source of the current time; the service passes the system clock, tests a fixed one.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let t = Timestamp::from_millis(1_795_000_000_123).expect("in range");
        let text = t.to_string();
        assert_eq!(text, "2026-11-18T11:06:40.123Z");
        assert_eq!(Timestamp::parse(&text), Ok(t));
    }

    #[test]
    fn other_spellings_are_rejected() {
        for bad in [
            "2026-11-19T09:46:40Z",
            "2026-11-19T09:46:40.123+00:00",
            "2026-11-19T09:46:40.1234Z",
            "2026-11-19 09:46:40.123Z",
            "2026-13-19T09:46:40.123Z",
            "",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn out_of_range_millis_are_rejected() {
        assert!(Timestamp::from_millis(-1).is_err());
        assert!(Timestamp::from_millis(MAX_MS + 1).is_err());
        assert_eq!(
            Timestamp::from_millis(MAX_MS).map(|t| t.to_string()),
            Ok("9999-12-31T23:59:59.999Z".to_owned())
        );
    }

    #[test]
    fn system_time_converts_and_clamps() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        assert_eq!(
            Timestamp::from_system_time(t).as_millis(),
            1_795_000_000_123
        );
        let before = std::time::UNIX_EPOCH - std::time::Duration::from_secs(5);
        assert_eq!(Timestamp::from_system_time(before).as_millis(), 0);
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(MAX_MS - 5).expect("in range");
        assert_eq!(t.add_seconds(10).as_millis(), MAX_MS);
        assert_eq!(t.add_millis(i64::MIN).as_millis(), 0);
    }
}
