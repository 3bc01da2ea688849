//! Pseudonymised Parquet datasets.
//!
//! Raw signals live at `datasets/raw/<signal>/<YYYY-MM-DD>/<bundle id>.parquet`: one file per
//! bundle, signal and UTC day. The path is derived from the bundle id, so processing a bundle again
//! rewrites the same files with the same rows instead of adding copies. Each row carries `pid` (the
//! operational pseudonym) and `bundle_id` (chain of custody); never a name, serial or station.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema};
use nachtwacht_wire::{BundleId, Signal};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::datadir::DataDir;
use crate::spool::{sync_dir, write_durably};

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
    Spool(#[from] crate::spool::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

const DAY_MS: i64 = 86_400_000;

/// The stored schema of a signal: `pid`, the wire columns, `bundle_id`.
pub fn stored_schema(signal: Signal) -> Arc<Schema> {
    let wire = signal.schema();
    let mut fields = vec![Arc::new(Field::new("pid", DataType::Utf8, false))];
    fields.extend(wire.fields().iter().cloned());
    fields.push(Arc::new(Field::new("bundle_id", DataType::Utf8, false)));
    Arc::new(Schema::new(fields))
}

fn day_name(day_index: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day_index * DAY_MS)
        .expect("day in range")
        .format("%Y-%m-%d")
        .to_string()
}

/// Writes one signal of one bundle, split by UTC day. Returns the number of rows written.
pub fn write_signal(
    dir: &DataDir,
    signal: Signal,
    bundle_id: &BundleId,
    pid: &str,
    batch: &RecordBatch,
) -> Result<usize> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(0);
    }
    let schema = stored_schema(signal);
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![pid; n]))];
    columns.extend(batch.columns().iter().cloned());
    columns.push(Arc::new(StringArray::from(vec![bundle_id.to_hex(); n])));
    let full = RecordBatch::try_new(schema.clone(), columns)?;

    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("wire schema puts ts first");
    let days: Vec<i64> = ts.values().iter().map(|t| t.div_euclid(DAY_MS)).collect();
    let mut distinct = days.clone();
    distinct.sort_unstable();
    distinct.dedup();
    for day in distinct {
        let mask =
            arrow::array::BooleanArray::from(days.iter().map(|d| *d == day).collect::<Vec<_>>());
        let part = filter_record_batch(&full, &mask)?;
        let day_dir = dir.raw_signal(signal.name()).join(day_name(day));
        std::fs::create_dir_all(&day_dir).map_err(|source| Error::Io {
            path: day_dir.display().to_string(),
            source,
        })?;
        write_parquet(&day_dir.join(format!("{bundle_id}.parquet")), &part)?;
    }
    Ok(n)
}

/// Encodes a batch as zstd Parquet and writes it durably (temp file, fsync, rename).
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
    w.write(batch)?;
    w.close()?;
    write_durably(path, &buf)?;
    Ok(())
}

/// Every Parquet file of a signal, in path order.
pub fn list_signal_files(dir: &DataDir, signal: Signal) -> Result<Vec<PathBuf>> {
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
                out.push(f);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Makes sure a directory's new entries are durable.
pub fn sync(path: &Path) -> Result<()> {
    Ok(sync_dir(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;

    #[test]
    fn a_bundle_spanning_midnight_lands_in_two_day_files_and_rewrites_idempotently() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let midnight = 1_700_092_800_000i64; // 2023-11-16 00:00 UTC
        let ts = vec![midnight - 1_000, midnight, midnight + 1_000];
        let batch = RecordBatch::try_new(
            Signal::Hr.schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
                Arc::new(Float64Array::from(vec![60.0, 61.0, 62.0])),
            ],
        )
        .unwrap();
        let id = BundleId([9; 16]);
        assert_eq!(
            write_signal(&dir, Signal::Hr, &id, "p1-x", &batch).unwrap(),
            3
        );
        assert_eq!(
            write_signal(&dir, Signal::Hr, &id, "p1-x", &batch).unwrap(),
            3
        );
        let files = list_signal_files(&dir, Signal::Hr).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[0].to_string_lossy().contains("2023-11-15"));
        assert!(files[1].to_string_lossy().contains("2023-11-16"));
    }
}
