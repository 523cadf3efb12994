//! `INFO [section ...]`: the sections of Redis's server report that clients read.
//!
//! Some clients send `INFO` when they connect and wait until `loading` is 0 (ioredis does by
//! default), and tools show the key count of `db0`. Tally reports those fields and a few about
//! the process; the connection's namespace is `db0`.

use super::commands::Session;
use super::reply::Reply;
use crate::Service;

const SECTIONS: [&str; 3] = ["server", "persistence", "keyspace"];

/// Builds the report of the named sections, or of every section when none is named or one of
/// the names is `default`, `all` or `everything`. Unknown sections are left out, as in Redis.
pub fn info(service: &Service, session: &Session, args: &[Vec<u8>]) -> Reply {
    let requested: Vec<String> = args
        .iter()
        .map(|arg| String::from_utf8_lossy(arg).to_ascii_lowercase())
        .collect();
    let everything = requested.is_empty()
        || requested
            .iter()
            .any(|name| matches!(name.as_str(), "default" | "all" | "everything"));
    let mut report = String::new();
    for section in SECTIONS {
        if !everything && !requested.iter().any(|name| name == section) {
            continue;
        }
        if !report.is_empty() {
            report.push_str("\r\n");
        }
        write_section(&mut report, section, service, session);
    }
    Reply::Text(report)
}

fn write_section(report: &mut String, section: &str, service: &Service, session: &Session) {
    match section {
        "server" => {
            let uptime = service.uptime().as_secs();
            report.push_str("# Server\r\n");
            line(report, "tally_version", env!("CARGO_PKG_VERSION"));
            line(report, "redis_mode", "standalone");
            let os = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
            line(report, "os", os);
            line(report, "arch_bits", usize::BITS);
            line(report, "process_id", std::process::id());
            line(report, "uptime_in_seconds", uptime);
            line(report, "uptime_in_days", uptime / 86_400);
        }
        "persistence" => {
            report.push_str("# Persistence\r\n");
            line(report, "loading", 0);
        }
        _ => {
            report.push_str("# Keyspace\r\n");
            // Redis lists only databases that contain keys.
            let keys = service.count_counters(&session.namespace).unwrap_or(0);
            if keys > 0 {
                line(report, "db0", format!("keys={keys},expires=0,avg_ttl=0"));
            }
        }
    }
}

fn line(report: &mut String, field: &str, value: impl std::fmt::Display) {
    report.push_str(&format!("{field}:{value}\r\n"));
}
