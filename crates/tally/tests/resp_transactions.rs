//! `MULTI`, `EXEC`, `DISCARD`, `WATCH` and `UNWATCH` over the Redis protocol. The replies are
//! checked byte for byte against a `redis-server` of the test's own. Further tests send
//! transactions with the redis-rs client, kill the server after a commit, and fail a commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use common::frontend::Frontend;
use common::redis::{RedisServer, connect, encode_commands, query, redis_cli};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `request` on a new connection and returns what comes back until the server closes
/// the connection or goes quiet for 300 ms. A thread of its own sends the request, so that a
/// long request and its replies cannot block each other.
fn exchange(address: &str, request: Vec<u8>) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sender = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || sender.write_all(&request).unwrap());
    let mut received = Vec::new();
    let mut buffer = [0u8; 64 * 1024];
    while let Ok(num_read @ 1..) = stream.read(&mut buffer) {
        received.extend_from_slice(&buffer[..num_read]);
    }
    sending.join().unwrap();
    String::from_utf8_lossy(&received).into_owned()
}

/// Exchanges in which Tally must reply exactly as redis-server does, each on a connection of
/// its own, in order on one server.
const SAME_AS_REDIS: &[&[&[&str]]] = &[
    &[&["EXEC"]],
    &[&["DISCARD"]],
    &[
        &["MULTI"],
        &["INCR", "a"],
        &["INCRBY", "a", "4"],
        &["DECR", "b"],
        &["EXEC"],
    ],
    &[&["MULTI"], &["MULTI"], &["INCR", "a"], &["EXEC"]],
    &[
        &["MULTI"],
        &["INCR", "a"],
        &["NOSUCH", "x"],
        &["INCR", "b"],
        &["EXEC"],
        &["GET", "a"],
    ],
    &[
        &["MULTI"],
        &["INCR", "a"],
        &["INCRBY", "a"],
        &["EXEC"],
        &["GET", "a"],
    ],
    &[&["MULTI"], &["WATCH", "a"], &["EXEC"]],
    &[&["MULTI"], &["INCRBY", "m", "x"], &["INCR", "m"], &["EXEC"]],
    &[
        &["MULTI"],
        &["INCRBY", "big", "9223372036854775807"],
        &["INCR", "big"],
        &["DECRBY", "c", "-9223372036854775808"],
        &["INCR", "c"],
        &["EXEC"],
    ],
    &[&["MULTI"], &["EXEC"]],
    &[
        &["MULTI"],
        &["INCR", "d"],
        &["DISCARD"],
        &["GET", "d"],
        &["EXEC"],
    ],
    &[&["MULTI"], &["INCR", "q"], &["QUIT"]],
    &[&["GET", "q"]],
    &[
        &["MULTI"],
        &["DECRBY", "e", "5"],
        &["UNWATCH"],
        &["DECR", "e"],
        &["EXEC"],
    ],
    &[
        &["UNWATCH"],
        &["MULTI", "extra"],
        &["EXEC", "extra"],
        &["WATCH"],
    ],
    &[
        &["MULTI"],
        &["INCR", "z"],
        &["EXEC", "extra"],
        &["GET", "z"],
        &["EXEC"],
    ],
    &[
        &["MULTI"],
        &["GET", "r"],
        &["EXISTS", "r"],
        &["INCRBY", "r", "5"],
        &["GET", "r"],
        &["INCR", "s"],
        &["MGET", "r", "s", "missing", "r"],
        &["EXISTS", "r", "missing", "s", "r"],
        &["DECRBY", "r", "2"],
        &["GET", "r"],
        &["EXEC"],
    ],
    &[
        &["MULTI"],
        &["INCRBY", "r", "9223372036854775807"],
        &["GET", "r"],
        &["EXEC"],
    ],
    &[
        &["MULTI"],
        &["INCR", "u"],
        &["GET"],
        &["EXEC"],
        &["GET", "u"],
    ],
    &[&["MULTI"], &["INCR", "u"], &["MGET"], &["EXEC"]],
    &[&["MULTI"], &["INCR", "u"], &["EXISTS"], &["EXEC"]],
    &[&["MULTI"], &["INCR", "u"], &["DEL"], &["EXEC"]],
    &[
        &["MULTI"],
        &["SET", "w", "3"],
        &["INCR", "w"],
        &["GETSET", "w", "1"],
        &["SET", "w", "6", "GET"],
        &["GETDEL", "w"],
        &["EXEC"],
    ],
    &[&["MULTI"], &["SET", "w"], &["EXEC"]],
    &[
        &["MULTI"],
        &["INCR", "v"],
        &["DEL", "v", "missing", "v"],
        &["UNLINK", "missing"],
        &["EXEC"],
    ],
];

#[test]
fn transaction_replies_match_redis() {
    let tally = TestServer::start();
    let redis = RedisServer::start();
    for commands in SAME_AS_REDIS {
        let from_tally = exchange(&tally.resp, encode_commands(commands));
        let from_redis = exchange(&redis.address, encode_commands(commands));
        assert_eq!(from_tally, from_redis, "replies to {commands:?}");
    }
}

#[test]
fn exec_applies_changes_together() {
    let tally = TestServer::start();
    let replies = exchange(
        &tally.resp,
        encode_commands(&[
            &["MULTI"],
            &["INCRBY", "views", "5"],
            &["TALLY.ADD", "views", "2", "retry-1"],
            &["TALLY.ADDGET", "views", "2", "retry-1"],
            &["TALLY.CLEAR", "plays", "clear-1"],
            &["EXEC"],
        ]),
    );

    let (queued, exec) = replies.split_at(replies.find('*').expect("no EXEC reply"));
    assert_eq!(queued, "+OK\r\n".to_owned() + &"+QUEUED\r\n".repeat(4));
    let lines: Vec<&str> = exec.split("\r\n").collect();
    assert_eq!(lines[0], "*4", "{exec:?}");
    assert_eq!(lines[1], ":5", "{exec:?}");
    // TALLY.ADDGET with the token of the TALLY.ADD before it is a duplicate: the value stays 7.
    assert_eq!(lines[3], ":7", "{exec:?}");
    let add_event: u64 = lines[2][1..]
        .parse()
        .expect("TALLY.ADD did not reply an event ID");
    let clear_event: u64 = lines[4][1..]
        .parse()
        .expect("TALLY.CLEAR did not reply an event ID");
    assert!(clear_event > add_event, "{exec:?}");
    assert_eq!(redis_cli(&tally, &["GET", "views"]), "7");
    assert_eq!(redis_cli(&tally, &["GET", "plays"]), "0");
}

/// A command that a transaction does not queue, such as TYPE, is rejected inside MULTI with an
/// error that lists what can be queued, and EXEC then applies nothing.
#[test]
fn other_commands_cannot_be_queued() {
    let tally = TestServer::start();
    let replies = exchange(
        &tally.resp,
        encode_commands(&[
            &["MULTI"],
            &["INCR", "a"],
            &["TYPE", "a"],
            &["INCR", "b"],
            &["EXEC"],
        ]),
    );

    let lines: Vec<&str> = replies.split("\r\n").collect();
    assert_eq!(lines[..2], ["+OK", "+QUEUED"], "{replies:?}");
    assert!(
        lines[2].starts_with("-ERR TYPE cannot be queued in a transaction"),
        "{replies:?}"
    );
    assert!(
        lines[2].contains("DEL, UNLINK, SET, GETSET, GETDEL, GET, MGET and EXISTS"),
        "{replies:?}"
    );
    assert_eq!(lines[3], "+QUEUED", "{replies:?}");
    assert_eq!(
        lines[4], "-EXECABORT Transaction discarded because of previous errors.",
        "{replies:?}"
    );
    assert_eq!(redis_cli(&tally, &["EXISTS", "a", "b"]), "0");
}

/// A read inside MULTI returns the value at its place in the transaction, with no change of
/// another client in between, although another client keeps adding to the same counter.
#[tokio::test]
async fn reads_see_no_other_client() {
    let tally = TestServer::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let adder = {
        let mut connection = connect(&tally).await;
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let mut num_adds = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _: i64 = query(&mut connection, &[b"INCR", b"shared"]).await.unwrap();
                num_adds += 1;
            }
            num_adds
        })
    };

    let mut connection = connect(&tally).await;
    for _ in 0..200 {
        let (before, added, after): (Option<i64>, i64, i64) = redis::pipe()
            .atomic()
            .get("shared")
            .incr("shared", 1000)
            .get("shared")
            .query_async(&mut connection)
            .await
            .expect("the transaction failed");
        assert_eq!(added, before.unwrap_or(0) + 1000);
        assert_eq!(after, added);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let num_adds = adder.await.unwrap();
    assert!(num_adds > 0, "the other client added nothing");
    let total: i64 = query(&mut connection, &[b"GET", b"shared"]).await.unwrap();
    assert_eq!(total, 200 * 1000 + num_adds);
}

/// DEL inside MULTI clears a counter that exists at its place in the transaction, so a counter
/// that the transaction creates is cleared, and a missing one is not counted.
#[tokio::test]
async fn delete_inside_transaction() {
    let tally = TestServer::start();
    let mut connection = connect(&tally).await;

    let (created, deleted, missing, after): (i64, i64, i64, i64) = redis::pipe()
        .atomic()
        .incr("fresh", 7)
        .del("fresh")
        .del("never-written")
        .incr("fresh", 2)
        .query_async(&mut connection)
        .await
        .expect("the transaction failed");

    assert_eq!(created, 7);
    assert_eq!(deleted, 1);
    assert_eq!(missing, 0);
    assert_eq!(after, 2);
    let exists: i64 = query(&mut connection, &[b"EXISTS", b"never-written"])
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

/// In a `best_effort` namespace, where the service applies each step itself instead of the
/// writer, a transaction's reads and `DEL` still see the changes before them.
#[tokio::test]
async fn best_effort_transaction_in_order() {
    let tally = TestServer::start();
    let config = serde_json::json!({ "counter_type": "best_effort" });
    tally
        .http_client()
        .put_namespace("fast", config)
        .await
        .unwrap();

    let replies = exchange(
        &tally.resp,
        encode_commands(&[
            &["TALLY.NAMESPACE", "fast"],
            &["MULTI"],
            &["GET", "f"],
            &["INCRBY", "f", "4"],
            &["GET", "f"],
            &["DEL", "f", "missing"],
            &["EXISTS", "f", "missing"],
            &["EXEC"],
        ]),
    );

    let queued = "+QUEUED\r\n".repeat(5);
    let expected = format!("+OK\r\n+OK\r\n{queued}*5\r\n$-1\r\n:4\r\n$1\r\n4\r\n:1\r\n:1\r\n");
    assert_eq!(replies, expected);
}

#[test]
fn watch_is_rejected() {
    let tally = TestServer::start();
    let reply = redis_cli(&tally, &["WATCH", "a"]);
    assert!(reply.starts_with("ERR WATCH is not supported"), "{reply:?}");
}

#[test]
fn oversized_transaction_applies_nothing() {
    let tally = TestServer::start();
    let increment: &[&str] = &["INCR", "many"];
    let mut commands: Vec<&[&str]> = vec![&["MULTI"]];
    commands.extend(std::iter::repeat_n(increment, 100_001));
    commands.push(&["EXEC"]);

    let replies = exchange(&tally.resp, encode_commands(&commands));

    assert_eq!(replies.matches("+QUEUED\r\n").count(), 100_000);
    assert!(
        replies.contains("-ERR a transaction queues at most 100000 commands\r\n"),
        "no error for command 100001"
    );
    assert!(
        replies.ends_with("-EXECABORT Transaction discarded because of previous errors.\r\n"),
        "{:?}",
        &replies[replies.len().saturating_sub(200)..]
    );
    assert_eq!(redis_cli(&tally, &["EXISTS", "many"]), "0");
}

#[tokio::test]
async fn redis_rs_atomic_pipeline() {
    let tally = TestServer::start();
    let mut connection = connect(&tally).await;

    let (first, second, other): (i64, i64, i64) = redis::pipe()
        .atomic()
        .incr("x", 1)
        .incr("x", 2)
        .incr("y", 5)
        .query_async(&mut connection)
        .await
        .expect("the atomic pipeline failed");
    assert_eq!((first, second, other), (1, 3, 5));

    let overflow: redis::RedisResult<(i64, i64)> = redis::pipe()
        .atomic()
        .incr("y", i64::MAX)
        .incr("x", 1)
        .query_async(&mut connection)
        .await;
    let error = overflow.expect_err("an add past the maximum did not fail");
    assert!(
        error
            .to_string()
            .contains("increment or decrement would overflow"),
        "{error}"
    );
    let x: i64 = query(&mut connection, &[b"GET", b"x"]).await.unwrap();
    assert_eq!(x, 4, "the add after the overflowing one was not applied");
}

#[test]
fn acknowledged_exec_survives_kill_9() {
    let mut tally = TestServer::start();
    let replies = exchange(
        &tally.resp,
        encode_commands(&[
            &["MULTI"],
            &["INCRBY", "k1", "3"],
            &["INCRBY", "k2", "4"],
            &["EXEC"],
        ]),
    );
    assert!(replies.ends_with("*2\r\n:3\r\n:4\r\n"), "{replies:?}");

    tally.kill9();
    tally.restart();

    assert_eq!(redis_cli(&tally, &["MGET", "k1", "k2"]), "3\n4");
}

#[test]
fn failed_commit_applies_nothing() {
    let fault_dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let fault_file = fault_dir.path().join("fault");
    let tally = TestServer::start_with_env(vec![(
        "TALLY_FAULT_FILE".to_owned(),
        fault_file.to_string_lossy().into_owned(),
    )]);
    let transaction = encode_commands(&[
        &["MULTI"],
        &["INCR", "f1"],
        &["TALLY.ADD", "f2", "1", "token-1"],
        &["EXEC"],
    ]);

    std::fs::write(&fault_file, "append").expect("cannot write the fault file");
    let failed = exchange(&tally.resp, transaction.clone());
    let lines: Vec<&str> = failed.split("\r\n").collect();
    assert_eq!(lines[3], "*2", "{failed:?}");
    assert!(lines[4].starts_with("-TRYAGAIN"), "{failed:?}");
    assert!(lines[5].starts_with("-TRYAGAIN"), "{failed:?}");
    assert_eq!(redis_cli(&tally, &["EXISTS", "f1", "f2"]), "0");

    std::fs::write(&fault_file, "").expect("cannot empty the fault file");
    let retried = exchange(&tally.resp, transaction);
    let lines: Vec<&str> = retried.split("\r\n").collect();
    assert_eq!(lines[3..5], ["*2", ":1"], "{retried:?}");
    assert!(
        lines[5].starts_with(':'),
        "TALLY.ADD got no event ID: {retried:?}"
    );
    assert_eq!(redis_cli(&tally, &["MGET", "f1", "f2"]), "1\n1");
}
