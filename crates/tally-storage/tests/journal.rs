//! The embedded store keeps fjall's journal near its maximum when no memtable fills, and a
//! close leaves nothing for the next start to replay.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use tally_core::{EventKey, EventKind, EventTime};
use tally_storage::{AppendBatch, Durability, EmbeddedStore, EventStore, StoredEvent};
use tempfile::TempDir;

/// The store's maximum journal size.
const MAX_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

const START_SECONDS: i64 = 1_800_000_000;

fn open(dir: &TempDir) -> EmbeddedStore {
    EmbeddedStore::open(dir.path(), Durability::OsBuffer).unwrap()
}

/// Appends the adds with IDs in `ids`, each with a token, one batch per 1,000. Their event
/// times rise evenly from the start of an hour, by 100 minutes over `total` IDs, as adds with
/// generation times might. So the adds fill one token partition at a time, each with far fewer
/// tokens than fill its memtable, and two hourly buckets of events that do not fill theirs.
fn append_in_time_order(store: &EmbeddedStore, ids: std::ops::Range<u64>, total: u64) {
    const BATCH: usize = 1_000;
    let all: Vec<u64> = ids.collect();
    for batch in all.chunks(BATCH) {
        let events = batch
            .iter()
            .map(|&id| {
                let offset_micros = i64::try_from(id * 6_000_000_000 / total).unwrap();
                let event = StoredEvent {
                    counter_id: 10,
                    key: EventKey {
                        time: EventTime::from_micros(START_SECONDS * 1_000_000 + offset_micros),
                        id,
                    },
                    kind: EventKind::Add { delta: 1 },
                    token: Some(format!("token-{id}").into()),
                };
                (1, event)
            })
            .collect();
        store
            .append(&AppendBatch {
                events,
                new_counters: Vec::new(),
                last_event_id: *batch.last().unwrap(),
                last_counter_id: 10,
            })
            .unwrap();
    }
}

/// 3 million adds with tokens write about 240 MB of journal, while no memtable fills. Without
/// the bound, fjall flushed nothing and kept all of that journal.
#[test]
fn journal_stays_bounded_without_full_memtables() {
    const TOTAL: u64 = 3_000_000;
    const STEP: u64 = 100_000;
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let mut largest = 0;
    for first in (0..TOTAL).step_by(STEP as usize) {
        append_in_time_order(&store, first..first + STEP, TOTAL);
        largest = largest.max(store.journal_bytes().unwrap());
    }

    // The bound is checked once per second while appends go on, and the flushes take time,
    // so how large the journal grows meanwhile depends on the machine's speed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next_id = TOTAL;
    while store.journal_bytes().unwrap() > MAX_JOURNAL_BYTES {
        assert!(
            Instant::now() < deadline,
            "the journal stayed at {} bytes; the largest seen was {largest}",
            store.journal_bytes().unwrap()
        );
        append_in_time_order(&store, next_id..next_id + 1_000, TOTAL);
        next_id += 1_000;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(store.find_token(1, 10, "token-1").unwrap().is_some());
}

/// A close writes every memtable into tables, so a reopened store replays no journal into
/// memory and still finds every token.
#[test]
fn close_leaves_nothing_to_replay() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    append_in_time_order(&store, 0..20_000, 20_000);
    assert!(store.memtable_bytes() > 0);

    store.close().unwrap();
    assert_eq!(store.memtable_bytes(), 0);
    drop(store);

    let store = open(&dir);
    assert_eq!(store.memtable_bytes(), 0);
    for id in [0u64, 10_000, 19_999] {
        assert!(
            store
                .find_token(1, 10, &format!("token-{id}"))
                .unwrap()
                .is_some(),
            "token {id}"
        );
    }
}
