//! Clients of the Redis protocol for tests: `redis-cli`, the redis-rs client, and a
//! `redis-server` of the test's own to compare with.

use super::TestServer;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `redis-cli` against the server; fails the test when redis-cli is missing.
pub fn redis_cli(server: &TestServer, args: &[&str]) -> String {
    redis_cli_at(&server.resp, args)
}

/// Runs `redis-cli` against `host:port` and returns what it prints, without the last newline.
pub fn redis_cli_at(address: &str, args: &[&str]) -> String {
    let (host, port) = address.rsplit_once(':').unwrap();
    let output = Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli is required: install redis-tools (scripts/test.sh does)");
    assert!(output.status.success(), "redis-cli failed: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned()
}

/// A `redis-server` of the test's own, without persistence, on a free loopback port. Dropping
/// it kills the process.
pub struct RedisServer {
    child: Child,
    /// `127.0.0.1:port`.
    pub address: String,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts the server and waits until it replies to `PING`. Fails the test, saying why,
    /// when redis-server is missing or does not start within 10 s.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("cannot find a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is required: install redis-server (scripts/test.sh does)");
        let mut server = Self {
            child,
            address: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (host, port) = self.address.rsplit_once(':').unwrap();
        loop {
            let ping = Command::new("redis-cli")
                .args(["-h", host, "-p", port, "PING"])
                .output()
                .expect("redis-cli is required: install redis-tools (scripts/test.sh does)");
            if String::from_utf8_lossy(&ping.stdout).trim() == "PONG" {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("cannot wait for redis-server") {
                panic!("redis-server on port {port} exited at start with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn connect(server: &TestServer) -> redis::aio::MultiplexedConnection {
    connect_at(&server.resp).await
}

/// Connects the redis-rs client to `host:port`.
pub async fn connect_at(address: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{address}/")).unwrap();
    client
        .get_multiplexed_async_connection()
        .await
        .expect("redis-rs cannot connect")
}

pub async fn query<T: redis::FromRedisValue>(
    connection: &mut redis::aio::MultiplexedConnection,
    args: &[&[u8]],
) -> redis::RedisResult<T> {
    let mut command = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(connection).await
}

/// Encodes commands as RESP arrays of bulk strings, as a client sends them.
pub fn encode_commands(commands: &[&[&str]]) -> Vec<u8> {
    let mut request = Vec::new();
    for command in commands {
        request.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
        for argument in *command {
            request.extend_from_slice(format!("${}\r\n{argument}\r\n", argument.len()).as_bytes());
        }
    }
    request
}

pub fn error_text(error: &redis::RedisError) -> String {
    format!(
        "{} {}",
        error.code().unwrap_or(""),
        error.detail().unwrap_or("")
    )
}
