//! `nachtwacht db migrate-to-postgres`: an SQLite installation with uploads, alerts and an audit
//! chain moves into PostgreSQL, through the real binary; afterwards the data directory serves
//! from PostgreSQL with every row, and the audit chain verifies there.

use std::process::Command;

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::base::db::Backend;
use nachtwacht::base::Context;
use nachtwacht_station::source::simulator::DrinkingEpisode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_installation_moves_into_postgresql_whole() {
    let Some(pg) = postgres_server() else {
        return;
    };
    let t = start_server_on_sqlite(Config::default()).await;
    let (station, dir, _) = t.ankle_station(
        "home-1",
        "AM-M1",
        3,
        vec![DrinkingEpisode {
            day: 1,
            hour: 20.0,
            peak_tac: 0.06,
        }],
    );
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert!(report.acknowledged > 0);
    t.server.decode_now().await;
    t.evaluate_now().await;
    let tables = [
        "accounts",
        "persons",
        "stations",
        "bundles",
        "alerts",
        "dataset_files",
        "audit_log",
    ];
    let before: Vec<i64> = tables
        .iter()
        .map(|table| t.count(&format!("SELECT count(*) FROM {table}")))
        .collect();
    assert!(before[4] > 0, "an alert to carry over");
    let TestServer { tmp, ctx, server } = t;
    server.shutdown().await;
    drop(ctx);

    let root = tmp.path().join("data");
    let url = fresh_postgres_database(&pg);
    let out = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["db", "migrate-to-postgres", "--data-dir"])
        .arg(&root)
        .args(["--url", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("audit_log"),
        "a progress bar per table: {stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("audit chain intact"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let ctx = Context::open(&root).unwrap();
    assert_eq!(ctx.db.backend(), Backend::Postgres);
    let after: Vec<i64> = tables
        .iter()
        .map(|table| {
            ctx.db
                .lock()
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        })
        .collect();
    assert_eq!(before, after, "{tables:?}");
    drop(ctx);
    // Migrating again is refused: the installation is on PostgreSQL now.
    let again = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["db", "migrate-to-postgres", "--data-dir"])
        .arg(&root)
        .args(["--url", &url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    // It serves from PostgreSQL: new rows get fresh ids after the copied ones.
    let t = start_in(tmp).await;
    let person = nachtwacht::registry::enroll::add_person(
        &t.ctx,
        "CASE-AFTER",
        nachtwacht::base::programme::Programme::AlcoholBan,
        "test",
    )
    .unwrap();
    assert!(person > before[1], "{person}");
    let verify = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["audit", "verify", "--data-dir"])
        .arg(t.tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(verify.status.success());
    t.server.shutdown().await;
}
