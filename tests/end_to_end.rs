//! The end-to-end tests, one module per concern, linked into one test binary: each binary links
//! polars, opendp and the server, so thirty of them spent most of a CI run linking. Two tests keep
//! binaries of their own because they observe the whole process: `fuzz_corpora.rs` counts every
//! allocation (its global allocator) and `panic_hook.rs` counts every reported panic.

mod common;

mod admin_ui;
mod alcohol_alerts;
mod authorization;
mod backup;
mod bench;
mod bombs;
mod browser;
mod cli;
mod compliance;
mod crash;
mod decode;
mod demo_cli;
mod dossier;
mod erasure;
mod https;
mod ingest_protocol;
mod ingest_to_research;
mod inventory;
mod languages;
mod late_data;
mod management;
mod migrate;
mod module_cycles;
mod mtls_refusal;
mod multi_process;
mod notifications;
mod officer_filter;
mod operations;
mod person_page;
#[path = "power_cut/main.rs"]
mod power_cut;
mod renewal;
mod resumption;
mod rules_files;
mod subject_access;
