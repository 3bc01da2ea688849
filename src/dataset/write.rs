//! Writing a decode batch's rows as Parquet: one file per signal and UTC day, named by the digest of
//! the bundles it holds, with the stored schema and the encodings chosen for it.

use super::*;

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

pub(super) fn day_name(day_index: i64) -> Result<String> {
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
    blobs: &Blobs,
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
        let path = path.to_string_lossy().into_owned();
        let bytes = put_object(
            blobs,
            &path,
            &encode_parquet(&schema, &batches, RowOrder::Arrival)?,
        )?;
        written.push(WrittenFile {
            path,
            signal,
            day,
            rows: batches.iter().map(RecordBatch::num_rows).sum(),
            bytes,
            bundles,
        });
    }
    Ok(written)
}

/// Stores a dataset file's bytes durably at catalog path `rel`, replacing what was there (the
/// same bundles make the same bytes). Returns its size.
pub(super) fn put_object(blobs: &Blobs, rel: &str, bytes: &[u8]) -> Result<usize> {
    let key =
        crate::base::blobs::Key::dataset(rel).ok_or_else(|| Error::NotADataset(rel.to_string()))?;
    blobs.put(&key, bytes)?;
    Ok(bytes.len())
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
pub(super) fn digest_of(bundles: &[impl AsRef<str>]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for b in bundles {
        h.update(b.as_ref().as_bytes());
        h.update(b",");
    }
    hex::encode(&h.finalize()[..12])
}

/// `datasets/raw/<signal>/<day>`, relative to the data directory.
pub(super) fn day_path(signal: Signal, day: &str) -> PathBuf {
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
        nachtwacht_station::durable::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.display().to_string(),
            source,
        })?;
    }
    write_durably(path, &buf)?;
    Ok(buf.len())
}

/// Writes batches as one Parquet file a batch at a time (memory bounded by one batch), durably:
/// a temporary name, fsync, rename, fsync of the directory. Returns the file's size.
pub fn write_parquet_stream(
    path: &Path,
    schema: &Arc<Schema>,
    order: RowOrder,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<usize> {
    let parent = path.parent().expect("a file in a directory");
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| Error::Io { path: p, source }
    };
    nachtwacht_station::durable::create_dir_all(parent).map_err(io(parent))?;
    let partial = path.with_extension("part");
    let file = std::fs::File::create(&partial).map_err(io(&partial))?;
    let mut w = parquet_writer(file, schema, order)?;
    for batch in batches {
        w.write(&batch?)?;
    }
    let file = w.into_inner()?;
    file.sync_all().map_err(io(&partial))?;
    let bytes = file.metadata().map_err(io(&partial))?.len() as usize;
    crate::base::fsio::move_durably(&partial, path)?;
    Ok(bytes)
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
    let mut buf = Vec::new();
    let mut w = parquet_writer(&mut buf, schema, order)?;
    for batch in batches {
        w.write(batch)?;
    }
    w.close()?;
    Ok(buf)
}

/// A Parquet writer into `sink` with the encodings of [`encode_parquet`], for files written a
/// batch at a time.
pub(super) fn parquet_writer<W: std::io::Write + Send>(
    sink: W,
    schema: &Arc<Schema>,
    order: RowOrder,
) -> Result<ArrowWriter<W>> {
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
    let options = ArrowWriterOptions::new()
        .with_properties(props.build())
        .with_skip_arrow_metadata(true);
    Ok(ArrowWriter::try_new_with_options(
        sink,
        schema.clone(),
        options,
    )?)
}
pub(super) fn sort_by_pid_ts(batch: &RecordBatch) -> Result<RecordBatch> {
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
