//! Encoding of RESP2 replies.

use crate::ServiceError;

/// One reply, in the form it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(&'static str),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    pub fn write_to(&self, out: &mut Vec<u8>) {
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
            Reply::Bulk(bytes) => {
                out.push(b'$');
                out.extend_from_slice(bytes.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(bytes);
            }
            Reply::Nil => out.extend_from_slice(b"$-1"),
            Reply::Array(items) => {
                out.push(b'*');
                out.extend_from_slice(items.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                for item in items {
                    item.write_to(out);
                }
                return;
            }
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
        let mut out = Vec::new();
        reply.write_to(&mut out);
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
    }
}
