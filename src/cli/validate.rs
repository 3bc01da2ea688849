//! `validate`: outputs for checking nachtwacht's rules against other implementations
//! (docs/validation.md).
//!
//! `validate scr --e4 DIR`: the SCR peaks the stress pipeline finds in an E4 export's EDA, one
//! timestamp (ms) per line, so that `pipelines/validation/scr_agreement.py` can compare them with an
//! established implementation (NeuroKit2). The EDA is taken as the device wrote it (no decoder
//! flags), the same signal the reference reads; rules are the defaults of `pipelines/stress.toml`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use arrow::array::{Array, Float64Array, TimestampMillisecondArray};
use clap::Subcommand;
use nachtwacht_pipelines::{stress, StressRules};
use nachtwacht_wire::Signal;
use polars::prelude::*;

#[derive(Subcommand)]
pub enum ValidateCommand {
    /// The SCR peaks the stress pipeline finds in an E4 export's EDA, one timestamp (ms) per line
    /// (read by pipelines/validation/scr_agreement.py).
    Scr {
        /// An E4 CSV export directory (EDA.csv and the other signals).
        #[arg(long)]
        e4: PathBuf,
    },
}

pub async fn run(command: ValidateCommand) -> anyhow::Result<()> {
    let ValidateCommand::Scr { e4 } = command;
    let peaks = tokio::task::spawn_blocking(move || scr_peaks(&e4))
        .await
        .context("SCR task")??;
    println!("ts_ms");
    for t in peaks {
        println!("{t}");
    }
    Ok(())
}

pub fn scr_peaks(e4_dir: &Path) -> anyhow::Result<Vec<i64>> {
    let content = nachtwacht_station::source::e4::read_export(e4_dir, "E4-CHECK")
        .with_context(|| format!("reading {}", e4_dir.display()))?;
    let eda = content
        .batches
        .iter()
        .find(|b| b.signal == Signal::Eda)
        .context("the export has no EDA")?;
    let ts = eda
        .batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .context("EDA without timestamps")?;
    let us = eda
        .batch
        .column(1)
        .as_any()
        .downcast_ref::<Float64Array>()
        .context("EDA without values")?;
    let n = ts.len();
    let readings = DataFrame::new(vec![
        Column::new("pid".into(), vec!["check"; n]),
        Column::new("ts".into(), ts.values().to_vec()),
        Column::new("eda_us".into(), us.values().to_vec()),
        Column::new("quality".into(), vec![0u16; n]),
    ])?
    .lazy()
    .with_column(col("ts").cast(DataType::Datetime(
        TimeUnit::Milliseconds,
        Some(TimeZone::UTC),
    )));
    let peaks = stress::eda_features(readings, &StressRules::default())
        .filter(col("scr"))
        .select([col("ts").cast(DataType::Int64)])
        .collect()?;
    Ok(peaks.column("ts")?.i64()?.into_no_null_iter().collect())
}
