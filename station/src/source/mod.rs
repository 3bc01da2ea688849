//! Where a station's readings come from. Each source yields [`BundleContent`]s: the readings of one
//! device for one span of time, ready to be sealed.

pub mod e4;
pub mod simulator;

use std::path::Path;

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
    match source {
        SourceConfig::None => Ok(vec![]),
        SourceConfig::E4Csv { dir, device_serial } => {
            Ok(vec![e4::read_export(&base_dir.join(dir), device_serial)?])
        }
        SourceConfig::Simulator(cfg) => Ok(simulator::generate(cfg)),
    }
}
