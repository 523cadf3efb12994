//! Micro-benchmark of the check that decides whether the writer looks a token up: the token
//! filter's check of a new token, against the embedded store's lookup that it saves.
//!
//! Both hold the same 200,000 tokens, written in group commits of 1,000 as the writer writes
//! them, so the store reads fjall's memtables as it does under load. Every token looked
//! up is new, as nearly all tokens are.
//!
//! Run with `cargo bench -p tally-server --bench tokens`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_core::{EventKey, EventKind, EventTime};
use tally_server::token_filter::TokenFilter;
use tally_storage::{AppendBatch, Durability, EmbeddedStore, EventStore, StoredEvent};

/// 2026-12-04T10:00:00Z in microseconds since the Unix epoch.
const BASE_MICROS: i64 = 1_796_378_400_000_000;

const NUM_TOKENS: u64 = 200_000;

const COMMIT_SIZE: u64 = 1_000;

const NUM_COUNTERS: u64 = 100_000;

/// Returns a token of 36 bytes in the shape of a UUID, as clients that use UUIDs send.
fn token(id: u64) -> String {
    format!("00000000-0000-4000-8000-{id:012x}")
}

fn counter_of(id: u64) -> u64 {
    id % NUM_COUNTERS + 1
}

/// Writes the tokens into a new store, in group commits of [`COMMIT_SIZE`].
fn filled_store(directory: &std::path::Path) -> Arc<EmbeddedStore> {
    let store =
        Arc::new(EmbeddedStore::open(directory, Durability::OsBuffer).expect("the store opens"));
    for first in (1..=NUM_TOKENS).step_by(COMMIT_SIZE as usize) {
        let events = (first..first + COMMIT_SIZE)
            .map(|id| {
                let event = StoredEvent {
                    counter_id: counter_of(id),
                    key: EventKey {
                        time: EventTime::from_micros(BASE_MICROS + id as i64),
                        id,
                    },
                    kind: EventKind::Add { delta: 1 },
                    token: Some(token(id).into_boxed_str()),
                };
                (1, event)
            })
            .collect();
        let batch = AppendBatch {
            events,
            new_counters: Vec::new(),
            last_event_id: first + COMMIT_SIZE - 1,
            last_counter_id: NUM_COUNTERS,
        };
        store.append(&batch).expect("the group commit is written");
    }
    store
}

/// Starts a filter on the store and waits until the writer would use it.
fn loaded_filter(store: Arc<EmbeddedStore>) -> TokenFilter {
    let start = EventTime::from_micros(BASE_MICROS);
    let mut filter = TokenFilter::start(store, 3600, start);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut now = start;
    while !filter.is_loaded() {
        assert!(Instant::now() < deadline, "the stored tokens were not read");
        now = now.plus_seconds(1);
        filter.maintain(now, || 3600);
        std::thread::sleep(Duration::from_millis(10));
    }
    filter
}

fn new_token_check(c: &mut Criterion) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = filled_store(directory.path());
    let filter = loaded_filter(Arc::clone(&store));
    let new_tokens: Vec<(u64, String)> = (NUM_TOKENS + 1..=NUM_TOKENS + 10_000)
        .map(|id| (counter_of(id), token(id)))
        .collect();

    let mut group = c.benchmark_group("new_token_check");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(new_tokens.len() as u64));
    group.bench_function("store_lookup", |b| {
        b.iter(|| {
            for (counter_id, token) in &new_tokens {
                let found = store
                    .find_token(1, *counter_id, token)
                    .expect("the lookup works");
                black_box(found);
            }
        });
    });
    group.bench_function("filter_check", |b| {
        b.iter(|| {
            for (counter_id, token) in &new_tokens {
                black_box(filter.may_contain(filter.hash(1, *counter_id, token)));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, new_token_check);
criterion_main!(benches);
