//! Latency histograms (HDR) per operation, and the summary as text and JSON.

use super::BenchArgs;
use anyhow::Result;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Add,
    AddAndGet,
    Get,
}

impl Operation {
    const ALL: [Operation; 3] = [Operation::Add, Operation::AddAndGet, Operation::Get];

    pub fn name(self) -> &'static str {
        match self {
            Operation::Add => "add",
            Operation::AddAndGet => "add-and-get",
            Operation::Get => "get",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Request latencies in microseconds (one sample per round trip) and operation counts.
pub struct Recorder {
    histograms: Vec<Histogram<u64>>,
    num_operations: [u64; 3],
    num_errors: u64,
}

impl Recorder {
    pub fn new() -> Result<Self> {
        let histograms = (0..3)
            .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            histograms,
            num_operations: [0; 3],
            num_errors: 0,
        })
    }

    pub fn record(
        &mut self,
        operation: Operation,
        latency: Duration,
        num_operations: u64,
    ) -> Result<()> {
        let micros = (latency.as_micros() as u64).clamp(1, 60_000_000);
        self.histograms[operation.index()].record(micros)?;
        self.num_operations[operation.index()] += num_operations;
        Ok(())
    }

    pub fn record_error(&mut self) {
        self.num_errors += 1;
    }

    pub fn merge(&mut self, other: &Recorder) -> Result<()> {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            mine.add(theirs)?;
        }
        for (mine, theirs) in self.num_operations.iter_mut().zip(other.num_operations) {
            *mine += theirs;
        }
        self.num_errors += other.num_errors;
        Ok(())
    }

    pub fn summarize(self, elapsed: Duration) -> Summary {
        let seconds = elapsed.as_secs_f64();
        let operations = Operation::ALL
            .iter()
            .filter(|operation| self.num_operations[operation.index()] > 0)
            .map(|operation| {
                let histogram = &self.histograms[operation.index()];
                OperationSummary {
                    operation: *operation,
                    num_operations: self.num_operations[operation.index()],
                    num_requests: histogram.len(),
                    percentiles_micros: [50.0, 90.0, 99.0, 99.9]
                        .map(|q| histogram.value_at_quantile(q / 100.0)),
                    max_micros: histogram.max(),
                }
            })
            .collect();
        Summary {
            seconds,
            num_operations: self.num_operations.iter().sum(),
            num_errors: self.num_errors,
            operations,
        }
    }
}

pub struct OperationSummary {
    pub operation: Operation,
    pub num_operations: u64,
    pub num_requests: u64,
    /// p50, p90, p99 and p99.9 of the request latency.
    pub percentiles_micros: [u64; 4],
    pub max_micros: u64,
}

pub struct Summary {
    pub seconds: f64,
    pub num_operations: u64,
    pub num_errors: u64,
    pub operations: Vec<OperationSummary>,
}

impl Summary {
    pub fn operations_per_second(&self) -> f64 {
        self.num_operations as f64 / self.seconds.max(1e-9)
    }

    pub fn print(&self) {
        println!(
            "{} operations in {:.2} s: {:.0} operations/s, {} failed requests",
            self.num_operations,
            self.seconds,
            self.operations_per_second(),
            self.num_errors
        );
        println!("operation        ops/s   p50 ms   p90 ms   p99 ms p99.9 ms   max ms");
        for summary in &self.operations {
            let [p50, p90, p99, p999] = summary
                .percentiles_micros
                .map(|micros| micros as f64 / 1000.0);
            println!(
                "{:<12} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                summary.operation.name(),
                summary.num_operations as f64 / self.seconds.max(1e-9),
                p50,
                p90,
                p99,
                p999,
                summary.max_micros as f64 / 1000.0
            );
        }
    }

    pub fn to_json(&self, args: &BenchArgs) -> Value {
        let operations: serde_json::Map<String, Value> = self
            .operations
            .iter()
            .map(|summary| {
                let [p50, p90, p99, p999] = summary.percentiles_micros;
                (
                    summary.operation.name().to_owned(),
                    json!({
                        "operations": summary.num_operations,
                        "requests": summary.num_requests,
                        "operations_per_second": summary.num_operations as f64 / self.seconds.max(1e-9),
                        "latency_micros": { "p50": p50, "p90": p90, "p99": p99, "p99_9": p999, "max": summary.max_micros },
                    }),
                )
            })
            .collect();
        json!({
            "target": args.target,
            "address": args.address,
            "namespace": args.namespace,
            "connections": args.connections,
            "pipeline": args.pipeline,
            "batch": args.batch,
            "counters": args.counters,
            "distribution": args.distribution,
            "zipf_exponent": args.zipf_exponent,
            "mix": args.mix,
            "tokens": args.tokens,
            "seconds": self.seconds,
            "operations": self.num_operations,
            "operations_per_second": self.operations_per_second(),
            "failed_requests": self.num_errors,
            "by_operation": operations,
        })
    }
}
