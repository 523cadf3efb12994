//! Conformance cases C1 to C6: range limits, strict delta parsing, rejected and failed writes,
//! and token memory. Each case runs against the real `tally` binary once over HTTP and once
//! over gRPC, on its own server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::frontend::{ApiResult, ErrorClass, Frontend, Grpc, Http, segment, token};
use common::{TestServer, unique};
use reqwest::Method;
use serde_json::{Value, json};
use std::fmt::Debug;
use std::time::Duration;

const MAX: i64 = i64::MAX;
const MIN: i64 = i64::MIN;

/// A front end that a case can connect to a server, also after a restart moved the ports.
trait Connect: Frontend + Sized {
    /// The other front end, for checks that must hold across both.
    type Other: Connect;

    async fn connect(server: &TestServer) -> Self;
}

impl Connect for Http {
    type Other = Grpc;

    async fn connect(server: &TestServer) -> Self {
        server.http_client()
    }
}

impl Connect for Grpc {
    type Other = Http;

    async fn connect(server: &TestServer) -> Self {
        server.grpc_client().await
    }
}

/// Expands a generic case into one test per front end.
macro_rules! on_both_front_ends {
    ($test:ident, $case:ident) => {
        mod $test {
            #[tokio::test]
            async fn http() {
                super::$case::<super::Http>().await;
            }

            #[tokio::test]
            async fn grpc() {
                super::$case::<super::Grpc>().await;
            }
        }
    };
}

on_both_front_ends!(c1_maximum_does_not_wrap, maximum_does_not_wrap);
on_both_front_ends!(c2_minimum_does_not_wrap, minimum_does_not_wrap);
on_both_front_ends!(
    c4_rejected_add_creates_nothing,
    rejected_add_creates_nothing
);
on_both_front_ends!(c5_failed_write_keeps_token, failed_write_keeps_token);
on_both_front_ends!(c6_old_token_remembered, old_token_remembered);

// C3 differs per front end: only HTTP can carry a delta as text, so the gRPC test checks the
// edge values of the int64 field instead.
mod c3_deltas_parsed_strictly {
    #[tokio::test]
    async fn http() {
        super::edge_deltas_accepted_exactly::<super::Http>().await;
        super::malformed_deltas_rejected_over_http().await;
    }

    #[tokio::test]
    async fn grpc() {
        super::edge_deltas_accepted_exactly::<super::Grpc>().await;
    }
}

// ---- helpers ----

/// Configuration of a namespace whose events are sealed one second after their event time, so
/// a test can roll them up after a short sleep.
fn fast_sealing_config() -> Value {
    json!({
        "counter_type": "eventual",
        "accept_limit_seconds": 1,
        "idempotency_window_seconds": 3600,
    })
}

/// Creates a fresh namespace with `config` and returns its name.
async fn create_namespace<F: Frontend>(client: &mut F, config: Value) -> String {
    let namespace = unique("conf");
    client
        .put_namespace(&namespace, config)
        .await
        .unwrap_or_else(|error| panic!("cannot create namespace {namespace}: {error:?}"));
    namespace
}

/// Waits until every event sent so far is older than the one-second accept limit, then forces
/// a rollup and returns its report.
async fn seal_and_roll_up(server: &TestServer) -> Value {
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let url = format!("{}/v1/admin/rollup", server.http);
    let (status, report) = server.http_client().raw(Method::POST, &url, None).await;
    assert_eq!(status, 200, "rollup failed: {report}");
    report
}

/// Returns the number of events that a rollup folded, from its report.
fn rolled_up_events(report: &Value) -> u64 {
    report["num_events"]
        .as_u64()
        .unwrap_or_else(|| panic!("rollup report has no num_events: {report}"))
}

/// Asserts that `result` is an error of `class` whose message contains each of `mentions`.
#[track_caller]
fn assert_rejected<T: Debug>(
    result: ApiResult<T>,
    class: ErrorClass,
    mentions: &[&str],
    context: &str,
) {
    let error = match result {
        Ok(value) => panic!("{context}: expected a {class:?} rejection, got success {value:?}"),
        Err(error) => error,
    };
    assert_eq!(
        error.class, class,
        "{context}: wrong error class (message: {:?})",
        error.message
    );
    for mention in mentions {
        assert!(
            error.message.contains(mention),
            "{context}: the message {:?} does not mention {mention:?}",
            error.message
        );
    }
}

/// Asserts that `counter` does not exist: a read is not found and the listing omits it.
async fn assert_counter_absent<F: Frontend>(
    client: &mut F,
    namespace: &str,
    counter: &str,
    context: &str,
) {
    let read = client.get(namespace, counter).await;
    assert!(
        matches!(&read, Err(error) if error.class == ErrorClass::NotFound),
        "{context}: get({counter:?}) over {} returned {read:?}, expected NotFound",
        client.name()
    );
    let listed = client
        .list_counters(namespace)
        .await
        .expect("list_counters failed");
    assert!(
        !listed.iter().any(|name| name == counter),
        "{context}: the listing of {namespace} over {} shows {counter:?}",
        client.name()
    );
}

/// Asserts that `counter` reads `expected`.
async fn assert_value<F: Frontend>(
    client: &mut F,
    namespace: &str,
    counter: &str,
    expected: i64,
    context: &str,
) {
    let read = client.get(namespace, counter).await;
    assert!(
        matches!(&read, Ok(value) if *value == expected),
        "{context}: get({counter:?}) over {} returned {read:?}, expected {expected}",
        client.name()
    );
}

/// Sends an add with a raw JSON body over HTTP and returns the status and the JSON reply.
async fn raw_add(
    server: &TestServer,
    namespace: &str,
    counter: &str,
    body: String,
) -> (u16, Value) {
    let http = server.http_client();
    let url = format!("{}/add", http.counter_url(namespace, counter));
    http.raw(Method::POST, &url, Some(body)).await
}

/// Returns the message of an HTTP error reply, or the whole reply when it has none.
fn error_message(reply: &Value) -> String {
    reply["error"]["message"]
        .as_str()
        .map_or_else(|| reply.to_string(), str::to_owned)
}

// ---- C1 ----

/// Checks that adding past `i64::MAX` is rejected as out of range, leaves the value at MAX and
/// claims no token, before and after a rollup and after a restart.
async fn maximum_does_not_wrap<F: Connect>() {
    let mut server = TestServer::start();
    let mut client = F::connect(&server).await;
    let namespace = create_namespace(&mut client, fast_sealing_config()).await;
    let counter = unique("max");
    let t1 = unique("t1");
    let t2 = unique("t2");

    let first = client
        .add_and_get(&namespace, &counter, MAX, token(&t1))
        .await;
    assert!(
        matches!(first, Ok(MAX)),
        "add(MAX) to a new counter returned {first:?}, expected {MAX}"
    );

    // The retry with t2 must be rejected again: a rejected add claims no token.
    for attempt in ["first overflow", "retried overflow"] {
        assert_rejected(
            client.add(&namespace, &counter, 1, token(&t2)).await,
            ErrorClass::OutOfRange,
            &["range"],
            &format!("{attempt}: add(1) at MAX"),
        );
        assert_value(&mut client, &namespace, &counter, MAX, attempt).await;
    }

    let report = seal_and_roll_up(&server).await;
    assert_eq!(
        rolled_up_events(&report),
        1,
        "the rollup should fold exactly the one accepted add: {report}"
    );
    assert_value(&mut client, &namespace, &counter, MAX, "after rollup").await;
    for attempt in ["overflow after rollup", "retried overflow after rollup"] {
        assert_rejected(
            client.add(&namespace, &counter, 1, token(&t2)).await,
            ErrorClass::OutOfRange,
            &["range"],
            &format!("{attempt}: add(1) at MAX"),
        );
        assert_value(&mut client, &namespace, &counter, MAX, attempt).await;
    }

    server.restart();
    let mut client = F::connect(&server).await;
    assert_value(&mut client, &namespace, &counter, MAX, "after restart").await;
    for attempt in ["overflow after restart", "retried overflow after restart"] {
        assert_rejected(
            client.add(&namespace, &counter, 1, token(&t2)).await,
            ErrorClass::OutOfRange,
            &["range"],
            &format!("{attempt}: add(1) at MAX"),
        );
        assert_value(&mut client, &namespace, &counter, MAX, attempt).await;
    }
}

// ---- C2 ----

/// Checks that `i64::MIN` is a legal value, that subtracting below it is rejected, and that a
/// delta below MIN is rejected as out of range.
async fn minimum_does_not_wrap<F: Connect>() {
    let server = TestServer::start();
    let mut client = F::connect(&server).await;
    let namespace = create_namespace(&mut client, json!({ "counter_type": "eventual" })).await;
    let counter = unique("min");
    let t1 = unique("t1");
    let t2 = unique("t2");

    let first = client
        .add_and_get(&namespace, &counter, MIN, token(&t1))
        .await;
    assert!(
        matches!(first, Ok(MIN)),
        "add(MIN) to a new counter returned {first:?}, expected {MIN}"
    );

    for attempt in ["first underflow", "retried underflow"] {
        assert_rejected(
            client.add(&namespace, &counter, -1, token(&t2)).await,
            ErrorClass::OutOfRange,
            &["range"],
            &format!("{attempt}: add(-1) at MIN"),
        );
        assert_value(&mut client, &namespace, &counter, MIN, attempt).await;
    }

    // The gRPC int64 field cannot carry -9223372036854775809, so both tests send it as a raw
    // JSON body over HTTP, to the existing counter and to a new one.
    let fresh = unique("below-min");
    for target in [counter.as_str(), fresh.as_str()] {
        let body = r#"{"delta": -9223372036854775809}"#.to_owned();
        let (status, reply) = raw_add(&server, &namespace, target, body).await;
        assert_eq!(
            status, 400,
            "delta -9223372036854775809 as a JSON number on {target:?}: {reply}"
        );
        let message = error_message(&reply);
        assert!(
            message.contains("delta"),
            "the rejection of delta -9223372036854775809 does not name the field: {message:?}"
        );
        assert!(
            message.contains("-9223372036854775808"),
            "the rejection of delta -9223372036854775809 does not state the range: {message:?}"
        );

        let body = json!({ "delta": "-9223372036854775809" }).to_string();
        let (status, reply) = raw_add(&server, &namespace, target, body).await;
        assert_eq!(
            status, 400,
            "delta \"-9223372036854775809\" as a JSON string on {target:?}: {reply}"
        );
        let message = error_message(&reply);
        assert!(
            message.contains("delta"),
            "the rejection of delta \"-9223372036854775809\" does not name the field: {message:?}"
        );
    }
    assert_value(
        &mut client,
        &namespace,
        &counter,
        MIN,
        "after a delta below MIN",
    )
    .await;
    assert_counter_absent(&mut client, &namespace, &fresh, "after a delta below MIN").await;
}

// ---- C3 ----

/// Checks that the extreme deltas and zero are accepted and stored exactly, each on a new counter.
async fn edge_deltas_accepted_exactly<F: Connect>() {
    let server = TestServer::start();
    let mut client = F::connect(&server).await;
    let namespace = create_namespace(&mut client, json!({ "counter_type": "eventual" })).await;

    for delta in [MAX, MIN, 0] {
        let counter = unique("edge");
        let result = client
            .add_and_get(&namespace, &counter, delta, token(&unique("t")))
            .await;
        assert!(
            matches!(&result, Ok(value) if *value == delta),
            "add({delta}) to a new counter over {} returned {result:?}",
            client.name()
        );
        assert_value(
            &mut client,
            &namespace,
            &counter,
            delta,
            "edge delta read back",
        )
        .await;
    }
}

/// Checks that every malformed delta is rejected over HTTP, as a JSON string and, where the text
/// is a valid JSON number, as a raw number, and that none of them creates the counter. Also
/// checks that the edge values are accepted as text.
async fn malformed_deltas_rejected_over_http() {
    let server = TestServer::start();
    let mut http = server.http_client();
    let namespace = create_namespace(&mut http, json!({ "counter_type": "eventual" })).await;
    let counter = unique("strict");

    // A leading '+' is rejected on purpose, so that every value has exactly one spelling.
    let texts = [
        "99\0abc",
        "12abc",
        " 12",
        "12 ",
        "",
        "-",
        "0x10",
        "1e3",
        "1.0",
        "\u{ff11}\u{ff12}",
        "9223372036854775808",
        "334293482390480948029348230948",
        "nan",
        "inf",
        "+12",
    ];
    for text in texts {
        let body = json!({ "delta": text, "idempotency_token": { "token": unique("t") } });
        let (status, reply) = raw_add(&server, &namespace, &counter, body.to_string()).await;
        assert_eq!(status, 400, "delta {text:?} as a JSON string: {reply}");
        let message = error_message(&reply);
        assert!(
            message.contains("delta"),
            "the rejection of delta {text:?} does not name the field: {message:?}"
        );
        assert!(
            message.contains("integer") || message.contains("between"),
            "the rejection of delta {text:?} does not state the rule: {message:?}"
        );
        assert_counter_absent(
            &mut http,
            &namespace,
            &counter,
            &format!("after delta {text:?} as a JSON string"),
        )
        .await;
    }

    let numbers = [
        "1e3",
        "1.0",
        "9223372036854775808",
        "334293482390480948029348230948",
    ];
    for number in numbers {
        let body = format!(
            r#"{{"delta": {number}, "idempotency_token": {{"token": "{}"}}}}"#,
            unique("t")
        );
        let (status, reply) = raw_add(&server, &namespace, &counter, body).await;
        assert_eq!(status, 400, "delta {number} as a JSON number: {reply}");
        let message = error_message(&reply);
        assert!(
            message.contains("delta"),
            "the rejection of delta {number} does not name the field: {message:?}"
        );
        assert!(
            message.contains("integer"),
            "the rejection of delta {number} does not state the rule: {message:?}"
        );
        assert_counter_absent(
            &mut http,
            &namespace,
            &counter,
            &format!("after delta {number} as a JSON number"),
        )
        .await;
    }

    // `+12` is not JSON at all, so the body is rejected before the delta is read.
    let body = r#"{"delta": +12}"#.to_owned();
    let (status, reply) = raw_add(&server, &namespace, &counter, body).await;
    assert_eq!(status, 400, "delta +12 as a bare JSON token: {reply}");
    assert_counter_absent(
        &mut http,
        &namespace,
        &counter,
        "after delta +12 as a bare token",
    )
    .await;

    for (text, expected) in [
        ("9223372036854775807", MAX),
        ("-9223372036854775808", MIN),
        ("0", 0),
    ] {
        let target = unique("text-edge");
        let body = json!({ "delta": text, "idempotency_token": { "token": unique("t") } });
        let (status, reply) = raw_add(&server, &namespace, &target, body.to_string()).await;
        assert_eq!(status, 200, "delta {text:?} as a JSON string: {reply}");
        assert_value(&mut http, &namespace, &target, expected, "text edge delta").await;
    }
}

// ---- C4 ----

/// Sends the rejected adds of C4 to `ghost`: a malformed delta (raw HTTP, because the gRPC
/// int64 field cannot carry one), two invalid tokens and two invalid event times.
async fn send_rejected_adds<F: Frontend>(
    server: &TestServer,
    client: &mut F,
    namespace: &str,
    ghost: &str,
) {
    let body = json!({ "delta": "12abc", "idempotency_token": { "token": unique("t") } });
    let (status, reply) = raw_add(server, namespace, ghost, body.to_string()).await;
    assert_eq!(status, 400, "delta \"12abc\" to the ghost counter: {reply}");
    let message = error_message(&reply);
    assert!(
        message.contains("delta"),
        "the rejection of delta \"12abc\" does not name the field: {message:?}"
    );

    assert_rejected(
        client
            .add(namespace, ghost, 1, token(&"x".repeat(200)))
            .await,
        ErrorClass::Invalid,
        &["idempotency_token.token"],
        "200-byte token",
    );
    assert_rejected(
        client.add(namespace, ghost, 1, token("line\nbreak")).await,
        ErrorClass::Invalid,
        &["idempotency_token.token"],
        "token with a line feed",
    );

    let mut yesterday = token(&unique("t"));
    if let Some(token) = yesterday.as_mut() {
        token.generation_time = Some("yesterday".to_owned());
    }
    assert_rejected(
        client.add(namespace, ghost, 1, yesterday).await,
        ErrorClass::Invalid,
        &["idempotency_token.generation_time", "RFC 3339"],
        "generation_time \"yesterday\"",
    );

    // Thirty seconds is well past the namespace's one-second accept limit.
    let old_time = tally_core::EventTime::now().minus_seconds(30).to_string();
    let mut too_old = token(&unique("t"));
    if let Some(token) = too_old.as_mut() {
        token.generation_time = Some(old_time.clone());
    }
    assert_rejected(
        client.add(namespace, ghost, 1, too_old).await,
        ErrorClass::Invalid,
        &["idempotency_token.generation_time", "accept limit"],
        &format!("generation_time {old_time} older than the accept limit"),
    );
}

/// Asserts that an add on a new counter gets the event ID right after `previous`, which shows
/// that the adds in between consumed no event ID.
async fn assert_next_event_id<F: Frontend>(
    client: &mut F,
    namespace: &str,
    previous: u64,
    context: &str,
) -> u64 {
    let change = client
        .add(namespace, &unique("witness"), 1, token(&unique("t")))
        .await
        .expect("the witness add failed");
    assert_eq!(
        change.event_id,
        previous + 1,
        "{context}: the next event ID shows that a rejected add consumed one"
    );
    change.event_id
}

/// Checks that rejected adds leave no counter, no listing entry and no event, before and after
/// a rollup.
async fn rejected_add_creates_nothing<F: Connect>() {
    let server = TestServer::start();
    let mut client = F::connect(&server).await;
    let namespace = create_namespace(&mut client, fast_sealing_config()).await;
    let ghost = unique("ghost");

    let first = client
        .add(&namespace, &unique("witness"), 1, token(&unique("t")))
        .await
        .expect("the first witness add failed");

    send_rejected_adds(&server, &mut client, &namespace, &ghost).await;
    assert_counter_absent(&mut client, &namespace, &ghost, "after the rejected adds").await;
    let last = assert_next_event_id(&mut client, &namespace, first.event_id, "rejected adds").await;

    let report = seal_and_roll_up(&server).await;
    assert_eq!(
        rolled_up_events(&report),
        2,
        "the rollup should fold exactly the two witness adds: {report}"
    );
    assert_counter_absent(&mut client, &namespace, &ghost, "after rollup").await;

    send_rejected_adds(&server, &mut client, &namespace, &ghost).await;
    assert_counter_absent(
        &mut client,
        &namespace,
        &ghost,
        "after rejected adds past rollup",
    )
    .await;
    assert_next_event_id(&mut client, &namespace, last, "rejected adds after rollup").await;
}

// ---- C5 ----

/// Checks that an add whose write fails claims no token, so the retry with the same token applies
/// once, and that two simultaneous sends of one token apply once.
async fn failed_write_keeps_token<F: Connect>() {
    let fault_dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let fault_file = fault_dir.path().join("fault");
    let server = TestServer::start_with_env(vec![(
        "TALLY_FAULT_FILE".to_owned(),
        fault_file.to_string_lossy().into_owned(),
    )]);
    let mut client = F::connect(&server).await;
    let namespace = create_namespace(&mut client, json!({ "counter_type": "eventual" })).await;
    let counter = unique("fault");
    let token_a = unique("tA");
    let token_b = unique("tB");

    std::fs::write(&fault_file, "append").expect("cannot write the fault file");
    assert_rejected(
        client.add(&namespace, &counter, 5, token(&token_a)).await,
        ErrorClass::Unavailable,
        &["write failed"],
        "add while appends fail",
    );
    assert_counter_absent(&mut client, &namespace, &counter, "after the failed write").await;

    std::fs::write(&fault_file, "").expect("cannot empty the fault file");
    let retry = client.add(&namespace, &counter, 5, token(&token_a)).await;
    assert!(
        matches!(&retry, Ok(change) if !change.duplicate),
        "the retry after the failed write returned {retry:?}, expected a new change"
    );
    assert_value(&mut client, &namespace, &counter, 5, "after the retry").await;

    let again = client.add(&namespace, &counter, 5, token(&token_a)).await;
    assert!(
        matches!(&again, Ok(change) if change.duplicate),
        "the second retry returned {again:?}, expected a duplicate"
    );
    assert_value(
        &mut client,
        &namespace,
        &counter,
        5,
        "after the second retry",
    )
    .await;

    let mut left = F::connect(&server).await;
    let mut right = F::connect(&server).await;
    let (left_result, right_result) = tokio::join!(
        left.add(&namespace, &counter, 5, token(&token_b)),
        right.add(&namespace, &counter, 5, token(&token_b)),
    );
    let left_change = left_result.expect("the first simultaneous add failed");
    let right_change = right_result.expect("the second simultaneous add failed");
    assert_ne!(
        left_change.duplicate, right_change.duplicate,
        "exactly one of two simultaneous adds with one token must be a duplicate: \
         {left_change:?} and {right_change:?}"
    );
    assert_eq!(
        left_change.event_id, right_change.event_id,
        "both simultaneous adds with one token must report the same event"
    );
    assert_value(
        &mut client,
        &namespace,
        &counter,
        10,
        "after the simultaneous adds",
    )
    .await;
}

// ---- C6 ----

/// Number of batches and items per batch for the bulk load of C6: 100,000 tokens in all.
const NUM_BATCHES: usize = 100;
const BATCH_SIZE: usize = 1000;
/// One item in this many of each batch goes to the counter under test. The other items go to
/// the other counters.
const OWN_COUNTER_STRIDE: usize = 10;
const NUM_OTHER_COUNTERS: usize = 7;

/// Sends 100,000 adds of 1 with fresh tokens through the HTTP batch endpoint, one in ten to
/// `counter` and the rest spread over `others`. Returns how many went to `counter`.
async fn add_bulk_tokens(
    server: &TestServer,
    namespace: &str,
    counter: &str,
    others: &[String],
) -> i64 {
    let http = server.http_client();
    let url = format!(
        "{}/v1/namespaces/{}/add-batch",
        server.http,
        segment(namespace)
    );
    let prefix = unique("bulk");
    let mut num_own = 0;
    for batch in 0..NUM_BATCHES {
        let items: Vec<Value> = (0..BATCH_SIZE)
            .map(|item| {
                let target = if item % OWN_COUNTER_STRIDE == 0 {
                    num_own += 1;
                    counter
                } else {
                    others[item % others.len()].as_str()
                };
                json!({
                    "counter": target,
                    "delta": 1,
                    "idempotency_token": { "token": format!("{prefix}-{batch}-{item}") },
                })
            })
            .collect();
        let body = json!({ "items": items }).to_string();
        let (status, reply) = http.raw(Method::POST, &url, Some(body)).await;
        assert_eq!(status, 200, "batch {batch} failed: {reply}");
        let results = reply["results"]
            .as_array()
            .unwrap_or_else(|| panic!("batch {batch} reply has no results: {reply}"));
        assert_eq!(results.len(), BATCH_SIZE, "batch {batch} result count");
        for (item, result) in results.iter().enumerate() {
            assert_eq!(
                result["duplicate"].as_bool(),
                Some(false),
                "batch {batch} item {item} was not applied as a new change: {result}"
            );
        }
    }
    num_own
}

/// Checks that a token is recognised on the other front end, after a rollup and restart, and
/// after 100,000 other tokens, while it is within the idempotency window.
async fn old_token_remembered<F: Connect>() {
    let mut server = TestServer::start();
    let mut client = F::connect(&server).await;
    let namespace = create_namespace(&mut client, fast_sealing_config()).await;
    let counter = unique("remember");
    let t1 = unique("t1");
    let t2 = unique("t2");

    let original = client
        .add(&namespace, &counter, 1, token(&t1))
        .await
        .expect("the first add with t1 failed");
    assert!(!original.duplicate, "the first add with t1 is a duplicate");
    let second = client.add(&namespace, &counter, 1, token(&t2)).await;
    assert!(
        matches!(&second, Ok(change) if !change.duplicate),
        "the add with t2 returned {second:?}, expected a new change"
    );

    let retry = client.add(&namespace, &counter, 1, token(&t1)).await;
    assert!(
        matches!(&retry, Ok(change) if change.duplicate && change.event_id == original.event_id),
        "the retry of t1 returned {retry:?}, expected a duplicate of event {}",
        original.event_id
    );
    assert_value(
        &mut client,
        &namespace,
        &counter,
        2,
        "after the retry of t1",
    )
    .await;

    let mut other = F::Other::connect(&server).await;
    let retry = other.add(&namespace, &counter, 1, token(&t1)).await;
    assert!(
        matches!(&retry, Ok(change) if change.duplicate && change.event_id == original.event_id),
        "the retry of t1 over {} returned {retry:?}, expected a duplicate of event {}",
        other.name(),
        original.event_id
    );
    assert_value(
        &mut client,
        &namespace,
        &counter,
        2,
        "after the retry on the other front end",
    )
    .await;

    let report = seal_and_roll_up(&server).await;
    assert_eq!(
        rolled_up_events(&report),
        2,
        "the rollup should fold exactly the two applied adds: {report}"
    );
    server.restart();
    let mut client = F::connect(&server).await;
    let retry = client.add(&namespace, &counter, 1, token(&t1)).await;
    assert!(
        matches!(&retry, Ok(change) if change.duplicate && change.event_id == original.event_id),
        "the retry of t1 after rollup and restart returned {retry:?}, expected a duplicate of event {}",
        original.event_id
    );
    assert_value(
        &mut client,
        &namespace,
        &counter,
        2,
        "after rollup and restart",
    )
    .await;

    let others: Vec<String> = (0..NUM_OTHER_COUNTERS)
        .map(|_| unique("bulk-other"))
        .collect();
    let num_own = add_bulk_tokens(&server, &namespace, &counter, &others).await;
    let expected = 2 + num_own;

    let retry = client.add(&namespace, &counter, 1, token(&t1)).await;
    assert!(
        matches!(&retry, Ok(change) if change.duplicate && change.event_id == original.event_id),
        "the retry of t1 after 100,000 other tokens returned {retry:?}, expected a duplicate of event {}",
        original.event_id
    );
    assert_value(
        &mut client,
        &namespace,
        &counter,
        expected,
        "after 100,000 other tokens",
    )
    .await;

    let mut others_total = 0;
    for name in &others {
        others_total += client
            .get(&namespace, name)
            .await
            .unwrap_or_else(|error| panic!("cannot read {name}: {error:?}"));
    }
    let expected_others = i64::try_from(NUM_BATCHES * BATCH_SIZE).expect("fits in i64") - num_own;
    assert_eq!(
        others_total, expected_others,
        "the other counters together should hold every bulk add not sent to {counter}"
    );
}
