//! The Redis protocol front end: RESP2, and RESP3 after `HELLO 3`.
//!
//! Each connection reads into a buffer, parses every whole command in it, and replies to them in
//! order. Consecutive adds and clears in a pipeline go to the writer together, so they share a
//! group commit; any other command waits for the changes before it, so a `GET` after an `INCR`
//! returns the incremented value.
//!
//! `MULTI` and `EXEC` send a transaction's changes and reads to the writer together, which
//! commits the changes in one group commit (see `transaction`). `SET`, `GETSET`, `GETDEL` and
//! `DEL` also run as writer steps (see `key_commands`).
//!
//! When the server stops, each connection replies to the commands its client has already sent
//! (see `crate::server::STOP_QUIET`) and then closes its side, so a client sees end-of-stream
//! after its last reply rather than a reset.

mod commands;
mod connection;
pub mod frame;
mod glob;
mod info;
mod key_commands;
mod keyspace;
mod reply;
mod transaction;

use crate::Service;
use crate::connection_limit::ConnectionLimit;
use crate::server::{STOP_GRACE, STOP_QUIET, STOP_READ_LIMIT, accept_backlog, before_deadline};
use commands::{ChangeReply, Command, Session};
use frame::Parsed;
use reply::{Protocol, Reply};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use transaction::{Step, Transaction};

/// How long a connection may stay silent, with or without a partial command, before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Redis's reply to a connection past `maxclients`, sent before it closes the connection.
const MAX_CLIENTS_REACHED: &[u8] = b"-ERR max number of clients reached\r\n";

/// Limits of each connection and of their number.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a connection may stay silent before it is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; one more gets Redis's "max number of clients reached" error
    /// and is closed.
    pub max_connections: usize,
}

/// Accepts connections until `stop` turns true, then waits for every connection to reply to the
/// commands it has already received (up to `STOP_GRACE`) and returns.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let stopped = crate::server::wait_for_stop(stop.clone());
    tokio::pin!(stopped);
    let mut connections = JoinSet::new();
    let mut limit = ConnectionLimit::new("resp", limits.max_connections);
    let mut spawn_connection =
        |connections: &mut JoinSet<()>, stream: TcpStream, peer: SocketAddr| {
            let Some(permit) = limit.admit() else {
                tokio::spawn(reject_connection(stream));
                return;
            };
            let service = service.clone();
            let stop = stop.clone();
            let idle_timeout = limits.idle_timeout;
            connections.spawn(async move {
                let _permit = permit;
                if let Err(error) = handle_connection(stream, service, idle_timeout, stop).await {
                    debug!(%peer, %error, "RESP connection ended with an error");
                }
            });
        };
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn_connection(&mut connections, stream, peer),
                Err(error) => {
                    warn!(%error, "cannot accept a RESP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    accept_backlog(&listener, |stream, peer| {
        spawn_connection(&mut connections, stream, peer);
    })
    .await;
    drop(listener);
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        warn!(
            num_connections = connections.len(),
            "RESP connections still busy 10 s after shutdown began; closing them"
        );
        connections.shutdown().await;
    }
}

/// Sends Redis's "max number of clients reached" error and closes the connection, then discards
/// what the client still sends for up to [`STOP_LINGER`], so that closing does not reset the
/// connection before the client reads the error.
async fn reject_connection(mut stream: TcpStream) {
    let closed = tokio::time::timeout(STOP_LINGER, async {
        stream.write_all(MAX_CLIENTS_REACHED).await?;
        stream.shutdown().await
    });
    if !matches!(closed.await, Ok(Ok(()))) {
        return;
    }
    let mut discarded = [0u8; 4096];
    let linger_until = Instant::now() + STOP_LINGER;
    while let Some(Ok(1..)) = before_deadline(linger_until, stream.read(&mut discarded)).await {}
}

/// After its last reply, a stopping connection discards what the client still sends for up to
/// this long. Closing a socket with unread input sends a reset, and on a reset the client's
/// system may discard replies that the client has not read yet.
const STOP_LINGER: Duration = Duration::from_millis(500);

async fn handle_connection(
    mut stream: TcpStream,
    service: Service,
    idle_timeout: Duration,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let stopped = crate::server::wait_for_stop(stop);
    tokio::pin!(stopped);
    let mut connection = Connection::new(service);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut stop_deadline: Option<Instant> = None;

    loop {
        let num_read = match stop_deadline {
            None => tokio::select! {
                _ = &mut stopped => {
                    stop_deadline = Some(Instant::now() + STOP_READ_LIMIT);
                    continue;
                }
                read = tokio::time::timeout(idle_timeout, stream.read(&mut chunk)) => match read {
                    Ok(result) => result?,
                    Err(_) => {
                        info!(
                            idle_seconds = idle_timeout.as_secs(),
                            "closing an idle RESP connection"
                        );
                        return Ok(());
                    }
                },
            },
            Some(deadline) => {
                let quiet_until = (Instant::now() + STOP_QUIET).min(deadline);
                match before_deadline(quiet_until, stream.read(&mut chunk)).await {
                    Some(result) => result?,
                    None => {
                        let num_unparsed_bytes = connection.buffer.len();
                        return close_after_stop(stream, &mut chunk, num_unparsed_bytes).await;
                    }
                }
            }
        };
        if num_read == 0 {
            return Ok(());
        }
        let keep_open = connection.receive(&chunk[..num_read]).await;
        stream.write_all(&connection.out).await?;
        connection.out.clear();
        if !keep_open {
            return Ok(());
        }
    }
}

/// Ends a connection whose replies are all written: sends end-of-stream, then discards input
/// until the client closes its side or [`STOP_LINGER`] passes. `num_unparsed_bytes` is the
/// partial command left in the connection's buffer.
async fn close_after_stop(
    mut stream: TcpStream,
    chunk: &mut [u8],
    num_unparsed_bytes: usize,
) -> std::io::Result<()> {
    stream.shutdown().await?;
    let linger_until = Instant::now() + STOP_LINGER;
    let mut num_discarded_bytes = num_unparsed_bytes;
    while let Some(Ok(num_read @ 1..)) = before_deadline(linger_until, stream.read(chunk)).await {
        num_discarded_bytes += num_read;
    }
    if num_discarded_bytes > 0 {
        info!(
            num_discarded_bytes,
            "closed a RESP connection at shutdown; the commands it sent last were not executed \
             and got no reply"
        );
    }
    Ok(())
}

/// The ID of the next connection, unique while the process runs.
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// One connection's state between reads: unparsed input, the session and replies to send.
struct Connection {
    service: Service,
    session: Session,
    buffer: Vec<u8>,
    out: Vec<u8>,
    /// Kept across reads so that a busy connection reuses their memory.
    parsed_commands: Vec<Command>,
    pending: PendingChanges,
    /// The transaction opened by `MULTI`, until `EXEC` or `DISCARD`.
    transaction: Option<Transaction>,
}

impl Connection {
    fn new(service: Service) -> Self {
        Self {
            service,
            session: Session {
                namespace: "default".to_owned(),
                protocol: Protocol::Resp2,
                client_id: NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed),
                client_name: None,
            },
            buffer: Vec::with_capacity(16 * 1024),
            out: Vec::with_capacity(16 * 1024),
            parsed_commands: Vec::new(),
            pending: PendingChanges::default(),
            transaction: None,
        }
    }

    /// Executes every whole command that `input` completes and leaves the replies in `out`.
    /// Returns false when the connection is to close after them (`QUIT` or a protocol error).
    async fn receive(&mut self, input: &[u8]) -> bool {
        self.buffer.extend_from_slice(input);
        let mut consumed_total = 0;
        let mut protocol_error = None;
        // Arguments borrow from the buffer, so a change copies only its counter name.
        let mut arguments = Vec::new();
        loop {
            match frame::parse(&self.buffer[consumed_total..], &mut arguments) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Command { consumed }) => {
                    consumed_total += consumed;
                    if !arguments.is_empty() {
                        self.parsed_commands.push(commands::parse(&arguments));
                    }
                }
                Err(error) => {
                    protocol_error = Some(error);
                    break;
                }
            }
        }
        self.buffer.drain(..consumed_total);

        let quit = execute(
            &self.service,
            &mut self.session,
            self.parsed_commands.drain(..),
            &mut self.pending,
            &mut self.transaction,
            &mut self.out,
        )
        .await;
        if let Some(error) = &protocol_error {
            Reply::error(format!("ERR Protocol error: {}", error.0))
                .write_to(&mut self.out, self.session.protocol);
        }
        !quit && protocol_error.is_none()
    }
}

/// Changes waiting to go to the writer together, with what each one replies.
#[derive(Default)]
struct PendingChanges {
    changes: Vec<crate::service::BatchChange>,
    replies: Vec<ChangeReply>,
}

impl PendingChanges {
    /// Sends the pending changes to the writer as one submission and writes their replies.
    async fn flush(&mut self, service: &Service, session: &Session, out: &mut Vec<u8>) {
        if self.changes.is_empty() {
            return;
        }
        let len = self.changes.len();
        let changes = std::mem::replace(&mut self.changes, Vec::with_capacity(len));
        match service.apply_changes(&session.namespace, changes).await {
            Err(error) => {
                let reply = reply::service_error(&error);
                for _ in &self.replies {
                    reply.write_to(out, session.protocol);
                }
            }
            Ok(outcomes) => {
                for (outcome, reply_with) in outcomes.into_iter().zip(self.replies.drain(..)) {
                    change_reply(outcome, reply_with).write_to(out, session.protocol);
                }
            }
        }
        self.replies.clear();
    }
}

/// Returns the reply to an add or clear: its event ID or the counter's new value, or the
/// error that rejected it.
fn change_reply(
    outcome: Result<crate::writer::ChangeOutcome, crate::ServiceError>,
    reply_with: ChangeReply,
) -> Reply {
    match (outcome, reply_with) {
        (Ok(outcome), ChangeReply::EventId) => Reply::Integer(outcome.event_id as i64),
        (Ok(outcome), ChangeReply::Value) => Reply::Integer(outcome.value),
        (Err(error), _) => reply::service_error(&error),
    }
}

/// Queues or executes a command received while a transaction is open, and writes its reply.
/// Returns true after `QUIT`.
async fn execute_in_transaction(
    service: &Service,
    session: &Session,
    command: Command,
    transaction: &mut Option<Transaction>,
    out: &mut Vec<u8>,
) -> bool {
    let Some(open) = transaction else {
        return false;
    };
    let reply = match open.receive(command) {
        Step::Reply(reply) => reply,
        Step::Exec => {
            let queued = std::mem::take(open);
            *transaction = None;
            queued.exec(service, session).await
        }
        Step::Discard => {
            *transaction = None;
            Reply::Simple("OK")
        }
        Step::Abort => {
            *transaction = None;
            transaction::exec_with_arguments()
        }
        Step::Quit => {
            Reply::Simple("OK").write_to(out, session.protocol);
            return true;
        }
    };
    reply.write_to(out, session.protocol);
    false
}

/// Executes commands in order and writes their replies. Returns true after `QUIT`.
async fn execute(
    service: &Service,
    session: &mut Session,
    parsed: impl Iterator<Item = Command>,
    pending: &mut PendingChanges,
    transaction: &mut Option<Transaction>,
    out: &mut Vec<u8>,
) -> bool {
    for command in parsed {
        if transaction.is_some() {
            if execute_in_transaction(service, session, command, transaction, out).await {
                return true;
            }
            continue;
        }
        if let Command::Change { change, reply_with } = command {
            pending.changes.push(change);
            pending.replies.push(reply_with);
            continue;
        }

        // Any other command keeps its place in the reply order, after the changes before it.
        pending.flush(service, session, out).await;
        match command {
            Command::Invalid(reply) | Command::WrongArity(reply) => {
                reply.write_to(out, session.protocol)
            }
            Command::Transaction(command) => {
                transaction::outside(command, transaction).write_to(out, session.protocol)
            }
            Command::Quit => {
                Reply::Simple("OK").write_to(out, session.protocol);
                return true;
            }
            Command::Other(arguments) => {
                let reply = commands::execute_other(service, session, &arguments).await;
                reply.write_to(out, session.protocol);
            }
            Command::Change { .. } => {}
        }
    }
    pending.flush(service, session, out).await;
    false
}
