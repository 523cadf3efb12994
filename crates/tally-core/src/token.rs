//! Idempotency tokens.

use crate::names::check_printable_text;
use crate::{EventTime, ValidationError};

/// Maximum length of a token string in bytes of UTF-8.
pub const MAX_TOKEN_BYTES: usize = 128;

/// A client's retry key: a token string plus the event time of the change.
///
/// The token is scoped to one counter. A retry resends both parts unchanged; the same token
/// with another delta, kind or event time is a conflict. A client that sends no event time gets
/// the server's receive time, and then a retry is matched on the token, kind and delta alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyToken {
    pub token: String,
    pub event_time: EventTime,
    /// Whether the client chose the event time (and so must resend the same one).
    pub client_time: bool,
}

impl IdempotencyToken {
    /// Validates a token from a request. `generation_time` is RFC 3339; `None` means `now`.
    pub fn parse(
        token: &str,
        generation_time: Option<&str>,
        now: EventTime,
    ) -> Result<Self, ValidationError> {
        check_printable_text("idempotency_token.token", token, MAX_TOKEN_BYTES)?;
        let event_time = match generation_time {
            Some(text) => EventTime::parse_rfc3339("idempotency_token.generation_time", text)?,
            None => now,
        };
        Ok(Self {
            token: token.to_owned(),
            event_time,
            client_time: generation_time.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_length_limit() {
        let now = EventTime::from_micros(0);
        assert!(IdempotencyToken::parse(&"t".repeat(MAX_TOKEN_BYTES), None, now).is_ok());
        let error =
            IdempotencyToken::parse(&"t".repeat(MAX_TOKEN_BYTES + 1), None, now).unwrap_err();
        assert_eq!(error.field, "idempotency_token.token");
        assert!(IdempotencyToken::parse("", None, now).is_err());
        assert!(IdempotencyToken::parse("a\nb", None, now).is_err());
    }
}
