//! What the operations team watches: the metrics' state read at scrape time ([`observe`]) and
//! whether this process is ready to serve ([`readiness`]). Both read every stage, so this layer
//! sits above them; the web UI and the metrics listener of `server` answer with them.

pub mod backup;
pub mod check;
pub mod migrate;
pub mod observe;
pub mod readiness;

/// Whether `dir` takes a durable write: a probe file written, fsynced and removed. The probe's
/// name is this process's and this call's own: several processes share a data directory, and
/// one's probe removed by another's check failed both.
fn takes_durable_write(dir: &std::path::Path) -> Result<(), String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!(".probe.{}.{n}", std::process::id()));
    crate::base::fsio::write_durably(&probe, b"probe")
        .map_err(|e| e.to_string())
        .and_then(|_| std::fs::remove_file(&probe).map_err(|e| format!("{}: {e}", probe.display())))
}
