//! `nachtwacht`: the server and its administration commands.

mod bench_clock;
mod bench_decode;
mod bench_ingest;
mod bench_pipeline;
mod bench_research;
mod scr_check;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use nachtwacht::config::Config;
use nachtwacht::server::{Context, ListenOverrides};
use nachtwacht::{audit, demo, enroll, evaluate, init, research, secrets};

#[derive(Parser)]
#[command(
    name = "nachtwacht",
    version,
    about = "Wearable-telemetry server for the Dutch justice chain"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory: config, CA, server certificate, keys, database, admin account.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// DNS name stations use to reach the server (goes into the server certificate).
        #[arg(long, default_value = "localhost")]
        server_name: String,
    },
    /// Run the server: QUIC ingest, decode worker, pipelines and HTTP.
    Serve {
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        listen: ListenArgs,
    },
    /// Check a data directory's configuration file and report every problem.
    CheckConfig {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Base stations.
    Station {
        #[command(subcommand)]
        command: StationCommand,
    },
    /// Persons and their programme.
    Person {
        #[command(subcommand)]
        command: PersonCommand,
    },
    /// Devices and their assignment to persons.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Research projects and tokens.
    Research {
        #[command(subcommand)]
        command: ResearchCommand,
    },
    /// Run the decode worker alone: spooled bundles to Parquet, then compaction. Safe beside a
    /// running `serve` (they take turns on a lock) and safe to kill at any point.
    Decode {
        #[arg(long)]
        data_dir: PathBuf,
        /// Keep running, one pass every few seconds, until Ctrl-C or SIGTERM.
        #[arg(long)]
        watch: bool,
    },
    /// Bundles the decode worker set aside, with their reasons.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// The server's age keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The indicator and alert pipelines.
    Pipeline {
        #[command(subcommand)]
        command: PipelineCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Web accounts (administrators, officers, managers, researchers, auditors).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Officers' caseloads.
    Caseload {
        #[command(subcommand)]
        command: CaseloadCommand,
    },
    /// Everything at once on this machine: init, serve, simulated stations, pipelines, a DP answer.
    Demo {
        /// Keep the demo's data here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Stop cleanly after this long (e.g. 60s, 5m) instead of waiting for Ctrl-C.
        #[arg(long, value_parser = humantime::parse_duration)]
        exit_after: Option<Duration>,
        /// Simulated days of readings.
        #[arg(long, default_value_t = 3)]
        days: u32,
        #[command(flatten)]
        listen: ListenArgs,
    },
    /// Benchmarks (build with --release); each prints its figures and the floors measured in the
    /// same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Outputs for checking nachtwacht's rules against other implementations (docs/validation.md).
    Validate {
        #[command(subcommand)]
        command: ValidateCommand,
    },
}

#[derive(Subcommand)]
enum ValidateCommand {
    /// The SCR peaks the stress pipeline finds in an E4 export's EDA, one timestamp (ms) per line
    /// (read by pipelines/validation/scr_agreement.py).
    Scr {
        /// An E4 CSV export directory (EDA.csv and the other signals).
        #[arg(long)]
        e4: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Many stations uploading at once over loopback QUIC, then many idle connections.
    Ingest(bench_ingest::IngestArgs),
    /// The decode worker (decrypt, verify, validate, pseudonymise, write Parquet) beside a plain
    /// Parquet write of the same batches.
    Decode(bench_decode::DecodeArgs),
    /// The stress pipeline on a wristband-day and the alcohol rules on 10,000 person-days, beside
    /// a plain polars scan and group-by of the same files.
    Pipeline(bench_pipeline::PipelineArgs),
    /// DP query latency over 1,000 persons × 365 days, beside the same aggregates without DP.
    Research(bench_research::ResearchArgs),
}

#[derive(clap::Args)]
struct ListenArgs {
    /// QUIC ingest address (overrides the config), e.g. 127.0.0.1:0 for any free port.
    #[arg(long)]
    quic_listen: Option<SocketAddr>,
    /// HTTP address (overrides the config).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Run only the QUIC ingest and HTTP: no decode worker, no pipelines (a dedicated ingest
    /// node, and how `bench ingest` measures ingest alone).
    #[arg(long)]
    ingest_only: bool,
}

impl From<ListenArgs> for ListenOverrides {
    fn from(a: ListenArgs) -> Self {
        Self {
            quic: a.quic_listen,
            http: a.http_listen,
            ingest_only: a.ingest_only,
        }
    }
}

#[derive(Subcommand)]
enum StationCommand {
    /// Issue a client certificate and write the station's config file (contains its private key).
    Add {
        #[arg(long)]
        data_dir: PathBuf,
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
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum PersonCommand {
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        /// Operational case reference (stays in the database, never in a dataset).
        #[arg(long)]
        reference: String,
        /// alcohol-ban, aggression-training or tbs-leave.
        #[arg(long)]
        programme: String,
        /// Province, for research aggregates (e.g. utrecht).
        #[arg(long)]
        region: Option<String>,
        /// Birth year, released to research only as an age band.
        #[arg(long)]
        birth_year: Option<i32>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    AnkleMonitor,
    Wristband,
}

#[derive(Subcommand)]
enum DeviceCommand {
    Assign {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        serial: String,
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long)]
        person_id: i64,
        /// Start of the assignment, RFC 3339 (default: now).
        #[arg(long)]
        from: Option<String>,
    },
    /// End a device's current assignment (handed in, or supervision over): its readings from then
    /// on are attributed to nobody.
    Return {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        serial: String,
        /// End of the assignment, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
    },
    /// Pair a device with the station that uploads its readings (a replacement station takes over).
    Pair {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        serial: String,
        #[arg(long)]
        station: String,
        /// Start of the pairing, RFC 3339 (default: now).
        #[arg(long)]
        from: Option<String>,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// Every quarantined bundle, oldest first.
    List {
        #[arg(long)]
        data_dir: PathBuf,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One quarantined bundle, as JSON.
    Show {
        #[arg(long)]
        data_dir: PathBuf,
        bundle: String,
    },
    /// Send bundles back through decoding (after fixing the cause: an assignment, a pairing, a key).
    Retry {
        #[arg(long)]
        data_dir: PathBuf,
        /// Bundle ids; with --all, every quarantined bundle.
        bundles: Vec<String>,
        #[arg(long)]
        all: bool,
    },
    /// Set aside a bundle that waits to be decoded (one that keeps failing, or must not be
    /// processed); `retry` sends it back.
    Put {
        #[arg(long)]
        data_dir: PathBuf,
        bundle: String,
        /// Why, recorded with the bundle and in the audit log.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// New age identity; stations switch to its recipient at their next acknowledgement. Old
    /// identities are kept, so bundles sealed to them still decrypt.
    Rotate {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; fails naming the first entry that was changed, removed or moved.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
        /// A head recorded outside nachtwacht earlier, as ENTRY:HASH (what verify and the
        /// checkpoints print): the chain must still hold that entry with that hash.
        #[arg(long)]
        anchor: Option<String>,
    },
    /// Write today's signed checkpoint of the chain's head now (the server does so every
    /// pipeline interval) and print it.
    Checkpoint {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Write every entry with its hashes to stdout, for checking outside nachtwacht.
    Export {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account; prints its password and TOTP secret once.
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        username: String,
        /// administrator, officer, manager, researcher or auditor
        #[arg(long)]
        role: String,
    },
    /// Print the current TOTP code of a secret (what an authenticator app would show), for
    /// trying the demo without a phone.
    Code {
        #[arg(long)]
        secret: String,
    },
}

#[derive(Subcommand)]
enum CaseloadCommand {
    /// Put a person on an officer's caseload from a day (UTC), optionally until a day.
    Assign {
        #[arg(long)]
        data_dir: PathBuf,
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

#[derive(Subcommand)]
enum ResearchCommand {
    /// Create a research project with a total privacy budget.
    AddProject {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        name: String,
        /// The project's lifetime budget ε (at δ below).
        #[arg(long)]
        epsilon: f64,
        /// The δ of the (ε, δ) budget: the chance the ε guarantee fails. At most 0.001.
        #[arg(long, default_value_t = 1e-6)]
        delta: f64,
        #[arg(long, default_value_t = 1.0)]
        max_epsilon_per_query: f64,
    },
    /// Issue a bearer token for a project (shown once).
    Token {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        project: String,
        #[arg(long, default_value_t = 90)]
        ttl_days: u32,
    },
    /// List research tokens (ids only; the tokens themselves are never stored).
    Tokens {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        project: Option<String>,
    },
    /// Revoke a research token by the id `research tokens` shows; takes effect on the next request.
    RevokeToken {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
    },
}

const ACTOR_CLI: &str = "cli:administrator";

fn from_or_now(from: Option<String>) -> anyhow::Result<i64> {
    Ok(match from {
        Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .with_context(|| format!("{s:?} is not an RFC 3339 time"))?
            .timestamp_millis(),
        None => nachtwacht::now_ms(),
    })
}

async fn decode(data_dir: &std::path::Path, watch: bool) -> anyhow::Result<()> {
    let ctx = open(data_dir)?;
    let decoder = std::sync::Arc::new(nachtwacht::decode::Decoder::new(
        ctx.clone(),
        ctx.pseudonymiser()?,
    ));
    let stop = wait_for_stop_signal();
    tokio::pin!(stop);
    loop {
        let d = decoder.clone();
        let (report, compaction) =
            tokio::task::spawn_blocking(move || nachtwacht::decode::pass(&d))
                .await
                .context("decode task")?
                .context("decode pass")?;
        println!(
            "processed {} bundles ({} rows stored, {} flagged, {} discarded), quarantined {}; compacted {} files into {}",
            report.processed,
            report.rows_stored,
            report.rows_flagged,
            report.rows_discarded,
            report.quarantined,
            compaction.merged,
            compaction.written
        );
        if !watch {
            return Ok(());
        }
        tokio::select! {
            r = &mut stop => return r,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

fn quarantine(command: QuarantineCommand) -> anyhow::Result<()> {
    use nachtwacht::quarantine;
    match command {
        QuarantineCommand::List { data_dir, json } => {
            let entries = quarantine::list(&open(&data_dir)?, ACTOR_CLI)?;
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
        QuarantineCommand::Show { data_dir, bundle } => {
            let e = quarantine::show(&open(&data_dir)?, &bundle, ACTOR_CLI)?;
            println!("{}", serde_json::to_string_pretty(&e)?);
        }
        QuarantineCommand::Retry {
            data_dir,
            bundles,
            all,
        } => {
            let ctx = open(&data_dir)?;
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
            data_dir,
            bundle,
            reason,
        } => {
            quarantine::put(&open(&data_dir)?, &bundle, &reason, ACTOR_CLI)
                .with_context(|| format!("quarantining {bundle}"))?;
            println!("{bundle} quarantined");
        }
    }
    Ok(())
}

fn open(data_dir: &Path) -> anyhow::Result<Context> {
    Context::open(data_dir)
        .with_context(|| format!("opening data directory {}", data_dir.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Everything this process writes into a data directory is personal data: private to the
    // service account whatever umask it was started with (start-up also checks what exists).
    nachtwacht::datadir::restrict_umask();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Init {
            data_dir,
            server_name,
        } => {
            let mut config = Config::default();
            config.ingest.server_name = server_name;
            let r = init::init(&data_dir, &config, nachtwacht::now_ms()).context("init")?;
            println!("Initialised {}", data_dir.display());
            println!(
                "Administrator: {}  password: {}",
                r.admin_username, r.admin_password
            );
            println!(
                "Administrator TOTP secret (add to an authenticator app): {}",
                r.admin_totp_secret
            );
            println!("  {}", r.admin_otpauth_uri);
            println!("Server age recipient: {}", r.age_recipient);
        }
        Command::Serve { data_dir, listen } => {
            let ctx = open(&data_dir)?;
            let server = nachtwacht::server::start(ctx, listen.into())
                .await
                .context("starting server")?;
            println!(
                "QUIC ingest on {}, HTTP on http://{}",
                server.quic_addr, server.http_addr
            );
            wait_for_stop_signal().await?;
            server.shutdown().await;
        }
        Command::CheckConfig { data_dir } => {
            let path = nachtwacht::datadir::DataDir::new(&data_dir).config();
            Config::load(&path).with_context(|| format!("checking {}", path.display()))?;
            println!("{}: ok", path.display());
        }
        Command::Station { command } => {
            match command {
                StationCommand::Add {
                    data_dir,
                    name,
                    out,
                    person,
                } => {
                    let ctx = open(&data_dir)?;
                    let station =
                        enroll::add_station(&ctx, &name, ACTOR_CLI).context("adding station")?;
                    if let Some(reference) = person {
                        enroll::link_station(&ctx, &name, &reference, ACTOR_CLI)
                            .context("linking station to person")?;
                    }
                    secrets::write_private(&out, station.to_toml().as_bytes())
                        .with_context(|| format!("writing {}", out.display()))?;
                    println!("Station {name} enrolled; its config (with private key, mode 0600) is in {}", out.display());
                }
                StationCommand::Revoke { data_dir, name } => {
                    enroll::revoke_station(&open(&data_dir)?, &name, ACTOR_CLI)
                        .context("revoking station")?;
                    println!("Station {name} revoked");
                }
            }
        }
        Command::Person {
            command:
                PersonCommand::Add {
                    data_dir,
                    reference,
                    programme,
                    region,
                    birth_year,
                },
        } => {
            let ctx = open(&data_dir)?;
            let id = enroll::add_person(&ctx, &reference, &programme, ACTOR_CLI)
                .context("adding person")?;
            if region.is_some() || birth_year.is_some() {
                enroll::set_research_attributes(&ctx, id, region.as_deref(), birth_year, ACTOR_CLI)
                    .context("setting research attributes")?;
            }
            println!("Person {id} enrolled in {programme}");
        }
        Command::Device {
            command:
                DeviceCommand::Assign {
                    data_dir,
                    serial,
                    kind,
                    person_id,
                    from,
                },
        } => {
            let from_ms = from_or_now(from)?;
            let kind = match kind {
                Kind::AnkleMonitor => nachtwacht_wire::DeviceKind::AnkleMonitor,
                Kind::Wristband => nachtwacht_wire::DeviceKind::Wristband,
            };
            enroll::assign_device(
                &open(&data_dir)?,
                &serial,
                kind,
                person_id,
                from_ms,
                ACTOR_CLI,
            )
            .context("assigning device")?;
            println!("Device {serial} assigned to person {person_id}");
        }
        Command::Device {
            command:
                DeviceCommand::Return {
                    data_dir,
                    serial,
                    at,
                },
        } => {
            let at_ms = from_or_now(at)?;
            let person = enroll::end_assignment(&open(&data_dir)?, &serial, at_ms, ACTOR_CLI)
                .context("ending the device's assignment")?;
            println!("Device {serial} returned: no longer assigned to person {person}");
        }
        Command::Device {
            command:
                DeviceCommand::Pair {
                    data_dir,
                    serial,
                    station,
                    from,
                },
        } => {
            let from_ms = from_or_now(from)?;
            enroll::pair_device(&open(&data_dir)?, &serial, &station, from_ms, ACTOR_CLI)
                .context("pairing device")?;
            println!("Device {serial} paired with station {station}");
        }
        Command::Decode { data_dir, watch } => decode(&data_dir, watch).await?,
        Command::Quarantine { command } => quarantine(command)?,
        Command::Keys {
            command: KeysCommand::Rotate { data_dir },
        } => {
            let recipient =
                nachtwacht::keys::rotate(&open(&data_dir)?, ACTOR_CLI).context("rotating keys")?;
            println!("New age recipient: {recipient}");
            println!(
                "Stations switch to it at their next acknowledgement; old identities are kept."
            );
        }
        Command::Research { command } => match command {
            ResearchCommand::AddProject {
                data_dir,
                name,
                epsilon,
                delta,
                max_epsilon_per_query,
            } => {
                let budget = research::Budget {
                    epsilon,
                    delta,
                    max_epsilon_per_query,
                };
                research::create_project(&open(&data_dir)?, &name, budget, ACTOR_CLI)
                    .context("creating research project")?;
                println!("Research project {name} created with (ε, δ) = ({epsilon}, {delta})");
            }
            ResearchCommand::Token {
                data_dir,
                project,
                ttl_days,
            } => {
                let token = research::issue_token(&open(&data_dir)?, &project, ttl_days, ACTOR_CLI)
                    .context("issuing token")?;
                println!("{token}");
                eprintln!("token id: {}", research::token_id(&token));
            }
            ResearchCommand::Tokens { data_dir, project } => {
                let ctx = open(&data_dir)?;
                let tokens =
                    research::list_tokens(&ctx, project.as_deref()).context("listing tokens")?;
                let day = |ms: i64| {
                    chrono::DateTime::from_timestamp_millis(ms)
                        .map(|t| t.format("%Y-%m-%d").to_string())
                        .unwrap_or_default()
                };
                println!(
                    "{:<14} {:<20} {:<11} {:<11} revoked",
                    "id", "project", "created", "expires"
                );
                for t in tokens {
                    println!(
                        "{:<14} {:<20} {:<11} {:<11} {}",
                        t.id,
                        t.project,
                        day(t.created_at_ms),
                        day(t.expires_at_ms),
                        t.revoked_at_ms.map(day).unwrap_or_else(|| "-".into())
                    );
                }
            }
            ResearchCommand::RevokeToken { data_dir, id } => {
                research::revoke_token(&open(&data_dir)?, &id, ACTOR_CLI)
                    .context("revoking token")?;
                println!("Token {id} revoked");
            }
        },
        Command::Pipeline {
            command:
                PipelineCommand::Run {
                    data_dir,
                    from,
                    to,
                    chunk_days,
                },
        } => {
            let ctx = open(&data_dir)?;
            let p = ctx.pseudonymiser().context("pseudonym keys")?;
            let rules =
                nachtwacht::rules_files::load(&ctx.dir, &ctx.db, "cli", nachtwacht::now_ms())
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
        }
        Command::Audit {
            command: AuditCommand::Verify { data_dir, anchor },
        } => {
            let ctx = open(&data_dir)?;
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
                    // Deleting entries from the end leaves a shorter chain that still verifies;
                    // a head hash written down elsewhere is what catches that.
                    if let Some(last) = audit::entries(&conn)?.last() {
                        println!("head: entry {} hash {}", last.seq, last.hash);
                        println!(
                            "record it elsewhere; check later with --anchor {}:{}",
                            last.seq, last.hash
                        );
                    }
                    let checkpoints = audit::checkpoint::all(&ctx.dir)?;
                    println!("{} signed checkpoints verified", checkpoints.len());
                }
                audit::Verdict::Broken { at_seq, reason } => {
                    bail!("audit log broken at entry {at_seq}: {reason}")
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Checkpoint { data_dir },
        } => {
            let ctx = open(&data_dir)?;
            let written = audit::checkpoint::write(&ctx.dir, &ctx.db.lock(), nachtwacht::now_ms())
                .context("writing the checkpoint")?;
            match written {
                Some(c) => println!("checkpoint: entry {} hash {}", c.seq, c.hash),
                None => println!("the audit log is empty: nothing to anchor"),
            }
        }
        Command::Audit {
            command: AuditCommand::Export { data_dir, format },
        } => {
            let ctx = open(&data_dir)?;
            let entries = audit::entries(&ctx.db.lock()).context("reading audit log")?;
            match format {
                ExportFormat::Json => println!("{}", audit::to_json(&entries)),
                ExportFormat::Csv => print!("{}", audit::to_csv(&entries)),
            }
        }
        Command::Account {
            command:
                AccountCommand::Add {
                    data_dir,
                    username,
                    role,
                },
        } => {
            let role = nachtwacht::accounts::Role::parse(&role)
                .with_context(|| format!("unknown role {role:?}"))?;
            let ctx = open(&data_dir)?;
            let new = nachtwacht::accounts::create(
                &ctx.db,
                &username,
                role,
                ACTOR_CLI,
                nachtwacht::now_ms(),
            )
            .context("creating account")?;
            println!("Account {username} ({}) created.", role.as_str());
            println!("  password:    {}", new.password);
            println!("  TOTP secret: {}", new.totp_secret);
            println!("  {}", new.otpauth_uri);
        }
        Command::Account {
            command: AccountCommand::Code { secret },
        } => {
            let code = nachtwacht::accounts::totp_code(&secret, nachtwacht::now_ms())
                .context("the secret is not base32")?;
            println!("{code}");
        }
        Command::Caseload {
            command:
                CaseloadCommand::Assign {
                    data_dir,
                    officer,
                    person,
                    from,
                    to,
                },
        } => {
            let ctx = open(&data_dir)?;
            let midnight = nachtwacht::midnight_ms;
            let now = nachtwacht::now_ms();
            let from_ms = from
                .map(midnight)
                .unwrap_or(now.div_euclid(nachtwacht::DAY_MS) * nachtwacht::DAY_MS);
            let to_ms = to.map(|d| midnight(d) + nachtwacht::DAY_MS);
            nachtwacht::caseload::assign(
                &ctx.db, &officer, &person, from_ms, to_ms, ACTOR_CLI, now,
            )
            .context("assigning caseload")?;
            println!("{person} is on {officer}'s caseload");
        }
        Command::Demo {
            data_dir,
            exit_after,
            days,
            listen,
        } => run_demo(data_dir, exit_after, days, listen).await?,
        Command::Bench {
            command: BenchCommand::Ingest(args),
        } => bench_ingest::run(args).await?,
        Command::Validate {
            command: ValidateCommand::Scr { e4 },
        } => {
            let peaks = tokio::task::spawn_blocking(move || scr_check::scr_peaks(&e4))
                .await
                .context("SCR task")??;
            println!("ts_ms");
            for t in peaks {
                println!("{t}");
            }
        }
        Command::Bench {
            command: BenchCommand::Decode(args),
        } => tokio::task::spawn_blocking(move || bench_decode::run(args))
            .await
            .context("bench task")??,
        Command::Bench {
            command: BenchCommand::Pipeline(args),
        } => tokio::task::spawn_blocking(move || bench_pipeline::run(args))
            .await
            .context("bench task")??,
        Command::Bench {
            command: BenchCommand::Research(args),
        } => tokio::task::spawn_blocking(move || bench_research::run(args))
            .await
            .context("bench task")??,
    }
    Ok(())
}

async fn run_demo(
    data_dir: Option<PathBuf>,
    exit_after: Option<Duration>,
    days: u32,
    listen: ListenArgs,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let run = demo::run(demo::DemoOptions {
        data_dir,
        listen: listen.into(),
        days,
    })
    .await
    .context("running the demo")?;
    let fmt_time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    println!(
        "nachtwacht demo is running (data in {})",
        run.data_dir.display()
    );
    println!("  Web:          http://{}/", run.server.http_addr);
    println!("  QUIC ingest:  {}", run.server.quic_addr);
    println!(
        "  Admin login:  admin / {}  (TOTP secret {})",
        run.admin_password, run.admin_totp_secret
    );
    println!(
        "  Officer login: {} / {}  (TOTP secret {}; every demo person is on this caseload)",
        demo::OFFICER,
        run.officer_password,
        run.officer_totp_secret
    );
    println!("  Current TOTP code: nachtwacht account code --secret <secret>");
    println!(
        "  Research API: POST http://{}/api/v1/research/query",
        run.server.http_addr
    );
    println!(
        "  Research token (project demo-wodc): {}",
        run.research_token
    );
    println!("  Bundles acknowledged: {}", run.bundles_acknowledged);
    println!("Alerts raised ({}):", run.alerts.len());
    for a in &run.alerts {
        println!(
            "  {} {:<12} {:<7} from {}  peak TAC {}  evidence bundles {}",
            a.person_reference,
            a.kind,
            a.severity,
            fmt_time(a.start_ms),
            a.peak_tac_g_dl
                .map(|v| format!("{v:.3} g/dL"))
                .unwrap_or_else(|| "-".into()),
            a.evidence_bundles
        );
    }
    let acc = run
        .answer
        .accuracy_95
        .first()
        .map(|a| a.accuracy)
        .unwrap_or(f64::NAN);
    println!(
        "DP answer: person-days with data ≈ {:.1} (±{:.1} at 95%, noise only), ε spent {:.3}, ε left {:.3}, privacy unit: {}",
        run.answer.value.unwrap_or(f64::NAN), acc, run.answer.epsilon_spent, run.answer.budget_remaining, run.answer.privacy_unit
    );
    println!("Ready in {:.1} s.", started.elapsed().as_secs_f64());
    match exit_after {
        Some(d) => {
            let left = d.saturating_sub(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            println!("Press Ctrl-C to stop.");
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
        }
    }
    run.server.shutdown().await;
    println!(
        "Demo stopped. Its data stays in {} for inspection; delete it when done.",
        run.data_dir.display()
    );
    Ok(())
}

/// Ctrl-C, or SIGTERM from systemd: either starts a graceful shutdown.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    tracing::info!("stop signal received; draining uploads");
    Ok(())
}

#[derive(Subcommand)]
enum PipelineCommand {
    /// Evaluate all data, or backfill the UTC days `--from`..=`--to` (e.g. after a rule change).
    /// The server's scheduler does the same for new data on its own.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
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
