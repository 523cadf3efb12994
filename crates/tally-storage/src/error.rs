//! Storage errors.

/// A failed storage operation. Unless a variant states otherwise, nothing of the failed write is visible.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Another process has the data directory open.
    #[error("the data directory {path} is in use by another tally process")]
    Locked { path: String },

    /// An earlier write or sync failed, so the store rejects writes until it is reopened:
    /// retrying a failed fsync could report data as durable that never reached the disk.
    #[error("the store rejects writes after an earlier failed write or sync; restart the server")]
    Poisoned,

    /// A write failed; the batch was not applied.
    #[error("storage write failed: {0}")]
    WriteFailed(String),

    /// A read or scan failed.
    #[error("storage read failed: {0}")]
    ReadFailed(String),

    /// Stored bytes that do not decode: the store is damaged or from an incompatible version.
    #[error("corrupt record in {keyspace}: {detail}")]
    Corrupt { keyspace: String, detail: String },

    /// The data directory contains a store format that this build neither reads nor converts.
    #[error(
        "unsupported store format {found} in {path}: this tally reads format {supported} and converts formats {oldest_converted} and later; {advice}"
    )]
    UnsupportedFormat {
        path: String,
        found: u32,
        supported: u32,
        oldest_converted: u32,
        advice: &'static str,
    },
}

impl StorageError {
    /// Returns the error for a checkpoint of a counter that the store does not contain.
    pub(crate) fn checkpoint_without_counter(counter_id: u64) -> Self {
        StorageError::Corrupt {
            keyspace: "checkpoint_blocks".into(),
            detail: format!("checkpoint of counter {counter_id}, which the store does not contain"),
        }
    }
}

/// Maps an error of a read from the embedded store: a poisoned store stays poisoned.
pub(crate) fn read_failed(error: fjall::Error) -> StorageError {
    match error {
        fjall::Error::Poisoned => StorageError::Poisoned,
        other => StorageError::ReadFailed(other.to_string()),
    }
}

impl From<fjall::Error> for StorageError {
    fn from(error: fjall::Error) -> Self {
        match error {
            fjall::Error::Poisoned => StorageError::Poisoned,
            other => StorageError::WriteFailed(other.to_string()),
        }
    }
}
