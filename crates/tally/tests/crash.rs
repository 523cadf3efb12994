//! Crash safety of the real binary: acknowledged writes survive `kill -9`, and retries with the
//! same token never count twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use common::frontend::{Http, segment};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

const NUM_WRITERS: usize = 4;
const NUM_COUNTERS: usize = 16;
const NUM_KILLS: usize = 6;

/// One planned add; a retry resends exactly this.
struct PlannedAdd {
    counter: String,
    delta: i64,
    token: String,
    generation_time: String,
}

fn now_rfc3339() -> String {
    // The server parses RFC 3339; format the current time as whole microseconds in UTC.
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock before 1970")
        .as_micros() as i64;
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a (year, month, day) date in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Sends one add until the server acknowledges it, following the server across restarts.
async fn send_until_acknowledged(
    base: &RwLock<String>,
    client: &reqwest::Client,
    add: &PlannedAdd,
) -> u32 {
    let mut attempts = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        attempts += 1;
        let url = format!(
            "{}/v1/namespaces/default/counters/{}/add",
            base.read().await,
            segment(&add.counter)
        );
        let body = json!({
            "delta": add.delta,
            "idempotency_token": { "token": add.token, "generation_time": add.generation_time },
        });
        let reply = client
            .post(&url)
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match reply {
            Ok(response) if response.status() == 200 => return attempts,
            Ok(response) => {
                let status = response.status();
                assert!(
                    status == 503 || status == 429,
                    "add {} got HTTP {status}: {}",
                    add.token,
                    response.text().await.unwrap_or_default()
                );
            }
            Err(_) => {} // The server is down or restarting: retry with the same token.
        }
        assert!(
            Instant::now() < deadline,
            "add {} was never acknowledged",
            add.token
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_loses_nothing_and_counts_once() {
    let server = Arc::new(tokio::sync::Mutex::new(TestServer::start()));
    let base = Arc::new(RwLock::new(server.lock().await.http.clone()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Writers: each streams adds and records what was acknowledged.
    let mut writers = Vec::new();
    for writer in 0..NUM_WRITERS {
        let base = Arc::clone(&base);
        let stop = Arc::clone(&stop);
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut rng = rand::rngs::StdRng::seed_from_u64(writer as u64);
            let mut acknowledged: HashMap<String, i64> = HashMap::new();
            let mut num_retried = 0;
            let mut sequence = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                sequence += 1;
                let add = PlannedAdd {
                    counter: format!("crash-{}", rng.random_range(0..NUM_COUNTERS)),
                    delta: rng.random_range(-5..=20),
                    token: format!("w{writer}-{sequence}"),
                    generation_time: now_rfc3339(),
                };
                let attempts = send_until_acknowledged(&base, &client, &add).await;
                if attempts > 1 {
                    num_retried += 1;
                    // A second retry of an acknowledged add must change nothing either.
                    send_until_acknowledged(&base, &client, &add).await;
                }
                *acknowledged.entry(add.counter).or_default() += add.delta;
            }
            (acknowledged, num_retried, sequence)
        }));
    }

    // The killer: kill -9 at random moments, then restart on the same data directory.
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for _ in 0..NUM_KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..600))).await;
        let mut guard = server.lock().await;
        guard.restart();
        *base.write().await = guard.http.clone();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);

    let mut expected: HashMap<String, i64> = HashMap::new();
    let mut total_retried = 0;
    let mut total_adds = 0;
    for writer in writers {
        let (acknowledged, num_retried, num_adds) = writer.await.expect("writer panicked");
        total_retried += num_retried;
        total_adds += num_adds;
        for (counter, sum) in acknowledged {
            *expected.entry(counter).or_default() += sum;
        }
    }
    assert!(
        total_adds > 100,
        "too few adds to mean anything: {total_adds}"
    );
    eprintln!("crash test: {total_adds} adds, {total_retried} retried across {NUM_KILLS} kills");

    // Every counter equals the clients' own count, before and after one more crash.
    for round in ["after the load", "after a final kill -9"] {
        let http = Http::new(&base.read().await);
        for (counter, sum) in &expected {
            let url = http.counter_url("default", counter);
            let (status, body) = http.raw(reqwest::Method::GET, &url, None).await;
            assert_eq!(status, 200, "{counter} {round}: {body}");
            assert_eq!(body["value"].as_i64(), Some(*sum), "{counter} {round}");
        }
        let mut guard = server.lock().await;
        guard.restart();
        *base.write().await = guard.http.clone();
    }
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_keeps_data() {
    let mut server = TestServer::start();
    let http = server.http_client();
    let url = format!("{}/add", http.counter_url("default", "graceful"));
    let (status, _) = http
        .raw(reqwest::Method::POST, &url, Some(r#"{"delta": 7}"#.into()))
        .await;
    assert_eq!(status, 200);

    let exit = server.terminate();
    assert!(exit.success(), "SIGTERM exit status: {exit:?}");

    let (mut child, http_address, _) = common::spawn_server(&server.data_dir, &[]);
    let http = Http::new(&http_address);
    let (status, body) = http
        .raw(
            reqwest::Method::GET,
            &http.counter_url("default", "graceful"),
            None,
        )
        .await;
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(status, 200);
    assert_eq!(body["value"].as_i64(), Some(7));
}

#[tokio::test]
async fn second_server_on_same_directory_is_refused() {
    let server = TestServer::start();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "serve",
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--resp-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&server.data_dir)
        .output()
        .expect("cannot run tally");
    assert!(
        !output.status.success(),
        "a second server started on the same directory"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another tally process"),
        "stderr: {stderr}"
    );
}
