//! The server's spool: where a received ciphertext becomes durable before it is acknowledged.
//!
//! Order of events for one bundle: write `spool/<bundle id>.age.tmp`, fsync, rename to
//! `spool/<bundle id>.age`, fsync the directory, then insert the `bundles` row (state `spooled`).
//! Only then does the transport acknowledge `stored`. A row therefore always means a durable file;
//! a crash before the row leaves a file that the station's retry overwrites with the same bytes.
//! De-duplication is on the bundle id: a second upload of a known id is `duplicate`, stored once.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use nachtwacht_wire::{BundleId, UploadHeader};
use rusqlite::OptionalExtension;

use crate::db::Db;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    Duplicate,
}

#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    db: Db,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a file so that, once this returns, it and its directory entry survive a crash.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path.parent().expect("file in a directory"))
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl Spool {
    pub fn new(dir: PathBuf, db: Db) -> Self {
        Self { dir, db }
    }

    pub fn path_of(&self, bundle_id: &BundleId) -> PathBuf {
        self.dir.join(format!("{bundle_id}.age"))
    }

    fn known(&self, bundle_id: &BundleId) -> Result<bool> {
        Ok(self
            .db
            .lock()
            .query_row(
                "SELECT 1 FROM bundles WHERE bundle_id = ?1",
                [bundle_id.to_hex()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Makes the ciphertext durable and registers it. The caller has verified it against `header`.
    /// Blocking (fsync): call from a blocking thread.
    pub fn store(
        &self,
        station_id: i64,
        header: &UploadHeader,
        ciphertext: &[u8],
        now_ms: i64,
    ) -> Result<StoreOutcome> {
        if self.known(&header.bundle_id)? {
            return Ok(StoreOutcome::Duplicate);
        }
        write_durably(&self.path_of(&header.bundle_id), ciphertext)?;
        let inserted = self.db.lock().execute(
            "INSERT OR IGNORE INTO bundles (bundle_id, station_id, sequence, size, sha256, received_at_ms, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'spooled')",
            rusqlite::params![
                header.bundle_id.to_hex(),
                station_id,
                header.sequence as i64,
                header.size as i64,
                header.sha256,
                now_ms
            ],
        )?;
        // Another stream may have registered the same id between our check and our insert.
        Ok(if inserted == 1 {
            StoreOutcome::Stored
        } else {
            StoreOutcome::Duplicate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_stored_once_and_its_file_is_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open(&tmp.path().join("s.sqlite")).unwrap();
        db.lock()
            .execute(
                "INSERT INTO stations (id, name, cert_sha256, enrolled_at_ms) VALUES (1, 's', 'f', 0)",
                [],
            )
            .unwrap();
        let spool_dir = tmp.path().join("spool");
        fs::create_dir(&spool_dir).unwrap();
        let spool = Spool::new(spool_dir, db.clone());
        let header = UploadHeader::for_ciphertext(BundleId([3; 16]), 1, b"abc");
        assert_eq!(
            spool.store(1, &header, b"abc", 5).unwrap(),
            StoreOutcome::Stored
        );
        assert_eq!(
            spool.store(1, &header, b"abc", 6).unwrap(),
            StoreOutcome::Duplicate
        );
        assert_eq!(fs::read(spool.path_of(&header.bundle_id)).unwrap(), b"abc");
        let n: i64 = db
            .lock()
            .query_row("SELECT count(*) FROM bundles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
