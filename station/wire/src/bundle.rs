//! Bundle format v2 (and v1, still read): the plaintext a station seals with age.
//!
//! ```text
//! magic "NWBUNDLE" | u16 LE format version | u32 LE manifest length | manifest (JSON)
//! | stream of signal 1 | stream of signal 2 | ...
//! ```
//!
//! The manifest lists the signals in the order their streams follow, with each stream's byte
//! length and row count. A stream is an Arrow IPC stream: in v2, uncompressed and wrapped in one
//! zstd frame that declares its content size; in v1, with each IPC buffer compressed on its own.
//! The two carry the same bytes after decompression and compress to the same size, but v1 makes a
//! reader set up a zstd decompressor per buffer (arrow-ipc does so), which `perf` showed as a
//! fifth of the server's bundle decoding; v2 needs one per bundle. Stations write v2.
//!
//! Every signal has one fixed Arrow schema ([`Signal::schema`]); a stream whose schema differs is
//! rejected, never coerced. Unknown format versions are rejected, not guessed at.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;
use serde::{Deserialize, Serialize};

pub const BUNDLE_MAGIC: &[u8; 8] = b"NWBUNDLE";
/// The version this build writes.
pub const BUNDLE_FORMAT_VERSION: u16 = 2;
/// The versions this build reads.
pub const READABLE_VERSIONS: [u16; 2] = [1, 2];
/// A manifest larger than this is not a manifest.
pub const MAX_MANIFEST_LEN: usize = 1 << 20;
/// The most one v2 stream may declare as its decompressed size. Far above any bundle (uploads are
/// at most 64 MiB of ciphertext by default); it bounds what a forged frame header can make the
/// server allocate.
pub const MAX_STREAM_LEN: u64 = 1 << 30;
/// The most decoded bytes one whole bundle may declare (the sum of its v2 streams' declared
/// sizes), checked before anything is decompressed. A day of every wristband signal at its
/// nominal rate is about 190 MB decoded (an E4 export of 24 hours in one bundle).
pub const MAX_BUNDLE_DECODED_LEN: u64 = 256 << 20;
/// The longest text an event row may carry (device events are short names such as
/// `strap-opened`); it bounds what a row of the event signal can take.
pub const MAX_EVENT_TEXT_LEN: u64 = 256;
/// IPC framing beyond the rows: the schema message, batch headers, alignment padding.
const IPC_OVERHEAD: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a nachtwacht bundle (bad magic)")]
    BadMagic,
    #[error("bundle format version {0} is not supported (this build reads versions 1 and 2)")]
    UnsupportedVersion(u16),
    #[error("bundle is truncated: {0}")]
    Truncated(&'static str),
    #[error("manifest is invalid: {0}")]
    Manifest(String),
    #[error("signal {signal}: {reason}")]
    Signal { signal: String, reason: String },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("zstd: {0}")]
    Compression(String),
}

pub type Result<T, E = BundleError> = std::result::Result<T, E>;

/// 16 random bytes chosen by the station, unique per bundle; the key for de-duplication.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId(pub [u8; 16]);

impl BundleId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl std::fmt::Debug for BundleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BundleId({})", self.to_hex())
    }
}

impl std::fmt::Display for BundleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for BundleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for BundleId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BundleId::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("bundle id must be 32 hex digits"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// Ankle monitor with transdermal alcohol sensor.
    AnkleMonitor,
    /// Wristband with EDA, pulse, temperature and motion.
    Wristband,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 2] = [Self::AnkleMonitor, Self::Wristband];

    /// The one string form (the same as serde's): in SQL, forms and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AnkleMonitor => "ankle-monitor",
            Self::Wristband => "wristband",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The signals a bundle may carry. Each has exactly one Arrow schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    /// Ankle-monitor reading every 30 minutes: TAC, ambient alcohol, skin temperature, IR, strap.
    Ankle,
    /// Electrodermal activity, µS, 4 Hz.
    Eda,
    /// Blood-volume pulse, 64 Hz.
    Bvp,
    /// Heart rate, beats per minute, 1 Hz.
    Hr,
    /// Skin temperature, °C, 4 Hz.
    Temp,
    /// Acceleration in g, 32 Hz.
    Acc,
    /// Inter-beat intervals: the time of each beat and the interval before it, in seconds (events).
    Ibi,
    /// Button presses on the wristband (events; the timestamp is the whole reading).
    Tag,
    /// Battery charge of the device, percent (ankle monitor and wristband).
    Battery,
    /// Device events: power-on, self-test results, strap opened/closed, firmware faults (events).
    Event,
}

impl Signal {
    pub const ALL: [Signal; 10] = [
        Signal::Ankle,
        Signal::Eda,
        Signal::Bvp,
        Signal::Hr,
        Signal::Temp,
        Signal::Acc,
        Signal::Ibi,
        Signal::Tag,
        Signal::Battery,
        Signal::Event,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Ankle => "ankle",
            Signal::Eda => "eda",
            Signal::Bvp => "bvp",
            Signal::Hr => "hr",
            Signal::Temp => "temp",
            Signal::Acc => "acc",
            Signal::Ibi => "ibi",
            Signal::Tag => "tag",
            Signal::Battery => "battery",
            Signal::Event => "event",
        }
    }

    /// The nominal sample rate of a sampled signal; `None` for event signals, whose rows come
    /// when something happens. A bundle must declare the rate of every sampled signal it carries.
    pub fn nominal_rate_hz(self) -> Option<f64> {
        match self {
            Signal::Ankle => Some(1.0 / 1800.0),
            Signal::Eda | Signal::Temp => Some(4.0),
            Signal::Bvp => Some(64.0),
            Signal::Hr => Some(1.0),
            Signal::Acc => Some(32.0),
            Signal::Ibi | Signal::Tag | Signal::Battery | Signal::Event => None,
        }
    }

    pub fn from_name(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The value columns after the leading `ts` column, with their units.
    pub fn value_columns(self) -> &'static [(&'static str, DataType)] {
        match self {
            Signal::Ankle => &[
                ("tac_g_dl", DataType::Float64),
                ("ambient_g_dl", DataType::Float64),
                ("skin_temp_c", DataType::Float64),
                ("ir", DataType::Float64),
                ("strap_closed", DataType::Boolean),
            ],
            Signal::Eda => &[("eda_us", DataType::Float64)],
            Signal::Bvp => &[("bvp", DataType::Float64)],
            Signal::Hr => &[("hr_bpm", DataType::Float64)],
            Signal::Temp => &[("temp_c", DataType::Float64)],
            Signal::Acc => &[
                ("x_g", DataType::Float64),
                ("y_g", DataType::Float64),
                ("z_g", DataType::Float64),
            ],
            Signal::Ibi => &[("ibi_s", DataType::Float64)],
            Signal::Tag => &[],
            Signal::Battery => &[("battery_pct", DataType::Float64)],
            Signal::Event => &[("event", DataType::Utf8)],
        }
    }

    /// Arrow schema: `ts` (UTC milliseconds) then the value columns, none nullable.
    pub fn schema(self) -> SchemaRef {
        let mut fields = vec![Field::new("ts", ts_type(), false)];
        fields.extend(
            self.value_columns()
                .iter()
                .map(|(name, dt)| Field::new(*name, dt.clone(), false)),
        );
        Arc::new(Schema::new(fields))
    }
}

impl Signal {
    /// The most bytes one row of this signal can take in an Arrow IPC stream, its validity bits
    /// aside: 8 for `ts` and each 64-bit value, a byte for a boolean, offsets and
    /// [`MAX_EVENT_TEXT_LEN`] for text.
    pub fn max_row_bytes(self) -> u64 {
        8 + self
            .value_columns()
            .iter()
            .map(|(_, dt)| match dt {
                DataType::Boolean => 1,
                DataType::Utf8 => 4 + MAX_EVENT_TEXT_LEN,
                _ => 8,
            })
            .sum::<u64>()
    }

    /// The most bytes an IPC stream of `rows` rows of this signal may declare: the rows, a
    /// validity bit per row and column (writers include the bitmap even for columns without
    /// nulls), and [`IPC_OVERHEAD`] for messages and padding.
    pub fn max_stream_len(self, rows: u64) -> u64 {
        let columns = 1 + self.value_columns().len() as u64;
        rows.saturating_mul(self.max_row_bytes())
            .saturating_add(rows.div_ceil(8).saturating_mul(columns))
            .saturating_add(IPC_OVERHEAD)
            .min(MAX_STREAM_LEN)
    }
}

/// The timestamp type of every signal: milliseconds since the Unix epoch, UTC.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// One signal's readings for the bundle's time span.
#[derive(Debug, Clone)]
pub struct SignalBatch {
    pub signal: Signal,
    pub batch: RecordBatch,
    /// Declared sample rate (Hz); `None` for event signals.
    pub rate_hz: Option<f64>,
}

impl SignalBatch {
    /// A batch sampled at the signal's nominal rate (or an event signal).
    pub fn nominal(signal: Signal, batch: RecordBatch) -> Self {
        Self {
            signal,
            batch,
            rate_hz: signal.nominal_rate_hz(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalEntry {
    pub signal: Signal,
    pub rows: u64,
    pub bytes: u64,
    /// The rate the device was configured to sample at (Hz); required for sampled signals,
    /// absent for event signals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_hz: Option<f64>,
}

/// Describes a bundle. The device serial is here so the server can find the person the device is
/// assigned to; it never reaches an analytic dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    pub bundle_id: BundleId,
    pub device_serial: String,
    pub device_kind: DeviceKind,
    /// When the station sealed the bundle, by its own clock (ms since epoch).
    pub sealed_at_ms: i64,
    pub signals: Vec<SignalEntry>,
}

/// A decoded bundle: its manifest and one batch per signal.
#[derive(Debug, Clone)]
pub struct DecodedBundle {
    pub manifest: BundleManifest,
    pub batches: Vec<SignalBatch>,
}

/// Serialises a bundle in the current format ([`BUNDLE_FORMAT_VERSION`]). The `signals` list of
/// `manifest` is filled in here from `batches`.
pub fn encode_bundle(manifest: BundleManifest, batches: &[SignalBatch]) -> Result<Vec<u8>> {
    encode_bundle_as(BUNDLE_FORMAT_VERSION, manifest, batches)
}

/// Serialises a bundle in a given readable version: what stations of an earlier release send, for
/// tests that the server still reads it.
pub fn encode_bundle_as(
    version: u16,
    mut manifest: BundleManifest,
    batches: &[SignalBatch],
) -> Result<Vec<u8>> {
    if !READABLE_VERSIONS.contains(&version) {
        return Err(BundleError::UnsupportedVersion(version));
    }
    let mut streams = Vec::with_capacity(batches.len());
    manifest.signals.clear();
    // v2 frames every stream with one compressor; v1 has arrow compress inside the IPC stream.
    let mut framer = match version {
        2 => Some(
            zstd::bulk::Compressor::new(zstd::DEFAULT_COMPRESSION_LEVEL)
                .map_err(|e| BundleError::Compression(e.to_string()))?,
        ),
        _ => None,
    };
    for sb in batches {
        check_schema(sb.signal, &sb.batch.schema())?;
        let mut buf = Vec::new();
        {
            let compression = framer.is_none().then_some(CompressionType::ZSTD);
            let options = IpcWriteOptions::default().try_with_compression(compression)?;
            let mut w = StreamWriter::try_new_with_options(&mut buf, &sb.signal.schema(), options)?;
            w.write(&sb.batch)?;
            w.finish()?;
        }
        if let Some(framer) = framer.as_mut() {
            // One frame, its content size in the header (the bulk API always writes it).
            buf = framer
                .compress(&buf)
                .map_err(|e| BundleError::Compression(e.to_string()))?;
        }
        manifest.signals.push(SignalEntry {
            signal: sb.signal,
            rows: sb.batch.num_rows() as u64,
            bytes: buf.len() as u64,
            rate_hz: sb.rate_hz,
        });
        streams.push(buf);
    }
    let manifest_json =
        serde_json::to_vec(&manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
    let mut out =
        Vec::with_capacity(14 + manifest_json.len() + streams.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(BUNDLE_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(manifest_json.len() as u32).to_le_bytes());
    out.extend_from_slice(&manifest_json);
    for s in streams {
        out.extend_from_slice(&s);
    }
    Ok(out)
}

/// The decoded bytes a bundle declares, checked as [`check_declared_sizes`] does, without
/// decompressing anything: what the server reserves from its decoding memory before decoding.
pub fn declared_decoded_len(bytes: &[u8]) -> Result<u64> {
    let (version, manifest, start) = read_header(bytes)?;
    check_declared_sizes(version, bytes, start, &manifest)
}

/// What an Arrow IPC stream declares it decodes to: the sum of its record batches' buffer
/// lengths, a compressed buffer counted at the decoded length its 8-byte prefix declares (what
/// arrow's reader allocates). Reads only the flatbuffer headers, which are verified.
fn ipc_declared_len(stream: &[u8]) -> std::result::Result<u64, String> {
    let read_i32 = |at: usize| -> std::result::Result<i32, String> {
        stream
            .get(at..at + 4)
            .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| "IPC stream truncated".to_string())
    };
    let mut pos = 0usize;
    let mut total = 0u64;
    while pos < stream.len() {
        let mut at = pos;
        if stream[pos..].starts_with(&[0xff; 4]) {
            at += 4;
        }
        let meta_len = read_i32(at)?;
        if meta_len == 0 {
            break; // end-of-stream marker
        }
        let meta_len = usize::try_from(meta_len).map_err(|_| "negative IPC metadata length")?;
        let meta_start = at + 4;
        let meta = stream
            .get(meta_start..meta_start.saturating_add(meta_len))
            .ok_or("IPC message truncated")?;
        let message = arrow::ipc::root_as_message(meta).map_err(|e| format!("IPC message: {e}"))?;
        let body_len =
            usize::try_from(message.bodyLength()).map_err(|_| "negative IPC body length")?;
        let body_start = meta_start + meta_len;
        let body = stream
            .get(body_start..body_start.saturating_add(body_len))
            .ok_or("IPC body truncated")?;
        if let Some(schema) = message.header_as_schema() {
            // Arrow's reader panics on some types it cannot convert; signals use these only.
            use arrow::ipc::{Precision, TimeUnit, Type};
            let fields = schema.fields().ok_or("an IPC schema without fields")?;
            for field in fields {
                // The type's own table must be there with a precision or unit arrow knows: it
                // unwraps the one and panics on the other.
                let plain = match field.type_type() {
                    Type::FloatingPoint => field.type_as_floating_point().is_some_and(|f| {
                        matches!(
                            f.precision(),
                            Precision::HALF | Precision::SINGLE | Precision::DOUBLE
                        )
                    }),
                    Type::Timestamp => field.type_as_timestamp().is_some_and(|t| {
                        matches!(
                            t.unit(),
                            TimeUnit::SECOND
                                | TimeUnit::MILLISECOND
                                | TimeUnit::MICROSECOND
                                | TimeUnit::NANOSECOND
                        )
                    }),
                    Type::Bool | Type::Utf8 => true,
                    _ => false,
                };
                let nested = field.children().is_some_and(|c| !c.is_empty());
                if !plain || nested || field.dictionary().is_some() {
                    return Err("a field type no signal has".into());
                }
            }
        }
        if message.header_as_dictionary_batch().is_some() {
            return Err("dictionary batches are not part of any signal's schema".into());
        }
        if let Some(batch) = message.header_as_record_batch() {
            let compressed = batch.compression().is_some();
            for buffer in batch.buffers().into_iter().flatten() {
                let (offset, length) = (buffer.offset(), buffer.length());
                let (Ok(offset), Ok(length)) = (usize::try_from(offset), u64::try_from(length))
                else {
                    return Err("negative IPC buffer offset or length".into());
                };
                // Arrow's reader slices the body at these without checking (it panics).
                let inside = usize::try_from(length)
                    .ok()
                    .and_then(|l| offset.checked_add(l))
                    .is_some_and(|end| end <= body.len());
                if !inside {
                    return Err("IPC buffer outside its body".into());
                }
                let declared = if compressed && length >= 8 {
                    let prefix = body
                        .get(offset..offset + 8)
                        .ok_or("IPC buffer outside its body")?;
                    match i64::from_le_bytes(prefix.try_into().expect("8 bytes")) {
                        -1 => length - 8,
                        n => u64::try_from(n).map_err(|_| "negative decoded buffer length")?,
                    }
                } else {
                    length
                };
                total = total.saturating_add(declared);
            }
        }
        pos = body_start + body_len;
    }
    Ok(total)
}

/// Magic, version and manifest; returns where the streams start.
fn read_header(bytes: &[u8]) -> Result<(u16, BundleManifest, usize)> {
    if bytes.len() < 8 || &bytes[..8] != BUNDLE_MAGIC {
        return Err(BundleError::BadMagic);
    }
    let version = u16::from_le_bytes(
        bytes
            .get(8..10)
            .ok_or(BundleError::Truncated("version"))?
            .try_into()
            .expect("2 bytes"),
    );
    if !READABLE_VERSIONS.contains(&version) {
        return Err(BundleError::UnsupportedVersion(version));
    }
    let manifest_len = u32::from_le_bytes(
        bytes
            .get(10..14)
            .ok_or(BundleError::Truncated("manifest length"))?
            .try_into()
            .expect("4 bytes"),
    ) as usize;
    if manifest_len > MAX_MANIFEST_LEN {
        return Err(BundleError::Manifest(format!(
            "manifest length {manifest_len} exceeds {MAX_MANIFEST_LEN}"
        )));
    }
    let manifest_bytes = bytes
        .get(14..14 + manifest_len)
        .ok_or(BundleError::Truncated("manifest"))?;
    let manifest: BundleManifest =
        serde_json::from_slice(manifest_bytes).map_err(|e| BundleError::Manifest(e.to_string()))?;
    Ok((version, manifest, 14 + manifest_len))
}

/// Parses and checks a bundle: magic, version, manifest, and every stream's schema and row count.
pub fn decode_bundle(bytes: &[u8]) -> Result<DecodedBundle> {
    let (version, manifest, start) = read_header(bytes)?;
    check_declared_sizes(version, bytes, start, &manifest)?;
    let mut offset = start;
    let mut batches = Vec::with_capacity(manifest.signals.len());
    // v2: one decompression context for the whole bundle.
    let mut decompressor = match version {
        2 => Some(
            zstd::bulk::Decompressor::new().map_err(|e| BundleError::Compression(e.to_string()))?,
        ),
        _ => None,
    };
    for (i, entry) in manifest.signals.iter().enumerate() {
        if manifest.signals[..i]
            .iter()
            .any(|e| e.signal == entry.signal)
        {
            return Err(BundleError::Manifest(format!(
                "signal {} appears more than once",
                entry.signal.name()
            )));
        }
        let len = usize::try_from(entry.bytes)
            .map_err(|_| BundleError::Manifest("stream length overflows".into()))?;
        let stream = bytes
            .get(offset..offset.saturating_add(len))
            .ok_or(BundleError::Truncated("signal stream"))?;
        offset += len;
        check_rate(entry)?;
        let batch = match decompressor.as_mut() {
            Some(d) => read_stream(
                entry.signal,
                &unframe(
                    d,
                    entry.signal,
                    stream,
                    entry.signal.max_stream_len(entry.rows),
                )?,
            )?,
            None => read_stream(entry.signal, stream)?,
        };
        if batch.num_rows() as u64 != entry.rows {
            return Err(BundleError::Signal {
                signal: entry.signal.name().into(),
                reason: format!(
                    "manifest says {} rows, stream has {}",
                    entry.rows,
                    batch.num_rows()
                ),
            });
        }
        batches.push(SignalBatch {
            signal: entry.signal,
            batch,
            rate_hz: entry.rate_hz,
        });
    }
    if offset != bytes.len() {
        return Err(BundleError::Manifest(format!(
            "{} trailing bytes after the last signal stream",
            bytes.len() - offset
        )));
    }
    Ok(DecodedBundle { manifest, batches })
}

fn read_stream(signal: Signal, stream: &[u8]) -> Result<RecordBatch> {
    // Every message and buffer within bounds before arrow reads it (found by fuzzing).
    ipc_declared_len(stream).map_err(|reason| BundleError::Signal {
        signal: signal.name().into(),
        reason,
    })?;
    // Arrow's reader still panics on some malformed streams the check above does not foresee: a
    // panic there is this bundle's fault, refused like any other error.
    let read = std::panic::catch_unwind(|| -> Result<Vec<RecordBatch>> {
        let reader = StreamReader::try_new(Cursor::new(stream), None)?;
        check_schema(signal, &reader.schema())?;
        Ok(reader.collect::<Result<Vec<_>, _>>()?)
    });
    let mut batches = read.map_err(|_| BundleError::Signal {
        signal: signal.name().into(),
        reason: "the Arrow IPC stream is malformed (the reader gave up)".into(),
    })??;
    let schema = signal.schema();
    if batches.len() == 1 {
        // What stations write: one batch per stream, taken as it is rather than copied.
        return Ok(batches.remove(0));
    }
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

/// The sizes a bundle's streams declare (v2: each zstd frame's content size; v1: the decoded
/// lengths of the IPC buffers), before anything is decompressed: each at most what its
/// declared rows can take ([`Signal::max_stream_len`]), all together at most
/// [`MAX_BUNDLE_DECODED_LEN`]. A decompression bomb is refused here, having cost nothing.
pub fn check_declared_sizes(
    version: u16,
    bytes: &[u8],
    start: usize,
    manifest: &BundleManifest,
) -> Result<u64> {
    let mut offset = start;
    let mut total: u64 = 0;
    for entry in &manifest.signals {
        let len = usize::try_from(entry.bytes)
            .map_err(|_| BundleError::Manifest("stream length overflows".into()))?;
        let frame = bytes
            .get(offset..offset.saturating_add(len))
            .ok_or(BundleError::Truncated("signal stream"))?;
        offset += len;
        let bad = |reason: String| BundleError::Signal {
            signal: entry.signal.name().into(),
            reason,
        };
        let size = if version == 1 {
            // v1: an IPC stream with compressed buffers, each prefixed by its decoded length.
            ipc_declared_len(frame).map_err(bad)?
        } else {
            // What is not a sized frame is refused with its reason when the stream is read.
            let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(frame) else {
                continue;
            };
            size
        };
        let limit = entry.signal.max_stream_len(entry.rows);
        if size > limit {
            return Err(bad(format!(
                "stream declares {size} decoded bytes, more than {limit} for {} rows of this signal",
                entry.rows
            )));
        }
        total = total.saturating_add(size);
    }
    if total > MAX_BUNDLE_DECODED_LEN {
        return Err(BundleError::Manifest(format!(
            "streams declare {total} decoded bytes, more than {MAX_BUNDLE_DECODED_LEN} per bundle"
        )));
    }
    Ok(total)
}

/// A v2 stream's IPC bytes: the stream must be exactly one zstd frame that declares its content
/// size, at most `limit` (see [`check_declared_sizes`]), and decompresses to exactly that size.
fn unframe(
    decompressor: &mut zstd::bulk::Decompressor<'_>,
    signal: Signal,
    frame: &[u8],
    limit: u64,
) -> Result<Vec<u8>> {
    let bad = |reason: String| BundleError::Signal {
        signal: signal.name().into(),
        reason,
    };
    let framed = zstd::zstd_safe::find_frame_compressed_size(frame)
        .map_err(|_| bad("stream is not a zstd frame".into()))?;
    if framed != frame.len() {
        return Err(bad(format!(
            "{} bytes follow the stream's zstd frame",
            frame.len() - framed
        )));
    }
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) => size,
        _ => return Err(bad("zstd frame does not declare its content size".into())),
    };
    if size > limit {
        return Err(bad(format!(
            "stream declares {size} bytes, more than {limit}"
        )));
    }
    let ipc = decompressor
        .decompress(frame, size as usize)
        .map_err(|e| bad(format!("zstd: {e}")))?;
    if ipc.len() as u64 != size {
        return Err(bad(format!(
            "zstd frame declares {size} bytes but holds {}",
            ipc.len()
        )));
    }
    Ok(ipc)
}

/// A sampled signal must declare a finite, positive rate; an event signal must not declare one.
fn check_rate(entry: &SignalEntry) -> Result<()> {
    let signal = entry.signal.name().to_string();
    match (entry.signal.nominal_rate_hz(), entry.rate_hz) {
        (Some(_), None) => Err(BundleError::Signal {
            signal,
            reason: "sampled signal without a declared sample rate".into(),
        }),
        (Some(_), Some(r)) if !(r.is_finite() && r > 0.0) => Err(BundleError::Signal {
            signal,
            reason: format!("declared sample rate {r} Hz is not a positive number"),
        }),
        (None, Some(r)) => Err(BundleError::Signal {
            signal,
            reason: format!("event signal declares a sample rate ({r} Hz)"),
        }),
        _ => Ok(()),
    }
}

fn check_schema(signal: Signal, actual: &Schema) -> Result<()> {
    let expected = signal.schema();
    if actual.fields() != expected.fields() {
        return Err(BundleError::Signal {
            signal: signal.name().into(),
            reason: format!("schema {actual:?} does not match the schema {expected:?}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
