//! Commands that look at the connection's namespace as a whole: `TYPE`, `TTL`, `DBSIZE`, `SCAN`
//! and `KEYS`. To a Redis client, every counter is a key of type `string` without a timeout.

use super::commands::{Session, get};
use super::glob;
use super::reply::{self, NOT_AN_INTEGER, Reply};
use crate::Service;
use crate::service::{CounterScan, MAX_SCAN_COUNT};

/// Maximum number of counters that `KEYS` returns. Beyond it, `KEYS` fails and names `SCAN`.
pub const KEYS_LIMIT: usize = 100_000;

/// `COUNT` of a `SCAN` that names none, as in Redis.
const DEFAULT_SCAN_COUNT: usize = 10;

/// Executes `TYPE key`: `string` for a counter, `none` for a key that is not one.
pub fn type_of(service: &Service, session: &Session, key: &[u8]) -> Reply {
    match get(service, session, key) {
        Reply::Bulk(_) => Reply::Simple("string"),
        Reply::Nil => Reply::Simple("none"),
        error => error,
    }
}

/// Executes `TTL key` and `PTTL key`: -1 for a counter, because counters never expire, and -2
/// for a key that is not one, as in Redis.
pub fn time_to_live(service: &Service, session: &Session, key: &[u8]) -> Reply {
    match get(service, session, key) {
        Reply::Bulk(_) => Reply::Integer(-1),
        Reply::Nil => Reply::Integer(-2),
        error => error,
    }
}

/// Executes `DBSIZE`: the number of counters in the namespace.
pub fn size(service: &Service, session: &Session) -> Reply {
    match service.count_counters(&session.namespace) {
        Ok(count) => Reply::Integer(i64::try_from(count).unwrap_or(i64::MAX)),
        Err(error) => reply::service_error(&error),
    }
}

/// The options of one `SCAN`.
struct ScanOptions<'a> {
    cursor: u64,
    pattern: Option<&'a [u8]>,
    count: usize,
    /// False when `TYPE` names a type other than `string`, which no counter has.
    strings: bool,
}

fn scan_options(args: &[Vec<u8>]) -> Result<ScanOptions<'_>, Reply> {
    let cursor = parse_cursor(&args[0]).ok_or_else(|| Reply::error("ERR invalid cursor"))?;
    let mut options = ScanOptions {
        cursor,
        pattern: None,
        count: DEFAULT_SCAN_COUNT,
        strings: true,
    };
    for pair in args[1..].chunks(2) {
        let [option, value] = pair else {
            return Err(Reply::error("ERR syntax error"));
        };
        match option.to_ascii_uppercase().as_slice() {
            b"MATCH" => options.pattern = Some(value),
            b"COUNT" => options.count = scan_count(value)?,
            b"TYPE" => options.strings = value.eq_ignore_ascii_case(b"string"),
            _ => return Err(Reply::error("ERR syntax error")),
        }
    }
    Ok(options)
}

/// Reads a cursor as redis-server 7.0.15 did in a side-by-side check: an optional sign, then
/// decimal digits that fit in 64 bits, or nothing at all, which reads as 0. A negative cursor
/// wraps around, so `-1` is the largest.
fn parse_cursor(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty() {
        return Some(0);
    }
    match text.strip_prefix('-') {
        Some(digits) if !digits.starts_with(['+', '-']) => {
            Some(digits.parse::<u64>().ok()?.wrapping_neg())
        }
        _ => text.parse::<u64>().ok(),
    }
}

fn scan_count(value: &[u8]) -> Result<usize, Reply> {
    let count = tally_core::parse_delta(value).map_err(|_| Reply::error(NOT_AN_INTEGER))?;
    match usize::try_from(count) {
        Ok(count @ 1..) => Ok(count.min(MAX_SCAN_COUNT)),
        _ => Err(Reply::error("ERR syntax error")),
    }
}

/// Executes `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`. The cursor walks the
/// counters in ID order (see [`Service::scan_counters`]), so it stays valid across restarts.
pub async fn scan(service: &Service, session: &Session, args: &[Vec<u8>]) -> Reply {
    let options = match scan_options(args) {
        Ok(options) => options,
        Err(reply) => return reply,
    };
    let step = service
        .scan_counters(&session.namespace, options.cursor, options.count)
        .await;
    let CounterScan { cursor, names } = match step {
        Ok(step) => step,
        Err(error) => return reply::service_error(&error),
    };
    let keys = names
        .into_iter()
        .filter(|name| options.strings && matches(options.pattern, name))
        .map(Reply::bulk)
        .collect();
    Reply::Array(vec![Reply::bulk(cursor.to_string()), Reply::Array(keys)])
}

/// Executes `KEYS pattern`: every counter of the namespace whose name matches, in ID order,
/// up to [`KEYS_LIMIT`].
pub async fn keys(service: &Service, session: &Session, pattern: &[u8]) -> Reply {
    let mut keys = Vec::new();
    let mut cursor = 0;
    loop {
        let step = service
            .scan_counters(&session.namespace, cursor, MAX_SCAN_COUNT)
            .await;
        let step = match step {
            Ok(step) => step,
            Err(error) => return reply::service_error(&error),
        };
        for name in step.names {
            if matches(Some(pattern), &name) {
                keys.push(Reply::bulk(name));
            }
        }
        if keys.len() > KEYS_LIMIT {
            return Reply::error(format!(
                "ERR KEYS matches more than {KEYS_LIMIT} counters; walk them with SCAN instead"
            ));
        }
        if step.cursor == 0 {
            return Reply::Array(keys);
        }
        cursor = step.cursor;
    }
}

fn matches(pattern: Option<&[u8]>, name: &str) -> bool {
    pattern.is_none_or(|pattern| glob::matches(pattern, name.as_bytes()))
}
