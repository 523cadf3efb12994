//! The Redis commands Tally understands, and how each maps onto the service.
//!
//! A key is a counter name in the connection's namespace: `default`, or the one chosen with
//! `TALLY.NAMESPACE name`. Keys are used as they are, so `user:42:views` is one counter name.

use super::key_commands::{self, ParsedKeyCommand};
use super::reply::{self, NOT_AN_INTEGER, Protocol, Reply};
use super::{connection, info, keyspace};
use crate::service::{BatchChange, TokenInput};
use crate::{Service, ServiceError};
use std::borrow::Cow;
use tally_core::{EventKind, parse_delta};

/// A parsed command.
pub enum Command {
    /// An add or clear that can share a group commit with its neighbours in a pipeline.
    Change {
        change: BatchChange,
        reply_with: ChangeReply,
    },
    /// Any other command, executed on its own, in order.
    Other(Vec<Vec<u8>>),
    /// `QUIT`: reply OK, then close.
    Quit,
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH key...` and `UNWATCH`.
    Transaction(TransactionCommand),
    /// A command with an invalid argument, rejected before it reaches the service. Inside
    /// `MULTI` it is queued and fails at `EXEC`, as in Redis.
    Invalid(Reply),
    /// A command with the wrong number of arguments. Inside `MULTI` it discards the
    /// transaction, as in Redis.
    WrongArity(Reply),
}

/// The commands that open, end or guard a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionCommand {
    Multi,
    Exec,
    /// `EXEC` with arguments, to which Redis replies by discarding the transaction, if any.
    ExecWithArguments,
    Discard,
    Watch,
    Unwatch,
}

/// The reply of a change: the new value or the event ID.
#[derive(Clone, Copy)]
pub enum ChangeReply {
    Value,
    EventId,
}

/// Returns a command name in upper case. Names of up to 16 ASCII bytes, which include every
/// command this front end implements, are upper-cased in `buffer` without allocating.
pub(super) fn upper_case<'a>(name: &[u8], buffer: &'a mut [u8; 16]) -> Cow<'a, str> {
    if name.len() <= buffer.len() && name.is_ascii() {
        let upper = &mut buffer[..name.len()];
        upper.copy_from_slice(name);
        upper.make_ascii_uppercase();
        if let Ok(text) = std::str::from_utf8(upper) {
            return Cow::Borrowed(text);
        }
    }
    Cow::Owned(String::from_utf8_lossy(name).to_uppercase())
}

pub(super) fn text(argument: &[u8]) -> Result<String, Reply> {
    String::from_utf8(argument.to_vec())
        .map_err(|_| Reply::error("ERR invalid counter: must be valid UTF-8"))
}

fn wrong_arity(name: &str) -> Command {
    Command::WrongArity(wrong_arity_reply(name))
}

pub(super) fn wrong_arity_reply(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_lowercase()
    ))
}

fn change(
    counter: &[u8],
    kind: EventKind,
    token: Option<TokenInput>,
    reply_with: ChangeReply,
) -> Command {
    match text(counter) {
        Ok(counter) => Command::Change {
            change: BatchChange {
                counter,
                kind,
                token,
            },
            reply_with,
        },
        Err(reply) => Command::Invalid(reply),
    }
}

fn delta_of(argument: &[u8]) -> Result<i64, Command> {
    parse_delta(argument).map_err(|_| Command::Invalid(Reply::error(NOT_AN_INTEGER)))
}

/// Reads `token [generation_time]` of the `TALLY.*` commands.
fn token_of(arguments: &[&[u8]]) -> Result<Option<TokenInput>, Command> {
    let token = text(arguments[0]).map_err(Command::Invalid)?;
    let generation_time = match arguments.get(1) {
        Some(time) => Some(text(time).map_err(Command::Invalid)?),
        None => None,
    };
    Ok(Some(TokenInput {
        token,
        generation_time,
    }))
}

/// Turns the arguments of one request into a [`Command`].
pub fn parse(arguments: &[&[u8]]) -> Command {
    let mut buffer = [0u8; 16];
    let name = upper_case(arguments[0], &mut buffer);
    let args = &arguments[1..];
    let built = match (name.as_ref(), args.len()) {
        ("INCR", 1) => Ok(change(
            args[0],
            EventKind::Add { delta: 1 },
            None,
            ChangeReply::Value,
        )),
        ("DECR", 1) => Ok(change(
            args[0],
            EventKind::Add { delta: -1 },
            None,
            ChangeReply::Value,
        )),
        ("INCRBY", 2) => delta_of(args[1])
            .map(|delta| change(args[0], EventKind::Add { delta }, None, ChangeReply::Value)),
        ("DECRBY", 2) => delta_of(args[1]).and_then(|delta| match delta.checked_neg() {
            Some(negated) => Ok(change(
                args[0],
                EventKind::Add { delta: negated },
                None,
                ChangeReply::Value,
            )),
            None => Err(Command::Invalid(Reply::error(
                "ERR decrement would overflow",
            ))),
        }),
        ("TALLY.ADD" | "TALLY.ADDGET", 3 | 4) => delta_of(args[1]).and_then(|delta| {
            let reply_with = if name.as_ref() == "TALLY.ADD" {
                ChangeReply::EventId
            } else {
                ChangeReply::Value
            };
            Ok(change(
                args[0],
                EventKind::Add { delta },
                token_of(&args[2..])?,
                reply_with,
            ))
        }),
        ("TALLY.CLEAR", 2 | 3) => token_of(&args[1..])
            .map(|token| change(args[0], EventKind::Clear, token, ChangeReply::EventId)),
        (
            "INCR" | "DECR" | "INCRBY" | "DECRBY" | "TALLY.ADD" | "TALLY.ADDGET" | "TALLY.CLEAR",
            _,
        ) => Err(wrong_arity(&name)),
        ("QUIT", _) => Ok(Command::Quit),
        ("MULTI", 0) => Ok(Command::Transaction(TransactionCommand::Multi)),
        ("EXEC", 0) => Ok(Command::Transaction(TransactionCommand::Exec)),
        ("EXEC", _) => Ok(Command::Transaction(TransactionCommand::ExecWithArguments)),
        ("DISCARD", 0) => Ok(Command::Transaction(TransactionCommand::Discard)),
        ("WATCH", 1..) => Ok(Command::Transaction(TransactionCommand::Watch)),
        ("UNWATCH", 0) => Ok(Command::Transaction(TransactionCommand::Unwatch)),
        ("MULTI" | "DISCARD" | "WATCH" | "UNWATCH", _) => Err(wrong_arity(&name)),
        _ => Ok(Command::Other(
            arguments.iter().map(|argument| argument.to_vec()).collect(),
        )),
    };
    built.unwrap_or_else(|command| command)
}

/// Per-connection state.
pub struct Session {
    pub namespace: String,
    pub protocol: Protocol,
    /// The connection's ID, as `HELLO` and `CLIENT ID` report it.
    pub client_id: u64,
    /// The name set with `CLIENT SETNAME` or `HELLO ... SETNAME`.
    pub client_name: Option<Vec<u8>>,
}

/// Executes a command that is not a change.
pub async fn execute_other(
    service: &Service,
    session: &mut Session,
    arguments: &[Vec<u8>],
) -> Reply {
    let mut buffer = [0u8; 16];
    let name = upper_case(&arguments[0], &mut buffer);
    let args = &arguments[1..];
    match (name.as_ref(), args.len()) {
        ("PING", 0) => Reply::Simple("PONG"),
        ("PING", 1) | ("ECHO", 1) => Reply::Bulk(args[0].clone()),
        ("HELLO", _) => connection::hello(session, args),
        ("GET", 1) => get(service, session, &args[0]),
        ("MGET", n) if n >= 1 => {
            Reply::Array(args.iter().map(|key| get(service, session, key)).collect())
        }
        ("EXISTS", n) if n >= 1 => exists(service, session, args),
        ("DEL" | "UNLINK" | "SET" | "GETSET" | "GETDEL", _) => {
            run_key_command(service, session, arguments).await
        }
        ("SELECT", 1) => match parse_delta(&args[0]) {
            Ok(0) => Reply::Simple("OK"),
            Ok(_) => Reply::error("ERR DB index is out of range"),
            Err(_) => Reply::error(NOT_AN_INTEGER),
        },
        ("COMMAND", _) => Reply::Array(Vec::new()),
        ("CONFIG", n) if n >= 1 => connection::config(args),
        ("TYPE", 1) => keyspace::type_of(service, session, &args[0]),
        ("TTL" | "PTTL", 1) => keyspace::time_to_live(service, session, &args[0]),
        // Redis replies 0 when the key has no timeout to remove, and a counter never has one.
        ("PERSIST", 1) => Reply::Integer(0),
        ("EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT", 2..) => Reply::error(format!(
            "ERR {name} is not supported: Tally counters never expire; clear a counter with DEL \
             or TALLY.CLEAR"
        )),
        ("DBSIZE", 0) => keyspace::size(service, session),
        ("SCAN", n) if n >= 1 => keyspace::scan(service, session, args).await,
        ("KEYS", 1) => keyspace::keys(service, session, &args[0]).await,
        ("INFO", _) => info::info(service, session, args),
        ("CLIENT", n) if n >= 1 => connection::client(session, args),
        ("TALLY.NAMESPACE", 1) => match text(&args[0]) {
            Ok(namespace) => match service.get_namespace(&namespace) {
                Ok(_) => {
                    session.namespace = namespace;
                    Reply::Simple("OK")
                }
                Err(error) => reply::service_error(&error),
            },
            Err(reply) => reply,
        },
        (name, _) if OTHER_COMMANDS.contains(&name) => wrong_arity_reply(name),
        _ => unknown_command(arguments),
    }
}

/// The commands that [`execute_other`] implements.
const OTHER_COMMANDS: [&str; 28] = [
    "PING",
    "ECHO",
    "HELLO",
    "GET",
    "MGET",
    "EXISTS",
    "DEL",
    "UNLINK",
    "SET",
    "GETSET",
    "GETDEL",
    "SELECT",
    "COMMAND",
    "CONFIG",
    "TYPE",
    "TTL",
    "PTTL",
    "PERSIST",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "DBSIZE",
    "SCAN",
    "KEYS",
    "INFO",
    "CLIENT",
    "TALLY.NAMESPACE",
];

/// Returns the error for a command sent inside `MULTI` that a transaction does not queue: one
/// that the writer cannot execute in the transaction's order.
pub fn not_queued(arguments: &[Vec<u8>]) -> Reply {
    let mut buffer = [0u8; 16];
    let name = upper_case(&arguments[0], &mut buffer);
    if !OTHER_COMMANDS.contains(&name.as_ref()) {
        return unknown_command(arguments);
    }
    Reply::error(format!(
        "ERR {name} cannot be queued in a transaction: Tally queues only INCR, INCRBY, DECR, \
         DECRBY, TALLY.ADD, TALLY.ADDGET, TALLY.CLEAR, DEL, UNLINK, SET, GETSET, GETDEL, GET, MGET \
         and EXISTS, which the writer executes together"
    ))
}

/// Builds Redis's reply to an unknown command, which echoes the start of each argument.
fn unknown_command(arguments: &[Vec<u8>]) -> Reply {
    let shorten = |argument: &[u8]| {
        String::from_utf8_lossy(argument)
            .chars()
            .take(64)
            .collect::<String>()
    };
    let shown_arguments: String = arguments[1..]
        .iter()
        .map(|argument| format!("'{}' ", shorten(argument)))
        .collect::<String>()
        .chars()
        .take(128)
        .collect();
    Reply::error(format!(
        "ERR unknown command '{}', with args beginning with: {shown_arguments}",
        shorten(&arguments[0])
    ))
}

/// Executes `GET key`: the value as a bulk string, or nil for a key that is not a counter.
pub(super) fn get(service: &Service, session: &Session, key: &[u8]) -> Reply {
    let counter = match text(key) {
        Ok(counter) => counter,
        Err(reply) => return reply,
    };
    value_reply(service.get(&session.namespace, &counter))
}

/// Returns the reply to `GET` of a counter read: its value as a bulk string, or nil for a
/// counter that does not exist.
pub(super) fn value_reply(value: Result<i64, ServiceError>) -> Reply {
    match value {
        Ok(value) => Reply::bulk(value.to_string()),
        Err(ServiceError::CounterNotFound { .. }) => Reply::Nil,
        Err(error) => reply::service_error(&error),
    }
}

fn exists(service: &Service, session: &Session, keys: &[Vec<u8>]) -> Reply {
    let mut count = 0;
    for key in keys {
        match get(service, session, key) {
            Reply::Bulk(_) => count += 1,
            Reply::Nil => {}
            error => return error,
        }
    }
    Reply::Integer(count)
}

/// Executes a command of [`key_commands`] outside a transaction. `DEL` clears each counter
/// that exists and counts them, and a key named twice is cleared and counted once, as Redis
/// deletes it once.
async fn run_key_command(service: &Service, session: &Session, arguments: &[Vec<u8>]) -> Reply {
    match key_commands::parse(arguments) {
        Some(ParsedKeyCommand::Keys(command, keys)) => {
            key_commands::execute(service, session, command, keys).await
        }
        Some(ParsedKeyCommand::Invalid(reply) | ParsedKeyCommand::WrongArity(reply)) => reply,
        None => unknown_command(arguments),
    }
}

/// Returns the reply of `EXISTS` and `DEL`: the number of keys found, or the first error other
/// than "not found".
pub(super) fn count_found(outcomes: impl Iterator<Item = Result<(), ServiceError>>) -> Reply {
    let mut count = 0;
    for outcome in outcomes {
        match outcome {
            Ok(()) => count += 1,
            Err(ServiceError::CounterNotFound { .. }) => {}
            Err(error) => return reply::service_error(&error),
        }
    }
    Reply::Integer(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_case_of_command_names() {
        let mut buffer = [0u8; 16];
        for (name, expected) in [
            (&b"incrby"[..], "INCRBY"),
            (b"Tally.AddGet", "TALLY.ADDGET"),
            (b"", ""),
            (b"sixteen-letters!", "SIXTEEN-LETTERS!"),
            (b"seventeen-letters", "SEVENTEEN-LETTERS"),
            ("straße".as_bytes(), "STRASSE"),
            (b"\xff\xfe", "\u{fffd}\u{fffd}"),
        ] {
            assert_eq!(upper_case(name, &mut buffer), expected, "{name:?}");
        }
    }

    #[test]
    fn lower_case_incr_is_a_change() {
        let command = parse(&[b"incr", b"visits"]);

        match command {
            Command::Change { change, .. } => {
                assert_eq!(change.counter, "visits");
                assert_eq!(change.kind, EventKind::Add { delta: 1 });
            }
            _ => panic!("incr was not parsed as a change"),
        }
    }
}
