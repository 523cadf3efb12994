//! `tally serve`: option resolution (flags, then environment, then config file, then defaults)
//! and signal handling.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tally_server::server::{self, ServerConfig};
use tally_storage::Durability;

#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file (TOML) with any of: data_dir, http_listen, grpc_listen, resp_listen,
    /// no_resp, resp_idle_timeout_seconds, max_connections, durability,
    /// rollup_interval_seconds, write_queue_capacity. Flags and environment variables win over
    /// it.
    #[arg(long, env = "TALLY_CONFIG")]
    config: Option<PathBuf>,

    /// Directory of the embedded store [default: ./tally-data]
    #[arg(long, env = "TALLY_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Address of the HTTP/JSON API; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, env = "TALLY_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,

    /// Address of the gRPC API; port 0 picks a free port [default: 127.0.0.1:50051]
    #[arg(long, env = "TALLY_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,

    /// Address of the Redis protocol front end (RESP2, and RESP3 after `HELLO 3`); port 0 picks a free port
    /// [default: 127.0.0.1:6380]
    #[arg(long, env = "TALLY_RESP_LISTEN")]
    resp_listen: Option<SocketAddr>,

    /// Turn the Redis protocol front end off
    #[arg(long, env = "TALLY_NO_RESP", conflicts_with = "resp_listen")]
    no_resp: bool,

    /// Seconds a Redis protocol connection may stay silent before it is closed [default: 300]
    #[arg(long, env = "TALLY_RESP_IDLE_TIMEOUT_SECONDS")]
    resp_idle_timeout_seconds: Option<u64>,

    /// Connections that each front end (HTTP, gRPC, Redis protocol) keeps open at once. One
    /// more gets an overload error in the front end's protocol and is closed [default: 10000]
    #[arg(long, env = "TALLY_MAX_CONNECTIONS")]
    max_connections: Option<usize>,

    /// When a write is acknowledged: `sync` after fdatasync (survives power loss), `os-buffer`
    /// after the write reaches the OS page cache (survives kill -9 of tally, not an OS crash)
    /// [default: sync]
    #[arg(long, env = "TALLY_DURABILITY", value_enum)]
    durability: Option<DurabilityArg>,

    /// Seconds between background rollups [default: 5]
    #[arg(long, env = "TALLY_ROLLUP_INTERVAL_SECONDS")]
    rollup_interval_seconds: Option<u64>,

    /// Requests that may wait for the writer before new writes get 429 [default: 4096]
    #[arg(long, env = "TALLY_WRITE_QUEUE_CAPACITY")]
    write_queue_capacity: Option<usize>,

    /// Log filter, for example `info` or `tally_server=debug`
    #[arg(
        long,
        env = "TALLY_LOG",
        default_value = "info,fjall=warn,lsm_tree=warn"
    )]
    log: String,
}

#[derive(Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum DurabilityArg {
    Sync,
    OsBuffer,
}

/// The configuration file; every field is optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    http_listen: Option<SocketAddr>,
    grpc_listen: Option<SocketAddr>,
    resp_listen: Option<SocketAddr>,
    no_resp: Option<bool>,
    resp_idle_timeout_seconds: Option<u64>,
    max_connections: Option<usize>,
    durability: Option<DurabilityArg>,
    rollup_interval_seconds: Option<u64>,
    write_queue_capacity: Option<usize>,
}

fn resolve(args: &ServeArgs) -> Result<ServerConfig> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the configuration file {}", path.display())
            })?;
            toml::from_str::<ConfigFile>(&text)
                .with_context(|| format!("invalid configuration file {}", path.display()))?
        }
        None => ConfigFile::default(),
    };

    let default_http: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let default_grpc: SocketAddr = ([127, 0, 0, 1], 50051).into();
    let mut config = ServerConfig::new(
        args.data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("tally-data")),
        args.http_listen
            .or(file.http_listen)
            .unwrap_or(default_http),
        args.grpc_listen
            .or(file.grpc_listen)
            .unwrap_or(default_grpc),
    );

    let default_resp: SocketAddr = ([127, 0, 0, 1], 6380).into();
    let resp_off = args.no_resp || (args.resp_listen.is_none() && file.no_resp.unwrap_or(false));
    config.resp_listen = if resp_off {
        None
    } else {
        Some(
            args.resp_listen
                .or(file.resp_listen)
                .unwrap_or(default_resp),
        )
    };
    if let Some(seconds) = args
        .resp_idle_timeout_seconds
        .or(file.resp_idle_timeout_seconds)
    {
        anyhow::ensure!(seconds > 0, "resp_idle_timeout_seconds must be at least 1");
        config.resp_idle_timeout = Duration::from_secs(seconds);
    }
    if let Some(max_connections) = args.max_connections.or(file.max_connections) {
        anyhow::ensure!(
            max_connections > 0,
            "invalid max_connections: must be at least 1, got 0"
        );
        config.max_connections = max_connections;
    }

    config.durability = match args.durability.or(file.durability) {
        Some(DurabilityArg::OsBuffer) => Durability::OsBuffer,
        Some(DurabilityArg::Sync) | None => Durability::Sync,
    };
    if let Some(seconds) = args
        .rollup_interval_seconds
        .or(file.rollup_interval_seconds)
    {
        anyhow::ensure!(seconds > 0, "rollup_interval_seconds must be at least 1");
        config.rollup_interval = Duration::from_secs(seconds);
    }
    if let Some(capacity) = args.write_queue_capacity.or(file.write_queue_capacity) {
        anyhow::ensure!(capacity > 0, "write_queue_capacity must be at least 1");
        config.write_queue_capacity = capacity;
    }
    Ok(config)
}

pub fn run(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).context("invalid --log filter")?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = resolve(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Installed before the server starts, so that a signal sent as soon as the server
        // prints its listening line stops it cleanly instead of killing it.
        let shutdown = shutdown_signal()?;
        server::run(config, shutdown).await?;
        Ok(())
    })
}

/// Installs handlers for SIGINT (Ctrl-C) and SIGTERM and returns a future that completes when
/// either arrives.
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
