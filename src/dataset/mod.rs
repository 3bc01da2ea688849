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

use rusqlite::OptionalExtension;

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
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
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

/// One Parquet file written, as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Relative to the data directory.
    pub path: String,
    pub signal: Signal,
    pub day: String,
    pub rows: usize,
    pub bytes: usize,
    /// Hex ids of the bundles whose rows the file holds, sorted.
    pub bundles: Vec<String>,
}

fn day_name(day_index: i64) -> Result<String> {
    day_index
        .checked_mul(DAY_MS)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .ok_or(Error::DayOutOfRange(day_index))
}

/// One bundle's rows of one signal in the stored schema: the wire columns with the person's
/// pseudonym, each row's quality flags and the bundle id added.
pub fn stored_rows(
    signal: Signal,
    bundle_id: &BundleId,
    pid: &str,
    batch: &RecordBatch,
    quality: &UInt16Array,
) -> Result<RecordBatch> {
    // Both constant columns index their one value with the same buffer of zeros.
    let zeros = Int32Array::from(vec![0; batch.num_rows()]);
    let mut columns: Vec<ArrayRef> = vec![repeated(pid, &zeros)];
    columns.extend(batch.columns().iter().cloned());
    columns.push(Arc::new(quality.clone()));
    columns.push(repeated(&bundle_id.to_hex(), &zeros));
    Ok(RecordBatch::try_new(write_schema(signal), columns)?)
}

/// One string repeated for every key in `zeros` (all 0), as a dictionary of one value.
fn repeated(value: &str, zeros: &Int32Array) -> ArrayRef {
    Arc::new(DictionaryArray::<Int32Type>::new(
        zeros.clone(),
        Arc::new(StringArray::from(vec![value])),
    ))
}

/// Writes the stored rows of one or more bundles for one signal: one file per UTC day the rows
/// fall on. A file holding one bundle is named `<bundle id>.parquet`; one holding several is
/// `batch-<digest>.parquet`, the digest taken over the ids of the bundles in it. Writing the same
/// bundles again therefore rewrites the same files. Returns the files written, for the catalog.
///
/// Batching several bundles per file is what keeps the dataset from becoming a flood of tiny files
/// between compactions, and it is most of the decode worker's speed (one footer and one fsync per
/// signal-day and batch rather than per bundle).
pub fn write_rows(
    dir: &DataDir,
    signal: Signal,
    parts: &[(BundleId, RecordBatch)],
) -> Result<Vec<WrittenFile>> {
    // day -> (bundle ids, row batches)
    let mut days: std::collections::BTreeMap<i64, (Vec<String>, Vec<RecordBatch>)> =
        Default::default();
    // In bundle id order, so the same bundles always make the same bytes.
    let mut parts: Vec<&(BundleId, RecordBatch)> = parts.iter().collect();
    parts.sort_by_key(|(id, _)| *id);
    for (bundle_id, rows) in parts {
        for (day, part) in split_by_day(rows)? {
            let entry = days.entry(day).or_default();
            entry.0.push(bundle_id.to_hex());
            entry.1.push(part);
        }
    }
    let schema = write_schema(signal);
    let mut written = Vec::with_capacity(days.len());
    for (day, (mut bundles, batches)) in days {
        bundles.sort_unstable();
        bundles.dedup();
        let name = match bundles.as_slice() {
            [one] => format!("{one}.parquet"),
            many => format!("batch-{}.parquet", digest_of(many)),
        };
        let day = day_name(day)?;
        let path = day_path(signal, &day).join(name);
        let bytes = write_parquet_batches(
            &dir.root().join(&path),
            &schema,
            &batches,
            RowOrder::Arrival,
        )?;
        written.push(WrittenFile {
            path: path.to_string_lossy().into_owned(),
            signal,
            day,
            rows: batches.iter().map(RecordBatch::num_rows).sum(),
            bytes,
            bundles,
        });
    }
    Ok(written)
}

/// A batch's rows by UTC day of their timestamp (`ts`, the second stored column).
fn split_by_day(rows: &RecordBatch) -> Result<Vec<(i64, RecordBatch)>> {
    if rows.num_rows() == 0 {
        return Ok(vec![]);
    }
    let ts = rows
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("stored schema puts ts second");
    let day_of = |t: i64| t.div_euclid(DAY_MS);
    let (lo, hi) = (
        arrow::compute::min(ts).expect("non-empty"),
        arrow::compute::max(ts).expect("non-empty"),
    );
    if day_of(lo) == day_of(hi) {
        // The common case: a bundle of a few minutes within one day.
        return Ok(vec![(day_of(lo), rows.clone())]);
    }
    let days: Vec<i64> = ts.values().iter().map(|t| day_of(*t)).collect();
    let mut distinct = days.clone();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
        .into_iter()
        .map(|day| {
            let mask = arrow::array::BooleanArray::from(
                days.iter().map(|d| *d == day).collect::<Vec<_>>(),
            );
            Ok((day, filter_record_batch(rows, &mask)?))
        })
        .collect()
}

/// A short digest over a sorted list of bundle ids: the name of a file that holds them.
fn digest_of(bundles: &[impl AsRef<str>]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for b in bundles {
        h.update(b.as_ref().as_bytes());
        h.update(b",");
    }
    hex::encode(&h.finalize()[..12])
}

/// `datasets/raw/<signal>/<day>`, relative to the data directory.
fn day_path(signal: Signal, day: &str) -> PathBuf {
    Path::new("datasets/raw").join(signal.name()).join(day)
}

/// How a file's rows are ordered, which decides whether per-person statistics pay for themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// As the bundles arrived (the decode worker's batch files): a batch mixes the people whose
    /// stations uploaded in it, so a min/max of `pid` could skip nothing, and computing it costs
    /// two string comparisons per row. Not computed.
    Arrival,
    /// Sorted by `pid`, `ts` (compacted files): `pid` min/max per row group lets a reader of one
    /// person's rows (the evidence view) skip the rest.
    ByPerson,
}

/// Encodes a batch as zstd Parquet and writes it durably (temp file, fsync, rename), creating the
/// directory if needed. Returns the file's size.
pub fn write_parquet(path: &Path, batch: &RecordBatch, order: RowOrder) -> Result<usize> {
    write_parquet_batches(path, &batch.schema(), std::slice::from_ref(batch), order)
}

/// [`write_parquet`] for several batches of one schema, in order, as one file.
pub fn write_parquet_batches(
    path: &Path,
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
    order: RowOrder,
) -> Result<usize> {
    let buf = encode_parquet(schema, batches, order)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.display().to_string(),
            source,
        })?;
    }
    write_durably(path, &buf)?;
    Ok(buf.len())
}

/// A batch as zstd-compressed Parquet bytes, with encodings chosen per column type: dictionary for
/// the strings and flags (`pid` and `bundle_id` are constant over long runs), delta for timestamps
/// and integers, byte-stream-split for floats. Dictionary-encoding sensor floats, the Parquet
/// default, costs a hash per value and gains nothing: they are nearly all distinct. The
/// dictionary-encoded strings and flags are not zstd-compressed: their pages are runs of one index,
/// a few bytes each, and a compressor set up per page cost more than it saved.
///
/// The Arrow schema is not embedded: the Parquet types alone say what a reader needs (strings,
/// UTC millisecond timestamps, unsigned flags), and an embedded hint would make readers turn the
/// in-memory dictionaries of [`stored_rows`] into categoricals.
pub fn encode_parquet(
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
    order: RowOrder,
) -> Result<Vec<u8>> {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_dictionary_enabled(false)
        // `bundle_id` is found through the catalog (`dataset_files.bundles`), never by scanning
        // statistics, and min/max over a string costs two comparisons per row.
        .set_column_statistics_enabled(
            ColumnPath::from("bundle_id"),
            parquet::file::properties::EnabledStatistics::None,
        );
    if order == RowOrder::Arrival {
        props = props.set_column_statistics_enabled(
            ColumnPath::from("pid"),
            parquet::file::properties::EnabledStatistics::None,
        );
    }
    for field in schema.fields() {
        let column = ColumnPath::from(field.name().as_str());
        props = match field.data_type() {
            DataType::Utf8 | DataType::Dictionary(..) | DataType::UInt16 => props
                .set_column_dictionary_enabled(column.clone(), true)
                .set_column_compression(column, Compression::UNCOMPRESSED),
            DataType::Boolean => props.set_column_dictionary_enabled(column, true),
            DataType::Float32 | DataType::Float64 => {
                props.set_column_encoding(column, Encoding::BYTE_STREAM_SPLIT)
            }
            DataType::Int32 | DataType::Int64 | DataType::Timestamp(..) => {
                props.set_column_encoding(column, Encoding::DELTA_BINARY_PACKED)
            }
            _ => props,
        };
    }
    let mut buf = Vec::new();
    let options = ArrowWriterOptions::new()
        .with_properties(props.build())
        .with_skip_arrow_metadata(true);
    let mut w = ArrowWriter::try_new_with_options(&mut buf, schema.clone(), options)?;
    for batch in batches {
        w.write(batch)?;
    }
    w.close()?;
    Ok(buf)
}

/// Records a written file in the catalog. Call inside the transaction that marks its bundle
/// processed. Rewriting the same path replaces its row.
pub fn catalog_insert(
    tx: &rusqlite::Connection,
    file: &WrittenFile,
    kind: &str,
    now_ms: i64,
) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO dataset_files (path, signal, day, rows, bytes, kind, bundles, written_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        rusqlite::params![
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
        .query_map(rusqlite::params![signal.name(), from, to], |r| {
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
    let paths: Vec<PlPath> = files
        .iter()
        .map(|p| PlPath::new(&p.to_string_lossy()))
        .collect();
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

/// When a signal's day is merged into one file.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    /// Merge a day once it has this many files, even if it is still today.
    pub min_files: usize,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        // An hour of 5-minute bundles.
        Self { min_files: 12 }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    /// Files merged away.
    pub merged: usize,
    /// Compacted files written.
    pub written: usize,
    /// Files found on disk without a catalog entry and deleted (left by a crash).
    pub orphans_removed: usize,
    /// Files found on disk without a catalog entry whose bundle is processed (written before the
    /// catalog existed) and catalogued.
    pub adopted: usize,
    /// Files retired by compaction and deleted once no reader held the datasets.
    pub retired_deleted: usize,
}

/// Brings the files on disk in line with the catalog, then merges each signal's day that has
/// reached the policy (or has more than one file and lies before `today`) into one compacted file,
/// sorted by `pid`, `ts`. Blocking; run it where the decode worker runs, never beside it: it
/// assumes nobody else writes dataset files meanwhile.
///
/// Crash safety: the compacted file is written first, then one transaction swaps the catalog rows
/// and records the merged files as retired; they are deleted when no reader holds the datasets
/// ([`ReadGuard`]). A crash before the swap leaves an orphan compacted file, removed by the next
/// run; a crash after it leaves retired files, deleted by the next run.
pub fn compact(
    dir: &DataDir,
    db: &Db,
    policy: CompactionPolicy,
    now_ms: i64,
) -> Result<CompactionReport> {
    let mut report = CompactionReport::default();
    let today = day_name(now_ms.div_euclid(DAY_MS))?;
    // Files retired by an earlier pass whose readers have gone.
    report.retired_deleted += delete_retired(dir, db)?;
    for signal in Signal::ALL {
        reconcile(dir, db, signal, now_ms, &mut report)?;
        let days: Vec<(String, i64)> = {
            let conn = db.lock();
            let mut stmt = conn.prepare(
                "SELECT day, count(*) FROM dataset_files WHERE signal = ?1 GROUP BY day HAVING count(*) > 1",
            )?;
            let rows = stmt
                .query_map([signal.name()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            rows
        };
        for (day, files) in days {
            if files as usize >= policy.min_files || day < today {
                compact_day(dir, db, signal, &day, now_ms, &mut report)?;
            }
        }
    }
    report.retired_deleted += delete_retired(dir, db)?;
    Ok(report)
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

/// Deletes the files compaction retired, if no reader holds the datasets now; otherwise leaves
/// them for a later pass. Returns how many were deleted.
fn delete_retired(dir: &DataDir, db: &Db) -> Result<usize> {
    let retired: Vec<String> = {
        let conn = db.lock();
        let mut stmt = conn.prepare("SELECT path FROM dataset_retired ORDER BY path")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        rows
    };
    if retired.is_empty() {
        return Ok(0);
    }
    let Some(_exclusive) = lock_file(dir, libc::LOCK_EX | libc::LOCK_NB)? else {
        tracing::debug!(
            files = retired.len(),
            "readers active: retired dataset files kept for now"
        );
        return Ok(0);
    };
    let mut dirs = BTreeSet::new();
    for rel in &retired {
        let abs = dir.root().join(rel);
        remove(&abs)?;
        if let Some(parent) = abs.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    for d in &dirs {
        if d.exists() {
            sync_dir(d)?;
        }
    }
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    for rel in &retired {
        tx.execute("DELETE FROM dataset_retired WHERE path = ?1", [rel])?;
    }
    tx.commit()?;
    Ok(retired.len())
}

fn compact_day(
    dir: &DataDir,
    db: &Db,
    signal: Signal,
    day: &str,
    now_ms: i64,
    report: &mut CompactionReport,
) -> Result<()> {
    let inputs: Vec<(String, String)> = {
        let conn = db.lock();
        let mut stmt = conn.prepare(
            "SELECT path, bundles FROM dataset_files WHERE signal = ?1 AND day = ?2 ORDER BY path",
        )?;
        let rows = stmt
            .query_map([signal.name(), day], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        rows
    };
    let mut bundles: Vec<&str> = inputs
        .iter()
        .flat_map(|(_, b)| b.split(',').filter(|b| !b.is_empty()))
        .collect();
    bundles.sort_unstable();
    bundles.dedup();
    let mut batches = Vec::with_capacity(inputs.len());
    for (path, _) in &inputs {
        batches.extend(read_parquet(&dir.root().join(path))?);
    }
    let merged = arrow::compute::concat_batches(&stored_schema(signal), &batches)?;
    let sorted = sort_by_pid_ts(&merged)?;

    let path = day_path(signal, day).join(format!("compacted-{}.parquet", digest_of(&bundles)));
    let rel = path.to_string_lossy().into_owned();
    let bytes = write_parquet(&dir.root().join(&path), &sorted, RowOrder::ByPerson)?;
    {
        let mut conn = db.lock();
        let tx = conn.transaction()?;
        for (old, _) in &inputs {
            if *old != rel {
                tx.execute("DELETE FROM dataset_files WHERE path = ?1", [old])?;
            }
        }
        let file = WrittenFile {
            path: rel.clone(),
            signal,
            day: day.to_string(),
            rows: sorted.num_rows(),
            bytes,
            bundles: bundles.iter().map(|b| b.to_string()).collect(),
        };
        catalog_insert(&tx, &file, "compacted", now_ms)?;
        // The merged files leave the catalog but not the disk: a reader that listed them before
        // this swap may still open them. They are deleted by `delete_retired` once no reader
        // holds the dataset (see [`ReadGuard`]).
        for (old, _) in &inputs {
            if *old != rel {
                tx.execute(
                    "INSERT OR REPLACE INTO dataset_retired (path, retired_at_ms) VALUES (?1, ?2)",
                    rusqlite::params![old, now_ms],
                )?;
                report.merged += 1;
            }
        }
        tx.commit()?;
    }
    report.written += 1;
    tracing::info!(
        signal = signal.name(),
        day,
        files = inputs.len(),
        rows = sorted.num_rows(),
        "dataset day compacted"
    );
    Ok(())
}

/// Removes files the catalog does not know, or catalogues them when they belong to a processed
/// bundle (data directories from before the catalog).
fn reconcile(
    dir: &DataDir,
    db: &Db,
    signal: Signal,
    now_ms: i64,
    report: &mut CompactionReport,
) -> Result<()> {
    for rel in files_on_disk(dir, signal)? {
        let rel_s = rel.to_string_lossy().into_owned();
        let (known, processed): (bool, bool) = {
            let conn = db.lock();
            // A retired file is known too: a reader may hold it (see `delete_retired`).
            let known = conn
                .query_row(
                    "SELECT 1 FROM dataset_files WHERE path = ?1
                     UNION ALL SELECT 1 FROM dataset_retired WHERE path = ?1",
                    [&rel_s],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            let stem = rel
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let processed = conn
                .query_row(
                    "SELECT 1 FROM bundles WHERE bundle_id = ?1 AND state = 'processed'",
                    [&stem],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            (known, processed)
        };
        if known {
            continue;
        }
        let abs = dir.root().join(&rel);
        let adopt = processed && {
            // Only if no compacted file of that day already holds the bundle.
            let stem = rel
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let day = rel
                .parent()
                .and_then(|d| d.file_name())
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            let conn = db.lock();
            conn.query_row(
                "SELECT 1 FROM dataset_files WHERE signal = ?1 AND day = ?2 AND kind = 'compacted'
                   AND (',' || bundles || ',') LIKE ?3",
                rusqlite::params![signal.name(), day, format!("%,{stem},%")],
                |_| Ok(()),
            )
            .optional()?
            .is_none()
        };
        if adopt {
            let rows: usize = read_parquet(&abs)?.iter().map(RecordBatch::num_rows).sum();
            let bytes = std::fs::metadata(&abs)
                .map(|m| m.len() as usize)
                .unwrap_or(0);
            let day = rel
                .parent()
                .and_then(|d| d.file_name())
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stem = rel
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file = WrittenFile {
                path: rel_s,
                signal,
                day,
                rows,
                bytes,
                bundles: vec![stem],
            };
            catalog_insert(&db.lock(), &file, "bundle", now_ms)?;
            report.adopted += 1;
        } else {
            remove(&abs)?;
            report.orphans_removed += 1;
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Reads a whole Parquet file.
pub fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(65_536)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

fn sort_by_pid_ts(batch: &RecordBatch) -> Result<RecordBatch> {
    use arrow::compute::{lexsort_to_indices, take_record_batch, SortColumn};
    let schema = batch.schema();
    let columns = ["pid", "ts"].map(|name| SortColumn {
        values: batch
            .column(schema.index_of(name).expect("stored schema"))
            .clone(),
        options: None,
    });
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
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
        let db = Db::open(&tmp.path().join("s.sqlite")).unwrap();
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
        let db = Db::open(&tmp.path().join("s.sqlite")).unwrap();
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
        let db = Db::open(&tmp.path().join("s.sqlite")).unwrap();
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
        let db = Db::open(&tmp.path().join("s.sqlite")).unwrap();
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
