//! Conformance tests of the `EventStore` contract.
//!
//! `conformance_suite!` expands every case in `cases` into one `#[test]` per backend, so a
//! behaviour that one backend has and another lacks shows up as a failing test. The tests after
//! the suite cover what only the embedded backend has: reopening a directory, its lock and
//! fault injection on a real store.

// Helpers outside `#[test]` functions unwrap too, and clippy's test exemption does not reach them.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use tally_core::fold::Fold;
use tally_core::{CounterName, EventKey, EventKind, EventTime, NamespaceConfig, NamespaceName};
use tally_storage::{
    AppendBatch, BUCKET_SECONDS, Checkpoint, CounterId, CounterRecord, Durability, EmbeddedStore,
    EventStore, FaultInjection, MemoryStore, NamespaceId, NamespaceRecord, RecoveredState,
    StorageError, StoredEvent, TokenRecord,
};
use tempfile::TempDir;

/// 2027-01-15T08:00:00Z in seconds since the Unix epoch. It is a multiple of
/// `BUCKET_SECONDS`, so `at(n * BUCKET_SECONDS)` is the start of a bucket.
const BASE_SECONDS: i64 = 1_800_000_000;

/// The length of a bucket, one hour.
const HOUR_SECONDS: i64 = BUCKET_SECONDS;

/// Returns the time `seconds` after `BASE_SECONDS`.
fn at(seconds: i64) -> EventTime {
    EventTime::from_micros(BASE_SECONDS * 1_000_000).plus_seconds(seconds)
}

/// Returns the time `micros` after `BASE_SECONDS`.
fn at_micros(micros: i64) -> EventTime {
    EventTime::from_micros(BASE_SECONDS * 1_000_000 + micros)
}

fn namespace(id: NamespaceId, name: &str) -> NamespaceRecord {
    NamespaceRecord {
        id,
        name: NamespaceName::parse(name).unwrap(),
        config: NamespaceConfig::default(),
        sealed_until: at(0),
    }
}

fn counter(id: CounterId, namespace_id: NamespaceId, name: &str) -> CounterRecord {
    CounterRecord {
        id,
        namespace_id,
        name: CounterName::parse(name).unwrap(),
    }
}

fn event(
    counter_id: CounterId,
    time: EventTime,
    id: u64,
    kind: EventKind,
    token: &str,
) -> StoredEvent {
    StoredEvent {
        counter_id,
        key: EventKey { time, id },
        kind,
        token: Some(token.into()),
    }
}

fn add(delta: i64) -> EventKind {
    EventKind::Add { delta }
}

/// Builds a batch of events of one namespace. The last IDs are the greatest event ID of the
/// batch and the greatest counter ID among its events and new counters.
fn batch(
    namespace_id: NamespaceId,
    events: &[StoredEvent],
    new_counters: &[CounterRecord],
) -> AppendBatch {
    let last_event_id = events.iter().map(|event| event.key.id).max().unwrap_or(0);
    let last_counter_id = events
        .iter()
        .map(|event| event.counter_id)
        .chain(new_counters.iter().map(|counter| counter.id))
        .max()
        .unwrap_or(0);
    AppendBatch {
        events: events
            .iter()
            .map(|event| (namespace_id, event.clone()))
            .collect(),
        new_counters: new_counters.to_vec(),
        last_event_id,
        last_counter_id,
    }
}

/// Returns the events that `scan_events` visits, in the order it visits them.
fn scan(
    store: &dyn EventStore,
    namespace_id: NamespaceId,
    from: EventTime,
    until: EventTime,
) -> Vec<StoredEvent> {
    let mut visited = Vec::new();
    store
        .scan_events(namespace_id, from, until, &mut |event| visited.push(event))
        .unwrap();
    visited
}

/// Returns what `scan_counters` visits for `ids`, in the order it visits them.
fn scanned_range(
    store: &dyn EventStore,
    ids: std::ops::RangeInclusive<CounterId>,
) -> Result<Vec<(CounterRecord, Option<Checkpoint>)>, StorageError> {
    let mut visited = Vec::new();
    store.scan_counters(ids, &mut |scanned| {
        visited.push((
            counter(scanned.id, scanned.namespace_id, scanned.name),
            scanned.checkpoint,
        ));
    })?;
    Ok(visited)
}

/// Returns every counter that `scan_counters` visits, in the order it visits them.
fn scanned_counters(store: &dyn EventStore) -> Vec<CounterRecord> {
    scanned_range(store, 0..=CounterId::MAX)
        .unwrap()
        .into_iter()
        .map(|(record, _)| record)
        .collect()
}

/// Returns every checkpoint that `scan_counters` visits, in the order it visits them.
fn scanned_checkpoints(store: &dyn EventStore) -> Vec<(CounterId, Checkpoint)> {
    scanned_range(store, 0..=CounterId::MAX)
        .unwrap()
        .into_iter()
        .filter_map(|(record, checkpoint)| checkpoint.map(|checkpoint| (record.id, checkpoint)))
        .collect()
}

/// Returns the events of a namespace over a range far wider than any test writes to.
fn scan_all(store: &dyn EventStore, namespace_id: NamespaceId) -> Vec<StoredEvent> {
    scan(
        store,
        namespace_id,
        at(-100 * HOUR_SECONDS),
        at(100 * HOUR_SECONDS),
    )
}

fn keys(events: &[StoredEvent]) -> Vec<EventKey> {
    events.iter().map(|event| event.key).collect()
}

fn sorted_by_key(events: &[StoredEvent]) -> Vec<StoredEvent> {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|event| event.key);
    sorted
}

fn checkpoint(sum: i128, cleared: bool, sealed_until: EventTime, last_event_id: u64) -> Checkpoint {
    Checkpoint {
        fold: Fold { sum, cleared },
        sealed_until,
        last_event_id,
    }
}

/// A store under test and the temporary directory that contains its files, if it has any.
struct Fixture {
    store: Box<dyn EventStore>,
    // Declared after `store` so that it is dropped, and its directory deleted, after the store.
    _dir: Option<TempDir>,
}

impl Fixture {
    fn store(&self) -> &dyn EventStore {
        self.store.as_ref()
    }
}

fn open_embedded_in(path: &Path) -> EmbeddedStore {
    EmbeddedStore::open(path, Durability::Sync).unwrap()
}

fn new_embedded() -> Fixture {
    let dir = TempDir::new().unwrap();
    Fixture {
        store: Box::new(open_embedded_in(dir.path())),
        _dir: Some(dir),
    }
}

fn new_memory() -> Fixture {
    Fixture {
        store: Box::new(MemoryStore::new()),
        _dir: None,
    }
}

/// The cases of the suite. Each takes an empty store.
mod cases {
    use super::*;

    pub fn find_token_returns_record(store: &dyn EventStore) {
        store.put_namespace(&namespace(1, "default")).unwrap();
        let added = event(10, at(120), 5, add(-7), "retry-1");
        let cleared = event(10, at(180), 6, EventKind::Clear, "retry-2");
        store
            .append(&batch(
                1,
                &[added.clone(), cleared.clone()],
                &[counter(10, 1, "visits")],
            ))
            .unwrap();

        let found = store.find_token(1, 10, "retry-1").unwrap().unwrap();
        assert_eq!(found.event_id, 5);
        assert_eq!(found.event_time, at(120));
        assert_eq!(found.kind, add(-7));

        let found = store.find_token(1, 10, "retry-2").unwrap().unwrap();
        assert_eq!(found.event_id, 6);
        assert_eq!(found.event_time, at(180));
        assert_eq!(found.kind, EventKind::Clear);
    }

    pub fn find_token_unknown_is_none(store: &dyn EventStore) {
        assert_eq!(store.find_token(1, 10, "retry-1").unwrap(), None);

        store
            .append(&batch(
                1,
                &[event(10, at(0), 1, add(1), "retry-1")],
                &[counter(10, 1, "visits")],
            ))
            .unwrap();

        assert_eq!(store.find_token(1, 10, "retry-2").unwrap(), None);
        assert_eq!(store.find_token(1, 10, "retry").unwrap(), None);
        assert_eq!(store.find_token(1, 10, "retry-10").unwrap(), None);
    }

    pub fn token_scoped_to_counter(store: &dyn EventStore) {
        store
            .append(&batch(
                1,
                &[event(10, at(0), 1, add(1), "shared")],
                &[counter(10, 1, "visits")],
            ))
            .unwrap();

        assert_eq!(store.find_token(1, 11, "shared").unwrap(), None);
        assert_eq!(store.find_token(2, 10, "shared").unwrap(), None);

        // The same token string on another counter claims a separate token.
        store
            .append(&batch(
                1,
                &[event(11, at(60), 2, add(2), "shared")],
                &[counter(11, 1, "clicks")],
            ))
            .unwrap();
        assert_eq!(
            store.find_token(1, 10, "shared").unwrap().unwrap().event_id,
            1
        );
        assert_eq!(
            store.find_token(1, 11, "shared").unwrap().unwrap().event_id,
            2
        );
        assert_eq!(store.find_token(2, 10, "shared").unwrap(), None);
    }

    pub fn token_scoped_to_namespace(store: &dyn EventStore) {
        store
            .append(&batch(
                2,
                &[event(10, at(0), 1, add(1), "shared")],
                &[counter(10, 2, "visits")],
            ))
            .unwrap();

        assert_eq!(store.find_token(1, 10, "shared").unwrap(), None);
        assert_eq!(store.find_token(3, 10, "shared").unwrap(), None);
        assert_eq!(
            store.find_token(2, 10, "shared").unwrap().unwrap().event_id,
            1
        );
    }

    pub fn event_without_token_claims_no_token(store: &dyn EventStore) {
        let mut untokened = event(10, at(5), 1, add(3), "unused");
        untokened.token = None;
        store.append(&batch(1, &[untokened.clone()], &[])).unwrap();

        assert_eq!(scan_all(store, 1), [untokened]);
        assert_eq!(store.find_token(1, 10, "").unwrap(), None);
        assert_eq!(store.find_token(1, 10, "unused").unwrap(), None);
    }

    pub fn scan_orders_within_a_slice(store: &dyn EventStore) {
        // Three batches write into the same one-second slice, out of time order, with two
        // events of equal time whose IDs decide.
        let events = [
            event(10, at_micros(900_000), 1, add(1), "a"),
            event(11, at_micros(100_000), 2, add(2), "b"),
            event(10, at_micros(500_000), 3, EventKind::Clear, "c"),
            event(11, at_micros(100_000), 4, add(4), "d"),
            event(10, at_micros(1_000_000), 5, add(5), "e"),
            event(10, at_micros(0), 6, add(6), "f"),
        ];
        store.append(&batch(1, &events[..2], &[])).unwrap();
        store.append(&batch(1, &events[2..4], &[])).unwrap();
        store.append(&batch(1, &events[4..], &[])).unwrap();

        assert_eq!(scan_all(store, 1), sorted_by_key(&events));
        // A range inside the slice returns only its part.
        let inside = scan(store, 1, at_micros(100_000), at_micros(900_000));
        assert_eq!(keys(&inside), keys(&sorted_by_key(&events)[1..4]));
    }

    pub fn scan_orders_across_buckets(store: &dyn EventStore) {
        // Four buckets, appended out of time order in three batches. Events 7 and 3 share a
        // time, so their event IDs decide the order.
        let events = [
            event(10, at(3 * HOUR_SECONDS + 10), 1, add(1), "a"),
            event(11, at(HOUR_SECONDS + 5), 2, add(2), "b"),
            event(10, at(2 * HOUR_SECONDS), 3, EventKind::Clear, "c"),
            event(11, at(30), 4, add(-4), "d"),
            event(10, at(3 * HOUR_SECONDS - 1), 5, add(5), "e"),
            event(11, at(HOUR_SECONDS), 6, add(6), "f"),
            event(10, at(2 * HOUR_SECONDS), 7, add(7), "g"),
        ];
        store.append(&batch(1, &events[..2], &[])).unwrap();
        store.append(&batch(1, &events[2..5], &[])).unwrap();
        store.append(&batch(1, &events[5..], &[])).unwrap();

        let scanned = scan(store, 1, at(0), at(4 * HOUR_SECONDS));

        let expected_keys = [
            (30, 4),
            (HOUR_SECONDS, 6),
            (HOUR_SECONDS + 5, 2),
            (2 * HOUR_SECONDS, 3),
            (2 * HOUR_SECONDS, 7),
            (3 * HOUR_SECONDS - 1, 5),
            (3 * HOUR_SECONDS + 10, 1),
        ]
        .map(|(seconds, id)| EventKey {
            time: at(seconds),
            id,
        });
        assert_eq!(keys(&scanned), expected_keys);
        assert_eq!(scanned, sorted_by_key(&events));
    }

    pub fn scan_bounds_half_open(store: &dyn EventStore) {
        // Events one microsecond on either side of both bounds, and on the bounds themselves.
        let events = [
            event(
                10,
                at_micros(HOUR_SECONDS * 1_000_000 - 1),
                1,
                add(1),
                "before-from",
            ),
            event(10, at(HOUR_SECONDS), 2, add(1), "at-from"),
            event(
                10,
                at_micros(HOUR_SECONDS * 1_000_000 + 1),
                3,
                add(1),
                "after-from",
            ),
            event(
                10,
                at_micros(3 * HOUR_SECONDS * 1_000_000 - 1),
                4,
                add(1),
                "before-until",
            ),
            event(10, at(3 * HOUR_SECONDS), 5, add(1), "at-until"),
            event(
                10,
                at_micros(3 * HOUR_SECONDS * 1_000_000 + 1),
                6,
                add(1),
                "after-until",
            ),
        ];
        store.append(&batch(1, &events, &[])).unwrap();

        let scanned = scan(store, 1, at(HOUR_SECONDS), at(3 * HOUR_SECONDS));
        assert_eq!(keys(&scanned), keys(&events[1..4]));

        // Bounds inside buckets.
        let scanned = scan(
            store,
            1,
            at_micros(HOUR_SECONDS * 1_000_000 + 1),
            at_micros(3 * HOUR_SECONDS * 1_000_000 - 1),
        );
        assert_eq!(keys(&scanned), keys(&events[2..3]));
    }

    pub fn scan_empty_range(store: &dyn EventStore) {
        store
            .append(&batch(
                1,
                &[event(10, at(HOUR_SECONDS), 1, add(1), "a")],
                &[],
            ))
            .unwrap();

        assert_eq!(scan(store, 1, at(HOUR_SECONDS), at(HOUR_SECONDS)), []);
        assert_eq!(
            scan(store, 1, at(HOUR_SECONDS + 1), at(HOUR_SECONDS + 1)),
            []
        );
        assert_eq!(
            scan(store, 1, at(2 * HOUR_SECONDS), at(3 * HOUR_SECONDS)),
            []
        );
    }

    pub fn scan_inverted_range_is_empty(store: &dyn EventStore) {
        store
            .append(&batch(
                1,
                &[event(10, at(HOUR_SECONDS), 1, add(1), "a")],
                &[],
            ))
            .unwrap();

        // `from` lies in a later bucket than `until`.
        assert_eq!(scan(store, 1, at(3 * HOUR_SECONDS), at(HOUR_SECONDS)), []);
        assert_eq!(scan(store, 1, at(HOUR_SECONDS + 1), at(HOUR_SECONDS)), []);
        // The store still serves requests afterwards.
        assert_eq!(
            keys(&scan_all(store, 1)),
            [EventKey {
                time: at(HOUR_SECONDS),
                id: 1
            }]
        );
    }

    pub fn scan_only_requested_namespace(store: &dyn EventStore) {
        let first = [
            event(10, at(0), 1, add(1), "a"),
            event(10, at(HOUR_SECONDS), 3, add(3), "c"),
        ];
        let second = [
            event(20, at(10), 2, add(2), "b"),
            event(20, at(HOUR_SECONDS + 10), 4, add(4), "d"),
        ];
        store
            .append(&batch(1, &first, &[counter(10, 1, "visits")]))
            .unwrap();
        store
            .append(&batch(2, &second, &[counter(20, 2, "visits")]))
            .unwrap();

        assert_eq!(scan_all(store, 1), first);
        assert_eq!(scan_all(store, 2), second);
        assert_eq!(scan_all(store, 3), []);
    }

    pub fn recover_empty_store(store: &dyn EventStore) {
        let state = store.recover().unwrap();

        assert_eq!(state.namespaces, []);
        assert_eq!(scanned_counters(store), []);
        assert_eq!(scanned_checkpoints(store), []);
        assert_eq!(state.last_event_id, 0);
        assert_eq!(state.last_counter_id, 0);
    }

    pub fn recover_returns_written_state(store: &dyn EventStore) {
        let default = namespace(1, "default");
        let mut metrics = namespace(2, "metrics");
        metrics.config.accept_limit_seconds = 30;
        store.put_namespace(&default).unwrap();
        store.put_namespace(&metrics).unwrap();

        let visits = counter(10, 1, "visits");
        let clicks = counter(11, 1, "clicks");
        let errors = counter(12, 2, "errors");
        store
            .append(&batch(
                1,
                &[
                    event(10, at(0), 1, add(1), "a"),
                    event(11, at(1), 2, add(1), "b"),
                ],
                &[visits.clone(), clicks.clone()],
            ))
            .unwrap();
        store
            .append(&batch(
                2,
                &[event(12, at(2), 3, add(1), "c")],
                std::slice::from_ref(&errors),
            ))
            .unwrap();
        let rollup = [(10, checkpoint(1, false, at(60), 1))];
        store.write_rollup(&default, &rollup).unwrap();

        let state = store.recover().unwrap();

        assert_eq!(state.namespaces, [default, metrics]);
        assert_eq!(scanned_counters(store), [visits, clicks, errors]);
        assert_eq!(scanned_checkpoints(store), rollup);
        assert_eq!(state.last_event_id, 3);
        assert_eq!(state.last_counter_id, 12);
    }

    pub fn put_namespace_replaces_record(store: &dyn EventStore) {
        let mut record = namespace(1, "default");
        store.put_namespace(&record).unwrap();
        record.config.idempotency_window_seconds = 7200;
        store.put_namespace(&record).unwrap();

        assert_eq!(store.recover().unwrap().namespaces, [record]);
    }

    pub fn read_checkpoints_matches_single_reads(store: &dyn EventStore) {
        let mut default = namespace(1, "default");
        store.put_namespace(&default).unwrap();
        default.sealed_until = at(HOUR_SECONDS);
        // Checkpoints for IDs 1 to 100, except multiples of 7, plus two far-away IDs.
        let written: Vec<(CounterId, Checkpoint)> = (1..=100u64)
            .filter(|id| id % 7 != 0)
            .chain([5_000, 1_000_000])
            .map(|id| {
                let sum = i128::from(id) - 50;
                (id, checkpoint(sum, id % 3 == 0, at(HOUR_SECONDS), id * 10))
            })
            .collect();
        store.write_rollup(&default, &written).unwrap();

        let dense: Vec<CounterId> = (0..=110).collect();
        let found = store.read_checkpoints(&dense).unwrap();
        assert_eq!(found.iter().flatten().count(), 86);

        let sparse: Vec<CounterId> = vec![3, 7, 99, 4_999, 5_000, 1_000_000, 2_000_000];
        let edges: Vec<CounterId> = vec![1, 2, 200];
        // Gaps just below, at and above what one range scan may cover in the embedded store.
        let gaps: Vec<CounterId> = vec![1, 64, 65, 129, 194, 5_000, 1_000_000];
        for ids in [dense, sparse, edges, gaps, Vec::new()] {
            let single: Vec<Option<Checkpoint>> = ids
                .iter()
                .map(|id| store.read_checkpoint(*id).unwrap())
                .collect();
            assert_eq!(store.read_checkpoints(&ids).unwrap(), single, "ids {ids:?}");
        }
    }

    pub fn write_rollup_stores_checkpoints(store: &dyn EventStore) {
        // NOTE: no fault hook covers write_rollup, so this checks what a successful rollup
        // writes, not that a failed one leaves nothing behind.
        let mut default = namespace(1, "default");
        let other = namespace(2, "other");
        store.put_namespace(&default).unwrap();
        store.put_namespace(&other).unwrap();
        let counters = [counter(10, 1, "visits"), counter(11, 1, "clicks")];
        store.append(&batch(1, &[], &counters)).unwrap();

        default.sealed_until = at(HOUR_SECONDS);
        let first = checkpoint(12, false, at(HOUR_SECONDS), 40);
        let second = checkpoint(-3, true, at(HOUR_SECONDS), 41);
        store
            .write_rollup(&default, &[(10, first), (11, second)])
            .unwrap();

        assert_eq!(store.read_checkpoint(10).unwrap(), Some(first));
        assert_eq!(store.read_checkpoint(11).unwrap(), Some(second));
        assert_eq!(store.read_checkpoint(12).unwrap(), None);
        let state = store.recover().unwrap();
        assert_eq!(state.namespaces, [default.clone(), other.clone()]);
        assert_eq!(scanned_checkpoints(store), [(10, first), (11, second)]);

        // A later rollup replaces the checkpoints it names and keeps the others.
        default.sealed_until = at(2 * HOUR_SECONDS);
        let replaced = checkpoint(i128::from(i64::MAX) + 1, false, at(2 * HOUR_SECONDS), 90);
        store.write_rollup(&default, &[(10, replaced)]).unwrap();

        assert_eq!(store.read_checkpoint(10).unwrap(), Some(replaced));
        assert_eq!(store.read_checkpoint(11).unwrap(), Some(second));
        let state = store.recover().unwrap();
        assert_eq!(state.namespaces, [default, other]);
        assert_eq!(scanned_checkpoints(store), [(10, replaced), (11, second)]);
    }

    /// Writes `rollups` one after another, each a list of counter IDs and sums in any order,
    /// and checks every read of checkpoints against the latest write of each ID.
    pub fn rollups_keep_latest_checkpoints(store: &dyn EventStore, rollups: &[Vec<(u64, i64)>]) {
        let mut default = namespace(1, "default");
        store.put_namespace(&default).unwrap();
        let mut expected = std::collections::BTreeMap::new();
        for (round, rollup) in (1..).zip(rollups) {
            default.sealed_until = at(round * HOUR_SECONDS);
            let written: Vec<(CounterId, Checkpoint)> = rollup
                .iter()
                .map(|(id, sum)| {
                    let sealed = at(round * HOUR_SECONDS);
                    (*id, checkpoint(i128::from(*sum), sum % 5 == 0, sealed, *id))
                })
                .collect();
            store.write_rollup(&default, &written).unwrap();
            expected.extend(written);
        }
        let requested: Vec<CounterId> = (0..=300)
            .chain(expected.keys().copied())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let expected_reads: Vec<Option<Checkpoint>> = requested
            .iter()
            .map(|id| expected.get(id).copied())
            .collect();
        assert_eq!(store.read_checkpoints(&requested).unwrap(), expected_reads);
        for (id, checkpoint) in requested.iter().zip(&expected_reads) {
            assert_eq!(
                store.read_checkpoint(*id).unwrap(),
                *checkpoint,
                "counter {id}"
            );
        }
    }

    pub fn scan_counters_by_id_range(store: &dyn EventStore) {
        // Counters 1 to 5 come from one commit and 6, 7 and 9 from single commits; no commit
        // wrote 8.
        let names = ["e", "d", "c", "b", "a", "g", "f", "", "h"];
        let counters: Vec<CounterRecord> = (1..)
            .zip(names)
            .filter(|(_, name)| !name.is_empty())
            .map(|(id, name)| counter(id, 1 + (id as NamespaceId) % 2, name))
            .collect();
        store.append(&batch(1, &[], &counters[..5])).unwrap();
        for single in &counters[5..] {
            store
                .append(&batch(1, &[], std::slice::from_ref(single)))
                .unwrap();
        }
        let mut default = namespace(1, "default");
        default.sealed_until = at(HOUR_SECONDS);
        let checkpoints = [
            (2, checkpoint(5, false, at(HOUR_SECONDS), 7)),
            (7, checkpoint(-4, true, at(HOUR_SECONDS), 8)),
        ];
        store.write_rollup(&default, &checkpoints).unwrap();

        let expected =
            |ids: std::ops::RangeInclusive<CounterId>| -> Vec<(CounterRecord, Option<Checkpoint>)> {
                counters
                    .iter()
                    .filter(|record| ids.contains(&record.id))
                    .map(|record| {
                        let found = checkpoints.iter().find(|(id, _)| *id == record.id);
                        (record.clone(), found.map(|(_, checkpoint)| *checkpoint))
                    })
                    .collect()
            };
        for ids in [
            1..=9,
            0..=CounterId::MAX,
            3..=4,
            2..=2,
            4..=6,
            5..=7,
            8..=8,
            8..=9,
            10..=20,
        ] {
            assert_eq!(
                scanned_range(store, ids.clone()).unwrap(),
                expected(ids.clone()),
                "ids {ids:?}"
            );
        }
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = 6..=3;
        assert_eq!(scanned_range(store, inverted).unwrap(), []);
        // Disjoint ranges that cover every ID visit every counter once.
        let halves = [
            scanned_range(store, 0..=4).unwrap(),
            scanned_range(store, 5..=CounterId::MAX).unwrap(),
        ]
        .concat();
        assert_eq!(halves, expected(0..=CounterId::MAX));
    }

    pub fn checkpoint_without_counter_is_corrupt(store: &dyn EventStore) {
        store
            .append(&batch(1, &[], &[counter(3, 1, "visits")]))
            .unwrap();
        let mut default = namespace(1, "default");
        default.sealed_until = at(HOUR_SECONDS);
        // A stray checkpoint after the last counter, then one before it, which the scan meets first.
        for stray in [4, 2] {
            store
                .write_rollup(
                    &default,
                    &[(stray, checkpoint(1, false, at(HOUR_SECONDS), 1))],
                )
                .unwrap();
            let error = scanned_range(store, 0..=CounterId::MAX).unwrap_err();
            assert!(
                matches!(&error, StorageError::Corrupt { detail, .. } if detail.contains(&format!("counter {stray},"))),
                "{error:?}"
            );
        }
        // A scan of a range without the stray checkpoints still succeeds.
        assert_eq!(
            scanned_range(store, 3..=3).unwrap(),
            [(counter(3, 1, "visits"), None)]
        );
    }

    pub fn drop_buckets_removes_whole_buckets(store: &dyn EventStore) {
        // One event in each of the buckets 0 to 3 of namespace 1 and 0 to 1 of namespace 2.
        let first: Vec<StoredEvent> = (0..4)
            .map(|bucket| {
                event(
                    10,
                    at(bucket * HOUR_SECONDS + 30),
                    bucket as u64 + 1,
                    add(1),
                    &format!("first-{bucket}"),
                )
            })
            .collect();
        let second: Vec<StoredEvent> = (0..2)
            .map(|bucket| {
                event(
                    20,
                    at(bucket * HOUR_SECONDS + 30),
                    bucket as u64 + 11,
                    add(1),
                    &format!("second-{bucket}"),
                )
            })
            .collect();
        store.append(&batch(1, &first, &[])).unwrap();
        store.append(&batch(2, &second, &[])).unwrap();

        // Buckets 0 and 1 end at or before the bound, 2.5 hours after the base, but bucket 2 ends after it.
        assert_eq!(
            store
                .drop_buckets_before(1, at(2 * HOUR_SECONDS + 1800))
                .unwrap(),
            2
        );
        assert_eq!(scan_all(store, 1), first[2..]);
        assert_eq!(scan_all(store, 2), second);

        // A bound on a bucket's end drops that bucket.
        assert_eq!(
            store.drop_buckets_before(1, at(3 * HOUR_SECONDS)).unwrap(),
            1
        );
        assert_eq!(scan_all(store, 1), first[3..]);

        assert_eq!(
            store.drop_buckets_before(1, at(3 * HOUR_SECONDS)).unwrap(),
            0
        );
        assert_eq!(scan_all(store, 1), first[3..]);
        assert_eq!(scan_all(store, 2), second);
    }

    pub fn drop_buckets_keeps_tokens(store: &dyn EventStore) {
        store
            .append(&batch(
                1,
                &[event(10, at(30), 1, add(1), "a")],
                &[counter(10, 1, "visits")],
            ))
            .unwrap();

        assert_eq!(store.drop_buckets_before(1, at(HOUR_SECONDS)).unwrap(), 1);
        assert_eq!(scan_all(store, 1), []);
        assert_eq!(store.find_token(1, 10, "a").unwrap().unwrap().event_id, 1);
        assert_eq!(scanned_counters(store), [counter(10, 1, "visits")]);
    }

    /// Tokens at or after the bound stay, and tokens an hour before it go. A store may keep
    /// tokens shortly before the bound (the embedded store forgets them a partition at a
    /// time), so none lie there.
    pub fn expire_tokens_before_bound(store: &dyn EventStore) {
        let bound = at(2 * HOUR_SECONDS);
        let first = [
            event(10, at(0), 1, add(1), "t0"),
            event(11, at(59), 2, add(1), "t59"),
            event(10, bound, 3, add(1), "bound"),
            event(11, at(3 * HOUR_SECONDS), 4, add(1), "later"),
        ];
        let second = [event(10, at(0), 5, add(1), "t0")];
        store.append(&batch(1, &first, &[])).unwrap();
        store.append(&batch(2, &second, &[])).unwrap();

        assert_eq!(store.expire_tokens(1, bound).unwrap(), 2);

        assert_eq!(store.find_token(1, 10, "t0").unwrap(), None);
        assert_eq!(store.find_token(1, 11, "t59").unwrap(), None);
        assert_eq!(
            store.find_token(1, 10, "bound").unwrap().unwrap().event_id,
            3
        );
        assert_eq!(
            store.find_token(1, 11, "later").unwrap().unwrap().event_id,
            4
        );
        assert_eq!(store.find_token(2, 10, "t0").unwrap().unwrap().event_id, 5);
        // Expiring tokens leaves the events in the log.
        assert_eq!(scan_all(store, 1), first);

        assert_eq!(store.expire_tokens(1, bound).unwrap(), 0);
    }

    /// Expires more tokens than one removal batch of the embedded store holds.
    pub fn expire_many_tokens(store: &dyn EventStore) {
        let expired: Vec<StoredEvent> = (1..=25_001)
            .map(|id| event(10, at(1), id, add(1), &format!("old-{id}")))
            .collect();
        let live: Vec<StoredEvent> = (25_002..=25_100)
            .map(|id| event(10, at(2 * HOUR_SECONDS), id, add(1), &format!("new-{id}")))
            .collect();
        for events in expired.chunks(5_000).chain([live.as_slice()]) {
            store.append(&batch(1, events, &[])).unwrap();
        }

        assert_eq!(store.expire_tokens(1, at(HOUR_SECONDS)).unwrap(), 25_001);

        for id in [1, 10_000, 10_001, 20_000, 25_001] {
            let token = format!("old-{id}");
            assert_eq!(store.find_token(1, 10, &token).unwrap(), None, "{token}");
        }
        for id in [25_002, 25_100] {
            let token = format!("new-{id}");
            let found = store.find_token(1, 10, &token).unwrap();
            assert_eq!(found.map(|record| record.event_id), Some(id), "{token}");
        }
        assert_eq!(store.expire_tokens(1, at(HOUR_SECONDS)).unwrap(), 0);
    }

    /// Checks that a token scan visits every token of every namespace once, with its event
    /// time, and skips expired tokens.
    pub fn scan_tokens_visits_every_token(store: &dyn EventStore) {
        let first = [
            event(10, at(0), 1, add(1), "expired"),
            event(10, at(HOUR_SECONDS), 2, add(1), "kept"),
            event(11, at(HOUR_SECONDS + 1), 3, EventKind::Clear, "kept"),
        ];
        let mut untokened = event(11, at(62), 4, add(1), "unused");
        untokened.token = None;
        let second = [event(10, at(30), 5, add(1), "ünïcode")];
        store.append(&batch(1, &first, &[])).unwrap();
        store.append(&batch(1, &[untokened], &[])).unwrap();
        store.append(&batch(2, &second, &[])).unwrap();
        store.expire_tokens(1, at(HOUR_SECONDS)).unwrap();

        let mut visited = Vec::new();
        store
            .scan_tokens(&mut |token| {
                visited.push((
                    token.namespace_id,
                    token.counter_id,
                    token.token.to_owned(),
                    token.event_time,
                ))
            })
            .unwrap();
        visited.sort();

        assert_eq!(
            visited,
            vec![
                (1, 10, "kept".to_owned(), at(HOUR_SECONDS)),
                (1, 11, "kept".to_owned(), at(HOUR_SECONDS + 1)),
                (2, 10, "ünïcode".to_owned(), at(30)),
            ]
        );
    }

    /// Creates the counters that the `list_counters` cases read.
    fn create_listed_counters(store: &dyn EventStore) {
        let first = ["b", "zähler", "a", "a/b", "Z", "aa"];
        let counters: Vec<CounterRecord> = first
            .iter()
            .zip(1..)
            .map(|(name, id)| counter(id, 1, name))
            .chain([
                counter(100, 0, "a0"),
                counter(101, 2, "a0"),
                counter(102, 2, "c"),
            ])
            .collect();
        store.append(&batch(1, &[], &counters)).unwrap();
    }

    /// The counter names of namespace 1 from `create_listed_counters`, in byte order.
    const LISTED_IN_BYTE_ORDER: [&str; 6] = ["Z", "a", "a/b", "aa", "b", "zähler"];

    pub fn list_counters_byte_order(store: &dyn EventStore) {
        create_listed_counters(store);

        assert_eq!(
            store.list_counters(1, None, 100).unwrap(),
            LISTED_IN_BYTE_ORDER
        );
    }

    pub fn list_counters_after_excludes_name(store: &dyn EventStore) {
        create_listed_counters(store);

        assert_eq!(
            store.list_counters(1, Some("a"), 100).unwrap(),
            LISTED_IN_BYTE_ORDER[2..]
        );
        // A name that does not exist starts the page at the next greater one.
        assert_eq!(
            store.list_counters(1, Some("a0"), 100).unwrap(),
            LISTED_IN_BYTE_ORDER[3..]
        );
        assert_eq!(
            store.list_counters(1, Some(""), 100).unwrap(),
            LISTED_IN_BYTE_ORDER
        );
        assert_eq!(
            store.list_counters(1, Some("zähler"), 100).unwrap(),
            Vec::<String>::new()
        );
    }

    pub fn list_counters_respects_limit(store: &dyn EventStore) {
        create_listed_counters(store);

        assert_eq!(
            store.list_counters(1, None, 2).unwrap(),
            LISTED_IN_BYTE_ORDER[..2]
        );
        assert_eq!(
            store.list_counters(1, None, 0).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.list_counters(1, Some("a"), 1).unwrap(),
            LISTED_IN_BYTE_ORDER[2..3]
        );

        // Pages of two, each after the last name of the previous page, list every name once.
        let mut listed: Vec<String> = Vec::new();
        loop {
            let page = store
                .list_counters(1, listed.last().map(String::as_str), 2)
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2, "page {page:?} is longer than the limit");
            listed.extend(page);
        }
        assert_eq!(listed, LISTED_IN_BYTE_ORDER);
    }

    pub fn list_counters_only_namespace(store: &dyn EventStore) {
        create_listed_counters(store);

        assert_eq!(store.list_counters(0, None, 100).unwrap(), ["a0"]);
        assert_eq!(store.list_counters(2, None, 100).unwrap(), ["a0", "c"]);
        assert_eq!(store.list_counters(2, Some("a0"), 100).unwrap(), ["c"]);
        assert_eq!(
            store.list_counters(3, None, 100).unwrap(),
            Vec::<String>::new()
        );
    }

    pub fn counter_names_round_trip(store: &dyn EventStore) {
        let names = ["zähler", "a/b", "e\u{301}", "\u{e9}", "名前"];
        let counters: Vec<CounterRecord> = names
            .iter()
            .zip(1..)
            .map(|(name, id)| counter(id, 1, name))
            .collect();
        store.append(&batch(1, &[], &counters)).unwrap();

        let mut expected: Vec<&str> = names.to_vec();
        expected.sort_unstable();
        assert_eq!(store.list_counters(1, None, 100).unwrap(), expected);

        let recovered = scanned_counters(store);
        for record in &counters {
            assert!(
                recovered.contains(record),
                "recover lost {record:?}, got {recovered:?}"
            );
        }
        assert_eq!(recovered.len(), counters.len());
    }

    pub fn empty_append_records_last_ids(store: &dyn EventStore) {
        store
            .append(&batch(
                1,
                &[event(10, at(0), 1, add(1), "a")],
                &[counter(10, 1, "visits")],
            ))
            .unwrap();
        let empty = AppendBatch {
            last_event_id: 41,
            last_counter_id: 17,
            ..AppendBatch::default()
        };
        store.append(&empty).unwrap();

        let state = store.recover().unwrap();
        assert_eq!(state.last_event_id, 41);
        assert_eq!(state.last_counter_id, 17);
        assert_eq!(scanned_counters(store), [counter(10, 1, "visits")]);
        assert_eq!(scan_all(store, 1).len(), 1);
    }

    /// Appends `events` in batches of `batch_size` and checks that a scan over their time range
    /// returns exactly them, ordered by key.
    pub fn scan_matches_appended(
        store: &dyn EventStore,
        events: &[StoredEvent],
        batch_size: usize,
    ) {
        for chunk in events.chunks(batch_size) {
            store.append(&batch(1, chunk, &[])).unwrap();
        }

        let from = events.iter().map(|event| event.key.time).min().unwrap();
        let last = events.iter().map(|event| event.key.time).max().unwrap();
        let until = EventTime::from_micros(last.as_micros() + 1);
        assert_eq!(scan(store, 1, from, until), sorted_by_key(events));
    }
}

/// Generates events with distinct event IDs in generation order and random times within the
/// first four buckets after `BASE_SECONDS`, so the order of IDs need not follow the order of
/// times. Half of the times fall into the first three seconds, so that events of different
/// batches share slices. A third of the events carry no token.
fn arbitrary_events() -> impl proptest::strategy::Strategy<Value = Vec<StoredEvent>> {
    use proptest::prelude::*;

    let one_event = (
        prop_oneof![0..4 * HOUR_SECONDS * 1_000_000, 0..3_000_000i64],
        1u64..4,
        any::<i64>(),
        any::<bool>(),
        0u8..3,
    );
    prop::collection::vec(one_event, 1..40).prop_map(|generated| {
        generated
            .into_iter()
            .zip(1u64..)
            .map(
                |((offset, counter_id, delta, is_clear, token_choice), id)| {
                    let kind = if is_clear {
                        EventKind::Clear
                    } else {
                        add(delta)
                    };
                    let mut event = event(
                        counter_id,
                        at_micros(offset),
                        id,
                        kind,
                        &format!("token-{id}"),
                    );
                    if token_choice == 0 {
                        event.token = None;
                    }
                    event
                },
            )
            .collect()
    })
}

/// Generates up to five rollups of up to 60 checkpoints each, for counter IDs that are mostly
/// below 300, some of them repeated within a rollup, plus a few of the largest IDs.
fn arbitrary_rollups() -> impl proptest::strategy::Strategy<Value = Vec<Vec<(u64, i64)>>> {
    use proptest::prelude::*;

    let id = prop_oneof![8 => 0u64..300, 1 => (u64::MAX - 70)..=u64::MAX];
    let rollup = prop::collection::vec((id, any::<i64>()), 0..60);
    prop::collection::vec(rollup, 1..5)
}

/// Expands every case of `cases` into a `#[test]` in module `$backend`, on a store from `$open`.
macro_rules! conformance_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            conformance_suite!(@cases $open;
                find_token_returns_record,
                find_token_unknown_is_none,
                token_scoped_to_counter,
                token_scoped_to_namespace,
                event_without_token_claims_no_token,
                scan_orders_within_a_slice,
                scan_orders_across_buckets,
                scan_bounds_half_open,
                scan_empty_range,
                scan_inverted_range_is_empty,
                scan_only_requested_namespace,
                recover_empty_store,
                recover_returns_written_state,
                put_namespace_replaces_record,
                write_rollup_stores_checkpoints,
                scan_counters_by_id_range,
                checkpoint_without_counter_is_corrupt,
                drop_buckets_removes_whole_buckets,
                drop_buckets_keeps_tokens,
                read_checkpoints_matches_single_reads,
                expire_tokens_before_bound,
                expire_many_tokens,
                scan_tokens_visits_every_token,
                list_counters_byte_order,
                list_counters_after_excludes_name,
                list_counters_respects_limit,
                list_counters_only_namespace,
                counter_names_round_trip,
                empty_append_records_last_ids,
            );

            proptest::proptest! {
                #![proptest_config(proptest::test_runner::Config::with_cases(32))]

                #[test]
                fn scan_matches_appended(events in arbitrary_events(), batch_size in 1usize..8) {
                    let fixture = ($open)();
                    cases::scan_matches_appended(fixture.store(), &events, batch_size);
                }

                #[test]
                fn rollups_keep_latest_checkpoints(rollups in arbitrary_rollups()) {
                    let fixture = ($open)();
                    cases::rollups_keep_latest_checkpoints(fixture.store(), &rollups);
                }
            }
        }
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let fixture = ($open)();
                cases::$case(fixture.store());
            }
        )*
    };
}

conformance_suite!(embedded, new_embedded);
conformance_suite!(memory, new_memory);

// Embedded backend only.

fn assert_same_state(reopened: &RecoveredState, original: &RecoveredState) {
    assert_eq!(reopened.namespaces, original.namespaces);
    assert_eq!(reopened.last_event_id, original.last_event_id);
    assert_eq!(reopened.last_counter_id, original.last_counter_id);
}

#[test]
fn embedded_reopen_keeps_data() {
    let dir = TempDir::new().unwrap();
    let mut default = namespace(1, "default");
    let events = [
        event(10, at(2 * HOUR_SECONDS + 5), 1, add(3), "a"),
        event(11, at(10), 2, add(-1), "b"),
        event(10, at(HOUR_SECONDS), 3, EventKind::Clear, "c"),
        event(10, at(3 * HOUR_SECONDS + 1), 4, add(8), "d"),
    ];

    let store = open_embedded_in(dir.path());
    store.put_namespace(&default).unwrap();
    store
        .append(&batch(
            1,
            &events[..2],
            &[counter(10, 1, "visits"), counter(11, 1, "zähler")],
        ))
        .unwrap();
    store.append(&batch(1, &events[2..], &[])).unwrap();
    default.sealed_until = at(HOUR_SECONDS);
    store
        .write_rollup(
            &default,
            &[(11, checkpoint(-1, false, at(HOUR_SECONDS), 2))],
        )
        .unwrap();
    let before = store.recover().unwrap();
    let counters_before = scanned_counters(&store);
    let checkpoints_before = scanned_checkpoints(&store);
    drop(store);

    let store = open_embedded_in(dir.path());
    let after = store.recover().unwrap();

    assert_same_state(&after, &before);
    assert_eq!(scanned_counters(&store), counters_before);
    assert_eq!(scanned_checkpoints(&store), checkpoints_before);
    assert_eq!(after.namespaces[0].sealed_until, at(HOUR_SECONDS));
    assert_eq!(scan_all(&store, 1), sorted_by_key(&events));
    assert_eq!(
        scan(&store, 1, at(HOUR_SECONDS), at(3 * HOUR_SECONDS)),
        [events[2].clone(), events[0].clone()]
    );
    let token = TokenRecord {
        event_id: 3,
        event_time: at(HOUR_SECONDS),
        kind: EventKind::Clear,
    };
    assert_eq!(store.find_token(1, 10, "c").unwrap(), Some(token));
    assert_eq!(
        store.list_counters(1, None, 10).unwrap(),
        ["visits", "zähler"]
    );
}

#[test]
fn embedded_reopen_keeps_dropped_buckets() {
    let dir = TempDir::new().unwrap();
    let events = [
        event(10, at(30), 1, add(1), "a"),
        event(10, at(HOUR_SECONDS + 30), 2, add(1), "b"),
    ];

    let store = open_embedded_in(dir.path());
    store.append(&batch(1, &events, &[])).unwrap();
    assert_eq!(store.drop_buckets_before(1, at(HOUR_SECONDS)).unwrap(), 1);
    store.sync().unwrap();
    drop(store);

    let store = open_embedded_in(dir.path());
    assert_eq!(scan_all(&store, 1), events[1..]);
    assert_eq!(store.drop_buckets_before(1, at(HOUR_SECONDS)).unwrap(), 0);
}

#[test]
fn embedded_second_open_is_locked() {
    let dir = TempDir::new().unwrap();
    let _first = open_embedded_in(dir.path());

    let second = EmbeddedStore::open(dir.path(), Durability::Sync);

    assert!(matches!(second, Err(StorageError::Locked { .. })));
}

#[test]
fn embedded_fault_fails_whole_append() {
    // NOTE: FaultInjection rejects the batch before the embedded store sees it, so this shows
    // that a failed append claims nothing, not that fjall applies a batch all or nothing.
    let dir = TempDir::new().unwrap();
    let control_file = dir.path().join("faults");
    let data = dir.path().join("data");
    let store = FaultInjection::new(open_embedded_in(&data), control_file.clone());
    store.put_namespace(&namespace(1, "default")).unwrap();
    store
        .append(&batch(
            1,
            &[event(10, at(0), 1, add(1), "before")],
            &[counter(10, 1, "visits")],
        ))
        .unwrap();
    let failing = batch(
        1,
        &[
            event(11, at(HOUR_SECONDS + 5), 2, add(4), "during"),
            event(10, at(2 * HOUR_SECONDS), 3, add(5), "also"),
        ],
        &[counter(11, 1, "clicks")],
    );

    std::fs::write(&control_file, "append").unwrap();
    let result = store.append(&failing);

    assert!(
        matches!(result, Err(StorageError::WriteFailed(_))),
        "append returned {result:?}"
    );
    assert_eq!(store.find_token(1, 11, "during").unwrap(), None);
    assert_eq!(store.find_token(1, 10, "also").unwrap(), None);
    let state = store.recover().unwrap();
    assert_eq!(scanned_counters(&store), [counter(10, 1, "visits")]);
    assert_eq!(state.last_event_id, 1);
    assert_eq!(state.last_counter_id, 10);
    assert_eq!(
        keys(&scan_all(&store, 1)),
        [EventKey { time: at(0), id: 1 }]
    );

    std::fs::write(&control_file, "").unwrap();
    store.append(&failing).unwrap();

    assert_eq!(
        store.find_token(1, 11, "during").unwrap().unwrap().event_id,
        2
    );
    assert_eq!(
        store.find_token(1, 10, "also").unwrap().unwrap().event_id,
        3
    );
    let state = store.recover().unwrap();
    assert_eq!(
        scanned_counters(&store),
        [counter(10, 1, "visits"), counter(11, 1, "clicks")]
    );
    assert_eq!(state.last_event_id, 3);
    assert_eq!(state.last_counter_id, 11);
    assert_eq!(keys(&scan_all(&store, 1)).len(), 3);
}

/// Writes `format` as the recorded store format of an empty directory, as a tally with another
/// store format leaves it, and opens the directory.
fn open_with_format(dir: &Path, format: &[u8]) -> Result<EmbeddedStore, StorageError> {
    {
        let db = fjall::Database::builder(dir).open().unwrap();
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        meta.insert(b"format", format).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    EmbeddedStore::open(dir, Durability::Sync)
}

/// Returns the store format recorded in `dir`, read with fjall directly.
fn recorded_format(dir: &Path) -> Vec<u8> {
    let db = fjall::Database::builder(dir).open().unwrap();
    let meta = db
        .keyspace("meta", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    meta.get(b"format").unwrap().unwrap().to_vec()
}

#[test]
fn store_of_other_format_is_rejected() {
    for format in [1u32, 2, 6] {
        let dir = TempDir::new().unwrap();

        let result = open_with_format(dir.path(), &format.to_be_bytes());

        match result {
            Err(error @ StorageError::UnsupportedFormat { found, .. }) => {
                assert_eq!(found, format);
                let message = error.to_string();
                let expected = if format > 5 {
                    "a newer tally"
                } else {
                    "an older tally"
                };
                assert!(
                    message.starts_with(&format!("unsupported store format {format} in ")),
                    "{message}"
                );
                assert!(message.contains(expected), "{message}");
            }
            Err(other) => panic!("expected a format error, got {other:?}"),
            Ok(_) => panic!("a store of format {format} was opened"),
        }
        assert_eq!(recorded_format(dir.path()), format.to_be_bytes());
    }
}

#[test]
fn damaged_format_record_is_corrupt() {
    let dir = TempDir::new().unwrap();

    let result = open_with_format(dir.path(), &[0, 4]);

    match result {
        Err(StorageError::Corrupt { keyspace, detail }) => {
            assert_eq!(keyspace, "meta");
            assert!(detail.contains("is not a 4-byte number"), "{detail}");
        }
        Err(other) => panic!("expected a corrupt format record, got {other:?}"),
        Ok(_) => panic!("a store with a 2-byte format record was opened"),
    }
    assert_eq!(recorded_format(dir.path()), [0, 4]);
}
