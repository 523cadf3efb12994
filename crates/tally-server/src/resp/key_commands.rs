//! Commands on keys that run as steps of one writer submission: `GET`, `MGET` and `EXISTS`
//! inside `MULTI`, and `DEL`, `UNLINK`, `SET`, `GETSET` and `GETDEL` everywhere.
//!
//! The writer executes a submission's steps in order with no other client's change in between.
//! So a read inside a transaction returns the value at its place in it, and `SET key 5`, which
//! clears the counter and then adds 5, can never leave another value.

use super::commands::{Session, count_found, text, value_reply, wrong_arity_reply};
use super::reply::{self, NOT_AN_INTEGER, Reply};
use crate::service::{BatchChange, Step};
use crate::writer::ChangeOutcome;
use crate::{Service, ServiceError};
use tally_core::{EventKind, parse_delta};

/// A command on keys, other than a plain change, that runs as writer steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCommand {
    Get,
    MGet,
    Exists,
    /// `DEL` or `UNLINK`.
    Delete,
    /// `SET key value [GET]` and `GETSET key value`: clear the counter, then add `value`.
    /// With `get`, the reply is the value before.
    Set {
        value: i64,
        get: bool,
    },
    /// `GETDEL key`: the value, then a clear.
    GetDel,
}

/// A command on keys, parsed.
pub enum ParsedKeyCommand {
    /// The command and its keys. A `DEL` names each key once.
    Keys(KeyCommand, Vec<String>),
    /// An invalid argument: inside `MULTI` the command fails at `EXEC`, as in Redis.
    Invalid(Reply),
    /// The wrong number of arguments: inside `MULTI` the transaction is discarded, as in Redis.
    WrongArity(Reply),
}

pub(super) type Outcome = Result<ChangeOutcome, ServiceError>;

/// Parses a command on keys. Returns `None` for any other command.
pub fn parse(arguments: &[Vec<u8>]) -> Option<ParsedKeyCommand> {
    let mut buffer = [0u8; 16];
    let name = super::commands::upper_case(&arguments[0], &mut buffer);
    let args = &arguments[1..];
    let wrong_arity = || Some(ParsedKeyCommand::WrongArity(wrong_arity_reply(&name)));
    let (command, keys) = match (name.as_ref(), args.len()) {
        ("GET", 1) => (KeyCommand::Get, args),
        ("MGET", 1..) => (KeyCommand::MGet, args),
        ("EXISTS", 1..) => (KeyCommand::Exists, args),
        ("DEL" | "UNLINK", 1..) => (KeyCommand::Delete, args),
        ("GETDEL", 1) => (KeyCommand::GetDel, args),
        ("SET", 2..) => match set_options(&args[1], &args[2..]) {
            Ok(command) => (command, &args[..1]),
            Err(reply) => return Some(ParsedKeyCommand::Invalid(reply)),
        },
        ("GETSET", 2) => match parse_delta(&args[1]) {
            Ok(value) => (KeyCommand::Set { value, get: true }, &args[..1]),
            Err(_) => return Some(ParsedKeyCommand::Invalid(Reply::error(NOT_AN_INTEGER))),
        },
        ("GET" | "MGET" | "EXISTS" | "DEL" | "UNLINK" | "GETDEL" | "SET" | "GETSET", _) => {
            return wrong_arity();
        }
        _ => return None,
    };
    let keys = match command {
        KeyCommand::Delete => distinct_keys(keys),
        _ => keys.iter().map(|key| text(key)).collect(),
    };
    Some(match keys {
        Ok(keys) => ParsedKeyCommand::Keys(command, keys),
        Err(reply) => ParsedKeyCommand::Invalid(reply),
    })
}

/// Reads the value and options of `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT time|KEEPTTL]`.
/// The options are checked first with Redis's syntax rules, so a malformed command gets
/// Redis's `syntax error`. Then the options that a counter cannot honour are rejected: it has
/// no timeout (`KEEPTTL` changes nothing) and no conditional set.
fn set_options(value: &[u8], options: &[Vec<u8>]) -> Result<KeyCommand, Reply> {
    let mut get = false;
    let mut condition: Option<String> = None;
    let mut timeout: Option<String> = None;
    let mut keep_ttl = false;
    let mut remaining = options.iter();
    while let Some(option) = remaining.next() {
        let name = String::from_utf8_lossy(option).to_ascii_uppercase();
        match name.as_str() {
            "GET" => get = true,
            "NX" | "XX" if condition.as_ref().is_none_or(|seen| *seen == name) => {
                condition = Some(name);
            }
            "KEEPTTL" if timeout.is_none() => keep_ttl = true,
            "EX" | "PX" | "EXAT" | "PXAT" if timeout.is_none() && !keep_ttl => {
                if remaining.next().is_none() {
                    return Err(Reply::error("ERR syntax error"));
                }
                timeout = Some(name);
            }
            _ => return Err(Reply::error("ERR syntax error")),
        }
    }
    if let Some(timeout) = timeout {
        return Err(Reply::error(format!(
            "ERR SET {timeout} is not supported: Tally counters never expire"
        )));
    }
    if let Some(condition) = condition {
        return Err(Reply::error(format!(
            "ERR SET {condition} is not supported: Tally has no conditional set"
        )));
    }
    let Ok(value) = parse_delta(value) else {
        return Err(Reply::error(NOT_AN_INTEGER));
    };
    Ok(KeyCommand::Set { value, get })
}

/// Returns the keys of a `DEL` as counter names, each once: Redis deletes a key named twice
/// once, and counts it once.
fn distinct_keys(keys: &[Vec<u8>]) -> Result<Vec<String>, Reply> {
    let mut names: Vec<String> = Vec::with_capacity(keys.len());
    for key in keys {
        let name = text(key)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

impl KeyCommand {
    /// Returns the writer steps of the command on `keys`.
    pub fn steps(self, keys: Vec<String>) -> Vec<Step> {
        match self {
            KeyCommand::Get | KeyCommand::MGet | KeyCommand::Exists => {
                keys.into_iter().map(Step::Read).collect()
            }
            KeyCommand::Delete => keys.into_iter().map(Step::ClearIfExists).collect(),
            KeyCommand::GetDel => keys
                .into_iter()
                .flat_map(|key| [Step::Read(key.clone()), Step::ClearIfExists(key)])
                .collect(),
            KeyCommand::Set { value, get } => keys
                .into_iter()
                .flat_map(|key| {
                    let read = get.then(|| Step::Read(key.clone()));
                    let add = Step::Change(BatchChange {
                        counter: key.clone(),
                        kind: EventKind::Add { delta: value },
                        token: None,
                    });
                    read.into_iter().chain([Step::ClearIfExists(key), add])
                })
                .collect(),
        }
    }

    /// Builds the reply from the outcomes of the command's steps, in order.
    pub fn reply(self, mut outcomes: impl Iterator<Item = Outcome>) -> Reply {
        let value = |outcome: Outcome| value_reply(outcome.map(|outcome| outcome.value));
        match self {
            KeyCommand::Get => value(next_outcome(&mut outcomes)),
            KeyCommand::MGet => Reply::Array(outcomes.map(value).collect()),
            KeyCommand::Exists | KeyCommand::Delete => {
                count_found(outcomes.map(|outcome| outcome.map(|_| ())))
            }
            KeyCommand::GetDel => {
                let before = value(next_outcome(&mut outcomes));
                first_error([next_outcome(&mut outcomes)]).unwrap_or(before)
            }
            KeyCommand::Set { get, .. } => {
                let before = get.then(|| value(next_outcome(&mut outcomes)));
                let written = [next_outcome(&mut outcomes), next_outcome(&mut outcomes)];
                first_error(written).unwrap_or(before.unwrap_or(Reply::Simple("OK")))
            }
        }
    }
}

/// Returns the next outcome, or an error if the writer returned fewer than the steps.
pub(super) fn next_outcome(outcomes: &mut impl Iterator<Item = Outcome>) -> Outcome {
    outcomes.next().unwrap_or_else(|| {
        Err(ServiceError::Unavailable(
            "the writer returned fewer outcomes than steps".into(),
        ))
    })
}

/// Returns the reply to the first failed step, where a clear of a missing counter does not
/// count as failed.
fn first_error(outcomes: impl IntoIterator<Item = Outcome>) -> Option<Reply> {
    outcomes.into_iter().find_map(|outcome| match outcome {
        Ok(_) | Err(ServiceError::CounterNotFound { .. }) => None,
        Err(error) => Some(reply::service_error(&error)),
    })
}

/// Executes a command on keys outside a transaction, as one writer submission.
pub async fn execute(
    service: &Service,
    session: &Session,
    command: KeyCommand,
    keys: Vec<String>,
) -> Reply {
    let steps = command.steps(keys);
    let num_steps = steps.len();
    match service.apply_steps(&session.namespace, steps).await {
        Ok(outcomes) => command.reply(outcomes.into_iter()),
        Err(error) => command.reply(std::iter::repeat_n(Err(error), num_steps)),
    }
}
