//! Commands about keys and the namespace as a whole on the Redis protocol: `TYPE`, `TTL`,
//! `DBSIZE`, `SCAN`, `KEYS`, `INFO` and `UNLINK`, driven by redis-cli and the redis-rs client,
//! and compared with a real Redis server where Redis defines the reply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use common::frontend::Frontend;
use common::redis::{RedisServer, connect, connect_at, error_text, query, redis_cli, redis_cli_at};
use redis::aio::MultiplexedConnection;
use std::collections::BTreeSet;

/// Increments every key once, in one pipeline.
async fn incr_all(connection: &mut MultiplexedConnection, keys: &[String]) {
    let mut pipeline = redis::pipe();
    for key in keys {
        pipeline.cmd("INCR").arg(key).ignore();
    }
    pipeline.query_async::<()>(connection).await.unwrap();
}

/// Sends one `SCAN` step and returns the next cursor and the names.
async fn scan_step(
    connection: &mut MultiplexedConnection,
    cursor: u64,
    count: usize,
) -> (u64, Vec<String>) {
    let cursor = cursor.to_string();
    let count = count.to_string();
    let args: [&[u8]; 4] = [b"SCAN", cursor.as_bytes(), b"COUNT", count.as_bytes()];
    let (next, names): (String, Vec<String>) = query(connection, &args).await.unwrap();
    (next.parse().unwrap(), names)
}

/// Walks `SCAN` from `cursor` to its end and returns every name it gave, in order.
async fn scan_from(connection: &mut MultiplexedConnection, mut cursor: u64) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        let (next, step) = scan_step(connection, cursor, 100).await;
        names.extend(step);
        if next == 0 {
            return names;
        }
        cursor = next;
    }
}

fn sorted_lines(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = output
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn keys_match_patterns_as_redis_does() {
    let tally = TestServer::start();
    let redis = RedisServer::start();
    let keys: Vec<String> = [
        "user:1", "user:2", "user:10", "users:1", "user.1", "userX1", "hello", "hallo", "hxllo",
        "h-llo", "Hello", "a*b", "a?b", "x]", "x\\y", "x-", "[x]",
    ]
    .map(str::to_owned)
    .to_vec();
    incr_all(&mut connect(&tally).await, &keys).await;
    incr_all(&mut connect_at(&redis.address).await, &keys).await;

    let patterns = [
        "*",
        "user:*",
        "user:?",
        "*1",
        "?",
        "h[ae]llo",
        "h[^e]llo",
        "h[a-e]llo",
        "h[e-a]llo",
        "h[!a]llo",
        "h[-]llo",
        "a\\*b",
        "a[*]b",
        "*\\]",
        "x[\\]]",
        "x[a-]",
        "x[-a]",
        "x\\\\y",
        "x[\\\\]y",
        "user[.]*",
        "[",
        "h[al",
        "[^h]*",
        "\\[x\\]",
        "*[0-9]",
        "*l*o*",
    ];
    for pattern in patterns {
        let from_tally = sorted_lines(&redis_cli(&tally, &["KEYS", pattern]));
        let from_redis = sorted_lines(&redis_cli_at(&redis.address, &["KEYS", pattern]));
        assert_eq!(from_tally, from_redis, "KEYS {pattern}");
        let scanned = redis_cli(&tally, &["--scan", "--pattern", pattern]);
        assert_eq!(
            sorted_lines(&scanned),
            from_tally,
            "redis-cli --scan --pattern {pattern}"
        );
    }
}

#[tokio::test]
async fn scan_walks_every_counter_once_across_a_restart() {
    let mut server = TestServer::start();
    server
        .http_client()
        .put_namespace("other", serde_json::json!({}))
        .await
        .unwrap();
    let mut default = connect(&server).await;
    let mut other = connect(&server).await;
    query::<()>(&mut other, &[b"TALLY.NAMESPACE", b"other"])
        .await
        .unwrap();
    // The two namespaces' counters take turns, so their IDs interleave.
    let mut expected = BTreeSet::new();
    for chunk in 0..30 {
        let names: Vec<String> = (chunk * 100..(chunk + 1) * 100)
            .map(|i| format!("views:{i}"))
            .collect();
        incr_all(&mut default, &names).await;
        incr_all(&mut other, &names).await;
        expected.extend(names);
    }
    assert_eq!(redis_cli(&server, &["DBSIZE"]), "3000");
    assert_eq!(query::<i64>(&mut other, &[b"DBSIZE"]).await.unwrap(), 3000);

    let (cursor, first_step) = scan_step(&mut default, 0, 100).await;
    assert_ne!(cursor, 0);
    server.restart();
    let mut default = connect(&server).await;
    let rest = scan_from(&mut default, cursor).await;

    let walked: Vec<String> = first_step.into_iter().chain(rest).collect();
    let distinct: BTreeSet<String> = walked.iter().cloned().collect();
    assert_eq!(
        walked.len(),
        distinct.len(),
        "SCAN returned a counter twice"
    );
    assert_eq!(distinct, expected);
    assert_eq!(redis_cli(&server, &["DBSIZE"]), "3000", "after the restart");
    let scanned = redis_cli(&server, &["--scan"]);
    assert_eq!(sorted_lines(&scanned).len(), 3000);
}

#[tokio::test]
async fn type_info_and_scan_arguments() {
    let server = TestServer::start();
    let mut connection = connect(&server).await;
    incr_all(&mut connection, &["a".to_owned(), "b".to_owned()]).await;

    assert_eq!(redis_cli(&server, &["TYPE", "a"]), "string");
    assert_eq!(redis_cli(&server, &["TYPE", "missing"]), "none");

    let info = redis_cli(&server, &["INFO"]);
    for line in [
        "# Server",
        "tally_version:",
        "loading:0",
        "db0:keys=2,expires=0",
    ] {
        assert!(info.contains(line), "INFO lacks {line}: {info}");
    }
    let keyspace = redis_cli(&server, &["INFO", "keyspace"]);
    assert!(
        keyspace.contains("db0:keys=2") && !keyspace.contains("# Server"),
        "{keyspace}"
    );
    assert_eq!(redis_cli(&server, &["INFO", "no-such-section"]), "");

    let (cursor, names): (String, Vec<String>) =
        query(&mut connection, &[b"SCAN", b"0", b"TYPE", b"hash"])
            .await
            .unwrap();
    assert_eq!((cursor.as_str(), names.len()), ("0", 0));
    let (cursor, names): (String, Vec<String>) =
        query(&mut connection, &[b"SCAN", b"-1"]).await.unwrap();
    assert_eq!(
        (cursor.as_str(), names.len()),
        ("0", 0),
        "-1 is the largest cursor"
    );
    let from_zero: (String, Vec<String>) = query(&mut connection, &[b"SCAN", b"0"]).await.unwrap();
    let from_empty: (String, Vec<String>) = query(&mut connection, &[b"SCAN", b""]).await.unwrap();
    assert_eq!(from_empty, from_zero, "an empty cursor reads as 0");
    assert_eq!(from_zero.1.len(), 2);
    let (_, names): (String, Vec<String>) = query(
        &mut connection,
        &[b"SCAN", b"0", b"MATCH", b"a", b"TYPE", b"STRING"],
    )
    .await
    .unwrap();
    assert_eq!(names, ["a"]);
    for (args, error) in [
        (&[&b"SCAN"[..], b"x"][..], "ERR invalid cursor"),
        (&[b"SCAN", b"--1"], "ERR invalid cursor"),
        (&[b"SCAN", b"-"], "ERR invalid cursor"),
        (&[b"SCAN", b" 1"], "ERR invalid cursor"),
        (&[b"SCAN", b"18446744073709551616"], "ERR invalid cursor"),
        (
            &[b"SELECT", b"x"],
            "ERR value is not an integer or out of range",
        ),
        (&[b"SELECT", b"1"], "ERR DB index is out of range"),
        (&[b"SCAN", b"0", b"COUNT", b"0"], "ERR syntax error"),
        (
            &[b"SCAN", b"0", b"COUNT", b"ten"],
            "ERR value is not an integer",
        ),
        (&[b"SCAN", b"0", b"MATCH"], "ERR syntax error"),
        (&[b"SCAN", b"0", b"LIMIT", b"5"], "ERR syntax error"),
        (
            &[b"SCAN"],
            "ERR wrong number of arguments for 'scan' command",
        ),
        (
            &[b"KEYS"],
            "ERR wrong number of arguments for 'keys' command",
        ),
        (
            &[b"DBSIZE", b"x"],
            "ERR wrong number of arguments for 'dbsize' command",
        ),
        (
            &[b"TYPE", b"a", b"b"],
            "ERR wrong number of arguments for 'type' command",
        ),
    ] {
        let result = query::<redis::Value>(&mut connection, args).await;
        let text = error_text(&result.unwrap_err());
        assert!(text.starts_with(error), "{args:?}: {text}");
    }
}

#[tokio::test]
async fn keys_refuses_more_than_its_limit() {
    let server = TestServer::start();
    let mut connection = connect(&server).await;
    let names: Vec<String> = (0..=100_000).map(|i| format!("k:{i}")).collect();
    for chunk in names.chunks(10_000) {
        incr_all(&mut connection, chunk).await;
    }

    let error = query::<Vec<String>>(&mut connection, &[b"KEYS", b"*"])
        .await
        .unwrap_err();
    assert!(
        error_text(&error).contains("walk them with SCAN"),
        "{error}"
    );
    let some: Vec<String> = query(&mut connection, &[b"KEYS", b"k:1????"])
        .await
        .unwrap();
    assert_eq!(some.len(), 10_000);
    assert_eq!(redis_cli(&server, &["DBSIZE"]), "100001");
}

#[test]
fn timeouts_and_unlink_match_redis() {
    let tally = TestServer::start();
    let redis = RedisServer::start();
    let commands: &[&[&str]] = &[
        &["INCR", "a"],
        &["TTL", "a"],
        &["TTL", "missing"],
        &["PTTL", "a"],
        &["PTTL", "missing"],
        &["PERSIST", "a"],
        &["PERSIST", "missing"],
        &["TTL"],
        &["PERSIST", "a", "b"],
        &["EXPIRE", "a"],
        &["UNLINK", "a", "missing"],
        &["UNLINK"],
    ];
    for command in commands {
        let from_tally = redis_cli(&tally, command);
        let from_redis = redis_cli_at(&redis.address, command);
        assert_eq!(from_tally, from_redis, "{command:?}");
    }
}

/// `SET`, `GETSET` and `GETDEL` on integer values reply as Redis does. A cleared counter still
/// exists with the value 0, so the commands stop before a `GET` after a `GETDEL`.
#[test]
fn set_and_getdel_match_redis() {
    let tally = TestServer::start();
    let redis = RedisServer::start();
    let commands: &[&[&str]] = &[
        &["SET", "s", "5"],
        &["GET", "s"],
        &["INCRBY", "s", "10"],
        &["SET", "s", "-7", "GET"],
        &["GET", "s"],
        &["GETSET", "s", "9223372036854775807"],
        &["INCR", "s"],
        &["SET", "s", "3", "KEEPTTL"],
        &["SET", "fresh", "4", "GET"],
        &["GETSET", "other", "2"],
        &["GETDEL", "missing"],
        &["SET", "s", "1", "BOGUS"],
        &["SET", "s", "abc", "BOGUS"],
        &["SET", "s", "1", "EX"],
        &["SET", "s", "1", "KEEPTTL", "EX", "10"],
        &["SET", "s", "1", "EX", "10", "PX", "10"],
        &["SET", "s", "1", "NX", "XX"],
        &["SET", "s", "1", "GET", "GET"],
        &["GET", "s"],
        &["SET", "s"],
        &["GETSET", "s"],
        &["GETDEL"],
        &["GETDEL", "s"],
    ];
    for command in commands {
        let from_tally = redis_cli(&tally, command);
        let from_redis = redis_cli_at(&redis.address, command);
        assert_eq!(from_tally, from_redis, "{command:?}");
    }
}

/// `SET` takes integers only and no timeout or condition, and a rejected `SET` changes nothing.
#[test]
fn set_rejects_what_counters_lack() {
    let tally = TestServer::start();
    redis_cli(&tally, &["SET", "c", "8"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["SET", "c", "abc"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["GETSET", "c", "1.5"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["SET", "c", "1", "EX", "10"],
            "ERR SET EX is not supported: Tally counters never expire",
        ),
        (
            &["SET", "c", "1", "px", "10"],
            "ERR SET PX is not supported: Tally counters never expire",
        ),
        (
            &["SET", "c", "1", "NX"],
            "ERR SET NX is not supported: Tally has no conditional set",
        ),
        (
            &["SET", "c", "1", "xx", "EXAT", "99"],
            "ERR SET EXAT is not supported: Tally counters never expire",
        ),
        (
            &["SET", "c", "abc", "NX"],
            "ERR SET NX is not supported: Tally has no conditional set",
        ),
    ];
    for (command, expected) in cases {
        assert_eq!(redis_cli(&tally, command), *expected, "{command:?}");
    }
    assert_eq!(redis_cli(&tally, &["GET", "c"]), "8");
}

#[test]
fn expire_is_rejected() {
    let tally = TestServer::start();
    redis_cli(&tally, &["INCR", "a"]);
    for command in ["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"] {
        let reply = redis_cli(&tally, &[command, "a", "10"]);
        assert!(
            reply.starts_with(&format!(
                "ERR {command} is not supported: Tally counters never expire"
            )),
            "{reply:?}"
        );
    }
    assert_eq!(redis_cli(&tally, &["TTL", "a"]), "-1");
}
