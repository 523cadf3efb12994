//! `tally serve`: opens the store, recovers, serves HTTP and gRPC, rolls up in the background,
//! and shuts down cleanly.

use crate::Service;
use crate::clock::SystemClock;
use crate::connection_limit::{AdmittedStream, ConnectionLimit, reject_grpc, reject_http};
use crate::grpc::GrpcService;
use crate::service::DEFAULT_WRITE_QUEUE_CAPACITY;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tally_storage::{Durability, EmbeddedStore, EventStore, FaultInjection, StorageError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Everything `tally serve` needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    /// Address of the Redis protocol front end; `None` turns it off.
    pub resp_listen: Option<SocketAddr>,
    /// How long a Redis protocol connection may stay silent before it is closed.
    pub resp_idle_timeout: Duration,
    /// Connections that each front end keeps open at once.
    pub max_connections: usize,
    pub durability: Durability,
    /// How often the background rollup runs.
    pub rollup_interval: Duration,
    /// How often expired tokens are removed (a full pass over the token index).
    pub token_expiry_interval: Duration,
    pub write_queue_capacity: usize,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, http_listen: SocketAddr, grpc_listen: SocketAddr) -> Self {
        Self {
            data_dir,
            http_listen,
            grpc_listen,
            resp_listen: None,
            resp_idle_timeout: crate::resp::DEFAULT_IDLE_TIMEOUT,
            max_connections: crate::connection_limit::DEFAULT_MAX_CONNECTIONS,
            durability: Durability::Sync,
            rollup_interval: Duration::from_secs(5),
            token_expiry_interval: Duration::from_secs(600),
            write_queue_capacity: DEFAULT_WRITE_QUEUE_CAPACITY,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Service(#[from] crate::ServiceError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn open_store(config: &ServerConfig) -> Result<Arc<dyn EventStore>, StorageError> {
    let store = EmbeddedStore::open(&config.data_dir, config.durability)?;
    match std::env::var_os("TALLY_FAULT_FILE") {
        Some(control_file) => {
            warn!(control_file = ?control_file, "fault injection is on: appends fail while the file says \"append\"");
            Ok(Arc::new(FaultInjection::new(store, control_file.into())))
        }
        None => Ok(Arc::new(store)),
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })
}

/// Runs the server until `shutdown` completes, then stops accepting, finishes and syncs
/// pending writes, writes checkpoints and returns.
///
/// Once every listener is bound it prints `listening http=ADDR grpc=ADDR [resp=ADDR]` on
/// standard output, so scripts and tests that asked for port 0 can read the ports.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    crate::allocator::tune_for_server();
    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_store(&config))
            .await
            .map_err(|error| ServeError::Io(std::io::Error::other(error)))??
    };
    let (service, writer_thread) = {
        let store = Arc::clone(&store);
        let capacity = config.write_queue_capacity;
        tokio::task::spawn_blocking(move || Service::open(store, Arc::new(SystemClock), capacity))
            .await
            .map_err(|error| ServeError::Io(std::io::Error::other(error)))??
    };

    let http_listener = bind(config.http_listen).await?;
    let grpc_listener = bind(config.grpc_listen).await?;
    let resp_listener = match config.resp_listen {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let http_address = http_listener.local_addr()?;
    let grpc_address = grpc_listener.local_addr()?;
    let resp_address = match &resp_listener {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    match resp_address {
        Some(resp_address) => {
            println!("listening http={http_address} grpc={grpc_address} resp={resp_address}")
        }
        None => println!("listening http={http_address} grpc={grpc_address}"),
    }
    info!(%http_address, %grpc_address, resp_address = ?resp_address, data_dir = %config.data_dir.display(), "tally is serving");

    let (stop_sender, stop_receiver) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        info!("shutdown requested: no longer accepting requests");
        let _ = stop_sender.send(true);
    });

    let rollup_task = tokio::spawn(rollup_loop(
        service.clone(),
        config.clone(),
        stop_receiver.clone(),
    ));
    let http_task = tokio::spawn(serve_http(
        http_listener,
        service.clone(),
        config.max_connections,
        stop_receiver.clone(),
    ));
    let grpc_task = tokio::spawn(serve_grpc(
        grpc_listener,
        service.clone(),
        config.max_connections,
        stop_receiver.clone(),
    ));
    let resp_task = resp_listener.map(|listener| {
        let limits = crate::resp::Limits {
            idle_timeout: config.resp_idle_timeout,
            max_connections: config.max_connections,
        };
        tokio::spawn(crate::resp::serve(
            listener,
            service.clone(),
            limits,
            stop_receiver,
        ))
    });

    let http_result = http_task.await;
    let grpc_result = grpc_task.await;
    let _ = rollup_task.await;
    if let Some(task) = resp_task {
        let _ = task.await;
    }
    log_task_result("http", http_result);
    log_task_result("grpc", grpc_result);

    // The front ends have finished every request; write checkpoints of what is sealed.
    match service.roll_up_now().await {
        Ok(report) => info!(
            num_checkpoints = report.num_checkpoints,
            "final rollup done"
        ),
        Err(error) => warn!(%error, "final rollup failed; the next start replays the tail instead"),
    }
    let sync_result = service.sync();
    drop(service);
    wait_for_writer(writer_thread).await;
    sync_result?;
    close_store(store).await;
    info!("tally stopped");
    Ok(())
}

/// Lets the store prepare a quick next start. Every acknowledged write is durable already, so
/// a failure here only makes the next start slower.
async fn close_store(store: Arc<dyn EventStore>) {
    let result = match tokio::task::spawn_blocking(move || store.close()).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = result {
        warn!(%error, "closing the store failed; the next start replays the journal");
    }
}

/// Waits up to [`WRITER_STOP_TIMEOUT`] for the writer thread to end. Past that, the server
/// exits without it: every write it acknowledged is already durable, and a write it has not
/// acknowledged may be lost or kept, as after `kill -9`.
async fn wait_for_writer(writer_thread: std::thread::JoinHandle<()>) {
    let deadline = tokio::time::Instant::now() + WRITER_STOP_TIMEOUT;
    while !writer_thread.is_finished() {
        if tokio::time::Instant::now() >= deadline {
            warn!(
                timeout_seconds = WRITER_STOP_TIMEOUT.as_secs(),
                "connections that outlived the shutdown still use the writer; exiting without \
                 waiting for it"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if writer_thread.join().is_err() {
        error!("the writer thread panicked");
    }
}

fn log_task_result(
    front_end: &str,
    result: Result<Result<(), ServeError>, tokio::task::JoinError>,
) {
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => error!(front_end, %error, "front end failed"),
        Err(error) => error!(front_end, %error, "front end task failed"),
    }
}

/// How long the connections of a front end may take, once a stop begins, to finish the requests
/// they have received. After that the front end returns without them, and they end when the
/// server exits.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a stop waits for the writer thread once the front ends have returned. The writer
/// ends when no connection uses the service any more, and a connection that outlived
/// [`STOP_GRACE`] may still use it until the runtime shuts down.
const WRITER_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Once a stop begins, a front end keeps accepting connections and reading requests until its
/// clients have been silent this long. Requests already sent (in a socket, in a listener's
/// backlog or on the way) then get responses rather than a closed connection.
pub(crate) const STOP_QUIET: Duration = Duration::from_millis(50);

/// A front end accepts and reads for at most this long after a stop begins, even when its
/// clients never go silent.
pub(crate) const STOP_READ_LIMIT: Duration = Duration::from_secs(2);

/// Accepts the connections waiting in the listener's backlog until none arrives for
/// [`STOP_QUIET`] or [`STOP_READ_LIMIT`] passes. Their clients may already have sent requests,
/// and closing a listener resets the connections in its backlog.
pub(crate) async fn accept_backlog(
    listener: &TcpListener,
    mut serve: impl FnMut(TcpStream, SocketAddr),
) {
    let accept_until = tokio::time::Instant::now() + STOP_READ_LIMIT;
    loop {
        let quiet_until = (tokio::time::Instant::now() + STOP_QUIET).min(accept_until);
        match before_deadline(quiet_until, listener.accept()).await {
            Some(Ok((stream, peer))) => serve(stream, peer),
            Some(Err(error)) => {
                warn!(%error, "cannot accept a connection after the stop began");
                return;
            }
            None => return,
        }
    }
}

/// Hands each accepted connection to `serve` until the stop begins, then accepts the backlog
/// (see [`accept_backlog`]) and closes the listener.
pub(crate) async fn accept_until_stop(
    listener: TcpListener,
    front_end: &'static str,
    stop: watch::Receiver<bool>,
    mut serve: impl FnMut(TcpStream, SocketAddr),
) {
    let stopped = wait_for_stop(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serve(stream, peer),
                Err(error) => {
                    warn!(front_end, %error, "failed to accept a connection; retrying in 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    accept_backlog(&listener, serve).await;
}

/// Returns the output of `future` if it completes before `deadline`, and `None` otherwise.
/// `tokio::time::timeout_at` alone polls the future before it looks at the deadline, so a
/// future that is always ready, such as a read from a client that never pauses, would never
/// time out.
pub(crate) async fn before_deadline<F: Future>(
    deadline: tokio::time::Instant,
    future: F,
) -> Option<F::Output> {
    if tokio::time::Instant::now() >= deadline {
        return None;
    }
    tokio::time::timeout_at(deadline, future).await.ok()
}

pub(crate) async fn wait_for_stop(mut stop: watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Largest HTTP/1 request head read into memory. It is above hyper's own URI limit (64 KiB), so
/// an over-long URI gets 414 from hyper or 413/414 from Tally instead of 431.
const HTTP1_MAX_BUF_BYTES: usize = 2 * 1024 * 1024;

/// How long a client may take to send a request head.
const HTTP1_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the HTTP API with hyper directly (not `axum::serve`) to set the HTTP/1 buffer limit.
async fn serve_http(
    listener: TcpListener,
    service: Service,
    max_connections: usize,
    stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let router = crate::http::router(service);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    // A client that never finishes its request head is dropped after the timeout.
    builder
        .http1()
        .max_buf_size(HTTP1_MAX_BUF_BYTES)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HTTP1_HEADER_READ_TIMEOUT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut limit = ConnectionLimit::new("http", max_connections);
    let serve_connection = |stream: TcpStream, _| {
        let Some(permit) = limit.admit() else {
            tokio::spawn(reject_http(stream, limit.max_connections()));
            return;
        };
        let io = hyper_util::rt::TokioIo::new(stream);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = graceful.watch(
            builder
                .serve_connection_with_upgrades(io, service)
                .into_owned(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    };
    // This returns only after STOP_QUIET without a new connection, which also gives the last
    // ones accepted time to read their first bytes: a graceful shutdown closes a connection
    // that has not.
    accept_until_stop(listener, "http", stop, serve_connection).await;

    // Let requests in flight finish, but do not wait for idle keep-alive clients forever.
    if tokio::time::timeout(STOP_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("HTTP connections still open 10 s after shutdown began; stopping without them");
    }
    Ok(())
}

/// Serves gRPC with tonic. A connection past the connection limit gets `RESOURCE_EXHAUSTED`
/// from [`reject_grpc`] instead.
async fn serve_grpc(
    listener: TcpListener,
    service: Service,
    max_connections: usize,
    stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    // Tally accepts the connections itself, as for HTTP, because tonic closes its listener,
    // and so resets the connections in the backlog, as soon as its shutdown signal fires. The
    // stream of connections ends once the backlog is accepted, and tonic then shuts its
    // connections down gracefully; the signal itself never fires.
    let (connections, incoming) = tokio::sync::mpsc::unbounded_channel();
    let mut limit = ConnectionLimit::new("grpc", max_connections);
    let admit = move |stream: TcpStream, _| match limit.admit() {
        // The channel holds at most `max_connections` streams, because each keeps a permit.
        Some(permit) => {
            let _ = connections.send(Ok::<_, std::io::Error>(AdmittedStream::new(stream, permit)));
        }
        None => {
            tokio::spawn(reject_grpc(stream, limit.max_connections()));
        }
    };
    let accepting = tokio::spawn(accept_until_stop(listener, "grpc", stop.clone(), admit));
    let result = serve_grpc_connections(service, incoming, stop).await;
    accepting.abort();
    result
}

/// Serves the gRPC connections that arrive on `incoming` until it ends, then waits up to
/// [`STOP_GRACE`] from the stop for them to finish.
async fn serve_grpc_connections(
    service: Service,
    incoming: tokio::sync::mpsc::UnboundedReceiver<Result<AdmittedStream, std::io::Error>>,
    stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let server = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            crate::grpc::size_limit_status,
        ))
        .add_service(GrpcService::new(service).into_server())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnboundedReceiverStream::new(incoming),
            std::future::pending::<()>(),
        );
    tokio::pin!(server);
    let transport_error = |error| ServeError::Io(std::io::Error::other(error));
    tokio::select! {
        result = &mut server => return result.map_err(transport_error),
        () = wait_for_stop(stop) => {}
    }
    // tonic's graceful shutdown waits for every connection to close, and an HTTP/2 connection
    // closes only after its client acknowledges a PING, which a stalled client never does.
    match tokio::time::timeout(STOP_GRACE, server).await {
        Ok(result) => result.map_err(transport_error),
        Err(_) => {
            warn!("gRPC connections still open 10 s after shutdown began; stopping without them");
            Ok(())
        }
    }
}

async fn rollup_loop(service: Service, config: ServerConfig, stop: watch::Receiver<bool>) {
    let rollup = service.rollup();
    drop(service);
    let mut interval = tokio::time::interval(config.rollup_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_token_expiry = tokio::time::Instant::now();
    let stopped = wait_for_stop(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = interval.tick() => {}
        }
        let expire_tokens = last_token_expiry.elapsed() >= config.token_expiry_interval;
        match rollup.run_once(expire_tokens).await {
            Ok(report) => {
                if expire_tokens {
                    last_token_expiry = tokio::time::Instant::now();
                    if report.num_tokens_expired > 0 {
                        info!(num_tokens = report.num_tokens_expired, "expired tokens");
                    }
                }
            }
            Err(error) => warn!(%error, "background rollup failed; retrying at the next interval"),
        }
    }
}
