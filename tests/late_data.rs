//! Incremental evaluation and late data, end to end: a station that was offline for three days
//! uploads a device's readings late, the scheduler's watermark picks up exactly those days, and the
//! drinking event that straddles the outage stays one alert. A backfill over the same days from
//! the CLI changes nothing.

use crate::common;

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::evaluate;

const READING_MS: i64 = 30 * 60_000;

/// Ankle readings from `from_ms` (inclusive) to `to_ms` (exclusive), one per 30 minutes, in the
/// documented CSV layout. `tac` and `strap_open` decide each reading by its time.
fn csv(
    from_ms: i64,
    to_ms: i64,
    tac: impl Fn(i64) -> f64,
    strap_open: impl Fn(i64) -> bool,
) -> String {
    let mut out = String::from("time,tac_g_dl,ambient_g_dl,skin_temp_c,ir,strap\n");
    let mut t = from_ms;
    while t < to_ms {
        let time = chrono::DateTime::from_timestamp_millis(t)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ");
        let strap = if strap_open(t) { "open" } else { "closed" };
        out.push_str(&format!("{time},{:.4},0.000,33.0,1.00,{strap}\n", tac(t)));
        t += READING_MS;
    }
    out
}

async fn incremental(
    t: &TestServer,
) -> Option<(Option<evaluate::Days>, evaluate::EvaluationReport)> {
    let (ctx, pseudonyms) = (
        t.ctx.clone(),
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&t.ctx.dir).unwrap(),
    );
    tokio::task::spawn_blocking(move || {
        evaluate::run_incremental(&ctx, &pseudonyms, &Default::default(), None)
    })
    .await
    .unwrap()
    .unwrap()
    .map(|run| (run.days, run.report))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_offline_for_three_days_is_evaluated_once_and_completely() {
    let t = start_server(Config::default()).await;
    let ctx = &t.ctx;
    let day1 = days_ago(5);
    let person = nachtwacht::registry::enroll::add_person(
        ctx,
        "CASE-L",
        nachtwacht::base::programme::Programme::AlcoholBan,
        "test",
    )
    .unwrap();
    nachtwacht::registry::enroll::assign_device(
        ctx,
        "AM-L",
        nachtwacht_wire::DeviceKind::AnkleMonitor,
        person,
        day1 - DAY_MS,
        "test",
    )
    .unwrap();
    let mut station = nachtwacht::registry::enroll::add_station(ctx, "home-l", "test").unwrap();
    nachtwacht::registry::enroll::pair_device(ctx, "AM-L", "home-l", 0, "test").unwrap();
    station.servers = vec![t.server.quic_addr().to_string()];
    let dir = t.tmp.path().join("home-l");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("station.toml");
    std::fs::write(&config, station.to_toml()).unwrap();

    // Drinking from 20:00 on day 1: rising 0.02 g/dL per hour to 0.06 at 22:30, then eliminating
    // at 0.015 per hour until after midnight. The strap opens once, at 10:00 on day 3.
    let h = |hours: f64| day1 + (hours * 3_600_000.0) as i64;
    let tac = move |t: i64| {
        let hours = (t - day1) as f64 / 3_600_000.0;
        if (20.0..=22.5).contains(&hours) {
            0.01 + 0.02 * (hours - 20.0)
        } else if hours > 22.5 {
            (0.06 - 0.015 * (hours - 22.5)).max(0.0)
        } else {
            0.0
        }
    };
    let strap_open = move |t: i64| t == h(48.0 + 10.0);

    // Before the outage: day 1 until 22:00. The event has begun: 21:00–22:00 are above 0.02
    // (20:30 is exactly 0.02, which is not above).
    let before = dir.join("before.csv");
    std::fs::write(&before, csv(day1, h(22.0) + 1, tac, strap_open)).unwrap();
    let log = import_ankle_csv(&config, "AM-L", &before);
    assert!(log.contains("acknowledged=1"), "{log}");
    t.server.decode_now().await;
    let (days, first) = incremental(&t).await.expect("new data: evaluated");
    assert_eq!(days, None, "the first run evaluates everything");
    assert_eq!(first.new_alerts, 1, "{first:?}");
    let alert = "SELECT count(*) FROM alerts WHERE kind = 'alcohol'";
    assert_eq!(t.count(alert), 1);
    // Nothing new: the scheduler does nothing.
    assert!(incremental(&t).await.is_none());

    // The station was offline for three days; then the rest arrives at once.
    let after = dir.join("after.csv");
    std::fs::write(&after, csv(h(22.5), h(96.0), tac, strap_open)).unwrap();
    let log = import_ankle_csv(&config, "AM-L", &after);
    assert!(log.contains("bundles=4"), "one bundle per UTC day: {log}");
    t.server.decode_now().await;
    let (days, late) = incremental(&t).await.expect("late data: evaluated");
    let days = days.expect("only the days that received data");
    assert_eq!(
        (days.from.to_string(), days.len()),
        (
            chrono::DateTime::from_timestamp_millis(day1)
                .unwrap()
                .date_naive()
                .to_string(),
            4
        ),
        "day 1 (its evening) and days 2–4"
    );
    // The straddling drinking event is the same alert, extended past midnight with its peak;
    // the strap opening is new.
    assert_eq!(late.new_alerts, 1, "{late:?}");
    assert_eq!(t.count(alert), 1);
    let (start, end, peak, evidence): (i64, i64, f64, String) = ctx
        .db
        .lock()
        .query_row(
            "SELECT start_ms, end_ms, peak_tac_g_dl, evidence_bundles FROM alerts WHERE kind = 'alcohol'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(start, h(21.0), "first reading above 0.02 g/dL");
    assert!(end > h(24.0), "extended past midnight: {end}");
    assert!((peak - 0.06).abs() < 1e-9, "{peak}");
    // The bundle from before the outage, and the late bundles of day 1's evening and day 2.
    assert_eq!(evidence.split(',').count(), 3, "{evidence}");
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM alerts WHERE kind = 'strap-open' AND start_ms = {}",
            h(58.0)
        )),
        1
    );
    let daily = common::research_table(ctx, nachtwacht::base::blobs::RESEARCH_DAILY);
    assert_eq!(
        daily.height(),
        4,
        "one row per person-day, days 1–4: {daily}"
    );

    // The alerts reach research only as counts per person-day under the research pseudonym.
    let counts = common::research_table(ctx, nachtwacht::base::blobs::RESEARCH_ALERT_COUNTS);
    assert!(counts.column("pid").is_err(), "{counts}");
    assert_eq!(
        counts.height(),
        2,
        "day 1 (drinking) and day 3 (strap): {counts}"
    );
    let total = |c: &str| -> i64 {
        counts
            .column(c)
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .sum()
    };
    assert_eq!((total("alcohol_alerts"), total("tamper_alerts")), (1, 1));
    let c = ctx.clone();
    let answer = tokio::task::spawn_blocking(move || {
        nachtwacht::research::create_project(
            &c,
            "mgmt",
            nachtwacht::research::Budget::new(1.0, 1.0),
            "test",
        )
        .unwrap();
        nachtwacht::registry::screening::screened_researcher(
            &c.db,
            "ria",
            nachtwacht::base::time::now_ms(),
        )
        .unwrap();
        let token = nachtwacht::research::issue_token(&c, "mgmt", "ria", 1, "test").unwrap();
        let req: nachtwacht::research::QueryRequest = serde_json::from_value(serde_json::json!({
            "dataset": "alert-counts",
            "aggregate": {"kind": "sum", "column": "tamper_alerts", "lower": 0, "upper": 4},
            "epsilon": 0.5,
            "group_by": ["programme"],
        }))
        .unwrap();
        nachtwacht::research::query(&c, &token, &req).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(answer.groups.len(), 3, "{answer:?}");
    assert_eq!(answer.dataset, "alert-counts");

    // A backfill over the same days from the CLI, as an operator runs it: same alerts.
    let first_day = chrono::DateTime::from_timestamp_millis(day1)
        .unwrap()
        .date_naive();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["pipeline", "run", "--data-dir"])
        .arg(ctx.dir.root())
        .args([
            "--from",
            &first_day.to_string(),
            "--to",
            &(first_day + chrono::Days::new(3)).to_string(),
            "--chunk-days",
            "2",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("2/2 chunks (4 days)"),
        "a progress line per chunk: {stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("new alerts: 0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(t.count("SELECT count(*) FROM alerts"), 2);
    t.server.shutdown().await;
}
