//! Encoding of replies in RESP2 and RESP3.

use crate::ServiceError;

/// The protocol version of a connection: 2 until the client switches with `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

impl Protocol {
    /// The version number that `HELLO` takes and reports.
    pub fn number(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply, in the form it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(&'static str),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
    /// A RESP3 map; in RESP2 an array of keys and values in turn, as Redis sends it.
    Map(Vec<(Reply, Reply)>),
    /// Plain text, such as the `INFO` report: a RESP3 verbatim string of format `txt`, and a
    /// bulk string in RESP2.
    Text(String),
}

impl Reply {
    pub fn write_to(&self, out: &mut Vec<u8>, protocol: Protocol) {
        match self {
            Reply::Simple(text) => {
                out.push(b'+');
                out.extend_from_slice(text.as_bytes());
            }
            Reply::Error(text) => {
                out.push(b'-');
                // A reply line must not contain CR or LF.
                out.extend(text.bytes().map(|byte| {
                    if byte == b'\r' || byte == b'\n' {
                        b' '
                    } else {
                        byte
                    }
                }));
            }
            Reply::Integer(value) => {
                out.push(b':');
                out.extend_from_slice(value.to_string().as_bytes());
            }
            Reply::Bulk(bytes) => write_blob(out, b'$', &[bytes]),
            Reply::Nil => match protocol {
                Protocol::Resp2 => out.extend_from_slice(b"$-1"),
                Protocol::Resp3 => out.push(b'_'),
            },
            Reply::Array(items) => {
                write_header(out, b'*', items.len());
                for item in items {
                    item.write_to(out, protocol);
                }
                return;
            }
            Reply::Map(entries) => {
                match protocol {
                    Protocol::Resp2 => write_header(out, b'*', 2 * entries.len()),
                    Protocol::Resp3 => write_header(out, b'%', entries.len()),
                }
                for (key, value) in entries {
                    key.write_to(out, protocol);
                    value.write_to(out, protocol);
                }
                return;
            }
            Reply::Text(text) => match protocol {
                Protocol::Resp2 => write_blob(out, b'$', &[text.as_bytes()]),
                Protocol::Resp3 => write_blob(out, b'=', &[b"txt:", text.as_bytes()]),
            },
        }
        out.extend_from_slice(b"\r\n");
    }

    pub fn bulk(text: impl Into<Vec<u8>>) -> Self {
        Reply::Bulk(text.into())
    }

    pub fn error(text: impl Into<String>) -> Self {
        Reply::Error(text.into())
    }
}

/// Writes the line that starts an aggregate of `len` elements.
fn write_header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes the length line and the bytes of a blob made of `parts`, without the final CRLF.
fn write_blob(out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) {
    write_header(out, kind, parts.iter().map(|part| part.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Redis's own text for a delta that does not parse.
pub const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// Redis's own text for an increment that leaves the 64-bit range.
pub const WOULD_OVERFLOW: &str = "ERR increment or decrement would overflow";

/// Maps a service error to a Redis error reply: Redis's own texts where a Redis client expects
/// them, and an upper-case prefix per error class otherwise.
pub fn service_error(error: &ServiceError) -> Reply {
    match error {
        ServiceError::OutOfRange(_) => Reply::error(WOULD_OVERFLOW),
        ServiceError::Invalid(invalid) if invalid.field == "delta" => Reply::error(NOT_AN_INTEGER),
        ServiceError::Invalid(_) | ServiceError::TooLarge(_) => {
            Reply::error(format!("ERR {error}"))
        }
        ServiceError::NamespaceNotFound(_) | ServiceError::CounterNotFound { .. } => {
            Reply::error(format!("NOTFOUND {error}"))
        }
        ServiceError::TokenConflict { .. } => Reply::error(format!("CONFLICT {error}")),
        ServiceError::Overloaded | ServiceError::Unavailable(_) => {
            Reply::error(format!("TRYAGAIN {error}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: Reply) -> Vec<u8> {
        encoded_in(reply, Protocol::Resp2)
    }

    fn encoded_in(reply: Reply, protocol: Protocol) -> Vec<u8> {
        let mut out = Vec::new();
        reply.write_to(&mut out, protocol);
        out
    }

    #[test]
    fn encodes_each_kind() {
        assert_eq!(encoded(Reply::Simple("OK")), b"+OK\r\n");
        assert_eq!(encoded(Reply::Integer(-3)), b":-3\r\n");
        assert_eq!(encoded(Reply::bulk("ab")), b"$2\r\nab\r\n");
        assert_eq!(encoded(Reply::Nil), b"$-1\r\n");
        assert_eq!(
            encoded(Reply::Array(vec![Reply::Integer(1), Reply::Nil])),
            b"*2\r\n:1\r\n$-1\r\n"
        );
        assert_eq!(encoded(Reply::error("ERR a\r\nb")), b"-ERR a  b\r\n");
        assert_eq!(
            encoded(Reply::Map(vec![(Reply::bulk("k"), Reply::Integer(1))])),
            b"*2\r\n$1\r\nk\r\n:1\r\n"
        );
        assert_eq!(encoded(Reply::Text("a\r\n".into())), b"$3\r\na\r\n\r\n");
    }

    #[test]
    fn encodes_resp3_kinds() {
        assert_eq!(encoded_in(Reply::Nil, Protocol::Resp3), b"_\r\n");
        assert_eq!(
            encoded_in(
                Reply::Array(vec![Reply::Integer(1), Reply::Nil]),
                Protocol::Resp3
            ),
            b"*2\r\n:1\r\n_\r\n"
        );
        assert_eq!(
            encoded_in(
                Reply::Map(vec![(Reply::bulk("k"), Reply::Nil)]),
                Protocol::Resp3
            ),
            b"%1\r\n$1\r\nk\r\n_\r\n"
        );
        assert_eq!(
            encoded_in(Reply::Text("a\r\n".into()), Protocol::Resp3),
            b"=7\r\ntxt:a\r\n\r\n"
        );
        assert_eq!(
            encoded_in(Reply::bulk("ab"), Protocol::Resp3),
            b"$2\r\nab\r\n"
        );
    }
}
