//! The nachtwacht base-station agent.
//!
//! Comes in: readings from a wearable (an E4 CSV export, or the built-in simulator).
//! Goes out: age-encrypted bundles, uploaded over mutually authenticated QUIC.
//!
//! Flow: [`source`] reads → [`seal`] builds and encrypts a bundle → [`spool`] makes it durable on the
//! station's disk → [`uploader`] sends it and deletes the local copy only after the server's
//! acknowledgement says the server holds it durably.
//!
//! Invariant: a reading is never deleted from the station before the server has acknowledged the
//! bundle that carries it.

pub mod config;
pub mod seal;
pub mod source;
pub mod spool;
pub mod uploader;

use std::path::Path;

pub use config::{SourceConfig, StationConfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("source {path}: {reason}")]
    Source { path: String, reason: String },
    #[error("sealing a bundle: {0}")]
    Seal(String),
    #[error("spool {path}: {source}")]
    Spool {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("upload: {0}")]
    Upload(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What one pass of the agent did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub sealed: usize,
    pub acknowledged: usize,
    pub set_aside: usize,
    pub left_in_spool: usize,
}

/// Reads everything the configured source has, seals and spools it, and uploads the spool until it is
/// empty or the retry budget is spent. Returns what happened.
pub async fn run_once(config: &StationConfig, base_dir: &Path) -> Result<RunReport> {
    let spool = spool::Spool::open(&config.spool_dir(base_dir))?;
    let recipient = seal::parse_recipient(&config.server_age_recipient)?;
    let mut report = RunReport::default();
    for content in source::read_all(&config.source, base_dir)? {
        let Some((_, last)) = content.span() else {
            continue;
        };
        // Readings up to the cursor are already in the spool or at the server.
        if spool
            .cursor(&content.device_serial)?
            .is_some_and(|done| last <= done)
        {
            continue;
        }
        let sealed = seal::seal(&content, &recipient)?;
        spool.put(&sealed)?;
        spool.set_cursor(&content.device_serial, last)?;
        report.sealed += 1;
    }
    let client = uploader::Uploader::new(config)?;
    let outcome = client.drain(&spool).await?;
    report.acknowledged = outcome.acknowledged;
    report.set_aside = outcome.set_aside;
    report.left_in_spool = spool.pending()?.len();
    Ok(report)
}
