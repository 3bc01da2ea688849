//! Where a station's readings come from. Each source yields [`BundleContent`]s: the readings of one
//! device for one span of time, ready to be sealed.

pub mod ankle_csv;
pub mod e4;
pub mod embrace_avro;
pub mod simulator;

use std::path::Path;

use nachtwacht_wire::protocol::DeviceStatus;
use nachtwacht_wire::{DeviceKind, SignalBatch};

use crate::Result;

/// The readings of one device that go into one bundle.
#[derive(Debug, Clone)]
pub struct BundleContent {
    pub device_serial: String,
    pub device_kind: DeviceKind,
    pub batches: Vec<SignalBatch>,
}

impl BundleContent {
    /// First and last reading time (ms) over all signals, or `None` when there are no readings.
    pub fn span(&self) -> Option<(i64, i64)> {
        use arrow::array::{Array, TimestampMillisecondArray};
        self.batches
            .iter()
            .filter_map(|b| {
                let ts = b
                    .batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()?;
                let min = arrow::compute::min(ts)?;
                let max = arrow::compute::max(ts)?;
                (!ts.is_empty()).then_some((min, max))
            })
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
    }

    /// The decoded bytes this content's bundle would declare, at most (see
    /// `Signal::max_stream_len`).
    fn declared_bound(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| b.signal.max_stream_len(b.batch.num_rows() as u64))
            .sum()
    }

    /// This content in pieces of consecutive, equal time windows, each small enough to be one
    /// bundle the server accepts (half of `MAX_BUNDLE_DECODED_LEN`): a read-out of several days
    /// would otherwise be one bundle the server quarantines as too large. Content that fits is
    /// returned whole. Empty pieces are left out.
    pub fn split_to_fit(self) -> Result<Vec<BundleContent>> {
        use arrow::array::{Array, BooleanArray, TimestampMillisecondArray};
        let target = nachtwacht_wire::bundle::MAX_BUNDLE_DECODED_LEN / 2;
        let needed = self.declared_bound();
        let Some((from, to)) = self.span() else {
            return Ok(vec![self]);
        };
        if needed <= target {
            return Ok(vec![self]);
        }
        let pieces = needed.div_ceil(target) as i64;
        let width = ((to - from) / pieces).max(1) + 1;
        let mut out = Vec::new();
        for k in 0..pieces + 1 {
            let (lo, hi) = (from + k * width, from + (k + 1) * width);
            if lo > to {
                break;
            }
            let mut piece = BundleContent {
                device_serial: self.device_serial.clone(),
                device_kind: self.device_kind,
                batches: Vec::new(),
            };
            for b in &self.batches {
                let ts = b
                    .batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .expect("every signal starts with ts");
                let keep = BooleanArray::from(
                    ts.values()
                        .iter()
                        .map(|t| (lo..hi).contains(t))
                        .collect::<Vec<_>>(),
                );
                let batch = arrow::compute::filter_record_batch(&b.batch, &keep)
                    .map_err(|e| crate::Error::Seal(e.to_string()))?;
                if batch.num_rows() > 0 {
                    piece.batches.push(SignalBatch {
                        signal: b.signal,
                        batch,
                        rate_hz: b.rate_hz,
                    });
                }
            }
            if !piece.batches.is_empty() {
                out.push(piece);
            }
        }
        Ok(out)
    }

    pub fn samples(&self) -> usize {
        self.batches
            .iter()
            .map(|b| b.batch.num_rows() * (b.batch.num_columns() - 1))
            .sum()
    }
}

/// Everything the source currently has, in bundle-sized pieces.
/// Where a station's readings come from (the `[source]` table of its config).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// No device attached yet: the station only uploads what is already spooled.
    #[default]
    None,
    /// An Empatica E4 CSV export directory (one file per signal).
    E4Csv {
        dir: std::path::PathBuf,
        device_serial: String,
    },
    /// The built-in simulator, for demos and tests.
    Simulator(simulator::SimulatorConfig),
}

pub fn read_all(source: &SourceConfig, base_dir: &Path) -> Result<Vec<BundleContent>> {
    read(source, base_dir)?.collect()
}

/// The same pieces, one at a time.
pub fn read<'a>(
    source: &'a SourceConfig,
    base_dir: &Path,
) -> Result<Box<dyn Iterator<Item = Result<BundleContent>> + 'a>> {
    Ok(match source {
        SourceConfig::None => Box::new(std::iter::empty()),
        SourceConfig::E4Csv { dir, device_serial } => Box::new(std::iter::once(e4::read_export(
            &base_dir.join(dir),
            device_serial,
        ))),
        SourceConfig::Simulator(cfg) => Box::new(simulator::generate_lazily(cfg).map(Ok)),
    })
}

/// What the station can tell about its devices, for heartbeats. `cursor` gives, per device serial,
/// the time of the last reading sealed.
pub fn device_status(
    source: &SourceConfig,
    base_dir: &Path,
    cursor: impl Fn(&str) -> Option<i64>,
) -> Vec<DeviceStatus> {
    match source {
        SourceConfig::None => vec![],
        SourceConfig::E4Csv { dir, device_serial } => vec![DeviceStatus {
            serial: device_serial.clone(),
            // An E4 reaches the station as an export directory; present means connected.
            connected: base_dir.join(dir).is_dir(),
            battery_percent: None,
            last_reading_ms: cursor(device_serial),
        }],
        SourceConfig::Simulator(cfg) => {
            vec![simulator::device_status(cfg, cursor(&cfg.device_serial))]
        }
    }
}
