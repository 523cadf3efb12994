//! Namespace and counter names.
//!
//! Names are compared byte for byte. Tally does not apply Unicode normalisation, so the NFC form
//! `é` (U+00E9) and the NFD form `e` + U+0301 name two different counters, on every front end.

use crate::ValidationError;
use std::fmt;

/// Maximum length of a namespace name in bytes.
pub const MAX_NAMESPACE_NAME_BYTES: usize = 64;

/// Maximum length of a counter name in bytes of UTF-8.
pub const MAX_COUNTER_NAME_BYTES: usize = 256;

/// A namespace name: 1 to 64 characters from `a-z`, `0-9`, `_`, `.` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceName(String);

impl NamespaceName {
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b);
        if name.is_empty() || name.len() > MAX_NAMESPACE_NAME_BYTES {
            return Err(ValidationError::new(
                "namespace",
                format!(
                    "must be 1 to {MAX_NAMESPACE_NAME_BYTES} bytes long, got {} bytes",
                    name.len()
                ),
            ));
        }
        if !name.bytes().all(allowed) {
            return Err(ValidationError::new(
                "namespace",
                "may contain only a-z, 0-9, '_', '.' and '-'",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A counter name: 1 to 256 bytes of UTF-8 without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterName(Box<str>);

impl CounterName {
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        Self::check(name)?;
        Ok(Self(name.into()))
    }

    /// Parses a name that the caller owns, keeping its memory.
    pub fn parse_owned(name: String) -> Result<Self, ValidationError> {
        Self::check(&name)?;
        Ok(Self(name.into_boxed_str()))
    }

    /// Checks a name without keeping it.
    pub fn check(name: &str) -> Result<(), ValidationError> {
        check_printable_text("counter", name, MAX_COUNTER_NAME_BYTES)
    }

    /// Parses a name that arrives as raw bytes, as on the Redis protocol.
    pub fn parse_bytes(name: &[u8]) -> Result<Self, ValidationError> {
        let text = std::str::from_utf8(name)
            .map_err(|_| ValidationError::new("counter", "must be valid UTF-8"))?;
        Self::parse(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CounterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks that `text` is 1 to `max_bytes` bytes long and has no control character
/// (U+0000 to U+001F and U+007F to U+009F), so names never carry CR, LF or NUL into logs or keys.
pub(crate) fn check_printable_text(
    field: &'static str,
    text: &str,
    max_bytes: usize,
) -> Result<(), ValidationError> {
    if text.is_empty() || text.len() > max_bytes {
        return Err(ValidationError::new(
            field,
            format!(
                "must be 1 to {max_bytes} bytes of UTF-8, got {} bytes",
                text.len()
            ),
        ));
    }
    if let Some(position) = text.chars().position(char::is_control) {
        return Err(ValidationError::new(
            field,
            format!(
                "must not contain control characters (character {} is one)",
                position + 1
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_name_rules() {
        assert!(NamespaceName::parse("default").is_ok());
        assert!(NamespaceName::parse("a.b-c_9").is_ok());
        assert!(NamespaceName::parse(&"a".repeat(64)).is_ok());
        assert!(NamespaceName::parse(&"a".repeat(65)).is_err());
        assert!(NamespaceName::parse("").is_err());
        assert!(NamespaceName::parse("Upper").is_err());
        assert!(NamespaceName::parse("a/b").is_err());
    }

    #[test]
    fn counter_name_length_limit() {
        assert!(CounterName::parse(&"x".repeat(MAX_COUNTER_NAME_BYTES)).is_ok());
        let error = CounterName::parse(&"x".repeat(MAX_COUNTER_NAME_BYTES + 1)).unwrap_err();
        assert_eq!(error.field, "counter");
        assert!(error.rule.contains("256"));
    }

    #[test]
    fn counter_name_rejects_control_characters() {
        for name in ["a\rb", "a\nb", "a\0b", "\u{7f}", "\u{85}"] {
            assert!(CounterName::parse(name).is_err(), "{name:?} was accepted");
        }
        assert!(CounterName::parse_bytes(b"\xff\xfe").is_err());
    }

    #[test]
    fn control_character_position_counts_from_one() {
        let error = CounterName::parse("bad\u{1}name").unwrap_err();

        assert!(error.to_string().contains("character 4 is one"), "{error}");
    }

    #[test]
    fn parse_owned_matches_parse() {
        for name in ["visits", "zähler", "", "a\nb"] {
            let owned = CounterName::parse_owned(name.to_owned());
            assert_eq!(owned.is_ok(), CounterName::parse(name).is_ok(), "{name:?}");
        }
        assert_eq!(
            CounterName::parse_owned("visits".to_owned())
                .unwrap()
                .as_str(),
            "visits"
        );
    }

    #[test]
    fn counter_name_keeps_unicode_form() {
        let nfc = CounterName::parse("\u{e9}").unwrap();
        let nfd = CounterName::parse("e\u{301}").unwrap();
        assert_ne!(nfc, nfd);
        assert_eq!(CounterName::parse("a/b").unwrap().as_str(), "a/b");
    }
}
