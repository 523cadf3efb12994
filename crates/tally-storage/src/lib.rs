//! Storage of Tally's event log, tokens and checkpoints, behind a trait that depends on no backend.
//!
//! - [`traits`]: [`EventStore`], the contract every backend keeps.
//! - [`types`]: the records it stores ([`StoredEvent`], [`TokenRecord`], [`Checkpoint`], ...).
//! - [`embedded`]: [`EmbeddedStore`], the default backend on fjall in a local data directory.
//! - [`memory`]: [`MemoryStore`], which proves the trait depends on no backend and serves tests.
//! - [`fault`]: [`FaultInjection`], a wrapper that makes writes fail on demand, for tests.
//! - [`token_partitions`]: the embedded store's token index, split by event time.
//! - [`encoding`]: the byte layout of keys and values in the embedded store, apart from
//!   checkpoints, which `checkpoint_blocks` keeps in blocks of consecutive counter IDs.
//! - [`error`]: the error type, [`StorageError`].

mod checkpoint_blocks;
pub mod embedded;
pub mod encoding;
pub mod error;
pub mod fault;
mod journal;
pub mod memory;
pub mod token_partitions;
pub mod traits;
pub mod types;

pub use embedded::{Durability, EmbeddedStore};
pub use error::StorageError;
pub use fault::FaultInjection;
pub use memory::MemoryStore;
pub use traits::EventStore;
pub use types::{
    AppendBatch, BUCKET_SECONDS, Checkpoint, CounterId, CounterRecord, NamespaceId,
    NamespaceRecord, RecoveredState, SLICE_SECONDS, ScannedCounter, ScannedToken, StoredEvent,
    TokenEstimate, TokenRecord, bucket_of, slice_of,
};
