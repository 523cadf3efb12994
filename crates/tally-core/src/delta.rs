//! Strict parsing of deltas that arrive as text (the Redis protocol, the CLI, JSON strings).

use crate::ValidationError;

/// Parses a signed 64-bit decimal integer: an optional `-`, then ASCII digits, nothing else.
///
/// A leading `+`, leading zeros (`05`), `-0`, whitespace, a NUL byte, hexadecimal, exponents,
/// fractions and values outside `i64` are rejected. These are the rules of Redis's integer
/// parser (`string2ll` in Redis 7.0), so every front end accepts the texts Redis accepts.
pub fn parse_delta(text: &[u8]) -> Result<i64, ValidationError> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ValidationError::new(
            "delta",
            "must be a decimal integer: an optional '-' followed by digits 0-9",
        ));
    }

    if digits.len() > 1 && digits[0] == b'0' || text == b"-0" {
        return Err(ValidationError::new(
            "delta",
            "must not have leading zeros or be written as -0",
        ));
    }

    // The text is ASCII here, so it is valid UTF-8, and `i64::from_str` checks the range.
    let ascii = std::str::from_utf8(text).map_err(|_| out_of_range())?;
    ascii.parse::<i64>().map_err(|_| out_of_range())
}

fn out_of_range() -> ValidationError {
    ValidationError::new(
        "delta",
        format!("must be between {} and {}", i64::MIN, i64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_accepts_full_range() {
        assert_eq!(parse_delta(b"0"), Ok(0));
        assert_eq!(parse_delta(b"-5"), Ok(-5));
        assert_eq!(parse_delta(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_delta(b"-9223372036854775808"), Ok(i64::MIN));
    }

    #[test]
    fn delta_rejects_malformed_text() {
        let rejected: [&[u8]; 20] = [
            b"05",
            b"-05",
            b"-0",
            b"99\0abc",
            b"12abc",
            b" 12",
            b"12 ",
            b"",
            b"-",
            b"0x10",
            b"1e3",
            b"1.0",
            "\u{ff11}\u{ff12}".as_bytes(),
            b"9223372036854775808",
            b"-9223372036854775809",
            b"334293482390480948029348230948",
            b"nan",
            b"inf",
            b"+12",
            b"--1",
        ];
        for text in rejected {
            let error = parse_delta(text).unwrap_err();
            assert_eq!(error.field, "delta", "{text:?}");
        }
    }
}
