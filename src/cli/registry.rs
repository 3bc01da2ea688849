//! `station`, `person`, `device`, `account` and `caseload`: the registry from the command line.
//! Every change is made as [`ACTOR_CLI`] and audited by the library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use nachtwacht::base::programme::Programme;
use nachtwacht::base::time::now_ms;
use nachtwacht::registry::{accounts, caseload, enroll, screening};
use nachtwacht_wire::DeviceKind;

use super::{time_or_now, DataDirArg, ACTOR_CLI};

#[derive(Subcommand)]
pub enum StationCommand {
    /// Issue a client certificate and write the station's config file (contains its private key).
    Add {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
        /// Reference of the person whose home the station is in (communication alerts name them).
        #[arg(long)]
        person: Option<String>,
    },
    /// Revoke a station: a new revocation list is signed; a running server refuses the station's
    /// next handshake and closes its open connections within seconds, without a restart.
    Revoke {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        name: String,
    },
    /// Issue a station a new key and certificate (stations renew by themselves over their
    /// connection 30 days before the end; this is for one that cannot): written as the station's
    /// `identity.toml`, to put in its directory. The old certificate works until the station
    /// first connects with the new one.
    Renew {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        name: String,
        /// Where to write identity.toml (private key inside; mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn station(command: StationCommand) -> anyhow::Result<()> {
    match command {
        StationCommand::Add {
            dir,
            name,
            out,
            person,
        } => {
            let ctx = dir.open()?;
            let station = enroll::add_station(&ctx, &name, ACTOR_CLI).context("adding station")?;
            if let Some(reference) = person {
                enroll::link_station(&ctx, &name, &reference, ACTOR_CLI)
                    .context("linking station to person")?;
            }
            nachtwacht::trust::secrets::write_private(&out, station.to_toml().as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "Station {name} enrolled; its config (with private key, mode 0600) is in {}",
                out.display()
            );
        }
        StationCommand::Revoke { dir, name } => {
            enroll::revoke_station(&dir.open()?, &name, ACTOR_CLI).context("revoking station")?;
            println!("Station {name} revoked");
        }
        StationCommand::Renew { dir, name, out } => {
            let identity =
                enroll::renew_station(&dir.open()?, &name, ACTOR_CLI).context("renewing")?;
            nachtwacht::trust::secrets::write_private(&out, identity.as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "New certificate for station {name} in {} (with its private key): put it in the \
                 station's directory as identity.toml",
                out.display()
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum PersonCommand {
    Add {
        #[command(flatten)]
        dir: DataDirArg,
        /// Operational case reference (stays in the database, never in a dataset).
        #[arg(long)]
        reference: String,
        /// alcohol-ban, aggression-training or tbs-leave.
        #[arg(long, value_parser = programme)]
        programme: Programme,
        /// Province, for research aggregates (e.g. utrecht).
        #[arg(long)]
        region: Option<String>,
        /// Birth year, released to research only as an age band.
        #[arg(long)]
        birth_year: Option<i32>,
        /// A case reference of the person's earlier supervision: a person supervised again (a
        /// new conviction) keeps one identity, so one research pseudonym.
        #[arg(long)]
        returning: Option<String>,
    },
    /// End a person's supervision: devices returned, home stations revoked, later bundles
    /// quarantined as "supervision ended"; the retention policy counts from this moment.
    Close {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        reference: String,
        /// When the supervision ended (RFC 3339); now when omitted.
        #[arg(long)]
        at: Option<String>,
    },
    /// The record handed over when a closed case file is archived: the export archive written
    /// under exports/ in the data directory, with a SHA-256 manifest beside it.
    Archive {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        reference: String,
    },
    /// Everything held about a person (GDPR art. 15) in one tar archive, with every access to it
    /// the audit log records; README.txt inside explains each file (docs/data-lifecycle.md).
    Export {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        reference: String,
        /// The archive to write (replaced if it exists; it holds personal data, mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn person(command: PersonCommand) -> anyhow::Result<()> {
    match command {
        PersonCommand::Add {
            dir,
            reference,
            programme,
            region,
            birth_year,
            returning,
        } => {
            let ctx = dir.open()?;
            let id = match returning {
                Some(earlier) => {
                    enroll::start_episode(&ctx, &earlier, &reference, programme, ACTOR_CLI)
                        .context("starting a new supervision")?
                }
                None => enroll::add_person(&ctx, &reference, programme, ACTOR_CLI)
                    .context("adding person")?,
            };
            if region.is_some() || birth_year.is_some() {
                enroll::set_research_attributes(&ctx, id, region.as_deref(), birth_year, ACTOR_CLI)
                    .context("setting research attributes")?;
            }
            println!("Person {id} enrolled in {}", programme.as_str());
        }
        PersonCommand::Close { dir, reference, at } => {
            let at_ms = time_or_now(at)?;
            let closed = nachtwacht::lifecycle::supervision::close(
                &dir.open()?,
                &reference,
                at_ms,
                ACTOR_CLI,
            )
            .with_context(|| format!("closing {reference}"))?;
            println!(
                "Supervision {reference} ended: {} device(s) returned, {} station(s) revoked",
                closed.devices_returned, closed.stations_revoked
            );
        }
        PersonCommand::Archive { dir, reference } => {
            let a = nachtwacht::lifecycle::export::archive_closed_case(
                &dir.open()?,
                &reference,
                ACTOR_CLI,
                now_ms(),
            )
            .with_context(|| format!("archiving {reference}"))?;
            println!(
                "{} written ({} files); manifest {} (sha256 {})",
                a.path.display(),
                a.report.members.len() + 1,
                a.manifest.display(),
                a.sha256
            );
        }
        PersonCommand::Export {
            dir,
            reference,
            out,
        } => {
            let r = nachtwacht::lifecycle::export::export_person(
                &dir.open()?,
                &reference,
                &out,
                ACTOR_CLI,
                now_ms(),
            )
            .with_context(|| format!("exporting {reference}"))?;
            println!(
                "{} written: {} files, {} readings, {} alerts, {} audit entries",
                out.display(),
                r.members.len() + 1,
                r.readings,
                r.alerts,
                r.accesses
            );
        }
    }
    Ok(())
}

fn programme(s: &str) -> Result<Programme, String> {
    Programme::parse(s).ok_or_else(|| {
        format!("unknown programme {s:?}: expected alcohol-ban, aggression-training or tbs-leave")
    })
}

fn device_kind(s: &str) -> Result<DeviceKind, String> {
    DeviceKind::parse(s)
        .ok_or_else(|| format!("unknown device kind {s:?}: expected ankle-monitor or wristband"))
}

#[derive(Subcommand)]
pub enum DeviceCommand {
    Assign {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        serial: String,
        /// ankle-monitor or wristband.
        #[arg(long, value_parser = device_kind)]
        kind: DeviceKind,
        #[arg(long)]
        person_id: i64,
        /// Start of the assignment, RFC 3339 (default: now).
        #[arg(long)]
        from: Option<String>,
    },
    /// End a device's current assignment (handed in, or supervision over): its readings from then
    /// on are attributed to nobody.
    Return {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        serial: String,
        /// End of the assignment, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
    },
    /// Pair a device with the station that uploads its readings (a replacement station takes over).
    Pair {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        serial: String,
        #[arg(long)]
        station: String,
        /// Start of the pairing, RFC 3339 (default: now).
        #[arg(long)]
        from: Option<String>,
    },
}

pub fn device(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Assign {
            dir,
            serial,
            kind,
            person_id,
            from,
        } => {
            let from_ms = time_or_now(from)?;
            enroll::assign_device(&dir.open()?, &serial, kind, person_id, from_ms, ACTOR_CLI)
                .context("assigning device")?;
            println!("Device {serial} assigned to person {person_id}");
        }
        DeviceCommand::Return { dir, serial, at } => {
            let at_ms = time_or_now(at)?;
            let person = enroll::end_assignment(&dir.open()?, &serial, at_ms, ACTOR_CLI)
                .context("ending the device's assignment")?;
            println!("Device {serial} returned: no longer assigned to person {person}");
        }
        DeviceCommand::Pair {
            dir,
            serial,
            station,
            from,
        } => {
            let from_ms = time_or_now(from)?;
            enroll::pair_device(&dir.open()?, &serial, &station, from_ms, ACTOR_CLI)
                .context("pairing device")?;
            println!("Device {serial} paired with station {station}");
        }
    }
    Ok(())
}

fn role(s: &str) -> Result<accounts::Role, String> {
    accounts::Role::parse(s).ok_or_else(|| format!("unknown role {s:?}"))
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an account; prints its password and TOTP secret once.
    Add {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        username: String,
        /// administrator, officer, manager, researcher or auditor
        #[arg(long, value_parser = role)]
        role: accounts::Role,
    },
    /// Print the current TOTP code of a secret (what an authenticator app would show), for
    /// trying the demo without a phone.
    Code {
        #[arg(long)]
        secret: String,
    },
    /// Record a staff screening (e.g. a VOG) of an account. Without one in force the account
    /// opens no personal data.
    Screening {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        username: String,
        /// vog or security-clearance
        #[arg(long, value_parser = screening_kind)]
        kind: screening::ScreeningKind,
        /// The day of the screening (YYYY-MM-DD).
        #[arg(long)]
        screened_on: chrono::NaiveDate,
        /// The first day it no longer counts (YYYY-MM-DD).
        #[arg(long)]
        expires: chrono::NaiveDate,
    },
}

fn screening_kind(s: &str) -> Result<screening::ScreeningKind, String> {
    screening::ScreeningKind::parse(s).ok_or_else(|| "vog or security-clearance".into())
}

pub fn account(command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Add {
            dir,
            username,
            role,
        } => {
            let ctx = dir.open()?;
            let new = accounts::create(&ctx.db, &username, role, ACTOR_CLI, now_ms())
                .context("creating account")?;
            println!("Account {username} ({}) created.", role.as_str());
            println!("  password:    {}", new.password);
            println!("  TOTP secret: {}", new.totp_secret);
            println!("  {}", new.otpauth_uri);
        }
        AccountCommand::Screening {
            dir,
            username,
            kind,
            screened_on,
            expires,
        } => {
            let ctx = dir.open()?;
            let (on, until) = (
                nachtwacht::base::time::midnight_ms(screened_on),
                nachtwacht::base::time::midnight_ms(expires),
            );
            screening::record(&ctx.db, &username, kind, on, until, ACTOR_CLI, now_ms())
                .context("recording the screening")?;
            println!(
                "Screening of {username} recorded: {} on {screened_on}, in force until {expires}.",
                kind.as_str()
            );
        }
        AccountCommand::Code { secret } => {
            let code =
                accounts::totp_code(&secret, now_ms()).context("the secret is not base32")?;
            println!("{code}");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum CaseloadCommand {
    /// Put a person on an officer's caseload from a day (UTC), optionally until a day.
    Assign {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        officer: String,
        #[arg(long)]
        person: String,
        /// YYYY-MM-DD; today when omitted.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// YYYY-MM-DD, inclusive; open-ended when omitted.
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
    },
}

pub fn caseload(command: CaseloadCommand) -> anyhow::Result<()> {
    let CaseloadCommand::Assign {
        dir,
        officer,
        person,
        from,
        to,
    } = command;
    let ctx = dir.open()?;
    let now = now_ms();
    let (from_ms, to_ms) = caseload::day_bounds(from, to, ctx.config.http.zone(), now);
    caseload::assign(&ctx.db, &officer, &person, from_ms, to_ms, ACTOR_CLI, now)
        .context("assigning caseload")?;
    println!("{person} is on {officer}'s caseload");
    Ok(())
}
