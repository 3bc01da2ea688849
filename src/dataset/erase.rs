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

/// A catalogued raw file.
struct Catalogued {
    path: String,
    signal: String,
    day: String,
    kind: String,
    /// The bundles whose rows it holds (the catalog's list).
    bundles: Vec<String>,
}

fn catalogued(db: &Db) -> Result<Vec<Catalogued>> {
    let conn = db.lock();
    let mut stmt =
        conn.prepare("SELECT path, signal, day, kind, bundles FROM dataset_files ORDER BY path")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Catalogued {
                path: r.get(0)?,
                signal: r.get(1)?,
                day: r.get(2)?,
                kind: r.get(3)?,
                bundles: r
                    .get::<_, String>(4)?
                    .split(',')
                    .filter(|b| !b.is_empty())
                    .map(String::from)
                    .collect(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn strings(batch: &RecordBatch, column: usize) -> &StringArray {
    batch
        .column(column)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("stored schema: pid and bundle_id are strings")
}

/// Whether any row of the file is `pid`'s. Row groups whose `pid` statistics (written for files
/// sorted by person) exclude it are skipped unread; of the others only the `pid` column is read.
fn holds_pid(object: Object, pid: &str) -> Result<bool> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(object)?;
    let candidates: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| match rg.column(0).statistics() {
            Some(stats) => match (stats.min_bytes_opt(), stats.max_bytes_opt()) {
                (Some(min), Some(max)) => min <= pid.as_bytes() && pid.as_bytes() <= max,
                _ => true,
            },
            None => true,
        })
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return Ok(false);
    }
    let mask = parquet::arrow::ProjectionMask::leaves(builder.parquet_schema(), [0]);
    let reader = builder
        .with_row_groups(candidates)
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()?;
    for batch in reader {
        if strings(&batch?, 0).iter().any(|p| p == Some(pid)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Which rows of a batch stay: those not of `pid`, and those of `pid` in a `held` bundle. The
/// bundles of the rows that go are added to `gone`.
fn keep_mask(
    batch: &RecordBatch,
    pid: &str,
    held: &BTreeSet<String>,
    gone: &mut BTreeSet<String>,
) -> Result<arrow::array::BooleanArray> {
    let theirs = arrow::compute::kernels::cmp::eq(
        batch.column(0),
        &arrow::array::Scalar::new(StringArray::from(vec![pid])),
    )?;
    if theirs.true_count() == 0 {
        return Ok(arrow::compute::not(&theirs)?);
    }
    // Only the person's rows are looked at one by one (a bundle is one person's, so a run of
    // rows shares one bundle id).
    let bundles = strings(batch, batch.num_columns() - 1);
    let mut keep: Vec<bool> = vec![true; batch.num_rows()];
    let mut last: Option<&str> = None;
    for i in (0..batch.num_rows()).filter(|&i| theirs.value(i)) {
        let bundle = bundles.value(i);
        if held.contains(bundle) {
            continue;
        }
        keep[i] = false;
        if last != Some(bundle) {
            gone.insert(bundle.to_string());
            last = Some(bundle);
        }
    }
    Ok(keep.into())
}

/// Removes every row of operational pseudonym `pid` from the raw datasets, except rows of bundles
/// in `held` (evidence of an alert under a legal hold). With `dry_run` only counts. A file is
/// rewritten a batch at a time, so its size is not bounded by memory.
pub fn erase_pid(
    dir: &DataDir,
    blobs: &Blobs,
    db: &Db,
    pid: &str,
    held: &BTreeSet<String>,
    now_ms: i64,
    dry_run: bool,
) -> Result<ErasedRows> {
    let mut out = ErasedRows::default();
    if !dry_run && blobs.local_root().is_some() {
        remove_partial_files(dir)?;
    }
    for Catalogued {
        path: rel,
        signal: signal_name,
        day,
        kind,
        bundles: listed,
    } in catalogued(db)?
    {
        if !holds_pid(Object::open(blobs, &rel)?, pid)? {
            continue;
        }
        let Some(signal) = Signal::ALL.into_iter().find(|s| s.name() == signal_name) else {
            continue;
        };
        let order = if kind == "compacted" {
            RowOrder::ByPerson
        } else {
            RowOrder::Arrival
        };
        // Local store: written under a name no reader or reconciliation looks at, renamed once
        // complete. Object storage: built in memory and PUT whole.
        let partial = dir
            .root()
            .join(day_path(signal, &day))
            .join(format!(".erasing-{}.part", digest_of(&[&rel])));
        let mut writer = if dry_run {
            None
        } else {
            let sink = match blobs.local_root() {
                Some(_) => {
                    Sink::File(std::fs::File::create(&partial).map_err(|source| Error::Io {
                        path: partial.display().to_string(),
                        source,
                    })?)
                }
                None => Sink::Memory(Vec::new()),
            };
            Some(super::write::parquet_writer(
                sink,
                &stored_schema(signal),
                order,
            )?)
        };
        let (mut removed, mut kept_rows) = (0, 0);
        let mut gone = BTreeSet::new();
        for batch in Object::open(blobs, &rel)?.batches()? {
            let batch = batch?;
            let keep = keep_mask(&batch, pid, held, &mut gone)?;
            let kept = filter_record_batch(&batch, &keep)?;
            removed += batch.num_rows() - kept.num_rows();
            kept_rows += kept.num_rows();
            if let Some(w) = writer.as_mut() {
                if kept.num_rows() > 0 {
                    w.write(&kept)?;
                }
            }
        }
        // A bundle is one person's: its rows went whole or stayed whole.
        let remaining: BTreeSet<String> =
            listed.into_iter().filter(|b| !gone.contains(b)).collect();
        out.bundles.extend(gone);
        if removed == 0 {
            if writer.is_some() && blobs.local_root().is_some() {
                crate::base::fsio::remove_if_exists(&partial)?;
            }
            continue;
        }
        out.rows += removed;
        out.files.push(rel.clone());
        let Some(writer) = writer else {
            continue;
        };
        // `into_inner` writes the footer and hands the sink back.
        let sink = writer.into_inner()?;
        let replacement = if kept_rows == 0 {
            if let Sink::File(file) = sink {
                drop(file);
                crate::base::fsio::remove_if_exists(&partial)?;
            }
            None
        } else {
            let remaining: Vec<&String> = remaining.iter().collect();
            let prefix = if kind == "compacted" {
                "compacted"
            } else {
                "batch"
            };
            let path =
                day_path(signal, &day).join(format!("{prefix}-{}.parquet", digest_of(&remaining)));
            let path = path.to_string_lossy().into_owned();
            let bytes = match sink {
                Sink::File(file) => {
                    file.sync_all().map_err(|source| Error::Io {
                        path: partial.display().to_string(),
                        source,
                    })?;
                    let bytes = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
                    crate::base::fsio::move_durably(&partial, &dir.root().join(&path))?;
                    bytes
                }
                Sink::Memory(buf) => put_object(blobs, &path, &buf)?,
            };
            crate::base::failpoint::hit(crate::base::failpoint::Point::ErasureAfterWrite);
            Some(WrittenFile {
                path,
                signal,
                day: day.clone(),
                rows: kept_rows,
                bytes,
                bundles: remaining.iter().map(|b| b.to_string()).collect(),
            })
        };
        {
            // The connection is released before `delete_retired` below takes it again.
            let mut conn = db.lock();
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM dataset_files WHERE path = ?1", [&rel])?;
            if let Some(file) = &replacement {
                catalog_insert(&tx, file, &kind, now_ms)?;
                out.replacements.push(file.path.clone());
            }
            tx.execute(
                "INSERT INTO dataset_retired (path, retired_at_ms) VALUES (?1, ?2)
                     ON CONFLICT (path) DO UPDATE SET retired_at_ms = excluded.retired_at_ms",
                crate::params![rel, now_ms],
            )?;
            tx.commit()?;
        }
        crate::base::failpoint::hit(crate::base::failpoint::Point::ErasureAfterSwap);
        // The old file goes now if no reader holds the datasets, so the disk holds at most one
        // extra copy of a file, not of every file rewritten; held ones wait for the end.
        super::compact::delete_retired(dir, blobs, db)?;
    }
    if !dry_run {
        delete_retired_now(dir, blobs, db)?;
    }
    Ok(out)
}

/// Where an erasure writes a file's replacement.
enum Sink {
    File(std::fs::File),
    Memory(Vec<u8>),
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::File(f) => f.write(buf),
            Self::Memory(v) => v.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::File(f) => f.flush(),
            Self::Memory(_) => Ok(()),
        }
    }
}

/// Removes `.part` files an erasure killed mid-write left behind (no reader ever opens them).
fn remove_partial_files(dir: &DataDir) -> Result<()> {
    for signal in Signal::ALL {
        let root = dir.raw_signal(signal.name());
        let Ok(days) = std::fs::read_dir(&root) else {
            continue;
        };
        for day in days.flatten() {
            let Ok(files) = std::fs::read_dir(day.path()) else {
                continue;
            };
            for f in files.flatten() {
                if f.file_name().to_string_lossy().ends_with(".part") {
                    crate::base::fsio::remove_if_exists(&f.path())?;
                }
            }
        }
    }
    Ok(())
}

/// Deletes every retired file, waiting (up to a minute) for readers that hold the datasets to
/// finish: a reader holds them for one scan. Erased rows must be gone from the disk when erasure
/// reports them gone; a file still held after that is deleted by the next compaction. Returns how
/// many retired files are left.
pub fn delete_retired_now(dir: &DataDir, blobs: &Blobs, db: &Db) -> Result<usize> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        super::compact::delete_retired(dir, blobs, db)?;
        let left: i64 = db
            .lock()
            .query_row("SELECT count(*) FROM dataset_retired", [], |r| r.get(0))?;
        if left == 0 || std::time::Instant::now() > deadline {
            return Ok(left as usize);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;

    const MIDNIGHT: i64 = 1_700_092_800_000;

    /// Two persons' HR rows in one compacted file, three bundles.
    fn dataset() -> (tempfile::TempDir, DataDir, Blobs, Db) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let blobs = crate::base::blobs::testing::open(tmp.path());
        let db = crate::base::db::testing::open(tmp.path());
        let parts: Vec<(BundleId, RecordBatch)> = [("p1-a", 0u8), ("p1-b", 1), ("p1-a", 2)]
            .iter()
            .map(|(pid, i)| {
                let ts: Vec<i64> = (0..10).map(|k| MIDNIGHT + *i as i64 * 60_000 + k).collect();
                let batch = RecordBatch::try_new(
                    Signal::Hr.schema(),
                    vec![
                        Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
                        Arc::new(Float64Array::from(vec![60.0; 10])),
                    ],
                )
                .unwrap();
                let id = BundleId([*i; 16]);
                let q = UInt16Array::from(vec![0; 10]);
                (id, stored_rows(Signal::Hr, &id, pid, &batch, &q).unwrap())
            })
            .collect();
        for f in write_rows(&blobs, Signal::Hr, &parts).unwrap() {
            catalog_insert(&db.lock(), &f, "bundle", 0).unwrap();
        }
        compact(
            &dir,
            &blobs,
            &db,
            CompactionPolicy { min_files: 1 },
            MIDNIGHT,
        )
        .unwrap();
        (tmp, dir, blobs, db)
    }

    fn rows_of(dir: &DataDir, blobs: &Blobs, db: &Db, pid: &str) -> usize {
        let mut n = 0;
        let readers = Readers::open(dir, blobs, db).unwrap();
        for f in readers.signal_files(Signal::Hr).unwrap() {
            for b in read_parquet(&f).unwrap() {
                n += strings(&b, 0).iter().filter(|p| *p == Some(pid)).count();
            }
        }
        n
    }

    #[test]
    fn a_persons_rows_leave_every_file_except_held_bundles_and_a_dry_run_only_counts() {
        let (_tmp, dir, blobs, db) = dataset();
        assert_eq!(
            (
                rows_of(&dir, &blobs, &db, "p1-a"),
                rows_of(&dir, &blobs, &db, "p1-b")
            ),
            (20, 10)
        );
        let dry = erase_pid(&dir, &blobs, &db, "p1-a", &BTreeSet::new(), 1, true).unwrap();
        assert_eq!(dry.rows, 20);
        assert_eq!(
            rows_of(&dir, &blobs, &db, "p1-a"),
            20,
            "a dry run changes nothing"
        );

        let held: BTreeSet<String> = [BundleId([2; 16]).to_hex()].into();
        let erased = erase_pid(&dir, &blobs, &db, "p1-a", &held, 1, false).unwrap();
        assert_eq!(erased.rows, 10);
        assert_eq!(erased.bundles, [BundleId([0; 16]).to_hex()].into());
        assert_eq!(
            (
                rows_of(&dir, &blobs, &db, "p1-a"),
                rows_of(&dir, &blobs, &db, "p1-b")
            ),
            (10, 10)
        );
        let erased = erase_pid(&dir, &blobs, &db, "p1-a", &BTreeSet::new(), 2, false).unwrap();
        assert_eq!(erased.rows, 10);
        assert_eq!(
            (
                rows_of(&dir, &blobs, &db, "p1-a"),
                rows_of(&dir, &blobs, &db, "p1-b")
            ),
            (0, 10)
        );
        // Only the catalogued file is on disk: the old ones went, nothing partial is left.
        let on_disk = stored_files(&blobs, Signal::Hr).unwrap();
        assert_eq!(on_disk.len(), 1, "{on_disk:?}");
        let catalogued: i64 = db
            .lock()
            .query_row("SELECT count(*) FROM dataset_files", [], |r| r.get(0))
            .unwrap();
        assert_eq!(catalogued, 1);
        let bundles: String = db
            .lock()
            .query_row("SELECT bundles FROM dataset_files", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            bundles,
            BundleId([1; 16]).to_hex(),
            "the catalog names what is left"
        );
    }
}
