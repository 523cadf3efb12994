//! The in-memory state of a single node: namespaces and the exact running state of every counter.

use crate::counters::CounterTable;
use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tally_core::{CounterName, EventTime, NamespaceName};
use tally_storage::{NamespaceId, NamespaceRecord};

/// A counter's identity in memory.
pub type CounterKey = (NamespaceId, CounterName);

/// A namespace with its stored record and the sealing bound of its write path.
pub struct NamespaceEntry {
    /// The stored record, replaced as a whole on change so that readers take a cheap snapshot.
    /// The namespace lock of [`crate::Service`] serialises its writers.
    record: RwLock<Arc<NamespaceRecord>>,
    /// IMPORTANT: the write path rejects events before this time. A rollup raises it, then
    /// waits for the writer to drain, before it folds events older than it, so no event can
    /// land in a window that is being rolled up.
    sealing_bound_micros: AtomicI64,
}

impl NamespaceEntry {
    pub fn new(record: NamespaceRecord) -> Self {
        let bound = record.sealed_until.as_micros();
        Self {
            record: RwLock::new(Arc::new(record)),
            sealing_bound_micros: AtomicI64::new(bound),
        }
    }

    /// Returns a snapshot of the record.
    pub fn record(&self) -> Arc<NamespaceRecord> {
        match self.record.read() {
            Ok(record) => Arc::clone(&record),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn set_record(&self, record: NamespaceRecord) {
        let record = Arc::new(record);
        match self.record.write() {
            Ok(mut guard) => *guard = record,
            Err(poisoned) => *poisoned.into_inner() = record,
        }
    }

    pub fn id(&self) -> NamespaceId {
        self.record().id
    }

    pub fn sealing_bound(&self) -> EventTime {
        EventTime::from_micros(self.sealing_bound_micros.load(Ordering::SeqCst))
    }

    pub fn raise_sealing_bound(&self, bound: EventTime) {
        self.sealing_bound_micros
            .fetch_max(bound.as_micros(), Ordering::SeqCst);
    }
}

/// The in-memory state shared by the front ends, the writer and the rollup worker.
#[derive(Default)]
pub struct SharedState {
    pub namespaces: RwLock<HashMap<NamespaceName, Arc<NamespaceEntry>>>,
    /// Durable counters. Only the writer thread (and recovery, before it starts) changes them.
    pub counters: CounterTable,
    /// Counters of `best_effort` namespaces, in memory only.
    pub best_effort: DashMap<CounterKey, i64>,
    /// The highest durable counter ID in [`Self::counters`]. IDs up to it may have gaps.
    pub last_counter_id: AtomicU64,
}

impl SharedState {
    pub fn namespace(&self, name: &NamespaceName) -> Option<Arc<NamespaceEntry>> {
        let namespaces = match self.namespaces.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        namespaces.get(name).cloned()
    }

    pub fn all_namespaces(&self) -> Vec<Arc<NamespaceEntry>> {
        let namespaces = match self.namespaces.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut entries: Vec<_> = namespaces.values().cloned().collect();
        entries.sort_by_key(|entry| entry.record().name.clone());
        entries
    }

    pub fn insert_namespace(&self, entry: Arc<NamespaceEntry>) {
        let mut namespaces = match self.namespaces.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        namespaces.insert(entry.record().name.clone(), entry);
    }
}
