//! `init`, `serve`, `check`, `backup`, `restore` and `decode`: creating a data directory, running
//! the service (or its decode worker alone), checking it, and backing it up.

use std::sync::Arc;

use tokio::sync::Notify;

use anyhow::Context as _;
use nachtwacht::base::config::Config;

use super::{wait_for_stop_signal, DataDirArg, ListenArgs};

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// DNS name stations use to reach the server (goes into the server certificate).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Keep the state in this PostgreSQL database instead of SQLite in the data directory
    /// (a URL without password, e.g. `postgres://nachtwacht@db:5432/nachtwacht?sslmode=require`).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The file with the PostgreSQL password (never on the command line).
    #[arg(long, value_name = "FILE", requires = "database_url")]
    database_password_file: Option<String>,
    /// Keep bundle ciphertexts (spool, evidence, quarantine) in this S3-compatible endpoint's
    /// bucket instead of the data directory, e.g. `https://s3.example.nl`.
    #[arg(long, value_name = "URL", requires_all = ["s3_bucket", "s3_access_key_id", "s3_secret_key_file"])]
    s3_endpoint: Option<String>,
    #[arg(long, value_name = "NAME", requires = "s3_endpoint")]
    s3_bucket: Option<String>,
    /// Keys go under this prefix in the bucket.
    #[arg(
        long,
        value_name = "PREFIX",
        requires = "s3_endpoint",
        default_value = ""
    )]
    s3_prefix: String,
    #[arg(long, value_name = "ID", requires = "s3_endpoint")]
    s3_access_key_id: Option<String>,
    /// The file with the secret access key (never on the command line).
    #[arg(long, value_name = "FILE", requires = "s3_endpoint")]
    s3_secret_key_file: Option<std::path::PathBuf>,
    /// Accept an `http://` endpoint (a store on this machine only).
    #[arg(long, requires = "s3_endpoint")]
    s3_allow_http: bool,
}

pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let mut config = Config::default();
    config.ingest.server_name = args.server_name;
    if let Some(url) = &args.database_url {
        config.database = nachtwacht::base::config::DatabaseConfig::postgres(
            url,
            args.database_password_file.as_deref(),
        );
    }
    if let Some(endpoint) = &args.s3_endpoint {
        let secret = args.s3_secret_key_file.as_ref().expect("required by clap");
        let secret =
            std::path::absolute(secret).with_context(|| format!("{}", secret.display()))?;
        config.storage = nachtwacht::base::config::StorageConfig {
            backend: nachtwacht::base::config::StorageBackend::S3,
            endpoint: Some(endpoint.clone()),
            bucket: args.s3_bucket.clone(),
            prefix: args.s3_prefix.clone(),
            access_key_id: args.s3_access_key_id.clone(),
            secret_access_key_file: Some(secret.display().to_string()),
            allow_http: args.s3_allow_http,
            ..Default::default()
        };
    }
    let problems = config.problems();
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
    let data_dir = &args.dir.data_dir;
    let r = nachtwacht::server::init::init(data_dir, &config, nachtwacht::base::time::now_ms())
        .context("init")?;
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
    Ok(())
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    #[command(flatten)]
    listen: ListenArgs,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let server = nachtwacht::server::start(args.dir.open()?, args.listen.into())
        .await
        .context("starting server")?;
    // One line naming every listener this node has, for the operator and for `bench ingest`,
    // which reads it: "QUIC ingest on A, HTTP on http://B, metrics on http://C".
    let listeners: Vec<String> = [
        server.quic.map(|a| format!("QUIC ingest on {a}")),
        server.http.map(|a| format!("HTTP on http://{a}")),
        server
            .metrics_addr
            .map(|a| format!("metrics on http://{a}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    println!("{} (roles {})", listeners.join(", "), server.roles);
    wait_for_stop_signal().await?;
    server.shutdown().await;
    Ok(())
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// Keep running, one pass every few seconds, until Ctrl-C or SIGTERM.
    #[arg(long)]
    watch: bool,
}

pub async fn decode(args: DecodeArgs) -> anyhow::Result<()> {
    let ctx = args.dir.open()?;
    let decoder = Arc::new(nachtwacht::decode::Decoder::new(
        ctx.clone(),
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir)?,
    ));
    if args.watch {
        // The server's own decode loop, stopped by Ctrl-C or SIGTERM; it logs every pass.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(nachtwacht::server::decode_loop(
            decoder,
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
            stopped,
        ));
        wait_for_stop_signal().await?;
        let _ = stop.send(true);
        return worker.await.context("decode loop");
    }
    let (report, compaction) =
        tokio::task::spawn_blocking(move || nachtwacht::decode::pass(&decoder))
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
    Ok(())
}

#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// Where the backup goes: a new or empty directory.
    #[arg(long)]
    out: std::path::PathBuf,
    /// Also copy the keys (age identity, pseudonym keys, audit signing key, CA and server
    /// keys), under `keys/` of the backup, to be stored apart from it.
    #[arg(long)]
    with_keys: bool,
}

pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let ctx = args.dir.open()?;
    let actor = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let manifest = nachtwacht::ops::backup::backup(&ctx, &args.out, args.with_keys, &actor)
        .with_context(|| format!("backing up into {}", args.out.display()))?;
    println!(
        "Backup in {}: {} files, {} bundles, {} alerts, {} audit entries{}.",
        args.out.display(),
        manifest.files.len(),
        manifest.bundles,
        manifest.alerts,
        manifest.audit_entries,
        if manifest.with_keys {
            "; keys under keys/ (store them apart)"
        } else {
            "; no keys (keep your own copy of keys/ and pki/*.key)"
        }
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup (a directory with manifest.json).
    #[arg(long)]
    from: std::path::PathBuf,
    /// The new data directory: absent or empty.
    #[arg(long)]
    data_dir: std::path::PathBuf,
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let manifest = nachtwacht::ops::backup::restore(&args.from, &args.data_dir)
        .with_context(|| format!("restoring {}", args.from.display()))?;
    println!(
        "Restored {} files into {}: {} bundles, {} alerts, {} audit entries.{}",
        manifest.files.len(),
        args.data_dir.display(),
        manifest.bundles,
        manifest.alerts,
        manifest.audit_entries,
        if manifest.with_keys {
            ""
        } else {
            " The backup had no keys: put keys/ and pki/*.key back before `serve`."
        }
    );
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum DbCommand {
    /// Copy this installation's SQLite state into an empty PostgreSQL database, verify the copy
    /// (row counts, the audit chain) and point the configuration at it. Stop the server first.
    MigrateToPostgres {
        #[command(flatten)]
        dir: DataDirArg,
        /// The database's URL without password, e.g. `postgres://nachtwacht@db:5432/nachtwacht`.
        #[arg(long)]
        url: String,
        /// The file with the database password.
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
        /// Certificate authorities (PEM) of the database server, for `sslmode=require`.
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
    },
}

pub fn db(command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::MigrateToPostgres {
            dir,
            url,
            password_file,
            ca_file,
        } => {
            let target = nachtwacht::base::db::PostgresTarget {
                url,
                password_file,
                ca_file,
            };
            let shown = target.to_string();
            let report = nachtwacht::ops::migrate::to_postgres(
                &dir.data_dir,
                &target,
                &mut |table, done, total| progress_bar(table, done, total),
            )
            .with_context(|| format!("migrating {} to {shown}", dir.data_dir.display()))?;
            eprintln!();
            println!(
                "Copied {} rows of {} tables into {shown}; audit chain intact ({} entries). \
                 {} now uses PostgreSQL; its state.sqlite is no longer read (remove it when the \
                 new store has been backed up).",
                report.rows.values().sum::<i64>(),
                report.rows.len(),
                report.audit_entries,
                dir.data_dir.display()
            );
            Ok(())
        }
    }
}

/// One line on standard error, redrawn: `table [#####.....] done/total`.
fn progress_bar(table: &str, done: i64, total: i64) {
    use std::io::Write;
    const WIDTH: i64 = 30;
    let filled = if total > 0 {
        done * WIDTH / total
    } else {
        WIDTH
    };
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { '#' } else { '.' })
        .collect();
    let mut err = std::io::stderr();
    let _ = write!(err, "\r{table:<24} [{bar}] {done}/{total}   ");
    let _ = err.flush();
}

pub fn check(dir: DataDirArg) -> anyhow::Result<()> {
    let report = nachtwacht::ops::check::run(&dir.data_dir, nachtwacht::base::time::now_ms());
    print!("{report}");
    let (problems, warnings) = (report.problems().count(), report.warnings().count());
    println!(
        "{}: {problems} problem(s), {warnings} warning(s)",
        dir.data_dir.display()
    );
    if problems > 0 {
        std::process::exit(1);
    }
    Ok(())
}
