//! Micro-benchmarks of request decoding on the front ends: JSON bodies of the HTTP API and
//! RESP2 frames of the Redis protocol.
//!
//! Run with `cargo bench -p tally-server --bench decode`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use tally_server::http::body::{parse_add_body, parse_batch_body};
use tally_server::resp::frame::{self, Parsed};
use tally_server::service::MAX_BATCH_ITEMS;

const ADD_BODY: &[u8] = br#"{"delta": 5, "idempotency_token": {"token": "3f2b8c1e-9a4d-4e7b-8c2a-5d6f7e8a9b0c", "generation_time": "2026-12-04T10:00:00Z"}}"#;

const INCRBY: &[u8] = b"*3\r\n$6\r\nINCRBY\r\n$3\r\nkey\r\n$1\r\n5\r\n";

const PIPELINE_COMMANDS: usize = 16;

/// Builds a batch body of `count` items, each with its own counter and token.
fn batch_body(count: usize) -> Vec<u8> {
    let items: Vec<String> = (0..count)
        .map(|index| {
            format!(
                r#"{{"counter": "page-views-{index}", "delta": 5, "idempotency_token": {{"token": "3f2b8c1e-9a4d-4e7b-8c2a-{index:012x}", "generation_time": "2026-12-04T10:00:00Z"}}}}"#
            )
        })
        .collect();
    format!(r#"{{"items": [{}]}}"#, items.join(", ")).into_bytes()
}

fn http_bodies(c: &mut Criterion) {
    let batch = batch_body(MAX_BATCH_ITEMS);

    let mut group = c.benchmark_group("http_body");
    group.throughput(Throughput::Elements(1));
    group.bench_function("add", |b| {
        b.iter(|| parse_add_body(black_box(ADD_BODY)).expect("the add body is valid"));
    });
    group.throughput(Throughput::Elements(MAX_BATCH_ITEMS as u64));
    group.bench_with_input(
        BenchmarkId::new("batch_items", MAX_BATCH_ITEMS),
        &batch,
        |b, batch| {
            b.iter(|| parse_batch_body(black_box(batch)).expect("the batch body is valid"));
        },
    );
    group.finish();
}

/// Parses every command in `buffer` the way a connection does, and returns how many it found.
fn parse_all(buffer: &[u8]) -> usize {
    let mut position = 0;
    let mut count = 0;
    let mut arguments = Vec::new();
    while position < buffer.len() {
        match frame::parse(&buffer[position..], &mut arguments) {
            Ok(Parsed::Command { consumed }) => {
                position += consumed;
                count += 1;
            }
            Ok(Parsed::Incomplete) => panic!("the buffer ends inside a command"),
            Err(error) => panic!("the buffer is not valid RESP2: {}", error.0),
        }
    }
    count
}

fn resp_frames(c: &mut Criterion) {
    let pipeline = INCRBY.repeat(PIPELINE_COMMANDS);
    assert_eq!(parse_all(&pipeline), PIPELINE_COMMANDS);

    let mut group = c.benchmark_group("resp_frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function("incrby", |b| {
        let mut arguments = Vec::new();
        b.iter(|| frame::parse(black_box(INCRBY), &mut arguments).map(|_| arguments.len()));
    });
    group.throughput(Throughput::Elements(PIPELINE_COMMANDS as u64));
    group.bench_with_input(
        BenchmarkId::new("pipeline_incrby", PIPELINE_COMMANDS),
        &pipeline,
        |b, pipeline| b.iter(|| parse_all(black_box(pipeline))),
    );
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
    targets = http_bodies, resp_frames
}
criterion_main!(benches);
