//! nachtwacht's indicator and alert pipelines: pure polars, LazyFrame in, LazyFrame out.
//!
//! * [`alcohol`]: drinking events (and interferent shapes for review) from ankle-monitor readings.
//! * [`daily`]: daily indicators per person-day, and their research-pseudonymised form.
//! * [`stress`]: EDA quality mask, SCRs, aroused windows against a personal baseline, episodes.
//! * [`synth`]: synthetic signals with ground truth, for accuracy tests and benchmarks.
//! * [`tamper`]: strap-open, possible-removal, obstruction, battery-low and device-fault events.
//! * [`rules`]: every threshold, loaded from the TOML files beside this crate.
//!
//! Invariant: this crate does no IO (no files, no network, no clock). Callers scan the datasets and
//! hand in LazyFrames; they collect and store what comes out. That keeps every rule testable on a
//! `df!` literal.
//!
//! Column contract for inputs: `pid` (operational pseudonym, String), `ts` (Datetime ms, UTC), then
//! the signal's value columns as named in `nachtwacht_wire::Signal::value_columns`.

pub mod alcohol;
pub mod daily;
pub mod rules;
pub mod stress;
pub mod synth;
pub mod tamper;

pub use rules::{AlcoholRules, StressRules, TamperRules};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rules {file}: {reason}")]
    Rules { file: String, reason: String },
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
