//! The Redis protocol (RESP2) front end.
//!
//! Each connection reads into a buffer, parses every whole command in it, and replies to them in
//! order. Consecutive adds and clears in a pipeline go to the writer together, so they share a
//! group commit; any other command waits for the changes before it, so a `GET` after an `INCR`
//! returns the incremented value.

mod commands;
pub mod frame;
mod reply;

use crate::Service;
use commands::{ChangeReply, Command, Session};
use frame::Parsed;
use reply::Reply;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How long a connection may stay silent, with or without a partial command, before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Accepts connections until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    idle_timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    let connection_stop = stop.clone();
    let stopped = crate::server::wait_for_stop(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let service = service.clone();
                    let stop = connection_stop.clone();
                    tokio::spawn(async move {
                        if let Err(error) = handle_connection(stream, service, idle_timeout, stop).await {
                            debug!(%peer, %error, "RESP connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    warn!(%error, "cannot accept a RESP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn handle_connection(
    mut stream: TcpStream,
    service: Service,
    idle_timeout: Duration,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let stopped = crate::server::wait_for_stop(stop);
    tokio::pin!(stopped);
    stream.set_nodelay(true)?;
    let mut session = Session {
        namespace: "default".to_owned(),
    };
    let mut buffer: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    // Kept across reads so that a busy connection reuses their memory.
    let mut parsed_commands = Vec::new();
    let mut pending = PendingChanges::default();

    loop {
        let read = tokio::select! {
            _ = &mut stopped => return Ok(()),
            read = tokio::time::timeout(idle_timeout, stream.read(&mut chunk)) => read,
        };
        let num_read = match read {
            Err(_) => {
                info!(
                    idle_seconds = idle_timeout.as_secs(),
                    "closing an idle RESP connection"
                );
                return Ok(());
            }
            Ok(result) => result?,
        };
        if num_read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..num_read]);

        // Parse every whole command in the buffer.
        let mut consumed_total = 0;
        let mut protocol_error = None;
        loop {
            match frame::parse(&buffer[consumed_total..]) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Command {
                    arguments,
                    consumed,
                }) => {
                    consumed_total += consumed;
                    if !arguments.is_empty() {
                        parsed_commands.push(commands::parse(arguments));
                    }
                }
                Err(error) => {
                    protocol_error = Some(error);
                    break;
                }
            }
        }
        buffer.drain(..consumed_total);

        let quit = execute(
            &service,
            &mut session,
            parsed_commands.drain(..),
            &mut pending,
            &mut out,
        )
        .await;
        if let Some(error) = &protocol_error {
            Reply::error(format!("ERR Protocol error: {}", error.0)).write_to(&mut out);
        }
        stream.write_all(&out).await?;
        out.clear();
        if quit || protocol_error.is_some() {
            return Ok(());
        }
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
                    reply.write_to(out);
                }
            }
            Ok(outcomes) => {
                for (outcome, reply_with) in outcomes.into_iter().zip(self.replies.drain(..)) {
                    let reply = match (outcome, reply_with) {
                        (Ok(outcome), ChangeReply::EventId) => {
                            Reply::Integer(outcome.event_id as i64)
                        }
                        (Ok(outcome), ChangeReply::Value) => Reply::Integer(outcome.value),
                        (Err(error), _) => reply::service_error(&error),
                    };
                    reply.write_to(out);
                }
            }
        }
        self.replies.clear();
    }
}

/// Executes commands in order and writes their replies. Returns true after `QUIT`.
async fn execute(
    service: &Service,
    session: &mut Session,
    parsed: impl Iterator<Item = Command>,
    pending: &mut PendingChanges,
    out: &mut Vec<u8>,
) -> bool {
    for command in parsed {
        if let Command::Change { change, reply_with } = command {
            pending.changes.push(change);
            pending.replies.push(reply_with);
            continue;
        }

        // Any other command keeps its place in the reply order, after the changes before it.
        pending.flush(service, session, out).await;
        match command {
            Command::Invalid(reply) => reply.write_to(out),
            Command::Quit => {
                Reply::Simple("OK").write_to(out);
                return true;
            }
            Command::Other(arguments) => commands::execute_other(service, session, &arguments)
                .await
                .write_to(out),
            Command::Change { .. } => {}
        }
    }
    pending.flush(service, session, out).await;
    false
}
