//! Where everything lives inside a data directory. One place, so no module invents a path.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Makes every file and folder this process creates from now on private to its user (0600 and
/// 0700), whatever umask it was started with. Called when a data directory is created or opened:
/// the database (persons with region and birth year), datasets, spool and evidence are personal
/// data, and a umask of 022 would leave them readable by every account on the machine.
pub fn restrict_umask() {
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Opens (creating it if needed) the lock file at `path` and takes `flock(operation)` on it:
/// `LOCK_SH` or `LOCK_EX`, with `LOCK_NB` to not wait. Returns `None` when `LOCK_NB` was given and
/// someone else holds a conflicting lock. The lock lasts as long as the file stays open (or the
/// process lives), across processes on this machine.
pub fn lock_file(path: &Path, operation: libc::c_int) -> std::io::Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(file))
}

/// Entries of a data directory that others than its owner may read, write or enter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotPrivate {
    /// Up to ten of them, with their modes.
    pub examples: Vec<(PathBuf, u32)>,
    pub count: usize,
}

impl std::fmt::Display for NotPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} entries can be read by other accounts (", self.count)?;
        for (i, (path, mode)) in self.examples.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{} {:o}", path.display(), mode & 0o777)?;
        }
        write!(f, "); fix with: chmod -R go-rwx <data dir>")
    }
}

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks that no entry of the data directory (the directory itself included) grants any
    /// permission to group or others. Symbolic links are not followed.
    pub fn check_private(&self) -> std::io::Result<Result<(), NotPrivate>> {
        let mut found = NotPrivate {
            examples: vec![],
            count: 0,
        };
        let mut stack = vec![self.root.clone()];
        // Other processes on the same data directory (more nodes, a backup) create and remove
        // temporary files while this walks: an entry gone by the time it is looked at is no
        // permission problem. The root itself must be there.
        let gone = |e: &std::io::Error, path: &std::path::Path| {
            e.kind() == std::io::ErrorKind::NotFound && path != self.root
        };
        while let Some(path) = stack.pop() {
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if gone(&e, &path) => continue,
                Err(e) => return Err(e),
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                found.count += 1;
                if found.examples.len() < 10 {
                    found.examples.push((path.clone(), mode));
                }
            }
            if meta.is_dir() {
                let entries = match std::fs::read_dir(&path) {
                    Ok(entries) => entries,
                    Err(e) if gone(&e, &path) => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    stack.push(entry?.path());
                }
            }
        }
        Ok(if found.count == 0 { Ok(()) } else { Err(found) })
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("nachtwacht.toml")
    }
    /// The operator's rule files (see `rules_files`).
    /// The retention policy (`crate::lifecycle::policy`).
    pub fn retention_policy(&self) -> PathBuf {
        self.root.join("retention.toml")
    }
    /// Case archives written for handover, deleted at the end of their retention.
    pub fn exports(&self) -> PathBuf {
        self.root.join("exports")
    }
    pub fn rules(&self) -> PathBuf {
        self.root.join("rules")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("state.sqlite")
    }
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.pki().join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.pki().join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.pki().join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.pki().join("server.key")
    }
    /// The CA's current certificate revocation list; the ingest reloads it when it changes.
    pub fn crl(&self) -> PathBuf {
        self.pki().join("ca.crl.pem")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn age_identity(&self) -> PathBuf {
        self.keys().join("age-identity.txt")
    }
    /// The Ed25519 key that signs the audit log's daily checkpoints (`audit::checkpoint`).
    pub fn audit_signing_key(&self) -> PathBuf {
        self.keys().join("audit-signing-key.txt")
    }
    /// One signed checkpoint of the audit chain's head per day: `audit/checkpoints/<day>.json`.
    pub fn audit_checkpoints(&self) -> PathBuf {
        self.root.join("audit").join("checkpoints")
    }
    pub fn pseudonym_keys(&self) -> PathBuf {
        self.keys().join("pseudonym-keys.toml")
    }
    /// Received ciphertexts, durable before they are acknowledged.
    pub fn spool(&self) -> PathBuf {
        self.root.join("spool")
    }
    /// Ciphertexts of processed bundles, kept as evidence for the retention policy's `[evidence]`
    /// period: `evidence/<YYYY-MM-DD received>/<bundle id>.age`.
    pub fn evidence(&self) -> PathBuf {
        self.root.join("evidence")
    }
    /// Bundles that could not be processed, each with a `.reason` file.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    /// Pseudonymised raw signals: `datasets/raw/<signal>/<YYYY-MM-DD>/<bundle id>.parquet`.
    pub fn raw_signal(&self, signal: &str) -> PathBuf {
        self.root.join("datasets").join("raw").join(signal)
    }
    /// Held exclusively for the whole of one evaluation (`evaluate::run_days`), across processes.
    pub fn evaluation_lock(&self) -> PathBuf {
        self.root.join("datasets").join("evaluate.lock")
    }
    /// Readers of the raw datasets hold it shared; whoever deletes files compaction retired takes
    /// it exclusive (see `dataset::ReadGuard`).
    pub fn dataset_readers_lock(&self) -> PathBuf {
        self.root.join("datasets").join("readers.lock")
    }
    /// Scratch folders of dataset readers on object storage (see `dataset::Readers`).
    pub fn dataset_reads(&self) -> PathBuf {
        self.root.join("datasets").join(".reads")
    }
    /// Station configs written by the demo.
    pub fn stations(&self) -> PathBuf {
        self.root.join("stations")
    }
}

#[cfg(test)]
mod private_tests {
    use super::*;

    #[test]
    fn an_entry_others_can_read_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("d"));
        std::fs::create_dir(dir.root()).unwrap();
        std::fs::set_permissions(dir.root(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = dir.root().join("state.sqlite");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(dir.check_private().unwrap(), Ok(()));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let found = dir.check_private().unwrap().unwrap_err();
        assert_eq!(found.count, 1);
        assert!(found.to_string().contains("state.sqlite 644"), "{found}");
    }
}
