//! The storage contract.

use crate::StorageError;
use crate::types::{
    AppendBatch, Checkpoint, CounterId, NamespaceId, NamespaceRecord, RecoveredState,
    ScannedCounter, ScannedToken, StoredEvent, TokenEstimate, TokenRecord,
};
use std::ops::RangeInclusive;
use tally_core::EventTime;

/// The event log, tokens and checkpoints of one Tally deployment.
///
/// Calls block; the server runs them on threads that may block. Every write is atomic: after an
/// error none of it is visible, so no token is claimed by a failed write.
pub trait EventStore: Send + Sync + 'static {
    /// Loads namespaces and the last assigned IDs; [`Self::scan_counters`] reads the counters.
    fn recover(&self) -> Result<RecoveredState, StorageError>;

    /// Visits the counters whose IDs lie in `ids`, in increasing ID order, each with its latest
    /// checkpoint, without copying names. A start calls it on disjoint ranges at once, one per
    /// core, so a store must allow concurrent scans. A checkpoint of a counter that the store
    /// does not contain makes the scan fail with [`StorageError::Corrupt`].
    fn scan_counters(
        &self,
        ids: RangeInclusive<CounterId>,
        visit: &mut dyn FnMut(ScannedCounter<'_>),
    ) -> Result<(), StorageError>;

    /// Creates or replaces a namespace record, durably.
    fn put_namespace(&self, namespace: &NamespaceRecord) -> Result<(), StorageError>;

    /// Appends a group commit atomically. It is durable when this returns, as far as the
    /// backend's durability mode promises.
    fn append(&self, batch: &AppendBatch) -> Result<(), StorageError>;

    /// Looks up a token of a counter.
    fn find_token(
        &self,
        namespace_id: NamespaceId,
        counter_id: CounterId,
        token: &str,
    ) -> Result<Option<TokenRecord>, StorageError>;

    /// Visits every stored token of every namespace, in no particular order, from a snapshot.
    /// The writer reads them once after a start, to learn which tokens it must look up.
    fn scan_tokens(&self, visit: &mut dyn FnMut(ScannedToken<'_>)) -> Result<(), StorageError>;

    /// Estimates how many tokens the store contains per span of event time, without reading them:
    /// every stored token lies in one of the spans. `None` when the backend cannot tell without
    /// a scan.
    fn estimate_tokens(&self) -> Result<Option<Vec<TokenEstimate>>, StorageError> {
        Ok(None)
    }

    /// Prepares a quick next start once every write is done. The embedded store writes its
    /// memtables into tables, so that the next start has no journal to replay.
    fn close(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Visits the events of a namespace with `from <= time < until` in (time, event ID) order.
    fn scan_events(
        &self,
        namespace_id: NamespaceId,
        from: EventTime,
        until: EventTime,
        visit: &mut dyn FnMut(StoredEvent),
    ) -> Result<(), StorageError>;

    fn read_checkpoint(&self, counter_id: CounterId) -> Result<Option<Checkpoint>, StorageError>;

    /// Reads the checkpoints of counters given in increasing ID order, one result per ID.
    /// A backend may read a dense set of IDs in one pass instead of one lookup each.
    fn read_checkpoints(
        &self,
        counter_ids: &[CounterId],
    ) -> Result<Vec<Option<Checkpoint>>, StorageError> {
        counter_ids
            .iter()
            .map(|counter_id| self.read_checkpoint(*counter_id))
            .collect()
    }

    /// Writes checkpoints and the namespace's new `sealed_until` in one atomic, durable write.
    fn write_rollup(
        &self,
        namespace: &NamespaceRecord,
        checkpoints: &[(CounterId, Checkpoint)],
    ) -> Result<(), StorageError>;

    /// Drops the namespace's time buckets that end at or before `before`; returns how many.
    fn drop_buckets_before(
        &self,
        namespace_id: NamespaceId,
        before: EventTime,
    ) -> Result<usize, StorageError>;

    /// Forgets the namespace's tokens whose event time is before `before`, never one at or
    /// after it, and returns how many it forgot. A backend may forget tokens in groups: the
    /// embedded store keeps each until its whole partition lies before `before`, at most one
    /// partition span (a sixtieth of the idempotency window, see `token_partitions`) longer.
    /// The count is for reports: the embedded store takes it from its tables' metadata, and it
    /// can be off while a flush runs.
    fn expire_tokens(
        &self,
        namespace_id: NamespaceId,
        before: EventTime,
    ) -> Result<usize, StorageError>;

    /// Lists counter names of a namespace in byte order, after `after` if given.
    fn list_counters(
        &self,
        namespace_id: NamespaceId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError>;

    /// Syncs everything written so far to disk.
    fn sync(&self) -> Result<(), StorageError>;
}
