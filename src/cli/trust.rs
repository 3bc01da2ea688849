//! `keys` and `audit`: the server's age keys and the tamper-evident audit log.

use anyhow::{bail, Context as _};
use clap::{Subcommand, ValueEnum};
use nachtwacht::base::time::now_ms;
use nachtwacht::trust::audit;

use super::{DataDirArg, ACTOR_CLI};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// New age identity; stations switch to its recipient at their next acknowledgement. Old
    /// identities are kept, so bundles sealed to them still decrypt.
    Rotate {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// A new server certificate and key from the CA (before the old one ends: `check` warns 30
    /// days ahead); the server uses them from its next start.
    ServerCert {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate { dir } => {
            let recipient = nachtwacht::trust::keys::rotate(&dir.open()?, ACTOR_CLI)
                .context("rotating keys")?;
            println!("New age recipient: {recipient}");
            println!(
                "Stations switch to it at their next acknowledgement; old identities are kept."
            );
        }
        KeysCommand::ServerCert { dir } => {
            let until = nachtwacht::trust::keys::renew_server_cert(&dir.open()?, ACTOR_CLI)
                .context("renewing the server certificate")?;
            println!(
                "New server certificate, valid until {}; restart the server to use it.",
                nachtwacht::base::time::date_of(until)
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; fails naming the first entry that was changed, removed or moved.
    Verify {
        #[command(flatten)]
        dir: DataDirArg,
        /// A head recorded outside nachtwacht earlier, as ENTRY:HASH (what verify and the
        /// checkpoints print): the chain must still hold that entry with that hash.
        #[arg(long)]
        anchor: Option<String>,
    },
    /// Write today's signed checkpoint of the chain's head now (the server does so every
    /// pipeline interval) and print it.
    Checkpoint {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Write every entry with its hashes to stdout, for checking outside nachtwacht.
    Export {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

pub fn audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { dir, anchor } => verify(dir, anchor),
        AuditCommand::Checkpoint { dir } => {
            let ctx = dir.open()?;
            let written = audit::checkpoint::write(&ctx.dir, &ctx.db.lock(), now_ms())
                .context("writing the checkpoint")?;
            match written {
                Some(c) => println!("checkpoint: entry {} hash {}", c.seq, c.hash),
                None => println!("the audit log is empty: nothing to anchor"),
            }
            Ok(())
        }
        AuditCommand::Export { dir, format } => {
            let ctx = dir.open()?;
            let entries = audit::entries(&ctx.db.lock()).context("reading audit log")?;
            match format {
                ExportFormat::Json => println!("{}", audit::to_json(&entries)),
                ExportFormat::Csv => print!("{}", audit::to_csv(&entries)),
            }
            Ok(())
        }
    }
}

fn verify(dir: DataDirArg, anchor: Option<String>) -> anyhow::Result<()> {
    let ctx = dir.open()?;
    let anchor = anchor
        .map(|a| {
            let (seq, hash) = a
                .split_once(':')
                .with_context(|| format!("--anchor {a:?} must be ENTRY:HASH"))?;
            let seq: i64 = seq
                .parse()
                .with_context(|| format!("--anchor {a:?}: {seq:?} is no entry number"))?;
            Ok::<_, anyhow::Error>((seq, hash.to_string()))
        })
        .transpose()?;
    let conn = ctx.db.lock();
    let verdict = audit::verify_all(
        &ctx.dir,
        &conn,
        anchor.as_ref().map(|(s, h)| (*s, h.as_str())),
    )
    .context("reading audit log")?;
    match verdict {
        audit::Verdict::Intact { entries } => {
            println!("audit log intact: {entries} entries, every alert matches its seal");
            // Deleting entries from the end leaves a shorter chain that still verifies; a head
            // hash written down elsewhere is what catches that.
            if let Some(last) = audit::entries(&conn)?.last() {
                println!("head: entry {} hash {}", last.seq, last.hash);
                println!(
                    "record it elsewhere; check later with --anchor {}:{}",
                    last.seq, last.hash
                );
            }
            let checkpoints = audit::checkpoint::all(&ctx.dir)?;
            println!("{} signed checkpoints verified", checkpoints.len());
            Ok(())
        }
        audit::Verdict::Broken { at_seq, reason } => {
            bail!("audit log broken at entry {at_seq}: {reason}")
        }
    }
}
