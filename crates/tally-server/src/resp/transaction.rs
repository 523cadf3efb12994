//! `MULTI`, `EXEC`, `DISCARD`, `WATCH` and `UNWATCH`.
//!
//! A transaction queues adds, clears and the commands of `key_commands` (`GET`, `DEL`, `SET` and
//! others), and `EXEC` sends them to the writer as one submission. The writer never splits a
//! submission, so the changes share one group commit, which the store writes as one atomic batch:
//! after a crash the log contains all of them or none. The writer executes the steps in order with
//! no change of another client in between, so a read returns the value after the steps before it,
//! as in Redis. Each change still succeeds or fails on its own (an add that would overflow fails
//! and the others apply), and a command rejected while it is queued discards the whole transaction.
//! Tally has no check-and-set, so `WATCH` fails.

use super::commands::{ChangeReply, Command, Session, TransactionCommand, not_queued};
use super::key_commands::{self, KeyCommand, ParsedKeyCommand, next_outcome};
use super::reply::Reply;
use crate::Service;
use crate::service::Step as ServiceStep;

/// Maximum number of commands that one transaction queues. A client that sends more gets an
/// error, and `EXEC` then discards the transaction.
pub const MAX_QUEUED_COMMANDS: usize = 100_000;

/// An open transaction: the commands queued since `MULTI`.
#[derive(Default)]
pub struct Transaction {
    /// The steps for the writer (changes, reads and clears of existing counters), in order.
    steps: Vec<ServiceStep>,
    /// One entry per queued command, in order.
    entries: Vec<Entry>,
    /// Set by a command rejected while queueing; `EXEC` then applies nothing.
    discarded: bool,
}

/// The reply of a queued command at `EXEC`.
enum Entry {
    /// The outcome of the next step in [`Transaction::steps`].
    Change(ChangeReply),
    /// The outcomes of the next `num_steps` steps.
    Keys {
        command: KeyCommand,
        num_steps: usize,
    },
    /// A reply known when the command was queued.
    Known(Reply),
}

/// The next step of the connection for a command received inside a transaction.
pub enum Step {
    /// Write this reply and go on.
    Reply(Reply),
    Exec,
    Discard,
    /// Discard the transaction and reply with [`exec_with_arguments`].
    Abort,
    Quit,
}

impl Transaction {
    /// Queues a command of the open transaction, or returns the step that the command requests.
    pub fn receive(&mut self, command: Command) -> Step {
        let transaction_command = match command {
            Command::Change { change, reply_with } => {
                return self.queue(Entry::Change(reply_with), vec![ServiceStep::Change(change)]);
            }
            Command::Invalid(reply) => return self.queue(Entry::Known(reply), Vec::new()),
            Command::WrongArity(reply) => return self.discard_with(reply),
            Command::Other(arguments) => return self.receive_other(&arguments),
            Command::Quit => return Step::Quit,
            Command::Transaction(transaction_command) => transaction_command,
        };
        match transaction_command {
            TransactionCommand::Exec => Step::Exec,
            TransactionCommand::Discard => Step::Discard,
            TransactionCommand::ExecWithArguments => Step::Abort,
            TransactionCommand::Unwatch => {
                self.queue(Entry::Known(Reply::Simple("OK")), Vec::new())
            }
            TransactionCommand::Multi => {
                Step::Reply(Reply::error("ERR MULTI calls can not be nested"))
            }
            TransactionCommand::Watch => {
                Step::Reply(Reply::error("ERR WATCH inside MULTI is not allowed"))
            }
        }
    }

    /// Queues a command of `key_commands`, or rejects any other command that is not a change.
    fn receive_other(&mut self, arguments: &[Vec<u8>]) -> Step {
        match key_commands::parse(arguments) {
            Some(ParsedKeyCommand::Keys(command, keys)) => {
                let steps = command.steps(keys);
                let entry = Entry::Keys {
                    command,
                    num_steps: steps.len(),
                };
                self.queue(entry, steps)
            }
            Some(ParsedKeyCommand::Invalid(reply)) => self.queue(Entry::Known(reply), Vec::new()),
            Some(ParsedKeyCommand::WrongArity(reply)) => self.discard_with(reply),
            None => self.discard_with(not_queued(arguments)),
        }
    }

    fn queue(&mut self, entry: Entry, steps: Vec<ServiceStep>) -> Step {
        if self.entries.len() == MAX_QUEUED_COMMANDS {
            return self.discard_with(Reply::error(format!(
                "ERR a transaction queues at most {MAX_QUEUED_COMMANDS} commands"
            )));
        }
        self.entries.push(entry);
        self.steps.extend(steps);
        Step::Reply(Reply::Simple("QUEUED"))
    }

    fn discard_with(&mut self, reply: Reply) -> Step {
        self.discarded = true;
        Step::Reply(reply)
    }

    /// Executes the queued steps together and returns the reply of every queued command.
    pub async fn exec(self, service: &Service, session: &Session) -> Reply {
        if self.discarded {
            return Reply::error("EXECABORT Transaction discarded because of previous errors.");
        }
        let num_steps = self.steps.len();
        let outcomes = if num_steps == 0 {
            Vec::new()
        } else {
            match service.apply_steps(&session.namespace, self.steps).await {
                Ok(outcomes) => outcomes,
                Err(error) => vec![Err(error); num_steps],
            }
        };

        let mut outcomes = outcomes.into_iter();
        let replies = self
            .entries
            .into_iter()
            .map(|entry| match entry {
                Entry::Known(reply) => reply,
                Entry::Change(reply_with) => {
                    super::change_reply(next_outcome(&mut outcomes), reply_with)
                }
                Entry::Keys { command, num_steps } => {
                    command.reply((0..num_steps).map(|_| next_outcome(&mut outcomes)))
                }
            })
            .collect();
        Reply::Array(replies)
    }
}

/// Returns Redis's reply to `EXEC` with arguments, inside a transaction or not.
pub fn exec_with_arguments() -> Reply {
    Reply::error(
        "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command",
    )
}

/// Executes a transaction command sent outside a transaction: `MULTI` opens one in
/// `transaction`.
pub fn outside(command: TransactionCommand, transaction: &mut Option<Transaction>) -> Reply {
    match command {
        TransactionCommand::Multi => {
            *transaction = Some(Transaction::default());
            Reply::Simple("OK")
        }
        TransactionCommand::Exec => Reply::error("ERR EXEC without MULTI"),
        TransactionCommand::ExecWithArguments => exec_with_arguments(),
        TransactionCommand::Discard => Reply::error("ERR DISCARD without MULTI"),
        TransactionCommand::Watch => Reply::error(
            "ERR WATCH is not supported, because Tally has no check-and-set. MULTI and EXEC \
             commit adds and clears together without it",
        ),
        TransactionCommand::Unwatch => Reply::Simple("OK"),
    }
}
