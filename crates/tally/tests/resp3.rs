//! RESP3 after `HELLO 3`, and the `HELLO` and `CLIENT` commands, checked side by side with a
//! `redis-server` of the test's own and through `redis-cli -3` and the redis-rs client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use common::redis::{RedisServer, encode_commands, redis_cli_at};
use redis::{Value, VerbatimFormat};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One raw connection that sends commands as RESP arrays and reads whatever comes back.
struct RawConnection {
    stream: TcpStream,
}

impl RawConnection {
    fn open(address: &str) -> Self {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        Self { stream }
    }

    /// Sends `commands` as one pipeline and returns the replies read until the server goes
    /// quiet for 300 ms.
    fn exchange(&mut self, commands: &[&[&str]]) -> String {
        self.stream.write_all(&encode_commands(commands)).unwrap();
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(num_read @ 1..) = self.stream.read(&mut buffer) {
            received.extend_from_slice(&buffer[..num_read]);
        }
        String::from_utf8_lossy(&received).into_owned()
    }
}

/// The commands whose replies must be byte for byte those of redis-server once a connection
/// speaks RESP3. Both servers start empty, without persistence.
const RESP3_COMMANDS: &[&[&str]] = &[
    &["GET", "missing"],
    &["MGET", "missing", "n"],
    &["INCR", "n"],
    &["MGET", "missing", "n"],
    &["CONFIG", "GET", "save"],
    &["CONFIG", "GET", "appendonly"],
    &["CONFIG", "GET", "SAVE"],
    &["CONFIG", "GET", "appendonl?"],
    &["CONFIG", "GET", "[s]ave", "save"],
    &["CONFIG", "GET", "no-such-parameter"],
    &["CONFIG", "GET"],
    &["CONFIG"],
    &["EXISTS", "n", "missing"],
    &["INCRBY", "n", "x"],
    &["CLIENT", "GETNAME"],
    &["CLIENT", "SETNAME", "billing-worker"],
    &["CLIENT", "GETNAME"],
    &["CLIENT", "SETNAME", "has space"],
    &["CLIENT", "SETNAME"],
    &["HELLO", "4"],
    &["HELLO", "03"],
    &["HELLO", "x"],
    &["HELLO", "3", "SETNAME"],
    &["HELLO", "3", "AUTH", "default"],
    &["HELLO", "2", "FOO"],
    &["INFO", "keyspace"],
    &["PING"],
];

#[test]
fn resp3_replies_match_redis() {
    let tally = TestServer::start();
    let redis = RedisServer::start();
    let mut tally_connection = RawConnection::open(&tally.resp);
    let mut redis_connection = RawConnection::open(&redis.address);

    // The HELLO replies differ in the server's name, version and client ID.
    for connection in [&mut tally_connection, &mut redis_connection] {
        let hello = connection.exchange(&[&["HELLO", "3"]]);
        assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n"), "{hello:?}");
        assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello:?}");
    }

    let tally_replies = tally_connection.exchange(RESP3_COMMANDS);
    let redis_replies = redis_connection.exchange(RESP3_COMMANDS);
    assert_eq!(tally_replies, redis_replies);
    assert!(
        tally_replies.starts_with("_\r\n*2\r\n_\r\n_\r\n:1\r\n"),
        "{tally_replies:?}"
    );
}

#[test]
fn config_set_is_rejected() {
    let tally = TestServer::start();
    let mut connection = RawConnection::open(&tally.resp);

    let reply = connection.exchange(&[&["CONFIG", "SET", "save", ""]]);

    assert!(
        reply.starts_with("-ERR CONFIG SET is not supported: Tally reads its settings from flags"),
        "{reply:?}"
    );
}

#[test]
fn hello_2_switches_back() {
    let tally = TestServer::start();
    let mut connection = RawConnection::open(&tally.resp);

    let resp3 = connection.exchange(&[&["HELLO", "3"], &["GET", "missing"]]);
    assert!(resp3.ends_with("*0\r\n_\r\n"), "{resp3:?}");
    let resp2 = connection.exchange(&[
        &["HELLO", "2"],
        &["GET", "missing"],
        &["CONFIG", "GET", "appendonly"],
    ]);
    assert!(resp2.starts_with("*14\r\n$6\r\nserver\r\n"), "{resp2:?}");
    assert!(resp2.contains("$5\r\nproto\r\n:2\r\n"), "{resp2:?}");
    assert!(
        resp2.ends_with("$-1\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"),
        "{resp2:?}"
    );
}

#[test]
fn hello_reports_the_client_id() {
    let tally = TestServer::start();
    let mut connection = RawConnection::open(&tally.resp);

    let replies = connection.exchange(&[
        &["CLIENT", "ID"],
        &["HELLO", "3", "SETNAME", "app"],
        &["CLIENT", "GETNAME"],
    ]);
    let (client_id, hello) = replies.split_once("\r\n").unwrap();
    let client_id = client_id
        .strip_prefix(':')
        .expect("CLIENT ID is not an integer");
    assert!(
        hello.contains(&format!("$2\r\nid\r\n:{client_id}\r\n")),
        "HELLO does not report client ID {client_id}: {hello:?}"
    );
    assert!(hello.ends_with("$3\r\napp\r\n"), "{hello:?}");

    let other = RawConnection::open(&tally.resp).exchange(&[&["CLIENT", "ID"]]);
    assert_ne!(
        other,
        format!(":{client_id}\r\n"),
        "two connections share an ID"
    );
}

#[test]
fn redis_cli_resp3_prints_as_for_redis() {
    let tally = TestServer::start();
    let redis = RedisServer::start();
    let commands: &[&[&str]] = &[
        &["INCRBY", "page-views", "5"],
        &["GET", "page-views"],
        &["GET", "missing"],
        &["MGET", "page-views", "missing"],
        // One parameter per command: redis-server returns several in the order of its hash
        // table, which changes from process to process.
        &["CONFIG", "GET", "appendonly"],
        &["CONFIG", "GET", "save"],
        &["INFO", "keyspace"],
    ];
    for command in commands {
        let with_resp3: Vec<&str> = ["-3"].iter().chain(command.iter()).copied().collect();
        let from_tally = redis_cli_at(&tally.resp, &with_resp3);
        let from_redis = redis_cli_at(&redis.address, &with_resp3);
        assert_eq!(from_tally, from_redis, "redis-cli -3 {command:?}");
    }
    // redis-cli prints a map's entries as "key value" and an array's items on lines of their own.
    let config = redis_cli_at(&tally.resp, &["-3", "CONFIG", "GET", "appendonly"]);
    assert_eq!(config, "appendonly no");
}

#[tokio::test]
async fn redis_rs_speaks_resp3() {
    let tally = TestServer::start();
    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", tally.resp)).unwrap();
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis-rs cannot connect over RESP3");

    let value: Value = redis::cmd("INCRBY")
        .arg("plays")
        .arg(7)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(value, Value::Int(7));
    let missing: Value = redis::cmd("GET")
        .arg("missing")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(missing, Value::Nil);
    let config: Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(
        config,
        Value::Map(vec![(
            Value::BulkString(b"appendonly".to_vec()),
            Value::BulkString(b"no".to_vec())
        )])
    );
    let info: Value = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut connection)
        .await
        .unwrap();
    match info {
        Value::VerbatimString { format, text } => {
            assert_eq!(format, VerbatimFormat::Text);
            assert!(text.contains("loading:0"), "{text:?}");
        }
        other => panic!("INFO is not a verbatim string: {other:?}"),
    }

    let hello: Value = redis::cmd("HELLO")
        .query_async(&mut connection)
        .await
        .unwrap();
    let Value::Map(entries) = hello else {
        panic!("HELLO is not a map: {hello:?}")
    };
    assert!(
        entries.contains(&(Value::BulkString(b"proto".to_vec()), Value::Int(3))),
        "{entries:?}"
    );
}
