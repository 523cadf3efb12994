//! Micro-benchmarks of the domain's hot paths: delta parsing, folds over sorted events and the
//! per-add update of a counter's running state.
//!
//! Run with `cargo bench -p tally-core --bench core`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use tally_core::{CounterState, Event, EventKey, EventKind, EventTime, Fold, parse_delta};

/// 2026-12-04T10:00:00Z in microseconds since the Unix epoch.
const BASE_MICROS: i64 = 1_796_378_400_000_000;

/// One clear among this many events, so that folds take both branches.
const CLEAR_EVERY: u64 = 1000;

fn parse_delta_inputs(c: &mut Criterion) {
    // A RESP argument may be up to 1 MiB long. An all-digit text of that length passes the digit
    // scan and fails only at the range check, so rejecting it reads every byte.
    let long_digits = vec![b'9'; 1024 * 1024];
    let inputs: [(&str, &[u8]); 6] = [
        ("typical_5", b"5"),
        ("typical_-42", b"-42"),
        ("longest_valid_i64_min", b"-9223372036854775808"),
        ("rejected_out_of_range", b"9223372036854775808"),
        ("rejected_not_digits", b"12abc"),
        ("rejected_1mib_of_digits", &long_digits),
    ];

    let mut group = c.benchmark_group("parse_delta");
    group.throughput(Throughput::Elements(1));
    for (name, text) in inputs {
        group.bench_with_input(BenchmarkId::from_parameter(name), text, |b, text| {
            b.iter(|| parse_delta(black_box(text)));
        });
    }
    group.finish();
}

/// Returns `count` events in key order: adds of small deltas, with a clear every
/// [`CLEAR_EVERY`] events.
fn sorted_events(count: u64) -> Vec<Event> {
    (1..=count)
        .map(|id| {
            let kind = if id % CLEAR_EVERY == 0 {
                EventKind::Clear
            } else {
                EventKind::Add {
                    delta: (id % 7) as i64 - 3,
                }
            };
            Event {
                key: EventKey {
                    time: EventTime::from_micros(BASE_MICROS + id as i64),
                    id,
                },
                kind,
            }
        })
        .collect()
}

fn fold_sorted_events(c: &mut Criterion) {
    let mut group = c.benchmark_group("fold");
    for count in [1_000u64, 100_000] {
        let events = sorted_events(count);
        group.throughput(Throughput::Elements(count));

        // The rollup's path: one `apply` per event, in the order the log scan returns them.
        group.bench_with_input(BenchmarkId::new("apply", count), &events, |b, events| {
            b.iter(|| {
                let mut fold = Fold::default();
                for event in black_box(events) {
                    fold.apply(event.kind);
                }
                fold
            });
        });

        // The writer's path for a late clear: `with_events` copies and sorts its input first.
        group.bench_with_input(
            BenchmarkId::new("with_events", count),
            &events,
            |b, events| b.iter(|| Fold::default().with_events(black_box(events))),
        );
    }
    group.finish();
}

fn counter_state_with_add(c: &mut Criterion) {
    let clear = EventKey {
        time: EventTime::from_micros(BASE_MICROS),
        id: 10,
    };
    let state = CounterState {
        value: 1_000,
        latest_clear: Some(clear),
        latest_event: Some(clear),
    };
    let after_clear = EventKey {
        time: EventTime::from_micros(BASE_MICROS + 1),
        id: 11,
    };
    let before_clear = EventKey {
        time: EventTime::from_micros(BASE_MICROS - 1),
        id: 12,
    };

    let mut group = c.benchmark_group("counter_state_with_add");
    group.throughput(Throughput::Elements(1));
    group.bench_function("after_latest_clear", |b| {
        b.iter(|| black_box(state).with_add(black_box(after_clear), black_box(5)));
    });
    group.bench_function("before_latest_clear", |b| {
        b.iter(|| black_box(state).with_add(black_box(before_clear), black_box(5)));
    });
    group.finish();
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
    targets = parse_delta_inputs, fold_sorted_events, counter_state_with_add
}
criterion_main!(benches);
