//! The subcommands of the `nachtwacht` binary, one module per group, and what they share: the data
//! directory argument, the listen overrides, how a time argument is read, the stop signal.
//!
//! Binary-only: nothing in the library imports from here. Output meant for the operator goes to
//! stdout; diagnostics go through tracing to stderr.

pub mod accountability;
pub mod bench;
pub mod demo;
pub mod lifecycle;
pub mod logging;
pub mod pipeline;
pub mod quarantine;
pub mod registry;
pub mod research;
pub mod service;
pub mod trust;
pub mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use nachtwacht::base::Context;
use nachtwacht::server::ListenOverrides;

/// Who the audit log names for changes made from the command line.
pub const ACTOR_CLI: &str = "cli:administrator";

/// `--data-dir`: the one argument almost every subcommand takes, declared here once.
#[derive(clap::Args)]
pub struct DataDirArg {
    /// The data directory (created by `nachtwacht init`).
    #[arg(long)]
    pub data_dir: PathBuf,
}

impl DataDirArg {
    pub fn open(&self) -> anyhow::Result<Context> {
        Context::open(&self.data_dir)
            .with_context(|| format!("opening data directory {}", self.data_dir.display()))
    }
}

#[derive(clap::Args)]
pub struct ListenArgs {
    /// QUIC ingest address (overrides the config), e.g. 127.0.0.1:0 for any free port.
    #[arg(long)]
    quic_listen: Option<SocketAddr>,
    /// HTTP address (overrides the config).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Listen for `/metrics`, `/healthz` and `/readyz` here instead of
    /// `[operations] metrics_listen`.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// The roles this process runs, comma-separated: `ingest` (QUIC), `decode` (the decode
    /// worker), `evaluate` (pipelines, housekeeping, notifications), `web` (the web UI and APIs).
    /// All four unless told otherwise; several nodes on one database share the work
    /// (docs/deployment.md).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "ingest,decode,evaluate,web")]
    roles: Vec<nachtwacht::server::Role>,
}

impl From<ListenArgs> for ListenOverrides {
    fn from(a: ListenArgs) -> Self {
        Self {
            quic: a.quic_listen,
            http: a.http_listen,
            metrics: a.metrics_listen,
            roles: a.roles.into_iter().collect(),
        }
    }
}

/// An optional RFC 3339 time argument, now when omitted.
pub fn time_or_now(at: Option<String>) -> anyhow::Result<i64> {
    Ok(match at {
        Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .with_context(|| format!("{s:?} is not an RFC 3339 time"))?
            .timestamp_millis(),
        None => nachtwacht::base::time::now_ms(),
    })
}

/// Ctrl-C, or SIGTERM from systemd: either starts a graceful shutdown.
pub async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    tracing::info!("stop signal received; draining uploads");
    Ok(())
}
