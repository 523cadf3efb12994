//! Tally's server: the service layer, the write path, rollups and the front ends.
//!
//! - [`service`]: [`Service`], the one API behind every front end.
//! - [`writer`]: the group-commit write path ([`writer::WriterHandle`]).
//! - [`slow_commits`]: warnings about group commits that made their clients wait.
//! - [`rollup`]: checkpoints of sealed windows, retention and token expiry.
//! - [`recovery`]: rebuilding the in-memory state at start.
//! - [`state`]: what a single node keeps in memory.
//! - [`counters`]: the compact table of durable counters inside that state.
//! - [`http`]: the HTTP/JSON front end (axum), with its OpenAPI document.
//! - [`grpc`]: the gRPC front end (tonic), package `tally.v1`.
//! - [`resp`]: the Redis protocol front end (RESP2 and RESP3).
//! - [`server`]: [`server::ServerConfig`] and [`server::run`], which tie it all together.
//! - [`error`]: [`ServiceError`], shared by every front end.
//! - [`clock`]: the source of "now".
//! - [`connection_limit`]: the cap on each front end's open connections.
//! - [`allocator`]: settings of glibc's allocator.

pub mod allocator;
pub mod clock;
pub mod connection_limit;
pub mod counters;
pub mod error;
pub mod grpc;
pub mod http;
pub mod recovery;
pub mod resp;
pub mod rollup;
pub mod server;
pub mod service;
pub mod slow_commits;
pub mod state;
pub mod token_filter;
pub mod writer;

pub use error::ServiceError;
pub use service::Service;

/// Code generated from `proto/tally/v1/tally.proto`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("tally.v1");
}
