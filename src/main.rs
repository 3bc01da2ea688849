//! `nachtwacht`: the server and its administration commands. Parsing and dispatch only; each
//! group of subcommands lives in its own module under `cli/`.

mod cli;

/// mimalloc instead of glibc's malloc: the ingest allocates per QUIC packet on several threads,
/// where glibc's arenas cost 9 % of the worker threads' time (perf, `bench ingest`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use cli::{
    accountability::{AlertCommand, ComplianceCommand, DossierCommand},
    bench::BenchCommand,
    lifecycle::*,
    pipeline::PipelineCommand,
    quarantine::QuarantineCommand,
    registry::*,
    research::ResearchCommand,
    service,
    trust::*,
    validate::ValidateCommand,
    DataDirArg,
};

#[derive(Parser)]
#[command(
    name = "nachtwacht",
    version,
    about = "Wearable-telemetry server for the Dutch justice chain"
)]
struct Cli {
    /// `text` (default) or `json` log lines; `serve` else follows `[operations] log_format`.
    #[arg(long, global = true, value_enum)]
    log_format: Option<cli::logging::LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory: config, CA, server certificate, keys, database, admin account.
    Init(service::InitArgs),
    /// Run the server: QUIC ingest, decode worker, pipelines and HTTP.
    Serve(service::ServeArgs),
    /// Check config, rules, retention, keys, certificates, permissions, storage and database;
    /// every problem at once with its fix (exit 1 on a problem). `serve` runs it at start-up.
    #[command(alias = "check-config")]
    Check(DataDirArg),
    /// A consistent backup while the server runs (keys only with --with-keys), manifest last.
    Backup(service::BackupArgs),
    /// Restore a backup into a new data directory; a partial or damaged one is refused.
    Restore(service::RestoreArgs),
    /// The state store: move an SQLite installation into PostgreSQL.
    #[command(subcommand)]
    Db(service::DbCommand),
    /// Base stations.
    #[command(subcommand)]
    Station(StationCommand),
    /// Persons, their programme, and what is held about them.
    #[command(subcommand)]
    Person(PersonCommand),
    /// Devices and their assignment to persons.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The retention policy: erasing what is past its time, with a dry run.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Legal holds: data kept past its retention for court proceedings.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Research projects and tokens.
    #[command(subcommand)]
    Research(ResearchCommand),
    /// Run the decode worker alone: spooled bundles to Parquet, then compaction. Safe beside a
    /// running `serve` (they take turns on a lock) and safe to kill at any point.
    Decode(service::DecodeArgs),
    /// Bundles the decode worker set aside, with their reasons.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// The server's age keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The indicator and alert pipelines.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Alerts: the court evidence dossier of one alert.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Court evidence dossiers: checking one offline.
    #[command(subcommand)]
    Dossier(DossierCommand),
    /// The compliance report: BIO controls with their evidence, judged by code.
    #[command(subcommand)]
    Compliance(ComplianceCommand),
    /// The data inventory for the DPIA: every table, dataset and file class, generated from code.
    Inventory(cli::accountability::InventoryArgs),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Web accounts (administrators, officers, managers, researchers, auditors).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Officers' caseloads.
    #[command(subcommand)]
    Caseload(CaseloadCommand),
    /// Everything at once on this machine: init, serve, simulated stations, pipelines, a DP answer.
    Demo(cli::demo::DemoArgs),
    /// Benchmarks (build with --release); each prints its figures and the floors measured in the
    /// same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Outputs for checking nachtwacht's rules against other implementations (docs/validation.md).
    #[command(subcommand)]
    Validate(ValidateCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Everything this process writes into a data directory is personal data: private to the
    // service account whatever umask it was started with (start-up also checks what exists).
    nachtwacht::base::datadir::restrict_umask();
    // Panics are counted and logged as well as printed (the hook is kept in place against
    // opendp's swapping of it: `base::panics`).
    nachtwacht::base::panics::install();
    let huge_pages = nachtwacht::base::process::disable_transparent_huge_pages();
    let cli = Cli::parse();
    let serving = match &cli.command {
        Command::Serve(args) => Some(args.dir.data_dir.as_path()),
        _ => None,
    };
    cli::logging::init(cli.log_format, serving);
    if let Err(e) = huge_pages {
        tracing::warn!(error = %e, "could not turn transparent huge pages off for this process");
    }
    // Polars, erasure, dossiers and backups are blocking work: never on the async workers.
    match cli.command {
        Command::Init(args) => service::init(args),
        Command::Serve(args) => service::serve(args).await,
        Command::Check(dir) => service::check(dir),
        Command::Backup(args) => tokio::task::spawn_blocking(move || service::backup(args)).await?,
        Command::Restore(args) => service::restore(args),
        Command::Db(c) => tokio::task::spawn_blocking(move || service::db(c)).await?,
        Command::Decode(args) => service::decode(args).await,
        Command::Station(c) => station(c),
        Command::Person(c) => tokio::task::spawn_blocking(move || person(c)).await?,
        Command::Device(c) => device(c),
        Command::Retention(c) => tokio::task::spawn_blocking(move || retention(c)).await?,
        Command::Hold(c) => hold(c),
        Command::Account(c) => account(c),
        Command::Caseload(c) => caseload(c),
        Command::Research(c) => cli::research::run(c),
        Command::Quarantine(c) => cli::quarantine::run(c),
        Command::Keys(c) => keys(c),
        Command::Audit(c) => audit(c),
        Command::Alert(c) => {
            tokio::task::spawn_blocking(move || cli::accountability::alert(c)).await?
        }
        Command::Dossier(c) => cli::accountability::dossier_command(c),
        Command::Inventory(args) => cli::accountability::inventory(args),
        Command::Compliance(c) => {
            tokio::task::spawn_blocking(move || cli::accountability::compliance(c)).await?
        }
        Command::Pipeline(c) => cli::pipeline::run(c).await,
        Command::Demo(args) => cli::demo::command(args).await,
        Command::Bench(c) => cli::bench::run(c).await,
        Command::Validate(c) => cli::validate::run(c).await,
    }
}
