//! Where a station's readings come from. Each source yields [`BundleContent`]s: the readings of one
//! device for one span of time, ready to be sealed.

pub mod ankle_csv;
pub mod e4;
pub mod embrace_avro;
pub mod simulator;

use std::path::Path;

use nachtwacht_wire::protocol::DeviceStatus;
use nachtwacht_wire::{DeviceKind, SignalBatch};

use crate::config::SourceConfig;
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

    pub fn samples(&self) -> usize {
        self.batches
            .iter()
            .map(|b| b.batch.num_rows() * (b.batch.num_columns() - 1))
            .sum()
    }
}

/// Everything the source currently has, in bundle-sized pieces.
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
