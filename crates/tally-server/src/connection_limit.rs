//! A cap on the connections that one front end keeps open at once, so that a flood of
//! connections cannot grow the server's memory without bound. Each front end refuses a
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

/// How long a connection refused at the HTTP or gRPC connection limit may take to send its
/// requests and read the refusals.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Refusals are logged at most this often, so that a flood of connections does not flood the
/// log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The open connections of one front end, up to a maximum.
pub struct ConnectionLimit {
    front_end: &'static str,
    max_connections: usize,
    permits: Arc<Semaphore>,
    num_refused_since_log: u64,
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
            num_refused_since_log: 0,
            logged_at: None,
        }
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Admits a new connection, which stays counted until the returned permit is dropped.
    /// Returns `None`, and counts a refusal, when the front end has its maximum open.
    pub fn admit(&mut self) -> Option<OwnedSemaphorePermit> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                self.record_refusal();
                None
            }
        }
    }

    fn record_refusal(&mut self) {
        self.num_refused_since_log += 1;
        let now = Instant::now();
        if self
            .logged_at
            .is_some_and(|logged_at| now - logged_at < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        warn!(
            front_end = self.front_end,
            num_refused = self.num_refused_since_log,
            max_connections = self.max_connections,
            "refused connections because the front end has its maximum open; raise the limit \
             if the clients are expected"
        );
        self.num_refused_since_log = 0;
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
pub(crate) async fn refuse_http(stream: TcpStream, max_connections: usize) {
    serve_refusal(stream, move || {
        crate::http::too_many_connections(max_connections)
    })
    .await;
}

/// Replies `RESOURCE_EXHAUSTED`, as for a full write queue, to the requests of a connection past
/// the gRPC connection limit until [`REFUSAL_TIMEOUT`] passes.
pub(crate) async fn refuse_grpc(stream: TcpStream, max_connections: usize) {
    serve_refusal(stream, move || {
        tonic::Status::resource_exhausted(format!(
            "server overloaded: {max_connections} gRPC connections are open, the maximum; retry \
             later or reuse a connection"
        ))
        .into_http::<axum::body::Body>()
    })
    .await;
}

/// Serves `respond()` to every request of a refused connection, over HTTP/1 (one request, then
/// close) or HTTP/2, for at most [`REFUSAL_TIMEOUT`].
async fn serve_refusal(
    stream: TcpStream,
    respond: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
) {
    let refuse = tower::service_fn(move |_request| {
        let response = respond();
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().keep_alive(false);
    let connection = builder.serve_connection(
        hyper_util::rt::TokioIo::new(stream),
        hyper_util::service::TowerToHyperService::new(refuse),
    );
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, connection).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_maximum() {
        let mut limit = ConnectionLimit::new("test", 2);
        let first = limit.admit();
        let second = limit.admit();
        assert!(first.is_some(), "the first connection was refused");
        assert!(second.is_some(), "the second connection was refused");
        assert!(limit.admit().is_none(), "a third connection was admitted");

        drop(first);
        assert!(limit.admit().is_some(), "a closed connection left no room");
    }
}
