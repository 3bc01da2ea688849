//! `retention` and `hold`: the retention policy run by hand (with a dry run), and legal holds.

use std::io::{IsTerminal, Write};

use anyhow::Context as _;
use clap::Subcommand;
use nachtwacht::lifecycle::hold::{self, HoldActor, HoldTarget};
use nachtwacht::lifecycle::{policy, retention};

use super::{time_or_now, DataDirArg, ACTOR_CLI};

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Erase everything the retention policy (retention.toml) says is past its time, from every
    /// file and table, leaving tombstones in the audit log. Data under a legal hold stays.
    Run {
        #[command(flatten)]
        dir: DataDirArg,
        /// List what would be erased and what holds keep; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run as if it were this time (RFC 3339), e.g. to see what a later run will erase.
        #[arg(long)]
        at: Option<String>,
    },
    /// Check retention.toml: every problem at once.
    Check {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

/// A progress bar on a terminal, one line per stage otherwise.
fn progress(stage: &str, done: usize, total: usize) {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width);
        let _ = write!(
            err,
            "\r{stage:>10} [{}{}] {done}/{total}   ",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        if stage == "done" {
            let _ = writeln!(err);
        }
    } else if done == 0 || done == total {
        let _ = writeln!(err, "{stage}: {done}/{total}");
    }
}

/// `retention.toml`, validated, loaded by the operator (a change is audited under their name).
fn load_policy(ctx: &nachtwacht::base::Context) -> anyhow::Result<policy::RetentionPolicy> {
    policy::load(
        &ctx.dir,
        &ctx.db,
        ACTOR_CLI,
        nachtwacht::base::time::now_ms(),
    )
    .context("reading the retention policy")
}

pub fn retention(command: RetentionCommand) -> anyhow::Result<()> {
    match command {
        RetentionCommand::Run { dir, dry_run, at } => {
            let ctx = dir.open()?;
            let now = time_or_now(at)?;
            let policy = load_policy(&ctx)?;
            let (plan, report) = retention::run(&ctx, &policy, now, dry_run, ACTOR_CLI, &progress)
                .context("running the retention policy")?;
            if dry_run {
                println!(
                    "Dry run: nothing was changed. Due under {}:",
                    policy.digest()
                );
            } else {
                println!("Erased under {}:", policy.digest());
            }
            print!("{}", retention::describe(&plan, &report));
        }
        RetentionCommand::Check { dir } => {
            let ctx = dir.open()?;
            let policy = load_policy(&ctx)?;
            for class in policy::DataClass::ALL {
                println!(
                    "{:<13} {:>6} days from {}",
                    class.as_str(),
                    policy.keep_days(class),
                    class.anchor().as_str()
                );
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum HoldCommand {
    /// Keep a person's data, or one alert with its evidence, past its retention ("in court
    /// proceedings"), until the hold is released.
    Place {
        #[command(flatten)]
        dir: DataDirArg,
        /// Hold everything of the person with this case reference.
        #[arg(long, conflicts_with = "alert", required_unless_present = "alert")]
        reference: Option<String>,
        /// Hold one alert (its number) with its workflow and evidence.
        #[arg(long)]
        alert: Option<i64>,
        #[arg(long)]
        reason: String,
    },
    /// Release a hold: the data is then kept only as long as the policy says.
    Release {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        id: i64,
        #[arg(long)]
        reason: String,
    },
    /// Every hold in force.
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

pub fn hold(command: HoldCommand) -> anyhow::Result<()> {
    let now = nachtwacht::base::time::now_ms();
    match command {
        HoldCommand::Place {
            dir,
            reference,
            alert,
            reason,
        } => {
            let ctx = dir.open()?;
            let target = match (reference, alert) {
                (_, Some(alert)) => HoldTarget::Alert(alert),
                (Some(reference), None) => {
                    let person =
                        nachtwacht::registry::enroll::person_id(&ctx.db.lock(), &reference)?
                            .with_context(|| format!("no person with reference {reference:?}"))?;
                    HoldTarget::Person(person)
                }
                (None, None) => anyhow::bail!("--reference or --alert"),
            };
            let id = hold::place(
                &mut ctx.db.lock(),
                HoldActor::Operator(ACTOR_CLI),
                target,
                &reason,
                now,
            )
            .context("placing the hold")?;
            println!("Hold {id} placed");
        }
        HoldCommand::Release { dir, id, reason } => {
            let ctx = dir.open()?;
            hold::release(
                &mut ctx.db.lock(),
                HoldActor::Operator(ACTOR_CLI),
                id,
                &reason,
                now,
            )
            .with_context(|| format!("releasing hold {id}"))?;
            println!("Hold {id} released");
        }
        HoldCommand::List { dir } => {
            let ctx = dir.open()?;
            for h in hold::in_force(&ctx.db.lock(), None)? {
                let what = match h.alert_id {
                    Some(a) => format!("alert {a}"),
                    None => format!("person {}", h.person_id),
                };
                println!(
                    "{:>4}  {what:<14} by {:<12} {}",
                    h.id, h.placed_by, h.reason
                );
            }
        }
    }
    Ok(())
}
