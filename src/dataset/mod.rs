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
use write::{day_name, day_path, digest_of, put_object, sort_by_pid_ts};
pub use write::{
    encode_parquet, stored_rows, write_parquet, write_parquet_batches, write_parquet_stream,
    write_rows, RowOrder, WrittenFile,
};

mod compact;
pub use compact::{compact, CompactionPolicy, CompactionReport};

mod erase;
pub use erase::{delete_retired_now, erase_pid, ErasedRows};

mod read;
pub(crate) use read::Object;
pub use read::Readers;

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

use crate::base::blobs::Blobs;
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
    #[error(transparent)]
    Storage(#[from] crate::base::blobs::Error),
    #[error("{0} is not a dataset file's name")]
    NotADataset(String),
    #[error("the dataset catalog changed under {0} fetches in a row; try again")]
    Unsettled(usize),
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

/// Scans catalogued files of one signal as the pipelines and the evidence views read them: each
/// (pseudonym, timestamp) once. A reading that reached the dataset twice (re-sealed under another
/// bundle id, or an overlapping read-out) is stored twice, but counted once: the first in path
/// order is kept. `None` when there are no files.
pub fn scan_readings(
    files: &[PathBuf],
) -> polars::prelude::PolarsResult<Option<polars::prelude::LazyFrame>> {
    if files.is_empty() {
        return Ok(None);
    }
    scan_readings_at(pl_paths(files), Default::default()).map(Some)
}

/// [`scan_readings`] over locations polars opens itself: local paths, or object URLs with
/// `args.cloud_options` (what `bench decode --s3` measures against fetching the objects).
pub fn scan_readings_at(
    paths: Vec<polars::prelude::PlPath>,
    args: polars::prelude::ScanArgsParquet,
) -> polars::prelude::PolarsResult<polars::prelude::LazyFrame> {
    use polars::prelude::*;
    // Sorted by (pid, ts), a repeated reading is the row after its twin. The pipelines sort by
    // (pid, ts) themselves, so this sort is the one they would do anyway (polars then knows the
    // order), and dropping a row equal to its predecessor keeps the first in path order.
    let repeated = col("pid")
        .eq(col("pid").shift(lit(1)))
        .and(col("ts").eq(col("ts").shift(lit(1))))
        .fill_null(lit(false));
    Ok(LazyFrame::scan_parquet_files(paths.into(), args)?
        .sort(
            ["pid", "ts"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .filter(repeated.not()))
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

/// Every Parquet object stored under a signal's folder (catalogued or not), as catalog paths,
/// sorted. Temporary files of the local store (named with a leading dot) are not among them.
fn stored_files(blobs: &Blobs, signal: Signal) -> Result<Vec<(String, u64)>> {
    let prefix = format!("{}{}/", crate::base::blobs::RAW_DATASETS, signal.name());
    let mut out: Vec<(String, u64)> = blobs
        .list(&prefix)?
        .into_iter()
        .filter(|o| o.key.as_str().ends_with(".parquet") && !o.key.file_name().starts_with('.'))
        .map(|o| (o.key.as_str().to_string(), o.size))
        .collect();
    out.sort();
    Ok(out)
}

/// A shared hold on the raw datasets of the local store: while any exists (in this process or
/// another on this machine), files that compaction retired stay on disk. Take it before listing the catalog and
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

    /// The catalog's paths, in order.
    fn catalog(db: &Db) -> Vec<String> {
        let conn = db.lock();
        let mut stmt = conn
            .prepare("SELECT path FROM dataset_files ORDER BY path")
            .unwrap();
        let mut paths = Vec::new();
        for path in stmt.query_map([], |r| r.get(0)).unwrap() {
            paths.push(path.unwrap());
        }
        paths
    }

    /// Every catalogued HR file's batches, read as readers read them.
    fn read_all(dir: &DataDir, blobs: &Blobs, db: &Db) -> Vec<RecordBatch> {
        let readers = Readers::open(dir, blobs, db).unwrap();
        let files = readers.signal_files(Signal::Hr).unwrap();
        files
            .iter()
            .flat_map(|f| read_parquet(f).unwrap())
            .collect()
    }

    /// A store with three bundles of one person's HR rows, each in its own catalogued file.
    fn three_catalogued_bundles() -> (tempfile::TempDir, DataDir, Blobs, Db) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let blobs = crate::base::blobs::testing::open(tmp.path());
        let db = crate::base::db::testing::open(tmp.path());
        for i in 0..3u8 {
            let (batch, q) = hr((0..10).map(|k| MIDNIGHT + i as i64 * 60_000 + k).collect());
            for f in
                write_signal(&blobs, Signal::Hr, &BundleId([i; 16]), "p1-a", &batch, &q).unwrap()
            {
                catalog_insert(&db.lock(), &f, "bundle", 0).unwrap();
            }
        }
        (tmp, dir, blobs, db)
    }

    /// One bundle's HR rows, written as the decoder writes a batch of one.
    fn write_signal(
        blobs: &Blobs,
        signal: Signal,
        id: &BundleId,
        pid: &str,
        batch: &RecordBatch,
        q: &UInt16Array,
    ) -> Result<Vec<WrittenFile>> {
        let rows = stored_rows(signal, id, pid, batch, q)?;
        write_rows(blobs, signal, &[(*id, rows)])
    }

    #[test]
    fn a_batch_of_bundles_is_one_file_per_day_named_after_its_bundles() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let blobs = crate::base::blobs::testing::open(tmp.path());
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
        let first = write_rows(&blobs, Signal::Hr, &parts).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].rows, 15);
        assert_eq!(first[0].bundles.len(), 3);
        assert!(first[0].path.contains("/batch-"), "{}", first[0].path);
        // Same bundles, in another order: the same file, rewritten.
        let mut reversed = parts.clone();
        reversed.reverse();
        assert_eq!(write_rows(&blobs, Signal::Hr, &reversed).unwrap(), first);
        assert_eq!(stored_files(&blobs, Signal::Hr).unwrap().len(), 1);
        // A crash before cataloguing, then a pass with one more bundle: the uncatalogued batch
        // file is an orphan and goes; the catalogued one stays.
        let (batch, q) = hr(vec![MIDNIGHT + 99_000]);
        let id = BundleId([7; 16]);
        let mut more = parts.clone();
        more.push((
            id,
            stored_rows(Signal::Hr, &id, "p1-a", &batch, &q).unwrap(),
        ));
        for f in write_rows(&blobs, Signal::Hr, &more).unwrap() {
            catalog_insert(&db.lock(), &f, "bundle", 0).unwrap();
        }
        let policy = CompactionPolicy { min_files: 99 };
        let report = compact(&dir, &blobs, &db, policy, MIDNIGHT).unwrap();
        assert_eq!(report.orphans_removed, 1);
        assert_eq!(catalog(&db).len(), 1);
        let rows: usize = read_all(&dir, &blobs, &db)
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
        let blobs = crate::base::blobs::testing::open(tmp.path());
        let (batch, q) = hr(vec![MIDNIGHT - 1_000, MIDNIGHT, MIDNIGHT + 1_000]);
        let id = BundleId([9; 16]);
        let first = write_signal(&blobs, Signal::Hr, &id, "p1-x", &batch, &q).unwrap();
        let again = write_signal(&blobs, Signal::Hr, &id, "p1-x", &batch, &q).unwrap();
        assert_eq!(first, again);
        assert_eq!(first.iter().map(|f| f.rows).sum::<usize>(), 3);
        let files = stored_files(&blobs, Signal::Hr).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[0].0.contains("2023-11-15"));
        assert!(files[1].0.contains("2023-11-16"));
    }

    #[test]
    fn compaction_merges_a_day_keeps_every_row_once_and_removes_orphans() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let blobs = crate::base::blobs::testing::open(tmp.path());
        let db = crate::base::db::testing::open(tmp.path());
        for (i, pid) in ["p1-b", "p1-a", "p1-b"].iter().enumerate() {
            let id = BundleId([i as u8; 16]);
            let (batch, q) = hr((0..10)
                .map(|k| MIDNIGHT + i as i64 * 60_000 + k * 1000)
                .collect());
            for f in write_signal(&blobs, Signal::Hr, &id, pid, &batch, &q).unwrap() {
                catalog_insert(&db.lock(), &f, "bundle", 0).unwrap();
            }
        }
        // A crash left a file that was never catalogued.
        let (batch, q) = hr(vec![MIDNIGHT + 5]);
        write_signal(
            &blobs,
            Signal::Hr,
            &BundleId([0xee; 16]),
            "p1-z",
            &batch,
            &q,
        )
        .unwrap();

        let later = MIDNIGHT + 3 * DAY_MS;
        let report = compact(&dir, &blobs, &db, CompactionPolicy::default(), later).unwrap();
        assert_eq!(report.merged, 3);
        assert_eq!(report.written, 1);
        assert_eq!(report.orphans_removed, 1);
        let files = catalog(&db);
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(stored_files(&blobs, Signal::Hr).unwrap().len(), 1);
        let batches = read_all(&dir, &blobs, &db);
        let all = arrow::compute::concat_batches(&stored_schema(Signal::Hr), &batches).unwrap();
        assert_eq!(all.num_rows(), 30);
        let pids = all
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(pids.value(0), "p1-a", "sorted by pid");

        // Running again changes nothing.
        let again = compact(&dir, &blobs, &db, CompactionPolicy::default(), later).unwrap();
        assert_eq!(again, CompactionReport::default());
        assert_eq!(catalog(&db), files);
    }

    /// A reader that listed the catalog before compaction merged the day can still read every
    /// file it listed. On the local store the merged files go once no reader holds the datasets
    /// (before that fix a pipeline run failed on a file compaction had just deleted); on object
    /// storage the reader holds fetched copies and the merged objects go at once.
    #[test]
    fn a_reader_keeps_the_files_it_listed_while_compaction_merges_them() {
        let (_tmp, dir, blobs, db) = three_catalogued_bundles();
        let later = MIDNIGHT + 3 * DAY_MS;
        let reader = Readers::open(&dir, &blobs, &db).unwrap();
        let listed = reader.signal_files(Signal::Hr).unwrap();
        assert_eq!(listed.len(), 3);
        // Compaction runs (in the decode worker) while the reader is between listing and reading.
        let report = std::thread::scope(|s| {
            s.spawn(|| compact(&dir, &blobs, &db, CompactionPolicy::default(), later).unwrap())
                .join()
                .unwrap()
        });
        let local = blobs.local_root().is_some();
        assert_eq!(
            (report.merged, report.retired_deleted),
            (3, if local { 0 } else { 3 })
        );
        assert_eq!(catalog(&db).len(), 1);
        let rows: usize = listed
            .iter()
            .flat_map(|f| read_parquet(f).unwrap())
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 30, "every listed file is still readable");
        drop(reader);
        let report = compact(&dir, &blobs, &db, CompactionPolicy::default(), later).unwrap();
        assert_eq!(report.retired_deleted, if local { 3 } else { 0 });
        assert_eq!(stored_files(&blobs, Signal::Hr).unwrap().len(), 1);
        assert!(
            !dir.dataset_reads().exists()
                || std::fs::read_dir(dir.dataset_reads())
                    .unwrap()
                    .next()
                    .is_none(),
            "a reader's fetched copies leave with it"
        );
    }

    /// A reader on object storage whose listing names a file that compaction retired and deleted
    /// before the fetch lists again, and reads the day once: the compacted file, not a mix.
    #[test]
    fn a_fetch_that_finds_a_listed_file_gone_lists_again() {
        let (_tmp, dir, blobs, db) = three_catalogued_bundles();
        let stale = catalog(&db);
        let later = MIDNIGHT + 3 * DAY_MS;
        let reader = Readers::open(&dir, &blobs, &db).unwrap();
        compact(&dir, &blobs, &db, CompactionPolicy::default(), later).unwrap();
        let listings = std::cell::Cell::new(0);
        let files = reader
            .files(|db| {
                listings.set(listings.get() + 1);
                Ok(if listings.get() == 1 {
                    stale.clone()
                } else {
                    catalog(db)
                })
            })
            .unwrap();
        let rows: usize = files
            .iter()
            .flat_map(|f| read_parquet(f).unwrap())
            .map(|b| b.num_rows())
            .sum();
        if blobs.local_root().is_some() {
            // Locally the reader's lock kept the merged files: the stale listing reads whole.
            assert_eq!((listings.get(), files.len(), rows), (1, 3, 30));
        } else {
            assert_eq!((listings.get(), files.len(), rows), (2, 1, 30));
        }
    }

    /// A decode pass killed after writing a bundle's own file and before its commit; the next
    /// pass decoded the bundle in a batch with another and catalogued that file. The first file
    /// is an orphan. Adopting it (as files from before the catalog are adopted) counted the
    /// bundle's rows twice: tests/crash.rs saw 48 readings too many on PostgreSQL with object
    /// storage.
    #[test]
    fn a_processed_bundles_own_file_is_an_orphan_when_a_batch_file_holds_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let blobs = crate::base::blobs::testing::open(tmp.path());
        let db = crate::base::db::testing::open(tmp.path());
        let (x, y) = (BundleId([1; 16]), BundleId([2; 16]));
        let rows = |id: &BundleId, i: i64| {
            let (batch, q) = hr((0..10).map(|k| MIDNIGHT + i * 60_000 + k).collect());
            stored_rows(Signal::Hr, id, "p1-a", &batch, &q).unwrap()
        };
        // The killed pass: x alone, written, never catalogued.
        write_rows(&blobs, Signal::Hr, &[(x, rows(&x, 0))]).unwrap();
        // The next pass: x and y together, catalogued, x processed.
        for f in write_rows(&blobs, Signal::Hr, &[(x, rows(&x, 0)), (y, rows(&y, 1))]).unwrap() {
            catalog_insert(&db.lock(), &f, "bundle", 0).unwrap();
        }
        {
            let conn = db.lock();
            conn.execute(
                "INSERT INTO stations (id, name, cert_sha256, enrolled_at_ms) VALUES (1, 's', 'c', 0)",
                [],
            )
            .unwrap();
            for (i, id) in [x, y].iter().enumerate() {
                conn.execute(
                    "INSERT INTO bundles (bundle_id, station_id, sequence, size, sha256, received_at_ms, state)
                     VALUES (?1, 1, ?2, 1, 'd', 0, 'processed')",
                    crate::params![id.to_hex(), i as i64],
                )
                .unwrap();
            }
        }
        let report = compact(
            &dir,
            &blobs,
            &db,
            CompactionPolicy { min_files: 99 },
            MIDNIGHT,
        )
        .unwrap();
        assert_eq!((report.adopted, report.orphans_removed), (0, 1));
        let rows: usize = read_all(&dir, &blobs, &db)
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 20, "each bundle's rows once");
        assert_eq!(stored_files(&blobs, Signal::Hr).unwrap().len(), 1);
    }

    #[test]
    fn todays_files_wait_for_the_policy() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let blobs = crate::base::blobs::testing::open(tmp.path());
        let db = crate::base::db::testing::open(tmp.path());
        for i in 0..3u8 {
            let (batch, q) = hr(vec![MIDNIGHT + i as i64 * 1000]);
            for f in write_signal(&blobs, Signal::Hr, &BundleId([i; 16]), "p", &batch, &q).unwrap()
            {
                catalog_insert(&db.lock(), &f, "bundle", 0).unwrap();
            }
        }
        let policy = CompactionPolicy { min_files: 4 };
        assert_eq!(
            compact(&dir, &blobs, &db, policy, MIDNIGHT + 10_000)
                .unwrap()
                .written,
            0
        );
        let policy = CompactionPolicy { min_files: 3 };
        assert_eq!(
            compact(&dir, &blobs, &db, policy, MIDNIGHT + 10_000)
                .unwrap()
                .written,
            1
        );
    }
}
