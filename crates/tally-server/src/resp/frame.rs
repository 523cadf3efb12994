//! Parsing of RESP2 requests: arrays of bulk strings, and inline commands for telnet users.
//!
//! Declared sizes are checked against limits before any memory is reserved, so a client that
//! announces a huge array or bulk string costs nothing and gets a protocol error.

/// Maximum number of arguments of one command.
pub const MAX_ARGUMENTS: usize = 1024;

/// Maximum length of one argument in bytes.
pub const MAX_BULK_BYTES: usize = 1024 * 1024;

/// Maximum length of an inline command line.
pub const MAX_INLINE_BYTES: usize = 64 * 1024;

/// A request that breaks the protocol. The connection is closed after the error reply, as
/// Redis does, because the rest of the stream cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Result of one parse attempt on the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole command and how many bytes it used. [`parse`] put its arguments in the vector
    /// it was given. An empty command (`*0`) has no arguments.
    Command { consumed: usize },
    /// More bytes are needed.
    Incomplete,
}

/// Finds the line that starts at `start`, without its CRLF; returns the line and the index after
/// the CRLF. `max_line` bounds how far a header line may grow before it is an error.
fn line_at(
    buffer: &[u8],
    start: usize,
    max_line: usize,
) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let search = &buffer[start..];
    match search.windows(2).position(|window| window == b"\r\n") {
        Some(end) => Ok(Some((&search[..end], start + end + 2))),
        None if search.len() > max_line => Err(ProtocolError("too big inline request".into())),
        None => Ok(None),
    }
}

/// Parses a decimal length; `None` when it is not a plain integer.
fn parse_length(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Parses one command from the front of `buffer` and replaces the contents of `arguments` with
/// its arguments, which borrow from `buffer` instead of being copied. After a result other
/// than [`Parsed::Command`], the contents of `arguments` are meaningless.
pub fn parse<'a>(buffer: &'a [u8], arguments: &mut Vec<&'a [u8]>) -> Result<Parsed, ProtocolError> {
    arguments.clear();
    match buffer.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'*') => parse_array(buffer, arguments),
        Some(_) => parse_inline(buffer, arguments),
    }
}

fn parse_array<'a>(
    buffer: &'a [u8],
    arguments: &mut Vec<&'a [u8]>,
) -> Result<Parsed, ProtocolError> {
    let Some((header, mut position)) = line_at(buffer, 0, 32)? else {
        return Ok(Parsed::Incomplete);
    };
    let count = match parse_length(&header[1..]) {
        Some(count) if count <= MAX_ARGUMENTS as i64 => count,
        _ => return Err(ProtocolError("invalid multibulk length".into())),
    };
    if count <= 0 {
        return Ok(Parsed::Command { consumed: position });
    }

    arguments.reserve(count as usize);
    for _ in 0..count {
        let Some((header, after_header)) = line_at(buffer, position, 32)? else {
            return Ok(Parsed::Incomplete);
        };
        if header.first() != Some(&b'$') {
            let found = header.first().map_or_else(
                || "nothing".to_owned(),
                |byte| format!("'{}'", *byte as char),
            );
            return Err(ProtocolError(format!("expected '$', got {found}")));
        }
        let length = match parse_length(&header[1..]) {
            Some(length) if (0..=MAX_BULK_BYTES as i64).contains(&length) => length as usize,
            _ => return Err(ProtocolError("invalid bulk length".into())),
        };
        let end = after_header + length;
        if buffer.len() < end + 2 {
            return Ok(Parsed::Incomplete);
        }
        if &buffer[end..end + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string is not followed by CRLF".into()));
        }
        arguments.push(&buffer[after_header..end]);
        position = end + 2;
    }
    Ok(Parsed::Command { consumed: position })
}

fn parse_inline<'a>(
    buffer: &'a [u8],
    arguments: &mut Vec<&'a [u8]>,
) -> Result<Parsed, ProtocolError> {
    let Some(newline) = buffer.iter().position(|byte| *byte == b'\n') else {
        if buffer.len() > MAX_INLINE_BYTES {
            return Err(ProtocolError("too big inline request".into()));
        }
        return Ok(Parsed::Incomplete);
    };
    let line = buffer[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buffer[..newline]);
    arguments.extend(
        line.split(|byte| *byte == b' ' || *byte == b'\t')
            .filter(|word| !word.is_empty()),
    );
    if arguments.len() > MAX_ARGUMENTS {
        return Err(ProtocolError("invalid multibulk length".into()));
    }
    Ok(Parsed::Command {
        consumed: newline + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::ProtocolError;

    /// A parse result that owns its arguments, for comparing.
    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Command {
            arguments: Vec<Vec<u8>>,
            consumed: usize,
        },
        Incomplete,
    }

    fn parse(bytes: &[u8]) -> Result<Owned, ProtocolError> {
        let mut arguments = vec![&b"left over"[..]];
        Ok(match super::parse(bytes, &mut arguments)? {
            super::Parsed::Command { consumed } => Owned::Command {
                arguments: arguments.iter().map(|argument| argument.to_vec()).collect(),
                consumed,
            },
            super::Parsed::Incomplete => Owned::Incomplete,
        })
    }

    fn command(arguments: &[&str], consumed: usize) -> Owned {
        Owned::Command {
            arguments: arguments.iter().map(|a| a.as_bytes().to_vec()).collect(),
            consumed,
        }
    }

    #[test]
    fn parses_array_of_bulk_strings() {
        let bytes = b"*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n";
        assert_eq!(parse(bytes), Ok(command(&["INCR", "c"], bytes.len())));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let bytes = b"*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n";
        for end in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..end]),
                Ok(Owned::Incomplete),
                "prefix of {end} bytes"
            );
        }
    }

    #[test]
    fn empty_array_is_empty_command() {
        assert_eq!(parse(b"*0\r\n"), Ok(command(&[], 4)));
    }

    #[test]
    fn rejects_huge_declared_sizes() {
        assert!(parse(b"*1048576\r\n").is_err());
        assert_eq!(
            parse(b"*1\r\n$9223372036854775807\r\n"),
            Err(ProtocolError("invalid bulk length".into()))
        );
        assert!(parse(b"*1\r\n$-2\r\n").is_err());
        assert!(parse(b"*3\r\n$6\r\nINCRBY\r\n$1\r\nc\r\n$-1\r\n").is_err());
    }

    #[test]
    fn parses_inline_commands() {
        assert_eq!(
            parse(b"INCRBY c  5\r\n"),
            Ok(command(&["INCRBY", "c", "5"], 13))
        );
        assert_eq!(parse(b"PING"), Ok(Owned::Incomplete));
    }
}
