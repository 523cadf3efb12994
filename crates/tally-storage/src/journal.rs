//! Keeps fjall's journal near its configured maximum, and empties it at a stop.
//!
//! fjall 3.1.13 compares the journal's size with its maximum only when a worker flushes a
//! memtable (`worker_tick` in its `worker_pool.rs`). When the writes spread over keyspaces
//! whose memtables never fill, such as a quiet minute's token partition or an hour's bucket,
//! no flush comes and the journal grows without a bound. One store reached 281 MB of journal
//! that way, and its next start replayed all of it for 8 s. [`JournalBound`] checks the
//! journal once per second and, when it is over the maximum, seals one memtable, whose flush
//! then makes fjall rotate the journal and flush the memtables that keep the old one.
//!
//! NOTE: sealing a memtable uses `Keyspace::rotate_memtable`, which fjall marks as hidden from
//! its documentation. Check it when fjall is upgraded.

use fjall::{Database, Keyspace};
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Time between two checks of the journal's size.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often [`flush_all`] looks whether fjall has written every sealed memtable.
const FLUSH_POLL: Duration = Duration::from_millis(10);

/// Returns the journal files in the database directory `path` with their numbers.
fn journal_files(path: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let file = entry?.path();
        if file.extension().is_some_and(|ext| ext == "jnl")
            && let Some(number) = file
                .file_stem()
                .and_then(|stem| stem.to_str())
                .and_then(|stem| stem.parse().ok())
        {
            files.push((number, file));
        }
    }
    Ok(files)
}

/// Returns the bytes that a file takes on disk. fjall sizes a new journal file to 64 MiB
/// before it writes to it, so the written blocks, not the length, measure what a start
/// replays.
fn written_bytes(metadata: &Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        metadata.blocks() * 512
    }
    #[cfg(not(unix))]
    {
        metadata.len()
    }
}

/// Returns the bytes written to fjall's journal files in the database directory `path`.
pub fn journal_bytes(path: &Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for (_, file) in journal_files(path)? {
        bytes += written_bytes(&std::fs::metadata(file)?);
    }
    Ok(bytes)
}

/// Returns the bytes written to the journal file that fjall writes to now, the newest.
fn active_journal_bytes(path: &Path) -> std::io::Result<u64> {
    match journal_files(path)?.into_iter().max() {
        Some((_, file)) => Ok(written_bytes(&std::fs::metadata(file)?)),
        None => Ok(0),
    }
}

/// A trigger for fjall's own bounding of the journal, for when no flush has run it.
pub struct JournalBound {
    max_bytes: u64,
    next_check: Mutex<Instant>,
}

impl JournalBound {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            next_check: Mutex::new(Instant::now() + CHECK_INTERVAL),
        }
    }

    /// Checks the journal at most once per [`CHECK_INTERVAL`]. A flush in fjall 3.1.13 rotates
    /// the journal when the active one is over 64,000,000 bytes, and then flushes the
    /// memtables that keep the sealed journals once those reach the configured maximum. When
    /// the active journal is over `max_bytes` (64 MiB, which is more) with no flush queued,
    /// this seals the memtable of `keyspace`, which must contain writes, so that its flush
    /// does that.
    pub fn check(&self, db: &Database, path: &Path, keyspace: &Keyspace) {
        {
            let Ok(mut next_check) = self.next_check.try_lock() else {
                return;
            };
            let now = Instant::now();
            if now < *next_check {
                return;
            }
            *next_check = now + CHECK_INTERVAL;
        }
        let bytes = match active_journal_bytes(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                warn!(path = %path.display(), %error, "failed to read the journal's size");
                return;
            }
        };
        if bytes <= self.max_bytes || db.outstanding_flushes() > 0 {
            return;
        }
        match keyspace.rotate_memtable() {
            Ok(sealed) => info!(
                journal_bytes = bytes,
                sealed, "sealed a memtable so that fjall bounds its journal"
            ),
            Err(error) => warn!(%error, "failed to seal a memtable to bound the journal"),
        }
    }
}

/// Seals the memtable of each keyspace whose memtable contains writes, which queues its
/// flush. Returns how many it sealed.
fn seal_all(keyspaces: &[Keyspace]) -> usize {
    let mut num_sealed = 0;
    for keyspace in keyspaces {
        match keyspace.rotate_memtable() {
            Ok(true) => num_sealed += 1,
            Ok(false) => {}
            Err(error) => warn!(keyspace = %keyspace.name(), %error, "failed to seal a memtable"),
        }
    }
    num_sealed
}

/// Seals every memtable and waits up to `timeout` until fjall has written them all into
/// tables, so that the next start replays little or no journal. Returns whether it finished.
pub fn flush_all(db: &Database, keyspaces: &[Keyspace], timeout: Duration) -> bool {
    let started = Instant::now();
    let num_sealed = seal_all(keyspaces);
    let done = || {
        db.outstanding_flushes() == 0
            && keyspaces
                .iter()
                .all(|keyspace| keyspace.sealed_memtable_count() == 0)
    };
    while !done() {
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(FLUSH_POLL);
    }
    info!(
        num_sealed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "flushed the memtables"
    );
    true
}
