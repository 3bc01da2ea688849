//! `bench`: the benchmarks (build with --release). Each prints its figures beside floors or
//! baselines measured in the same run; docs/benchmarks.md describes the method and the current
//! figures.

use anyhow::Context as _;
use clap::Subcommand;

pub mod decode;
pub mod ingest;
mod measure;
pub mod pipeline;
pub mod research;
pub mod retention;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Many stations uploading at once over loopback QUIC, then many idle connections.
    Ingest(ingest::IngestArgs),
    /// The decode worker (decrypt, verify, validate, pseudonymise, write Parquet) beside a plain
    /// Parquet write of the same batches.
    Decode(decode::DecodeArgs),
    /// The stress pipeline on a wristband-day and the alcohol rules on 10,000 person-days, beside
    /// a plain polars scan and group-by of the same files.
    Pipeline(pipeline::PipelineArgs),
    /// DP query latency over 1,000 persons × 365 days, beside the same aggregates without DP.
    Research(research::ResearchArgs),
    /// Erasing one person from 1,000 persons × 30 ankle days and 50 persons × 7 wristband days,
    /// beside a plain rewrite of the same files.
    Retention(retention::RetentionArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    // The CPU-bound benchmarks run off the async runtime's threads.
    let blocking = |f: Box<dyn FnOnce() -> anyhow::Result<()> + Send>| async move {
        tokio::task::spawn_blocking(f).await.context("bench task")?
    };
    match command {
        BenchCommand::Ingest(args) => ingest::run(args).await,
        BenchCommand::Decode(args) => blocking(Box::new(move || decode::run(args))).await,
        BenchCommand::Pipeline(args) => blocking(Box::new(move || pipeline::run(args))).await,
        BenchCommand::Research(args) => blocking(Box::new(move || research::run(args))).await,
        BenchCommand::Retention(args) => blocking(Box::new(move || retention::run(args))).await,
    }
}
