//! `pipeline run`: evaluate all data now, or backfill a range of days (e.g. after a rule change),
//! with the operator's rule files as the server would read them.

use anyhow::{bail, Context as _};
use clap::Subcommand;
use nachtwacht::base::time::now_ms;
use nachtwacht::evaluate;

use super::DataDirArg;

#[derive(Subcommand)]
pub enum PipelineCommand {
    /// Evaluate all data, or backfill the UTC days `--from`..=`--to` (e.g. after a rule change).
    /// The server's scheduler does the same for new data on its own.
    Run {
        #[command(flatten)]
        dir: DataDirArg,
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Last day, inclusive, YYYY-MM-DD.
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Days evaluated together: larger chunks re-read less lookback context.
        #[arg(long, default_value_t = 7)]
        chunk_days: u32,
    },
}

pub async fn run(command: PipelineCommand) -> anyhow::Result<()> {
    let PipelineCommand::Run {
        dir,
        from,
        to,
        chunk_days,
    } = command;
    let ctx = dir.open()?;
    let p =
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir).context("pseudonym keys")?;
    let rules = evaluate::rules_files::load(&ctx.dir, &ctx.db, "cli", now_ms())
        .context("loading the rule files")?;
    let days = match (from, to) {
        (None, None) => None,
        (Some(from), Some(to)) => {
            let days = evaluate::Days {
                from,
                to: to + chrono::Days::new(1),
            };
            if days.is_empty() {
                bail!("--from {from} is after --to {to}");
            }
            Some(days)
        }
        _ => bail!("give both --from and --to, or neither"),
    };
    // Polars blocks: keep it off the async runtime's threads.
    let r = tokio::task::spawn_blocking(move || match days {
        None => evaluate::run(&ctx, &p, &rules).context("running pipelines"),
        Some(days) => {
            let mut bar = ProgressBar::new(days.len() as usize);
            evaluate::backfill(&ctx, &p, &rules, days, chunk_days, |done, total, chunk| {
                bar.chunk_done(done, total, chunk)
            })
            .context("backfilling pipelines")
        }
    })
    .await
    .context("pipeline task")??;
    println!(
        "events: {}, device events: {}, stress episodes: {}, new alerts: {}, revised alerts: {}, \
         withdrawn alerts: {}, pending alcohol episodes: {}, person-days: {}",
        r.events,
        r.device_events,
        r.stress_episodes,
        r.new_alerts,
        r.revised_alerts,
        r.withdrawn_alerts,
        r.pending_episodes,
        r.person_days
    );
    Ok(())
}

/// A progress bar for backfills on stderr: redrawn in place on a terminal, a line per chunk
/// otherwise (logs, CI).
struct ProgressBar {
    days: usize,
    started: std::time::Instant,
    terminal: bool,
}

impl ProgressBar {
    const WIDTH: usize = 30;

    fn new(days: usize) -> Self {
        use std::io::IsTerminal;
        Self {
            days,
            started: std::time::Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn chunk_done(&mut self, done: usize, total: usize, chunk: evaluate::Days) {
        let filled = Self::WIDTH * done / total.max(1);
        let line = format!(
            "[{}{}] {done}/{total} chunks ({} days), {chunk} done, {:.1} s",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled),
            self.days,
            self.started.elapsed().as_secs_f64()
        );
        if self.terminal {
            eprint!("\r{line}");
            if done == total {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
    }
}
