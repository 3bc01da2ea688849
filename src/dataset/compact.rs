//! Compaction: the batch files of a signal and day merged into one file, retired files deleted once
//! no reader holds them, and the catalog reconciled with the disk after a crash.

use super::*;

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
/// ([`ReadGuard`]; on object storage at once, see [`Readers`]). A crash before the swap leaves an orphan compacted file, removed by the next
/// run; a crash after it leaves retired files, deleted by the next run.
pub fn compact(
    dir: &DataDir,
    blobs: &Blobs,
    db: &Db,
    policy: CompactionPolicy,
    now_ms: i64,
) -> Result<CompactionReport> {
    let mut report = CompactionReport::default();
    let today = day_name(now_ms.div_euclid(DAY_MS))?;
    // Files retired by an earlier pass whose readers have gone.
    report.retired_deleted += delete_retired(dir, blobs, db)?;
    for signal in Signal::ALL {
        reconcile(blobs, db, signal, now_ms, &mut report)?;
        let days: Vec<(String, i64)> = {
            let conn = db.lock();
            let mut stmt = conn.prepare(
                "SELECT day, count(*) FROM dataset_files WHERE signal = ?1 GROUP BY day HAVING count(*) > 1",
            )?;

            stmt.query_map([signal.name()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?
        };
        for (day, files) in days {
            if files as usize >= policy.min_files || day < today {
                compact_day(blobs, db, signal, &day, now_ms, &mut report)?;
            }
        }
    }
    report.retired_deleted += delete_retired(dir, blobs, db)?;
    Ok(report)
}

/// Deletes the files compaction retired, if no reader holds the datasets now; otherwise leaves
/// them for a later pass. Returns how many were deleted. On object storage they go at once:
/// readers there work on fetched copies, and one whose fetch finds a file gone lists again.
pub(super) fn delete_retired(dir: &DataDir, blobs: &Blobs, db: &Db) -> Result<usize> {
    let retired: Vec<String> = {
        let conn = db.lock();
        let mut stmt = conn.prepare("SELECT path FROM dataset_retired ORDER BY path")?;

        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?
    };
    if retired.is_empty() {
        return Ok(0);
    }
    let _exclusive = match blobs.local_root() {
        Some(_) => match lock_file(dir, libc::LOCK_EX | libc::LOCK_NB)? {
            Some(lock) => Some(lock),
            None => {
                tracing::debug!(
                    files = retired.len(),
                    "readers active: retired dataset files kept for now"
                );
                return Ok(0);
            }
        },
        None => None,
    };
    for rel in &retired {
        // The local store syncs each file's folder as it removes it.
        match crate::base::blobs::Key::dataset(rel) {
            Some(key) => blobs.remove(&key)?,
            None => tracing::warn!(path = rel, "retired entry is not a dataset file; dropped"),
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
    blobs: &Blobs,
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

        stmt.query_map([signal.name(), day], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut bundles: Vec<&str> = inputs
        .iter()
        .flat_map(|(_, b)| b.split(',').filter(|b| !b.is_empty()))
        .collect();
    bundles.sort_unstable();
    bundles.dedup();
    let mut batches = Vec::with_capacity(inputs.len());
    for (path, _) in &inputs {
        for batch in Object::open(blobs, path)?.batches()? {
            batches.push(batch?);
        }
    }
    let merged = arrow::compute::concat_batches(&stored_schema(signal), &batches)?;
    let sorted = sort_by_pid_ts(&merged)?;

    let path = day_path(signal, day).join(format!("compacted-{}.parquet", digest_of(&bundles)));
    let rel = path.to_string_lossy().into_owned();
    let bytes = put_object(
        blobs,
        &rel,
        &encode_parquet(
            &sorted.schema(),
            std::slice::from_ref(&sorted),
            RowOrder::ByPerson,
        )?,
    )?;
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
                    "INSERT INTO dataset_retired (path, retired_at_ms) VALUES (?1, ?2)
                     ON CONFLICT (path) DO UPDATE SET retired_at_ms = excluded.retired_at_ms",
                    crate::params![old, now_ms],
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
    blobs: &Blobs,
    db: &Db,
    signal: Signal,
    now_ms: i64,
    report: &mut CompactionReport,
) -> Result<()> {
    for (rel_s, size) in stored_files(blobs, signal)? {
        let rel = Path::new(&rel_s);
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
                    "SELECT 1 FROM bundles WHERE bundle_id = ?1 AND state = ?2",
                    crate::params![stem, crate::spool::BundleState::Processed],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            (known, processed)
        };
        if known {
            continue;
        }
        // Only a file no catalogued file duplicates: a bundle whose own file was written by a
        // pass killed before its commit, then decoded again in a batch, is in that batch's file.
        let adopt = processed && {
            let stem = rel
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let conn = db.lock();
            conn.query_row(
                "SELECT 1 FROM dataset_files WHERE signal = ?1
                   AND (',' || bundles || ',') LIKE ?2",
                crate::params![signal.name(), format!("%,{stem},%")],
                |_| Ok(()),
            )
            .optional()?
            .is_none()
        };
        if adopt {
            let mut rows = 0;
            for batch in Object::open(blobs, &rel_s)?.batches()? {
                rows += batch?.num_rows();
            }
            let bytes = size as usize;
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
                path: rel_s.clone(),
                signal,
                day,
                rows,
                bytes,
                bundles: vec![stem],
            };
            catalog_insert(&db.lock(), &file, "bundle", now_ms)?;
            report.adopted += 1;
        } else {
            if let Some(key) = crate::base::blobs::Key::dataset(&rel_s) {
                blobs.remove(&key)?;
            }
            report.orphans_removed += 1;
        }
    }
    Ok(())
}
