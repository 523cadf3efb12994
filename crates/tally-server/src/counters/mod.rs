//! The table of durable counters in memory: each counter's ID and running state.
//!
//! A single node keeps every counter it has ever written in this table, so its size per counter
//! decides how many counters fit in memory. A counter takes one 32-byte slot in a hash table
//! plus its name in an append-only arena. The keys of its latest events, needed only to place
//! an event that arrives out of time order, are kept in a slab (`tail_slab`) that the slot
//! refers to while the counter has events in the unsealed tail, and dropped once a rollup seals
//! them.
//!
//! The table is split into shards, each behind its own lock, so readers on the front ends rarely
//! wait for the writer thread.

mod tail_slab;

use crossbeam_utils::CachePadded;
use std::sync::RwLock;

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use tail_slab::{TailKeys, TailRef, TailSlab};
use tally_core::{CounterState, EventTime};
use tally_storage::{CounterId, NamespaceId};

/// Number of shards; a power of two.
const NUM_SHARDS: usize = 64;

/// Counters that a [`BulkInsert`] buffers per shard before it takes the shard's lock and
/// inserts them in bucket order: 40 bytes per counter plus its name, so about 330 KB plus
/// names per shard and loading thread.
const BULK_BATCH: usize = 8192;

/// Size of one chunk of the name arena. A name (at most 256 bytes plus its length) never spans
/// two chunks.
const ARENA_CHUNK_BYTES: usize = 64 * 1024;

/// A durable counter: its ID in the store and its running state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterEntry {
    pub id: CounterId,
    pub state: CounterState,
}

/// Position of a counter found by a lookup: its shard and bucket, valid while the shard's table
/// keeps its capacity. Only the writer thread inserts, so between its own lookup and its own
/// update nothing else can move the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    shard: usize,
    bucket: usize,
    capacity: usize,
    hash: u64,
}

/// The durable counters of a node.
pub struct CounterTable {
    /// Padded so that threads working on neighbouring shards do not share cache lines.
    shards: Box<[CachePadded<RwLock<Shard>>]>,
    hasher: DefaultHashBuilder,
}

impl Default for CounterTable {
    fn default() -> Self {
        Self {
            shards: (0..NUM_SHARDS)
                .map(|_| CachePadded::new(RwLock::new(Shard::default())))
                .collect(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl CounterTable {
    /// Returns the counter's entry, if it was ever written.
    pub fn get(&self, namespace_id: NamespaceId, name: &str) -> Option<CounterEntry> {
        let hash = self.hash(namespace_id, name);
        let shard = read(&self.shards[shard_index(hash)]);
        shard.get(hash, namespace_id, name)
    }

    /// Returns the counter's entry and where it was found, for a later [`Self::update_at`].
    /// The writer uses [`Self::get_many_located`], and tests use this as its reference.
    #[cfg(test)]
    pub fn get_located(
        &self,
        namespace_id: NamespaceId,
        name: &str,
    ) -> Option<(CounterEntry, Location)> {
        let hash = self.hash(namespace_id, name);
        let shard_index = shard_index(hash);
        read(&self.shards[shard_index]).get_located(shard_index, hash, namespace_id, name)
    }

    /// Looks up many counters as `Self::get_located` does, in order. It takes each shard's
    /// lock once for all of its counters, so the lookups' reads from memory can overlap instead
    /// of each waiting behind a lock operation.
    pub fn get_many_located(
        &self,
        keys: &[(NamespaceId, &str)],
    ) -> Vec<Option<(CounterEntry, Location)>> {
        let mut hashed: Vec<(usize, u64, usize)> = keys
            .iter()
            .enumerate()
            .map(|(index, (namespace_id, name))| {
                let hash = self.hash(*namespace_id, name);
                (shard_index(hash), hash, index)
            })
            .collect();
        hashed.sort_unstable_by_key(|(shard_index, _, _)| *shard_index);
        let mut found = vec![None; keys.len()];
        for group in hashed.chunk_by(|a, b| a.0 == b.0) {
            let shard_index = group[0].0;
            let shard = read(&self.shards[shard_index]);
            for &(_, hash, index) in group {
                let (namespace_id, name) = keys[index];
                found[index] = shard.get_located(shard_index, hash, namespace_id, name);
            }
        }
        found
    }

    /// Replaces the entry of a counter found at `location`, without looking its name up
    /// again. Falls back to [`Self::insert`] when the shard's table has grown since.
    pub fn update_at(
        &self,
        location: Location,
        namespace_id: NamespaceId,
        name: &str,
        entry: CounterEntry,
    ) {
        {
            let mut shard = write(&self.shards[location.shard]);
            if shard.slots.capacity() == location.capacity {
                let Shard { slots, tails, .. } = &mut *shard;
                let slot = slots.get_bucket_mut(location.bucket);
                if let Some(slot) = slot.filter(|slot| slot.id == entry.id) {
                    slot.value = entry.state.value;
                    set_tail(tails, slot, location.hash, namespace_id, entry);
                    return;
                }
            }
        }
        self.insert(namespace_id, name, entry);
    }

    /// Inserts a counter or replaces its entry.
    pub fn insert(&self, namespace_id: NamespaceId, name: &str, entry: CounterEntry) {
        let hash = self.hash(namespace_id, name);
        let mut shard = write(&self.shards[shard_index(hash)]);
        shard.upsert(&self.hasher, hash, namespace_id, name, entry);
    }

    /// Returns a loader that inserts counters known to be absent, as recovery does.
    pub fn bulk_insert(&self) -> BulkInsert<'_> {
        BulkInsert {
            table: self,
            pending: (0..NUM_SHARDS).map(|_| Pending::default()).collect(),
        }
    }

    /// Makes room for `counters` more counters, of which `tails` have events in the unsealed
    /// tail, spread over the shards by their hashes.
    pub fn reserve(&self, counters: usize, tails: usize) {
        let per_shard = share_with_margin(counters);
        let tails_per_shard = share_with_margin(tails);
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            let Shard {
                slots,
                names,
                tails,
                ..
            } = &mut *shard;
            slots.reserve(per_shard, |slot| {
                self.hasher
                    .hash_one((slot.namespace_id, names.get(slot.name)))
            });
            tails.reserve(tails_per_shard);
        }
    }

    /// Number of counters. It reads every shard, because a shared count would make threads
    /// that insert at once contend for one cache line.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| read(shard).slots.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of counters of one namespace.
    pub fn count_in(&self, namespace_id: NamespaceId) -> usize {
        self.shards
            .iter()
            .map(|shard| read(shard).count_in(namespace_id))
            .sum()
    }

    /// Forgets the tail keys of the namespace's counters whose latest event lies before
    /// `sealed_until`. Every later event lies at or after that bound, so for it those keys
    /// decide nothing: an add counts and a clear resets to zero either way.
    pub fn release_sealed_tails(&self, namespace_id: NamespaceId, sealed_until: EventTime) {
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            let Shard { slots, tails, .. } = &mut *shard;
            for (hash, tail) in tails.release_sealed(namespace_id, sealed_until) {
                if let Some(slot) = slots.find_mut(hash, |slot| slot.tail == tail) {
                    slot.tail = 0;
                }
            }
        }
    }

    /// Number of counters whose tail keys are kept.
    pub fn num_tails(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| read(shard).tails.len())
            .sum()
    }

    fn hash(&self, namespace_id: NamespaceId, name: &str) -> u64 {
        self.hasher.hash_one((namespace_id, name.as_bytes()))
    }
}

/// Inserts counters known to be absent in batches per shard. Threads that load counters at
/// once then take each shard's lock once per batch instead of once per counter. Counters
/// become visible when their batch is full or at [`BulkInsert::finish`].
pub struct BulkInsert<'a> {
    table: &'a CounterTable,
    pending: Vec<Pending>,
}

/// The counters buffered for one shard, with their names in one buffer and the tail keys of
/// those that have them apart, so that a buffered counter takes 40 bytes.
#[derive(Default)]
struct Pending {
    names: Vec<u8>,
    counters: Vec<PendingCounter>,
    tails: Vec<TailKeys>,
}

struct PendingCounter {
    hash: u64,
    id: CounterId,
    value: i64,
    namespace_id: NamespaceId,
    /// Start of the name in [`Pending::names`].
    name_start: u32,
    name_len: u16,
    /// Position plus one of the tail keys in [`Pending::tails`], or 0 for none.
    tail: u32,
}

impl BulkInsert<'_> {
    /// Adds a counter that is not in the table and that no other call adds.
    pub fn insert(&mut self, namespace_id: NamespaceId, name: &str, entry: CounterEntry) {
        let hash = self.table.hash(namespace_id, name);
        let index = shard_index(hash);
        let pending = &mut self.pending[index];
        let name_start = pending.names.len() as u32;
        pending.names.extend_from_slice(name.as_bytes());
        let mut tail = 0;
        if let Some(keys) = TailKeys::of(namespace_id, entry.state) {
            pending.tails.push(keys);
            tail = pending.tails.len() as u32;
        }
        pending.counters.push(PendingCounter {
            hash,
            id: entry.id,
            value: entry.state.value,
            namespace_id,
            name_start,
            // Names are at most 256 bytes, see `tally_core::CounterName`.
            name_len: name.len() as u16,
            tail,
        });
        if pending.counters.len() == BULK_BATCH {
            self.flush(index);
        }
    }

    /// Inserts every buffered counter.
    pub fn finish(mut self) {
        for index in 0..NUM_SHARDS {
            self.flush(index);
        }
    }

    /// Inserts the counters buffered for one shard in the order of their buckets, so that the
    /// table's memory is written in address order instead of at random.
    fn flush(&mut self, index: usize) {
        let pending = &mut self.pending[index];
        if pending.counters.is_empty() {
            return;
        }
        let mut shard = write(&self.table.shards[index]);
        let mask = shard.bucket_mask();
        pending
            .counters
            .sort_unstable_by_key(|counter| counter.hash as usize & mask);
        shard.tails.reserve(pending.tails.len());
        for counter in pending.counters.drain(..) {
            let start = counter.name_start as usize;
            let name = &pending.names[start..start + usize::from(counter.name_len)];
            debug_assert!(
                shard
                    .find(counter.hash, counter.namespace_id, name)
                    .is_none()
            );
            let slot = Slot {
                id: counter.id,
                value: counter.value,
                namespace_id: counter.namespace_id,
                name: shard.names.push(name),
                tail: match counter.tail {
                    0 => 0,
                    tail => shard
                        .tails
                        .insert(pending.tails[tail as usize - 1], counter.hash),
                },
            };
            shard.push_slot(&self.table.hasher, counter.hash, slot);
        }
        pending.names.clear();
        pending.tails.clear();
    }
}

/// Returns room for one shard's share of `total` items spread by hash: the mean plus four
/// standard deviations (a share is binomial, with a deviation of about the mean's square root).
/// Without the margin, about half the shards outgrow their room during a load, and growing
/// copies a shard's table or slab into new memory, which the kernel must first zero.
fn share_with_margin(total: usize) -> usize {
    let mean = total.div_ceil(NUM_SHARDS);
    mean + 4 * mean.isqrt() + 16
}

/// Picks a shard from hash bits that the shard's own table does not use: it takes its bucket
/// index from the low bits and its tag from the top seven.
fn shard_index(hash: u64) -> usize {
    (hash >> 32) as usize & (NUM_SHARDS - 1)
}

fn read(lock: &RwLock<Shard>) -> std::sync::RwLockReadGuard<'_, Shard> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(lock: &RwLock<Shard>) -> std::sync::RwLockWriteGuard<'_, Shard> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One counter in a shard's table.
#[derive(Clone, Copy)]
struct Slot {
    id: CounterId,
    value: i64,
    namespace_id: NamespaceId,
    /// Position of the name in the shard's arena.
    name: u32,
    /// The counter's tail keys in the shard's [`TailSlab`], if it has events in the tail.
    tail: TailRef,
}

// The module documentation and the memory figures in BENCHMARKS.md count on this size.
const _: () = assert!(std::mem::size_of::<Slot>() == 32);

#[derive(Default)]
struct Shard {
    slots: HashTable<Slot>,
    names: NameArena,
    tails: TailSlab,
    /// Number of counters per namespace. A node has few namespaces, so a list is searched.
    counts: Vec<(NamespaceId, usize)>,
}

impl Shard {
    /// Returns the mask that picks a hash's first bucket, assuming hashbrown's layout (read in
    /// its 0.16 source): a power of two buckets, seven eighths of them usable, indexed by the
    /// hash's low bits. Only the speed of [`BulkInsert`] depends on it being right.
    fn bucket_mask(&self) -> usize {
        (self.slots.capacity() / 7 * 8).next_power_of_two() - 1
    }

    fn get(&self, hash: u64, namespace_id: NamespaceId, name: &str) -> Option<CounterEntry> {
        let slot = self.find(hash, namespace_id, name.as_bytes())?;
        Some(self.entry(slot))
    }

    fn get_located(
        &self,
        shard_index: usize,
        hash: u64,
        namespace_id: NamespaceId,
        name: &str,
    ) -> Option<(CounterEntry, Location)> {
        let bucket = self
            .slots
            .find_bucket_index(hash, self.names.matcher(namespace_id, name.as_bytes()))?;
        let location = Location {
            shard: shard_index,
            bucket,
            capacity: self.slots.capacity(),
            hash,
        };
        let slot = self.slots.get_bucket(bucket)?;
        Some((self.entry(slot), location))
    }

    fn find(&self, hash: u64, namespace_id: NamespaceId, name: &[u8]) -> Option<&Slot> {
        self.slots
            .find(hash, self.names.matcher(namespace_id, name))
    }

    fn entry(&self, slot: &Slot) -> CounterEntry {
        let tail = self.tails.get(slot.tail);
        CounterEntry {
            id: slot.id,
            state: CounterState {
                value: slot.value,
                latest_clear: tail.and_then(|tail| tail.latest_clear),
                latest_event: tail.and_then(|tail| tail.latest_event),
            },
        }
    }

    /// Inserts or replaces.
    fn upsert(
        &mut self,
        hasher: &DefaultHashBuilder,
        hash: u64,
        namespace_id: NamespaceId,
        name: &str,
        entry: CounterEntry,
    ) {
        let Shard {
            slots,
            names,
            tails,
            ..
        } = self;
        let existing = slots.find_mut(hash, names.matcher(namespace_id, name.as_bytes()));
        if let Some(slot) = existing {
            slot.value = entry.state.value;
            slot.id = entry.id;
            set_tail(tails, slot, hash, namespace_id, entry);
            return;
        }
        self.push(hasher, hash, namespace_id, name.as_bytes(), entry);
    }

    /// Adds a counter known to be absent.
    fn push(
        &mut self,
        hasher: &DefaultHashBuilder,
        hash: u64,
        namespace_id: NamespaceId,
        name: &[u8],
        entry: CounterEntry,
    ) {
        let tail = match TailKeys::of(namespace_id, entry.state) {
            Some(keys) => self.tails.insert(keys, hash),
            None => 0,
        };
        let slot = Slot {
            id: entry.id,
            value: entry.state.value,
            namespace_id,
            name: self.names.push(name),
            tail,
        };
        self.push_slot(hasher, hash, slot);
    }

    /// Adds the slot of a counter known to be absent, whose name is already in the arena.
    fn push_slot(&mut self, hasher: &DefaultHashBuilder, hash: u64, slot: Slot) {
        match self
            .counts
            .iter_mut()
            .find(|(id, _)| *id == slot.namespace_id)
        {
            Some((_, count)) => *count += 1,
            None => self.counts.push((slot.namespace_id, 1)),
        }
        let Shard { slots, names, .. } = self;
        slots.insert_unique(hash, slot, |slot| {
            hasher.hash_one((slot.namespace_id, names.get(slot.name)))
        });
    }

    fn count_in(&self, namespace_id: NamespaceId) -> usize {
        self.counts
            .iter()
            .find(|(id, _)| *id == namespace_id)
            .map_or(0, |(_, count)| *count)
    }
}

/// Stores the tail keys of the entry for its slot, whose hash is `hash`, or removes them when
/// it has none.
fn set_tail(
    tails: &mut TailSlab,
    slot: &mut Slot,
    hash: u64,
    namespace_id: NamespaceId,
    entry: CounterEntry,
) {
    match (TailKeys::of(namespace_id, entry.state), slot.tail) {
        (Some(keys), 0) => slot.tail = tails.insert(keys, hash),
        (Some(keys), tail) => tails.replace(tail, keys),
        (None, 0) => {}
        (None, tail) => {
            tails.remove(tail);
            slot.tail = 0;
        }
    }
}

/// Append-only storage of names: each is a little-endian `u16` length and the bytes, in chunks
/// of [`ARENA_CHUNK_BYTES`], addressed by chunk number and offset packed into a `u32`.
#[derive(Default)]
struct NameArena {
    chunks: Vec<Vec<u8>>,
}

impl NameArena {
    fn push(&mut self, name: &[u8]) -> u32 {
        let needed = 2 + name.len();
        let full = self
            .chunks
            .last()
            .is_none_or(|chunk| chunk.len() + needed > ARENA_CHUNK_BYTES);
        if full {
            self.chunks.push(Vec::with_capacity(ARENA_CHUNK_BYTES));
        }
        let chunk_index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[chunk_index];
        let offset = chunk.len();
        // Names are at most 256 bytes, see `tally_core::CounterName`.
        chunk.extend_from_slice(&(name.len() as u16).to_le_bytes());
        chunk.extend_from_slice(name);
        ((chunk_index as u32) << 16) | offset as u32
    }

    /// Returns a predicate that matches the slot of counter `name` in namespace `namespace_id`.
    fn matcher<'a>(
        &'a self,
        namespace_id: NamespaceId,
        name: &'a [u8],
    ) -> impl Fn(&Slot) -> bool + 'a {
        move |slot| slot.namespace_id == namespace_id && self.get(slot.name) == name
    }

    fn get(&self, at: u32) -> &[u8] {
        let chunk = &self.chunks[(at >> 16) as usize];
        let offset = (at & 0xffff) as usize;
        let len = usize::from(u16::from_le_bytes([chunk[offset], chunk[offset + 1]]));
        &chunk[offset + 2..offset + 2 + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::EventKey;

    fn key(seconds: i64, id: u64) -> EventKey {
        EventKey {
            time: EventTime::from_micros(seconds * 1_000_000),
            id,
        }
    }

    fn entry(id: CounterId, value: i64, latest_event: Option<EventKey>) -> CounterEntry {
        CounterEntry {
            id,
            state: CounterState {
                value,
                latest_clear: None,
                latest_event,
            },
        }
    }

    #[test]
    fn get_returns_what_was_inserted() {
        let table = CounterTable::default();
        assert_eq!(table.get(1, "a"), None);
        table.insert(1, "a", entry(7, 5, Some(key(10, 3))));
        table.insert(2, "a", entry(8, -1, None));
        assert_eq!(table.get(1, "a"), Some(entry(7, 5, Some(key(10, 3)))));
        assert_eq!(table.get(2, "a"), Some(entry(8, -1, None)));
        assert_eq!(table.get(1, "b"), None);
        assert_eq!(table.len(), 2);

        table.insert(1, "a", entry(7, 9, Some(key(11, 4))));
        assert_eq!(table.get(1, "a"), Some(entry(7, 9, Some(key(11, 4)))));
        assert_eq!(table.len(), 2);
        assert_eq!(
            (table.count_in(1), table.count_in(2), table.count_in(3)),
            (1, 1, 0)
        );
    }

    #[test]
    fn many_names_of_every_length_survive_growth() {
        let table = CounterTable::default();
        let name = |i: usize| format!("{i}-{}", "x".repeat(i % 250));
        for i in 0..20_000 {
            table.insert(1, &name(i), entry(i as u64, i as i64, None));
        }
        assert_eq!(table.len(), 20_000);
        for i in 0..20_000 {
            assert_eq!(
                table.get(1, &name(i)),
                Some(entry(i as u64, i as i64, None))
            );
        }
    }

    #[test]
    fn bulk_insert_after_reserve_matches_insert() {
        let reserved = CounterTable::default();
        let plain = CounterTable::default();
        reserved.reserve(5_000, 2_500);
        let capacities = |table: &CounterTable| -> Vec<(usize, usize)> {
            table
                .shards
                .iter()
                .map(|shard| {
                    let shard = read(shard);
                    (shard.slots.capacity(), shard.tails.capacity())
                })
                .collect()
        };
        let reserved_capacities = capacities(&reserved);
        let mut bulk = reserved.bulk_insert();
        for i in 0..5_000u64 {
            let name = format!("counter:{i}");
            let tail = (i % 2 == 0).then(|| key(i as i64, i));
            bulk.insert(1, &name, entry(i, -(i as i64), tail));
            plain.insert(1, &name, entry(i, -(i as i64), tail));
        }
        bulk.finish();
        assert_eq!(reserved.len(), 5_000);
        assert_eq!(reserved.num_tails(), 2_500);
        // The margin kept every shard from growing.
        assert_eq!(capacities(&reserved), reserved_capacities);
        for i in 0..5_000u64 {
            let name = format!("counter:{i}");
            assert_eq!(reserved.get(1, &name), plain.get(1, &name));
            assert!(reserved.get(1, &name).is_some());
        }
    }

    #[test]
    fn bulk_insert_of_several_batches_per_shard() {
        let table = CounterTable::default();
        let num_counters = (NUM_SHARDS * BULK_BATCH * 3 / 2) as u64;
        table.reserve(num_counters as usize / 2, 0);
        let mut bulk = table.bulk_insert();
        for i in 0..num_counters {
            let tail = (i % 1_000 == 0).then(|| key(i as i64, i));
            bulk.insert(
                (i % 3) as NamespaceId,
                &format!("c{i}"),
                entry(i, i as i64, tail),
            );
        }
        bulk.finish();
        assert_eq!(table.len(), num_counters as usize);
        assert_eq!(table.num_tails(), num_counters.div_ceil(1_000) as usize);
        for namespace_id in 0..3u64 {
            let expected = (0..num_counters).filter(|i| i % 3 == namespace_id).count();
            assert_eq!(table.count_in(namespace_id as NamespaceId), expected);
        }
        for i in 0..num_counters {
            let tail = (i % 1_000 == 0).then(|| key(i as i64, i));
            let found = table.get((i % 3) as NamespaceId, &format!("c{i}"));
            assert_eq!(found, Some(entry(i, i as i64, tail)), "counter c{i}");
        }
    }

    #[test]
    fn get_many_located_matches_get_located() {
        let table = CounterTable::default();
        for i in 0..2_000u64 {
            let tail = (i % 3 == 0).then(|| key(i as i64, i));
            table.insert(
                (i % 2) as NamespaceId,
                &format!("c{i}"),
                entry(i, i as i64, tail),
            );
        }
        let names: Vec<String> = (0..2_100).map(|i| format!("c{}", i * 7 % 2_100)).collect();
        let keys: Vec<(NamespaceId, &str)> = names
            .iter()
            .enumerate()
            .map(|(index, name)| ((index % 3) as NamespaceId, name.as_str()))
            .collect();

        let many = table.get_many_located(&keys);

        let single: Vec<_> = keys
            .iter()
            .map(|(namespace_id, name)| table.get_located(*namespace_id, name))
            .collect();
        assert_eq!(many, single);
        assert!(many.iter().flatten().count() > 500);
        assert!(many.iter().any(Option::is_none));
        assert_eq!(table.get_many_located(&[]), []);
    }

    #[test]
    fn update_at_location_replaces_entry() {
        let table = CounterTable::default();
        table.insert(1, "a", entry(7, 5, Some(key(10, 3))));
        let (found, location) = table.get_located(1, "a").unwrap();
        assert_eq!(found, entry(7, 5, Some(key(10, 3))));

        table.update_at(location, 1, "a", entry(7, 6, None));

        assert_eq!(table.get(1, "a"), Some(entry(7, 6, None)));
        assert_eq!(table.len(), 1);
        assert_eq!(table.num_tails(), 0);
    }

    #[test]
    fn update_at_after_growth_still_finds_counter() {
        let table = CounterTable::default();
        table.insert(1, "a", entry(7, 5, None));
        let (_, location) = table.get_located(1, "a").unwrap();
        // Enough new counters to grow every shard's table, which moves its slots.
        for i in 0..10_000u64 {
            table.insert(1, &format!("other-{i}"), entry(100 + i, 0, None));
        }

        table.update_at(location, 1, "a", entry(7, 9, Some(key(20, 4))));

        assert_eq!(table.get(1, "a"), Some(entry(7, 9, Some(key(20, 4)))));
        assert_eq!(table.len(), 10_001);
        for i in 0..10_000u64 {
            let name = format!("other-{i}");
            assert_eq!(table.get(1, &name), Some(entry(100 + i, 0, None)));
        }
    }

    #[test]
    fn longest_name_fits() {
        let table = CounterTable::default();
        let name = "\u{e4}".repeat(128);
        assert_eq!(name.len(), 256);
        table.insert(3, &name, entry(1, 1, None));
        assert_eq!(table.get(3, &name), Some(entry(1, 1, None)));
    }

    #[test]
    fn sealed_tails_are_released_per_namespace() {
        let table = CounterTable::default();
        table.insert(1, "old", entry(1, 1, Some(key(10, 1))));
        table.insert(1, "new", entry(2, 2, Some(key(20, 2))));
        table.insert(2, "other", entry(3, 3, Some(key(10, 3))));
        assert_eq!(table.num_tails(), 3);

        table.release_sealed_tails(1, EventTime::from_micros(15_000_000));

        assert_eq!(table.num_tails(), 2);
        assert_eq!(table.get(1, "old"), Some(entry(1, 1, None)));
        assert_eq!(table.get(1, "new"), Some(entry(2, 2, Some(key(20, 2)))));
        assert_eq!(table.get(2, "other"), Some(entry(3, 3, Some(key(10, 3)))));
    }

    /// Tail keys come and go with updates and releases, and freed places are used again
    /// without mixing up whose keys they hold.
    #[test]
    fn tail_keys_follow_updates_and_releases() {
        let table = CounterTable::default();
        for i in 0..1_000u64 {
            table.insert(1, &format!("c{i}"), entry(i + 1, 0, Some(key(10, i + 1))));
        }
        table.release_sealed_tails(1, EventTime::from_micros(15_000_000));
        assert_eq!(table.num_tails(), 0);

        for i in (0..1_000u64).step_by(2) {
            let name = format!("c{i}");
            let (_, location) = table.get_located(1, &name).unwrap();
            let updated = entry(i + 1, 5, Some(key(20, 2_000 + i)));
            table.update_at(location, 1, &name, updated);
        }
        table.insert(1, "c1", entry(2, 7, None));
        table.insert(1, "new", entry(5_000, 1, Some(key(30, 5_000))));

        assert_eq!(table.num_tails(), 501);
        for i in 0..1_000u64 {
            let expected = match i {
                1 => entry(2, 7, None),
                _ if i % 2 == 0 => entry(i + 1, 5, Some(key(20, 2_000 + i))),
                _ => entry(i + 1, 0, None),
            };
            assert_eq!(table.get(1, &format!("c{i}")), Some(expected), "c{i}");
        }
        assert_eq!(
            table.get(1, "new"),
            Some(entry(5_000, 1, Some(key(30, 5_000))))
        );

        table.update_at(
            table.get_located(1, "c0").unwrap().1,
            1,
            "c0",
            entry(1, 6, None),
        );
        assert_eq!(table.get(1, "c0"), Some(entry(1, 6, None)));
        assert_eq!(table.num_tails(), 500);
    }
}
