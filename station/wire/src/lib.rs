//! What a base station and the nachtwacht server exchange, and nothing else.
//!
//! * [`bundle`]: the plaintext inside an age-encrypted sensor bundle (a manifest plus one Arrow IPC
//!   stream per signal) and the Arrow schema of every signal.
//! * [`signed`]: the envelope inside age that carries a bundle and its station's Ed25519 signature.
//! * [`protocol`]: the upload protocol spoken on each QUIC stream (frames, the server's incremental
//!   reader, the station's upload scheduler), without sockets or clocks.
//!
//! Invariant: this crate does no IO and reads no clock. Both sides depend on it, so a change here is a
//! change of the wire format and must bump the relevant version constant.

pub mod bundle;
pub mod protocol;
pub mod signed;

pub use bundle::{BundleId, BundleManifest, DeviceKind, Signal, SignalBatch};
pub use protocol::{Ack, AckCode, UploadHeader};
