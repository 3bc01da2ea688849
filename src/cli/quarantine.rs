//! `quarantine`: the bundles the decode worker set aside, with their reasons; sending them back.

use anyhow::Context as _;
use clap::Subcommand;
use nachtwacht::decode::quarantine;

use super::{DataDirArg, ACTOR_CLI};

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// Every quarantined bundle, oldest first.
    List {
        #[command(flatten)]
        dir: DataDirArg,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One quarantined bundle, as JSON.
    Show {
        #[command(flatten)]
        dir: DataDirArg,
        bundle: String,
    },
    /// Send bundles back through decoding (after fixing the cause: an assignment, a pairing, a key).
    Retry {
        #[command(flatten)]
        dir: DataDirArg,
        /// Bundle ids; with --all, every quarantined bundle.
        bundles: Vec<String>,
        #[arg(long)]
        all: bool,
    },
    /// Set aside a bundle that waits to be decoded (one that keeps failing, or must not be
    /// processed); `retry` sends it back.
    Put {
        #[command(flatten)]
        dir: DataDirArg,
        bundle: String,
        /// Why, recorded with the bundle and in the audit log.
        #[arg(long)]
        reason: String,
    },
}

pub fn run(command: QuarantineCommand) -> anyhow::Result<()> {
    match command {
        QuarantineCommand::List { dir, json } => {
            let entries = quarantine::list(&dir.open()?, ACTOR_CLI)?;
            for e in &entries {
                if json {
                    println!("{}", serde_json::to_string(e)?);
                } else {
                    println!(
                        "{}  {}  seq {}  retries {}  {}",
                        e.bundle_id, e.station, e.sequence, e.retries, e.reason
                    );
                }
            }
            if !json {
                println!("{} quarantined", entries.len());
            }
        }
        QuarantineCommand::Show { dir, bundle } => {
            let e = quarantine::show(&dir.open()?, &bundle, ACTOR_CLI)?;
            println!("{}", serde_json::to_string_pretty(&e)?);
        }
        QuarantineCommand::Retry { dir, bundles, all } => {
            let ctx = dir.open()?;
            let ids = if all {
                quarantine::list(&ctx, ACTOR_CLI)?
                    .into_iter()
                    .map(|e| e.bundle_id)
                    .collect()
            } else if bundles.is_empty() {
                anyhow::bail!("name bundle ids to retry, or --all");
            } else {
                bundles
            };
            for id in &ids {
                quarantine::retry(&ctx, id, ACTOR_CLI).with_context(|| format!("retrying {id}"))?;
            }
            println!(
                "{} bundles back in the spool; the decode worker takes them on its next pass",
                ids.len()
            );
        }
        QuarantineCommand::Put {
            dir,
            bundle,
            reason,
        } => {
            quarantine::put(&dir.open()?, &bundle, &reason, ACTOR_CLI)
                .with_context(|| format!("quarantining {bundle}"))?;
            println!("{bundle} quarantined");
        }
    }
    Ok(())
}
