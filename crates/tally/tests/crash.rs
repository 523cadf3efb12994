//! Crash safety of the real binary: acknowledged writes survive `kill -9`, and retries with the
//! same token never count twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use common::frontend::{Frontend, Http, segment};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
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

/// Sends an add with a token and returns the status and body.
async fn add_with_token(
    http: &Http,
    counter: &str,
    delta: i64,
    (token, generation_time): (&str, &str),
) -> (u16, Value) {
    let body = json!({
        "delta": delta,
        "idempotency_token": { "token": token, "generation_time": generation_time },
    });
    let url = format!("{}/add", http.counter_url("default", counter));
    http.raw(reqwest::Method::POST, &url, Some(body.to_string()))
        .await
}

/// After a start the writer reads the stored tokens into its token filter, and from then on it
/// skips the store for tokens that the filter reports as absent. Retries of adds acknowledged
/// before a `kill -9` must still be recognised once the filter is in use.
#[tokio::test]
async fn kill9_retries_found_with_token_filter() {
    let mut server = TestServer::start();
    let http = Http::new(&server.http);
    let mut first_replies = Vec::new();
    for i in 0..200 {
        let counter = format!("filter-{}", i % 20);
        let token = format!("before-{i}");
        let time = now_rfc3339();
        let (status, body) = add_with_token(&http, &counter, 3, (&token, &time)).await;
        assert_eq!(status, 200, "{token}: {body}");
        first_replies.push((counter, token, time, body["event_id"].as_u64().unwrap()));
    }

    server.restart();
    let http = Http::new(&server.http);
    // The writer takes the loader's result at its first commit at least a second after the
    // previous check, so two writes that far apart put the filter in use.
    for token in ["warm-up-1", "warm-up-2"] {
        let (status, body) =
            add_with_token(&http, "filter-other", 1, (token, &now_rfc3339())).await;
        assert_eq!(status, 200, "{token}: {body}");
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }

    for (counter, token, time, event_id) in &first_replies {
        let (status, body) = add_with_token(&http, counter, 3, (token, time)).await;
        assert_eq!(status, 200, "retry of {token}: {body}");
        assert_eq!(body["duplicate"], true, "retry of {token}: {body}");
        assert_eq!(
            body["event_id"].as_u64(),
            Some(*event_id),
            "retry of {token}"
        );
        let (status, body) = add_with_token(&http, counter, 4, (token, time)).await;
        assert_eq!(status, 409, "{token} with another delta: {body}");
    }
    for i in 0..20 {
        let url = http.counter_url("default", &format!("filter-{i}"));
        let (status, body) = http.raw(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200, "filter-{i}: {body}");
        assert_eq!(body["value"].as_i64(), Some(30), "filter-{i}");
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

/// A SIGTERM stop writes what the store's journal contains into its tables and logs it, so
/// that the next start has nothing to replay. The adds survive it.
#[tokio::test]
async fn sigterm_moves_the_journal_into_tables() {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let data_dir = dir.path().join("data");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("cannot create the log file");
    let info = [("TALLY_LOG".to_owned(), "info".to_owned())];
    let mut server =
        common::spawn_server_logging_to(&data_dir, &info, &[], std::process::Stdio::from(log));
    let mut http = Http::new(&server.http);
    for i in 0..5 {
        let token = common::frontend::token(&format!("journal-{i}"));
        http.add("default", "journal", 1, token).await.unwrap();
    }

    common::send_sigterm(&server.child);
    let exit = server.child.wait().expect("wait");
    assert!(exit.success(), "SIGTERM exit status: {exit:?}");
    let log = std::fs::read_to_string(&log_path).expect("cannot read the log");
    let line = log
        .lines()
        .find(|line| line.contains("flushed the memtables"))
        .unwrap_or_else(|| panic!("no flush at the stop; the log:\n{log}"));
    let num_sealed: u64 = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("num_sealed="))
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no num_sealed in {line:?}"));
    assert!(num_sealed >= 1, "{line}");

    let (mut child, http_address, _) = common::spawn_server(&data_dir, &[]);
    let value = Http::new(&http_address).get("default", "journal").await;
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(value.ok(), Some(5));
}

/// HTTP requests that reached the server before SIGTERM all get responses, and every
/// acknowledged add survives the restart.
#[test]
fn sigterm_responds_to_received_http_requests() {
    const CONNECTIONS: usize = 20;
    let mut server = TestServer::start();
    let address = server.http.trim_start_matches("http://").to_owned();
    let mut streams: Vec<(String, std::net::TcpStream)> = (0..CONNECTIONS)
        .map(|index| {
            let counter = format!("stop-http-{index}");
            let stream = connect_and_send(&address, &raw_http_add(&address, &counter));
            (counter, stream)
        })
        .collect();

    let exit = server.terminate();
    assert!(exit.success(), "SIGTERM exit status: {exit:?}");

    for (counter, stream) in &mut streams {
        let response = common::read_until_closed(stream, counter);
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{counter}: response {response:?}"
        );
    }

    let counters: Vec<String> = streams.into_iter().map(|(counter, _)| counter).collect();
    assert_each_counts_one_after_restart(&mut server, &counters);
}

/// Returns an HTTP/1.1 request that adds 1 to `counter` in the namespace `default`, with the
/// header `Connection: close`.
fn raw_http_add(host: &str, counter: &str) -> Vec<u8> {
    let body = r#"{"delta": 1}"#;
    format!(
        "POST /v1/namespaces/default/counters/{counter}/add HTTP/1.1\r\n\
         Host: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Restarts the server on its data directory and checks that each counter of the namespace
/// `default` has the value 1.
fn assert_each_counts_one_after_restart(server: &mut TestServer, counters: &[String]) {
    server.restart();
    let http = server.http_client();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for counter in counters {
        let (status, body) = runtime.block_on(http.raw(
            reqwest::Method::GET,
            &http.counter_url("default", counter),
            None,
        ));
        assert_eq!(status, 200, "{counter}: {body}");
        assert_eq!(body["value"].as_i64(), Some(1), "{counter}");
    }
}

const H2_DATA: u8 = 0x0;
const H2_HEADERS: u8 = 0x1;
const H2_SETTINGS: u8 = 0x4;
const H2_PING: u8 = 0x6;
/// END_STREAM on DATA and HEADERS frames, ACK on SETTINGS and PING frames.
const H2_END_STREAM_OR_ACK: u8 = 0x1;
const H2_END_HEADERS: u8 = 0x4;

/// Encodes one HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Returns the raw bytes of a new HTTP/2 connection that makes one gRPC `AddCount` of 1 on
/// stream 1: the connection preface, an empty SETTINGS frame, a HEADERS frame in HPACK
/// literals and a DATA frame that ends the stream.
fn raw_grpc_add(authority: &str, counter: &str) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/tally.v1.Tally/AddCount"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        // A literal header field without indexing, with a new name; every length is below 127.
        headers.push(0x00);
        headers.push(u8::try_from(name.len()).unwrap());
        headers.extend_from_slice(name.as_bytes());
        headers.push(u8::try_from(value.len()).unwrap());
        headers.extend_from_slice(value.as_bytes());
    }
    // AddCountRequest { namespace: "default", counter, delta: 1 } in protobuf.
    let mut message = vec![0x0a, 7];
    message.extend_from_slice(b"default");
    message.push(0x12);
    message.push(u8::try_from(counter.len()).unwrap());
    message.extend_from_slice(counter.as_bytes());
    message.extend_from_slice(&[0x18, 1]);
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&message);

    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(H2_SETTINGS, 0, 0, &[]));
    out.extend(h2_frame(H2_HEADERS, H2_END_HEADERS, 1, &headers));
    out.extend(h2_frame(H2_DATA, H2_END_STREAM_OR_ACK, 1, &body));
    out
}

/// Reads HTTP/2 frames until the server closes the connection, acknowledging its SETTINGS and
/// PING frames as a client must (the h2 crate's graceful shutdown waits for a PING
/// acknowledgement).
/// Returns the DATA frames' payload lengths on stream 1.
fn read_h2_until_close(mut stream: std::net::TcpStream) -> std::io::Result<Vec<usize>> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut data_lengths = Vec::new();
    loop {
        let num_read = stream.read(&mut chunk)?;
        if num_read == 0 {
            return Ok(data_lengths);
        }
        buffer.extend_from_slice(&chunk[..num_read]);
        while buffer.len() >= 9 {
            let len =
                usize::from(buffer[0]) << 16 | usize::from(buffer[1]) << 8 | usize::from(buffer[2]);
            if buffer.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buffer[3], buffer[4]);
            let stream_id =
                u32::from_be_bytes([buffer[5], buffer[6], buffer[7], buffer[8]]) & 0x7fff_ffff;
            let payload = buffer[9..9 + len].to_vec();
            buffer.drain(..9 + len);
            let is_ack = flags & H2_END_STREAM_OR_ACK != 0;
            match kind {
                H2_DATA if stream_id == 1 => data_lengths.push(len),
                H2_SETTINGS if !is_ack => {
                    stream.write_all(&h2_frame(H2_SETTINGS, H2_END_STREAM_OR_ACK, 0, &[]))?;
                }
                H2_PING if !is_ack => {
                    stream.write_all(&h2_frame(H2_PING, H2_END_STREAM_OR_ACK, 0, &payload))?;
                }
                _ => {}
            }
        }
    }
}

/// gRPC calls that reached the server before SIGTERM all get their response message, and every
/// acknowledged add survives the restart.
#[test]
fn sigterm_responds_to_received_grpc_calls() {
    const CONNECTIONS: usize = 20;
    let mut server = TestServer::start();
    let address = server.grpc.trim_start_matches("http://").to_owned();
    let streams: Vec<(String, std::net::TcpStream)> = (0..CONNECTIONS)
        .map(|index| {
            let counter = format!("stop-grpc-{index}");
            let stream = connect_and_send(&address, &raw_grpc_add(&address, &counter));
            (counter, stream)
        })
        .collect();

    let readers: Vec<_> = streams
        .into_iter()
        .map(|(counter, stream)| std::thread::spawn(move || (counter, read_h2_until_close(stream))))
        .collect();
    let exit = server.terminate();
    assert!(exit.success(), "SIGTERM exit status: {exit:?}");

    let mut counters = Vec::new();
    for reader in readers {
        let (counter, data) = reader.join().unwrap();
        let data =
            data.unwrap_or_else(|error| panic!("{counter}: reading the response failed: {error}"));
        // The response message (an AddCountResponse after its 5-byte gRPC prefix) comes in a
        // DATA frame. An error status would come in trailers alone, without one.
        assert!(
            data.iter().sum::<usize>() > 5,
            "{counter}: DATA frames of {data:?} bytes"
        );
        counters.push(counter);
    }

    assert_each_counts_one_after_restart(&mut server, &counters);
}

/// Requests still waiting in the listeners' backlogs when the stop begins (sent to each front
/// end while the server is paused) all get responses, and every acknowledged add survives the
/// restart.
#[test]
fn sigterm_answers_connections_in_the_backlog() {
    const CONNECTIONS_PER_FRONT_END: usize = 5;
    let mut server = TestServer::start();
    let http = server.http.trim_start_matches("http://").to_owned();
    let grpc = server.grpc.trim_start_matches("http://").to_owned();
    let resp = server.resp.clone();
    let (readers, exit) = server.terminate_with_backlog(|| {
        let mut readers = Vec::new();
        for index in 0..CONNECTIONS_PER_FRONT_END {
            let counter = format!("backlog-http-{index}");
            let stream = connect_and_send(&http, &raw_http_add(&http, &counter));
            readers.push(spawn_reader(counter, move |counter| {
                let response = common::read_until_closed(&mut { stream }, counter);
                String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200")
            }));

            let counter = format!("backlog-grpc-{index}");
            let stream = connect_and_send(&grpc, &raw_grpc_add(&grpc, &counter));
            readers.push(spawn_reader(counter, move |_| {
                read_h2_until_close(stream).is_ok_and(|data| data.iter().sum::<usize>() > 5)
            }));

            let counter = format!("backlog-resp-{index}");
            let command = format!("*2\r\n$4\r\nINCR\r\n${}\r\n{counter}\r\n", counter.len());
            let stream = connect_and_send(&resp, command.as_bytes());
            readers.push(spawn_reader(counter, move |counter| {
                common::read_until_closed(&mut { stream }, counter) == b":1\r\n"
            }));
        }
        readers
    });
    assert!(exit.success(), "SIGTERM exit status: {exit:?}");

    let mut counters = Vec::new();
    for reader in readers {
        let (counter, answered) = reader.join().unwrap();
        assert!(
            answered,
            "{counter}: no successful response before the close"
        );
        counters.push(counter);
    }
    assert_each_counts_one_after_restart(&mut server, &counters);
}

fn connect_and_send(address: &str, request: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request).unwrap();
    stream
}

/// Runs `check(counter)` on a thread of its own and returns the counter with the outcome.
fn spawn_reader(
    counter: String,
    check: impl FnOnce(&str) -> bool + Send + 'static,
) -> std::thread::JoinHandle<(String, bool)> {
    std::thread::spawn(move || {
        let answered = check(&counter);
        (counter, answered)
    })
}

/// A client that stalls in the middle of its request (HTTP) or never acknowledges the server's
/// PING (gRPC) does not keep a stopping server from exiting. The server waits 10 s for the
/// front ends and then 5 s for the writer.
#[test]
fn sigterm_exits_despite_stalled_clients() {
    use std::io::Write;
    let mut server = TestServer::start();
    let http_address = server.http.trim_start_matches("http://").to_owned();
    let grpc_address = server.grpc.trim_start_matches("http://").to_owned();

    let mut http = std::net::TcpStream::connect(&http_address).unwrap();
    let partial = format!(
        "POST /v1/namespaces/default/counters/stalled/add HTTP/1.1\r\nHost: {http_address}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"delta\""
    );
    http.write_all(partial.as_bytes()).unwrap();
    let mut grpc = std::net::TcpStream::connect(&grpc_address).unwrap();
    grpc.write_all(&raw_grpc_add(&grpc_address, "stalled"))
        .unwrap();
    // Both connections must be in progress, not waiting in a backlog, when the stop begins.
    std::thread::sleep(Duration::from_millis(300));

    let stopped = server.terminate_within(Duration::from_secs(40));
    let (status, took) = stopped.expect("the server was still running 40 s after SIGTERM");
    assert!(status.success(), "SIGTERM exit status: {status:?}");
    assert!(
        took < Duration::from_secs(25),
        "the server took {took:?} to stop"
    );
    drop((http, grpc));
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
