//! The embedded backend: an LSM store (fjall) in a local data directory.
//!
//! Each namespace's log is split into one keyspace per time bucket, so retention deletes whole
//! keyspaces. fjall writes every batch to a checksummed journal; on recovery it truncates a torn
//! tail and keeps every whole batch. After a failed write or sync it poisons the database, and
//! Tally then rejects writes until restart instead of retrying.

use crate::StorageError;
use crate::checkpoint_blocks::CheckpointBlocks;
use crate::encoding::{self, bucket_keyspace_name, parse_bucket_keyspace_name};
use crate::error::read_failed;
use crate::journal::{self, JournalBound};
use crate::token_partitions::TokenPartitions;
use crate::traits::EventStore;
use crate::types::{
    AppendBatch, BUCKET_SECONDS, Checkpoint, CounterId, CounterRecord, NamespaceId,
    NamespaceRecord, RecoveredState, ScannedCounter, ScannedToken, StoredEvent, TokenEstimate,
    TokenRecord, bucket_of, slice_of,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Duration;
use tally_core::{CounterName, EventTime};
use tracing::{error, info, warn};

/// Version 5 splits the token index into partitions by event time (see `token_partitions`),
/// and reads the single token keyspace of version 4 until its tokens expire, so opening a
/// version 4 store only records version 5. Version 4 keeps checkpoints in blocks of
/// consecutive counter IDs (the `checkpoint_blocks` keyspace) instead of one per key
/// (`checkpoints`), and converts a version 3 store when it opens it. Version 3 adds the
/// `counter_runs` keyspace, which a start reads instead of the counters by name. Version 2
/// writes the events of a slice as one record, and version 1 wrote one key per event.
const FORMAT_VERSION: u32 = 5;

/// The format whose checkpoints [`EmbeddedStore::open`] converts, the oldest it opens.
const FORMAT_3: u32 = 3;

/// The format whose single token keyspace a store of [`FORMAT_VERSION`] reads as it is.
const FORMAT_4: u32 = 4;

/// The keyspace of format 3 that held one checkpoint per key.
const FORMAT_3_CHECKPOINTS: &str = "checkpoints";

/// Checkpoints that a conversion from format 3 writes per batch.
const CONVERSION_BATCH: usize = 100_000;
const KEY_FORMAT: &[u8] = b"format";
const KEY_LAST_EVENT_ID: &[u8] = b"last_event_id";
const KEY_LAST_COUNTER_ID: &[u8] = b"last_counter_id";

/// Journal bytes after which fjall flushes memtables to disk, the smallest it accepts (its
/// default is 512 MiB). A start replays the journal into memtables, so this bounds both the
/// time of that replay and the memory it takes.
const MAX_JOURNALING_BYTES: u64 = 64 * 1024 * 1024;

/// Number of fjall's background threads, which flush memtables and compact.
/// NOTE: fjall 3.1.13's worker pool misbehaves with one or two threads (read in its source
/// and seen in profiles). With one, the worker can deadlock: while it compacts, each write
/// batch to a full memtable queues a rotation request, the queue takes 1,000 messages, and the
/// worker then blocks on sending a flush message to its own full queue. One run of 5 minutes
/// of adds with tokens showed the symptom: an idle worker, 1.1 GB of journal and a growing
/// memtable. With more than one, worker 0 keeps to flushes and puts each compaction request it
/// receives back in the queue at once, so it spins while the others compact. With two, that
/// spin took about 40% of fjall's CPU in a profile of sustained adds with tokens. With three,
/// fjall used a quarter to a third less CPU, and the spin did not show in the same profile.
/// Worker 0 still spins while workers 1 and 2 both compact, which that profile found rare.
const FJALL_WORKER_THREADS: usize = 3;

/// How long a stop waits for fjall to write the memtables into tables.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// `read_checkpoints` reads requested IDs that lie at most this far apart in one range scan.
/// Starting a scan, like a lookup, may read and checksum a large index block. Stepping over an
/// unrequested checkpoint costs little, so a rollup over millions of counters reads their
/// checkpoints in a few scans instead of one lookup each.
const MAX_GAP_IN_SCAN: u64 = 64;

/// The persist mode of every sync: `fdatasync`, which writes the data and whatever metadata
/// reading it back needs, such as a new file size, but skips the modification time. Redis 7.0
/// syncs its append-only file the same way on Linux (`redis_fsync` in its `config.h`).
const SYNCED: PersistMode = PersistMode::SyncData;

/// When an appended batch counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After `fdatasync`: the batch survives a crash of the process, the OS and the machine.
    #[default]
    Sync,
    /// After `write` into the OS page cache: the batch survives `kill -9` of the server, but the
    /// last fraction of a second of writes may be lost if the machine or OS crashes.
    OsBuffer,
}

impl Durability {
    fn persist_mode(self) -> PersistMode {
        match self {
            Durability::Sync => SYNCED,
            Durability::OsBuffer => PersistMode::Buffer,
        }
    }
}

/// The default backend: one fjall database in the data directory.
pub struct EmbeddedStore {
    path: PathBuf,
    db: Database,
    durability: Durability,
    meta: Keyspace,
    namespaces: Keyspace,
    /// Counter IDs by namespace and name, for listing.
    counter_names: Keyspace,
    /// Counters by ID, in runs created by one group commit, for a start.
    counter_runs: Keyspace,
    checkpoints: CheckpointBlocks,
    /// Lock that a rollup holds while it reads and rewrites checkpoint blocks, because counters
    /// of several namespaces share a block.
    checkpoint_writes: Mutex<()>,
    tokens: TokenPartitions,
    /// Open bucket keyspaces by namespace and bucket start.
    buckets: RwLock<HashMap<(NamespaceId, EventTime), Keyspace>>,
    journal_bound: JournalBound,
}

impl EmbeddedStore {
    /// Opens or creates the store in `path`. Fails with [`StorageError::Locked`] when another
    /// process has it open.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StorageError> {
        std::fs::create_dir_all(path).map_err(|error| {
            error!(path = %path.display(), %error, "failed to create the data directory");
            StorageError::WriteFailed(format!("cannot create {}: {error}", path.display()))
        })?;
        let db = Database::builder(path)
            .manual_journal_persist(true)
            .max_journaling_size(MAX_JOURNALING_BYTES)
            .worker_threads(FJALL_WORKER_THREADS)
            .open()
            .map_err(|error| match error {
                fjall::Error::Locked => StorageError::Locked {
                    path: path.display().to_string(),
                },
                other => {
                    error!(path = %path.display(), error = %other, "failed to open the store");
                    StorageError::ReadFailed(format!("cannot open {}: {other}", path.display()))
                }
            })?;

        let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        let store = Self {
            path: path.to_owned(),
            meta: keyspace("meta")?,
            namespaces: keyspace("namespaces")?,
            counter_names: keyspace("counter_names")?,
            counter_runs: keyspace("counter_runs")?,
            checkpoints: CheckpointBlocks::new(keyspace(CheckpointBlocks::KEYSPACE)?),
            checkpoint_writes: Mutex::new(()),
            tokens: TokenPartitions::open(&db)?,
            buckets: RwLock::new(HashMap::new()),
            journal_bound: JournalBound::new(MAX_JOURNALING_BYTES),
            durability,
            db,
        };
        store.check_format()?;
        store.configure_token_partitions()?;
        store.open_existing_buckets()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of fjall's journal files, which a start replays into memtables.
    pub fn journal_bytes(&self) -> std::io::Result<u64> {
        journal::journal_bytes(&self.path)
    }

    /// Bytes in fjall's memtables: written to the journal but not yet into tables.
    pub fn memtable_bytes(&self) -> u64 {
        self.db.write_buffer_size()
    }

    fn check_format(&self) -> Result<(), StorageError> {
        let Some(bytes) = self.meta.get(KEY_FORMAT)? else {
            return self.record_format();
        };
        match <[u8; 4]>::try_from(bytes.as_ref()).map(u32::from_be_bytes) {
            Ok(FORMAT_VERSION) => self.drop_format_3_checkpoints(),
            Ok(FORMAT_4) => {
                info!(path = %self.path.display(), "recording store format {FORMAT_VERSION} \
                    over format 4. Its tokens stay in their keyspace until they expire");
                self.drop_format_3_checkpoints()?;
                self.record_format()
            }
            Ok(FORMAT_3) => self.convert_from_format_3(),
            Ok(found) => Err(self.unsupported_format(found)),
            Err(_) => Err(StorageError::Corrupt {
                keyspace: "meta".into(),
                detail: format!("store format {bytes:?} is not a 4-byte number"),
            }),
        }
    }

    fn unsupported_format(&self, found: u32) -> StorageError {
        let advice = if found > FORMAT_VERSION {
            "a newer tally wrote this directory, so run that version on it, or start this one on \
             an empty data directory"
        } else {
            "an older tally wrote this directory, so keep running that version on it, or start \
             this one on an empty data directory"
        };
        StorageError::UnsupportedFormat {
            path: self.path.display().to_string(),
            found,
            supported: FORMAT_VERSION,
            oldest_converted: FORMAT_3,
            advice,
        }
    }

    fn record_format(&self) -> Result<(), StorageError> {
        self.meta.insert(KEY_FORMAT, FORMAT_VERSION.to_be_bytes())?;
        self.db.persist(SYNCED)?;
        Ok(())
    }

    /// Gives the token index each namespace's idempotency window, which sets the span of its
    /// new partitions.
    fn configure_token_partitions(&self) -> Result<(), StorageError> {
        for item in self.namespaces.iter() {
            let (key, value) = item.into_inner().map_err(read_failed)?;
            let namespace = encoding::decode_namespace(&key, &value)?;
            self.tokens.configure(namespace.id, &namespace.config)?;
        }
        Ok(())
    }

    /// Converts a format 3 store: copies its checkpoints into blocks, records format 5 and then
    /// drops the old keyspace. A conversion cut short starts over at the next open and writes
    /// the same blocks again, because the format stays 3 and the old checkpoints stay until the
    /// new ones are written.
    fn convert_from_format_3(&self) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        info!(path = %self.path.display(), "converting the store from format 3 to format {FORMAT_VERSION}");
        let mut num_checkpoints = 0u64;
        let old = self
            .db
            .keyspace(FORMAT_3_CHECKPOINTS, KeyspaceCreateOptions::default)?;
        let mut pending = Vec::with_capacity(CONVERSION_BATCH);
        let mut items = old.iter();
        loop {
            let next = items.next();
            let finished = next.is_none();
            if let Some(item) = next {
                let (key, value) = item.into_inner().map_err(read_failed)?;
                let counter_id = encoding::Reader::new(FORMAT_3_CHECKPOINTS, &key).u64()?;
                pending.push((counter_id, encoding::decode_checkpoint(&value)?));
                if pending.len() < CONVERSION_BATCH {
                    continue;
                }
            }
            let _writing = self
                .checkpoint_writes
                .lock()
                .map_err(|_| StorageError::Poisoned)?;
            let mut batch = self.db.batch();
            self.checkpoints.write(&mut batch, &pending)?;
            num_checkpoints += pending.len() as u64;
            pending.clear();
            if finished {
                batch.insert(&self.meta, KEY_FORMAT, FORMAT_VERSION.to_be_bytes());
                self.commit(batch, SYNCED)?;
                break;
            }
            self.commit(batch, PersistMode::Buffer)?;
        }
        self.db.delete_keyspace(old)?;
        info!(
            num_checkpoints,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "converted the store to format {FORMAT_VERSION}"
        );
        Ok(())
    }

    /// Drops the format 3 checkpoints that remain when a conversion stopped after it recorded
    /// format 4.
    fn drop_format_3_checkpoints(&self) -> Result<(), StorageError> {
        if self.db.keyspace_exists(FORMAT_3_CHECKPOINTS) {
            let old = self
                .db
                .keyspace(FORMAT_3_CHECKPOINTS, KeyspaceCreateOptions::default)?;
            self.db.delete_keyspace(old)?;
        }
        Ok(())
    }

    fn open_existing_buckets(&self) -> Result<(), StorageError> {
        let mut buckets = self.buckets.write().map_err(|_| StorageError::Poisoned)?;
        for name in self.db.list_keyspace_names() {
            if let Some(key) = parse_bucket_keyspace_name(&name) {
                let handle = self.db.keyspace(&name, KeyspaceCreateOptions::default)?;
                buckets.insert(key, handle);
            }
        }
        Ok(())
    }

    /// Returns the keyspace of a bucket, creating it on first use.
    fn bucket(&self, namespace_id: NamespaceId, time: EventTime) -> Result<Keyspace, StorageError> {
        let start = bucket_of(time);
        if let Some(handle) = self
            .buckets
            .read()
            .map_err(|_| StorageError::Poisoned)?
            .get(&(namespace_id, start))
        {
            return Ok(handle.clone());
        }
        let mut buckets = self.buckets.write().map_err(|_| StorageError::Poisoned)?;
        let name = bucket_keyspace_name(namespace_id, start);
        let handle = self.db.keyspace(&name, KeyspaceCreateOptions::default)?;
        buckets.insert((namespace_id, start), handle.clone());
        Ok(handle)
    }

    /// Returns the namespace's bucket keyspaces that overlap `[from, until)`, oldest first.
    fn buckets_between(
        &self,
        namespace_id: NamespaceId,
        from: EventTime,
        until: EventTime,
    ) -> Result<Vec<Keyspace>, StorageError> {
        let first = bucket_of(from);
        let buckets = self.buckets.read().map_err(|_| StorageError::Poisoned)?;
        let mut selected: Vec<(EventTime, Keyspace)> = buckets
            .iter()
            .filter(|((namespace, start), _)| {
                *namespace == namespace_id && *start >= first && *start < until
            })
            .map(|((_, start), handle)| (*start, handle.clone()))
            .collect();
        selected.sort_by_key(|(start, _)| *start);
        Ok(selected.into_iter().map(|(_, handle)| handle).collect())
    }

    fn read_u64(&self, key: &[u8]) -> Result<u64, StorageError> {
        match self.meta.get(key).map_err(read_failed)? {
            None => Ok(0),
            Some(bytes) => encoding::Reader::new("meta", &bytes).u64(),
        }
    }

    /// Returns a handle of every open keyspace.
    fn all_keyspaces(&self) -> Vec<Keyspace> {
        let mut keyspaces = vec![
            self.meta.clone(),
            self.namespaces.clone(),
            self.counter_names.clone(),
            self.counter_runs.clone(),
            self.checkpoints.keyspace().clone(),
        ];
        match self.tokens.keyspaces() {
            Ok(partitions) => keyspaces.extend(partitions),
            Err(error) => {
                warn!(%error, "failed to list the token partitions, so they are not flushed")
            }
        }
        match self.buckets.read() {
            Ok(buckets) => keyspaces.extend(buckets.values().cloned()),
            Err(_) => warn!(
                "failed to list the buckets because their lock is poisoned, so they are not flushed"
            ),
        }
        keyspaces
    }

    /// Commits `batch` and persists the journal with persist mode `mode`.
    fn commit(&self, batch: fjall::OwnedWriteBatch, mode: PersistMode) -> Result<(), StorageError> {
        batch.durability(Some(mode)).commit().map_err(|error| {
            error!(path = %self.path.display(), %error, "failed to commit a write batch");
            StorageError::from(error)
        })
    }
}

/// Splits increasing IDs into runs whose neighbours lie at most [`MAX_GAP_IN_SCAN`] apart.
fn dense_runs(ids: &[CounterId]) -> impl Iterator<Item = &[CounterId]> {
    ids.chunk_by(|a, b| b.saturating_sub(*a) <= MAX_GAP_IN_SCAN)
}

/// Splits counters into runs of consecutive IDs.
fn consecutive_runs(counters: &[CounterRecord]) -> impl Iterator<Item = &[CounterRecord]> {
    counters.chunk_by(|before, after| before.id.checked_add(1) == Some(after.id))
}

/// Groups a batch's events by namespace and slice, keeping their order within each group.
fn group_by_slice(
    events: &[(NamespaceId, StoredEvent)],
) -> BTreeMap<(NamespaceId, EventTime), Vec<&StoredEvent>> {
    let mut groups: BTreeMap<_, Vec<&StoredEvent>> = BTreeMap::new();
    for (namespace_id, event) in events {
        groups
            .entry((*namespace_id, slice_of(event.key.time)))
            .or_default()
            .push(event);
    }
    groups
}

fn has_tokens(events: &[&StoredEvent]) -> bool {
    events.iter().any(|event| event.token.is_some())
}

/// The events of one slice, collected from all its records, which were written by different
/// group commits and so are not in time order.
#[derive(Default)]
struct SliceEvents {
    start: Option<EventTime>,
    events: Vec<StoredEvent>,
}

impl SliceEvents {
    /// Visits the collected events inside `[from, until)` in key order and empties the slice.
    fn visit_in_order(
        &mut self,
        from: EventTime,
        until: EventTime,
        visit: &mut dyn FnMut(StoredEvent),
    ) {
        self.events.sort_unstable_by_key(|event| event.key);
        for event in self.events.drain(..) {
            if event.key.time >= from && event.key.time < until {
                visit(event);
            }
        }
    }
}

impl EventStore for EmbeddedStore {
    fn recover(&self) -> Result<RecoveredState, StorageError> {
        let mut state = RecoveredState {
            last_event_id: self.read_u64(KEY_LAST_EVENT_ID)?,
            last_counter_id: self.read_u64(KEY_LAST_COUNTER_ID)?,
            ..RecoveredState::default()
        };
        for item in self.namespaces.iter() {
            let (key, value) = item.into_inner().map_err(read_failed)?;
            state
                .namespaces
                .push(encoding::decode_namespace(&key, &value)?);
        }
        Ok(state)
    }

    fn scan_counters(
        &self,
        ids: RangeInclusive<CounterId>,
        visit: &mut dyn FnMut(ScannedCounter<'_>),
    ) -> Result<(), StorageError> {
        if ids.is_empty() {
            return Ok(());
        }
        let (first, last) = (*ids.start(), *ids.end());
        let mut checkpoints = self.checkpoints.range(first, last).peekable();
        let mut take_checkpoint = |id: CounterId| -> Result<Option<Checkpoint>, StorageError> {
            match checkpoints.next_if(|item| item.as_ref().map_or(true, |(found, _)| *found <= id))
            {
                None => Ok(None),
                Some(Err(error)) => Err(error),
                Some(Ok((found, checkpoint))) if found == id => Ok(Some(checkpoint)),
                Some(Ok((found, _))) => Err(StorageError::checkpoint_without_counter(found)),
            }
        };
        // The run that contains `first` may start before it.
        let runs_start = match self.counter_runs.range(..=first.to_be_bytes()).next_back() {
            Some(item) => item.key().map_err(read_failed)?.to_vec(),
            None => first.to_be_bytes().to_vec(),
        };
        for item in self
            .counter_runs
            .range(runs_start..=last.to_be_bytes().to_vec())
        {
            let (key, value) = item.into_inner().map_err(read_failed)?;
            let first_id = encoding::Reader::new("counter_runs", &key).u64()?;
            encoding::decode_counter_run(first_id, &value, &mut |id, namespace_id, name| {
                if !ids.contains(&id) {
                    return Ok(());
                }
                CounterName::check(name).map_err(|error| StorageError::Corrupt {
                    keyspace: "counter_runs".into(),
                    detail: error.to_string(),
                })?;
                visit(ScannedCounter {
                    id,
                    namespace_id,
                    name,
                    checkpoint: take_checkpoint(id)?,
                });
                Ok(())
            })?;
        }
        match checkpoints.next() {
            None => Ok(()),
            Some(Err(error)) => Err(error),
            Some(Ok((found, _))) => Err(StorageError::checkpoint_without_counter(found)),
        }
    }

    fn put_namespace(&self, namespace: &NamespaceRecord) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        batch.insert(
            &self.namespaces,
            namespace.name.as_str().as_bytes(),
            encoding::namespace_value(namespace),
        );
        self.commit(batch, SYNCED)?;
        self.tokens.configure(namespace.id, &namespace.config)
    }

    fn append(&self, append: &AppendBatch) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        for counter in &append.new_counters {
            batch.insert(
                &self.counter_names,
                encoding::counter_key(counter.namespace_id, counter.name.as_str()),
                counter.id.to_be_bytes(),
            );
        }
        for run in consecutive_runs(&append.new_counters) {
            batch.insert(
                &self.counter_runs,
                run[0].id.to_be_bytes(),
                encoding::counter_run_value(run),
            );
        }
        let slices = group_by_slice(&append.events);
        let token_times: Vec<(NamespaceId, EventTime)> = slices
            .iter()
            .filter(|(_, events)| has_tokens(events))
            .map(|(key, _)| *key)
            .collect();
        // Held until the batch is committed, so that expiry cannot delete a partition that the
        // batch writes to.
        let tokens = self.tokens.writer(&token_times)?;
        for ((namespace_id, slice_start), events) in slices {
            let bucket = self.bucket(namespace_id, slice_start)?;
            let token_partition = if has_tokens(&events) {
                Some(tokens.partition(namespace_id, slice_start)?)
            } else {
                None
            };
            let first_id = events.iter().map(|event| event.key.id).min().unwrap_or(0);
            batch.insert(
                &bucket,
                encoding::slice_record_key(slice_start, first_id),
                encoding::slice_record_value(slice_start, first_id, &events),
            );
            for event in events {
                let (Some(token), Some(partition)) = (&event.token, token_partition) else {
                    continue;
                };
                let record = TokenRecord {
                    event_id: event.key.id,
                    event_time: event.key.time,
                    kind: event.kind,
                };
                batch.insert(
                    partition,
                    encoding::token_key(namespace_id, event.counter_id, token),
                    encoding::token_value(&record),
                );
            }
        }
        batch.insert(
            &self.meta,
            KEY_LAST_EVENT_ID,
            append.last_event_id.to_be_bytes(),
        );
        batch.insert(
            &self.meta,
            KEY_LAST_COUNTER_ID,
            append.last_counter_id.to_be_bytes(),
        );
        let committed = self.commit(batch, self.durability.persist_mode());
        drop(tokens);
        // Every append writes to `meta`, so its memtable is not empty here.
        self.journal_bound.check(&self.db, &self.path, &self.meta);
        committed
    }

    fn find_token(
        &self,
        namespace_id: NamespaceId,
        counter_id: CounterId,
        token: &str,
    ) -> Result<Option<TokenRecord>, StorageError> {
        self.tokens.find(namespace_id, counter_id, token)
    }

    fn scan_tokens(&self, visit: &mut dyn FnMut(ScannedToken<'_>)) -> Result<(), StorageError> {
        self.tokens.scan(visit)
    }

    fn estimate_tokens(&self) -> Result<Option<Vec<TokenEstimate>>, StorageError> {
        self.tokens.estimate()
    }

    fn close(&self) -> Result<(), StorageError> {
        if !journal::flush_all(&self.db, &self.all_keyspaces(), CLOSE_FLUSH_TIMEOUT) {
            warn!(
                timeout_seconds = CLOSE_FLUSH_TIMEOUT.as_secs(),
                "the memtables were not all flushed in time; the next start replays the journal"
            );
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
        if from >= until {
            return Ok(());
        }
        let start = encoding::time_prefix(slice_of(from));
        let end = encoding::time_prefix(until);
        let mut slice = SliceEvents::default();
        for bucket in self.buckets_between(namespace_id, from, until)? {
            for item in bucket.range(start..end) {
                let (key, value) = item.into_inner().map_err(read_failed)?;
                let slice_start = encoding::decode_slice_record_key(&key)?;
                if slice.start != Some(slice_start) {
                    slice.visit_in_order(from, until, visit);
                    slice.start = Some(slice_start);
                }
                encoding::decode_slice_record(slice_start, &value, &mut slice.events)?;
            }
        }
        slice.visit_in_order(from, until, visit);
        Ok(())
    }

    fn read_checkpoint(&self, counter_id: CounterId) -> Result<Option<Checkpoint>, StorageError> {
        self.checkpoints.get(counter_id)
    }

    fn read_checkpoints(
        &self,
        counter_ids: &[CounterId],
    ) -> Result<Vec<Option<Checkpoint>>, StorageError> {
        let mut found = Vec::with_capacity(counter_ids.len());
        for run in dense_runs(counter_ids) {
            let (first, last) = (run[0], run[run.len() - 1]);
            let mut requested = run.iter().peekable();
            for item in self.checkpoints.range(first, last) {
                let (counter_id, checkpoint) = item?;
                while requested
                    .next_if(|requested| **requested < counter_id)
                    .is_some()
                {
                    found.push(None);
                }
                if requested
                    .next_if(|requested| **requested == counter_id)
                    .is_some()
                {
                    found.push(Some(checkpoint));
                }
            }
            found.extend(requested.map(|_| None));
        }
        Ok(found)
    }

    fn write_rollup(
        &self,
        namespace: &NamespaceRecord,
        checkpoints: &[(CounterId, Checkpoint)],
    ) -> Result<(), StorageError> {
        let mut sorted;
        let checkpoints = if checkpoints.is_sorted_by_key(|(id, _)| *id) {
            checkpoints
        } else {
            sorted = checkpoints.to_vec();
            sorted.sort_by_key(|(id, _)| *id);
            &sorted[..]
        };
        let _writing = self
            .checkpoint_writes
            .lock()
            .map_err(|_| StorageError::Poisoned)?;
        let mut batch = self.db.batch();
        self.checkpoints.write(&mut batch, checkpoints)?;
        batch.insert(
            &self.namespaces,
            namespace.name.as_str().as_bytes(),
            encoding::namespace_value(namespace),
        );
        self.commit(batch, SYNCED)
    }

    fn drop_buckets_before(
        &self,
        namespace_id: NamespaceId,
        before: EventTime,
    ) -> Result<usize, StorageError> {
        let mut buckets = self.buckets.write().map_err(|_| StorageError::Poisoned)?;
        let expired: Vec<(NamespaceId, EventTime)> = buckets
            .keys()
            .filter(|(namespace, start)| {
                *namespace == namespace_id && start.plus_seconds(BUCKET_SECONDS) <= before
            })
            .copied()
            .collect();
        for key in &expired {
            if let Some(handle) = buckets.remove(key) {
                self.db.delete_keyspace(handle).map_err(|error| {
                    error!(path = %self.path.display(), %error, "failed to drop a time bucket");
                    StorageError::from(error)
                })?;
            }
        }
        if !expired.is_empty() {
            info!(
                namespace_id,
                num_buckets = expired.len(),
                "dropped expired time buckets"
            );
        }
        Ok(expired.len())
    }

    /// Deletes the token partitions that lie wholly before `before` (see `token_partitions`).
    fn expire_tokens(
        &self,
        namespace_id: NamespaceId,
        before: EventTime,
    ) -> Result<usize, StorageError> {
        self.tokens
            .expire(namespace_id, before, self.durability.persist_mode())
    }

    fn list_counters(
        &self,
        namespace_id: NamespaceId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let prefix = namespace_id.to_be_bytes();
        let start = encoding::counter_key(namespace_id, after.unwrap_or(""));
        let mut names = Vec::new();
        for item in self.counter_names.range(start..) {
            let key = item.key().map_err(read_failed)?;
            let Some(name_bytes) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            let name = encoding::Reader::new("counter_names", name_bytes).rest_utf8()?;
            if after == Some(name) {
                continue;
            }
            if names.len() == limit {
                break;
            }
            names.push(name.to_owned());
        }
        Ok(names)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.db.persist(SYNCED).map_err(|error| {
            error!(path = %self.path.display(), %error, "failed to sync the store");
            StorageError::from(error)
        })
    }
}
