//! The walking skeleton end to end: a station seals and uploads bundles over real QUIC with
//! certificates made at test time; the server stores, decrypts and pseudonymises them into Parquet;
//! the pipeline raises an alcohol alert; a researcher gets a DP answer over HTTP until the budget is
//! spent.

use crate::common;

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::{evaluate, research, trust::audit};
use nachtwacht_station::source::simulator::DrinkingEpisode;
use nachtwacht_station::spool::Spool;
use nachtwacht_station::uploader::Uploader;
use polars::prelude::*;

/// One pipeline run with the default rules, on a blocking thread as the server does it.
async fn run_pipelines(ctx: &nachtwacht::base::Context) -> evaluate::EvaluationReport {
    let (ctx, pseudonyms) = (
        ctx.clone(),
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir).unwrap(),
    );
    tokio::task::spawn_blocking(move || evaluate::run(&ctx, &pseudonyms, &Default::default()))
        .await
        .unwrap()
        .unwrap()
}

fn post_query(http: std::net::SocketAddr, token: &str, epsilon: f64) -> (u16, serde_json::Value) {
    let body = serde_json::json!({
        "dataset": "daily-indicators",
        "aggregate": {"kind": "count"},
        "epsilon": epsilon,
    });
    let resp = ureq::post(&format!("http://{http}/api/v1/research/query"))
        .set("Authorization", &format!("Bearer {token}"))
        .send_json(body);
    match resp {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_travel_from_station_to_alert_and_dp_answer() {
    let t = start_server(Config::default()).await;
    let drinking = vec![DrinkingEpisode {
        day: 1,
        hour: 20.0,
        peak_tac: 0.05,
    }];
    let (station, station_dir, person) = t.ankle_station("home-1", "AM-0001", 3, drinking);

    let report = nachtwacht_station::run_once(&station, &station_dir)
        .await
        .unwrap();
    assert_eq!(
        (report.sealed, report.acknowledged, report.left_in_spool),
        (3, 3, 0),
        "{report:?}"
    );
    // A second pass finds nothing new to seal and nothing left to send.
    let again = nachtwacht_station::run_once(&station, &station_dir)
        .await
        .unwrap();
    assert_eq!((again.sealed, again.acknowledged), (0, 0));

    t.server.decode_now().await;
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed'"),
        3
    );
    assert_eq!(t.count("SELECT sum(rows_stored) FROM bundles"), 3 * 48);

    // The raw dataset: pseudonyms only, traceable to bundles, no serial, case or station anywhere.
    let (readers, files) = common::signal_files(&t.ctx, nachtwacht_wire::Signal::Ankle);
    assert_eq!(files.len(), 3, "one file per bundle and day: {files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for secret in ["AM-0001", "CASE-home-1", "home-1"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {}",
                f.display()
            );
        }
    }
    let raw = read_parquet(&files[0]);
    drop(readers);
    let names: Vec<String> = raw
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names[0], "pid");
    assert_eq!(names.last().unwrap(), "bundle_id");
    let pid = raw
        .column("pid")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert_eq!(
        pid,
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&t.ctx.dir)
            .unwrap()
            .operational(person)
    );

    // Pipelines: exactly one drinking event, raised as one alert with its evidence bundles.
    let eval = run_pipelines(&t.ctx).await;
    assert_eq!(eval.new_alerts, 1, "{eval:?}");
    assert_eq!(eval.person_days, 3);
    let (kind, evidence): (String, String) = t
        .ctx
        .db
        .lock()
        .query_row("SELECT kind, evidence_bundles FROM alerts", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(kind, "alcohol");
    for id in evidence.split(',') {
        let known = t.count(&format!(
            "SELECT count(*) FROM bundles WHERE bundle_id = '{id}'"
        ));
        assert_eq!(known, 1, "evidence bundle {id} is not in the registry");
    }
    // Running the pipelines again raises no second alert for the same event.
    let eval2 = run_pipelines(&t.ctx).await;
    assert_eq!(eval2.new_alerts, 0);
    assert_eq!(t.count("SELECT count(*) FROM alerts"), 1);

    // The research dataset carries research pseudonyms only.
    let research_df = research_table(&t.ctx, nachtwacht::base::blobs::RESEARCH_DAILY);
    assert_inventoried(&research_df, "research daily");
    assert_inventoried(
        &research_table(&t.ctx, nachtwacht::base::blobs::RESEARCH_ALERT_COUNTS),
        "research alert",
    );
    assert!(research_df.column("pid").is_err());
    assert!(research_df
        .column("rid")
        .unwrap()
        .str()
        .unwrap()
        .into_no_null_iter()
        .all(|r| r.starts_with("r1-")));

    // Research over HTTP: DP answers until the budget is spent, then a clear refusal.
    research::create_project(&t.ctx, "wodc-test", research::Budget::new(1.0, 0.6), "test").unwrap();
    nachtwacht::registry::screening::screened_researcher(
        &t.ctx.db,
        "ria",
        nachtwacht::base::time::now_ms(),
    )
    .unwrap();
    let token = research::issue_token(&t.ctx, "wodc-test", "ria", 1, "test").unwrap();
    let http = t.server.http_addr();
    let tok = token.clone();
    let (status, first) = tokio::task::spawn_blocking(move || post_query(http, &tok, 0.5))
        .await
        .unwrap();
    assert_eq!(status, 200, "{first}");
    assert!(first["value"].as_f64().unwrap().is_finite());
    assert!(first["epsilon_spent"].as_f64().unwrap() <= 0.5);
    assert!(first["accuracy_95"][0]["accuracy"].as_f64().unwrap() > 0.0);
    // Every answer says what its accuracy does not cover.
    assert!(first["accuracy_note"]
        .as_str()
        .unwrap()
        .contains("does not cover"));
    assert_eq!(first["privacy_unit"], "person");
    // The project's loss reads as (ε, δ): one release, so basic composition binds.
    assert_eq!(first["project_delta"].as_f64(), Some(1e-6));
    assert_eq!(first["project_epsilon"], first["epsilon_spent"]);

    let tok = token.clone();
    let (status, too_big) = tokio::task::spawn_blocking(move || post_query(http, &tok, 0.7))
        .await
        .unwrap();
    assert_eq!(status, 400, "over the per-query maximum: {too_big}");

    let tok = token.clone();
    let (status, _) = tokio::task::spawn_blocking(move || post_query(http, &tok, 0.5))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let tok = token.clone();
    let (status, refused) = tokio::task::spawn_blocking(move || post_query(http, &tok, 0.1))
        .await
        .unwrap();
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("budget exhausted"),
        "{refused}"
    );
    let spent: f64 = t
        .ctx
        .db
        .lock()
        .query_row("SELECT epsilon_spent FROM research_projects", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(spent <= 1.0 + 1e-9, "spent {spent}");

    let (status, _) = tokio::task::spawn_blocking(move || post_query(http, "nwr_wrong", 0.1))
        .await
        .unwrap();
    assert_eq!(status, 401);

    // Every release and every refusal (ε over the maximum, the budget, the unknown token) are in
    // the audit log, and the chain verifies.
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'research.release'"),
        2
    );
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'research.refused'"),
        2
    );
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'research.refused-token'"),
        1
    );
    assert!(matches!(
        audit::verify(&t.ctx.db.lock()).unwrap(),
        audit::Verdict::Intact { .. }
    ));

    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_bundle_is_acknowledged_as_duplicate_and_stored_once() {
    let t = start_server(Config::default()).await;
    let (station, station_dir, _) = t.ankle_station("home-2", "AM-0002", 1, vec![]);
    let sealed = seal_all(&station, &station_dir).remove(0);

    let spool = Spool::open(&station.spool_dir(&station_dir)).unwrap();
    let uploader = Uploader::new(&station).unwrap();
    let heartbeat = quiet_heartbeat(&station);
    spool.put(&sealed).unwrap();
    assert_eq!(
        uploader
            .drain(&spool, &heartbeat)
            .await
            .unwrap()
            .acknowledged,
        1
    );
    // The station lost its record of the acknowledgement and sends the same bundle again.
    spool.put(&sealed).unwrap();
    assert_eq!(
        uploader
            .drain(&spool, &heartbeat)
            .await
            .unwrap()
            .acknowledged,
        1
    );
    let journal =
        std::fs::read_to_string(station.spool_dir(&station_dir).join("acknowledged.log")).unwrap();
    assert!(
        journal.contains(&format!("{} Stored", sealed.bundle_id)),
        "{journal}"
    );
    assert!(
        journal.contains("Duplicate"),
        "second upload acknowledged as duplicate: {journal}"
    );
    assert!(spool.pending().unwrap().is_empty());
    assert_eq!(t.count("SELECT count(*) FROM bundles"), 1);

    t.server.decode_now().await;
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed'"),
        1
    );
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_from_an_unassigned_device_is_quarantined_with_its_reason() {
    let t = start_server(Config::default()).await;
    let (mut station, station_dir, _) = t.ankle_station("home-3", "AM-0003", 1, vec![]);
    if let nachtwacht_station::SourceConfig::Simulator(sim) = &mut station.source {
        sim.device_serial = "AM-UNKNOWN".into();
    }
    let report = nachtwacht_station::run_once(&station, &station_dir)
        .await
        .unwrap();
    assert_eq!(report.acknowledged, 1, "stored durably before any decoding");
    t.server.decode_now().await;
    let (state, reason): (String, String) = t
        .ctx
        .db
        .lock()
        .query_row("SELECT state, reason FROM bundles", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(state, "quarantined");
    assert!(
        reason.contains("AM-UNKNOWN") && reason.contains("not paired"),
        "{reason}"
    );
    let quarantined = t
        .ctx
        .blobs
        .list(nachtwacht::base::blobs::QUARANTINE)
        .unwrap();
    assert_eq!(quarantined.len(), 2, "ciphertext and reason are kept");
    let listed = nachtwacht::decode::quarantine::list(&t.ctx, "test").unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].file_present && listed[0].station == "home-3");
    let bundle = listed[0].bundle_id.clone();

    // The operator registers the device, but with an assignment that starts after the readings:
    // the retry is quarantined again, now for the assignment.
    let person = nachtwacht::registry::enroll::add_person(
        &t.ctx,
        "CASE-late",
        nachtwacht::base::programme::Programme::AlcoholBan,
        "test",
    )
    .unwrap();
    nachtwacht::registry::enroll::assign_device(
        &t.ctx,
        "AM-UNKNOWN",
        nachtwacht_wire::DeviceKind::AnkleMonitor,
        person,
        nachtwacht::base::time::now_ms(),
        "test",
    )
    .unwrap();
    nachtwacht::registry::enroll::pair_device(&t.ctx, "AM-UNKNOWN", "home-3", 0, "test").unwrap();
    nachtwacht::decode::quarantine::retry(&t.ctx, &bundle, "test").unwrap();
    t.server.decode_now().await;
    let e = nachtwacht::decode::quarantine::show(&t.ctx, &bundle, "test").unwrap();
    assert!(e.reason.contains("not assigned"), "{}", e.reason);
    assert_eq!(e.retries, 1);

    // With the assignment corrected, the second retry goes through and nothing was lost.
    nachtwacht::registry::enroll::assign_device(
        &t.ctx,
        "AM-UNKNOWN",
        nachtwacht_wire::DeviceKind::AnkleMonitor,
        person,
        days_ago(2),
        "test",
    )
    .unwrap();
    nachtwacht::decode::quarantine::retry(&t.ctx, &bundle, "test").unwrap();
    t.server.decode_now().await;
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed' AND retries = 2"),
        1
    );
    assert_eq!(t.count("SELECT rows_stored FROM bundles"), 48);
    assert!(nachtwacht::decode::quarantine::list(&t.ctx, "test")
        .unwrap()
        .is_empty());
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'quarantine.retry'"),
        2
    );
    // A bundle that is not quarantined cannot be retried.
    assert!(nachtwacht::decode::quarantine::retry(&t.ctx, &bundle, "test").is_err());
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_e4_export_ingests_end_to_end() {
    let e4_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/e4-sample");
    assert!(
        e4_dir.join("EDA.csv").exists(),
        "E4 sample missing at {}",
        e4_dir.display()
    );
    let t = start_server(Config::default()).await;
    let person = nachtwacht::registry::enroll::add_person(
        &t.ctx,
        "CASE-E4",
        nachtwacht::base::programme::Programme::AggressionTraining,
        "test",
    )
    .unwrap();
    // The export was recorded in June 2019.
    nachtwacht::registry::enroll::assign_device(
        &t.ctx,
        "E4-A01",
        nachtwacht_wire::DeviceKind::Wristband,
        person,
        1_500_000_000_000,
        "test",
    )
    .unwrap();
    let mut station = nachtwacht::registry::enroll::add_station(&t.ctx, "home-e4", "test").unwrap();
    nachtwacht::registry::enroll::pair_device(&t.ctx, "E4-A01", "home-e4", 0, "test").unwrap();
    station.servers = vec![t.server.quic_addr().to_string()];
    station.source = nachtwacht_station::SourceConfig::E4Csv {
        dir: e4_dir,
        device_serial: "E4-A01".into(),
    };
    let station_dir = t.tmp.path().join("station-e4");
    std::fs::create_dir_all(&station_dir).unwrap();
    let report = nachtwacht_station::run_once(&station, &station_dir)
        .await
        .unwrap();
    assert_eq!((report.sealed, report.acknowledged), (1, 1), "{report:?}");
    t.server.decode_now().await;
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed'"),
        1
    );
    // EDA 9998 + BVP 9998 + HR 4998 + TEMP 4998 + ACC 9998 + IBI 4999 rows, all allowed by the
    // programme.
    assert_eq!(
        t.count("SELECT rows_stored FROM bundles"),
        9998 * 3 + 4998 * 2 + 4999
    );
    // Validation is data: the E4 reports 0 µS right after power-on; those samples are stored with
    // a flag, not dropped, and counted per bundle.
    let (flagged, flags): (i64, String) = t
        .ctx
        .db
        .lock()
        .query_row("SELECT rows_flagged, flags FROM bundles", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(
        flagged > 0 && flags.contains("out-of-range"),
        "{flagged} {flags}"
    );
    let (readers, eda_files) = common::signal_files(&t.ctx, nachtwacht_wire::Signal::Eda);
    let eda = read_parquet(&eda_files[0]);
    drop(readers);
    assert_eq!(eda.height(), 9998);
    let zero_flagged = eda
        .lazy()
        .filter(col("eda_us").lt(lit(0.05)))
        .select([col("quality").eq(lit(0u16)).sum().alias("unflagged"), len()])
        .collect()
        .unwrap();
    assert_eq!(
        zero_flagged
            .column("unflagged")
            .unwrap()
            .u32()
            .unwrap()
            .get(0),
        Some(0),
        "every sub-0.05 µS sample carries a flag"
    );
    assert!(
        zero_flagged
            .column("len")
            .unwrap()
            .u32()
            .unwrap()
            .get(0)
            .unwrap()
            > 0
    );

    let eval = run_pipelines(&t.ctx).await;
    assert_eq!(eval.person_days, 1);
    let daily = research_table(&t.ctx, nachtwacht::base::blobs::RESEARCH_DAILY);
    assert_inventoried(&daily, "research daily");
    let eda = daily
        .column("mean_eda_us")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    let hr = daily
        .column("mean_hr_bpm")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!((0.05..60.0).contains(&eda), "mean EDA {eda}");
    assert!((40.0..200.0).contains(&hr), "mean HR {hr}");
    // The stress pipeline ran over the real recording (42 minutes: too short for a personal
    // baseline, so no window can be called aroused yet).
    let int = |c: &str| daily.column(c).unwrap().i64().unwrap().get(0);
    let valid = int("valid_eda_minutes").unwrap();
    assert!((20..=42).contains(&valid), "valid EDA minutes {valid}");
    assert_eq!(int("stress_episodes"), Some(0));
    assert_eq!(int("minutes_aroused"), Some(0));
    let scr = daily
        .column("scr_per_minute")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!((0.0..30.0).contains(&scr), "SCRs per minute {scr}");
    assert!(
        daily.column("peak_tac_g_dl").unwrap().null_count() == 1,
        "no ankle data, no invented TAC"
    );
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_outside_the_programme_are_discarded_and_counted() {
    let t = start_server(Config::default()).await;
    // An alcohol-ban person whose station (wrongly) sends wristband data: nothing may be stored.
    let person = nachtwacht::registry::enroll::add_person(
        &t.ctx,
        "CASE-PB",
        nachtwacht::base::programme::Programme::AlcoholBan,
        "test",
    )
    .unwrap();
    let start_ms = days_ago(1);
    nachtwacht::registry::enroll::assign_device(
        &t.ctx,
        "WB-9",
        nachtwacht_wire::DeviceKind::Wristband,
        person,
        start_ms,
        "test",
    )
    .unwrap();
    let mut station = nachtwacht::registry::enroll::add_station(&t.ctx, "home-pb", "test").unwrap();
    nachtwacht::registry::enroll::pair_device(&t.ctx, "WB-9", "home-pb", 0, "test").unwrap();
    station.servers = vec![t.server.quic_addr().to_string()];
    station.source = nachtwacht_station::SourceConfig::Simulator(
        nachtwacht_station::source::simulator::SimulatorConfig {
            device: nachtwacht_wire::DeviceKind::Wristband,
            device_serial: "WB-9".into(),
            start_ms,
            days: 1,
            seed: 3,
            drinking: vec![],
            wear_hours_per_day: 1,
            bundle_minutes: 60,
        },
    );
    let dir = t.tmp.path().join("station-pb");
    std::fs::create_dir_all(&dir).unwrap();
    nachtwacht_station::run_once(&station, &dir).await.unwrap();
    t.server.decode_now().await;
    assert_eq!(
        t.count("SELECT rows_stored FROM bundles WHERE state = 'processed'"),
        0
    );
    assert_eq!(
        t.count("SELECT rows_discarded FROM bundles"),
        14_400 + 230_400 + 3_600 + 14_400 + 115_200
    );
    assert!(!t.ctx.dir.raw_signal("eda").exists());
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_research_api_as_served() {
    let t = start_server(Config::default()).await;
    let http = t.server.http_addr();
    let doc: serde_json::Value = tokio::task::spawn_blocking(move || {
        ureq::get(&format!("http://{http}/api/openapi.json"))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let query = &doc["paths"]["/api/v1/research/query"]["post"];
    assert!(query["responses"]["403"].is_object(), "{query}");
    assert!(doc["paths"]["/api/v1/research/budget"]["get"].is_object());
    // Generated from the request type itself: its newest fields are there.
    let request = &doc["components"]["schemas"]["QueryRequest"]["properties"];
    for field in [
        "dataset",
        "aggregate",
        "epsilon",
        "group_by",
        "dry_run",
        "from",
        "to",
    ] {
        assert!(request[field].is_object(), "{field} missing: {request}");
    }
    assert!(
        doc["components"]["securitySchemes"]["research_token"].is_object(),
        "{doc}"
    );
    t.server.shutdown().await;
}

/// Every column the pipelines wrote is one the DPIA inventory lists for that dataset (from the
/// code's column lists), with an entry saying what it is.
fn assert_inventoried(df: &polars::prelude::DataFrame, item: &str) {
    use nachtwacht::accountability::inventory;
    let item = inventory::REGISTRY
        .iter()
        .find(|i| i.name.starts_with(item))
        .unwrap();
    let listed = inventory::dataset_columns(item);
    for name in df.get_column_names() {
        assert!(
            listed.iter().any(|l| l == name.as_str()),
            "column {name} of {} is not in the inventory's list {listed:?}",
            item.name
        );
        assert!(
            inventory::dataset_column(name.as_str()).is_some(),
            "research column {name} has no entry in the data inventory"
        );
    }
}
