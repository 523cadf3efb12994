//! The token index of the embedded store, split by event time into partitions.
//!
//! Each partition is a keyspace that contains one namespace's tokens whose event time lies in a
//! span of time. Tokens are random keys, so in one keyspace for all of them every compaction
//! from level 0 into level 1 rewrites the whole of level 1, and expiry writes a tombstone for
//! each token that compactions must then carry. With partitions, new tokens go to the
//! partition of the present, compactions rewrite only that partition, and expiry deletes whole
//! partitions.
//!
//! A new partition spans a sixtieth of its namespace's idempotency window, from 1 minute to
//! 1 day (see [`span_seconds`]). Expiry deletes a partition once all of it lies before the
//! bound, so a token is remembered for up to one span longer than its window.
//!
//! Stores of format 4 kept every token in the one keyspace `tokens`. A store of format 5 reads
//! that keyspace as a legacy partition, expires its tokens one by one as format 4 did, and
//! deletes it once it is empty.

use crate::StorageError;
use crate::encoding;
use crate::error::read_failed;
use crate::types::{CounterId, NamespaceId, ScannedToken, TokenEstimate, TokenRecord};
use fjall::compaction::Leveled;
use fjall::config::PinningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use tally_core::EventTime;
use tally_core::namespace::NamespaceConfig;

/// The keyspace of format 4 that held every token.
pub const LEGACY_KEYSPACE: &str = "tokens";

/// The minimum span of a partition.
const MIN_SPAN_SECONDS: i64 = 60;

/// The maximum span of a partition. The longest window a namespace accepts, 30 days, gives
/// spans of 12 hours.
const MAX_SPAN_SECONDS: i64 = 24 * 3600;

/// How many partitions a namespace's idempotency window spans. A partition's compactions cost
/// more the larger it grows, since tokens are random keys. In sustained adds with tokens,
/// partitions of 1 minute instead of 3 (16 per window) cut the CPU of fjall's threads by over
/// 40%.
/// Lookups pay for the extra partitions only when the token filter lets a token through.
const PARTITIONS_PER_WINDOW: i64 = 60;

/// Memtable size of a partition, a quarter of fjall's default. Each token is looked up in the
/// memtable before it is inserted, and a smaller memtable is flushed during the load that
/// fills it. With the default, a burst of adds with tokens left a large memtable to flush
/// during the next load, whose writes then stalled for up to 400 ms.
const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

/// Tables in level 0 of a partition that start a compaction into level 1, twice fjall's
/// default. Tokens are random keys, so each such compaction rewrites the whole of the
/// partition's level 1. Merging 8 tables at a time halves those rewrites. Lookups pay for the
/// extra tables, but the token filter spares nearly every lookup. fjall slows writes from 20
/// tables in level 0.
const L0_THRESHOLD: u8 = 8;

/// Expired tokens of the legacy keyspace removed per write batch.
const LEGACY_EXPIRY_BATCH: usize = 10_000;

/// Returns the span of the partitions that a namespace with this idempotency window creates,
/// a sixtieth of the window in whole minutes, from 1 minute to 1 day.
pub fn span_seconds(idempotency_window_seconds: i64) -> i64 {
    let span = idempotency_window_seconds / PARTITIONS_PER_WINDOW;
    (span - span % 60).clamp(MIN_SPAN_SECONDS, MAX_SPAN_SECONDS)
}

/// Returns the keyspace name of a partition.
fn keyspace_name(namespace_id: NamespaceId, start: EventTime, span_seconds: i64) -> String {
    format!(
        "tokens_{namespace_id}_{}_{span_seconds}",
        start.as_micros().div_euclid(1_000_000)
    )
}

/// Parses a partition's keyspace name into its namespace, start and span.
fn parse_keyspace_name(name: &str) -> Option<PartitionKey> {
    let mut parts = name.strip_prefix("tokens_")?.split('_');
    let namespace_id = parts.next()?.parse().ok()?;
    let start_seconds: i64 = parts.next()?.parse().ok()?;
    let span_seconds = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(PartitionKey {
        namespace_id,
        start: EventTime::from_micros(start_seconds.checked_mul(1_000_000)?),
        span_seconds,
    })
}

/// A partition: a namespace's tokens with event times in `[start, start + span)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PartitionKey {
    namespace_id: NamespaceId,
    start: EventTime,
    span_seconds: i64,
}

impl PartitionKey {
    fn end(&self) -> EventTime {
        self.start.plus_seconds(self.span_seconds)
    }

    fn covers(&self, time: EventTime) -> bool {
        self.start <= time && time < self.end()
    }
}

#[derive(Default)]
struct Partitions {
    open: BTreeMap<PartitionKey, Keyspace>,
    legacy: Option<Keyspace>,
    /// The span of new partitions, by namespace. A namespace missing here gets the span of
    /// the default window.
    spans: HashMap<NamespaceId, i64>,
}

impl Partitions {
    /// Returns the namespace's partitions that start at or before `time`, in key order.
    fn starting_by(
        &self,
        namespace_id: NamespaceId,
        time: EventTime,
    ) -> impl DoubleEndedIterator<Item = (&PartitionKey, &Keyspace)> {
        let lowest = PartitionKey {
            namespace_id,
            start: EventTime::MIN,
            span_seconds: 0,
        };
        let highest = PartitionKey {
            namespace_id,
            start: time,
            span_seconds: i64::MAX,
        };
        self.open.range(lowest..=highest)
    }

    /// Returns the partition that contains the namespace's tokens at `time`, if it is open.
    fn covering(&self, namespace_id: NamespaceId, time: EventTime) -> Option<&Keyspace> {
        self.starting_by(namespace_id, time)
            .rev()
            .find(|(key, _)| key.covers(time))
            .map(|(_, keyspace)| keyspace)
    }

    /// Returns the span of the namespace's new partitions.
    fn span_of(&self, namespace_id: NamespaceId) -> i64 {
        self.spans
            .get(&namespace_id)
            .copied()
            .unwrap_or_else(|| span_seconds(NamespaceConfig::default().idempotency_window_seconds))
    }

    /// Returns the namespace's partitions, newest first, then the legacy keyspace.
    fn of_namespace(&self, namespace_id: NamespaceId) -> impl Iterator<Item = &Keyspace> {
        let latest = EventTime::from_micros(i64::MAX);
        self.starting_by(namespace_id, latest)
            .rev()
            .map(|(_, keyspace)| keyspace)
            .chain(&self.legacy)
    }
}

/// The token index: every open partition, and the legacy keyspace while it contains tokens.
pub struct TokenPartitions {
    db: Database,
    partitions: RwLock<Partitions>,
}

/// Read access to the partitions while a write batch that inserts tokens is built and
/// committed. Expiry deletes a partition only while no such access is held, because fjall
/// 3.1 accepts a write batch into a deleted keyspace and then drops what it wrote.
pub struct TokenWriter<'a> {
    partitions: RwLockReadGuard<'a, Partitions>,
}

impl TokenWriter<'_> {
    /// Returns the partition for the namespace's tokens at `time`, which
    /// [`TokenPartitions::writer`] must have opened. A partition's bounds are whole seconds, so
    /// one partition contains every token of a slice.
    pub fn partition(
        &self,
        namespace_id: NamespaceId,
        time: EventTime,
    ) -> Result<&Keyspace, StorageError> {
        self.partitions.covering(namespace_id, time).ok_or_else(|| {
            StorageError::WriteFailed(format!(
                "no token partition of namespace {namespace_id} covers {time}"
            ))
        })
    }
}

impl TokenPartitions {
    /// Opens every partition in `db`, and the legacy keyspace if it exists.
    pub fn open(db: &Database) -> Result<Self, StorageError> {
        let mut partitions = Partitions::default();
        for name in db.list_keyspace_names() {
            if let Some(key) = parse_keyspace_name(&name) {
                partitions.open.insert(key, open_keyspace(db, &name)?);
            }
        }
        if db.keyspace_exists(LEGACY_KEYSPACE) {
            partitions.legacy = Some(open_keyspace(db, LEGACY_KEYSPACE)?);
        }
        Ok(Self {
            db: db.clone(),
            partitions: RwLock::new(partitions),
        })
    }

    /// Sets the span of the namespace's new partitions from its idempotency window.
    pub fn configure(
        &self,
        namespace_id: NamespaceId,
        config: &NamespaceConfig,
    ) -> Result<(), StorageError> {
        let span = span_seconds(config.idempotency_window_seconds);
        self.write()?.spans.insert(namespace_id, span);
        Ok(())
    }

    /// Opens the partitions that cover `times` (namespace and event time) and returns access
    /// for inserting tokens into them.
    pub fn writer(
        &self,
        times: &[(NamespaceId, EventTime)],
    ) -> Result<TokenWriter<'_>, StorageError> {
        loop {
            let partitions = self.read()?;
            let missing: Vec<(NamespaceId, EventTime)> = times
                .iter()
                .filter(|(namespace_id, time)| partitions.covering(*namespace_id, *time).is_none())
                .copied()
                .collect();
            if missing.is_empty() {
                return Ok(TokenWriter { partitions });
            }
            drop(partitions);
            let mut partitions = self.write()?;
            for (namespace_id, time) in missing {
                if partitions.covering(namespace_id, time).is_some() {
                    continue;
                }
                let span_seconds = partitions.span_of(namespace_id);
                let key = PartitionKey {
                    namespace_id,
                    start: time.floor_to(span_seconds),
                    span_seconds,
                };
                let name = keyspace_name(namespace_id, key.start, span_seconds);
                partitions.open.insert(key, open_keyspace(&self.db, &name)?);
            }
        }
    }

    /// Looks a token up in the namespace's partitions, newest first.
    pub fn find(
        &self,
        namespace_id: NamespaceId,
        counter_id: CounterId,
        token: &str,
    ) -> Result<Option<TokenRecord>, StorageError> {
        let key = encoding::token_key(namespace_id, counter_id, token);
        for partition in self.read()?.of_namespace(namespace_id) {
            if let Some(value) = partition.get(&key).map_err(read_failed)? {
                return encoding::decode_token(&value).map(Some);
            }
        }
        Ok(None)
    }

    /// Returns a handle of every partition, the legacy keyspace included.
    pub fn keyspaces(&self) -> Result<Vec<Keyspace>, StorageError> {
        let partitions = self.read()?;
        Ok(partitions
            .open
            .values()
            .chain(&partitions.legacy)
            .cloned()
            .collect())
    }

    /// Visits every token in every partition. The partitions are read from handles taken at
    /// the start, so expiry and new partitions do not wait for the scan.
    pub fn scan(&self, visit: &mut dyn FnMut(ScannedToken<'_>)) -> Result<(), StorageError> {
        for keyspace in self.keyspaces()? {
            for item in keyspace.iter() {
                let (key, value) = item.into_inner().map_err(read_failed)?;
                let (namespace_id, counter_id, token) = encoding::decode_token_key(&key)?;
                visit(ScannedToken {
                    namespace_id,
                    counter_id,
                    token,
                    event_time: encoding::decode_token(&value)?.event_time,
                });
            }
        }
        Ok(())
    }

    /// Returns each partition's span and its number of tokens from fjall's metadata (the
    /// tables' counts and the memtables' lengths), without reading a token. A partition that is
    /// being flushed can be counted twice. `None` while the legacy keyspace exists, since its
    /// tokens have no span.
    pub fn estimate(&self) -> Result<Option<Vec<TokenEstimate>>, StorageError> {
        let partitions = self.read()?;
        if partitions.legacy.is_some() {
            return Ok(None);
        }
        let estimates = partitions
            .open
            .iter()
            .map(|(key, keyspace)| TokenEstimate {
                from: key.start,
                until: key.end(),
                approximate_len: keyspace.approximate_len(),
            })
            .collect();
        Ok(Some(estimates))
    }

    /// Forgets the namespace's tokens before `before`: deletes each partition that ends at or
    /// before it, and removes the legacy keyspace's expired tokens one by one. Returns how many
    /// tokens it forgot.
    pub fn expire(
        &self,
        namespace_id: NamespaceId,
        before: EventTime,
        persist_mode: PersistMode,
    ) -> Result<usize, StorageError> {
        let expired: Vec<(PartitionKey, Keyspace)> = self
            .read()?
            .open
            .iter()
            .filter(|(key, _)| key.namespace_id == namespace_id && key.end() <= before)
            .map(|(key, keyspace)| (*key, keyspace.clone()))
            .collect();
        // Counted from the tables' metadata and the memtables instead of by reading every
        // token of partitions that may hold millions. The count is only reported, and it can
        // be off while a flush of the partition runs.
        let mut num_expired: usize = expired
            .iter()
            .map(|(_, keyspace)| keyspace.approximate_len())
            .sum();
        if !expired.is_empty() {
            let mut partitions = self.write()?;
            for (key, keyspace) in expired {
                partitions.open.remove(&key);
                self.db.delete_keyspace(keyspace)?;
            }
        }
        num_expired += self.expire_legacy(namespace_id, before, persist_mode)?;
        Ok(num_expired)
    }

    /// Removes the legacy keyspace's tokens of the namespace before `before`, in batches of
    /// [`LEGACY_EXPIRY_BATCH`] while it scans, and deletes the keyspace once it is empty.
    fn expire_legacy(
        &self,
        namespace_id: NamespaceId,
        before: EventTime,
        persist_mode: PersistMode,
    ) -> Result<usize, StorageError> {
        let Some(legacy) = self.read()?.legacy.clone() else {
            return Ok(0);
        };
        let mut num_expired = 0;
        let mut batch = self.db.batch();
        let mut num_in_batch = 0;
        for item in legacy.prefix(namespace_id.to_be_bytes()) {
            let (key, value) = item.into_inner().map_err(read_failed)?;
            if encoding::decode_token(&value)?.event_time >= before {
                continue;
            }
            batch.remove(&legacy, key);
            num_in_batch += 1;
            if num_in_batch == LEGACY_EXPIRY_BATCH {
                let full = std::mem::replace(&mut batch, self.db.batch());
                commit(full, persist_mode)?;
                num_expired += num_in_batch;
                num_in_batch = 0;
            }
        }
        if num_in_batch > 0 {
            commit(batch, persist_mode)?;
            num_expired += num_in_batch;
        }
        if legacy.first_key_value().is_none() {
            self.write()?.legacy = None;
            self.db.delete_keyspace(legacy)?;
        }
        Ok(num_expired)
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Partitions>, StorageError> {
        self.partitions.read().map_err(|_| StorageError::Poisoned)
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Partitions>, StorageError> {
        self.partitions.write().map_err(|_| StorageError::Poisoned)
    }
}

/// Opens or creates a partition. fjall keeps the Bloom filter of every table of a partition in
/// memory, where its default keeps only those of level 0. A lookup checks the filter of each
/// table, and reading a filter from its file, with its checksum, took most of the writer's
/// time once the index had grown past level 0. The filters take about 1.25 bytes per token
/// below level 0 and 2.4 bytes in level 0. fjall keeps the options a keyspace was created
/// with, so partitions created before a change of these options keep theirs.
fn open_keyspace(db: &Database, name: &str) -> Result<Keyspace, StorageError> {
    Ok(db.keyspace(name, || {
        KeyspaceCreateOptions::default()
            .max_memtable_size(MEMTABLE_BYTES)
            .compaction_strategy(Arc::new(Leveled::default().with_l0_threshold(L0_THRESHOLD)))
            .filter_block_pinning_policy(PinningPolicy::all(true))
    })?)
}

fn commit(batch: OwnedWriteBatch, mode: PersistMode) -> Result<(), StorageError> {
    Ok(batch.durability(Some(mode)).commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_from_window() {
        assert_eq!(span_seconds(3600), 60);
        assert_eq!(span_seconds(60), 60);
        assert_eq!(span_seconds(60 * 600), 600);
        assert_eq!(span_seconds(60 * 610), 600);
        assert_eq!(span_seconds(30 * 24 * 3600), 12 * 3600);
        assert_eq!(span_seconds(120 * 24 * 3600), 24 * 3600);
    }

    #[test]
    fn keyspace_names_round_trip() {
        for (namespace_id, start_seconds, span) in
            [(1, 0, 60), (7, 1_800_000_000, 180), (2, -120, 60)]
        {
            let start = EventTime::from_micros(start_seconds * 1_000_000);
            let name = keyspace_name(namespace_id, start, span);
            assert_eq!(
                parse_keyspace_name(&name),
                Some(PartitionKey {
                    namespace_id,
                    start,
                    span_seconds: span
                }),
                "{name}"
            );
        }
        assert_eq!(parse_keyspace_name("tokens"), None);
        assert_eq!(parse_keyspace_name("tokens_1_60"), None);
        assert_eq!(parse_keyspace_name("tokens_1_0_60_9"), None);
        assert_eq!(parse_keyspace_name("events_1_0"), None);
    }
}
