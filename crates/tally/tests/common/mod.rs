//! Test harness: starts the real `tally` binary on port 0 and talks to it over HTTP (reqwest)
//! and gRPC (the tonic client generated from the project's proto).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod frontend;
pub mod redis;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `tally serve` on a temporary data directory. Dropping it kills the process.
pub struct TestServer {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub http: String,
    pub grpc: String,
    /// `host:port` of the Redis protocol front end.
    pub resp: String,
    extra_env: Vec<(String, String)>,
    extra_args: Vec<String>,
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with_env(Vec::new())
    }

    pub fn start_with_env(extra_env: Vec<(String, String)>) -> Self {
        Self::start_with(extra_env, Vec::new())
    }

    /// Starts a server with extra environment variables and extra `tally serve` flags.
    pub fn start_with(extra_env: Vec<(String, String)>, extra_args: Vec<String>) -> Self {
        let temp = tempfile::tempdir().expect("cannot create a temporary directory");
        let data_dir = temp.path().join("data");
        let mut server = Self {
            child: None,
            data_dir,
            http: String::new(),
            grpc: String::new(),
            resp: String::new(),
            extra_env,
            extra_args,
            _temp: Some(temp),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let spawned = spawn_server_with_args(&self.data_dir, &self.extra_env, &self.extra_args);
        self.child = Some(spawned.child);
        self.http = spawned.http;
        self.grpc = spawned.grpc;
        self.resp = spawned.resp;
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("cannot kill the server");
            child.wait().expect("cannot wait for the server");
        }
    }

    /// `kill -9`, then a new server on the same data directory (on new ports).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        send_sigterm(&child);
        child.wait().expect("cannot wait for the server")
    }

    /// Pauses the server with SIGSTOP, runs `while_paused`, sends SIGTERM and resumes the server
    /// with SIGCONT, then waits for the exit. The connections that `while_paused` opens are
    /// still in the listeners' backlogs when the stop begins.
    pub fn terminate_with_backlog<T>(
        &mut self,
        while_paused: impl FnOnce() -> T,
    ) -> (T, std::process::ExitStatus) {
        let mut child = self.child.take().expect("server is not running");
        send_signal(&child, libc::SIGSTOP);
        let output = while_paused();
        send_sigterm(&child);
        send_signal(&child, libc::SIGCONT);
        (output, child.wait().expect("cannot wait for the server"))
    }

    /// Sends SIGTERM and waits up to `limit` for the exit. Returns the exit status and the time
    /// the server took, or kills it with SIGKILL and returns `None` when it is still running.
    pub fn terminate_within(
        &mut self,
        limit: Duration,
    ) -> Option<(std::process::ExitStatus, Duration)> {
        let mut child = self.child.take().expect("server is not running");
        let started = std::time::Instant::now();
        send_sigterm(&child);
        while started.elapsed() < limit {
            if let Some(status) = child.try_wait().expect("cannot wait for the server") {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().expect("cannot kill the server");
        child.wait().expect("cannot wait for the server");
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    pub fn http_client(&self) -> frontend::Http {
        frontend::Http::new(&self.http)
    }

    pub async fn grpc_client(&self) -> frontend::Grpc {
        frontend::Grpc::connect(&self.grpc).await
    }

    /// Forces a rollup of everything sealed.
    pub async fn rollup(&self) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/admin/rollup", self.http))
            .send()
            .await
            .expect("rollup request failed");
        assert_eq!(
            response.status(),
            200,
            "rollup failed: {}",
            response.text().await.unwrap_or_default()
        );
    }
}

pub fn send_sigterm(child: &Child) {
    send_signal(child, libc::SIGTERM);
}

fn send_signal(child: &Child, signal: libc::c_int) {
    let pid = i32::try_from(child.id()).expect("pid fits in i32");
    #[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
    // SAFETY: sends a signal to our own child process; no memory is shared.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({signal}) failed");
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `tally serve` and reads the `listening http=.. grpc=..` line. Panics with the
/// server's standard error when it does not start within 30 seconds.
pub fn spawn_server(data_dir: &Path, extra_env: &[(String, String)]) -> (Child, String, String) {
    let spawned = spawn_server_with_args(data_dir, extra_env, &[]);
    (spawned.child, spawned.http, spawned.grpc)
}

/// Like [`spawn_server`], with extra `tally serve` flags.
pub fn spawn_server_with_args(
    data_dir: &Path,
    extra_env: &[(String, String)],
    extra_args: &[String],
) -> Spawned {
    spawn_server_logging_to(data_dir, extra_env, extra_args, Stdio::inherit())
}

/// Like [`spawn_server_with_args`], with the server's log (its standard error) sent to `log`.
pub fn spawn_server_logging_to(
    data_dir: &Path,
    extra_env: &[(String, String)],
    extra_args: &[String],
    log: Stdio,
) -> Spawned {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
    command
        .args([
            "serve",
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--resp-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--rollup-interval-seconds", "3600"])
        .args(extra_args)
        .env("TALLY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("cannot start target tally binary");
    let stdout = child.stdout.take().expect("no stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = reader.read_line(&mut line);
        let _ = sender.send(line);
        // Keep draining so the server never blocks on a full pipe.
        let mut rest = String::new();
        while reader.read_line(&mut rest).map(|n| n > 0).unwrap_or(false) {
            rest.clear();
        }
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the server did not print its listening line within 30 s");
    let parse = |prefix: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"))
            .to_owned()
    };
    let http = format!("http://{}", parse("http="));
    let grpc = format!("http://{}", parse("grpc="));
    let resp = parse("resp=");
    Spawned {
        child,
        http,
        grpc,
        resp,
    }
}

/// A started server process and its addresses.
pub struct Spawned {
    pub child: Child,
    /// Base URL of the HTTP API.
    pub http: String,
    /// URL of the gRPC API.
    pub grpc: String,
    /// `host:port` of the Redis protocol front end.
    pub resp: String,
}

/// Reads what the server sends until it closes the connection, for at most 10 s. Panics, naming
/// `what`, when the read fails, for example on a reset.
pub fn read_until_closed(stream: &mut std::net::TcpStream, what: &str) -> Vec<u8> {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .unwrap_or_else(|error| panic!("{what}: reading until the close failed: {error}"));
    received
}

/// Returns a fresh name for each call, unique across tests in one run.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
