//! Micro-benchmarks of the embedded store: the byte encoding of events (as slice records of
//! 100 events) and tokens, and group commits of 1, 100 and 1000 events with their tokens.
//!
//! Run with `cargo bench -p tally-storage --bench storage`. The append benchmarks write into a
//! fresh temporary directory, so their numbers depend on the disk behind `$TMPDIR`.

use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use std::hint::black_box;
use std::time::Duration;
use tally_core::{EventKey, EventKind, EventTime};
use tally_storage::encoding::{
    decode_slice_record, decode_token, slice_record_key, slice_record_value, token_key, token_value,
};
use tally_storage::{
    AppendBatch, CounterId, Durability, EmbeddedStore, EventStore, NamespaceId, StoredEvent,
    TokenRecord,
};

/// 2026-12-04T10:00:00Z in microseconds since the Unix epoch.
const BASE_MICROS: i64 = 1_796_378_400_000_000;

const NAMESPACE_ID: NamespaceId = 1;

/// Number of distinct counters the appended events are spread over.
const NUM_COUNTERS: u64 = 100;

const BATCH_SIZES: [u64; 3] = [1, 100, 1000];

/// Returns a token of 36 bytes in the shape of a UUID, as clients that use UUIDs send.
fn token_for(id: u64) -> Option<Box<str>> {
    Some(format!("00000000-0000-4000-8000-{id:012x}").into())
}

fn stored_event(id: u64) -> StoredEvent {
    StoredEvent {
        counter_id: id % NUM_COUNTERS + 1,
        key: EventKey {
            // One microsecond per ID keeps every event in the same one-hour bucket, because a
            // run writes far fewer than the 3.6 billion IDs that the bucket spans.
            time: EventTime::from_micros(BASE_MICROS + id as i64),
            id,
        },
        kind: EventKind::Add { delta: 5 },
        token: token_for(id),
    }
}

/// Number of events in the slice record of the encoding benchmarks.
const RECORD_EVENTS: u64 = 100;

fn encode_and_decode(c: &mut Criterion) {
    let events: Vec<StoredEvent> = (1..=RECORD_EVENTS).map(stored_event).collect();
    let refs: Vec<&StoredEvent> = events.iter().collect();
    let slice_start = EventTime::from_micros(BASE_MICROS);
    let encoded_value = slice_record_value(slice_start, 1, &refs);
    let event = &events[0];
    let counter_id: CounterId = event.counter_id;
    let token = TokenRecord {
        event_id: event.key.id,
        event_time: event.key.time,
        kind: event.kind,
    };
    let encoded_token = token_value(&token);
    let token_text = event.token.as_deref().unwrap_or_default();

    let mut group = c.benchmark_group("encoding");
    group.throughput(Throughput::Elements(RECORD_EVENTS));
    group.bench_function("encode_slice_record", |b| {
        b.iter(|| {
            (
                slice_record_key(slice_start, 1),
                slice_record_value(slice_start, 1, black_box(&refs)),
            )
        });
    });
    group.bench_function("decode_slice_record", |b| {
        let mut decoded = Vec::with_capacity(events.len());
        b.iter(|| {
            decoded.clear();
            decode_slice_record(slice_start, black_box(&encoded_value), &mut decoded)
        });
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_token", |b| {
        b.iter(|| {
            (
                token_key(
                    black_box(NAMESPACE_ID),
                    black_box(counter_id),
                    black_box(token_text),
                ),
                token_value(black_box(&token)),
            )
        });
    });
    group.bench_function("decode_token", |b| {
        b.iter(|| decode_token(black_box(&encoded_token)));
    });
    group.finish();
}

/// Builds a group commit of `size` new events with consecutive IDs from `*next_id` on, and
/// advances `*next_id` past them.
fn next_batch(next_id: &mut u64, size: u64) -> AppendBatch {
    let first = *next_id;
    *next_id += size;
    AppendBatch {
        events: (first..*next_id)
            .map(|id| (NAMESPACE_ID, stored_event(id)))
            .collect(),
        new_counters: Vec::new(),
        last_event_id: *next_id - 1,
        last_counter_id: NUM_COUNTERS,
    }
}

/// Measures `EmbeddedStore::append` with `durability` on a store that lives for the whole group.
/// Batches are built outside the timed section, and every batch has fresh event IDs and tokens.
fn bench_append(c: &mut Criterion, group_name: &str, durability: Durability, sample_size: usize) {
    let directory = tempfile::tempdir().expect("failed to create a temporary directory");
    let store =
        EmbeddedStore::open(directory.path(), durability).expect("failed to open the store");
    let mut next_id = 1u64;

    let mut group = c.benchmark_group(group_name);
    // Flat sampling runs the same number of appends in every sample, which suits iterations
    // of milliseconds.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(sample_size);
    for size in BATCH_SIZES {
        group.throughput(Throughput::Elements(size));
        group.bench_function(BenchmarkId::new("events", size), |b| {
            b.iter_batched_ref(
                || next_batch(&mut next_id, size),
                |batch| store.append(batch).expect("append failed"),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn append_os_buffer(c: &mut Criterion) {
    bench_append(c, "append_os_buffer", Durability::OsBuffer, 20);
}

/// Measures appends that each end with an fsync. The difference to `append_os_buffer` is the
/// cost of that sync.
fn append_sync(c: &mut Criterion) {
    bench_append(c, "append_sync", Durability::Sync, 10);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode_and_decode, append_os_buffer, append_sync
}
criterion_main!(benches);
