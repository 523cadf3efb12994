//! `tally bench` against the real server: every add it reports reaches the counters, its JSON
//! matches its summary, and a timed run ends on time when the server dies under it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use common::frontend::{ErrorClass, Frontend};
use serde_json::Value;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Counter names that a run of `tally bench --counters 10` uses.
const NUM_KEYS: usize = 10;

fn bench_command(target: &str, address: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
    command
        .args(["bench", "--target", target, "--address", address])
        .args(["--counters", &NUM_KEYS.to_string(), "--quiet"])
        .args(extra);
    command
}

/// Reads the count of `N failed requests` from the summary line.
fn failed_requests(stdout: &str) -> u64 {
    let summary = stdout
        .lines()
        .find(|line| line.contains("failed requests"))
        .unwrap_or_else(|| panic!("no summary line in {stdout:?}"));
    let words: Vec<&str> = summary.split_whitespace().collect();
    let position = words
        .iter()
        .position(|word| *word == "failed")
        .expect("summary line without 'failed'");
    words[position - 1]
        .parse()
        .unwrap_or_else(|_| panic!("no count before 'failed' in {summary:?}"))
}

/// Sums the values of the counters `k0` to `k9` of the default namespace.
async fn sum_of_counters(server: &TestServer) -> i64 {
    let mut client = server.http_client();
    let mut sum = 0;
    for index in 0..NUM_KEYS {
        let counter = format!("k{index}");
        match client.get("default", &counter).await {
            Ok(value) => sum += value,
            Err(error) if error.class == ErrorClass::NotFound => {}
            Err(error) => panic!("cannot read {counter}: {error:?}"),
        }
    }
    sum
}

/// Runs 300 adds with tokens over `target` and checks the summary, the JSON and the counters.
async fn adds_reach_counters(target: &str) {
    let server = TestServer::start();
    let address = match target {
        "http" => server.http.clone(),
        "grpc" => server.grpc.clone(),
        _ => server.resp.clone(),
    };
    let json_dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let json_path = json_dir.path().join("result.json");
    let json_arg = json_path.to_string_lossy().into_owned();
    let output: Output = bench_command(
        target,
        &address,
        &[
            "--operations",
            "300",
            "--connections",
            "3",
            "--json",
            &json_arg,
        ],
    )
    .output()
    .expect("cannot run tally bench");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "tally bench failed: {output:?}");
    assert!(stdout.contains("300 operations in"), "{stdout}");
    assert_eq!(failed_requests(&stdout), 0, "{stdout}");
    assert!(
        stdout.contains("p99.9 ms"),
        "no percentile header in {stdout}"
    );

    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(&json_path).expect("tally bench wrote no JSON file"),
    )
    .expect("the JSON file does not parse");
    assert_eq!(json["operations"], 300, "{json}");
    assert_eq!(json["failed_requests"], 0, "{json}");
    assert_eq!(json["target"], target, "{json}");
    let add = &json["by_operation"]["add"];
    assert_eq!(add["operations"], 300, "{json}");
    let latency = &add["latency_micros"];
    let micros = |name: &str| latency[name].as_u64().unwrap_or_else(|| panic!("{json}"));
    assert!(micros("p50") > 0, "{json}");
    assert!(micros("p50") <= micros("p99"), "{json}");
    assert!(micros("p99") <= micros("max"), "{json}");

    assert_eq!(
        sum_of_counters(&server).await,
        300,
        "the counters do not add up to the adds that tally bench reported"
    );
}

#[tokio::test]
async fn http_adds_reach_counters() {
    adds_reach_counters("http").await;
}

#[tokio::test]
async fn grpc_adds_reach_counters() {
    adds_reach_counters("grpc").await;
}

#[tokio::test]
async fn resp_adds_reach_counters() {
    adds_reach_counters("resp").await;
}

/// Waits up to `limit` for `child` to exit. Kills it and panics when it does not.
fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("cannot wait for tally bench") {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().expect("cannot stop tally bench");
            child.wait().expect("cannot wait for tally bench");
            panic!("tally bench still ran {limit:?} after it started");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A failed request returns at once when the server is gone. The run must still end at its
/// deadline and count the failures, instead of spinning on the failures.
#[test]
fn timed_run_ends_when_server_dies() {
    for target in ["resp", "http", "grpc"] {
        let mut server = TestServer::start();
        let address = match target {
            "http" => server.http.clone(),
            "grpc" => server.grpc.clone(),
            _ => server.resp.clone(),
        };
        let mut bench = bench_command(target, &address, &["--duration-seconds", "3"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start tally bench");
        std::thread::sleep(Duration::from_secs(1));
        server.kill9();

        let status = wait_within(&mut bench, Duration::from_secs(20));
        let output = bench.wait_with_output().expect("cannot read tally bench");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            status.success(),
            "{target}: tally bench exited with {status}"
        );
        assert!(
            failed_requests(&stdout) > 0,
            "{target}: no failed requests after the server died: {stdout}"
        );
    }
}
