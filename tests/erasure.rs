//! Proof of erasure, end to end (issue 21 point 5): two persons' readings uploaded over QUIC,
//! decoded and evaluated, alerts raised and worked by an officer, research answered; one person's
//! supervision closed through the binary, a late bundle quarantined as "supervision ended", a
//! legal hold keeping one alert through a first retention run, then released; after the second
//! run every file and every table of the data directory is searched for that person's
//! identifiers (case reference, both pseudonyms, device serial, bundle ids): nothing is found
//! except tombstones, which name none of them. The other person's data and alerts are unchanged,
//! the audit chain verifies, and the research API still answers within its budget.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::*;
use nachtwacht::alerts::casework;
use nachtwacht::base::config::Config;
use nachtwacht::base::time::DAY_MS;
use nachtwacht::registry::accounts::{self, Account, Role};
use nachtwacht::registry::caseload;
use nachtwacht_station::source::simulator::DrinkingEpisode;
use polars::prelude::*;

fn nachtwacht(data: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nachtwacht {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shipped policy with every personal class kept 0 days after the supervision's end.
fn every_personal_class_due_at_once() -> String {
    nachtwacht::lifecycle::policy::DEFAULT_POLICY
        .replace(
            "[raw_readings]\nkeep_days = 90",
            "[raw_readings]\nkeep_days = 0",
        )
        .replace("[alerts]\nkeep_days = 1825", "[alerts]\nkeep_days = 0")
        .replace("[research]\nkeep_days = 1825", "[research]\nkeep_days = 0")
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339()
}

fn post_query(http: std::net::SocketAddr, token: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({
        "dataset": "daily-indicators",
        "aggregate": {"kind": "count"},
        "epsilon": 0.2,
    });
    match ureq::post(&format!("http://{http}/api/v1/research/query"))
        .set("Authorization", &format!("Bearer {token}"))
        .send_json(body)
    {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every place an identifier could be: file names, file bytes, the decoded content of every
/// Parquet file (research files are compressed, so their bytes alone prove nothing), and every
/// value of every table. Returns where each was found.
fn find_identifiers(
    root: &Path,
    blobs: &nachtwacht::base::blobs::Blobs,
    db: &nachtwacht::base::db::Connection,
    needles: &[String],
) -> Vec<String> {
    let mut found = Vec::new();
    let mut look = |name: String, bytes: Vec<u8>| {
        for n in needles {
            if name.contains(n.as_str()) {
                found.push(format!("{n} in the name {name}"));
            }
            if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                found.push(format!("{n} in the bytes of {name}"));
            }
        }
        if name.ends_with(".parquet") {
            let df = ParquetReader::new(std::io::Cursor::new(bytes))
                .finish()
                .unwrap();
            for column in df.get_columns() {
                let text = column.cast(&DataType::String).unwrap();
                for value in text.str().unwrap().into_iter().flatten() {
                    for n in needles {
                        if value.contains(n.as_str()) {
                            found.push(format!("{n} in column {} of {name}", column.name()));
                        }
                    }
                }
            }
        }
    };
    for path in files_under(root) {
        let name = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        look(name, std::fs::read(&path).unwrap());
    }
    // On object storage, every object of the installation too.
    if blobs.local_root().is_none() {
        for object in blobs.list("").unwrap() {
            let bytes = blobs.get(&object.key).unwrap().unwrap_or_default();
            look(format!("object {}", object.key), bytes);
        }
    }
    let list_tables = match db.backend() {
        nachtwacht::base::db::Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        }
        nachtwacht::base::db::Backend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'"
        }
    };
    let tables: Vec<String> = db
        .prepare(list_tables)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in tables {
        let mut stmt = db.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                let value = match row.get_ref(i).unwrap() {
                    nachtwacht::base::db::ValueRef::Text(t) => t.to_owned(),
                    nachtwacht::base::db::ValueRef::Blob(b) => {
                        String::from_utf8_lossy(b).into_owned()
                    }
                    _ => continue,
                };
                for n in needles {
                    if value.contains(n.as_str()) {
                        found.push(format!("{n} in table {table}"));
                    }
                }
            }
        }
    }
    found
}

fn alerts_of(t: &TestServer, person: i64) -> Vec<String> {
    let conn = t.ctx.db.lock();
    let mut stmt = conn
        .prepare(
            "SELECT id || '|' || kind || '|' || start_ms || '|' || end_ms || '|' || coalesce(CAST(peak_tac_g_dl AS TEXT), '')
                    || '|' || status || '|' || revision FROM alerts WHERE person_id = ?1 ORDER BY id",
        )
        .unwrap();
    let rows = stmt.query_map([person], |r| r.get(0)).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_after_a_closed_supervision_leaves_nothing_of_the_person_but_tombstones() {
    let t = start_server(Config::default()).await;
    let data = t.ctx.dir.root().to_path_buf();
    // Readings 30 days after the end, alerts and research rows 60 days after it.
    let policy = nachtwacht::lifecycle::policy::DEFAULT_POLICY
        .replace(
            "[raw_readings]\nkeep_days = 90",
            "[raw_readings]\nkeep_days = 30",
        )
        .replace("[alerts]\nkeep_days = 1825", "[alerts]\nkeep_days = 60")
        .replace("[research]\nkeep_days = 1825", "[research]\nkeep_days = 60");
    std::fs::write(t.ctx.dir.retention_policy(), policy).unwrap();

    let drinking = |days: &[u32]| {
        days.iter()
            .map(|&day| DrinkingEpisode {
                day,
                hour: 20.0,
                peak_tac: 0.06,
            })
            .collect::<Vec<_>>()
    };
    let (a, a_dir, pa) = t.ankle_station("home-a", "AM-ERASE-1", 3, drinking(&[0, 1]));
    let (b, b_dir, pb) = t.ankle_station("home-b", "AM-KEEP-2", 3, drinking(&[1]));
    // The person under erasure was enrolled when their readings began.
    t.ctx
        .db
        .lock()
        .execute(
            "UPDATE episodes SET started_at_ms = ?1 WHERE person_id = ?2",
            nachtwacht::params![days_ago(3), pa],
        )
        .unwrap();

    // A's bundles over QUIC, all but the last: that one comes after the supervision ended.
    let contents = nachtwacht_station::source::read_all(&a.source, &a_dir).unwrap();
    let late_start = contents.last().unwrap().span().unwrap().0;
    let sealed = seal_contents(&a, &contents);
    let conn = raw_connect(&a, t.server.quic_addr()).await.unwrap();
    for (i, bundle) in sealed[..sealed.len() - 1].iter().enumerate() {
        let ack = raw_request(&conn, &upload_request(&a.name, i as u64 + 1, bundle))
            .await
            .unwrap();
        assert_eq!(ack.code, nachtwacht_wire::AckCode::Stored);
    }
    nachtwacht_station::run_once(&b, &b_dir).await.unwrap();
    // A's readings arriving through B's station: quarantined before anyone knew whose they were
    // (the reason names A's device), so no person is recorded for it.
    // (One reading fewer than A's first bundle, so it is a bundle of its own.)
    let mut stray = contents[0].clone();
    for sb in &mut stray.batches {
        let n = sb.batch.num_rows();
        sb.batch = sb.batch.slice(0, n.saturating_sub(1));
    }
    let stray = seal_contents(&b, &[stray]).remove(0);
    let b_conn = raw_connect(&b, t.server.quic_addr()).await.unwrap();
    let ack = raw_request(&b_conn, &upload_request(&b.name, 10_000, &stray))
        .await
        .unwrap();
    assert_eq!(ack.code, nachtwacht_wire::AckCode::Stored);
    t.server.decode_now().await;
    let stray_id = stray.bundle_id.to_hex();
    let (state, reason, owner): (String, String, Option<i64>) = t
        .ctx
        .db
        .lock()
        .query_row(
            "SELECT state, reason, person_id FROM bundles WHERE bundle_id = ?1",
            [&stray_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), owner), ("quarantined", None));
    assert!(
        reason.contains("AM-ERASE-1") && reason.contains("not paired"),
        "{reason}"
    );
    let (ctx, pseudonyms) = (
        t.ctx.clone(),
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&t.ctx.dir).unwrap(),
    );
    let (pid, rid) = (pseudonyms.operational(pa), pseudonyms.research(pa));
    tokio::task::spawn_blocking(move || {
        nachtwacht::evaluate::run(&ctx, &pseudonyms, &Default::default())
    })
    .await
    .unwrap()
    .unwrap();
    let a_alerts = alerts_of(&t, pa);
    assert!(
        a_alerts.len() >= 2,
        "the drinking episode and more: {a_alerts:?}"
    );
    let held_alert: i64 = t.count(&format!(
        "SELECT min(id) FROM alerts WHERE person_id = {pa} AND kind = 'alcohol'"
    ));
    let b_alerts = alerts_of(&t, pb);
    assert!(!b_alerts.is_empty());
    let b_readings = t.count(&format!(
        "SELECT sum(rows_stored) FROM bundles WHERE person_id = {pb}"
    ));

    // An officer works A's alerts (a note that must go too) and looks at the evidence.
    let now = nachtwacht::base::time::now_ms();
    let olga_id = accounts::create(&t.ctx.db, "olga", Role::Officer, "test", now)
        .unwrap()
        .id;
    nachtwacht::registry::screening::screen_for_a_year(&t.ctx.db, "olga", now).unwrap();
    for reference in ["CASE-home-a", "CASE-home-b"] {
        caseload::assign(
            &t.ctx.db,
            "olga",
            reference,
            now - 30 * DAY_MS,
            None,
            "test",
            now,
        )
        .unwrap();
    }
    let olga = Account {
        id: olga_id,
        username: "olga".into(),
        role: Role::Officer,
        must_change_password: false,
    };
    let ctx = t.ctx.clone();
    tokio::task::spawn_blocking(move || {
        casework::transition(
            &ctx,
            &olga,
            held_alert,
            "in_process",
            "Zitting 12 maart",
            now,
        )
        .unwrap();
        casework::detail(&ctx, &olga, held_alert, "view", now).unwrap();
    })
    .await
    .unwrap();

    // Research answers before.
    nachtwacht::research::create_project(
        &t.ctx,
        "wodc",
        nachtwacht::research::Budget::new(2.0, 0.5),
        "test",
    )
    .unwrap();
    nachtwacht::registry::screening::screened_researcher(
        &t.ctx.db,
        "ria",
        nachtwacht::base::time::now_ms(),
    )
    .unwrap();
    let token = nachtwacht::research::issue_token(&t.ctx, "wodc", "ria", 1, "test").unwrap();
    let http = t.server.http_addr();
    let tok = token.clone();
    let (status, before) = tokio::task::spawn_blocking(move || post_query(http, &tok))
        .await
        .unwrap();
    assert_eq!(status, 200, "{before}");

    // The supervision ends where the last bundle's readings begin; that bundle arrives later.
    let end = late_start;
    let out = nachtwacht(
        &data,
        &[
            "person",
            "close",
            "--reference",
            "CASE-home-a",
            "--at",
            &rfc3339(end),
        ],
    );
    assert!(out.contains("1 device(s) returned"), "{out}");
    let ack = raw_request(
        &conn,
        &upload_request(&a.name, sealed.len() as u64, sealed.last().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(
        ack.code,
        nachtwacht_wire::AckCode::Stored,
        "acknowledged once durable"
    );
    t.server.decode_now().await;
    let late_id = sealed.last().unwrap().bundle_id.to_hex();
    let (state, reason, owner): (String, String, i64) = t
        .ctx
        .db
        .lock()
        .query_row(
            "SELECT state, reason, person_id FROM bundles WHERE bundle_id = ?1",
            [&late_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(state, "quarantined");
    assert!(reason.starts_with("supervision ended"), "{reason}");
    assert_eq!(owner, pa);
    let a_bundles: Vec<String> = {
        let conn = t.ctx.db.lock();
        let mut stmt = conn
            .prepare("SELECT bundle_id FROM bundles WHERE person_id = ?1")
            .unwrap();
        let rows = stmt.query_map([pa], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(a_bundles.len(), sealed.len());

    // The closed case is archived for handover, and the alert is held for court.
    let archived = nachtwacht(&data, &["person", "archive", "--reference", "CASE-home-a"]);
    assert!(archived.contains("exports/case-"), "{archived}");
    let placed = nachtwacht(
        &data,
        &[
            "hold",
            "place",
            "--alert",
            &held_alert.to_string(),
            "--reason",
            "in court proceedings",
        ],
    );
    let hold_id = placed
        .trim()
        .trim_start_matches("Hold ")
        .trim_end_matches(" placed")
        .to_string();

    // 61 days after the end everything personal is due; the dry run shows what the hold keeps.
    let later = rfc3339(end + 61 * DAY_MS);
    let a_alerts = alerts_of(&t, pa);
    let dry = nachtwacht(&data, &["retention", "run", "--dry-run", "--at", &later]);
    assert!(dry.contains("Dry run"), "{dry}");
    assert!(dry.contains("CASE-home-a"), "{dry}");
    assert!(
        dry.contains(&format!(
            "hold {hold_id} (in court proceedings, by cli:administrator): keeps alert {held_alert}"
        )),
        "{dry}"
    );
    assert!(
        !dry.contains("then the identity"),
        "a hold keeps the identity: {dry}"
    );
    assert_eq!(alerts_of(&t, pa), a_alerts, "a dry run changes nothing");

    let first = nachtwacht(&data, &["retention", "run", "--at", &later]);
    assert!(first.contains("Erased under sha256:"), "{first}");
    let kept: Vec<i64> = {
        let conn = t.ctx.db.lock();
        let mut stmt = conn
            .prepare("SELECT id FROM alerts WHERE person_id = ?1")
            .unwrap();
        let rows = stmt.query_map([pa], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(kept, vec![held_alert], "only the held alert stays");
    assert_eq!(
        t.count("SELECT count(*) FROM episodes WHERE reference = 'CASE-home-a'"),
        1,
        "the identity stays while the alert is held"
    );

    // Released: the next run erases the rest.
    nachtwacht(
        &data,
        &[
            "hold",
            "release",
            "--id",
            &hold_id,
            "--reason",
            "verdict final",
        ],
    );
    let second = nachtwacht(&data, &["retention", "run", "--at", &later]);
    assert!(second.contains("identities: 1"), "{second}");

    // The other person is untouched, the chain verifies, research still answers in budget.
    assert_eq!(alerts_of(&t, pb), b_alerts);
    assert_eq!(
        t.count(&format!(
            "SELECT sum(rows_stored) FROM bundles WHERE person_id = {pb}"
        )),
        b_readings
    );
    let b_rows: usize = {
        let ctx = t.ctx.clone();
        let pid_b = nachtwacht::trust::pseudonym::Pseudonymiser::load(&t.ctx.dir)
            .unwrap()
            .operational(pb);
        tokio::task::spawn_blocking(move || {
            let (_readers, files) = common::signal_files(&ctx, nachtwacht_wire::Signal::Ankle);
            nachtwacht::dataset::scan_readings(&files)
                .unwrap()
                .unwrap()
                .filter(col("pid").eq(lit(pid_b)))
                .collect()
                .unwrap()
                .height()
        })
        .await
        .unwrap()
    };
    assert_eq!(b_rows as i64, b_readings);
    let verified = nachtwacht(&data, &["audit", "verify"]);
    assert!(verified.contains("intact"), "{verified}");
    let tok = token.clone();
    let (status, after) = tokio::task::spawn_blocking(move || post_query(http, &tok))
        .await
        .unwrap();
    assert_eq!(status, 200, "{after}");
    let spent = |v: &serde_json::Value| v["project_epsilon"].as_f64().unwrap();
    assert!(spent(&after) > spent(&before) && spent(&after) <= 2.0 + 1e-9);

    // Tombstones: one per class and the identity, naming the person only by number.
    let tombstones = t.count(&format!(
        "SELECT count(*) FROM audit_log WHERE action = 'retention.erase' AND object = 'person:{pa}'"
    ));
    assert!(tombstones >= 4, "{tombstones}");

    t.server.shutdown().await;
    let mut needles: Vec<String> = vec!["CASE-home-a".into(), pid, rid, "AM-ERASE-1".into()];
    needles.extend(a_bundles);
    needles.push(stray_id);
    let found = find_identifiers(&data, &t.ctx.blobs, &t.ctx.db.lock(), &needles);
    assert!(found.is_empty(), "left behind:\n{}", found.join("\n"));
    // And the search does find what is there: the other person's serial.
    let control = find_identifiers(
        &data,
        &t.ctx.blobs,
        &t.ctx.db.lock(),
        &["AM-KEEP-2".to_string()],
    );
    assert!(
        control.iter().any(|f| f.contains("table devices")),
        "{control:?}"
    );
    let unique: BTreeSet<&str> = control.iter().map(String::as_str).collect();
    assert!(!unique.is_empty());
}

/// Two persons' heart-rate rows in one compacted file of a fresh data directory, the first
/// person's supervision ended and every personal class due at once.
fn closed_person_with_readings() -> (tempfile::TempDir, nachtwacht::base::Context) {
    use arrow::array::{Float64Array, RecordBatch, TimestampMillisecondArray, UInt16Array};
    use nachtwacht::dataset;
    use nachtwacht_wire::{BundleId, Signal};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let now = nachtwacht::base::time::now_ms();
    nachtwacht::server::init::init(&root, &common::test_config(), now).unwrap();
    let ctx = nachtwacht::base::Context::open(&root).unwrap();
    let policy = every_personal_class_due_at_once();
    std::fs::write(ctx.dir.retention_policy(), policy).unwrap();
    let pseudonyms = nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir).unwrap();
    let programme = nachtwacht::base::programme::Programme::AggressionTraining;
    let a = nachtwacht::registry::enroll::add_person(&ctx, "CASE-A", programme, "test").unwrap();
    let b = nachtwacht::registry::enroll::add_person(&ctx, "CASE-B", programme, "test").unwrap();
    let midnight = now.div_euclid(DAY_MS) * DAY_MS - DAY_MS;
    let parts: Vec<(BundleId, RecordBatch)> = [(a, 0u8), (b, 1), (a, 2)]
        .iter()
        .map(|(person, i)| {
            let ts: Vec<i64> = (0..10).map(|k| midnight + *i as i64 * 60_000 + k).collect();
            let batch = RecordBatch::try_new(
                Signal::Hr.schema(),
                vec![
                    Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
                    Arc::new(Float64Array::from(vec![60.0; 10])),
                ],
            )
            .unwrap();
            let id = BundleId([*i; 16]);
            let q = UInt16Array::from(vec![0; 10]);
            let pid = pseudonyms.operational(*person);
            (
                id,
                dataset::stored_rows(Signal::Hr, &id, &pid, &batch, &q).unwrap(),
            )
        })
        .collect();
    for f in dataset::write_rows(&ctx.blobs, Signal::Hr, &parts).unwrap() {
        dataset::catalog_insert(&ctx.db.lock(), &f, "bundle", now).unwrap();
    }
    dataset::compact(
        &ctx.dir,
        &ctx.blobs,
        &ctx.db,
        dataset::CompactionPolicy { min_files: 1 },
        now,
    )
    .unwrap();
    nachtwacht::lifecycle::supervision::close(
        &ctx,
        "CASE-A",
        nachtwacht::base::time::now_ms(),
        "test",
    )
    .unwrap();
    (tmp, ctx)
}

/// Rows per operational pseudonym over the catalogued heart-rate files (each must be readable).
fn hr_rows(ctx: &nachtwacht::base::Context) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    let (_readers, files) = common::signal_files(ctx, nachtwacht_wire::Signal::Hr);
    for f in files {
        for batch in nachtwacht::dataset::read_parquet(&f).unwrap() {
            let pids = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            for p in pids.iter().flatten() {
                *out.entry(p.to_string()).or_default() += 1;
            }
        }
    }
    out
}

/// An erasure killed after writing the new file (catalog unchanged) or after swapping it in (old
/// file retired, not yet deleted) leaves a dataset whose every catalogued file is whole: the
/// person's rows are all there or all gone, the other person's all there. The next run finishes
/// the job and leaves no file the catalog does not name.
#[test]
fn an_erasure_killed_at_any_step_leaves_whole_files_and_the_next_run_finishes_it() {
    for (point, rows_after_crash) in [("erasure-after-write", 20), ("erasure-after-swap", 0)] {
        let (_tmp, ctx) = closed_person_with_readings();
        let pseudonyms = nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir).unwrap();
        let (a, b) = (pseudonyms.operational(1), pseudonyms.operational(2));
        let at = rfc3339(nachtwacht::base::time::now_ms() + DAY_MS);
        let crashed = std::process::Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
            .args(["retention", "run", "--at", &at, "--data-dir"])
            .arg(ctx.dir.root())
            .env("NACHTWACHT_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(
            !crashed.status.success(),
            "{point}: the failpoint did not fire"
        );
        let rows = hr_rows(&ctx);
        assert_eq!(
            rows.get(&a).copied().unwrap_or(0),
            rows_after_crash,
            "{point}"
        );
        assert_eq!(rows[&b], 10, "{point}");

        let out = nachtwacht(ctx.dir.root(), &["retention", "run", "--at", &at]);
        assert!(out.contains("identities: 1"), "{point}: {out}");
        let rows = hr_rows(&ctx);
        assert_eq!((rows.get(&a), rows[&b]), (None, 10), "{point}");
        // Everything stored under the raw datasets, partial files included.
        let mut on_disk: Vec<String> = ctx
            .blobs
            .list(nachtwacht::base::blobs::RAW_DATASETS)
            .unwrap()
            .into_iter()
            .map(|o| o.key.as_str().to_string())
            .filter(|p| !p.ends_with(".lock"))
            .collect();
        on_disk.sort();
        let catalogued: Vec<String> = {
            let conn = ctx.db.lock();
            let mut stmt = conn
                .prepare("SELECT path FROM dataset_files ORDER BY path")
                .unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        assert_eq!(on_disk, catalogued, "{point}");
        let verified = nachtwacht(ctx.dir.root(), &["audit", "verify"]);
        assert!(verified.contains("intact"), "{point}: {verified}");
    }
}

/// Two retention runs at once (a `serve` housekeeping pass and an operator's run, say) take turns:
/// the person is erased once, with one set of tombstones, and both runs succeed.
#[test]
fn two_retention_runs_at_once_erase_once() {
    let (_tmp, ctx) = closed_person_with_readings();
    let at = rfc3339(nachtwacht::base::time::now_ms() + DAY_MS);
    let runs: Vec<std::process::Child> = (0..2)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
                .args(["retention", "run", "--at", &at, "--data-dir"])
                .arg(ctx.dir.root())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<String> = runs
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    let identities: usize = outputs
        .iter()
        .filter(|o| o.contains("identities: 1"))
        .count();
    assert_eq!(identities, 1, "{outputs:?}");
    let tombstones: i64 = ctx
        .db
        .lock()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'retention.erase' AND object = 'person:1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        tombstones, 4,
        "raw readings, alerts, research, identity: once each"
    );
    assert!(!hr_rows(&ctx).contains_key(
        &nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir)
            .unwrap()
            .operational(1)
    ));
}

/// `serve` runs the retention policy with its housekeeping: a closed supervision whose every
/// class is due is erased by the running server, without anyone running `retention run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_server_erases_what_is_due() {
    let mut config = Config::default();
    config.pipeline.interval_secs = 1;
    let t = start_server(config).await;
    let policy = every_personal_class_due_at_once();
    std::fs::write(t.ctx.dir.retention_policy(), policy).unwrap();
    let (a, a_dir, pa) = t.ankle_station("home-s", "AM-SERVE-1", 2, vec![]);
    nachtwacht_station::run_once(&a, &a_dir).await.unwrap();
    t.server.decode_now().await;
    assert!(
        t.count(&format!(
            "SELECT count(*) FROM bundles WHERE person_id = {pa}"
        )) > 0
    );
    nachtwacht::lifecycle::supervision::close(
        &t.ctx,
        "CASE-home-s",
        nachtwacht::base::time::now_ms(),
        "test",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while t.count(&format!(
        "SELECT count(*) FROM persons WHERE id = {pa} AND erased_at_ms IS NOT NULL"
    )) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server's housekeeping did not erase the closed supervision"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM bundles WHERE person_id = {pa}"
        )),
        0
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM audit_log WHERE action = 'retention.erase' AND actor = 'system'"
        ),
        4
    );
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'retention.changed'"),
        1,
        "the changed policy was audited when the server loaded it"
    );
    t.server.shutdown().await;
}
