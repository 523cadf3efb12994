//! The command-line client: each subcommand is one call of the HTTP API.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args)]
pub struct ServerArg {
    /// Base URL of the server's HTTP API
    #[arg(long, env = "TALLY_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

#[derive(Args)]
pub struct AddArgs {
    namespace: String,
    counter: String,
    /// Signed 64-bit integer to add; negative values subtract
    #[arg(allow_negative_numbers = true)]
    delta: String,
    /// Idempotency token: a retry with the same token is applied once. Without it the add
    /// is not safe to retry.
    #[arg(long)]
    token: Option<String>,
    /// Event time of the change (RFC 3339), resent unchanged with every retry [default: now]
    #[arg(long)]
    generation_time: Option<String>,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Args)]
pub struct GetArgs {
    namespace: String,
    counter: String,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Args)]
pub struct ClearArgs {
    namespace: String,
    counter: String,
    /// Idempotency token: a retry with the same token clears once
    #[arg(long)]
    token: Option<String>,
    /// Event time of the clear (RFC 3339) [default: now]
    #[arg(long)]
    generation_time: Option<String>,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace, or change its configuration. On an existing namespace, options left
    /// out keep their current values; the defaults below apply to a new namespace.
    Create {
        name: String,
        /// eventual, accurate or best_effort [default: eventual]
        #[arg(long)]
        counter_type: Option<String>,
        /// Oldest accepted event time, in seconds before now [default: 600]
        #[arg(long)]
        accept_limit_seconds: Option<i64>,
        /// Latest accepted event time, in seconds after now [default: 60]
        #[arg(long)]
        max_clock_skew_seconds: Option<i64>,
        /// How long events are kept after rollup, in seconds [default: 604800]
        #[arg(long)]
        event_retention_seconds: Option<i64>,
        /// How long tokens are remembered after their event time, in seconds [default: 3600]
        #[arg(long)]
        idempotency_window_seconds: Option<i64>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Print a namespace's configuration as JSON
    Get {
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Print all namespaces as JSON
    List {
        #[command(flatten)]
        server: ServerArg,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Percent-encodes one path segment, so that names with `/`, spaces or non-ASCII survive.
pub(crate) fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn counter_url(server: &ServerArg, namespace: &str, counter: &str) -> String {
    format!(
        "{}/v1/namespaces/{}/counters/{}",
        server.server.trim_end_matches('/'),
        segment(namespace),
        segment(counter)
    )
}

/// Sends a request and returns the JSON body, or the server's error message.
fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> Result<Value> {
    runtime()?.block_on(async {
        let client = reqwest::Client::new();
        let mut request = client.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("invalid JSON reply from {url}"))?;
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            bail!("{message} (HTTP {status})");
        }
        Ok(body)
    })
}

fn token_body(token: Option<String>, generation_time: Option<String>) -> Value {
    match token {
        Some(token) => json!({ "token": token, "generation_time": generation_time }),
        None => Value::Null,
    }
}

pub fn add(args: AddArgs) -> Result<()> {
    let url = format!(
        "{}/add-and-get",
        counter_url(&args.server, &args.namespace, &args.counter)
    );
    let body = json!({ "delta": args.delta, "idempotency_token": token_body(args.token, args.generation_time) });
    let reply = call(reqwest::Method::POST, &url, Some(body))?;
    println!("{}", reply["value"]);
    if reply["duplicate"] == true {
        eprintln!(
            "the token was applied before, so this add changed nothing; the value is the current one"
        );
    }
    Ok(())
}

pub fn get(args: GetArgs) -> Result<()> {
    let reply = call(
        reqwest::Method::GET,
        &counter_url(&args.server, &args.namespace, &args.counter),
        None,
    )?;
    println!("{}", reply["value"]);
    Ok(())
}

pub fn clear(args: ClearArgs) -> Result<()> {
    let url = format!(
        "{}/clear",
        counter_url(&args.server, &args.namespace, &args.counter)
    );
    let body = json!({ "idempotency_token": token_body(args.token, args.generation_time) });
    call(reqwest::Method::POST, &url, Some(body))?;
    Ok(())
}

pub fn namespace(command: NamespaceCommand) -> Result<()> {
    let reply = match command {
        NamespaceCommand::Create {
            name,
            counter_type,
            accept_limit_seconds,
            max_clock_skew_seconds,
            event_retention_seconds,
            idempotency_window_seconds,
            server,
        } => {
            let mut body = serde_json::Map::new();
            let fields = [
                ("counter_type", counter_type.map(Value::from)),
                (
                    "accept_limit_seconds",
                    accept_limit_seconds.map(Value::from),
                ),
                (
                    "max_clock_skew_seconds",
                    max_clock_skew_seconds.map(Value::from),
                ),
                (
                    "event_retention_seconds",
                    event_retention_seconds.map(Value::from),
                ),
                (
                    "idempotency_window_seconds",
                    idempotency_window_seconds.map(Value::from),
                ),
            ];
            for (field, value) in fields {
                if let Some(value) = value {
                    body.insert(field.to_owned(), value);
                }
            }
            let url = format!(
                "{}/v1/namespaces/{}",
                server.server.trim_end_matches('/'),
                segment(&name)
            );
            call(reqwest::Method::PUT, &url, Some(Value::Object(body)))?
        }
        NamespaceCommand::Get { name, server } => {
            let url = format!(
                "{}/v1/namespaces/{}",
                server.server.trim_end_matches('/'),
                segment(&name)
            );
            call(reqwest::Method::GET, &url, None)?
        }
        NamespaceCommand::List { server } => call(
            reqwest::Method::GET,
            &format!("{}/v1/namespaces", server.server.trim_end_matches('/')),
            None,
        )?,
    };
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(())
}
