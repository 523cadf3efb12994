//! The `tally` binary: `tally serve` runs the server; the other subcommands are an HTTP client
//! of a running server.

mod bench;
mod client;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "tally", version, about = "Durable, idempotent counters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server on the embedded store.
    Serve(serve::ServeArgs),
    /// Add a delta to a counter and print the new value.
    Add(client::AddArgs),
    /// Print a counter's value alone, for scripts.
    Get(client::GetArgs),
    /// Reset a counter to 0; prints nothing on success.
    Clear(client::ClearArgs),
    /// Create, show or list namespaces.
    #[command(subcommand)]
    Namespace(client::NamespaceCommand),
    /// Load a Tally or Redis server and report throughput and latency percentiles.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Add(args) => client::add(args),
        Command::Get(args) => client::get(args),
        Command::Clear(args) => client::clear(args),
        Command::Namespace(command) => client::namespace(command),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
