//! The base layer: what every other layer stands on and which imports nothing above it. The data
//! directory and its layout, the configuration, the SQL connection and its migrations, durable
//! file writes, time, the order-preserving parallel map, and [`Context`], which bundles the first
//! three for the stages.

pub mod archive;
pub mod blobs;
pub mod config;
pub mod context;
pub mod datadir;
pub mod db;
pub mod direct_write;
pub mod failpoint;
pub mod fsio;
pub mod html;
pub mod lease;
pub mod metrics;
pub mod panics;
pub mod parallel;
pub mod process;
pub mod programme;
pub mod refusal;
pub mod time;

pub use context::Context;
