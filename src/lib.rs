//! nachtwacht server: receives encrypted sensor bundles from base stations over mutually
//! authenticated QUIC, turns them into pseudonymised Parquet datasets, runs the indicator and alert
//! pipelines, and answers researchers with differentially private aggregates.
//!
//! The modules read as the data's journey over its supporting layers (ARCHITECTURE.md has the map
//! and the invariants). Layers, lowest first; a module imports only from its own layer or below:
//!
//! - [`base`]: data directory, configuration, SQL, durable files, time, [`base::Context`];
//! - [`trust`]: CA and revocation, secrets, age keys, pseudonyms, the audit chain;
//! - [`registry`]: accounts, caseloads, persons, devices and stations;
//! - the stages, in the order a reading passes them: [`ingest`] → [`spool`] → [`decode`] →
//!   [`dataset`] → [`evaluate`] → [`alerts`] → [`notify`], [`research`], and [`lifecycle`] over all of
//!   them;
//! - [`accountability`]: the compliance report and the data inventory, reading all of the above;
//! - [`web`] (pages and the research API) and [`server`], which wires the stages into one process.

// Supporting layers, lowest first.
pub mod base;

pub mod trust;

pub mod registry;

// The stages, in the order a reading passes them.
pub mod ingest;

pub mod spool;

pub mod decode;

pub mod dataset;

pub mod evaluate;

pub mod alerts;

pub mod research;

pub mod notify;

pub mod lifecycle;

// Evidence about all of the above, for auditors and the data-protection officer, and what the
// operations team watches.
pub mod accountability;

pub mod ops;

// The interfaces, and the wiring of it all into one process.
pub mod web;

pub mod server;
