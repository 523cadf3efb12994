//! A cap on the connections that one front end keeps open at once, so that a flood of
//! connections cannot grow the server's memory without bound. Each front end rejects a
//! connection past its cap in its own protocol and closes it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::warn;

/// Default number of connections that each front end keeps open at once, the same as Redis's
/// default `maxclients`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// How long a connection rejected at the HTTP or gRPC connection limit may take to send its
/// requests and read the rejections.
const REJECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Rejections are logged at most this often, so that a flood of connections does not flood the
/// log.
const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The open connections of one front end, up to a maximum.
pub struct ConnectionLimit {
    front_end: &'static str,
    max_connections: usize,
    permits: Arc<Semaphore>,
    num_rejected_since_log: u64,
    logged_at: Option<Instant>,
}

impl ConnectionLimit {
    /// Creates a limit of `max_connections` (at least 1) for the front end that logs name
    /// `front_end`.
    pub fn new(front_end: &'static str, max_connections: usize) -> Self {
        let max_connections = max_connections.max(1);
        Self {
            front_end,
            max_connections,
            permits: Arc::new(Semaphore::new(max_connections)),
            num_rejected_since_log: 0,
            logged_at: None,
        }
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Admits a new connection, which stays counted until the returned permit is dropped.
    /// Returns `None`, and counts a rejection, when the front end has its maximum open.
    pub fn admit(&mut self) -> Option<OwnedSemaphorePermit> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                self.record_rejection();
                None
            }
        }
    }

    fn record_rejection(&mut self) {
        self.num_rejected_since_log += 1;
        let now = Instant::now();
        if self
            .logged_at
            .is_some_and(|logged_at| now - logged_at < REJECTION_LOG_INTERVAL)
        {
            return;
        }
        warn!(
            front_end = self.front_end,
            num_rejected = self.num_rejected_since_log,
            max_connections = self.max_connections,
            "rejected connections because the front end has its maximum open; raise \
             --max-connections if the clients are expected"
        );
        self.num_rejected_since_log = 0;
        self.logged_at = Some(now);
    }
}

/// A TCP connection that keeps its place under a [`ConnectionLimit`] until it is dropped.
pub struct AdmittedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AdmittedStream {
    pub fn new(stream: TcpStream, permit: OwnedSemaphorePermit) -> Self {
        Self {
            stream,
            _permit: permit,
        }
    }
}

impl AsyncRead for AdmittedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for AdmittedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(context, buffer)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}

impl tonic::transport::server::Connected for AdmittedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// Replies 429 to one request on a connection past the HTTP connection limit and closes it.
pub(crate) async fn reject_http(stream: TcpStream, max_connections: usize) {
    serve_rejection(stream, move || {
        crate::http::too_many_connections(max_connections)
    })
    .await;
}

/// Replies `RESOURCE_EXHAUSTED`, as for a full write queue, to the requests of a connection past
/// the gRPC connection limit until [`REJECTION_TIMEOUT`] passes.
pub(crate) async fn reject_grpc(stream: TcpStream, max_connections: usize) {
    serve_rejection(stream, move || {
        tonic::Status::resource_exhausted(format!(
            "server overloaded: {max_connections} gRPC connections are open, the maximum. Retry \
             later or reuse a connection"
        ))
        .into_http::<axum::body::Body>()
    })
    .await;
}

/// Serves `respond()` to every request of a rejected connection, over HTTP/1 (one request, then
/// close) or HTTP/2, for at most [`REJECTION_TIMEOUT`].
async fn serve_rejection(
    stream: TcpStream,
    respond: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
) {
    let reject = tower::service_fn(move |_request| {
        let response = respond();
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().keep_alive(false);
    let connection = builder.serve_connection(
        hyper_util::rt::TokioIo::new(stream),
        hyper_util::service::TowerToHyperService::new(reject),
    );
    let _ = tokio::time::timeout(REJECTION_TIMEOUT, connection).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_maximum() {
        let mut limit = ConnectionLimit::new("test", 2);
        let first = limit.admit();
        let second = limit.admit();
        assert!(first.is_some(), "the first connection was rejected");
        assert!(second.is_some(), "the second connection was rejected");
        assert!(limit.admit().is_none(), "a third connection was admitted");

        drop(first);
        assert!(limit.admit().is_some(), "a closed connection left no room");
    }
}
