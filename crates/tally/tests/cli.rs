//! The `tally` command line: client subcommands, server options from a file and from the
//! environment, and back-pressure of a saturated server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::frontend::{Frontend, Http};
use common::{TestServer, unique};
use std::process::{Command, Output};

fn tally(args: &[&str], server: &TestServer) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .args(["--server", &server.http])
        .output()
        .expect("cannot run tally")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn client_commands_round_trip() {
    let server = TestServer::start();

    let output = tally(&["add", "default", "cli", "5", "--token", "t1"], &server);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "5");

    let retry = tally(&["add", "default", "cli", "5", "--token", "t1"], &server);
    assert_eq!(stdout(&retry), "5", "a retried token counted twice");
    let retry_note = String::from_utf8_lossy(&retry.stderr);
    assert!(retry_note.contains("applied before"), "{retry_note}");
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("applied before"),
        "a first add was reported as a retry"
    );

    let negative = tally(&["add", "default", "cli", "-2", "--token", "t2"], &server);
    assert_eq!(stdout(&negative), "3");

    assert_eq!(stdout(&tally(&["get", "default", "cli"], &server)), "3");
    assert!(
        tally(&["clear", "default", "cli", "--token", "t3"], &server)
            .status
            .success()
    );
    assert_eq!(stdout(&tally(&["get", "default", "cli"], &server)), "0");

    let created = tally(
        &[
            "namespace",
            "create",
            "cli-ns",
            "--counter-type",
            "accurate",
        ],
        &server,
    );
    assert!(created.status.success(), "{created:?}");
    let listed = stdout(&tally(&["namespace", "list"], &server));
    assert!(listed.contains("cli-ns"), "{listed}");
    let shown = stdout(&tally(&["namespace", "get", "cli-ns"], &server));
    assert!(shown.contains("\"accurate\""), "{shown}");
}

#[test]
fn client_errors_go_to_stderr() {
    let server = TestServer::start();

    let missing = tally(&["get", "default", "never-written"], &server);
    assert!(!missing.status.success());
    assert!(missing.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{missing:?}"
    );

    let invalid = tally(&["add", "default", "c", "12abc"], &server);
    assert!(!invalid.status.success());
    assert!(
        String::from_utf8_lossy(&invalid.stderr).contains("delta"),
        "{invalid:?}"
    );
}

#[test]
fn serve_reads_config_file() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("from-file");
    let config = temp.path().join("tally.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nhttp_listen = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\nresp_listen = \"127.0.0.1:0\"\n",
            data_dir.display().to_string()
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(line.starts_with("listening http=127.0.0.1:"), "{line}");
    assert!(
        data_dir.try_exists().unwrap(),
        "the data_dir of the file was not used"
    );
}

#[test]
fn serve_reads_environment() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("from-env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("serve")
        .env("TALLY_DATA_DIR", &data_dir)
        .env("TALLY_HTTP_LISTEN", "127.0.0.1:0")
        .env("TALLY_GRPC_LISTEN", "127.0.0.1:0")
        .env("TALLY_RESP_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(line.starts_with("listening http=127.0.0.1:"), "{line}");
    assert!(
        data_dir.try_exists().unwrap(),
        "TALLY_DATA_DIR was not used"
    );
}

#[test]
fn serve_rejects_bad_config_file() {
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("bad.toml");
    std::fs::write(&config, "data_dri = \"typo\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("data_dri"), "{stderr}");
}

#[test]
fn serve_rejects_zero_max_connections() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--max-connections", "0", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid max_connections: must be at least 1, got 0"),
        "{stderr}"
    );
    assert!(
        !data_dir.try_exists().unwrap(),
        "the rejected start created the data directory"
    );
}

/// Fires `count` concurrent adds over separate connections; returns (applied, rejected as
/// overloaded).
async fn burst(server: &TestServer, counter: &str, count: usize) -> (i64, i64) {
    let mut tasks = Vec::new();
    for _ in 0..count {
        let http = Http::new(&server.http);
        let url = format!("{}/add", http.counter_url("default", counter));
        let body = format!(
            r#"{{"delta": 1, "idempotency_token": {{"token": "{}"}}}}"#,
            unique("burst")
        );
        tasks.push(tokio::spawn(async move {
            http.raw(reqwest::Method::POST, &url, Some(body)).await
        }));
    }
    let (mut applied, mut overloaded) = (0, 0);
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => applied += 1,
            429 => {
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
                overloaded += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    (applied, overloaded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saturated_server_rejects_fast() {
    let server = TestServer::start_with(
        Vec::new(),
        vec!["--write-queue-capacity".into(), "1".into()],
    );
    let counter = unique("pressure");

    // A queue of one request overflows under a burst; try a few bursts in case one is served
    // entirely by luck of timing.
    let mut total_applied = 0;
    let mut total_overloaded = 0;
    for _ in 0..5 {
        let (applied, overloaded) = burst(&server, &counter, 300).await;
        total_applied += applied;
        total_overloaded += overloaded;
        if total_overloaded > 0 {
            break;
        }
    }
    assert!(total_overloaded > 0, "no request was rejected with 429");

    // Rejected adds left no trace: the value counts exactly the applied ones.
    let mut http = server.http_client();
    assert_eq!(http.get("default", &counter).await.unwrap(), total_applied);

    // gRPC reports the same condition as RESOURCE_EXHAUSTED. Connect first, so the burst is
    // 300 requests multiplexed over 30 HTTP/2 connections, not 300 connection attempts.
    let mut clients = Vec::new();
    for _ in 0..30 {
        clients.push(common::frontend::Grpc::connect(&server.grpc).await);
    }
    let mut rejected_over_grpc = 0;
    for _ in 0..5 {
        let mut tasks = Vec::new();
        for index in 0..300 {
            let mut grpc = clients[index % clients.len()].clone();
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                grpc.add(
                    "default",
                    &counter,
                    1,
                    common::frontend::token(&unique("g")),
                )
                .await
            }));
        }
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => total_applied += 1,
                Err(error) => {
                    assert_eq!(
                        error.class,
                        common::frontend::ErrorClass::Overloaded,
                        "{}",
                        error.message
                    );
                    rejected_over_grpc += 1;
                }
            }
        }
        if rejected_over_grpc > 0 {
            break;
        }
    }
    assert!(
        rejected_over_grpc > 0,
        "no gRPC request was rejected with RESOURCE_EXHAUSTED"
    );
    assert_eq!(http.get("default", &counter).await.unwrap(), total_applied);
}
