//! What a base station and the nachtwacht server exchange, and nothing else.
//!
//! * [`bundle`]: the plaintext inside an age-encrypted sensor bundle (a manifest plus one Arrow IPC
//!   stream per signal) and the Arrow schema of every signal.
//! * [`protocol`]: the frames of the upload protocol spoken on each QUIC stream (upload header,
//!   acknowledgement), encoded and decoded without sockets or clocks.
//!
//! Invariant: this crate does no IO and reads no clock. Both sides depend on it, so a change here is a
//! change of the wire format and must bump the relevant version constant.

pub mod bundle;
pub mod protocol;

pub use bundle::{BundleId, BundleManifest, DeviceKind, Signal, SignalBatch};
pub use protocol::{Ack, AckCode, UploadHeader};
