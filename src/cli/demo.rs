//! `nachtwacht demo`: the whole journey on one machine with embedded defaults.
//!
//! Initialises a data directory (a new one under the temporary directory unless given, kept afterwards), starts the server, enrolls a handful of
//! people with simulated devices and base stations, lets the stations seal and upload a few days of
//! readings over real QUIC, runs the pipelines, and asks one differentially private question.

use std::path::PathBuf;

use anyhow::Context as _;

use nachtwacht_station::source::simulator::{DrinkingEpisode, SimulatorConfig};
use nachtwacht_station::SourceConfig;
use nachtwacht_wire::DeviceKind;

use nachtwacht::base::config::Config;
use nachtwacht::base::programme::Programme;
use nachtwacht::base::Context;
use nachtwacht::research::{Aggregate, Answer, QueryRequest, DATASET_DAILY};
use nachtwacht::server::{ListenOverrides, RunningServer};
use nachtwacht::{evaluate, registry::enroll, research, server::init, trust::secrets};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the demo's data here instead of a temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Stop cleanly after this long (e.g. 60s, 5m) instead of waiting for Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    exit_after: Option<std::time::Duration>,
    /// Simulated days of readings.
    #[arg(long, default_value_t = 3)]
    days: u32,
    #[command(flatten)]
    listen: super::ListenArgs,
}

/// `nachtwacht demo`: runs the demo and prints where to look and how to sign in.
pub async fn command(args: DemoArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let exit_after = args.exit_after;
    let run = run(DemoOptions {
        data_dir: args.data_dir,
        listen: args.listen.into(),
        days: args.days,
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
    println!("  Web:          http://{}/", run.server.http_addr());
    println!("  QUIC ingest:  {}", run.server.quic_addr());
    if let Some(metrics) = run.server.metrics_addr {
        println!("  Metrics:      http://{metrics}/metrics (and /readyz)");
    }
    println!(
        "  Admin login:  admin / {}  (TOTP secret {})",
        run.admin_password, run.admin_totp_secret
    );
    println!(
        "  Officer login: {} / {}  (TOTP secret {}; every demo person is on this caseload)",
        OFFICER, run.officer_password, run.officer_totp_secret
    );
    println!("  Current TOTP code: nachtwacht account code --secret <secret>");
    println!(
        "  Research API: POST http://{}/api/v1/research/query",
        run.server.http_addr()
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

#[derive(Debug, thiserror::Error)]
#[error("demo step '{step}' failed: {reason}")]
pub struct Error {
    pub step: &'static str,
    pub reason: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error {
        step,
        reason: e.to_string(),
    }
}

pub use nachtwacht::base::time::DAY_MS;

/// One simulated person: who, which programme, which device, what happens.
struct Persona {
    reference: &'static str,
    programme: Programme,
    device: DeviceKind,
    serial: &'static str,
    drinking: Vec<DrinkingEpisode>,
}

fn personas() -> Vec<Persona> {
    let ankle = |reference, serial, drinking| Persona {
        reference,
        programme: Programme::AlcoholBan,
        device: DeviceKind::AnkleMonitor,
        serial,
        drinking,
    };
    let wrist = |reference, serial| Persona {
        reference,
        programme: Programme::AggressionTraining,
        device: DeviceKind::Wristband,
        serial,
        drinking: vec![],
    };
    vec![
        ankle(
            "DEMO-2026-001",
            "AM-1001",
            // Both episodes end inside a two-day demo: an episode still above the threshold at the
            // last reading is pending, and raises no alert until its end arrives.
            vec![DrinkingEpisode {
                day: 0,
                hour: 20.0,
                peak_tac: 0.06,
            }],
        ),
        ankle("DEMO-2026-002", "AM-1002", vec![]),
        ankle(
            "DEMO-2026-003",
            "AM-1003",
            vec![DrinkingEpisode {
                day: 1,
                hour: 12.0,
                peak_tac: 0.04,
            }],
        ),
        ankle("DEMO-2026-004", "AM-1004", vec![]),
        wrist("DEMO-2026-005", "WB-2001"),
        wrist("DEMO-2026-006", "WB-2002"),
    ]
}

#[derive(Debug, Clone)]
pub struct AlertLine {
    pub person_reference: String,
    pub kind: String,
    pub severity: String,
    pub start_ms: i64,
    pub peak_tac_g_dl: Option<f64>,
    pub evidence_bundles: String,
}

pub struct DemoRun {
    pub server: RunningServer,
    pub data_dir: PathBuf,
    pub admin_password: String,
    pub admin_totp_secret: String,
    /// The demo officer ([`OFFICER`]) has every demo person on their caseload.
    pub officer_password: String,
    pub officer_totp_secret: String,
    pub research_token: String,
    pub bundles_acknowledged: usize,
    pub alerts: Vec<AlertLine>,
    pub answer: Answer,
}

/// The demo officer's username.
pub const OFFICER: &str = "officer";

pub struct DemoOptions {
    pub data_dir: Option<PathBuf>,
    pub listen: ListenOverrides,
    pub days: u32,
}

/// Runs every step up to and including the DP answer, and leaves the server running.
pub async fn run(opts: DemoOptions) -> Result<DemoRun> {
    // A fresh directory under the system's temporary directory unless one is given. It is kept
    // after the demo so the datasets, quarantine and audit log can be inspected.
    let data_dir = match opts.data_dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("nachtwacht-demo-")
            .tempdir()
            .map_err(step("temporary directory"))?
            .keep()
            .join("data"),
    };
    let mut config = Config::default();
    // The pipelines run explicitly below; the scheduler inside serve runs them again later.
    config.pipeline.interval_secs = 30;
    // Public bound on days per person: the simulation covers exactly this many days. (A real
    // deployment keeps the default of a year, which makes answers over a handful of people noisy.)
    config.research.max_days_per_person = opts.days.max(1);
    let report =
        init::init(&data_dir, &config, nachtwacht::base::time::now_ms()).map_err(step("init"))?;
    let ctx = Context::open(&data_dir).map_err(step("open data directory"))?;
    let server = nachtwacht::server::start(ctx.clone(), opts.listen)
        .await
        .map_err(step("serve"))?;

    let today = nachtwacht::base::time::day_start_ms(nachtwacht::base::time::now_ms());
    let start_ms = today - opts.days as i64 * DAY_MS;
    let mut stations = Vec::new();
    for (i, p) in personas().into_iter().enumerate() {
        let person = enroll::add_person(&ctx, p.reference, p.programme, "demo")
            .map_err(step("enroll person"))?;
        enroll::assign_device(&ctx, p.serial, p.device, person, start_ms, "demo")
            .map_err(step("assign device"))?;
        let name = format!("home-{:03}", i + 1);
        let mut station =
            enroll::add_station(&ctx, &name, "demo").map_err(step("enroll station"))?;
        enroll::pair_device(&ctx, p.serial, &name, start_ms, "demo")
            .map_err(step("pair device"))?;
        enroll::link_station(&ctx, &name, p.reference, "demo").map_err(step("link station"))?;
        station.servers = vec![server.quic_addr().to_string()];
        station.source = SourceConfig::Simulator(SimulatorConfig {
            device: p.device,
            device_serial: p.serial.into(),
            start_ms,
            days: opts.days,
            seed: i as u64 + 1,
            drinking: p.drinking,
            wear_hours_per_day: 2,
            bundle_minutes: 60,
        });
        let dir = ctx.dir.stations().join(&name);
        std::fs::create_dir_all(&dir).map_err(step("station directory"))?;
        secrets::write_private(&dir.join("station.toml"), station.to_toml().as_bytes())
            .map_err(step("station config"))?;
        stations.push((station, dir));
    }

    let officer = nachtwacht::registry::accounts::create(
        &ctx.db,
        OFFICER,
        nachtwacht::registry::accounts::Role::Officer,
        "demo",
        nachtwacht::base::time::now_ms(),
    )
    .map_err(step("officer account"))?;
    let researcher = "researcher";
    nachtwacht::registry::accounts::create(
        &ctx.db,
        researcher,
        nachtwacht::registry::accounts::Role::Researcher,
        "demo",
        nachtwacht::base::time::now_ms(),
    )
    .map_err(step("researcher account"))?;
    // Everyone who opens personal data holds a screening in force (here: a VOG of last month,
    // valid three years), as `nachtwacht account screening` records it.
    for username in [
        nachtwacht::server::init::ADMIN_USERNAME,
        OFFICER,
        researcher,
    ] {
        let now = nachtwacht::base::time::now_ms();
        let day = nachtwacht::base::time::DAY_MS;
        nachtwacht::registry::screening::record(
            &ctx.db,
            username,
            nachtwacht::registry::screening::ScreeningKind::Vog,
            now - 30 * day,
            now + 3 * 365 * day,
            "demo",
            now,
        )
        .map_err(step("staff screening"))?;
    }
    for p in personas() {
        nachtwacht::registry::caseload::assign(
            &ctx.db,
            OFFICER,
            p.reference,
            start_ms,
            None,
            "demo",
            nachtwacht::base::time::now_ms(),
        )
        .map_err(step("caseload"))?;
    }

    let uploads = stations.into_iter().map(|(cfg, dir)| {
        tokio::spawn(async move {
            nachtwacht_station::run_once(&cfg, &dir)
                .await
                .map_err(|e| (cfg.name.clone(), e))
        })
    });
    let mut bundles_acknowledged = 0;
    for u in uploads {
        let r = u.await.map_err(step("station task"))?;
        let r = r.map_err(|(name, e)| Error {
            step: "station upload",
            reason: format!("{name}: {e}"),
        })?;
        bundles_acknowledged += r.acknowledged;
    }
    server.decode_now().await;

    let pseudonyms = nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir)
        .map_err(step("pseudonym keys"))?;
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || {
        let rules = nachtwacht::evaluate::rules_files::load(
            &c.dir,
            &c.db,
            "demo",
            nachtwacht::base::time::now_ms(),
        )
        .map_err(|e| e.to_string())?;
        evaluate::run(&c, &pseudonyms, &rules).map_err(|e| e.to_string())
    })
    .await
    .map_err(step("pipeline task"))?
    .map_err(step("pipelines"))?;

    research::create_project(&ctx, "demo-wodc", research::Budget::new(3.0, 1.0), "demo")
        .map_err(step("research project"))?;
    let token = research::issue_token(&ctx, "demo-wodc", researcher, 30, "demo")
        .map_err(step("research token"))?;
    let (c, t) = (ctx.clone(), token.clone());
    let answer = tokio::task::spawn_blocking(move || {
        research::query(
            &c,
            &t,
            &QueryRequest {
                dataset: DATASET_DAILY.into(),
                aggregate: Aggregate::Count,
                epsilon: 0.5,
                group_by: vec![],
                dry_run: false,
                from: None,
                to: None,
                only: Default::default(),
            },
        )
    })
    .await
    .map_err(step("research task"))?
    .map_err(step("research query"))?;

    Ok(DemoRun {
        alerts: alerts(&ctx).map_err(step("read alerts"))?,
        server,
        data_dir,
        admin_password: report.admin_password,
        admin_totp_secret: report.admin_totp_secret,
        officer_password: officer.password,
        officer_totp_secret: officer.totp_secret,
        research_token: token,
        bundles_acknowledged,
        answer,
    })
}

pub fn alerts(ctx: &Context) -> nachtwacht::base::db::Result<Vec<AlertLine>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(
        "SELECT p.reference, a.kind, a.severity, a.start_ms, a.peak_tac_g_dl, a.evidence_bundles
           FROM alerts a JOIN persons p ON p.id = a.person_id
          WHERE a.withdrawn_at_ms IS NULL ORDER BY a.start_ms",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(AlertLine {
            person_reference: r.get(0)?,
            kind: r.get(1)?,
            severity: r.get(2)?,
            start_ms: r.get(3)?,
            peak_tac_g_dl: r.get(4)?,
            evidence_bundles: r.get(5)?,
        })
    })?;
    rows.collect()
}
