//! `nachtwacht-station`: the base-station agent binary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nachtwacht_station::{import, run_once, ImportFormat, StationConfig};

#[derive(Parser)]
#[command(
    name = "nachtwacht-station",
    version,
    about = "nachtwacht base-station agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read the configured source, seal and spool its readings, and upload the spool.
    Run {
        /// Station config written by `nachtwacht station add`.
        #[arg(long)]
        config: PathBuf,
        /// Do one pass and exit instead of repeating every `--interval`.
        #[arg(long)]
        once: bool,
        /// Time between passes.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// Replay a device's memory from files through this station: seal, spool, upload.
    Import {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_enum)]
        format: Format,
        /// Serial of the device the readings come from.
        #[arg(long)]
        device_serial: String,
        /// Seal and spool only; the next `run` uploads.
        #[arg(long)]
        no_upload: bool,
        /// The file (ankle CSV, one Avro file) or directory (E4 export, Avro files).
        path: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    AnkleCsv,
    E4Csv,
    EmbraceAvro,
}

/// A station's configuration and the directory its relative paths (spool, cursors) start from:
/// the one the configuration file is in.
fn load(config: &std::path::Path) -> anyhow::Result<(StationConfig, PathBuf)> {
    let cfg = StationConfig::load(config)?;
    let base = config
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((cfg, base))
}

// One thread: a station seals one bundle at a time and waits on the network; a single thread keeps
// its memory small (no per-thread allocator arenas) on a low-power box.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Colour codes only for a person at a terminal: a station's log file gets plain text.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Import {
            config,
            format,
            device_serial,
            no_upload,
            path,
        } => {
            let (cfg, base) = load(&config)?;
            let format = match format {
                Format::AnkleCsv => ImportFormat::AnkleCsv,
                Format::E4Csv => ImportFormat::E4Csv,
                Format::EmbraceAvro => ImportFormat::EmbraceAvro,
            };
            let report = import(&cfg, &base, format, &path, &device_serial)
                .with_context(|| format!("importing {}", path.display()))?;
            tracing::info!(
                bundles = report.bundles,
                readings = report.readings,
                already_sealed = report.already_sealed,
                "import sealed and spooled"
            );
            if !no_upload {
                let run = run_once(&cfg, &base)
                    .await
                    .with_context(|| format!("station {} upload", cfg.name))?;
                tracing::info!(
                    acknowledged = run.acknowledged,
                    left_in_spool = run.left_in_spool,
                    "import uploaded"
                );
            }
            Ok(())
        }
        Command::Run {
            config,
            once,
            interval,
        } => {
            let (cfg, base) = load(&config)?;
            loop {
                match run_once(&cfg, &base)
                    .await
                    .with_context(|| format!("station {} pass", cfg.name))
                {
                    Ok(report) => tracing::info!(
                        sealed = report.sealed,
                        acknowledged = report.acknowledged,
                        set_aside = report.set_aside,
                        left_in_spool = report.left_in_spool,
                        spool_full = report.spool_full,
                        clock_offset_ms = ?report.clock_offset_ms,
                        "pass done"
                    ),
                    // A single pass: the caller sees the failure. A daemon: what is not uploaded
                    // stays in the spool for the next pass.
                    Err(e) if once => return Err(e),
                    Err(e) => tracing::warn!(
                        error = format!("{e:#}"),
                        "pass failed; retrying next interval"
                    ),
                }
                if once {
                    return Ok(());
                }
                tokio::time::sleep(interval).await;
            }
        }
    }
}
