//! Event times: microseconds since the Unix epoch, in UTC.

use crate::ValidationError;
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The time of an event in microseconds since 1970-01-01T00:00:00Z.
///
/// Clients choose it once per change and resend it with every retry; the server checks it
/// against the namespace's accept limit and maximum clock skew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventTime(i64);

pub const MICROS_PER_SECOND: i64 = 1_000_000;

impl EventTime {
    pub const MIN: EventTime = EventTime(i64::MIN);

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        let micros = now.unix_timestamp_nanos() / 1_000;
        Self(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// Parses an RFC 3339 timestamp such as `2026-12-04T10:00:00Z` or `2026-12-04T11:00:00.5+01:00`.
    pub fn parse_rfc3339(field: &'static str, text: &str) -> Result<Self, ValidationError> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|error| {
            ValidationError::new(
                field,
                format!("must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z ({error})"),
            )
        })?;
        let micros = parsed.unix_timestamp_nanos() / 1_000;
        i64::try_from(micros)
            .map(Self)
            .map_err(|_| ValidationError::new(field, "is outside the supported range of years"))
    }

    /// Adds `seconds`, saturating at the ends of the range.
    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self(
            self.0
                .saturating_add(seconds.saturating_mul(MICROS_PER_SECOND)),
        )
    }

    pub fn minus_seconds(self, seconds: i64) -> Self {
        Self(
            self.0
                .saturating_sub(seconds.saturating_mul(MICROS_PER_SECOND)),
        )
    }

    /// Rounds down to a multiple of `step_seconds` (a positive number).
    pub fn floor_to(self, step_seconds: i64) -> Self {
        let step = step_seconds.saturating_mul(MICROS_PER_SECOND).max(1);
        Self(self.0.div_euclid(step).saturating_mul(step))
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.0) * 1_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
        {
            Some(text) => f.write_str(&text),
            None => write!(f, "{}us", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_offsets() {
        let utc = EventTime::parse_rfc3339("t", "2026-12-04T10:00:00Z").unwrap();
        let offset = EventTime::parse_rfc3339("t", "2026-12-04T11:00:00+01:00").unwrap();
        assert_eq!(utc, offset);
        assert_eq!(utc.to_string(), "2026-12-04T10:00:00Z");
    }

    #[test]
    fn rfc3339_rejects_other_formats() {
        for text in ["", "yesterday", "2026-12-04", "1733306400"] {
            let error =
                EventTime::parse_rfc3339("idempotency_token.generation_time", text).unwrap_err();
            assert_eq!(error.field, "idempotency_token.generation_time");
        }
    }

    #[test]
    fn floor_rounds_toward_negative_infinity() {
        assert_eq!(
            EventTime::from_micros(3_700_000_000)
                .floor_to(3600)
                .as_micros(),
            3_600_000_000
        );
        assert_eq!(
            EventTime::from_micros(-1).floor_to(1).as_micros(),
            -1_000_000
        );
    }
}
