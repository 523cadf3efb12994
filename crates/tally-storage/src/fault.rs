//! Fault injection for tests: a wrapper that makes appends fail or wait on demand.
//!
//! The server wraps its store in [`FaultInjection`] only when the environment variable
//! `TALLY_FAULT_FILE` names a file. While that file contains the word `append`, every append
//! fails before anything is written, as a full disk would. While it contains the word `delay`,
//! every append first waits [`APPEND_DELAY`], as a slow disk would. Tests of the real binary use
//! them to show that a failed write claims no token and that a slow commit logs a warning.

use crate::StorageError;
use crate::traits::EventStore;
use crate::types::{
    AppendBatch, Checkpoint, CounterId, NamespaceId, NamespaceRecord, RecoveredState,
    ScannedCounter, ScannedToken, StoredEvent, TokenEstimate, TokenRecord,
};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;
use tally_core::EventTime;

/// How long each append waits while the control file contains `delay`.
pub const APPEND_DELAY: Duration = Duration::from_millis(200);

pub struct FaultInjection<S> {
    inner: S,
    control_file: PathBuf,
}

impl<S: EventStore> FaultInjection<S> {
    pub fn new(inner: S, control_file: PathBuf) -> Self {
        Self {
            inner,
            control_file,
        }
    }

    fn control_text(&self) -> String {
        std::fs::read_to_string(&self.control_file).unwrap_or_default()
    }
}

impl<S: EventStore> EventStore for FaultInjection<S> {
    fn recover(&self) -> Result<RecoveredState, StorageError> {
        self.inner.recover()
    }

    fn scan_counters(
        &self,
        ids: RangeInclusive<CounterId>,
        visit: &mut dyn FnMut(ScannedCounter<'_>),
    ) -> Result<(), StorageError> {
        self.inner.scan_counters(ids, visit)
    }

    fn put_namespace(&self, namespace: &NamespaceRecord) -> Result<(), StorageError> {
        self.inner.put_namespace(namespace)
    }

    fn append(&self, batch: &AppendBatch) -> Result<(), StorageError> {
        let control = self.control_text();
        if control.contains("delay") {
            std::thread::sleep(APPEND_DELAY);
        }
        if control.contains("append") {
            return Err(StorageError::WriteFailed(format!(
                "injected fault: {} asks appends to fail",
                self.control_file.display()
            )));
        }
        self.inner.append(batch)
    }

    fn find_token(
        &self,
        namespace_id: NamespaceId,
        counter_id: CounterId,
        token: &str,
    ) -> Result<Option<TokenRecord>, StorageError> {
        self.inner.find_token(namespace_id, counter_id, token)
    }

    fn scan_tokens(&self, visit: &mut dyn FnMut(ScannedToken<'_>)) -> Result<(), StorageError> {
        self.inner.scan_tokens(visit)
    }

    fn estimate_tokens(&self) -> Result<Option<Vec<TokenEstimate>>, StorageError> {
        self.inner.estimate_tokens()
    }

    fn close(&self) -> Result<(), StorageError> {
        self.inner.close()
    }

    fn scan_events(
        &self,
        namespace_id: NamespaceId,
        from: EventTime,
        until: EventTime,
        visit: &mut dyn FnMut(StoredEvent),
    ) -> Result<(), StorageError> {
        self.inner.scan_events(namespace_id, from, until, visit)
    }

    fn read_checkpoints(
        &self,
        counter_ids: &[CounterId],
    ) -> Result<Vec<Option<Checkpoint>>, StorageError> {
        self.inner.read_checkpoints(counter_ids)
    }

    fn read_checkpoint(&self, counter_id: CounterId) -> Result<Option<Checkpoint>, StorageError> {
        self.inner.read_checkpoint(counter_id)
    }

    fn write_rollup(
        &self,
        namespace: &NamespaceRecord,
        checkpoints: &[(CounterId, Checkpoint)],
    ) -> Result<(), StorageError> {
        self.inner.write_rollup(namespace, checkpoints)
    }

    fn drop_buckets_before(
        &self,
        namespace_id: NamespaceId,
        before: EventTime,
    ) -> Result<usize, StorageError> {
        self.inner.drop_buckets_before(namespace_id, before)
    }

    fn expire_tokens(
        &self,
        namespace_id: NamespaceId,
        before: EventTime,
    ) -> Result<usize, StorageError> {
        self.inner.expire_tokens(namespace_id, before)
    }

    fn list_counters(
        &self,
        namespace_id: NamespaceId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.list_counters(namespace_id, after, limit)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.inner.sync()
    }
}
