//! What the operations team watches: the metrics' state read at scrape time ([`observe`]) and
//! whether this process is ready to serve ([`readiness`]). Both read every stage, so this layer
//! sits above them; the web UI and the metrics listener of `server` answer with them.

pub mod backup;
pub mod check;
pub mod observe;
pub mod readiness;

/// Whether `dir` takes a durable write: a probe file written, fsynced and removed.
fn takes_durable_write(dir: &std::path::Path) -> Result<(), String> {
    let probe = dir.join(".probe");
    crate::base::fsio::write_durably(&probe, b"probe")
        .map_err(|e| e.to_string())
        .and_then(|_| std::fs::remove_file(&probe).map_err(|e| format!("{}: {e}", probe.display())))
}
