//! The Redis protocol front end, driven by raw bytes, `redis-cli` and the redis-rs client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::frontend::Frontend;
use common::redis::{connect, error_text, query, redis_cli};
use common::{TestServer, unique};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const MAX: i64 = i64::MAX;
const MIN: i64 = i64::MIN;

/// Sends raw bytes and reads what comes back until the server closes or goes quiet.
fn raw_exchange(server: &TestServer, request: &[u8]) -> (String, bool) {
    let mut stream = TcpStream::connect(&server.resp).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

fn assert_still_serving(server: &TestServer) {
    assert_eq!(
        redis_cli(server, &["PING"]),
        "PONG",
        "the server stopped serving"
    );
}

// ---- C10: framing edge cases ----

#[test]
fn c10_null_bulk_argument_is_an_error() {
    let server = TestServer::start();
    let (reply, _) = raw_exchange(&server, b"*3\r\n$6\r\nINCRBY\r\n$1\r\nc\r\n$-1\r\n");
    assert!(reply.starts_with("-ERR"), "{reply:?}");
    assert_still_serving(&server);
    assert_eq!(
        redis_cli(&server, &["GET", "c"]),
        "",
        "the rejected INCRBY created c"
    );
}

#[test]
fn c10_empty_array_then_get() {
    let server = TestServer::start();
    redis_cli(&server, &["INCRBY", "c", "4"]);
    let (reply, _) = raw_exchange(&server, b"*0\r\n*2\r\n$3\r\nGET\r\n$1\r\nc\r\n");
    assert_eq!(reply, "$1\r\n4\r\n");
}

#[test]
fn c10_negative_bulk_length_is_protocol_error() {
    let server = TestServer::start();
    let (reply, closed) = raw_exchange(&server, b"*1\r\n$-2\r\n");
    assert!(reply.starts_with("-ERR Protocol error"), "{reply:?}");
    assert!(closed, "the connection stayed open after a protocol error");
    assert_still_serving(&server);
}

#[test]
fn c10_command_sent_byte_by_byte() {
    let server = TestServer::start();
    let mut stream = TcpStream::connect(&server.resp).unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in b"*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n" {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b":1\r\n");
}

#[test]
fn c10_thousand_pipelined_incr_in_order() {
    let server = TestServer::start();
    let mut stream = TcpStream::connect(&server.resp).unwrap();
    let request: Vec<u8> = b"*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n".repeat(1000);
    stream.write_all(&request).unwrap();
    let expected: String = (1..=1000).map(|n| format!(":{n}\r\n")).collect();
    let mut reply = vec![0u8; expected.len()];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(String::from_utf8(reply).unwrap(), expected);
}

// ---- C1, C2: no wrap ----

#[tokio::test]
async fn c1_maximum_does_not_wrap_resp() {
    let mut server = TestServer::start();
    let mut http = server.http_client();
    http.put_namespace("c1", serde_json::json!({"accept_limit_seconds": 1}))
        .await
        .unwrap();
    let mut connection = connect(&server).await;
    query::<()>(&mut connection, &[b"TALLY.NAMESPACE", b"c1"])
        .await
        .unwrap();

    let value: i64 = query(
        &mut connection,
        &[b"TALLY.ADDGET", b"c", MAX.to_string().as_bytes(), b"t1"],
    )
    .await
    .unwrap();
    assert_eq!(value, MAX);
    for attempt in ["first", "second"] {
        let error = query::<i64>(&mut connection, &[b"TALLY.ADD", b"c", b"1", b"t2"])
            .await
            .unwrap_err();
        assert!(
            error_text(&error).contains("would overflow"),
            "{attempt}: {error}"
        );
    }
    let error = query::<i64>(&mut connection, &[b"INCR", b"c"])
        .await
        .unwrap_err();
    assert!(
        error_text(&error).contains("increment or decrement would overflow"),
        "{error}"
    );

    tokio::time::sleep(Duration::from_millis(2200)).await;
    server.rollup().await;
    server.restart();
    let mut connection = connect(&server).await;
    query::<()>(&mut connection, &[b"TALLY.NAMESPACE", b"c1"])
        .await
        .unwrap();
    let value: String = query(&mut connection, &[b"GET", b"c"]).await.unwrap();
    assert_eq!(value, MAX.to_string());
    let error = query::<i64>(&mut connection, &[b"TALLY.ADD", b"c", b"1", b"t2"])
        .await
        .unwrap_err();
    assert!(
        error_text(&error).contains("would overflow"),
        "after restart: {error}"
    );
}

#[tokio::test]
async fn c2_minimum_does_not_wrap_resp() {
    let server = TestServer::start();
    let mut connection = connect(&server).await;

    let value: i64 = query(
        &mut connection,
        &[b"INCRBY", b"low", MIN.to_string().as_bytes()],
    )
    .await
    .unwrap();
    assert_eq!(value, MIN);
    let error = query::<i64>(&mut connection, &[b"INCRBY", b"low", b"-1"])
        .await
        .unwrap_err();
    assert!(error_text(&error).contains("would overflow"), "{error}");
    assert_eq!(
        query::<String>(&mut connection, &[b"GET", b"low"])
            .await
            .unwrap(),
        MIN.to_string()
    );

    // Negating MIN overflows, so DECRBY by MIN is an error and changes nothing.
    assert_eq!(
        query::<i64>(&mut connection, &[b"INCRBY", b"zero", b"0"])
            .await
            .unwrap(),
        0
    );
    let error = query::<i64>(
        &mut connection,
        &[b"DECRBY", b"zero", MIN.to_string().as_bytes()],
    )
    .await
    .unwrap_err();
    assert!(error_text(&error).contains("overflow"), "{error}");
    assert_eq!(
        query::<String>(&mut connection, &[b"GET", b"zero"])
            .await
            .unwrap(),
        "0"
    );

    let error = query::<i64>(
        &mut connection,
        &[b"INCRBY", b"other", b"-9223372036854775809"],
    )
    .await
    .unwrap_err();
    assert!(
        error_text(&error).contains("not an integer or out of range"),
        "{error}"
    );
    assert_eq!(
        query::<i64>(&mut connection, &[b"EXISTS", b"other"])
            .await
            .unwrap(),
        0
    );
}

// ---- C3, C4: strict deltas, no trace ----

#[tokio::test]
async fn c3_deltas_parsed_strictly_resp() {
    let server = TestServer::start();
    let mut connection = connect(&server).await;
    let rejected: [&[u8]; 17] = [
        b"05",
        b"-0",
        b"99\0abc",
        b"12abc",
        b" 12",
        b"12 ",
        b"",
        b"-",
        b"0x10",
        b"1e3",
        b"1.0",
        "\u{ff11}\u{ff12}".as_bytes(),
        b"9223372036854775808",
        b"334293482390480948029348230948",
        b"nan",
        b"inf",
        b"+12",
    ];
    for delta in rejected {
        for command in [&b"INCRBY"[..], b"DECRBY"] {
            let error = query::<i64>(&mut connection, &[command, b"c3", delta])
                .await
                .unwrap_err();
            assert!(
                error_text(&error).contains("not an integer or out of range"),
                "{delta:?}: {error}"
            );
        }
        let error = query::<i64>(&mut connection, &[b"TALLY.ADD", b"c3", delta, b"t"])
            .await
            .unwrap_err();
        assert!(
            error_text(&error).contains("not an integer or out of range"),
            "{delta:?}: {error}"
        );
    }
    assert_eq!(
        query::<i64>(&mut connection, &[b"EXISTS", b"c3"])
            .await
            .unwrap(),
        0,
        "c3 was created"
    );
}

#[tokio::test]
async fn c4_rejected_add_creates_nothing_resp() {
    let server = TestServer::start();
    let mut connection = connect(&server).await;
    let long_token = "t".repeat(200);
    let attempts: [&[&[u8]]; 3] = [
        &[b"INCRBY", b"ghost", b"12abc"],
        &[b"TALLY.ADD", b"ghost", b"1", long_token.as_bytes()],
        &[b"TALLY.ADD", b"ghost", b"1", b"t", b"yesterday"],
    ];
    for attempt in attempts {
        let error = query::<i64>(&mut connection, attempt).await.unwrap_err();
        assert!(error_text(&error).starts_with("ERR"), "{error}");
    }
    let old = "2000-01-01T00:00:00Z";
    let error = query::<i64>(
        &mut connection,
        &[b"TALLY.ADD", b"ghost", b"1", b"t", old.as_bytes()],
    )
    .await
    .unwrap_err();
    assert!(error_text(&error).contains("accept limit"), "{error}");

    let value: Option<String> = query(&mut connection, &[b"GET", b"ghost"]).await.unwrap();
    assert_eq!(value, None);
    let mut http = server.http_client();
    assert!(
        !http
            .list_counters("default")
            .await
            .unwrap()
            .contains(&"ghost".to_owned())
    );
}

// ---- C11, C12: sizes and names ----

#[test]
fn c11_huge_array_header_is_rejected() {
    let server = TestServer::start();
    let (reply, closed) = raw_exchange(&server, b"*1048576\r\n");
    assert!(reply.contains("invalid multibulk length"), "{reply:?}");
    assert!(closed, "the connection stayed open");
    assert_still_serving(&server);
}

#[test]
fn c11_huge_bulk_length_is_rejected() {
    let server = TestServer::start();
    let (reply, closed) = raw_exchange(&server, b"*1\r\n$9223372036854775807\r\n");
    assert!(reply.contains("invalid bulk length"), "{reply:?}");
    assert!(closed, "the connection stayed open");
    assert_still_serving(&server);
}

#[test]
fn c11_silent_partial_command_times_out() {
    let mut server = TestServer::start_with(
        Vec::new(),
        vec!["--resp-idle-timeout-seconds".into(), "1".into()],
    );
    let (reply, closed) =
        raw_exchange_with_wait(&server, b"*2\r\n$4\r\nINCR\r\n", Duration::from_secs(3));
    assert_eq!(reply, "");
    assert!(closed, "the idle connection was not closed");
    assert_still_serving(&server);
    server.kill9();
}

fn raw_exchange_with_wait(server: &TestServer, request: &[u8], wait: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(&server.resp).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 256];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

#[tokio::test]
async fn c11_name_length_limit_resp() {
    let server = TestServer::start();
    let mut connection = connect(&server).await;
    let longest = "\u{e4}".repeat(128);
    assert_eq!(
        query::<i64>(&mut connection, &[b"INCR", longest.as_bytes()])
            .await
            .unwrap(),
        1
    );
    let too_long = format!("{longest}x");
    let error = query::<i64>(&mut connection, &[b"INCR", too_long.as_bytes()])
        .await
        .unwrap_err();
    assert!(error_text(&error).contains("counter"), "{error}");

    // The over-long name is rejected on reads too, and was not truncated onto the longest name.
    let error = query::<i64>(&mut connection, &[b"EXISTS", too_long.as_bytes()])
        .await
        .unwrap_err();
    assert!(error_text(&error).contains("256"), "{error}");
    assert_eq!(
        query::<String>(&mut connection, &[b"GET", longest.as_bytes()])
            .await
            .unwrap(),
        "1"
    );
}

#[tokio::test]
async fn c12_names_round_trip_resp() {
    let server = TestServer::start();
    assert_eq!(redis_cli(&server, &["INCR", "z\u{e4}hler"]), "1");
    let mut http = server.http_client();
    assert_eq!(http.get("default", "z\u{e4}hler").await.unwrap(), 1);

    http.add("default", "a/b", 2, common::frontend::token(&unique("t")))
        .await
        .unwrap();
    assert_eq!(redis_cli(&server, &["GET", "a/b"]), "2");

    // No Unicode normalisation: NFC and NFD are two counters.
    assert_eq!(redis_cli(&server, &["INCRBY", "\u{e9}", "1"]), "1");
    assert_eq!(redis_cli(&server, &["INCRBY", "e\u{301}", "2"]), "2");

    let mut connection = connect(&server).await;
    for name in [&b"a\rb"[..], b"a\nb", b"a\0b", b"\xff\xfe"] {
        let error = query::<i64>(&mut connection, &[b"INCR", name])
            .await
            .unwrap_err();
        assert!(error_text(&error).contains("counter"), "{name:?}: {error}");
    }
    assert_eq!(
        query::<i64>(&mut connection, &[b"EXISTS", b"a"])
            .await
            .unwrap(),
        0,
        "a name was truncated"
    );
}

// ---- commands for existing Redis clients ----

#[tokio::test]
async fn redis_commands_behave_like_redis() {
    let server = TestServer::start();
    let mut connection = connect(&server).await;
    assert_eq!(
        query::<String>(&mut connection, &[b"PING"]).await.unwrap(),
        "PONG"
    );
    assert_eq!(
        query::<String>(&mut connection, &[b"ECHO", b"hi"])
            .await
            .unwrap(),
        "hi"
    );
    assert_eq!(
        query::<i64>(&mut connection, &[b"INCR", b"k"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        query::<i64>(&mut connection, &[b"INCRBY", b"k", b"10"])
            .await
            .unwrap(),
        11
    );
    assert_eq!(
        query::<i64>(&mut connection, &[b"DECR", b"k"])
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        query::<i64>(&mut connection, &[b"DECRBY", b"k", b"4"])
            .await
            .unwrap(),
        6
    );
    let values: Vec<Option<String>> = query(&mut connection, &[b"MGET", b"k", b"missing"])
        .await
        .unwrap();
    assert_eq!(values, vec![Some("6".to_owned()), None]);
    assert_eq!(
        query::<i64>(&mut connection, &[b"EXISTS", b"k", b"missing"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        query::<i64>(&mut connection, &[b"DEL", b"k", b"missing", b"k"])
            .await
            .unwrap(),
        1,
        "a key named twice is deleted once"
    );
    assert_eq!(
        query::<String>(&mut connection, &[b"GET", b"k"])
            .await
            .unwrap(),
        "0"
    );

    let error = query::<String>(&mut connection, &[b"APPEND", b"k", b"1"])
        .await
        .unwrap_err();
    assert!(
        error_text(&error).contains("unknown command 'APPEND', with args beginning with: 'k' '1'"),
        "{error}"
    );
    let error = query::<i64>(&mut connection, &[b"INCR"]).await.unwrap_err();
    assert!(
        error_text(&error).contains("wrong number of arguments"),
        "{error}"
    );
}

#[tokio::test]
async fn tally_commands_are_idempotent() {
    let server = TestServer::start();
    let mut connection = connect(&server).await;
    let first: i64 = query(&mut connection, &[b"TALLY.ADD", b"t", b"5", b"tok"])
        .await
        .unwrap();
    let retry: i64 = query(&mut connection, &[b"TALLY.ADD", b"t", b"5", b"tok"])
        .await
        .unwrap();
    assert_eq!(first, retry, "a retry got a new event ID");
    assert_eq!(
        query::<i64>(&mut connection, &[b"TALLY.ADDGET", b"t", b"5", b"tok"])
            .await
            .unwrap(),
        5
    );
    let error = query::<i64>(&mut connection, &[b"TALLY.ADD", b"t", b"6", b"tok"])
        .await
        .unwrap_err();
    assert!(error_text(&error).starts_with("CONFLICT"), "{error}");

    query::<i64>(&mut connection, &[b"TALLY.CLEAR", b"t", b"clear-1"])
        .await
        .unwrap();
    query::<i64>(&mut connection, &[b"TALLY.ADD", b"t", b"2", b"tok-2"])
        .await
        .unwrap();
    query::<i64>(&mut connection, &[b"TALLY.CLEAR", b"t", b"clear-1"])
        .await
        .unwrap();
    assert_eq!(
        query::<String>(&mut connection, &[b"GET", b"t"])
            .await
            .unwrap(),
        "2",
        "a repeated clear cleared again"
    );

    // A namespace per connection.
    let mut http = server.http_client();
    http.put_namespace("other", serde_json::json!({}))
        .await
        .unwrap();
    query::<()>(&mut connection, &[b"TALLY.NAMESPACE", b"other"])
        .await
        .unwrap();
    assert_eq!(
        query::<i64>(&mut connection, &[b"INCR", b"t"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(http.get("other", "t").await.unwrap(), 1);
    let error = query::<()>(&mut connection, &[b"TALLY.NAMESPACE", b"missing"])
        .await
        .unwrap_err();
    assert!(error_text(&error).starts_with("NOTFOUND"), "{error}");
}

// ---- Stopping ----

/// Commands that reached the server before SIGTERM all get replies before the connection
/// closes with end-of-stream (not a reset), and every acknowledged INCR survives the restart.
#[test]
fn sigterm_replies_to_received_commands() {
    const CONNECTIONS: usize = 20;
    const INCRS: usize = 1000;
    let mut server = TestServer::start();
    let mut streams: Vec<(String, TcpStream)> = (0..CONNECTIONS)
        .map(|index| {
            let key = format!("stop-{index}");
            let command = format!("*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len());
            let mut stream = TcpStream::connect(&server.resp).unwrap();
            stream.write_all(command.repeat(INCRS).as_bytes()).unwrap();
            (key, stream)
        })
        .collect();

    let exit = server.terminate();
    assert!(exit.success(), "SIGTERM exit status: {exit:?}");

    let expected: String = (1..=INCRS).map(|n| format!(":{n}\r\n")).collect();
    for (key, stream) in &mut streams {
        let received = common::read_until_closed(stream, key);
        assert!(
            String::from_utf8_lossy(&received) == expected,
            "{key}: {} of {} bytes of replies before the close",
            received.len(),
            expected.len()
        );
    }

    server.restart();
    for (key, _) in &streams {
        assert_eq!(
            redis_cli(&server, &["GET", key]),
            INCRS.to_string(),
            "{key}"
        );
    }
}

/// A client that never pauses is read for at most 2 s after SIGTERM, so the stop takes far less
/// than the 10 s that the server gives connections before it drops them.
#[test]
fn sigterm_stops_reading_a_client_that_never_pauses() {
    let mut server = TestServer::start();
    let mut writer = TcpStream::connect(&server.resp).unwrap();
    let mut reader = writer.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let commands = b"*2\r\n$4\r\nINCR\r\n$9\r\nfirehose1\r\n".repeat(200);
        while writer.write_all(&commands).is_ok() {}
    });
    let receiver = std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut num_received = 0;
        while let Ok(num_read @ 1..) = reader.read(&mut buffer) {
            num_received += num_read;
        }
        num_received
    });
    std::thread::sleep(Duration::from_millis(500));

    let stopped = server.terminate_within(Duration::from_secs(30));
    let (status, took) = stopped.expect("the server was still running 30 s after SIGTERM");
    assert!(status.success(), "SIGTERM exit status: {status:?}");
    assert!(
        took < Duration::from_secs(6),
        "the server took {took:?} to stop"
    );
    sender.join().unwrap();
    assert!(receiver.join().unwrap() > 0, "no reply before the stop");
}

// ---- connection limit ----

/// Opens a connection and waits for its PING reply, so that the server counts it as open.
fn open_pinged(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(&server.resp).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"PING\r\n").unwrap();
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
    stream
}

#[test]
fn max_clients_rejects_one_more() {
    let server = TestServer::start_with(Vec::new(), vec!["--max-connections".into(), "2".into()]);
    let first = open_pinged(&server);
    let mut second = open_pinged(&server);

    let (reply, closed) = raw_exchange(&server, b"PING\r\n");
    assert_eq!(reply, "-ERR max number of clients reached\r\n");
    assert!(closed, "the rejected connection stayed open");

    // The open connections keep working, and closing one makes room for a new one.
    second.write_all(b"INCR c\r\n").unwrap();
    let mut incremented = [0u8; 4];
    second.read_exact(&mut incremented).unwrap();
    assert_eq!(&incremented, b":1\r\n");
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (reply, _) = raw_exchange(&server, b"GET c\r\n");
        if reply == "$1\r\n1\r\n" {
            break;
        }
        assert_eq!(reply, "-ERR max number of clients reached\r\n");
        assert!(
            std::time::Instant::now() < deadline,
            "no room for a new connection 5 s after one closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
