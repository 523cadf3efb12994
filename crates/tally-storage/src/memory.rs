//! An in-memory backend. It keeps the same contract as the embedded store without any I/O, so
//! it proves that [`EventStore`] depends on no backend and lets tests of the layers above run fast.
//! Everything is lost when it is dropped.

use crate::StorageError;
use crate::traits::EventStore;
use crate::types::{
    AppendBatch, BUCKET_SECONDS, Checkpoint, CounterId, NamespaceId, NamespaceRecord,
    RecoveredState, ScannedCounter, ScannedToken, StoredEvent, TokenRecord, bucket_of,
};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard};
use tally_core::{EventKey, EventTime};

#[derive(Default)]
struct Inner {
    namespaces: BTreeMap<String, NamespaceRecord>,
    counters: BTreeMap<(NamespaceId, String), CounterId>,
    counters_by_id: BTreeMap<CounterId, (NamespaceId, String)>,
    checkpoints: BTreeMap<CounterId, Checkpoint>,
    tokens: BTreeMap<(NamespaceId, CounterId, String), TokenRecord>,
    /// Events by namespace, bucket start and key.
    events: BTreeMap<(NamespaceId, EventTime), BTreeMap<EventKey, StoredEvent>>,
    last_event_id: u64,
    last_counter_id: u64,
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StorageError> {
        self.inner.lock().map_err(|_| StorageError::Poisoned)
    }
}

impl EventStore for MemoryStore {
    fn recover(&self) -> Result<RecoveredState, StorageError> {
        let inner = self.lock()?;
        Ok(RecoveredState {
            namespaces: inner.namespaces.values().cloned().collect(),
            last_event_id: inner.last_event_id,
            last_counter_id: inner.last_counter_id,
        })
    }

    fn scan_counters(
        &self,
        ids: RangeInclusive<CounterId>,
        visit: &mut dyn FnMut(ScannedCounter<'_>),
    ) -> Result<(), StorageError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Copy first so that `visit` may call back into the store.
        let counters: Vec<(CounterId, NamespaceId, String, Option<Checkpoint>)> = {
            let inner = self.lock()?;
            let stray = inner
                .checkpoints
                .range(ids.clone())
                .map(|(id, _)| *id)
                .find(|id| !inner.counters_by_id.contains_key(id));
            if let Some(stray) = stray {
                return Err(StorageError::checkpoint_without_counter(stray));
            }
            inner
                .counters_by_id
                .range(ids)
                .map(|(id, (namespace_id, name))| {
                    let checkpoint = inner.checkpoints.get(id).copied();
                    (*id, *namespace_id, name.clone(), checkpoint)
                })
                .collect()
        };
        for (id, namespace_id, name, checkpoint) in &counters {
            visit(ScannedCounter {
                id: *id,
                namespace_id: *namespace_id,
                name,
                checkpoint: *checkpoint,
            });
        }
        Ok(())
    }

    fn put_namespace(&self, namespace: &NamespaceRecord) -> Result<(), StorageError> {
        self.lock()?
            .namespaces
            .insert(namespace.name.as_str().to_owned(), namespace.clone());
        Ok(())
    }

    fn append(&self, batch: &AppendBatch) -> Result<(), StorageError> {
        let mut inner = self.lock()?;
        for counter in &batch.new_counters {
            inner.counters.insert(
                (counter.namespace_id, counter.name.as_str().to_owned()),
                counter.id,
            );
            inner.counters_by_id.insert(
                counter.id,
                (counter.namespace_id, counter.name.as_str().to_owned()),
            );
        }
        for (namespace_id, event) in &batch.events {
            if let Some(token) = &event.token {
                let record = TokenRecord {
                    event_id: event.key.id,
                    event_time: event.key.time,
                    kind: event.kind,
                };
                inner
                    .tokens
                    .insert((*namespace_id, event.counter_id, token.to_string()), record);
            }
            inner
                .events
                .entry((*namespace_id, bucket_of(event.key.time)))
                .or_default()
                .insert(event.key, event.clone());
        }
        inner.last_event_id = batch.last_event_id;
        inner.last_counter_id = batch.last_counter_id;
        Ok(())
    }

    fn find_token(
        &self,
        namespace_id: NamespaceId,
        counter_id: CounterId,
        token: &str,
    ) -> Result<Option<TokenRecord>, StorageError> {
        Ok(self
            .lock()?
            .tokens
            .get(&(namespace_id, counter_id, token.to_owned()))
            .copied())
    }

    fn scan_tokens(&self, visit: &mut dyn FnMut(ScannedToken<'_>)) -> Result<(), StorageError> {
        let inner = self.lock()?;
        for ((namespace_id, counter_id, token), record) in &inner.tokens {
            visit(ScannedToken {
                namespace_id: *namespace_id,
                counter_id: *counter_id,
                token,
                event_time: record.event_time,
            });
        }
        Ok(())
    }

    fn scan_events(
        &self,
        namespace_id: NamespaceId,
        from: EventTime,
        until: EventTime,
        visit: &mut dyn FnMut(StoredEvent),
    ) -> Result<(), StorageError> {
        // An inverted range contains no events, and `BTreeMap::range` would panic on it while
        // the lock is held, which poisons the store for every later call.
        if from >= until {
            return Ok(());
        }
        // Copy first so that `visit` may call back into the store.
        let selected: Vec<StoredEvent> = {
            let inner = self.lock()?;
            inner
                .events
                .range((namespace_id, bucket_of(from))..(namespace_id, until))
                .flat_map(|(_, events)| events.values())
                .filter(|event| event.key.time >= from && event.key.time < until)
                .cloned()
                .collect()
        };
        selected.into_iter().for_each(visit);
        Ok(())
    }

    fn read_checkpoint(&self, counter_id: CounterId) -> Result<Option<Checkpoint>, StorageError> {
        Ok(self.lock()?.checkpoints.get(&counter_id).copied())
    }

    fn write_rollup(
        &self,
        namespace: &NamespaceRecord,
        checkpoints: &[(CounterId, Checkpoint)],
    ) -> Result<(), StorageError> {
        let mut inner = self.lock()?;
        inner.checkpoints.extend(checkpoints.iter().copied());
        inner
            .namespaces
            .insert(namespace.name.as_str().to_owned(), namespace.clone());
        Ok(())
    }

    fn drop_buckets_before(
        &self,
        namespace_id: NamespaceId,
        before: EventTime,
    ) -> Result<usize, StorageError> {
        let mut inner = self.lock()?;
        let before_count = inner.events.len();
        inner.events.retain(|(namespace, start), _| {
            *namespace != namespace_id || start.plus_seconds(BUCKET_SECONDS) > before
        });
        Ok(before_count - inner.events.len())
    }

    fn expire_tokens(
        &self,
        namespace_id: NamespaceId,
        before: EventTime,
    ) -> Result<usize, StorageError> {
        let mut inner = self.lock()?;
        let before_count = inner.tokens.len();
        inner.tokens.retain(|(namespace, _, _), record| {
            *namespace != namespace_id || record.event_time >= before
        });
        Ok(before_count - inner.tokens.len())
    }

    fn list_counters(
        &self,
        namespace_id: NamespaceId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let inner = self.lock()?;
        Ok(inner
            .counters
            .range((namespace_id, after.unwrap_or("").to_owned())..)
            .take_while(|((namespace, _), _)| *namespace == namespace_id)
            .map(|((_, name), _)| name.clone())
            .filter(|name| Some(name.as_str()) != after)
            .take(limit)
            .collect())
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
