//! Erasing one person's rows from the raw datasets, for the retention policy
//! (`crate::lifecycle::retention`).
//!
//! A file that holds the person's rows is rewritten without them, never edited in place: the new
//! file is written durably under a new name, one transaction swaps it into the catalog and retires
//! the old one, and the old one is deleted as soon as no reader holds the datasets (this waits for
//! readers that listed it before the swap, milliseconds). A crash before the swap leaves an
//! uncatalogued file that the next compaction removes and the old file still in force; a crash
//! after it leaves a retired file, deleted by the next compaction or erasure. Run it where
//! compaction runs, under the decode lock.

use super::*;

/// What erasing a person's rows did (or, for a dry run, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErasedRows {
    pub rows: usize,
    /// Catalogued files that held the person's rows (relative paths).
    pub files: Vec<String>,
    /// The files that replaced them (files left with no rows are not replaced).
    pub replacements: Vec<String>,
    /// Bundles whose rows were removed.
    pub bundles: BTreeSet<String>,
}

/// Every catalogued raw file, with its kind.
fn catalogued(db: &Db) -> Result<Vec<(String, String, String)>> {
    let conn = db.lock();
    let mut stmt = conn.prepare("SELECT path, signal, day FROM dataset_files ORDER BY path")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Which of a file's rows stay: those not of `pid`, and those of `pid` in a `held` bundle.
fn keep_mask(
    batch: &RecordBatch,
    pid: &str,
    held: &BTreeSet<String>,
) -> arrow::array::BooleanArray {
    let pids = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("stored schema: pid is a string");
    let bundles = batch
        .column(batch.num_columns() - 1)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("stored schema: bundle_id is a string");
    (0..batch.num_rows())
        .map(|i| Some(pids.value(i) != pid || held.contains(bundles.value(i))))
        .collect()
}

/// Whether any row of the file is `pid`'s, reading only the `pid` column.
fn holds_pid(path: &Path, pid: &str) -> Result<bool> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?;
    let mask = parquet::arrow::ProjectionMask::leaves(builder.parquet_schema(), [0]);
    for batch in builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()?
    {
        let batch = batch?;
        let pids = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("stored schema: pid is a string");
        if pids.iter().any(|p| p == Some(pid)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes every row of operational pseudonym `pid` from the raw datasets, except rows of bundles
/// in `held` (evidence of an alert under a legal hold). With `dry_run` only counts.
pub fn erase_pid(
    dir: &DataDir,
    db: &Db,
    pid: &str,
    held: &BTreeSet<String>,
    now_ms: i64,
    dry_run: bool,
) -> Result<ErasedRows> {
    let mut out = ErasedRows::default();
    for (rel, signal_name, day) in catalogued(db)? {
        let abs = dir.root().join(&rel);
        if !holds_pid(&abs, pid)? {
            continue;
        }
        let Some(signal) = Signal::ALL.into_iter().find(|s| s.name() == signal_name) else {
            continue;
        };
        let batches = read_parquet(&abs)?;
        let all = arrow::compute::concat_batches(&stored_schema(signal), &batches)?;
        let mask = keep_mask(&all, pid, held);
        let kept = filter_record_batch(&all, &mask)?;
        let removed = all.num_rows() - kept.num_rows();
        if removed == 0 {
            continue;
        }
        let bundle_column = all
            .column(all.num_columns() - 1)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("stored schema");
        let mut remaining = BTreeSet::new();
        for i in 0..all.num_rows() {
            if mask.value(i) {
                remaining.insert(bundle_column.value(i).to_string());
            } else {
                out.bundles.insert(bundle_column.value(i).to_string());
            }
        }
        out.rows += removed;
        out.files.push(rel.clone());
        if dry_run {
            continue;
        }
        let replacement = if kept.num_rows() == 0 {
            None
        } else {
            let remaining: Vec<&String> = remaining.iter().collect();
            let path =
                day_path(signal, &day).join(format!("compacted-{}.parquet", digest_of(&remaining)));
            let sorted = sort_by_pid_ts(&kept)?;
            let bytes = write_parquet(&dir.root().join(&path), &sorted, RowOrder::ByPerson)?;
            Some(WrittenFile {
                path: path.to_string_lossy().into_owned(),
                signal,
                day: day.clone(),
                rows: sorted.num_rows(),
                bytes,
                bundles: remaining.iter().map(|b| b.to_string()).collect(),
            })
        };
        let mut conn = db.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM dataset_files WHERE path = ?1", [&rel])?;
        if let Some(file) = &replacement {
            catalog_insert(&tx, file, "compacted", now_ms)?;
            out.replacements.push(file.path.clone());
        }
        tx.execute(
            "INSERT OR REPLACE INTO dataset_retired (path, retired_at_ms) VALUES (?1, ?2)",
            rusqlite::params![rel, now_ms],
        )?;
        tx.commit()?;
    }
    if !dry_run {
        delete_retired_now(dir, db)?;
    }
    Ok(out)
}

/// Deletes every retired file, waiting (up to a minute) for readers that hold the datasets to
/// finish: a reader holds them for one scan. Erased rows must be gone from the disk when erasure
/// reports them gone; a file still held after that is deleted by the next compaction. Returns how
/// many retired files are left.
pub fn delete_retired_now(dir: &DataDir, db: &Db) -> Result<usize> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        super::compact::delete_retired(dir, db)?;
        let left: i64 = db
            .lock()
            .query_row("SELECT count(*) FROM dataset_retired", [], |r| r.get(0))?;
        if left == 0 || std::time::Instant::now() > deadline {
            return Ok(left as usize);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
