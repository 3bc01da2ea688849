//! Wires the stages into one running server: QUIC ingest, the decode worker, the pipeline
//! scheduler and the HTTP interface, with one shutdown signal for all of them.

pub mod init;
pub mod observe;
pub mod roles;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::{error, info};

use crate::base::db::Db;
use crate::base::Context;
use crate::decode::Decoder;
use crate::trust::pseudonym::Pseudonymiser;
use crate::{base::config, ingest, trust::secrets, web};
pub use roles::{Role, Roles};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the data directory is not ready to serve (`nachtwacht check` says the same):\n{0}")]
    Check(String),
    #[error(transparent)]
    Context(#[from] crate::base::context::Error),
    #[error(transparent)]
    Secrets(#[from] secrets::Error),
    #[error(transparent)]
    Ingest(#[from] ingest::Error),
    #[error(transparent)]
    WebTls(#[from] web::tls::Error),
    #[error(transparent)]
    Audit(#[from] crate::trust::audit::Error),
    #[error(transparent)]
    Rules(#[from] crate::evaluate::rules_files::Error),
    #[error(transparent)]
    Retention(#[from] crate::lifecycle::policy::Error),
    #[error("binding HTTP {addr}: {source}")]
    HttpBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Overrides of the configured listen addresses (tests and the demo use port 0), and which roles
/// this process runs.
#[derive(Debug, Clone, Default)]
pub struct ListenOverrides {
    pub quic: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// The operations listener (`/metrics`, `/healthz`, `/readyz`); `None` keeps the configured
    /// one.
    pub metrics: Option<SocketAddr>,
    /// The roles this process runs (all by default).
    pub roles: Roles,
}

pub struct RunningServer {
    /// Where QUIC ingest listens, on a node with the ingest role.
    pub quic: Option<SocketAddr>,
    /// Where the web interface listens, on a node with the web role.
    pub http: Option<SocketAddr>,
    /// Where `/metrics` answers, unless turned off.
    pub metrics_addr: Option<SocketAddr>,
    pub roles: Roles,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    decoded: Arc<Notify>,
    wake_decoder: Arc<Notify>,
    db: Db,
}

impl RunningServer {
    /// The QUIC ingest address of a node that has the ingest role (as tests and the demo start
    /// it); panics on one without.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic.expect("this node has no ingest role")
    }

    /// The web address of a node that has the web role; panics on one without.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("this node has no web role")
    }

    /// Asks the decode worker to process the spool now and waits until no bundle is left waiting
    /// (or a few passes could not empty it, e.g. while the disk is failing). On a node without
    /// the decode role there is nothing to ask: it returns at once.
    pub async fn decode_now(&self) {
        if !self.roles.has(Role::Decode) {
            return;
        }
        for _ in 0..20 {
            let done = self.decoded.notified();
            self.wake_decoder.notify_one();
            done.await;
            let waiting: i64 = self
                .db
                .lock()
                .query_row(
                    "SELECT count(*) FROM bundles WHERE state = ?1",
                    [crate::spool::BundleState::Spooled],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            if waiting == 0 {
                return;
            }
        }
    }

    /// Stops accepting, drains open uploads, finishes the current decode pass, stops HTTP.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while let Some(res) = self.tasks.join_next().await {
            if let Err(e) = res {
                error!(error = %e, "server task failed");
            }
        }
        info!("server stopped");
    }
}

/// Starts every component and returns once they are listening.
pub async fn start(ctx: Context, listen: ListenOverrides) -> Result<RunningServer> {
    // `nachtwacht check`: every problem at once, before anything starts.
    let report = crate::ops::check::run(ctx.dir.root(), crate::base::time::now_ms());
    for w in report.warnings() {
        tracing::warn!(area = w.area.as_str(), fix = %w.fix, "{}", w.what);
    }
    if !report.is_ok() {
        return Err(Error::Check(report.to_string()));
    }
    ctx.check_private()?;
    let removed = secrets::remove_interrupted_creations(&ctx.dir.keys())?;
    if removed > 0 {
        info!(
            files = removed,
            "removed copies of keys a crash left half-created"
        );
    }
    // Fail at start-up, not at the first bundle, when the identities are missing or unreadable.
    secrets::load_age_identities(&ctx.dir.age_identity())?;
    let pseudonyms = crate::trust::pseudonym::Pseudonymiser::load(&ctx.dir)?;
    // Invalid rule files stop the start with every problem listed, not the first evaluation.
    let rules = crate::evaluate::rules_files::load(
        &ctx.dir,
        &ctx.db,
        "system",
        crate::base::time::now_ms(),
    )?;
    // So does an invalid retention policy: erasing under a policy nobody meant is not undone.
    let retention =
        crate::lifecycle::policy::load(&ctx.dir, &ctx.db, "system", crate::base::time::now_ms())?;
    {
        // Alerts from before they were sealed are sealed as they stand, and the chain's head is
        // anchored, before anything else writes.
        let now = crate::base::time::now_ms();
        let conn = ctx.db.lock();
        let sealed = crate::trust::audit::seal::seal_unsealed(&conn, now)?;
        if sealed > 0 {
            info!(alerts = sealed, "existing alerts sealed into the audit log");
        }
        crate::trust::audit::checkpoint::write(&ctx.dir, &conn, now)?;
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let wake_decoder = Arc::new(Notify::new());
    let decoded = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();

    let roles = listen.roles;

    let quic_addr = if roles.has(Role::Ingest) {
        // A bundle made durable wakes this node's decoder at once; a decode node elsewhere finds
        // it at its next pass (every few seconds).
        let (addr, stopped) = ingest::runtime::start(
            ctx.clone(),
            listen.quic.unwrap_or(ctx.config.ingest.listen),
            wake_decoder.clone(),
            shutdown_rx.clone(),
        )
        .await?;
        tasks.spawn(stopped);
        Some(addr)
    } else {
        None
    };
    if roles.has(Role::Decode) {
        let decoder = Arc::new(Decoder::new(ctx.clone(), pseudonyms.clone()));
        tasks.spawn(decode_loop(
            decoder,
            wake_decoder.clone(),
            decoded.clone(),
            shutdown_rx.clone(),
        ));
    }
    if roles.has(Role::Evaluate) {
        tasks.spawn(pipeline_loop(
            ctx.clone(),
            pseudonyms,
            rules,
            retention,
            shutdown_rx.clone(),
        ));
        tasks.spawn(notify_loop(ctx.clone(), shutdown_rx.clone()));
    }

    let http_addr = if roles.has(Role::Web) {
        let addr = listen.http.unwrap_or(ctx.config.http.listen);
        Some(start_web(&ctx, addr, shutdown_rx.clone(), &mut tasks).await?)
    } else {
        None
    };
    let metrics_addr = match listen.metrics.or(ctx.config.operations.metrics_listen) {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::HttpBind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| Error::HttpBind { addr, source })?;
            let router = observe::router(ctx.clone());
            let mut rx = shutdown_rx.clone();
            tasks.spawn(async move {
                let stopped = async move {
                    let _ = rx.changed().await;
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    error!(error = %e, "metrics listener failed");
                }
            });
            Some(bound)
        }
        None => None,
    };
    info!(%roles, quic = ?quic_addr, http = ?http_addr, metrics = ?metrics_addr, data_dir = %ctx.dir.root().display(), "nachtwacht serving");
    Ok(RunningServer {
        quic: quic_addr,
        http: http_addr,
        metrics_addr,
        roles,
        shutdown: shutdown_tx,
        tasks,
        decoded,
        wake_decoder,
        db: ctx.db.clone(),
    })
}

/// The web interface (HTTPS unless the config turns TLS off) on `http_addr`; returns the address
/// it listens on.
async fn start_web(
    ctx: &Context,
    http_addr: SocketAddr,
    shutdown: watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|source| Error::HttpBind {
            addr: http_addr,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| Error::HttpBind {
        addr: http_addr,
        source,
    })?;
    let tls = ctx.config.http.tls;
    let origin = web::SiteOrigin::new(ctx.config.http.public_url.as_deref(), tls, http_addr)
        .map_err(|reason| {
            Error::Context(
                config::Error::Invalid {
                    path: "http.public_url".into(),
                    reason,
                }
                .into(),
            )
        })?;
    let state = web::AppState::new(ctx.clone(), tls, origin);
    let mut rx = shutdown;
    let stopped = async move {
        let _ = rx.changed().await;
    };
    if tls {
        let config = web::tls::server_config(&ctx.dir)?;
        let listener =
            web::tls::TlsListener::new(listener, config).map_err(|source| Error::HttpBind {
                addr: http_addr,
                source,
            })?;
        tasks.spawn(async move {
            if let Err(e) = web::serve(listener, state, stopped).await {
                error!(error = %e, "HTTPS server failed");
            }
        });
    } else {
        tasks.spawn(async move {
            if let Err(e) = web::serve(listener, state, stopped).await {
                error!(error = %e, "HTTP server failed");
            }
        });
    }
    Ok(http_addr)
}

/// The decode worker: a pass over the spool whenever ingest wakes it (a bundle became durable) or
/// every few seconds, until `shutdown`; `decoded` is notified after every pass. `serve` runs it
/// beside ingest; `nachtwacht decode --watch` runs it alone.
pub async fn decode_loop(
    decoder: Arc<Decoder>,
    wake: Arc<Notify>,
    decoded: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let d = decoder.clone();
        match tokio::task::spawn_blocking(move || crate::decode::pass(&d)).await {
            Ok(Ok((report, compaction)))
                if report.processed + report.quarantined + compaction.written > 0 =>
            {
                info!(
                    processed = report.processed,
                    quarantined = report.quarantined,
                    rows_flagged = report.rows_flagged,
                    compacted_files = compaction.merged,
                    "decode pass"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => error!(error = %e, "decode pass failed; will retry"),
            Err(e) => error!(error = %e, "decode task panicked"),
        }
        decoded.notify_waiters();
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// E-mail about new and unopened critical alerts, every `notifications.interval_secs`.
async fn notify_loop(ctx: Context, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_secs(ctx.config.notifications.interval_secs);
    if ctx.config.notifications.smtp.is_none() {
        info!("no [notifications.smtp] configured: notifications are queued, not sent");
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = crate::notify::pass(&ctx, crate::base::time::now_ms()).await {
            error!(error = %e, "notification pass failed; will retry");
        }
    }
}

async fn pipeline_loop(
    ctx: Context,
    pseudonyms: Pseudonymiser,
    mut rules: crate::evaluate::Rules,
    mut retention: crate::lifecycle::policy::RetentionPolicy,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = Duration::from_secs(ctx.config.pipeline.interval_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        // One process of several runs the pipelines and housekeeping at a time (the database's
        // pipelines lease); the others skip the round.
        let c = ctx.clone();
        let lease = match tokio::task::spawn_blocking(move || {
            crate::base::lease::Lease::try_acquire(
                &c.db,
                crate::base::lease::Work::Pipelines,
                crate::base::lease::holder_name(),
                PIPELINES_LEASE_TTL_MS,
                crate::base::time::now_ms(),
            )
        })
        .await
        {
            Ok(Ok(Some(lease))) => crate::base::lease::Renewing::start(lease),
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => {
                error!(error = %e, "pipelines lease not taken; will retry");
                continue;
            }
            Err(e) => {
                error!(error = %e, "pipelines lease task panicked");
                continue;
            }
        };
        // The operator's rule files are read before every run: a changed threshold takes effect
        // at the next run (and is audited); a broken file keeps the rules in force.
        let c = ctx.clone();
        match tokio::task::spawn_blocking(move || {
            crate::evaluate::rules_files::load(&c.dir, &c.db, "system", crate::base::time::now_ms())
        })
        .await
        {
            Ok(Ok(loaded)) => rules = loaded,
            Ok(Err(e)) => error!(error = %e, "rule files not reloaded; the rules in force stay"),
            Err(e) => error!(error = %e, "rule file task panicked"),
        }
        let (c, p, r) = (ctx.clone(), pseudonyms.clone(), rules.clone());
        let fence = lease.lease().clone();
        // Only the days that received data since the last run (watermark), with their context.
        match tokio::task::spawn_blocking(move || {
            crate::evaluate::run_incremental(&c, &p, &r, Some(&fence))
        })
        .await
        {
            Ok(Ok(Some(run))) => info!(
                days = %run.days.map_or_else(|| "all".to_string(), |d| d.to_string()),
                watermark = run.watermark,
                new_alerts = run.report.new_alerts,
                person_days = run.report.person_days,
                "pipelines evaluated new data"
            ),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => error!(error = %e, "pipeline run failed; will retry"),
            Err(e) => error!(error = %e, "pipeline task panicked"),
        }
        let c = ctx.clone();
        match tokio::task::spawn_blocking(move || {
            crate::lifecycle::policy::load(&c.dir, &c.db, "system", crate::base::time::now_ms())
        })
        .await
        {
            Ok(Ok(loaded)) => retention = loaded,
            Ok(Err(e)) => {
                error!(error = %e, "retention policy not reloaded; the policy in force stays")
            }
            Err(e) => error!(error = %e, "retention policy task panicked"),
        }
        let (c, policy) = (ctx.clone(), retention.clone());
        let housekeeping = tokio::task::spawn_blocking(move || {
            let now = crate::base::time::now_ms();
            let alerts = crate::evaluate::communication::run(&c, now).map_err(|e| e.to_string())?;
            // Everything past its time under the retention policy, erased from every copy.
            let erased = crate::lifecycle::retention::housekeeping(&c, &policy)
                .map_err(|e| e.to_string())?;
            // The day's signed anchor of the audit chain's head, kept current.
            crate::trust::audit::checkpoint::write(&c.dir, &c.db.lock(), now)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((alerts, erased))
        })
        .await;
        match housekeeping {
            Ok(Ok((alerts, erased))) if alerts > 0 || erased.erased_anything() => {
                info!(
                    communication_alerts = alerts,
                    readings_erased = erased.readings,
                    alerts_erased = erased.alerts,
                    identities_erased = erased.identities,
                    evidence_pruned = erased.evidence_files,
                    quarantined_erased = erased.quarantined_bundles,
                    "housekeeping"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => error!(error = %e, "housekeeping failed; will retry"),
            Err(e) => error!(error = %e, "housekeeping task panicked"),
        }
        // Released (from a blocking thread: it writes to the database).
        let _ = tokio::task::spawn_blocking(move || drop(lease)).await;
    }
}

/// How long the pipelines lease lasts without renewal (renewed every third of it during a round).
const PIPELINES_LEASE_TTL_MS: i64 = 60_000;
