//! nachtwacht server: receives encrypted sensor bundles from base stations over mutually
//! authenticated QUIC, turns them into pseudonymised Parquet datasets, runs the indicator and alert
//! pipelines, and answers researchers with differentially private aggregates.
//!
//! One module per stage of the data's journey (see ARCHITECTURE.md for the map and invariants):
//! [`ingest`] → [`spool`] → [`decode`] → [`dataset`] → [`evaluate`] → [`research`] / [`web`],
//! with [`db`], [`audit`], [`pki`], [`secrets`] and [`pseudonym`] beside them.

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod caseload;
pub mod casework;
pub mod communication;
pub mod config;
pub mod crl;
pub mod datadir;
pub mod dataset;
pub mod db;
pub mod decode;
pub mod demo;
pub mod enroll;
pub mod evaluate;
pub mod failpoint;
pub mod ingest;
pub mod init;
pub mod keys;
pub mod management;
pub mod parallel;
pub mod pki;
pub mod pseudonym;
pub mod quarantine;
pub mod research;
pub mod rules_files;
pub mod secrets;
pub mod server;
pub mod spool;
pub mod validate;
pub mod web;

/// Milliseconds since the Unix epoch by the system clock. Code that must be testable takes `now`
/// as an argument instead of calling this.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Milliseconds in an hour and in a (UTC) day: every duration in ms is written with these.
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Midnight UTC starting `day`, in milliseconds since the Unix epoch.
pub fn midnight_ms(day: chrono::NaiveDate) -> i64 {
    day.and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis()
}
