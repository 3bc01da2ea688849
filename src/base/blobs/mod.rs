//! Where bundle ciphertexts are kept: the spool (received, waiting to be decoded), the evidence
//! store (decoded, kept for the retention period) and quarantine (set aside with a reason); and
//! the Parquet datasets made from them (see [`crate::dataset`]).
//!
//! One interface, two backends, chosen by `[storage]` in `nachtwacht.toml`:
//! - [`local`] (the default): files under the data directory, with the durability the ingest
//!   was built on: write, fsync, rename or link, fsync the directory.
//! - [`s3`]: an S3-compatible bucket (MinIO, Ceph RGW, Garage, AWS) through the Arrow project's
//!   `object_store` crate, so that several nodes share the ciphertexts without sharing a disk. A
//!   PUT that has completed is durable by the store's own contract.
//!
//! Callers name objects by [`Key`], never by path, so a stage cannot write beside the interface.
//! Every call blocks; the S3 backend runs its requests on a runtime of its own, so it can be called
//! from the group committer's and the decoder's threads as the local one is.

mod local;
mod s3;
pub mod testing;

use std::time::SystemTime;

use nachtwacht_wire::BundleId;

pub use local::LocalBlobs;
pub use s3::S3Blobs;

pub use crate::base::fsio::Placed;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] crate::base::fsio::Error),
    #[error("object storage, {key}: {source}")]
    Object {
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("object storage configuration: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The name of one object, relative to the store's root: `spool/<id>.age`,
/// `evidence/<YYYY-MM-DD received>/<id>.age`, `quarantine/<id>.age` and `quarantine/<id>.reason`.
/// The same names are the files' paths under a local data directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

/// The top-level areas, each a prefix of its keys.
pub const SPOOL: &str = "spool/";
/// Segments: each holds the ciphertexts of one group commit's batch, one after the other (see
/// [`crate::spool::Location`]). Under [`SPOOL`], so what lists the spool sees them.
pub const SEGMENTS: &str = "spool/segments/";
pub const EVIDENCE: &str = "evidence/";
pub const QUARANTINE: &str = "quarantine/";
pub const DATASETS: &str = "datasets/";
/// The raw signal datasets, `datasets/raw/<signal>/<YYYY-MM-DD>/<file>.parquet`.
pub const RAW_DATASETS: &str = "datasets/raw/";
/// Daily indicators under research pseudonyms: the dataset the research path reads.
pub const RESEARCH_DAILY: &str = "datasets/research/daily_indicators.parquet";
/// Alerts per person-day and kind group, research pseudonyms only.
pub const RESEARCH_ALERT_COUNTS: &str = "datasets/research/alert_counts.parquet";

impl Key {
    /// A received ciphertext waiting to be decoded, named by its id and its content's SHA-256
    /// (hex). Two uploads of one id with different content therefore never share a key, so
    /// nodes that store them at once cannot replace each other's object, whether or not the
    /// store makes conditional writes atomic; the row's digest names the one that counts.
    pub fn spooled(id: &BundleId, sha256: &str) -> Self {
        Self(format!("{SPOOL}{id}.{sha256}.age"))
    }

    /// The prefix of every spooled key of `id`, whatever its content.
    pub fn spooled_prefix(id: &BundleId) -> String {
        format!("{SPOOL}{id}.")
    }

    /// Where an installation from before content-named spool keys kept a spooled ciphertext;
    /// [`crate::spool::Spool::sweep_unregistered`] renames such files at start-up.
    pub fn legacy_spooled(id: &BundleId) -> Self {
        Self(format!("{SPOOL}{id}.age"))
    }

    /// A new segment, this process's next: `spool/segments/<process name>.<n>.seg`, so that no
    /// other process sharing the spool ever writes the same name, and a sweep can tell whether
    /// its writer is gone ([`Key::segment_writer`]).
    pub fn new_segment() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(format!(
            "{SEGMENTS}{}.{n}.seg",
            crate::base::process::name()
        ))
    }

    /// A segment's key as a `bundles` row names it; `None` for a name that is not one.
    pub fn segment(name: &str) -> Option<Self> {
        Self::parse(name).filter(|k| k.is_segment())
    }

    pub fn is_segment(&self) -> bool {
        self.0.starts_with(SEGMENTS)
            && self.0.ends_with(".seg")
            && !self.0[SEGMENTS.len()..].contains('/')
    }

    /// The process that wrote a segment (a [`crate::base::process::name`]).
    pub fn segment_writer(&self) -> Option<&str> {
        let stem = self.0.strip_prefix(SEGMENTS)?.strip_suffix(".seg")?;
        Some(stem.rsplit_once('.')?.0)
    }

    /// A decoded bundle's ciphertext, kept as evidence, filed by the day it was received.
    pub fn evidence(id: &BundleId, received_at_ms: i64) -> Self {
        let day = chrono::DateTime::from_timestamp_millis(received_at_ms)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "unknown".into());
        Self(format!("{EVIDENCE}{day}/{id}.age"))
    }

    /// A quarantined ciphertext.
    pub fn quarantined(id: &BundleId) -> Self {
        Self(format!("{QUARANTINE}{id}.age"))
    }

    /// Why a bundle was quarantined, written before its ciphertext is moved there.
    pub fn quarantine_reason(id: &BundleId) -> Self {
        Self(format!("{QUARANTINE}{id}.reason"))
    }

    /// A reason kept after the bundle was sent back to decoding (its `n`th retry).
    pub fn retried_reason(id: &BundleId, n: i64) -> Self {
        Self(format!("{QUARANTINE}{id}.reason.retried-{n}"))
    }

    /// A dataset file (a catalog path such as `datasets/raw/hr/2026-01-05/batch-….parquet`, or
    /// one of the research tables); `None` for a name outside [`DATASETS`] or one that could
    /// escape the root.
    pub fn dataset(path: &str) -> Option<Self> {
        Self::parse(path).filter(|k| k.0.starts_with(DATASETS))
    }

    /// A key read back from a listing; `None` for one that could escape the root.
    pub fn parse(key: &str) -> Option<Self> {
        let safe = !key.is_empty()
            && !key.starts_with('/')
            && key.split('/').all(|part| !part.is_empty() && part != "..");
        safe.then(|| Self(key.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last part of the key (a file name under a local data directory).
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: Key,
    pub size: u64,
    pub modified: SystemTime,
}

/// The store the data directory's configuration names. Cloning shares it.
#[derive(Clone, Debug)]
pub enum Blobs {
    Local(LocalBlobs),
    S3(S3Blobs),
}

impl Blobs {
    /// Opens the store `[storage]` names; a local one is rooted at the data directory.
    pub fn open(
        config: &crate::base::config::StorageConfig,
        dir: &crate::base::datadir::DataDir,
    ) -> Result<Self> {
        use crate::base::config::StorageBackend;
        Ok(match config.backend {
            StorageBackend::Local => Self::Local(LocalBlobs::new(dir.root())),
            StorageBackend::S3 => Self::S3(S3Blobs::open(config, dir.root())?),
        })
    }

    /// Writes objects durably without ever replacing one: an object that is there already is
    /// kept and reported as [`Placed::Same`] (same bytes) or [`Placed::Other`]. Several processes
    /// racing for one key: the first object stays. Results in input order.
    pub fn place_all(&self, items: &[(Key, &[u8])]) -> Result<Vec<Placed>> {
        match self {
            Self::Local(l) => l.place_all(items),
            Self::S3(s) => s.place_all(items),
        }
    }

    /// The local store, where bundles' ciphertexts are written in segments; `None` on object
    /// storage, where each is an object of its own (erasing one person's bundle from a shared
    /// object would mean rewriting it).
    pub fn local(&self) -> Option<&LocalBlobs> {
        match self {
            Self::Local(l) => Some(l),
            Self::S3(_) => None,
        }
    }

    /// `len` bytes of an object from `offset`; `None` when it is not there.
    pub fn read_range(&self, key: &Key, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Local(l) => l.read_range(key, offset, len),
            Self::S3(s) => {
                let Some(bytes) = s.get(key)? else {
                    return Ok(None);
                };
                let range = usize::try_from(offset)
                    .ok()
                    .zip(usize::try_from(len).ok())
                    .and_then(|(o, n)| bytes.get(o..o.checked_add(n)?));
                match range {
                    Some(range) => Ok(Some(range.to_vec())),
                    None => Err(Error::Config(format!(
                        "{key} is shorter than {offset} + {len} bytes"
                    ))),
                }
            }
        }
    }

    /// Writes an object durably, replacing one of the same key.
    pub fn put(&self, key: &Key, bytes: &[u8]) -> Result<()> {
        match self {
            Self::Local(l) => l.put(key, bytes),
            Self::S3(s) => s.put(key, bytes),
        }
    }

    /// An object's bytes; `None` when there is none.
    pub fn get(&self, key: &Key) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Local(l) => l.get(key),
            Self::S3(s) => s.get(key),
        }
    }

    /// Several objects' bytes (in parallel on object storage), in input order; `None` for one
    /// that is not there.
    pub fn get_all(&self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>> {
        match self {
            Self::Local(l) => keys.iter().map(|k| l.get(k)).collect(),
            Self::S3(s) => s.get_all(keys),
        }
    }

    pub fn exists(&self, key: &Key) -> Result<bool> {
        match self {
            Self::Local(l) => l.exists(key),
            Self::S3(s) => s.exists(key),
        }
    }

    /// Deletes an object durably; one that is not there is already deleted.
    pub fn remove(&self, key: &Key) -> Result<()> {
        match self {
            Self::Local(l) => l.remove(key),
            Self::S3(s) => s.remove(key),
        }
    }

    /// Moves objects (`from`, `to`); a move whose source is gone is taken as done. Once this
    /// returns every moved object is durable at its new key. A crash part-way leaves each object
    /// at its old key, its new one, or (object storage: copied, not yet deleted) both, with the
    /// same bytes: readers look at both.
    pub fn move_all(&self, moves: &[(Key, Key)]) -> Result<()> {
        match self {
            Self::Local(l) => l.move_all(moves),
            Self::S3(s) => s.move_all(moves),
        }
    }

    /// Every object whose key starts with `prefix` (one of [`SPOOL`], [`EVIDENCE`],
    /// [`QUARANTINE`], or a longer prefix), in no particular order.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        match self {
            Self::Local(l) => l.list(prefix),
            Self::S3(s) => s.list(prefix),
        }
    }

    /// Free bytes where the objects are written, when the store has a notion of it (a local
    /// file system); `None` for object storage, whose capacity its operators manage.
    pub fn available_bytes(&self) -> Result<Option<u64>> {
        match self {
            Self::Local(l) => l.available_bytes().map(Some),
            Self::S3(_) => Ok(None),
        }
    }

    /// Whether the store takes a durable write now: a probe object written, read back and
    /// deleted (for `nachtwacht check`).
    pub fn probe(&self) -> Result<()> {
        let key = Key(format!(
            "{SPOOL}.probe-{}",
            crate::base::process::name().replace(':', "-")
        ));
        self.put(&key, b"probe")?;
        let back = self.get(&key)?;
        self.remove(&key)?;
        match back.as_deref() {
            Some(b"probe") => Ok(()),
            _ => Err(Error::Config(format!(
                "{key} did not read back what was written"
            ))),
        }
    }

    /// Where the objects are, for messages: a directory, or `s3://bucket/prefix at endpoint`.
    pub fn describe(&self) -> String {
        match self {
            Self::Local(l) => l.root().display().to_string(),
            Self::S3(s) => s.describe(),
        }
    }

    /// The local directory under which the keys are files; `None` on object storage.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        match self {
            Self::Local(l) => Some(l.root()),
            Self::S3(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_data_directory_layout_and_listings_cannot_escape_it() {
        let id = BundleId([0xab; 16]);
        assert_eq!(
            Key::spooled(&id, "5e").as_str(),
            format!("spool/{id}.5e.age")
        );
        assert!(Key::spooled(&id, "5e")
            .as_str()
            .starts_with(&Key::spooled_prefix(&id)));
        assert_eq!(
            Key::evidence(&id, 1_700_000_000_000).as_str(),
            format!("evidence/2023-11-14/{id}.age")
        );
        assert_eq!(Key::quarantined(&id).file_name(), format!("{id}.age"));
        assert_eq!(
            Key::retried_reason(&id, 2).as_str(),
            format!("quarantine/{id}.reason.retried-2")
        );
        assert!(Key::parse("spool/x.age").is_some());
        for bad in ["", "/etc/passwd", "spool/../../x", "spool//x"] {
            assert!(Key::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    /// What the spool, the decoder and retention rely on, on the tests' store (object storage
    /// when `NACHTWACHT_TEST_S3` names one): eight threads race to place one bundle id each with
    /// content of its own (two agree); every content lands under its own key, intact, and none is
    /// replaced by another's bytes. Then moves, listings and removals.
    #[test]
    fn the_store_places_once_under_races_moves_lists_and_removes() {
        use sha2::Digest;
        let tmp = tempfile::tempdir().unwrap();
        let blobs = testing::open(tmp.path());
        let ids: Vec<BundleId> = (0..8u8).map(|i| BundleId([i; 16])).collect();
        let body = |t: u8| vec![if t < 2 { 0 } else { t }; 100];
        let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
        let outcomes: Vec<Vec<Placed>> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8u8)
                .map(|t| {
                    let (blobs, ids) = (&blobs, &ids);
                    s.spawn(move || {
                        let body = body(t);
                        let items: Vec<(Key, &[u8])> = ids
                            .iter()
                            .map(|id| (Key::spooled(id, &sha(&body)), &body[..]))
                            .collect();
                        blobs.place_all(&items).unwrap()
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for (k, id) in ids.iter().enumerate() {
            for (t, o) in outcomes.iter().enumerate() {
                let body = body(t as u8);
                let kept = blobs.get(&Key::spooled(id, &sha(&body))).unwrap();
                assert_eq!(kept.as_ref(), Some(&body), "thread {t}, key {k}");
                assert_ne!(o[k], Placed::Other, "thread {t}, key {k}");
            }
            let prefix = Key::spooled_prefix(id);
            assert_eq!(blobs.list(&prefix).unwrap().len(), 7, "{id}");
        }
        // Placed over a different object of one key: kept, and said.
        let key = Key::legacy_spooled(&ids[0]);
        assert_eq!(
            blobs.place_all(&[(key.clone(), b"a")]).unwrap(),
            [Placed::New]
        );
        assert_eq!(
            blobs.place_all(&[(key.clone(), b"a")]).unwrap(),
            [Placed::Same]
        );
        assert_eq!(
            blobs.place_all(&[(key.clone(), b"b")]).unwrap(),
            [Placed::Other]
        );
        assert_eq!(blobs.get(&key).unwrap(), Some(b"a".to_vec()));
        blobs.remove(&key).unwrap();
        for id in &ids {
            for t in 1..8u8 {
                blobs.remove(&Key::spooled(id, &sha(&body(t)))).unwrap();
            }
            blobs
                .place_all(&[(Key::legacy_spooled(id), &body(1)[..])])
                .unwrap();
        }
        let listed = blobs.list(SPOOL).unwrap();
        assert_eq!(listed.len(), 8, "{listed:?}");
        assert!(listed.iter().all(|o| o.key.as_str().ends_with(".age")));
        assert!(listed.iter().all(|o| o.size == 100));

        let moves: Vec<(Key, Key)> = ids
            .iter()
            .map(|id| (Key::legacy_spooled(id), Key::evidence(id, 0)))
            .chain([(
                Key::legacy_spooled(&BundleId([99; 16])),
                Key::evidence(&BundleId([99; 16]), 0),
            )])
            .collect();
        blobs.move_all(&moves).unwrap();
        assert!(blobs.list(SPOOL).unwrap().is_empty());
        assert_eq!(blobs.list(EVIDENCE).unwrap().len(), 8);
        assert_eq!(blobs.list("evidence/1970-01-01/").unwrap().len(), 8);
        assert!(!blobs
            .exists(&Key::evidence(&BundleId([99; 16]), 0))
            .unwrap());

        blobs.put(&Key::quarantine_reason(&ids[0]), b"why").unwrap();
        blobs
            .put(&Key::quarantine_reason(&ids[0]), b"why, again")
            .unwrap();
        assert_eq!(
            blobs.get(&Key::quarantine_reason(&ids[0])).unwrap(),
            Some(b"why, again".to_vec())
        );
        for id in &ids {
            blobs.remove(&Key::evidence(id, 0)).unwrap();
            blobs.remove(&Key::evidence(id, 0)).unwrap();
        }
        assert!(blobs.list(EVIDENCE).unwrap().is_empty());
        assert_eq!(blobs.get(&Key::legacy_spooled(&ids[0])).unwrap(), None);
        blobs.probe().unwrap();
    }
}
