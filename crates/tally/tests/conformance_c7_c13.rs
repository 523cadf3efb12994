//! Conformance cases C7 to C9 and C11 to C13, run against the real `tally` binary. Each case is
//! written once, generic over the front end, and runs once on HTTP and once on gRPC.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::frontend::{
    ApiResult, Change, ErrorClass, Frontend, Grpc, Http, Token, segment, token,
};
use common::{TestServer, unique};
use futures::future::{Either, join, join_all, select};
use serde_json::{Value, json};
use std::cell::Cell;
use std::collections::HashSet;
use std::time::Duration;
use tally_core::EventTime;
use tally_server::proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 2^53 + 1: the smallest positive integer that a double cannot represent exactly.
const ABOVE_DOUBLE_PRECISION: i64 = 9_007_199_254_740_993;

/// `i64::MAX - 1`.
const NEAR_I64_MAX: i64 = 9_223_372_036_854_775_806;

/// Maximum length of a counter name in bytes of UTF-8.
const MAX_COUNTER_NAME_BYTES: usize = 256;

const MIB: usize = 1024 * 1024;

/// Generates `mod <case> { http, grpc }`, running the generic case on each front end.
macro_rules! on_both_front_ends {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn http() {
                    super::$case::<super::Http>().await;
                }

                #[tokio::test]
                async fn grpc() {
                    super::$case::<super::Grpc>().await;
                }
            }
        )*
    };
}

on_both_front_ends!(
    c7_tokens_scoped_to_counter,
    c8_clear_then_add,
    c8_concurrent_clear_and_add,
    c9_no_lost_updates,
    c11_oversized_requests,
    c12_names_round_trip,
    c13_i64_values_survive_json,
);

/// A front end that a case runs on, with the checks that exist only on that front end.
trait FrontendUnderTest: Frontend + Sized {
    async fn connect(server: &TestServer) -> Self;

    /// Sends requests far over this front end's size limits and checks that each is rejected
    /// and that the server still serves afterwards.
    async fn check_oversized_requests(server: &TestServer);

    /// Sends a counter name that is not valid UTF-8, where this front end can carry one.
    async fn check_invalid_utf8_name(server: &TestServer, namespace: &str);
}

impl FrontendUnderTest for Http {
    async fn connect(server: &TestServer) -> Self {
        server.http_client()
    }

    async fn check_oversized_requests(server: &TestServer) {
        let mut http = server.http_client();
        let namespace = create_namespace(&mut http, "c11-http", plain_config()).await;

        // A URI over the server's 8 KiB limit that reqwest can still send.
        let name = "a".repeat(32 * 1024);
        let (status, body) = http
            .raw(
                reqwest::Method::GET,
                &http.counter_url(&namespace, &name),
                None,
            )
            .await;
        assert_eq!(status, 414, "http: GET with a 32 KiB counter name: {body}");

        // A request that declares a body of 100 MiB.
        let counter = unique("c11-body");
        let declared = 100 * MIB;
        let head = format!(
            "POST /v1/namespaces/{}/counters/{}/add HTTP/1.1\r\nhost: {}\r\n\
             content-type: application/json\r\ncontent-length: {declared}\r\n\r\n",
            segment(&namespace),
            segment(&counter),
            http_address(server),
        );
        let (status, num_sent) = send_raw_request(server, head.as_bytes(), declared).await;
        assert_eq!(
            status,
            Some(413),
            "http: POST with a 100 MiB body: expected status 413 ({num_sent} bytes sent)"
        );
        assert!(
            num_sent < head.len() + declared,
            "http: the server read the whole 100 MiB body before it replied"
        );
        let error = http
            .get(&namespace, &counter)
            .await
            .expect_err("http: the counter of the rejected 100 MiB request exists");
        assert_eq!(
            error.class,
            ErrorClass::NotFound,
            "http: get of the counter of the rejected 100 MiB request: {error:?}"
        );

        // A counter name of 1 MiB in the URI. The `http` crate (1.x) under reqwest rejects URIs
        // longer than 65534 bytes on the client side, so this request is written to the socket.
        let name = "a".repeat(MIB);
        let head = format!(
            "GET /v1/namespaces/{}/counters/{name} HTTP/1.1\r\nhost: {}\r\n\r\n",
            segment(&namespace),
            http_address(server),
        );
        let (uri_status, _) = send_raw_request(server, head.as_bytes(), 0).await;
        let after = http
            .add(&namespace, &unique("c11-after"), 1, token(&unique("c11")))
            .await;

        assert!(
            uri_status == Some(400) || uri_status == Some(414),
            "http: GET with a 1 MiB counter name: expected status 400 or 414, got {uri_status:?}"
        );
        assert!(
            after.is_ok(),
            "http: an ordinary add after the oversized requests failed: {after:?}"
        );
    }

    async fn check_invalid_utf8_name(server: &TestServer, namespace: &str) {
        let mut http = server.http_client();
        let base = format!(
            "{}/v1/namespaces/{}/counters",
            server.http,
            segment(namespace)
        );

        let (status, body) = http
            .raw(reqwest::Method::GET, &format!("{base}/%FF"), None)
            .await;
        assert_eq!(status, 400, "http: GET of counter %FF: {body}");

        // A name whose valid UTF-8 prefix must not be kept as a counter of its own.
        let prefix = unique("c12-utf8");
        let add_body = json!({ "delta": 1, "idempotency_token": { "token": unique("c12") } });
        let (status, body) = http
            .raw(
                reqwest::Method::POST,
                &format!("{base}/{}%FF/add", segment(&prefix)),
                Some(add_body.to_string()),
            )
            .await;
        assert_eq!(status, 400, "http: add to counter {prefix}%FF: {body}");
        assert_eq!(
            body["error"]["code"], "invalid_argument",
            "http: add to counter {prefix}%FF: {body}"
        );
        let error = http
            .get(namespace, &prefix)
            .await
            .expect_err("http: the valid prefix of an invalid UTF-8 name became a counter");
        assert_eq!(
            error.class,
            ErrorClass::NotFound,
            "http: get of the prefix {prefix}: {error:?}"
        );
    }
}

impl FrontendUnderTest for Grpc {
    async fn connect(server: &TestServer) -> Self {
        server.grpc_client().await
    }

    async fn check_oversized_requests(server: &TestServer) {
        let mut grpc = server.grpc_client().await;
        let namespace = create_namespace(&mut grpc, "c11-grpc", plain_config()).await;

        // An AddCount message of about 5 MiB, over the 4 MiB limit.
        let request = proto::AddCountRequest {
            namespace: namespace.clone(),
            counter: "a".repeat(5 * MIB),
            delta: 1,
            idempotency_token: Some(proto::IdempotencyToken {
                token: unique("c11"),
                generation_time: String::new(),
            }),
        };
        let oversized = grpc.inner().add_count(request).await;
        let after = grpc
            .add(&namespace, &unique("c11-after"), 1, token(&unique("c11")))
            .await;

        let status = oversized.expect_err("grpc: a 5 MiB AddCount message was accepted");
        assert_eq!(
            status.code(),
            tonic::Code::ResourceExhausted,
            "grpc: a 5 MiB AddCount message: expected RESOURCE_EXHAUSTED, message: {}",
            status.message()
        );
        assert!(
            after.is_ok(),
            "grpc: an ordinary add after the oversized request failed: {after:?}"
        );
    }

    async fn check_invalid_utf8_name(_server: &TestServer, _namespace: &str) {
        // NOTE: the generated client takes `String` fields, so it cannot send invalid UTF-8.
    }
}

// ---- helpers ----

fn plain_config() -> Value {
    json!({ "counter_type": "eventual" })
}

/// Returns the configuration of a namespace whose events are sealed one second after their
/// event time, so that a test can roll them up after a short sleep.
fn rollup_config() -> Value {
    json!({
        "counter_type": "eventual",
        "accept_limit_seconds": 1,
        "idempotency_window_seconds": 3600,
    })
}

async fn create_namespace<F: Frontend>(front: &mut F, prefix: &str, config: Value) -> String {
    let namespace = unique(prefix);
    if let Err(error) = front.put_namespace(&namespace, config).await {
        panic!(
            "{}: cannot create namespace {namespace}: {error:?}",
            front.name()
        );
    }
    namespace
}

/// Waits until the events just sent are older than the one-second accept limit of
/// [`rollup_config`], then rolls them up.
async fn roll_up_sent_events(server: &TestServer) {
    tokio::time::sleep(Duration::from_millis(2200)).await;
    server.rollup().await;
}

async fn value_of<F: Frontend>(front: &mut F, namespace: &str, counter: &str) -> i64 {
    match front.get(namespace, counter).await {
        Ok(value) => value,
        Err(error) => panic!(
            "{}: get of {namespace}/{counter:?} failed: {error:?}",
            front.name()
        ),
    }
}

fn token_at(text: &str, generation_time: &str) -> Option<Token> {
    Some(Token {
        token: text.to_owned(),
        generation_time: Some(generation_time.to_owned()),
    })
}

/// Reads each counter and panics with every counter whose value differs from the expected one.
async fn check_values<F: Frontend>(
    front: &mut F,
    namespace: &str,
    expected: &[(String, i64)],
    stage: &str,
) {
    let mut mismatches = Vec::new();
    for (counter, want) in expected {
        let got = front.get(namespace, counter).await;
        if got.as_ref().ok() != Some(want) {
            mismatches.push((counter.clone(), *want, got));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}: {} of {} counters have the wrong value {stage}; the first ones \
         (counter, expected, got): {:?}",
        front.name(),
        mismatches.len(),
        expected.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}

/// Sends `count` adds of 1, each with a fresh token, one after another.
async fn add_ones<F: Frontend>(
    mut client: F,
    namespace: &str,
    counter: &str,
    count: usize,
) -> Vec<ApiResult<Change>> {
    let mut replies = Vec::with_capacity(count);
    for _ in 0..count {
        replies.push(
            client
                .add(namespace, counter, 1, token(&unique("c9")))
                .await,
        );
    }
    replies
}

/// Returns the status and the raw text of an HTTP GET of a counter.
async fn counter_text(http: &Http, namespace: &str, counter: &str) -> (u16, String) {
    let response = reqwest::get(http.counter_url(namespace, counter))
        .await
        .expect("HTTP GET failed");
    let status = response.status().as_u16();
    (status, response.text().await.expect("cannot read the body"))
}

/// Returns the literal text of the number that follows `"field":` in a JSON document.
fn json_number_text<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    let key = format!("\"{field}\":");
    let rest = text[text.find(&key)? + key.len()..].trim_start();
    let end = rest
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '-'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn http_address(server: &TestServer) -> &str {
    server
        .http
        .strip_prefix("http://")
        .expect("the HTTP address starts with http://")
}

/// Writes `head`, then `body_length` bytes of body, to a new connection in 64 KiB chunks until
/// the server replies or closes the connection. Returns the status, if a status line arrived,
/// and the number of bytes that the socket accepted.
async fn send_raw_request(
    server: &TestServer,
    head: &[u8],
    body_length: usize,
) -> (Option<u16>, usize) {
    const CHUNK_BYTES: usize = 64 * 1024;
    let stream = TcpStream::connect(http_address(server))
        .await
        .expect("cannot connect over TCP");
    let (mut reader, mut writer) = stream.into_split();

    let num_sent = Cell::new(0);
    let writing = async {
        let body = vec![b' '; CHUNK_BYTES];
        let total = head.len() + body_length;
        while num_sent.get() < total {
            let sent = num_sent.get();
            let chunk = if sent < head.len() {
                &head[sent..head.len().min(sent + CHUNK_BYTES)]
            } else {
                &body[..CHUNK_BYTES.min(total - sent)]
            };
            if writer.write_all(chunk).await.is_err() {
                break;
            }
            num_sent.set(sent + chunk.len());
        }
    };
    let reading = async {
        let mut received = Vec::new();
        let mut buffer = [0_u8; 4096];
        while !received.windows(4).any(|window| window == b"\r\n\r\n") {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(length) => received.extend_from_slice(&buffer[..length]),
            }
        }
        let head = String::from_utf8_lossy(&received).into_owned();
        head.split_whitespace()
            .nth(1)
            .and_then(|status| status.parse::<u16>().ok())
    };
    let exchange = async {
        match select(Box::pin(reading), Box::pin(writing)).await {
            Either::Left((status, _)) => status,
            Either::Right(((), reading)) => reading.await,
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("no reply to the raw HTTP request within 30 s");
    (status, num_sent.get())
}

// ---- cases ----

/// C7: a token is scoped to its counter. The same token on another namespace or another counter
/// is a new change, and on the same counter it is a retry or, for another change, a conflict.
async fn c7_tokens_scoped_to_counter<F: FrontendUnderTest>() {
    let server = TestServer::start();
    let mut front = F::connect(&server).await;
    let name = front.name();
    let namespace_a = create_namespace(&mut front, "c7-a", plain_config()).await;
    let namespace_b = create_namespace(&mut front, "c7-b", plain_config()).await;
    let c = unique("c7-c");
    let d = unique("c7-d");
    let shared = unique("c7-token");

    let first = front
        .add(&namespace_a, &c, 1, token(&shared))
        .await
        .expect("first add to A/c failed");
    assert!(!first.duplicate, "{name}: the first add was a duplicate");
    assert_eq!(
        value_of(&mut front, &namespace_a, &c).await,
        1,
        "{name}: A/c"
    );

    let other_namespace = front
        .add(&namespace_b, &c, 1, token(&shared))
        .await
        .expect("add to B/c with the token of A/c failed");
    assert!(
        !other_namespace.duplicate,
        "{name}: the token of A/c was taken as a retry on B/c"
    );
    assert_ne!(
        other_namespace.event_id, first.event_id,
        "{name}: B/c got the event ID of A/c"
    );
    assert_eq!(
        value_of(&mut front, &namespace_b, &c).await,
        1,
        "{name}: B/c"
    );

    let other_counter = front
        .add(&namespace_a, &d, 1, token(&shared))
        .await
        .expect("add to A/d with the token of A/c failed");
    assert!(
        !other_counter.duplicate,
        "{name}: the token of A/c was taken as a retry on A/d"
    );
    assert_eq!(
        value_of(&mut front, &namespace_a, &d).await,
        1,
        "{name}: A/d"
    );

    let retry = front
        .add(&namespace_a, &c, 1, token(&shared))
        .await
        .expect("retry of the first add to A/c failed");
    assert!(
        retry.duplicate,
        "{name}: the retry on A/c was not a duplicate"
    );
    assert_eq!(
        retry.event_id, first.event_id,
        "{name}: the retry on A/c did not return the first event ID"
    );
    assert_eq!(
        value_of(&mut front, &namespace_a, &c).await,
        1,
        "{name}: A/c after the retry"
    );

    let conflict = front
        .add(&namespace_a, &c, 2, token(&shared))
        .await
        .expect_err("the same token with another delta was accepted on A/c");
    assert_eq!(
        conflict.class,
        ErrorClass::Conflict,
        "{name}: same token, other delta: {conflict:?}"
    );
    assert!(
        conflict.message.contains("idempotency token"),
        "{name}: the conflict message does not name the idempotency token: {}",
        conflict.message
    );
    assert_eq!(
        value_of(&mut front, &namespace_a, &c).await,
        1,
        "{name}: A/c after the conflicting add"
    );

    let clear_conflict = front
        .clear(&namespace_a, &c, token(&shared))
        .await
        .expect_err("a clear with the token of an add was accepted on A/c");
    assert_eq!(
        clear_conflict.class,
        ErrorClass::Conflict,
        "{name}: clear with the token of an add: {clear_conflict:?}"
    );
    assert!(
        clear_conflict.message.contains("idempotency token"),
        "{name}: the conflict message does not name the idempotency token: {}",
        clear_conflict.message
    );
    assert_eq!(
        value_of(&mut front, &namespace_a, &c).await,
        1,
        "{name}: A/c after the conflicting clear"
    );
    assert_eq!(
        value_of(&mut front, &namespace_b, &c).await,
        1,
        "{name}: B/c at the end"
    );
    assert_eq!(
        value_of(&mut front, &namespace_a, &d).await,
        1,
        "{name}: A/d at the end"
    );
}

/// C8: an add after a clear counts from zero, and a repeated clear token does not clear again,
/// before and after a rollup and a restart.
async fn c8_clear_then_add<F: FrontendUnderTest>() {
    let mut server = TestServer::start();
    let mut front = F::connect(&server).await;
    let name = front.name();
    let namespace = create_namespace(&mut front, "c8", rollup_config()).await;
    let c = unique("c8");
    let clear_token = unique("c8-clear");

    front
        .add(&namespace, &c, 6, token(&unique("c8-add")))
        .await
        .expect("first add of 6 failed");
    let cleared = front
        .clear(&namespace, &c, token(&clear_token))
        .await
        .expect("clear failed");
    assert!(
        !cleared.duplicate,
        "{name}: the first clear was a duplicate"
    );
    front
        .add(&namespace, &c, 6, token(&unique("c8-add")))
        .await
        .expect("add of 6 after the clear failed");
    assert_eq!(
        value_of(&mut front, &namespace, &c).await,
        6,
        "{name}: value after add 6, clear, add 6"
    );

    let repeated = front
        .clear(&namespace, &c, token(&clear_token))
        .await
        .expect("repeated clear failed");
    assert!(
        repeated.duplicate,
        "{name}: the repeated clear was not a duplicate"
    );
    assert_eq!(
        repeated.event_id, cleared.event_id,
        "{name}: the repeated clear did not return the event ID of the first clear"
    );
    assert_eq!(
        value_of(&mut front, &namespace, &c).await,
        6,
        "{name}: value after the repeated clear"
    );

    roll_up_sent_events(&server).await;
    assert_eq!(
        value_of(&mut front, &namespace, &c).await,
        6,
        "{name}: value after the rollup"
    );

    server.restart();
    let mut front = F::connect(&server).await;
    assert_eq!(
        value_of(&mut front, &namespace, &c).await,
        6,
        "{name}: value after the restart"
    );

    front
        .add(&namespace, &c, 5, token(&unique("c8-add")))
        .await
        .expect("add of 5 after the restart failed");
    let repeated = front
        .clear(&namespace, &c, token(&clear_token))
        .await
        .expect("clear repeated after the restart failed");
    assert!(
        repeated.duplicate,
        "{name}: the clear repeated after the restart was not a duplicate"
    );
    assert_eq!(
        repeated.event_id, cleared.event_id,
        "{name}: the clear repeated after the restart did not return the first event ID"
    );
    assert_eq!(
        value_of(&mut front, &namespace, &c).await,
        11,
        "{name}: value after add 5 and the clear repeated after the restart"
    );
}

/// C8, concurrent: a clear and an add of 1 with the same event time race on each of 1000 fresh
/// counters. Events with equal times apply in event ID order, so a counter is 1 when the add has
/// the higher event ID and 0 otherwise.
async fn c8_concurrent_clear_and_add<F: FrontendUnderTest>() {
    const NUM_COUNTERS: usize = 1000;
    const CONCURRENCY: usize = 64;

    let mut server = TestServer::start();
    let mut front = F::connect(&server).await;
    let name = front.name();
    let namespace = create_namespace(&mut front, "c8-race", rollup_config()).await;
    let prefix = unique("c8-race");
    let counters: Vec<String> = (0..NUM_COUNTERS)
        .map(|index| format!("{prefix}-{index}"))
        .collect();

    let workers = (0..CONCURRENCY).map(|worker| {
        let (server, namespace, counters) = (&server, &namespace, &counters);
        async move {
            let mut clearer = F::connect(server).await;
            let mut adder = F::connect(server).await;
            let mut expected = Vec::new();
            for counter in counters.iter().skip(worker).step_by(CONCURRENCY) {
                let generation_time = EventTime::now().to_string();
                let (cleared, added) = join(
                    clearer.clear(
                        namespace,
                        counter,
                        token_at(&unique("c8-race-clear"), &generation_time),
                    ),
                    adder.add(
                        namespace,
                        counter,
                        1,
                        token_at(&unique("c8-race-add"), &generation_time),
                    ),
                )
                .await;
                let cleared = cleared
                    .unwrap_or_else(|error| panic!("{name}: clear of {counter} failed: {error:?}"));
                let added = added
                    .unwrap_or_else(|error| panic!("{name}: add to {counter} failed: {error:?}"));
                assert!(
                    !cleared.duplicate,
                    "{name}: clear of {counter} was a duplicate"
                );
                assert!(!added.duplicate, "{name}: add to {counter} was a duplicate");
                assert_ne!(
                    cleared.event_id, added.event_id,
                    "{name}: clear and add on {counter} got the same event ID"
                );
                let value = i64::from(added.event_id > cleared.event_id);
                expected.push((counter.clone(), value));
            }
            expected
        }
    });
    let expected: Vec<(String, i64)> = join_all(workers).await.into_iter().flatten().collect();
    assert_eq!(
        expected.len(),
        NUM_COUNTERS,
        "{name}: not every counter got its pair of changes"
    );

    check_values(&mut front, &namespace, &expected, "after the writes").await;

    roll_up_sent_events(&server).await;
    check_values(&mut front, &namespace, &expected, "after the rollup").await;

    server.restart();
    let mut front = F::connect(&server).await;
    check_values(&mut front, &namespace, &expected, "after the restart").await;
}

/// C9: 5 clients, 3 on HTTP and 2 on gRPC, each send 200 adds of 1 to one counter at the same
/// time, and no add is lost or merged. `F` is the front end of the reads.
async fn c9_no_lost_updates<F: FrontendUnderTest>() {
    const NUM_HTTP_CLIENTS: usize = 3;
    const NUM_GRPC_CLIENTS: usize = 2;
    const ADDS_PER_CLIENT: usize = 200;
    const NUM_ADDS: usize = (NUM_HTTP_CLIENTS + NUM_GRPC_CLIENTS) * ADDS_PER_CLIENT;

    let mut server = TestServer::start();
    let mut front = F::connect(&server).await;
    let name = front.name();
    let namespace = create_namespace(&mut front, "c9", rollup_config()).await;
    let c = unique("c9");

    let mut grpc_clients = Vec::new();
    for _ in 0..NUM_GRPC_CLIENTS {
        grpc_clients.push(server.grpc_client().await);
    }
    let http_runs = (0..NUM_HTTP_CLIENTS)
        .map(|_| add_ones(server.http_client(), &namespace, &c, ADDS_PER_CLIENT));
    let grpc_runs = grpc_clients
        .into_iter()
        .map(|client| add_ones(client, &namespace, &c, ADDS_PER_CLIENT));
    let (http_replies, grpc_replies) = join(join_all(http_runs), join_all(grpc_runs)).await;
    let replies: Vec<ApiResult<Change>> = http_replies
        .into_iter()
        .chain(grpc_replies)
        .flatten()
        .collect();
    assert_eq!(replies.len(), NUM_ADDS, "{name}: number of replies");

    let mut failures = Vec::new();
    let mut num_duplicates = 0;
    let mut event_ids = HashSet::new();
    for reply in replies {
        match reply {
            Ok(change) => {
                num_duplicates += usize::from(change.duplicate);
                event_ids.insert(change.event_id);
            }
            Err(error) => failures.push(error),
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {NUM_ADDS} adds failed; the first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(
        num_duplicates, 0,
        "{name}: adds with fresh tokens were duplicates"
    );
    assert_eq!(
        event_ids.len(),
        NUM_ADDS,
        "{name}: the adds did not get distinct event IDs"
    );
    assert_eq!(
        value_of(&mut front, &namespace, &c).await,
        1000,
        "{name}: value after the adds"
    );

    roll_up_sent_events(&server).await;
    assert_eq!(
        value_of(&mut front, &namespace, &c).await,
        1000,
        "{name}: value after the rollup"
    );

    server.restart();
    let mut front = F::connect(&server).await;
    assert_eq!(
        value_of(&mut front, &namespace, &c).await,
        1000,
        "{name}: value after the restart"
    );
}

/// C11: requests over a size limit are rejected without the server reading them, and a counter
/// name may be at most 256 bytes of UTF-8.
async fn c11_oversized_requests<F: FrontendUnderTest>() {
    let server = TestServer::start();
    let mut front = F::connect(&server).await;
    let name = front.name();

    let namespace = create_namespace(&mut front, "c11", plain_config()).await;
    let max = MAX_COUNTER_NAME_BYTES;
    let cases = [
        ("x".repeat(max), true),
        ("x".repeat(max + 1), false),
        ("\u{e4}".repeat(max / 2), true),
        (format!("{}x", "\u{e4}".repeat(max / 2)), false),
        (format!("x{}", "\u{20ac}".repeat(max / 3)), true),
        (format!("xx{}", "\u{20ac}".repeat(max / 3)), false),
    ];
    let mut accepted_names = Vec::new();
    for (counter, accepted) in &cases {
        let length = counter.len();
        let result = front
            .add(&namespace, counter, 1, token(&unique("c11")))
            .await;
        if *accepted {
            assert!(
                result.is_ok(),
                "{name}: a counter name of {length} bytes was rejected: {result:?}"
            );
            assert_eq!(
                value_of(&mut front, &namespace, counter).await,
                1,
                "{name}: counter with a name of {length} bytes"
            );
            accepted_names.push(counter.clone());
        } else {
            let error = result.expect_err("a counter name over 256 bytes was accepted");
            assert_eq!(
                error.class,
                ErrorClass::Invalid,
                "{name}: counter name of {length} bytes: {error:?}"
            );
            assert!(
                error.message.contains("counter"),
                "{name}: the error for a name of {length} bytes does not name the field: {}",
                error.message
            );
            assert!(
                error.message.contains("256"),
                "{name}: the error for a name of {length} bytes does not state the limit: {}",
                error.message
            );
        }
    }

    let mut listed = front
        .list_counters(&namespace)
        .await
        .expect("listing counters failed");
    listed.sort();
    accepted_names.sort();
    assert_eq!(
        listed, accepted_names,
        "{name}: the listing differs from the accepted names"
    );

    F::check_oversized_requests(&server).await;
}

/// C12: counter names round-trip byte for byte across the front ends, without Unicode
/// normalisation, and names with control characters or invalid UTF-8 are rejected whole.
async fn c12_names_round_trip<F: FrontendUnderTest>() {
    let server = TestServer::start();
    let mut front = F::connect(&server).await;
    let name = front.name();
    let mut http = server.http_client();
    let mut grpc = server.grpc_client().await;
    let namespace = create_namespace(&mut front, "c12", plain_config()).await;
    let base = format!("{}/v1/namespaces/{namespace}/counters", server.http);

    // A non-ASCII name, read back by its exact percent-encoded path.
    let zaehler = "z\u{e4}hler";
    front
        .add(&namespace, zaehler, 1, token(&unique("c12")))
        .await
        .expect("add to z\u{e4}hler failed");
    assert_eq!(
        value_of(&mut grpc, &namespace, zaehler).await,
        1,
        "{name}: z\u{e4}hler read over gRPC"
    );
    let (status, body) = http
        .raw(reqwest::Method::GET, &format!("{base}/z%C3%A4hler"), None)
        .await;
    assert_eq!(status, 200, "{name}: GET z%C3%A4hler: {body}");
    assert_eq!(body["value"], 1, "{name}: GET z%C3%A4hler: {body}");
    assert_eq!(body["counter"], zaehler, "{name}: GET z%C3%A4hler: {body}");

    // A name with a slash, which HTTP carries as %2F inside one path segment.
    front
        .add(&namespace, "a/b", 1, token(&unique("c12")))
        .await
        .expect("add to a/b failed");
    let (status, body) = http
        .raw(reqwest::Method::GET, &format!("{base}/a%2Fb"), None)
        .await;
    assert_eq!(status, 200, "{name}: GET a%2Fb: {body}");
    assert_eq!(body["value"], 1, "{name}: GET a%2Fb: {body}");
    assert_eq!(body["counter"], "a/b", "{name}: GET a%2Fb: {body}");
    assert_eq!(
        value_of(&mut grpc, &namespace, "a/b").await,
        1,
        "{name}: a/b read over gRPC"
    );

    // NFC and NFD forms of "é" name two counters.
    let nfc = "\u{e9}";
    let nfd = "e\u{301}";
    front
        .add(&namespace, nfc, 1, token(&unique("c12")))
        .await
        .expect("add to NFC \u{e9} failed");
    front
        .add(&namespace, nfd, 2, token(&unique("c12")))
        .await
        .expect("add to NFD e\u{301} failed");
    assert_eq!(
        value_of(&mut http, &namespace, nfc).await,
        1,
        "{name}: NFC over HTTP"
    );
    assert_eq!(
        value_of(&mut http, &namespace, nfd).await,
        2,
        "{name}: NFD over HTTP"
    );
    assert_eq!(
        value_of(&mut grpc, &namespace, nfc).await,
        1,
        "{name}: NFC over gRPC"
    );
    assert_eq!(
        value_of(&mut grpc, &namespace, nfd).await,
        2,
        "{name}: NFD over gRPC"
    );

    // A control character makes the whole name invalid, and the part before it must not become
    // a counter.
    for (label, control) in [("CR", '\r'), ("LF", '\n'), ("NUL", '\0')] {
        let prefix = unique("c12-prefix");
        let counter = format!("{prefix}{control}tail");
        let error = front
            .add(&namespace, &counter, 1, token(&unique("c12")))
            .await
            .expect_err("a counter name with a control character was accepted");
        assert_eq!(
            error.class,
            ErrorClass::Invalid,
            "{name}: name with {label}: {error:?}"
        );
        assert!(
            error.message.contains("counter"),
            "{name}: the error for a name with {label} does not name the field: {}",
            error.message
        );
        let error = front
            .get(&namespace, &prefix)
            .await
            .expect_err("the name before a control character became a counter");
        assert_eq!(
            error.class,
            ErrorClass::NotFound,
            "{name}: get of the prefix before {label}: {error:?}"
        );
    }

    F::check_invalid_utf8_name(&server, &namespace).await;

    let mut expected = vec![
        "a/b".to_owned(),
        nfc.to_owned(),
        nfd.to_owned(),
        zaehler.to_owned(),
    ];
    expected.sort();
    let mut over_http = http
        .list_counters(&namespace)
        .await
        .expect("listing counters over HTTP failed");
    over_http.sort();
    assert_eq!(over_http, expected, "{name}: counter listing over HTTP");
    let mut over_grpc = grpc
        .list_counters(&namespace)
        .await
        .expect("listing counters over gRPC failed");
    over_grpc.sort();
    assert_eq!(over_grpc, expected, "{name}: counter listing over gRPC");
}

/// C13: values above 2^53 keep every digit in HTTP's JSON, on the way in and on the way out.
async fn c13_i64_values_survive_json<F: FrontendUnderTest>() {
    let server = TestServer::start();
    let mut front = F::connect(&server).await;
    let name = front.name();
    let http = server.http_client();
    let mut grpc = server.grpc_client().await;
    let namespace = create_namespace(&mut front, "c13", plain_config()).await;

    // Written through `F`, read as raw HTTP text.
    let c = unique("c13-c");
    front
        .add(
            &namespace,
            &c,
            ABOVE_DOUBLE_PRECISION,
            token(&unique("c13")),
        )
        .await
        .expect("add of 2^53 + 1 failed");
    let (status, text) = counter_text(&http, &namespace, &c).await;
    assert_eq!(status, 200, "{name}: GET of {c}: {text}");
    assert_eq!(
        json_number_text(&text, "value"),
        Some("9007199254740993"),
        "{name}: GET of {c} returned {text}"
    );

    // A JSON delta written as raw text over HTTP, read through `F` and over gRPC.
    let e = unique("c13-e");
    let body = format!(
        r#"{{"delta":9007199254740993,"idempotency_token":{{"token":"{}"}}}}"#,
        unique("c13")
    );
    let (status, reply) = http
        .raw(
            reqwest::Method::POST,
            &format!("{}/add", http.counter_url(&namespace, &e)),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{name}: raw HTTP add to {e}: {reply}");
    assert_eq!(
        value_of(&mut front, &namespace, &e).await,
        ABOVE_DOUBLE_PRECISION,
        "{name}: {e} read through the front end under test"
    );
    assert_eq!(
        value_of(&mut grpc, &namespace, &e).await,
        ABOVE_DOUBLE_PRECISION,
        "{name}: {e} read over gRPC"
    );

    // A value next to the top of the signed 64-bit range on a new counter.
    let d = unique("c13-d");
    front
        .add(&namespace, &d, NEAR_I64_MAX, token(&unique("c13")))
        .await
        .expect("add of i64::MAX - 1 failed");
    let (status, text) = counter_text(&http, &namespace, &d).await;
    assert_eq!(status, 200, "{name}: GET of {d}: {text}");
    assert_eq!(
        json_number_text(&text, "value"),
        Some("9223372036854775806"),
        "{name}: GET of {d} returned {text}"
    );
    assert_eq!(
        value_of(&mut grpc, &namespace, &d).await,
        NEAR_I64_MAX,
        "{name}: {d} read over gRPC"
    );
}
