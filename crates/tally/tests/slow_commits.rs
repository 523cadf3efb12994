//! A group commit that the store makes slow logs a warning with its phases, on the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::frontend::{Frontend, Http};
use common::{spawn_server_logging_to, unique};
use std::fs::File;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Kills the server when the test ends, also when an assertion fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Returns the first line of the log at `path` that contains `text`, waiting up to 10 s for it.
fn wait_for_log_line(path: &std::path::Path, text: &str) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = log.lines().find(|line| line.contains(text)) {
            return line.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no log line with {text:?} within 10 s; the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads the whole number after `name=` in a log line.
fn field(line: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no field {name} in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("field {name} is not a number in {line:?}"))
}

#[tokio::test]
async fn slow_write_logs_warning() {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let fault_file = dir.path().join("fault");
    let log_path = dir.path().join("server.log");
    let log = File::create(&log_path).expect("cannot create the log file");
    let server = spawn_server_logging_to(
        &dir.path().join("data"),
        &[(
            "TALLY_FAULT_FILE".to_owned(),
            fault_file.to_string_lossy().into_owned(),
        )],
        &[],
        Stdio::from(log),
    );
    let _stop_server = KillOnDrop(server.child);
    let mut client = Http::new(&server.http);
    let counter = unique("slow");

    std::fs::write(&fault_file, "delay").expect("cannot write the fault file");
    let change = client.add("default", &counter, 3, None).await;
    assert!(change.is_ok(), "the delayed add failed: {change:?}");
    let line = wait_for_log_line(&log_path, "group commit took");

    assert!(line.contains("WARN"), "{line}");
    assert_eq!(field(&line, "num_operations"), 1, "{line}");
    assert!(field(&line, "write_and_sync_ms") >= 200, "{line}");
    assert!(field(&line, "decide_ms") < 200, "{line}");
    assert_eq!(field(&line, "num_unlogged_slow_commits"), 0, "{line}");

    std::fs::write(&fault_file, "").expect("cannot empty the fault file");
    let value = client.get("default", &counter).await;
    assert_eq!(value.ok(), Some(3), "the delayed add did not count once");
}
