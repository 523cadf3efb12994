//! Recovery at start: rebuilding every durable counter's running state from its checkpoint and
//! the events of the unsealed tail.
//!
//! It streams, on one thread per core. The tail is folded per counter as the scan visits it in
//! key order, each thread folding the counters of one remainder of their ID. Then the
//! counters, which the store returns in ID order with their checkpoints, go straight into the
//! table, each thread scanning its own range of IDs. Nothing is kept per event, and once
//! recovery ends, nothing per counter but the table.

use crate::ServiceError;
use crate::counters::CounterEntry;
use crate::state::SharedState;
use std::ops::RangeInclusive;
use tally_core::{Event, EventTime, TailFold};
use tally_storage::{
    CounterId, EventStore, NamespaceId, NamespaceRecord, ScannedCounter, StoredEvent,
};
use tracing::debug;

/// Maximum number of threads that fold the tail or load counters.
const MAX_LOAD_THREADS: usize = 8;

/// Minimum number of counters that get a loading thread of their own.
const MIN_COUNTERS_PER_THREAD: u64 = 100_000;

/// Rebuilds every durable counter's running state; returns the number of tail events replayed.
pub(crate) fn replay(
    store: &dyn EventStore,
    state: &SharedState,
    last_counter_id: CounterId,
    namespaces: &std::collections::HashMap<NamespaceId, NamespaceRecord>,
) -> Result<u64, ServiceError> {
    let started = std::time::Instant::now();
    let threads = load_threads();
    let (tails, num_events) = fold_tails(store, namespaces, last_counter_id, threads)?;
    let tail_ms = started.elapsed().as_millis() as u64;
    let ranges = id_ranges(last_counter_id, threads);
    let num_threads = ranges.len();
    load_counters(store, state, namespaces, &tails, ranges)?;
    drop(tails);
    crate::allocator::release_free_memory();
    debug!(
        tail_ms,
        counter_ms = started.elapsed().as_millis() as u64 - tail_ms,
        num_threads,
        "recovery steps"
    );
    Ok(num_events)
}

/// Puts the durable counters into the table, one thread per range of IDs.
fn load_counters(
    store: &dyn EventStore,
    state: &SharedState,
    namespaces: &std::collections::HashMap<NamespaceId, NamespaceRecord>,
    tails: &Tails,
    ranges: Vec<RangeInclusive<CounterId>>,
) -> Result<(), ServiceError> {
    let num_counters: u64 = ranges
        .iter()
        .filter(|range| !range.is_empty())
        .map(|range| range.end() - range.start() + 1)
        .sum();
    state.counters.reserve(
        usize::try_from(num_counters).unwrap_or(0),
        tails.parts.iter().map(Folds::len).sum(),
    );
    let durable: hashbrown::HashSet<NamespaceId> = namespaces
        .values()
        .filter(|namespace| namespace.config.counter_type.is_durable())
        .map(|namespace| namespace.id)
        .collect();
    let loader = Loader {
        store,
        state,
        tails,
        durable: &durable,
    };
    std::thread::scope(|scope| {
        let threads: Vec<_> = ranges
            .into_iter()
            .map(|range| scope.spawn(|| loader.load(range)))
            .collect();
        threads.into_iter().try_for_each(|thread| {
            thread.join().unwrap_or_else(|_| {
                Err(ServiceError::Unavailable(
                    "a thread that loads counters panicked".into(),
                ))
            })
        })
    })
}

fn load_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_LOAD_THREADS)
}

/// Splits the IDs `1..=last_counter_id` into at most `max_ranges` ranges of nearly equal
/// length, none shorter than [`MIN_COUNTERS_PER_THREAD`] unless there is only one.
fn id_ranges(last_counter_id: CounterId, max_ranges: usize) -> Vec<RangeInclusive<CounterId>> {
    if last_counter_id == 0 {
        return Vec::new();
    }
    let by_size = (last_counter_id / MIN_COUNTERS_PER_THREAD).max(1);
    let num_ranges = by_size.min(u64::try_from(max_ranges.max(1)).unwrap_or(1));
    let len = last_counter_id.div_ceil(num_ranges);
    (0..num_ranges)
        .map(|index| {
            let first = index * len + 1;
            first..=(first + len - 1).min(last_counter_id)
        })
        .filter(|range| !range.is_empty())
        .collect()
}

/// The inputs that the loading threads share. A thread writes only to the counter table.
struct Loader<'a> {
    store: &'a dyn EventStore,
    state: &'a SharedState,
    tails: &'a Tails,
    durable: &'a hashbrown::HashSet<NamespaceId>,
}

impl Loader<'_> {
    /// Puts the durable counters with IDs in `range` into the table.
    fn load(&self, range: RangeInclusive<CounterId>) -> Result<(), ServiceError> {
        let mut table = self.state.counters.bulk_insert();
        let mut window = TailWindow::new(*range.end());
        let mut failure = None;
        self.store.scan_counters(range, &mut |counter| {
            if failure.is_none() && self.durable.contains(&counter.namespace_id) {
                let tail = window.fold_of(self.tails, counter.id);
                match entry(counter, tail) {
                    Ok(entry) => table.insert(counter.namespace_id, counter.name, entry),
                    Err(error) => failure = Some(error),
                }
            }
        })?;
        table.finish();
        failure.map_or(Ok(()), Err)
    }
}

/// Returns the counter's entry: its checkpoint followed by its tail.
fn entry(counter: ScannedCounter<'_>, tail: TailFold) -> Result<CounterEntry, ServiceError> {
    let checkpoint = counter
        .checkpoint
        .map(|checkpoint| checkpoint.fold)
        .unwrap_or_default();
    let state = tail.state_after(checkpoint).map_err(|error| {
        ServiceError::Unavailable(format!(
            "counter {} cannot be rebuilt: {error}",
            counter.name
        ))
    })?;
    Ok(CounterEntry {
        id: counter.id,
        state,
    })
}

/// Number of consecutive counter IDs whose tail folds a loading thread copies at once.
const TAIL_WINDOW: u64 = 256;

/// The tail folds of a window of consecutive counter IDs, copied together. The folds lie in the
/// order their counters first appear in the tail, so the fold of each counter that the load
/// visits in ID order is a read from memory at random. Copied one at a time between the much
/// longer work of decoding and inserting a counter, those reads wait one after another. Copied
/// in a tight loop, they do not depend on each other, so the processor overlaps them.
struct TailWindow {
    first: CounterId,
    /// Last ID of the loading thread's range. No window reaches past it.
    last: CounterId,
    folds: Vec<TailFold>,
}

impl TailWindow {
    fn new(last: CounterId) -> Self {
        Self {
            first: 0,
            last,
            folds: Vec::with_capacity(TAIL_WINDOW as usize),
        }
    }

    /// Returns the tail fold of counter `id`, an empty fold when it has no tail.
    fn fold_of(&mut self, tails: &Tails, id: CounterId) -> TailFold {
        let offset = id.wrapping_sub(self.first);
        if let Some(fold) = usize::try_from(offset)
            .ok()
            .and_then(|offset| self.folds.get(offset))
        {
            return *fold;
        }
        let end = id.saturating_add(TAIL_WINDOW - 1).min(self.last.max(id));
        self.first = id;
        self.folds.clear();
        self.folds
            .extend((id..=end).map(|window_id| tails.get(window_id).copied().unwrap_or_default()));
        self.folds[0]
    }
}

/// Folds the unsealed tail of every durable namespace per counter, on `num_parts` threads.
/// Each thread reads the whole tail and folds the counters whose ID leaves remainder `part`
/// when divided by `num_parts`, so the parts share no counter and need no joining.
fn fold_tails(
    store: &dyn EventStore,
    namespaces: &std::collections::HashMap<NamespaceId, NamespaceRecord>,
    last_counter_id: CounterId,
    num_parts: usize,
) -> Result<(Tails, u64), ServiceError> {
    let tails: Vec<(NamespaceId, EventTime)> = namespaces
        .values()
        .filter(|record| record.config.counter_type.is_durable())
        .map(|record| (record.id, record.sealed_until))
        .collect();
    let num_parts = num_parts.max(1);
    let parts: Vec<Result<(Folds, u64), ServiceError>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..num_parts)
            .map(|part| {
                let tails = &tails;
                scope.spawn(move || fold_part(store, tails, last_counter_id, part, num_parts))
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread.join().unwrap_or_else(|_| {
                    Err(ServiceError::Unavailable(
                        "a thread that folds the tail panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut folded = Vec::with_capacity(num_parts);
    let mut num_events = 0;
    for part in parts {
        let (part_tails, part_events) = part?;
        folded.push(part_tails);
        num_events += part_events;
    }
    Ok((Tails { parts: folded }, num_events))
}

/// The tail folds of the counters whose ID leaves one remainder when divided by the number
/// of parts, found by position instead of by hashing. Counter `id` has its fold at
/// `positions[id / num_parts] - 1` in `folds`, or none when that entry is 0. Counter IDs are
/// dense, so the positions take 4 bytes per counter ID of the part, and pages that stay zero
/// are never touched. A load that visits counters in ID order reads the positions in order.
#[derive(Default)]
struct Folds {
    positions: Vec<u32>,
    folds: Vec<TailFold>,
}

impl Folds {
    /// Sized for the quotients of the IDs up to `last_counter_id`.
    fn new(last_counter_id: CounterId, num_parts: u64) -> Self {
        let len = usize::try_from(last_counter_id / num_parts + 1).unwrap_or(0);
        Self {
            positions: vec![0; len],
            folds: Vec::new(),
        }
    }

    fn get(&self, quotient: u64) -> Option<&TailFold> {
        let position = *self.positions.get(usize::try_from(quotient).ok()?)?;
        self.folds.get((position as usize).checked_sub(1)?)
    }

    /// Returns the index in `folds` of the fold at `quotient`, after adding a new fold if it
    /// has none.
    fn index_of(&mut self, quotient: u64) -> Result<usize, ServiceError> {
        let index = usize::try_from(quotient).map_err(|_| too_many_tails())?;
        if index >= self.positions.len() {
            // No event should name a counter ID above the stored last one, but if one does,
            // the positions grow instead of failing.
            self.positions.resize(index + 1, 0);
        }
        if self.positions[index] == 0 {
            self.folds.push(TailFold::default());
            self.positions[index] =
                u32::try_from(self.folds.len()).map_err(|_| too_many_tails())?;
        }
        Ok(self.positions[index] as usize - 1)
    }

    fn len(&self) -> usize {
        self.folds.len()
    }
}

fn too_many_tails() -> ServiceError {
    ServiceError::Unavailable(
        "cannot recover: more than 4,294,967,295 counters of one recovery thread have events \
         in the unsealed tail"
            .into(),
    )
}

/// Folded tails by counter ID, split over the threads that folded them by ID remainder.
struct Tails {
    parts: Vec<Folds>,
}

impl Tails {
    fn get(&self, counter_id: CounterId) -> Option<&TailFold> {
        let num_parts = self.parts.len() as u64;
        let part = usize::try_from(counter_id.checked_rem(num_parts)?).ok()?;
        self.parts.get(part)?.get(counter_id / num_parts)
    }
}

/// Events that a recovery thread buffers before it folds them.
const FOLD_BATCH: usize = 1024;

/// Folds the tail events, those at or after their namespace's `sealed_until`, of the counters
/// whose ID leaves remainder `part`. Returns the folds and the number of events folded.
fn fold_part(
    store: &dyn EventStore,
    tails: &[(NamespaceId, EventTime)],
    last_counter_id: CounterId,
    part: usize,
    num_parts: usize,
) -> Result<(Folds, u64), ServiceError> {
    let mut folder = PartFolder {
        folds: Folds::default(),
        last_counter_id,
        part: part as u64,
        num_parts: num_parts as u64,
        batch: Vec::with_capacity(FOLD_BATCH),
        indexes: Vec::with_capacity(FOLD_BATCH),
        num_events: 0,
    };
    let mut failure = None;
    for (namespace_id, sealed_until) in tails {
        let end = EventTime::from_micros(i64::MAX);
        store.scan_events(*namespace_id, *sealed_until, end, &mut |event| {
            if failure.is_none()
                && let Err(error) = folder.push(&event)
            {
                failure = Some(error);
            }
        })?;
    }
    if let Some(error) = failure {
        return Err(error);
    }
    folder.flush()?;
    Ok((folder.folds, folder.num_events))
}

/// The folding state of one recovery thread.
struct PartFolder {
    folds: Folds,
    last_counter_id: CounterId,
    part: u64,
    num_parts: u64,
    /// Events of this part not folded yet, with their counter ID divided by `num_parts`.
    batch: Vec<(u64, Event)>,
    /// Index in `folds.folds` of each event of the batch.
    indexes: Vec<usize>,
    num_events: u64,
}

impl PartFolder {
    /// Buffers the event if its counter belongs to this part, and folds the batch when it is full.
    fn push(&mut self, event: &StoredEvent) -> Result<(), ServiceError> {
        if event.counter_id % self.num_parts != self.part {
            return Ok(());
        }
        let folded = Event {
            key: event.key,
            kind: event.kind,
        };
        self.batch.push((event.counter_id / self.num_parts, folded));
        if self.batch.len() == FOLD_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Folds the buffered events in order. Their folds sit at random places in memory, so it
    /// finds every event's fold first and applies the events after. The reads within each step
    /// do not depend on each other, so the processor overlaps them.
    fn flush(&mut self) -> Result<(), ServiceError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if self.folds.positions.is_empty() {
            // Only a part with a tail pays for its positions.
            self.folds = Folds::new(self.last_counter_id, self.num_parts);
        }
        self.indexes.clear();
        for (quotient, _) in &self.batch {
            self.indexes.push(self.folds.index_of(*quotient)?);
        }
        for ((_, event), index) in self.batch.drain(..).zip(&self.indexes) {
            self.folds.folds[*index].push(event);
        }
        self.num_events += self.indexes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::Fold;

    fn covered(ranges: &[RangeInclusive<CounterId>]) -> Vec<CounterId> {
        ranges.iter().flat_map(|range| range.clone()).collect()
    }

    #[test]
    fn id_ranges_cover_every_id_once() {
        for last in [1, 2, 99_999, 100_000, 250_001, 1_000_000, 1_000_003] {
            for threads in [1, 2, 3, 8] {
                let ranges = id_ranges(last, threads);
                let expected: Vec<CounterId> = (1..=last).collect();
                assert_eq!(covered(&ranges), expected, "last {last}, threads {threads}");
                assert!(ranges.len() <= threads);
            }
        }
    }

    /// Loads a store with counters of two namespaces, checkpoints and a tail, once in one
    /// range and once in several, and checks that both loads give the same, right entries.
    #[test]
    fn split_load_equals_single_load() {
        use tally_core::{CounterName, EventKey, EventKind, NamespaceConfig, NamespaceName};
        use tally_storage::{AppendBatch, Checkpoint, CounterRecord, MemoryStore, StoredEvent};

        let store = MemoryStore::new();
        let namespaces: std::collections::HashMap<NamespaceId, NamespaceRecord> = [1, 2]
            .map(|id| {
                let record = NamespaceRecord {
                    id,
                    name: NamespaceName::parse(&format!("ns{id}")).unwrap(),
                    config: NamespaceConfig::default(),
                    sealed_until: EventTime::from_micros(1_000_000),
                };
                store.put_namespace(&record).unwrap();
                (id, record)
            })
            .into_iter()
            .collect();
        let counters: Vec<CounterRecord> = (1..=1_000)
            .map(|id| CounterRecord {
                id,
                namespace_id: 1 + (id % 2) as NamespaceId,
                name: CounterName::parse(&format!("c{id}")).unwrap(),
            })
            .collect();
        let events: Vec<(NamespaceId, StoredEvent)> = counters
            .iter()
            .filter(|counter| counter.id % 3 == 0)
            .map(|counter| {
                let event = StoredEvent {
                    counter_id: counter.id,
                    key: EventKey {
                        time: EventTime::from_micros(2_000_000),
                        id: counter.id,
                    },
                    kind: EventKind::Add { delta: 10 },
                    token: None,
                };
                (counter.namespace_id, event)
            })
            .collect();
        store
            .append(&AppendBatch {
                events,
                new_counters: counters.clone(),
                last_event_id: 1_000,
                last_counter_id: 1_000,
            })
            .unwrap();
        for namespace in namespaces.values() {
            let checkpoints: Vec<(CounterId, Checkpoint)> = counters
                .iter()
                .filter(|counter| counter.namespace_id == namespace.id && counter.id % 5 == 0)
                .map(|counter| {
                    let checkpoint = Checkpoint {
                        fold: Fold {
                            sum: i128::from(counter.id),
                            cleared: false,
                        },
                        sealed_until: namespace.sealed_until,
                        last_event_id: 0,
                    };
                    (counter.id, checkpoint)
                })
                .collect();
            store.write_rollup(namespace, &checkpoints).unwrap();
        }

        let load = |ranges: Vec<RangeInclusive<CounterId>>| {
            let state = SharedState::default();
            let (tails, _) = fold_tails(&store, &namespaces, 1_000, 3).unwrap();
            load_counters(&store, &state, &namespaces, &tails, ranges).unwrap();
            counters
                .iter()
                .map(|counter| {
                    state
                        .counters
                        .get(counter.namespace_id, counter.name.as_str())
                })
                .collect::<Vec<_>>()
        };
        let single = load(vec![1..=1_000]);
        let split = load(vec![1..=1, 2..=333, 334..=700, 701..=1_000]);

        assert_eq!(split, single);
        for (counter, found) in counters.iter().zip(&single) {
            let entry = found.unwrap();
            let checkpoint = if counter.id % 5 == 0 {
                counter.id as i64
            } else {
                0
            };
            let tail = if counter.id % 3 == 0 { 10 } else { 0 };
            assert_eq!(entry.id, counter.id);
            assert_eq!(entry.state.value, checkpoint + tail, "{counter:?}");
        }
    }

    /// Returns a memory store with the namespace `default` (ID 1), sealed until 10 s.
    fn store_with_default_namespace() -> (
        tally_storage::MemoryStore,
        std::collections::HashMap<NamespaceId, NamespaceRecord>,
    ) {
        use tally_core::{NamespaceConfig, NamespaceName};

        let store = tally_storage::MemoryStore::new();
        let record = NamespaceRecord {
            id: 1,
            name: NamespaceName::parse("default").unwrap(),
            config: NamespaceConfig::default(),
            sealed_until: EventTime::from_micros(10_000_000),
        };
        store.put_namespace(&record).unwrap();
        (store, std::collections::HashMap::from([(1, record)]))
    }

    /// Appends events of counters that the store already counts up to `last_counter_id`.
    fn append_tail(
        store: &tally_storage::MemoryStore,
        events: Vec<(NamespaceId, StoredEvent)>,
        last_event_id: u64,
        last_counter_id: CounterId,
    ) {
        let batch = tally_storage::AppendBatch {
            events,
            new_counters: Vec::new(),
            last_event_id,
            last_counter_id,
        };
        store.append(&batch).unwrap();
    }

    #[test]
    fn tail_folded_in_parts_equals_tail_folded_whole() {
        use tally_core::{EventKey, EventKind};
        use tally_storage::StoredEvent;

        let (store, namespaces) = store_with_default_namespace();
        // Events of five counters spread over 10 s to 20 s, with a clear every seventh event;
        // their IDs do not follow their times.
        let events: Vec<(NamespaceId, StoredEvent)> = (0..300u64)
            .map(|index| {
                let kind = if index % 7 == 6 {
                    EventKind::Clear
                } else {
                    EventKind::Add {
                        delta: index as i64 - 100,
                    }
                };
                let micros = 10_000_000 + (index * 37_000 % 10_000_000) as i64 / 2 * 2;
                let event = StoredEvent {
                    counter_id: index % 5 + 1,
                    key: EventKey {
                        time: EventTime::from_micros(micros),
                        id: 1_000 - index,
                    },
                    kind,
                    token: None,
                };
                (1, event)
            })
            .collect();
        append_tail(&store, events, 1_000, 5);

        let (whole, num_whole) = fold_tails(&store, &namespaces, 5, 1).unwrap();
        assert_eq!(num_whole, 300);
        assert_eq!(whole.parts[0].len(), 5);
        assert!(
            whole
                .get(1)
                .is_some_and(|fold| *fold != TailFold::default())
        );
        // A last counter ID below the events' IDs (which a store should not hold) still folds
        // every event.
        for last_counter_id in [0, 2, 5, 100] {
            for num_parts in [2, 3, 8] {
                let (parts, num_events) =
                    fold_tails(&store, &namespaces, last_counter_id, num_parts).unwrap();
                assert_eq!(num_events, 300, "{num_parts} parts");
                for counter_id in 0..=7 {
                    assert_eq!(
                        parts.get(counter_id),
                        whole.get(counter_id),
                        "counter {counter_id}, {num_parts} parts, last ID {last_counter_id}"
                    );
                }
            }
        }
    }

    #[test]
    fn tail_of_several_batches_folds_in_key_order() {
        use tally_core::{EventKey, EventKind};
        use tally_storage::StoredEvent;

        let (store, namespaces) = store_with_default_namespace();
        let num_events = FOLD_BATCH as u64 * 5 + 17;
        // Eleven counters; event times repeat and IDs do not follow times, so only the order
        // of the keys gives the right value after each clear.
        let events: Vec<StoredEvent> = (0..num_events)
            .map(|index| StoredEvent {
                counter_id: index * 7 % 11 + 1,
                key: EventKey {
                    time: EventTime::from_micros(10_000_000 + (index * 7_919 % 3_001) as i64),
                    id: num_events * 2 - index,
                },
                kind: if index % 13 == 12 {
                    EventKind::Clear
                } else {
                    EventKind::Add {
                        delta: index as i64 % 50 - 20,
                    }
                },
                token: None,
            })
            .collect();
        let in_default = events.iter().map(|event| (1, event.clone())).collect();
        append_tail(&store, in_default, num_events * 2, 11);

        let mut in_key_order = events.clone();
        in_key_order.sort_by_key(|event| event.key);
        let mut expected = std::collections::HashMap::<CounterId, TailFold>::new();
        for event in &in_key_order {
            expected.entry(event.counter_id).or_default().push(Event {
                key: event.key,
                kind: event.kind,
            });
        }
        for num_parts in [1, 2, 3] {
            let (tails, folded) = fold_tails(&store, &namespaces, 11, num_parts).unwrap();
            assert_eq!(folded, num_events, "{num_parts} parts");
            for counter_id in 1..=11 {
                assert_eq!(
                    tails.get(counter_id),
                    expected.get(&counter_id),
                    "counter {counter_id}, {num_parts} parts"
                );
            }
        }
    }

    #[test]
    fn parts_without_tail_events_allocate_nothing() {
        let (store, namespaces) = store_with_default_namespace();

        let (tails, num_events) = fold_tails(&store, &namespaces, 10_000_000, 2).unwrap();

        assert_eq!(num_events, 0);
        assert!(tails.parts.iter().all(|part| part.positions.is_empty()));
        assert_eq!(tails.get(1), None);
        assert_eq!(tails.get(9_999_999), None);
    }

    #[test]
    fn tail_window_returns_each_counters_fold() {
        use tally_core::{EventKey, EventKind};
        use tally_storage::StoredEvent;

        let (store, namespaces) = store_with_default_namespace();
        // One event for every third counter up to 2,000, each with its own delta.
        let events: Vec<(NamespaceId, StoredEvent)> = (1..=2_000u64)
            .filter(|id| id % 3 == 0)
            .map(|id| {
                let event = StoredEvent {
                    counter_id: id,
                    key: EventKey {
                        time: EventTime::from_micros(11_000_000),
                        id,
                    },
                    kind: EventKind::Add { delta: id as i64 },
                    token: None,
                };
                (1, event)
            })
            .collect();
        append_tail(&store, events, 2_000, 2_000);
        let (tails, _) = fold_tails(&store, &namespaces, 2_000, 2).unwrap();

        // Visits with gaps shorter and longer than a window, up to the range's last ID.
        let visited: Vec<CounterId> = (1..=2_000)
            .filter(|id| id % 7 != 0 && !(500..1_100).contains(id))
            .collect();
        let expected_with_tail = visited.iter().filter(|id| *id % 3 == 0).count();
        let mut window = TailWindow::new(2_000);
        let mut with_tail = 0;
        for id in visited {
            let expected = tails.get(id).copied().unwrap_or_default();
            assert_eq!(window.fold_of(&tails, id), expected, "counter {id}");
            with_tail += usize::from(expected != TailFold::default());
        }
        assert_eq!(with_tail, expected_with_tail);
        assert_eq!(window.first + window.folds.len() as u64 - 1, 2_000);
    }

    #[test]
    fn id_ranges_use_one_thread_for_few_counters() {
        assert_eq!(id_ranges(0, 4), Vec::<RangeInclusive<CounterId>>::new());
        assert_eq!(id_ranges(150_000, 4), [1..=150_000]);
        assert_eq!(id_ranges(200_000, 4), [1..=100_000, 100_001..=200_000]);
        assert_eq!(id_ranges(1_000_000, 0), [1..=1_000_000]);
    }
}
