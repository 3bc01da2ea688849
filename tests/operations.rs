//! What the operations team sees: Prometheus metrics on their own listener over real uploads,
//! `/healthz` and `/readyz` (with what is wrong named), and JSON logs in which every line of an
//! upload names its station and bundle and no line names a person, a device or a station.

use crate::common;

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::server::Role;

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = ureq::AgentBuilder::new()
        .build()
        .get(&format!("http://{addr}{path}"))
        .call();
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    (r.status(), r.into_string().unwrap())
}

/// One named check of a `/readyz` body.
fn readiness_check<'a>(body: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {body}"))
}

/// The value of one sample line (`name{labels} value`), if the metric text has it.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_uploads_and_name_no_person_station_or_device() {
    let t = start_server(Config::default()).await;
    let (station, dir, _) = t.ankle_station("home-1", "AM-0001", 2, vec![]);
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert_eq!(report.acknowledged, 2, "{report:?}");
    t.server.decode_now().await;
    nachtwacht::research::create_project(
        &t.ctx,
        "wodc-1",
        nachtwacht::research::Budget::new(1.0, 0.5),
        "test",
    )
    .unwrap();
    let addr = t
        .server
        .metrics_addr
        .expect("metrics listener on by default");

    let text = tokio::task::spawn_blocking(move || get(addr, "/metrics"))
        .await
        .unwrap();
    assert_eq!(text.0, 200);
    let text = text.1;
    // The metrics are process-wide and tests share the process: at least this test's uploads.
    let stored = sample(&text, "nachtwacht_uploads_total{outcome=\"stored\"}").unwrap_or(0.0);
    assert!(stored >= 2.0, "{text}");
    assert!(sample(&text, "nachtwacht_upload_bytes_total").unwrap() > 0.0);
    assert!(sample(&text, "nachtwacht_ack_latency_seconds_count").unwrap() >= 2.0);
    assert!(sample(&text, "nachtwacht_group_commit_bundles_count").unwrap() >= 1.0);
    assert!(sample(&text, "nachtwacht_receive_slot_wait_seconds_count").unwrap() >= 2.0);
    // State read at scrape: everything decoded, the chain's length, free disk, certificates.
    assert_eq!(sample(&text, "nachtwacht_spool_backlog_bundles"), Some(0.0));
    assert_eq!(sample(&text, "nachtwacht_decode_lag_seconds"), Some(0.0));
    let entries: i64 = t
        .ctx
        .db
        .lock()
        .query_row("SELECT max(seq) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    assert!(sample(&text, "nachtwacht_audit_entries").unwrap() >= entries as f64);
    assert!(sample(&text, "nachtwacht_disk_free_bytes").unwrap() > 0.0);
    let ca_expiry = sample(
        &text,
        "nachtwacht_certificate_expiry_timestamp_seconds{certificate=\"ca\"}",
    )
    .unwrap();
    assert!(ca_expiry > (nachtwacht::base::time::now_ms() / 1000) as f64);
    assert_eq!(
        sample(
            &text,
            "nachtwacht_research_epsilon_spent{project=\"wodc-1\"}"
        ),
        Some(0.0)
    );
    for class in nachtwacht::decode::quarantine::REASON_CLASSES {
        let series = format!("nachtwacht_quarantined_bundles{{reason_class=\"{class}\"}}");
        assert!(sample(&text, &series).is_some(), "{series} missing");
    }
    // Every series the Grafana dashboard in docs/ plots is one the server exports.
    let dashboard = include_str!("../docs/grafana-dashboard.json");
    let types: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut plotted = 0;
    for part in dashboard.split("nachtwacht_").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        let full = format!("nachtwacht_{name}");
        let base = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| full.strip_suffix(s))
            .unwrap_or(&full);
        assert!(
            types.contains(&base),
            "the dashboard plots {full}, not exported"
        );
        plotted += 1;
    }
    assert!(plotted >= 15, "{plotted}");
    // No person, device or station in any name or label.
    for secret in ["CASE-", "AM-0001", "home-1"] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
    // Health and readiness, on the metrics listener and the web listener.
    let http = t.server.http_addr();
    let (health, ready, web_ready) = tokio::task::spawn_blocking(move || {
        (
            get(addr, "/healthz"),
            get(addr, "/readyz"),
            get(http, "/readyz"),
        )
    })
    .await
    .unwrap();
    assert_eq!(health, (200, "ok".to_string()));
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert_eq!(web_ready.0, 200, "{}", web_ready.1);
    let body: serde_json::Value = serde_json::from_str(&ready.1).unwrap();
    assert_eq!(body["ready"], true);
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["database", "storage", "disk", "decode", "pipelines"],
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_a_decoder_that_falls_behind() {
    // A node with the ingest and web roles only (no decoder) and no patience: the bundle it stores waits.
    let mut config = Config::default();
    config.operations.max_decode_lag_secs = 0;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    nachtwacht::server::init::init(
        &root,
        &common::with_test_database(config.clone()),
        nachtwacht::base::time::now_ms(),
    )
    .unwrap();
    let ctx = nachtwacht::base::Context::open(&root).unwrap();
    let server = nachtwacht::server::start(
        ctx.clone(),
        nachtwacht::server::ListenOverrides {
            roles: [Role::Ingest, Role::Web].into_iter().collect(),
            ..loopback()
        },
    )
    .await
    .unwrap();
    let t = TestServer { tmp, ctx, server };
    let (station, dir, _) = t.ankle_station("home-1", "AM-0001", 1, vec![]);
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert_eq!(report.acknowledged, 1, "{report:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let addr = t.server.metrics_addr.unwrap();
    let (status, body) = tokio::task::spawn_blocking(move || get(addr, "/readyz"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false);
    let decode = readiness_check(&body, "decode");
    assert_eq!(decode["ok"], false, "{body}");
    assert!(
        decode["detail"]
            .as_str()
            .unwrap()
            .contains("over the limit of 0 s"),
        "{body}"
    );
    // The other checks still pass: the body says what is wrong, not only that something is.
    for c in body["checks"].as_array().unwrap() {
        if c["name"] != "decode" && c["name"] != "pipelines" {
            assert_eq!(c["ok"], true, "{c}");
        }
    }
}

#[test]
fn a_demos_json_logs_name_station_and_bundle_and_no_person() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo-data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["--log-format", "json"])
        .args(["demo", "--exit-after", "1s", "--days", "1"])
        .args([
            "--quic-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        // Every upload's lines are at debug level.
        .env(
            "RUST_LOG",
            "debug,quinn=warn,rustls=warn,h2=warn,hyper=warn",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mut upload_lines = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        if v["span"]["name"] == "request" {
            assert!(v["span"]["station_id"].is_number(), "{line}");
            // An upload's acknowledgement (a heartbeat's names no bundle).
            if v["fields"]["message"] == "acknowledged" && v["fields"]["bundle"] != "None" {
                assert!(v["span"]["bundle"].is_string(), "{line}");
                upload_lines += 1;
            }
        }
    }
    assert!(upload_lines > 0, "no upload lines in:\n{stderr}");
    // The demo's persons, devices and stations appear in no log line.
    for secret in ["DEMO-2026", "AM-1001", "AM-1002", "WB-2001", "home-00"] {
        assert!(!stderr.contains(secret), "{secret} in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_red_when_the_disk_reserve_is_crossed() {
    // A reserve larger than any disk here: the disk check fails, and says by how much.
    let mut config = Config::default();
    config.ingest.min_free_disk_bytes = 1 << 60;
    let t = start_server(config).await;
    let addr = t.server.metrics_addr.unwrap();
    let (status, body) = tokio::task::spawn_blocking(move || get(addr, "/readyz"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let disk = readiness_check(&body, "disk");
    assert_eq!(disk["ok"], false, "{body}");
    assert!(
        disk["detail"]
            .as_str()
            .unwrap()
            .contains("below the reserve of 1152921504606846976"),
        "{body}"
    );
}

/// The README's demo, scraped while it runs: the series the operations docs name are there, with
/// the demo's uploads counted.
#[test]
fn metrics_are_scraped_over_http_during_a_demo() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        // Long enough for the slowest CI machine: the demo is killed once scraped. (It once
        // exited after 20 s, before a loaded 2-core machine had counted its uploads.)
        .args(["demo", "--exit-after", "300s", "--days", "1"])
        .args([
            "--quic-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--metrics-listen", &addr.to_string()])
        .arg("--data-dir")
        .arg(tmp.path().join("demo"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("demo.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let text = loop {
        let scraped = ureq::get(&format!("http://{addr}/metrics"))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok());
        if let Some(text) = scraped {
            // The demo's stations have uploaded (their bundles are counted) and its research
            // project exists (it is made after the uploads).
            let stored = sample(&text, "nachtwacht_uploads_total{outcome=\"stored\"}");
            let project = sample(
                &text,
                "nachtwacht_research_epsilon_spent{project=\"demo-wodc\"}",
            );
            if stored.unwrap_or(0.0) >= 6.0 && project.is_some() {
                break text;
            }
        }
        let log = || std::fs::read_to_string(tmp.path().join("demo.log")).unwrap_or_default();
        if let Some(status) = demo.try_wait().unwrap() {
            panic!(
                "the demo ended ({status}) before its uploads were counted:\n{}",
                log()
            );
        }
        if std::time::Instant::now() >= deadline {
            let _ = demo.kill();
            panic!("no uploads counted; the demo's log:\n{}", log());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    for series in [
        "nachtwacht_upload_bytes_total",
        "nachtwacht_ack_latency_seconds_count",
        "nachtwacht_station_connections",
        "nachtwacht_receive_slot_wait_seconds_count",
        "nachtwacht_group_commit_bundles_count",
        "nachtwacht_group_commit_duration_seconds_count",
        "nachtwacht_spool_backlog_bundles",
        "nachtwacht_spool_backlog_bytes",
        "nachtwacht_decode_lag_seconds",
        "nachtwacht_pipeline_lag_seconds",
        "nachtwacht_quarantined_bundles{reason_class=\"decryption\"}",
        "nachtwacht_alerts_raised_total{kind=\"alcohol\"}",
        "nachtwacht_notification_failures_total",
        "nachtwacht_login_failures_total",
        "nachtwacht_login_lockouts_total",
        "nachtwacht_research_epsilon_spent{project=\"demo-wodc\"}",
        "nachtwacht_audit_entries",
        "nachtwacht_disk_free_bytes",
        "nachtwacht_certificate_expiry_timestamp_seconds{certificate=\"server\"}",
    ] {
        assert!(sample(&text, series).is_some(), "{series} not in:\n{text}");
    }
    for secret in ["DEMO-2026", "AM-1001", "home-00"] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
    let _ = demo.kill();
    let _ = demo.wait();
}
