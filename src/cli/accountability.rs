//! Evidence for courts, auditors and the data-protection officer: `alert dossier`,
//! `dossier verify`, `compliance report` and `inventory` (docs/accountability.md).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use nachtwacht::accountability::dossier;
use nachtwacht::alerts::casework::Reader;
use nachtwacht::base::time::now_ms;

use super::{DataDirArg, ACTOR_CLI};

#[derive(Subcommand)]
pub enum AlertCommand {
    /// Write the court evidence dossier of an alert: one archive signed by the server.
    Dossier {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        id: i64,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn alert(command: AlertCommand) -> anyhow::Result<()> {
    match command {
        AlertCommand::Dossier { dir, id, out } => {
            let ctx = dir.open()?;
            let d = dossier::build(&ctx, Reader::Operator(ACTOR_CLI), id, now_ms())
                .with_context(|| format!("building the dossier of alert {id}"))?;
            nachtwacht::base::fsio::write_durably(&out, &d.archive)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "Dossier of alert {id} written to {} ({} members, {} ciphertexts, {} readings)",
                out.display(),
                d.members.len() + 2,
                d.ciphertexts,
                d.readings
            );
            println!("sha256 {}", d.sha256);
            if !d.pruned.is_empty() {
                println!(
                    "evidence copies already pruned (not enclosed): {}",
                    d.pruned.join(", ")
                );
            }
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub enum DossierCommand {
    /// Check a dossier offline: the server's signature, every member's hash, the audit entries,
    /// and (with --identity) that every reading decrypts and decodes from the enclosed ciphertexts.
    Verify {
        file: PathBuf,
        /// The server's age identities (keys/age-identity.txt), to decrypt the ciphertexts.
        #[arg(long)]
        identity: Option<PathBuf>,
        /// The signing key the dossier must be signed with (hex), e.g. from an audit checkpoint.
        #[arg(long)]
        public_key: Option<String>,
    },
}

pub fn dossier_command(command: DossierCommand) -> anyhow::Result<()> {
    match command {
        DossierCommand::Verify {
            file,
            identity,
            public_key,
        } => {
            let archive =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let identities = identity
                .map(|p| {
                    nachtwacht::trust::secrets::load_age_identities(&p)
                        .with_context(|| format!("reading identities from {}", p.display()))
                })
                .transpose()?;
            let v = dossier::verify(&archive, identities.as_deref(), public_key.as_deref());
            println!(
                "dossier of alert {}, signed by {}",
                v.alert_id, v.public_key
            );
            for line in &v.checked {
                println!("  ok       {line}");
            }
            for line in &v.unchecked {
                println!("  unchecked {line}");
            }
            for p in &v.problems {
                println!("  FAILED   {}: {}", p.member, p.reason);
            }
            if v.ok() {
                println!("VERIFIED");
                Ok(())
            } else {
                anyhow::bail!(
                    "the dossier does not verify: {} problem(s), first in {}",
                    v.problems.len(),
                    v.problems[0].member
                )
            }
        }
    }
}

#[derive(Subcommand)]
pub enum ComplianceCommand {
    /// Write the compliance report (HTML): each BIO control with its evidence and a verdict.
    Report {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        out: PathBuf,
        /// Exit non-zero when a control fails (for monitoring).
        #[arg(long)]
        check: bool,
    },
}

pub fn compliance(command: ComplianceCommand) -> anyhow::Result<()> {
    use nachtwacht::accountability::compliance::{self, Verdict};
    match command {
        ComplianceCommand::Report { dir, out, check } => {
            let ctx = dir.open()?;
            let report = compliance::report(&ctx, ACTOR_CLI, now_ms())
                .context("building the compliance report")?;
            nachtwacht::base::fsio::write_durably(&out, compliance::html(&report).as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
            for c in &report.controls {
                let word = match c.verdict {
                    Verdict::Pass => "pass",
                    Verdict::Fail => "FAIL",
                };
                println!("{word:<5} {:<22} {}", c.id.as_str(), c.summary);
                if c.verdict == Verdict::Fail {
                    for f in &c.findings {
                        println!("      {f}");
                    }
                }
            }
            let failed = report.failed();
            println!("report written to {}", out.display());
            if check && !failed.is_empty() {
                anyhow::bail!(
                    "{} control(s) fail: {}",
                    failed.len(),
                    failed
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum InventoryFormat {
    Markdown,
    Json,
}

#[derive(clap::Args)]
pub struct InventoryArgs {
    #[arg(long, value_enum, default_value = "markdown")]
    format: InventoryFormat,
}

/// Prints the data inventory for the DPIA (docs/dpia-inventory.md is its Markdown).
pub fn inventory(args: InventoryArgs) -> anyhow::Result<()> {
    use nachtwacht::accountability::inventory;
    match args.format {
        InventoryFormat::Markdown => print!("{}", inventory::markdown()),
        InventoryFormat::Json => println!("{}", serde_json::to_string_pretty(&inventory::json())?),
    }
    Ok(())
}
