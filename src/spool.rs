//! The server's spool: where a received ciphertext becomes durable before it is acknowledged.
//!
//! Order of events for one bundle:
//! 1. the stream task receives the whole ciphertext and checks it against the header's size and
//!    digest;
//! 2. the group committer ([`crate::ingest::commit`]) takes every bundle that is ready and makes
//!    the batch durable in the ciphertext store ([`crate::base::blobs`]): on local storage it
//!    writes all their ciphertexts into one new segment `spool/segments/<process>.<n>.seg` (one
//!    `fdatasync`, one directory fsync; each row keeps its offset), on object storage it PUTs one
//!    object per bundle; then it inserts all their `bundles` rows in one SQL transaction;
//! 3. only then does the transport acknowledge `stored`.
//!
//! A row therefore always means durable bytes ([`Location`] says where). A crash before the row
//! leaves a segment or object without a row: it was never acknowledged, so the station re-sends it
//! and start-up removes it ([`Spool::sweep_unregistered`]); a row transaction that fails before
//! its commit removes its batch's segment at once. A segment is deleted once none of its
//! bundles is still `spooled` ([`release_segments`]); a decoded bundle's range is copied to
//! `evidence/` first. De-duplication is on the bundle id: a second upload of
//! a known id is `duplicate`, stored once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::base::db::OptionalExtension;
use nachtwacht_wire::BundleId;

use crate::base::blobs::{self, Blobs, Key};
use crate::base::db::Db;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] crate::base::fsio::Error),
    #[error(transparent)]
    Storage(#[from] blobs::Error),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] crate::trust::audit::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a registered bundle is in its life: waiting in the spool, decoded into the datasets, or
/// set aside in quarantine with a reason. Stored in `bundles.state` as [`BundleState::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleState {
    Spooled,
    Processed,
    Quarantined,
}

impl BundleState {
    pub const ALL: [BundleState; 3] = [Self::Spooled, Self::Processed, Self::Quarantined];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Spooled => "spooled",
            Self::Processed => "processed",
            Self::Quarantined => "quarantined",
        }
    }
}

crate::closed_set_text!(BundleState);

/// The `bundles` row of a bundle that has just become durable in the spool.
#[derive(Debug, Clone)]
pub struct Spooled<'a> {
    pub bundle_id: BundleId,
    pub station_id: i64,
    pub sequence: u64,
    pub size: u64,
    /// Hex SHA-256 of the ciphertext.
    pub sha256: &'a str,
    pub received_at_ms: i64,
    /// The segment holding the ciphertext and where in it it starts; `None`: an object of its own
    /// ([`Key::spooled`]).
    pub segment: Option<(&'a Key, u64)>,
}

/// Where a spooled bundle's ciphertext is.
///
/// On a local data directory the group commit writes all of a batch's ciphertexts into one new
/// file, a segment, with one data sync and one directory sync, where a file per bundle cost a sync
/// each and a directory entry created and later removed each (docs/benchmarks.md). A segment is
/// never written again; it is deleted once none of its bundles waits in the spool any more (they
/// were decoded into evidence files of their own, or quarantined), by the decoder or by the sweep
/// ([`release_segments`], [`Spool::sweep_unregistered`]). On object storage each bundle stays an
/// object of its own: erasing one person's bundle must not mean rewriting an object shared with
/// others, and a PUT is not made cheaper by sharing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An object of its own: `spool/<id>.<sha256>.age` (object storage, a bundle sent back from
    /// quarantine, or one stored without the group commit).
    Object(Key),
    /// `len` bytes of a segment from `offset`.
    Segment { segment: Key, offset: u64, len: u64 },
}

impl Location {
    /// Where a `bundles` row says its ciphertext waits. A segment name that is not one (a row
    /// edited by hand) is taken as absent: the bundle is then looked for elsewhere, and
    /// quarantined as unreadable if it is nowhere.
    pub fn of_row(
        id: &BundleId,
        sha256: &str,
        segment: Option<&str>,
        offset: Option<i64>,
        size: i64,
    ) -> Self {
        match (segment.and_then(Key::segment), offset) {
            (Some(segment), Some(offset)) => Self::Segment {
                segment,
                offset: offset.max(0) as u64,
                len: size.max(0) as u64,
            },
            _ => Self::Object(Key::spooled(id, sha256)),
        }
    }

    /// The ciphertext's bytes; `None` when its object or segment is not there.
    pub fn read(&self, blobs: &Blobs) -> blobs::Result<Option<Vec<u8>>> {
        match self {
            Self::Object(key) => blobs.get(key),
            Self::Segment {
                segment,
                offset,
                len,
            } => blobs.read_range(segment, *offset, *len),
        }
    }

    /// The segment, if the ciphertext is in one.
    pub fn segment(&self) -> Option<&Key> {
        match self {
            Self::Object(_) => None,
            Self::Segment { segment, .. } => Some(segment),
        }
    }

    /// Stores the ciphertext durably under each destination key (evidence, quarantine) and takes
    /// it out of the spool: an object is moved; a segment's range is written as a new object and
    /// the segment stays until [`release_segments`] finds none of its bundles waiting. Once this
    /// returns every destination is durable. A source that is gone is taken as moved already.
    pub fn move_all(blobs: &Blobs, moves: &[(Location, Key)]) -> Result<()> {
        let mut objects = Vec::new();
        let mut copies: Vec<(Key, Vec<u8>)> = Vec::new();
        for (from, to) in moves {
            match from {
                Self::Object(key) => objects.push((key.clone(), to.clone())),
                Self::Segment { .. } => {
                    if let Some(bytes) = from.read(blobs)? {
                        copies.push((to.clone(), bytes));
                    }
                }
            }
        }
        if !copies.is_empty() {
            let items: Vec<(Key, &[u8])> = copies
                .iter()
                .map(|(k, b)| (k.clone(), b.as_slice()))
                .collect();
            for (placed, (key, bytes)) in blobs.place_all(&items)?.into_iter().zip(&items) {
                if placed == blobs::Placed::Other {
                    // Another copy under the destination's name (restored from elsewhere, or
                    // an older upload's): the spool's bytes are what the row's digest names,
                    // so they replace it, as a move would.
                    blobs.put(key, bytes)?;
                }
            }
        }
        blobs.move_all(&objects)?;
        Ok(())
    }
}

/// Deletes each of `segments` that no bundle waiting in the spool needs any more. The rows of a
/// segment are all inserted in the transaction that follows its write, so once one of them is
/// seen, a segment none of whose rows is `spooled` is needed by nobody. Returns how many were
/// deleted.
pub fn release_segments(
    blobs: &Blobs,
    conn: &crate::base::db::Connection,
    segments: &[Key],
) -> Result<usize> {
    let mut needed =
        conn.prepare_cached("SELECT 1 FROM bundles WHERE segment = ?1 AND state = ?2 LIMIT 1")?;
    let mut n = 0;
    let unique: std::collections::BTreeSet<&Key> = segments.iter().collect();
    for segment in unique {
        let waiting = needed
            .query_row(
                crate::params![segment.as_str(), BundleState::Spooled],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !waiting {
            blobs.remove(segment)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Inserts a spooled bundle's row (state `spooled`). Call only once its file is durable; the group
/// committer calls it inside its batch transaction.
pub fn insert_row(conn: &crate::base::db::Connection, row: &Spooled<'_>) -> Result<()> {
    match insert_row_once(conn, row)? {
        Known::New => Ok(()),
        _ => Err(crate::base::db::Error::Conversion(format!(
            "bundle {} is registered already",
            row.bundle_id
        ))
        .into()),
    }
}

/// Inserts a spooled bundle's row unless its id is registered already, and says which: the
/// primary key decides, not a look beforehand, so two processes storing one id at once register
/// it once ([`Known::New`] for the one whose row it is; [`Known::Same`] or [`Known::Conflict`]
/// by the stored digest for the other).
pub fn insert_row_once(conn: &crate::base::db::Connection, row: &Spooled<'_>) -> Result<Known> {
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO bundles
                 (bundle_id, station_id, sequence, size, sha256, received_at_ms, state,
                  segment, segment_offset)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(crate::params![
            row.bundle_id.to_hex(),
            row.station_id,
            row.sequence as i64,
            row.size as i64,
            row.sha256,
            row.received_at_ms,
            BundleState::Spooled,
            row.segment.map(|(k, _)| k.as_str()),
            row.segment.map(|(_, offset)| offset as i64)
        ])?;
    if inserted == 1 {
        return Ok(Known::New);
    }
    let stored: String = conn
        .prepare_cached("SELECT sha256 FROM bundles WHERE bundle_id = ?1")?
        .query_row([row.bundle_id.to_hex()], |r| r.get(0))?;
    Ok(if stored == row.sha256 {
        Known::Same
    } else {
        Known::Conflict {
            stored_sha256: stored,
        }
    })
}

/// Where a bundle's row says its ciphertext waits while it is spooled; `None` for an unknown
/// bundle.
pub fn location(
    conn: &crate::base::db::Connection,
    bundle_id: &BundleId,
) -> Result<Option<Location>> {
    let row: Option<(String, Option<String>, Option<i64>, i64)> = conn
        .prepare_cached(
            "SELECT sha256, segment, segment_offset, size FROM bundles WHERE bundle_id = ?1",
        )?
        .query_row([bundle_id.to_hex()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    Ok(row.map(|(sha256, segment, offset, size)| {
        Location::of_row(bundle_id, &sha256, segment.as_deref(), offset, size)
    }))
}

/// What a known bundle id means for a new upload of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    New,
    /// Held durably with the same digest.
    Same,
    /// Held durably with another digest: the id was reused for other content.
    Conflict {
        stored_sha256: String,
    },
}

/// How old an unregistered spool file must be before a sweep removes it: far longer than a group
/// commit takes between writing its files and committing their rows.
pub const SWEEP_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Clone)]
pub struct Spool {
    blobs: Blobs,
    db: Db,
    /// A second connection for lookups: in WAL mode it reads while the group committer writes, so a
    /// duplicate check never waits behind a commit's fsync.
    reader: Db,
    /// Bytes of bundles received but not yet decoded (refreshed from SQL, raised on every commit).
    backlog: Arc<AtomicU64>,
}

impl Spool {
    pub fn new(blobs: Blobs, db: Db) -> Self {
        Self {
            blobs,
            reader: db.clone(),
            db,
            backlog: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Uses `reader` (its own connection to the same database) for lookups.
    pub fn with_reader(mut self, reader: Db) -> Self {
        self.reader = reader;
        self
    }

    pub fn reader(&self) -> &Db {
        &self.reader
    }

    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Puts one received ciphertext into the spool as the ingest leaves it (file durable, then its
    /// row), without the QUIC front: for `nachtwacht bench decode` and tests of the decode worker.
    pub fn put_received(
        &self,
        station_id: i64,
        sequence: u64,
        bundle_id: BundleId,
        ciphertext: &[u8],
        received_at_ms: i64,
    ) -> Result<()> {
        use sha2::Digest;
        let sha256 = hex::encode(sha2::Sha256::digest(ciphertext));
        self.blobs
            .put(&Key::spooled(&bundle_id, &sha256), ciphertext)?;
        insert_row(
            &self.db.lock(),
            &Spooled {
                bundle_id,
                station_id,
                sequence,
                size: ciphertext.len() as u64,
                sha256: &sha256,
                received_at_ms,
                segment: None,
            },
        )
    }

    /// Where a bundle's row says its ciphertext waits (whatever its state); `None` for an
    /// unknown bundle.
    pub fn location(&self, bundle_id: &BundleId) -> Result<Option<Location>> {
        location(&self.reader.lock(), bundle_id)
    }

    pub fn known(&self, bundle_id: &BundleId, sha256: &str) -> Result<Known> {
        let stored: Option<String> = self
            .reader
            .lock()
            .prepare_cached("SELECT sha256 FROM bundles WHERE bundle_id = ?1")?
            .query_row([bundle_id.to_hex()], |r| r.get(0))
            .optional()?;
        Ok(match stored {
            None => Known::New,
            Some(s) if s == sha256 => Known::Same,
            Some(stored_sha256) => Known::Conflict { stored_sha256 },
        })
    }

    /// Removes what a crash left behind in the spool: temporary files, bundle files without a
    /// `bundles` row (written, never acknowledged; their stations re-send them), and segments
    /// none of whose bundles waits any more (a crash came before their rows, or before the
    /// decoder deleted them). Run before the
    /// ingest accepts uploads. Files younger than [`SWEEP_MIN_AGE`] are left: another process
    /// sharing the spool may be between writing a file and registering its row; but a temporary
    /// file whose writer was a process on this machine that is gone goes at once.
    pub fn sweep_unregistered(&self) -> Result<usize> {
        let mut n = 0;
        let listed = self.blobs.list(blobs::SPOOL)?;
        let conn = self.reader.lock();
        let mut registered =
            conn.prepare_cached("SELECT sha256 FROM bundles WHERE bundle_id = ?1 AND state = ?2")?;
        for object in listed {
            let name = object.key.file_name();
            let writer = match object.key.is_segment() {
                true => object.key.segment_writer(),
                false => crate::base::fsio::temp_owner(name),
            };
            if !crate::base::fsio::abandoned(writer, object.modified, SWEEP_MIN_AGE) {
                continue;
            }
            if object.key.is_segment() {
                // Written, then its rows committed or never (a crash between, or its writer
                // gone): kept only while a bundle waiting in the spool is in it.
                n += release_segments(&self.blobs, &conn, std::slice::from_ref(&object.key))?;
                continue;
            }
            let mut spooled_sha = |id: &str| -> Result<Option<String>> {
                Ok(registered
                    .query_row(crate::params![id, BundleState::Spooled], |r| r.get(0))
                    .optional()?)
            };
            let unregistered = match name.split('.').collect::<Vec<_>>()[..] {
                [.., "part" | "tmp"] => true,
                // Waiting to be decoded only if a spooled row names this content.
                [id, sha256, "age"] => spooled_sha(id)?.as_deref() != Some(sha256),
                // Named before spool keys carried their digest: renamed to what the row says.
                [id, "age"] => match (spooled_sha(id)?, BundleId::from_hex(id)) {
                    (Some(sha256), Some(bundle_id)) => {
                        let renamed = Key::spooled(&bundle_id, &sha256);
                        self.blobs.move_all(&[(object.key.clone(), renamed)])?;
                        false
                    }
                    _ => true,
                },
                _ => false,
            };
            if unregistered {
                self.blobs.remove(&object.key)?;
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn backlog_bytes(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    pub fn add_backlog(&self, bytes: u64) {
        self.backlog.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Re-reads the backlog from SQL (the decoder lowers it by processing bundles).
    pub fn refresh_backlog(&self) -> Result<u64> {
        let bytes: i64 = self.db.lock().query_row(
            "SELECT COALESCE(SUM(size), 0) FROM bundles WHERE state = ?1",
            [BundleState::Spooled],
            |r| r.get(0),
        )?;
        self.backlog.store(bytes as u64, Ordering::Relaxed);
        Ok(bytes as u64)
    }

    /// Free bytes on the spool's file system for an unprivileged writer; `None` on object
    /// storage.
    pub fn available_disk_bytes(&self) -> Result<Option<u64>> {
        Ok(self.blobs.available_bytes()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn every_bundle_state_is_one_the_schema_accepts_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(tmp.path());
        let conn = db.lock();
        conn.execute(
            "INSERT INTO stations (id, name, cert_sha256, enrolled_at_ms) VALUES (1, 's', 'f', 0)",
            [],
        )
        .unwrap();
        for (i, state) in BundleState::ALL.into_iter().enumerate() {
            conn.execute(
                "INSERT INTO bundles (bundle_id, station_id, sequence, size, sha256, received_at_ms, state)
                 VALUES (?1, 1, ?2, 1, 'x', 0, ?3)",
                crate::params![format!("b{i}"), i as i64, state],
            )
            .unwrap();
            let back: BundleState = conn
                .query_row(
                    "SELECT state FROM bundles WHERE bundle_id = ?1",
                    [format!("b{i}")],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(back, state);
        }
        let unknown = conn.execute(
            "INSERT INTO bundles (bundle_id, station_id, sequence, size, sha256, received_at_ms, state)
             VALUES ('bx', 1, 99, 1, 'x', 0, 'lost')",
            [],
        );
        assert!(
            unknown.is_err(),
            "the schema refuses a state outside the set"
        );
    }

    fn local_spool(tmp: &std::path::Path, db: Db) -> (Spool, std::path::PathBuf) {
        let spool_dir = tmp.join("spool");
        fs::create_dir(&spool_dir).unwrap();
        let blobs = Blobs::Local(crate::base::blobs::LocalBlobs::new(tmp));
        (Spool::new(blobs, db), spool_dir)
    }

    #[test]
    fn a_batch_is_written_together_and_unregistered_files_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(tmp.path());
        db.lock()
            .execute(
                "INSERT INTO stations (id, name, cert_sha256, enrolled_at_ms) VALUES (1, 's', 'f', 0)",
                [],
            )
            .unwrap();
        let (spool, spool_dir) = local_spool(tmp.path(), db.clone());
        let (kept, orphan) = (BundleId([1; 16]), BundleId([2; 16]));
        // Spooled objects are named by id and digest; these rows' digest is "x".
        let path_of = |id: &BundleId| tmp.path().join(Key::spooled(id, "x").as_str());
        let paths = [path_of(&kept), path_of(&orphan)];
        let placed = spool
            .blobs()
            .place_all(&[
                (Key::spooled(&kept, "x"), b"abc"),
                (Key::spooled(&orphan, "x"), b"defg"),
            ])
            .unwrap();
        assert_eq!(placed, [blobs::Placed::New, blobs::Placed::New]);
        assert_eq!(fs::read(&paths[0]).unwrap(), b"abc");
        assert_eq!(fs::read(&paths[1]).unwrap(), b"defg");
        assert_eq!(spool.known(&kept, "x").unwrap(), Known::New);
        // Only `kept` got its row (the crash came before the other's); a temporary file lies about.
        db.lock()
            .execute(
                "INSERT INTO bundles (bundle_id, station_id, sequence, size, sha256, received_at_ms, state)
                 VALUES (?1, 1, 1, 3, 'x', 0, 'spooled')",
                [kept.to_hex()],
            )
            .unwrap();
        fs::write(spool_dir.join("leftover.tmp"), b"t").unwrap();
        // The loser of a race for `kept`'s id (other content, no row of its own) goes too.
        let loser = tmp.path().join(Key::spooled(&kept, "y").as_str());
        fs::write(&loser, b"other").unwrap();
        // A file named before keys carried the digest, with its row: renamed, not removed.
        let legacy = BundleId([4; 16]);
        db.lock()
            .execute(
                "INSERT INTO bundles (bundle_id, station_id, sequence, size, sha256, received_at_ms, state)
                 VALUES (?1, 1, 4, 3, 'x', 0, 'spooled')",
                [legacy.to_hex()],
            )
            .unwrap();
        let legacy_path = tmp.path().join(Key::legacy_spooled(&legacy).as_str());
        fs::write(&legacy_path, b"old").unwrap();
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for p in [
            &paths[0],
            &paths[1],
            &spool_dir.join("leftover.tmp"),
            &loser,
            &legacy_path,
        ] {
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(an_hour_ago)
                .unwrap();
        }
        // A file written just now without its row yet: another process sharing the spool may be
        // about to register it. It stays.
        let young = BundleId([3; 16]);
        fs::write(path_of(&young), b"hij").unwrap();
        assert_eq!(spool.sweep_unregistered().unwrap(), 3);
        let mut left: Vec<_> = fs::read_dir(&spool_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        left.sort();
        let mut want = vec![paths[0].clone(), path_of(&young), path_of(&legacy)];
        want.sort();
        assert_eq!(left, want);
        assert_eq!(fs::read(path_of(&legacy)).unwrap(), b"old");
        assert_eq!(spool.known(&kept, "x").unwrap(), Known::Same);
        assert!(spool.available_disk_bytes().unwrap().unwrap() > 0);
    }

    /// A segment stays while a bundle in it waits to be decoded, and goes once none does: at
    /// once when the decoder releases it, or at the next sweep after a crash (before its rows
    /// were committed, or before the decoder deleted it). A young segment without rows stays
    /// (its writer may be about to commit them) unless its writer was a process here that died.
    #[test]
    fn segments_stay_while_a_bundle_waits_in_them_and_go_after() {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(tmp.path());
        db.lock()
            .execute(
                "INSERT INTO stations (id, name, cert_sha256, enrolled_at_ms) VALUES (1, 's', 'f', 0)",
                [],
            )
            .unwrap();
        let (spool, _) = local_spool(tmp.path(), db.clone());
        let local = spool.blobs().local().unwrap().clone();
        let row = |id: u8, segment: &Key, offset: u64, size: u64, state: BundleState| {
            let sha = format!("sha{id}");
            insert_row(
                &db.lock(),
                &Spooled {
                    bundle_id: BundleId([id; 16]),
                    station_id: 1,
                    sequence: id.into(),
                    size,
                    sha256: &sha,
                    received_at_ms: 0,
                    segment: Some((segment, offset)),
                },
            )
            .unwrap();
            db.lock()
                .execute(
                    "UPDATE bundles SET state = ?2 WHERE bundle_id = ?1",
                    crate::params![BundleId([id; 16]).to_hex(), state],
                )
                .unwrap();
        };
        // Two bundles waiting in one segment; a segment whose rows never came (a crash); one whose
        // only bundle was decoded before the decoder could delete it; a young one without rows.
        let (waiting, crashed, decoded, young) = (
            Key::new_segment(),
            Key::new_segment(),
            Key::new_segment(),
            Key::new_segment(),
        );
        local
            .write_segment(&waiting, &[b"first", b"second!"])
            .unwrap();
        row(1, &waiting, 0, 5, BundleState::Spooled);
        row(2, &waiting, 5, 7, BundleState::Spooled);
        local.write_segment(&crashed, &[b"lost"]).unwrap();
        local.write_segment(&decoded, &[b"done"]).unwrap();
        row(3, &decoded, 0, 4, BundleState::Processed);
        local.write_segment(&young, &[b"new"]).unwrap();
        // A young segment of a process on this machine that was killed: its rows never come.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let me = crate::base::process::name();
        let host = me.rsplitn(3, ':').nth(2).unwrap();
        let orphan = Key::segment(&format!(
            "{}{host}:{dead_pid}:0badc0de.3.seg",
            blobs::SEGMENTS
        ))
        .unwrap();
        assert_eq!(
            orphan.segment_writer(),
            Some(format!("{host}:{dead_pid}:0badc0de").as_str())
        );
        local.write_segment(&orphan, &[b"half"]).unwrap();
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for key in [&waiting, &crashed, &decoded] {
            fs::File::options()
                .write(true)
                .open(local.path(key))
                .unwrap()
                .set_modified(an_hour_ago)
                .unwrap();
        }
        assert_eq!(spool.sweep_unregistered().unwrap(), 3);
        let mut left: Vec<Key> = spool
            .blobs()
            .list(blobs::SEGMENTS)
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        left.sort();
        let mut want = vec![waiting.clone(), young.clone()];
        want.sort();
        assert_eq!(left, want);
        // Each bundle reads back from its range.
        for (id, bytes) in [(1u8, &b"first"[..]), (2, &b"second!"[..])] {
            let at = spool.location(&BundleId([id; 16])).unwrap().unwrap();
            assert_eq!(at.segment(), Some(&waiting));
            assert_eq!(at.read(spool.blobs()).unwrap().as_deref(), Some(bytes));
        }
        // Decoded one by one: the segment goes with its last waiting bundle.
        let set = |id: u8, state: BundleState| {
            db.lock()
                .execute(
                    "UPDATE bundles SET state = ?2 WHERE bundle_id = ?1",
                    crate::params![BundleId([id; 16]).to_hex(), state],
                )
                .unwrap();
        };
        set(1, BundleState::Processed);
        let release =
            || release_segments(spool.blobs(), &db.lock(), std::slice::from_ref(&waiting)).unwrap();
        assert_eq!(release(), 0);
        assert!(spool.blobs().exists(&waiting).unwrap());
        set(2, BundleState::Quarantined);
        assert_eq!(release(), 1);
        assert!(!spool.blobs().exists(&waiting).unwrap());
    }

    /// A temporary file of a process on this machine that was killed mid-write goes at the next
    /// start, however young; one of a live process, or of a process on another machine sharing
    /// the spool, stays until it is old.
    #[test]
    fn a_dead_writers_temporary_file_is_swept_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(tmp.path());
        let (spool, spool_dir) = local_spool(tmp.path(), db);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let me = crate::base::process::name();
        let host = me.rsplitn(3, ':').nth(2).unwrap();
        let dead = format!(".{host}:{dead_pid}:0badc0de.7.part");
        let live = format!(".{me}.8.part");
        let elsewhere = format!(".other-host.example:{dead_pid}:0badc0de.9.part");
        for name in [&dead, &live, &elsewhere] {
            fs::write(spool_dir.join(name), b"half").unwrap();
        }
        assert_eq!(crate::base::fsio::temp_owner(&live), Some(me));
        assert_eq!(spool.sweep_unregistered().unwrap(), 1);
        let mut left: Vec<String> = fs::read_dir(&spool_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![live, elsewhere];
        want.sort();
        assert_eq!(left, want);
    }
}
