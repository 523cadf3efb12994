//! `tally bench`: a load generator for Tally over HTTP, gRPC and the Redis protocol, and for a
//! plain Redis server, so that both sides of a comparison run through the same client.

mod keys;
mod report;
mod target;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use keys::KeyChooser;
use report::{Operation, Recorder, Summary};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use target::Connection;

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// System under load: Tally over http, grpc or resp, or a plain Redis server (redis)
    #[arg(long, value_enum)]
    pub target: Target,

    /// Address: a URL for http and grpc (http://127.0.0.1:8080), host:port for resp and redis
    #[arg(long)]
    pub address: String,

    /// Tally namespace to count in
    #[arg(long, default_value = "default")]
    pub namespace: String,

    /// Concurrent connections, each with one request in flight
    #[arg(long, default_value_t = 50)]
    pub connections: usize,

    /// Commands per round trip on resp and redis (pipeline depth)
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,

    /// Adds per request on http and grpc; above 1 the add-batch call is used
    #[arg(long, default_value_t = 1)]
    pub batch: usize,

    /// Total operations to send; the run ends at this count or after --duration-seconds
    #[arg(long)]
    pub operations: Option<u64>,

    /// How long to run, in seconds, when --operations is not given
    #[arg(long, default_value_t = 10)]
    pub duration_seconds: u64,

    /// Number of distinct counters (keys)
    #[arg(long, default_value_t = 100_000)]
    pub counters: u64,

    /// Distribution of the keys
    #[arg(long, value_enum, default_value = "uniform")]
    pub distribution: Distribution,

    /// Exponent of the Zipf distribution (larger means more skew)
    #[arg(long, default_value_t = 1.1)]
    pub zipf_exponent: f64,

    /// Operation mix as weights, for example `add=8,get=2` (operations: add, add-and-get, get)
    #[arg(long, default_value = "add=1")]
    pub mix: String,

    /// Send an idempotency token with every add (not possible against plain Redis)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tokens: bool,

    /// Also write the results as JSON to this file
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,

    /// Do not print progress every second
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Http,
    Grpc,
    Resp,
    Redis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    Uniform,
    Zipf,
}

/// Parses `add=8,get=2` into cumulative weights per operation.
fn parse_mix(text: &str) -> Result<Vec<(Operation, u32)>> {
    let mut mix = Vec::new();
    for part in text.split(',') {
        let (name, weight) = part
            .split_once('=')
            .with_context(|| format!("invalid --mix entry {part:?}: expected name=weight"))?;
        let operation = match name.trim() {
            "add" => Operation::Add,
            "add-and-get" => Operation::AddAndGet,
            "get" => Operation::Get,
            other => {
                bail!("unknown operation {other:?} in --mix: expected add, add-and-get or get")
            }
        };
        let weight: u32 = weight
            .trim()
            .parse()
            .with_context(|| format!("invalid weight in --mix entry {part:?}"))?;
        mix.push((operation, weight));
    }
    if mix.iter().map(|(_, weight)| weight).sum::<u32>() == 0 {
        bail!("--mix needs at least one operation with a weight above 0");
    }
    Ok(mix)
}

fn validate(args: &BenchArgs) -> Result<()> {
    if args.connections == 0 || args.pipeline == 0 || args.batch == 0 || args.counters == 0 {
        bail!("--connections, --pipeline, --batch and --counters must be at least 1");
    }
    if args.target == Target::Redis && args.tokens {
        bail!("plain Redis has no idempotency tokens: pass --tokens false with --target redis");
    }
    if args.batch > 1 && matches!(args.target, Target::Resp | Target::Redis) {
        bail!("--batch applies to http and grpc; use --pipeline for resp and redis");
    }
    if args.pipeline > 1 && matches!(args.target, Target::Http | Target::Grpc) {
        bail!("--pipeline applies to resp and redis; use --batch for http and grpc");
    }
    if args.distribution == Distribution::Zipf && args.zipf_exponent <= 0.0 {
        bail!("--zipf-exponent must be above 0");
    }
    Ok(())
}

pub fn run(args: BenchArgs) -> Result<()> {
    validate(&args)?;
    let mix = parse_mix(&args.mix)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = runtime.block_on(run_load(&args, &mix))?;
    summary.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary.to_json(&args))?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if summary.num_errors > 0 {
        eprintln!(
            "warning: {} requests failed; see the first error above",
            summary.num_errors
        );
    }
    Ok(())
}

/// How long a worker waits after a failed request before it sends the next. Against a server
/// that is down or rejects every request, a failure returns at once. Without the pause the
/// workers would keep the runtime's threads busy, and its timers and the progress report would
/// stall.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Shared state of one run.
struct Shared {
    /// Operations still allowed to start; `u64::MAX` for a timed run.
    remaining: AtomicU64,
    done: AtomicU64,
    /// When a timed run ends. Each worker checks it before every request.
    deadline: Option<Instant>,
    first_error: std::sync::Mutex<Option<String>>,
}

async fn run_load(args: &BenchArgs, mix: &[(Operation, u32)]) -> Result<Summary> {
    let chooser = Arc::new(KeyChooser::new(
        args.distribution,
        args.counters,
        args.zipf_exponent,
    )?);
    let run_id: u64 = rand::random();

    // Connect every worker before the clock starts.
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        connections.push(Connection::open(args).await?);
    }

    let started = Instant::now();
    let deadline = match args.operations {
        Some(_) => None,
        None => Some(started + Duration::from_secs(args.duration_seconds)),
    };
    let shared = Arc::new(Shared {
        remaining: AtomicU64::new(args.operations.unwrap_or(u64::MAX)),
        done: AtomicU64::new(0),
        deadline,
        first_error: std::sync::Mutex::new(None),
    });
    let mut workers = Vec::with_capacity(args.connections);
    for (index, connection) in connections.into_iter().enumerate() {
        let worker = Worker {
            index,
            run_id,
            args: args.clone(),
            mix: mix.to_vec(),
            chooser: Arc::clone(&chooser),
            shared: Arc::clone(&shared),
        };
        workers.push(tokio::spawn(worker.run(connection)));
    }

    let progress = tokio::spawn(report_progress(Arc::clone(&shared), args.quiet));
    let mut recorder = Recorder::new()?;
    for worker in workers {
        recorder.merge(&worker.await.context("a worker panicked")??)?;
    }
    let elapsed = started.elapsed();
    progress.abort();

    let first_error = shared
        .first_error
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    if let Some(error) = &first_error {
        eprintln!("first error: {error}");
    }
    Ok(recorder.summarize(elapsed))
}

async fn report_progress(shared: Arc<Shared>, quiet: bool) {
    let mut last = 0;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    let mut second = 0;
    loop {
        interval.tick().await;
        second += 1;
        let done = shared.done.load(Ordering::Relaxed);
        if !quiet {
            eprintln!("{second:>4} s  {:>10} ops/s  {done:>12} ops", done - last);
        }
        last = done;
    }
}

struct Worker {
    index: usize,
    run_id: u64,
    args: BenchArgs,
    mix: Vec<(Operation, u32)>,
    chooser: Arc<KeyChooser>,
    shared: Arc<Shared>,
}

impl Worker {
    async fn run(self, mut connection: Connection) -> Result<Recorder> {
        let mut recorder = Recorder::new()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.run_id ^ self.index as u64);
        let total_weight: u32 = self.mix.iter().map(|(_, weight)| weight).sum();
        let per_request = self.args.pipeline.max(self.args.batch) as u64;
        let mut sequence = 0u64;

        while self
            .shared
            .deadline
            .is_none_or(|deadline| Instant::now() < deadline)
        {
            // Claim the operations of one request from the budget.
            let claimed =
                self.shared
                    .remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                        if left == 0 {
                            None
                        } else {
                            Some(left.saturating_sub(per_request))
                        }
                    });
            let Ok(left_before) = claimed else { break };
            let count = per_request.min(left_before) as usize;

            let operation = choose(&self.mix, total_weight, &mut rng);
            let requests: Vec<target::Request> = (0..count)
                .map(|_| {
                    sequence += 1;
                    target::Request {
                        key: format!("k{}", self.chooser.sample(&mut rng)),
                        delta: 1,
                        token: self
                            .args
                            .tokens
                            .then(|| format!("b{:x}-{}-{sequence}", self.run_id, self.index)),
                    }
                })
                .collect();

            let started = Instant::now();
            let result = connection.send(operation, &requests).await;
            let latency = started.elapsed();
            match result {
                Ok(()) => recorder.record(operation, latency, count as u64)?,
                Err(error) => {
                    recorder.record_error();
                    if let Ok(mut first) = self.shared.first_error.lock()
                        && first.is_none()
                    {
                        *first = Some(format!("{error:#}"));
                    }
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
            self.shared.done.fetch_add(count as u64, Ordering::Relaxed);
        }
        Ok(recorder)
    }
}

use rand::{Rng, SeedableRng};

fn choose(mix: &[(Operation, u32)], total_weight: u32, rng: &mut impl Rng) -> Operation {
    let mut pick = rng.random_range(0..total_weight);
    for (operation, weight) in mix {
        if pick < *weight {
            return *operation;
        }
        pick -= weight;
    }
    mix[0].0
}
