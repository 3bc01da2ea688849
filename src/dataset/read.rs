//! Reading the datasets: one catalog listing's files, as local paths that polars and the Parquet
//! reader open.
//!
//! On the local store the paths are the files themselves, held against deletion by a shared lock
//! ([`ReadGuard`]) for as long as the [`Readers`] lives. On object storage the objects are fetched
//! into a scratch folder of this reader's (`datasets/.reads/<process>.<random>/`), deleted when the
//! [`Readers`] is dropped (or, after a crash, by the next reader on this machine). Objects are
//! fetched whole and in parallel rather than scanned by polars through its own cloud reader:
//! `bench decode --s3` measures both, and fetching was the faster (docs/benchmarks.md). It also
//! keeps the snapshot simple across nodes: compaction and erasure on another node delete what
//! they retire at once, and a fetch that finds an object gone lists the catalog again.

use super::*;
use crate::base::blobs::{Blobs, Key};

/// Fetches of one listing tried before a reader gives up (each retry follows a compaction or
/// erasure that retired a listed file meanwhile).
const LISTING_ATTEMPTS: usize = 5;

/// Objects fetched per round: bounds the memory a fetch holds at once.
const FETCH_ROUND: usize = 64;

/// A reader's hold on the datasets. Take it before listing and keep it until what was listed is
/// read (for a lazy scan: until it is collected).
pub struct Readers {
    blobs: Blobs,
    db: Db,
    _guard: Option<ReadGuard>,
    scratch: Option<tempfile::TempDir>,
}

impl Readers {
    pub fn open(dir: &DataDir, blobs: &Blobs, db: &Db) -> Result<Self> {
        let (guard, scratch) = match blobs.local_root() {
            Some(_) => (Some(ReadGuard::acquire(dir)?), None),
            None => (None, Some(scratch_dir(dir)?)),
        };
        Ok(Self {
            blobs: blobs.clone(),
            db: db.clone(),
            _guard: guard,
            scratch,
        })
    }

    /// [`Readers::open`] on a context's data directory, store and database.
    pub fn of(ctx: &crate::base::context::Context) -> Result<Self> {
        Self::open(&ctx.dir, &ctx.blobs, &ctx.db)
    }

    /// Every catalogued Parquet file of a signal, in path order: what a reader scans.
    pub fn signal_files(&self, signal: Signal) -> Result<Vec<PathBuf>> {
        self.files(|db| {
            let conn = db.lock();
            let mut stmt =
                conn.prepare("SELECT path FROM dataset_files WHERE signal = ?1 ORDER BY path")?;
            let paths = stmt
                .query_map([signal.name()], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(paths)
        })
    }

    /// The catalogued files of a signal for UTC days `from..to` (`YYYY-MM-DD`, `to` exclusive),
    /// in path order: what an evaluation of those days scans.
    pub fn signal_files_between(
        &self,
        signal: Signal,
        from: &str,
        to: &str,
    ) -> Result<Vec<PathBuf>> {
        self.files(|db| {
            let conn = db.lock();
            let mut stmt = conn.prepare(
                "SELECT path FROM dataset_files WHERE signal = ?1 AND day >= ?2 AND day < ?3 ORDER BY path",
            )?;
            let paths = stmt
                .query_map(crate::params![signal.name(), from, to], |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(paths)
        })
    }

    /// A research table ([`crate::base::blobs::RESEARCH_DAILY`] or
    /// [`crate::base::blobs::RESEARCH_ALERT_COUNTS`]); `None` before the first evaluation wrote it.
    pub fn research_table(&self, key: &str) -> Result<Option<PathBuf>> {
        let key = Key::dataset(key).ok_or_else(|| Error::NotADataset(key.to_string()))?;
        match (&self.scratch, self.blobs.local_root()) {
            (_, Some(root)) => Ok(Some(root.join(key.as_str())).filter(|p| p.exists())),
            (Some(scratch), None) => {
                let Some(bytes) = self.blobs.get(&key)? else {
                    return Ok(None);
                };
                Ok(Some(write_scratch(scratch.path(), &key, &bytes)?))
            }
            (None, None) => unreachable!("a reader of object storage has a scratch folder"),
        }
    }

    /// The files one listing names, as local paths (see the module's comment).
    pub(super) fn files(
        &self,
        listing: impl Fn(&Db) -> Result<Vec<String>>,
    ) -> Result<Vec<PathBuf>> {
        let Some(scratch) = &self.scratch else {
            let root = self.blobs.local_root().expect("a local store has a root");
            return Ok(listing(&self.db)?.iter().map(|p| root.join(p)).collect());
        };
        'listing: for _ in 0..LISTING_ATTEMPTS {
            let listed = listing(&self.db)?;
            let keys = listed
                .iter()
                .map(|p| Key::dataset(p).ok_or_else(|| Error::NotADataset(p.clone())))
                .collect::<Result<Vec<_>>>()?;
            let mut paths = Vec::with_capacity(keys.len());
            for round in keys.chunks(FETCH_ROUND) {
                for (key, bytes) in round.iter().zip(self.blobs.get_all(round)?) {
                    let Some(bytes) = bytes else {
                        tracing::debug!(%key, "listed dataset file retired meanwhile; listing again");
                        continue 'listing;
                    };
                    paths.push(write_scratch(scratch.path(), key, &bytes)?);
                }
            }
            return Ok(paths);
        }
        Err(Error::Unsettled(LISTING_ATTEMPTS))
    }
}

/// Where fetched copies go. Scratch folders of processes on this machine that are gone (killed
/// mid-read) are deleted first: a copy must not outlive its read, since erasure only reaches the
/// store.
fn scratch_dir(dir: &DataDir) -> Result<tempfile::TempDir> {
    let parent = dir.dataset_reads();
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| Error::Io { path: p, source }
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    for entry in std::fs::read_dir(&parent).map_err(io(&parent))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name.rsplit_once('.').map(|(owner, _)| owner);
        if owner.is_some_and(crate::base::process::died_here) {
            std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{}.", crate::base::process::name()))
        .tempdir_in(&parent)
        .map_err(io(&parent))
}

/// A fetched object's copy under the scratch folder, at its key's path (so path order is kept).
fn write_scratch(scratch: &Path, key: &Key, bytes: &[u8]) -> Result<PathBuf> {
    let path = scratch.join(key.as_str());
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| Error::Io { path: p, source }
    };
    let parent = path.parent().expect("a key names a file in a folder");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    std::fs::write(&path, bytes).map_err(io(&path))?;
    Ok(path)
}

/// A stored object opened for the Parquet reader: a file of the local store, or an object's
/// bytes fetched from object storage.
pub(crate) enum Object {
    File(std::fs::File),
    Bytes(bytes::Bytes),
}

impl Object {
    /// The object at catalog path `rel`.
    pub(crate) fn open(blobs: &Blobs, rel: &str) -> Result<Self> {
        let key = Key::dataset(rel).ok_or_else(|| Error::NotADataset(rel.to_string()))?;
        if let Some(root) = blobs.local_root() {
            let path = root.join(key.as_str());
            return std::fs::File::open(&path)
                .map(Self::File)
                .map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                });
        }
        match blobs.get(&key)? {
            Some(bytes) => Ok(Self::Bytes(bytes.into())),
            None => Err(Error::Io {
                path: key.to_string(),
                source: std::io::ErrorKind::NotFound.into(),
            }),
        }
    }

    /// Its record batches, read one at a time.
    pub(crate) fn batches(self) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(self)?
            .with_batch_size(65_536)
            .build()?;
        Ok(reader.map(|b| b.map_err(Error::from)))
    }
}

impl parquet::file::reader::Length for Object {
    fn len(&self) -> u64 {
        match self {
            Self::File(f) => f.len(),
            Self::Bytes(b) => b.len() as u64,
        }
    }
}

impl parquet::file::reader::ChunkReader for Object {
    type T = Box<dyn std::io::Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(match self {
            Self::File(f) => Box::new(f.get_read(start)?),
            Self::Bytes(b) => Box::new(b.get_read(start)?),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        match self {
            Self::File(f) => f.get_bytes(start, length),
            Self::Bytes(b) => b.get_bytes(start, length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader killed mid-read leaves its fetched copies; the next reader on the machine
    /// deletes them (they may hold rows erased since), and leaves a live process's alone.
    #[test]
    fn copies_of_a_reader_that_died_go_with_the_next_reader() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let host = crate::base::process::name()
            .rsplitn(3, ':')
            .nth(2)
            .unwrap()
            .to_string();
        // No process has this pid (above the kernel's pid_max default).
        let dead = dir
            .dataset_reads()
            .join(format!("{host}:4194304:0badc0de.x1y2z3"));
        let alive = dir
            .dataset_reads()
            .join(format!("{}.a1b2c3", crate::base::process::name()));
        for d in [&dead, &alive] {
            std::fs::create_dir_all(d.join("datasets/raw/hr")).unwrap();
            std::fs::write(d.join("datasets/raw/hr/x.parquet"), b"rows").unwrap();
        }
        let scratch = scratch_dir(&dir).unwrap();
        assert!(!dead.exists(), "a dead reader's copies are deleted");
        assert!(alive.exists(), "a live reader's copies are kept");
        let path = scratch.path().to_path_buf();
        drop(scratch);
        assert!(!path.exists(), "a reader's own copies go when it ends");
    }
}
