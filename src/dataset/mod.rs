//! Pseudonymised Parquet datasets.
//!
//! Raw signals live at `datasets/raw/<signal>/<YYYY-MM-DD>/`: first one file per decode batch
//! (`batch-<digest>.parquet`, or `<bundle id>.parquet` for a batch of one), later merged by
//! [`compact`] into one `compacted-<digest>.parquet` per signal and day. Every digest is taken over
//! the bundle ids the file holds, so processing or compacting again rewrites the same files
//! instead of adding copies. Each row
//! carries `pid` (the operational pseudonym), its validation `quality` bits ([`crate::decode::validate`])
//! and `bundle_id` (chain of custody); never a name, serial or station.
//!
//! The catalog (`dataset_files` in SQL) is the list of files that make up a dataset. Readers take
//! their file list from it, never from a directory listing, and it changes in the same transaction
//! as the bundle state, so a crash between writing a file and cataloguing it leaves an orphan that
//! the next [`compact`] removes, never a row counted twice.

mod write;
use write::{day_name, day_path, digest_of, sort_by_pid_ts};
pub use write::{
    encode_parquet, stored_rows, write_parquet, write_parquet_batches, write_parquet_stream,
    write_rows, RowOrder, WrittenFile,
};

mod compact;
pub use compact::{compact, CompactionPolicy, CompactionReport};

mod erase;
pub use erase::{delete_retired_now, erase_pid, ErasedRows};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt16Array,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use nachtwacht_wire::{BundleId, Signal};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::base::db::OptionalExtension;

use crate::base::datadir::DataDir;
use crate::base::db::Db;
use crate::base::fsio::{sync_dir, write_durably};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] crate::base::fsio::Error),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error("day {0} (days since 1970) has no calendar date")]
    DayOutOfRange(i64),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

use crate::base::time::DAY_MS;

/// The stored schema of a signal, as readers see it: `pid`, the wire columns, `quality`,
/// `bundle_id`.
pub fn stored_schema(signal: Signal) -> Arc<Schema> {
    schema_with_strings(signal, DataType::Utf8)
}

/// The same columns as the decoder builds them in memory: `pid` and `bundle_id` are constant for
/// a bundle's rows, so they are dictionaries of one value (a 4-byte key per row) rather than a
/// copy of the string per row. Parquet stores them as dictionary-encoded strings either way, and
/// files are written without the Arrow schema hint, so readers get plain strings.
fn write_schema(signal: Signal) -> Arc<Schema> {
    schema_with_strings(
        signal,
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
    )
}

fn schema_with_strings(signal: Signal, strings: DataType) -> Arc<Schema> {
    let wire = signal.schema();
    let mut fields = vec![Arc::new(Field::new("pid", strings.clone(), false))];
    fields.extend(wire.fields().iter().cloned());
    fields.push(Arc::new(Field::new("quality", DataType::UInt16, false)));
    fields.push(Arc::new(Field::new("bundle_id", strings, false)));
    Arc::new(Schema::new(fields))
}

/// Records a written file in the catalog. Call inside the transaction that marks its bundle
/// processed. Rewriting the same path replaces its row.
pub fn catalog_insert(
    tx: &crate::base::db::Connection,
    file: &WrittenFile,
    kind: &str,
    now_ms: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO dataset_files (path, signal, day, rows, bytes, kind, bundles, written_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (path) DO UPDATE SET signal = excluded.signal, day = excluded.day,
             rows = excluded.rows, bytes = excluded.bytes, kind = excluded.kind,
             bundles = excluded.bundles, written_at_ms = excluded.written_at_ms",
        crate::params![
            file.path,
            file.signal.name(),
            file.day,
            file.rows as i64,
            file.bytes as i64,
            kind,
            file.bundles.join(","),
            now_ms
        ],
    )?;
    Ok(())
}

/// Every catalogued Parquet file of a signal (absolute paths, in path order): what a reader scans.
pub fn list_signal_files(dir: &DataDir, db: &Db, signal: Signal) -> Result<Vec<PathBuf>> {
    let conn = db.lock();
    let mut stmt =
        conn.prepare("SELECT path FROM dataset_files WHERE signal = ?1 ORDER BY path")?;
    let paths = stmt
        .query_map([signal.name()], |r| r.get::<_, String>(0))?
        .map(|p| p.map(|p| dir.root().join(p)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(paths)
}

/// The catalogued files of a signal for UTC days `from..to` (`YYYY-MM-DD`, `to` exclusive), in
/// path order: what an evaluation of those days scans.
pub fn list_signal_files_between(
    dir: &DataDir,
    db: &Db,
    signal: Signal,
    from: &str,
    to: &str,
) -> Result<Vec<PathBuf>> {
    let conn = db.lock();
    let mut stmt = conn.prepare(
        "SELECT path FROM dataset_files WHERE signal = ?1 AND day >= ?2 AND day < ?3 ORDER BY path",
    )?;
    let paths = stmt
        .query_map(crate::params![signal.name(), from, to], |r| {
            r.get::<_, String>(0)
        })?
        .map(|p| p.map(|p| dir.root().join(p)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(paths)
}

/// Scans catalogued files of one signal as the pipelines and the evidence views read them: each
/// (pseudonym, timestamp) once. A reading that reached the dataset twice (re-sealed under another
/// bundle id, or an overlapping read-out) is stored twice, but counted once: the first in path
/// order is kept. `None` when there are no files.
pub fn scan_readings(
    files: &[PathBuf],
) -> polars::prelude::PolarsResult<Option<polars::prelude::LazyFrame>> {
    use polars::prelude::*;
    if files.is_empty() {
        return Ok(None);
    }
    let paths = pl_paths(files);
    // Sorted by (pid, ts), a repeated reading is the row after its twin. The pipelines sort by
    // (pid, ts) themselves, so this sort is the one they would do anyway (polars then knows the
    // order), and dropping a row equal to its predecessor keeps the first in path order.
    let repeated = col("pid")
        .eq(col("pid").shift(lit(1)))
        .and(col("ts").eq(col("ts").shift(lit(1))))
        .fill_null(lit(false));
    Ok(Some(
        LazyFrame::scan_parquet_files(paths.into(), ScanArgsParquet::default())?
            .sort(
                ["pid", "ts"],
                SortMultipleOptions::default().with_maintain_order(true),
            )
            .filter(repeated.not()),
    ))
}

/// One person's readings (operational pseudonym `pid`) with `from_ms <= ts <= to_ms` from catalogued
/// files of one signal, `ts` as milliseconds, each timestamp once (the first in path order, as
/// [`scan_readings`] keeps it), sorted by time. The person and time filter comes first, so files
/// sorted by person skip other persons' row groups unread. `None` when there are no files.
pub fn scan_person(
    files: &[PathBuf],
    pid: &str,
    from_ms: i64,
    to_ms: i64,
) -> polars::prelude::PolarsResult<Option<polars::prelude::LazyFrame>> {
    use polars::prelude::*;
    if files.is_empty() {
        return Ok(None);
    }
    let paths = pl_paths(files);
    let ts = col("ts").cast(DataType::Int64);
    Ok(Some(
        LazyFrame::scan_parquet_files(paths.into(), ScanArgsParquet::default())?
            .filter(
                col("pid")
                    .eq(lit(pid.to_string()))
                    .and(ts.clone().gt_eq(lit(from_ms)))
                    .and(ts.clone().lt_eq(lit(to_ms))),
            )
            .with_column(ts.alias("ts"))
            .unique_stable(Some(cols(["ts"])), UniqueKeepStrategy::First)
            .sort(
                ["ts"],
                SortMultipleOptions::default().with_maintain_order(true),
            ),
    ))
}

/// Files as polars scans take them.
fn pl_paths(files: &[PathBuf]) -> Vec<polars::prelude::PlPath> {
    files
        .iter()
        .map(|p| polars::prelude::PlPath::new(&p.to_string_lossy()))
        .collect()
}

/// Every Parquet file under a signal's directory on disk, relative to the data directory.
fn files_on_disk(dir: &DataDir, signal: Signal) -> Result<Vec<PathBuf>> {
    let root = dir.raw_signal(signal.name());
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| Error::Io { path: p, source }
    };
    for day in std::fs::read_dir(&root).map_err(io(&root))? {
        let day = day.map_err(io(&root))?.path();
        if !day.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&day).map_err(io(&day))? {
            let f = f.map_err(io(&day))?.path();
            if f.extension().is_some_and(|e| e == "parquet") {
                let rel = f.strip_prefix(dir.root()).unwrap_or(&f).to_path_buf();
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A shared hold on the raw datasets: while any exists (in this process or another on this
/// machine), files that compaction retired stay on disk. Take it before listing the catalog and
/// keep it until the files are read (for a lazy scan: until it is collected).
pub struct ReadGuard {
    _file: std::fs::File,
}

/// `flock` on the dataset readers' lock file, created when missing.
fn lock_file(dir: &DataDir, operation: libc::c_int) -> Result<Option<std::fs::File>> {
    let path = dir.dataset_readers_lock();
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    crate::base::datadir::lock_file(&path, operation).map_err(io)
}

impl ReadGuard {
    /// Blocks only while retired files are being deleted (milliseconds).
    pub fn acquire(dir: &DataDir) -> Result<Self> {
        let file = lock_file(dir, libc::LOCK_SH)?.expect("a blocking flock either locks or fails");
        Ok(Self { _file: file })
    }
}

/// The batches of a Parquet file, read one at a time.
pub fn read_parquet_batches(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(65_536)
        .build()?;
    Ok(reader.map(|b| b.map_err(Error::from)))
}

/// Reads a whole Parquet file.
pub fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>> {
    read_parquet_batches(path)?.collect()
}

/// Makes sure a directory's new entries are durable.
pub fn sync(path: &Path) -> Result<()> {
    Ok(sync_dir(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;

    const MIDNIGHT: i64 = 1_700_092_800_000; // 2023-11-16 00:00 UTC

    fn hr(ts: Vec<i64>) -> (RecordBatch, UInt16Array) {
        let n = ts.len();
        let batch = RecordBatch::try_new(
            Signal::Hr.schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
                Arc::new(Float64Array::from(vec![60.0; n])),
            ],
        )
        .unwrap();
        (batch, UInt16Array::from(vec![0; n]))
    }

    /// One bundle's HR rows, written as the decoder writes a batch of one.
    fn write_signal(
        dir: &DataDir,
        signal: Signal,
        id: &BundleId,
        pid: &str,
        batch: &RecordBatch,
        q: &UInt16Array,
    ) -> Result<Vec<WrittenFile>> {
        let rows = stored_rows(signal, id, pid, batch, q)?;
        write_rows(dir, signal, &[(*id, rows)])
    }

    #[test]
    fn a_batch_of_bundles_is_one_file_per_day_named_after_its_bundles() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let db = crate::base::db::testing::open(tmp.path());
        let parts: Vec<(BundleId, RecordBatch)> = (0..3u8)
            .map(|i| {
                let (batch, q) = hr((0..5).map(|k| MIDNIGHT + i as i64 * 10_000 + k).collect());
                let id = BundleId([i; 16]);
                (
                    id,
                    stored_rows(Signal::Hr, &id, "p1-a", &batch, &q).unwrap(),
                )
            })
            .collect();
        let first = write_rows(&dir, Signal::Hr, &parts).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].rows, 15);
        assert_eq!(first[0].bundles.len(), 3);
        assert!(first[0].path.contains("/batch-"), "{}", first[0].path);
        // Same bundles, in another order: the same file, rewritten.
        let mut reversed = parts.clone();
        reversed.reverse();
        assert_eq!(write_rows(&dir, Signal::Hr, &reversed).unwrap(), first);
        assert_eq!(files_on_disk(&dir, Signal::Hr).unwrap().len(), 1);
        // A crash before cataloguing, then a pass with one more bundle: the uncatalogued batch
        // file is an orphan and goes; the catalogued one stays.
        let (batch, q) = hr(vec![MIDNIGHT + 99_000]);
        let id = BundleId([7; 16]);
        let mut more = parts.clone();
        more.push((
            id,
            stored_rows(Signal::Hr, &id, "p1-a", &batch, &q).unwrap(),
        ));
        for f in write_rows(&dir, Signal::Hr, &more).unwrap() {
            catalog_insert(&db.lock(), &f, "bundle", 0).unwrap();
        }
        let policy = CompactionPolicy { min_files: 99 };
        let report = compact(&dir, &db, policy, MIDNIGHT).unwrap();
        assert_eq!(report.orphans_removed, 1);
        let files = list_signal_files(&dir, &db, Signal::Hr).unwrap();
        assert_eq!(files.len(), 1);
        let rows: usize = read_parquet(&files[0])
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 16);
    }

    #[test]
    fn stored_encodings_read_back_unchanged() {
        let (batch, q) = hr(vec![MIDNIGHT, MIDNIGHT + 250, MIDNIGHT + 500]);
        let rows = stored_rows(Signal::Hr, &BundleId([1; 16]), "p1-a", &batch, &q).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hr.parquet");
        write_parquet(&path, &rows, RowOrder::Arrival).unwrap();
        let back = read_parquet(&path).unwrap();
        assert_eq!(
            back[0].schema(),
            stored_schema(Signal::Hr),
            "plain strings, UTC times"
        );
        let expected: Vec<ArrayRef> = rows
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &c.data_type().clone()).unwrap())
            .zip(stored_schema(Signal::Hr).fields())
            .map(|(c, f)| arrow::compute::cast(&c, f.data_type()).unwrap())
            .collect();
        assert_eq!(back[0].columns(), expected.as_slice());
    }

    #[test]
    fn a_bundle_spanning_midnight_lands_in_two_day_files_and_rewrites_idempotently() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let (batch, q) = hr(vec![MIDNIGHT - 1_000, MIDNIGHT, MIDNIGHT + 1_000]);
        let id = BundleId([9; 16]);
        let first = write_signal(&dir, Signal::Hr, &id, "p1-x", &batch, &q).unwrap();
        let again = write_signal(&dir, Signal::Hr, &id, "p1-x", &batch, &q).unwrap();
        assert_eq!(first, again);
        assert_eq!(first.iter().map(|f| f.rows).sum::<usize>(), 3);
        let files = files_on_disk(&dir, Signal::Hr).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[0].to_string_lossy().contains("2023-11-15"));
        assert!(files[1].to_string_lossy().contains("2023-11-16"));
    }

    #[test]
    fn compaction_merges_a_day_keeps_every_row_once_and_removes_orphans() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let db = crate::base::db::testing::open(tmp.path());
        for (i, pid) in ["p1-b", "p1-a", "p1-b"].iter().enumerate() {
            let id = BundleId([i as u8; 16]);
            let (batch, q) = hr((0..10)
                .map(|k| MIDNIGHT + i as i64 * 60_000 + k * 1000)
                .collect());
            for f in write_signal(&dir, Signal::Hr, &id, pid, &batch, &q).unwrap() {
                catalog_insert(&db.lock(), &f, "bundle", 0).unwrap();
            }
        }
        // A crash left a file that was never catalogued.
        let (batch, q) = hr(vec![MIDNIGHT + 5]);
        write_signal(&dir, Signal::Hr, &BundleId([0xee; 16]), "p1-z", &batch, &q).unwrap();

        let later = MIDNIGHT + 3 * DAY_MS;
        let report = compact(&dir, &db, CompactionPolicy::default(), later).unwrap();
        assert_eq!(report.merged, 3);
        assert_eq!(report.written, 1);
        assert_eq!(report.orphans_removed, 1);
        let files = list_signal_files(&dir, &db, Signal::Hr).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files_on_disk(&dir, Signal::Hr).unwrap().len(), 1);
        let batches = read_parquet(&files[0]).unwrap();
        let all = arrow::compute::concat_batches(&stored_schema(Signal::Hr), &batches).unwrap();
        assert_eq!(all.num_rows(), 30);
        let pids = all
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(pids.value(0), "p1-a", "sorted by pid");

        // Running again changes nothing.
        let again = compact(&dir, &db, CompactionPolicy::default(), later).unwrap();
        assert_eq!(again, CompactionReport::default());
        assert_eq!(list_signal_files(&dir, &db, Signal::Hr).unwrap(), files);
    }

    /// A reader that listed the catalog before compaction merged the day can still read every
    /// file it listed; the merged files go once no reader holds the datasets. Before the fix a
    /// pipeline run failed on a file compaction had just deleted.
    #[test]
    fn a_reader_keeps_the_files_it_listed_while_compaction_merges_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let db = crate::base::db::testing::open(tmp.path());
        for i in 0..3u8 {
            let (batch, q) = hr((0..10).map(|k| MIDNIGHT + i as i64 * 60_000 + k).collect());
            for f in write_signal(&dir, Signal::Hr, &BundleId([i; 16]), "p1-a", &batch, &q).unwrap()
            {
                catalog_insert(&db.lock(), &f, "bundle", 0).unwrap();
            }
        }
        let later = MIDNIGHT + 3 * DAY_MS;
        let reader = ReadGuard::acquire(&dir).unwrap();
        let listed = list_signal_files(&dir, &db, Signal::Hr).unwrap();
        assert_eq!(listed.len(), 3);
        // Compaction runs (in the decode worker) while the reader is between listing and reading.
        let report = std::thread::scope(|s| {
            s.spawn(|| compact(&dir, &db, CompactionPolicy::default(), later).unwrap())
                .join()
                .unwrap()
        });
        assert_eq!((report.merged, report.retired_deleted), (3, 0));
        assert_eq!(list_signal_files(&dir, &db, Signal::Hr).unwrap().len(), 1);
        let rows: usize = listed
            .iter()
            .flat_map(|f| read_parquet(f).unwrap())
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 30, "every listed file is still readable");
        drop(reader);
        let report = compact(&dir, &db, CompactionPolicy::default(), later).unwrap();
        assert_eq!(report.retired_deleted, 3);
        assert_eq!(files_on_disk(&dir, Signal::Hr).unwrap().len(), 1);
    }

    #[test]
    fn todays_files_wait_for_the_policy() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let db = crate::base::db::testing::open(tmp.path());
        for i in 0..3u8 {
            let (batch, q) = hr(vec![MIDNIGHT + i as i64 * 1000]);
            for f in write_signal(&dir, Signal::Hr, &BundleId([i; 16]), "p", &batch, &q).unwrap() {
                catalog_insert(&db.lock(), &f, "bundle", 0).unwrap();
            }
        }
        let policy = CompactionPolicy { min_files: 4 };
        assert_eq!(
            compact(&dir, &db, policy, MIDNIGHT + 10_000)
                .unwrap()
                .written,
            0
        );
        let policy = CompactionPolicy { min_files: 3 };
        assert_eq!(
            compact(&dir, &db, policy, MIDNIGHT + 10_000)
                .unwrap()
                .written,
            1
        );
    }
}
