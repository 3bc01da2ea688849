//! Alcohol alerts do not depend on how the readings arrive, and alerts are revised, never silently
//! rewritten or deleted, when new readings change what they show.
//!
//! Synthetic ankle recordings (drinking of several doses, short and sustained exposures, with the
//! sensor's noise) are written into real data directories as the decoder writes them (Parquet files
//! per bundle, catalogued in SQLite), and evaluated by the server's own evaluation functions:
//! all at once; bundle by bundle in a random, partly late order with the scheduler's incremental
//! evaluation after each upload; and as a backfill in random chunkings. The alcohol alerts that are
//! in force at the end must be identical.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, UInt16Array};
use arrow::record_batch::RecordBatch;
use nachtwacht::base::Context;
use nachtwacht::evaluate::{self, Days};
use nachtwacht_pipelines::synth::{Ankle, AnkleTruth, Noise, Rng};
use nachtwacht_wire::{BundleId, Signal};
use polars::prelude::*;

const DAY_MS: i64 = 86_400_000;
const DAYS: usize = 5;

/// One upload: a bundle's readings of one person.
struct Upload {
    person: usize,
    id: BundleId,
    rows: RecordBatch,
    first_ms: i64,
}

/// A fresh data directory with `people` enrolled; returns the context and their person ids.
fn data_dir(tmp: &tempfile::TempDir, name: &str, people: usize) -> (Context, Vec<i64>) {
    let root = tmp.path().join(name);
    nachtwacht::server::init::init(
        &root,
        &common::test_config(),
        nachtwacht::base::time::now_ms(),
    )
    .unwrap();
    let ctx = Context::open(&root).unwrap();
    let ids = (0..people)
        .map(|i| {
            nachtwacht::registry::enroll::add_person(
                &ctx,
                &format!("CASE-{i}"),
                nachtwacht::base::programme::Programme::AlcoholBan,
                "test",
            )
            .unwrap()
        })
        .collect();
    (ctx, ids)
}

/// One person's readings: (epoch ms, [TAC, ambient, skin temperature, IR]).
type Recording = (usize, Vec<(i64, [f64; 4])>);

/// Recordings of `people` persons over [`DAYS`] days from `t0`, with drinking and exposures at
/// random moments, cut into bundles of 8 readings (four hours).
fn recordings(seed: u64, people: usize, t0: i64) -> Vec<Recording> {
    let mut rng = Rng::new(seed);
    let readings = DAYS * 48;
    (0..people)
        .map(|p| {
            let mut truth = Vec::new();
            // Two or three events per person, anywhere (also across midnight and at the very end).
            for _ in 0..2 + (rng.unit() * 2.0) as usize {
                let at = (rng.unit() * (readings - 4) as f64) as usize;
                truth.push(match (rng.unit() * 4.0) as u32 {
                    0 => AnkleTruth::Interferent { reading: at },
                    1 => AnkleTruth::Exposure {
                        first_reading: at,
                        readings: 3 + (rng.unit() * 4.0) as usize,
                    },
                    _ => AnkleTruth::Drinking {
                        first_reading: at,
                        drinks: 3 + (rng.unit() * 6.0) as u32,
                    },
                });
            }
            let ankle = Ankle {
                pid: format!("x{p}"),
                t0_ms: t0,
                readings,
                truth,
                noise: Noise::ESTIMATED,
                seed: seed * 1000 + p as u64,
            };
            let df = ankle.frame().unwrap().collect().unwrap();
            let ts = df.column("ts").unwrap().cast(&DataType::Int64).unwrap();
            let ts = ts.i64().unwrap();
            let f = |c: &str| df.column(c).unwrap().f64().unwrap().clone();
            let (tac, amb, skin, ir) =
                (f("tac_g_dl"), f("ambient_g_dl"), f("skin_temp_c"), f("ir"));
            let rows = (0..df.height())
                .map(|i| {
                    (
                        ts.get(i).unwrap(),
                        [
                            tac.get(i).unwrap(),
                            amb.get(i).unwrap(),
                            skin.get(i).unwrap(),
                            ir.get(i).unwrap(),
                        ],
                    )
                })
                .collect();
            (p, rows)
        })
        .collect()
}

fn uploads(recs: &[Recording]) -> Vec<Upload> {
    let schema = Signal::Ankle.schema();
    let ts_type = schema.field(0).data_type().clone();
    let mut out = Vec::new();
    for (person, rows) in recs {
        for (k, chunk) in rows.chunks(8).enumerate() {
            let ts: ArrayRef = Arc::new(Int64Array::from(
                chunk.iter().map(|r| r.0).collect::<Vec<_>>(),
            ));
            let col = |j: usize| -> ArrayRef {
                Arc::new(Float64Array::from(
                    chunk.iter().map(|r| r.1[j]).collect::<Vec<_>>(),
                ))
            };
            let columns = vec![
                arrow::compute::cast(&ts, &ts_type).unwrap(),
                col(0),
                col(1),
                col(2),
                col(3),
                Arc::new(BooleanArray::from(vec![true; chunk.len()])) as ArrayRef,
            ];
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(*person as u64).to_be_bytes());
            id[8..].copy_from_slice(&(k as u64).to_be_bytes());
            out.push(Upload {
                person: *person,
                id: BundleId(id),
                rows: RecordBatch::try_new(schema.clone(), columns).unwrap(),
                first_ms: chunk[0].0,
            });
        }
    }
    out
}

/// Writes uploads into the dataset and catalog, as the decoder does for processed bundles.
fn store(ctx: &Context, persons: &[i64], batch: &[&Upload]) {
    let pseudonyms = nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir).unwrap();
    let parts: Vec<(BundleId, RecordBatch)> = batch
        .iter()
        .map(|u| {
            let pid = pseudonyms.operational(persons[u.person]);
            let quality = UInt16Array::from(vec![0u16; u.rows.num_rows()]);
            let rows =
                nachtwacht::dataset::stored_rows(Signal::Ankle, &u.id, &pid, &u.rows, &quality)
                    .unwrap();
            (u.id, rows)
        })
        .collect();
    let files = nachtwacht::dataset::write_rows(&ctx.blobs, Signal::Ankle, &parts).unwrap();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction().unwrap();
    for f in &files {
        nachtwacht::dataset::catalog_insert(&tx, f, "bundle", nachtwacht::base::time::now_ms())
            .unwrap();
    }
    tx.commit().unwrap();
}

/// The alcohol alerts in force (not withdrawn), by person index, as comparable rows.
type AlertRow = (usize, String, String, i64, i64, u64, bool, String);

fn alerts_in_force(ctx: &Context, persons: &[i64]) -> BTreeSet<AlertRow> {
    let conn = ctx.db.lock();
    let mut stmt = conn
        .prepare(
            "SELECT person_id, kind, severity, start_ms, end_ms, peak_tac_g_dl, provisional, evidence_bundles
               FROM alerts WHERE kind IN ('alcohol', 'interferent') AND withdrawn_at_ms IS NULL",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let person: i64 = r.get(0)?;
        Ok((
            persons.iter().position(|p| *p == person).unwrap(),
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get::<_, f64>(5)?.to_bits(),
            r.get::<_, i64>(6)? != 0,
            r.get(7)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Alcohol and interferent alerts in the research dataset's alert counts (research pseudonyms
/// differ per data directory; the totals may not).
fn research_alert_totals(ctx: &Context) -> (i64, i64) {
    let df = common::research_table(ctx, nachtwacht::base::blobs::RESEARCH_ALERT_COUNTS)
        .lazy()
        .select([
            col("alcohol_alerts").sum().cast(DataType::Int64),
            col("interferent_alerts").sum().cast(DataType::Int64),
        ])
        .collect()
        .unwrap();
    let get = |c: &str| df.column(c).unwrap().i64().unwrap().get(0).unwrap_or(0);
    (get("alcohol_alerts"), get("interferent_alerts"))
}

fn run_all(ctx: &Context) {
    evaluate::run(
        ctx,
        &nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir).unwrap(),
        &Default::default(),
    )
    .unwrap();
}

fn count(ctx: &Context, sql: &str) -> i64 {
    ctx.db.lock().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn alerts_are_the_same_however_the_readings_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let people = 6;
    // Recordings that end 12 hours ago, so an episode open at the end is pending in every run.
    let t0 =
        (nachtwacht::base::time::now_ms() / DAY_MS) * DAY_MS - DAYS as i64 * DAY_MS - DAY_MS / 2;
    let mut rng = Rng::new(7);

    for round in 0..3u64 {
        let recs = recordings(100 + round, people, t0);
        let all = uploads(&recs);

        // At once.
        let (once, persons) = data_dir(&tmp, &format!("once-{round}"), people);
        store(&once, &persons, &all.iter().collect::<Vec<_>>());
        run_all(&once);
        let want = alerts_in_force(&once, &persons);
        assert!(
            want.iter().any(|a| a.1 == "alcohol") && want.iter().any(|a| a.1 == "interferent"),
            "round {round}: the recordings must give both kinds: {want:?}"
        );

        // Uploads in time order, each station's bundles in a few batches, a third of the bundles
        // held back and delivered late (up to two days), the scheduler evaluating after each.
        let (live, persons_live) = data_dir(&tmp, &format!("live-{round}"), people);
        let mut order: Vec<(i64, &Upload)> = all
            .iter()
            .map(|u| {
                let late = if rng.unit() < 0.33 {
                    (rng.unit() * 2.0 * DAY_MS as f64) as i64
                } else {
                    0
                };
                (u.first_ms + late, u)
            })
            .collect();
        order.sort_by_key(|(at, u)| (*at, u.person));
        let (ctx, ps) = (
            &live,
            &nachtwacht::trust::pseudonym::Pseudonymiser::load(&live.dir).unwrap(),
        );
        for batch in order.chunks(1 + (rng.unit() * 12.0) as usize) {
            store(
                &live,
                &persons_live,
                &batch.iter().map(|b| b.1).collect::<Vec<_>>(),
            );
            evaluate::run_incremental(ctx, ps, &Default::default(), None).unwrap();
        }
        let got = alerts_in_force(&live, &persons_live);
        assert_eq!(got, want, "round {round}: uploads with late bundles");
        // Research counts only alerts in force: withdrawn ones are a record, not events.
        assert_eq!(research_alert_totals(&live), research_alert_totals(&once));
        let revisions = count(&live, "SELECT count(*) FROM alert_revisions");
        let withdrawn = count(
            &live,
            "SELECT count(*) FROM alerts WHERE withdrawn_at_ms IS NOT NULL",
        );

        // Backfill in random chunkings, from a clean alert table each time.
        let (back, persons_back) = data_dir(&tmp, &format!("back-{round}"), people);
        store(&back, &persons_back, &all.iter().collect::<Vec<_>>());
        let from = chrono::DateTime::from_timestamp_millis(t0)
            .unwrap()
            .date_naive();
        let days = Days {
            from,
            to: from + chrono::Days::new(DAYS as u64 + 1),
        };
        for _ in 0..2 {
            back.db
                .lock()
                .execute_batch(
                    "DELETE FROM alert_revisions; DELETE FROM alert_events; DELETE FROM alerts;",
                )
                .unwrap();
            let chunk = 1 + (rng.unit() * 3.0) as u32;
            evaluate::backfill(
                &back,
                &nachtwacht::trust::pseudonym::Pseudonymiser::load(&back.dir).unwrap(),
                &Default::default(),
                days,
                chunk,
                |_, _, _| {},
            )
            .unwrap();
            assert_eq!(
                alerts_in_force(&back, &persons_back),
                want,
                "round {round}: backfill in chunks of {chunk} days"
            );
        }
        println!(
            "round {round}: {} alerts in force; live uploads revised {revisions} times and withdrew {withdrawn}",
            want.len()
        );
        // Every revision is sealed: the chain and every alert's seal verify.
        let conn = live.db.lock();
        assert!(nachtwacht::trust::audit::seal::check(&conn)
            .unwrap()
            .is_none());
    }
}

#[test]
fn a_provisional_alert_is_revised_when_its_end_arrives_and_nothing_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, persons) = data_dir(&tmp, "d", 1);
    let t0 = (nachtwacht::base::time::now_ms() / DAY_MS) * DAY_MS - 3 * DAY_MS;
    // Drinking that stays above the threshold for 14 hours: provisional before its end is known.
    let tac = |i: usize| match i {
        0..=3 => 0.0,
        4..=33 => (0.01 * (i - 3) as f64).min(0.05),
        _ => (0.05 - 0.0075 * (i - 33) as f64).max(0.0),
    };
    let rows: Vec<(i64, [f64; 4])> = (0..60)
        .map(|i| (t0 + i as i64 * 1_800_000, [tac(i), 0.0, 33.0, 1.0]))
        .collect();
    let all = uploads(&[(0, rows)]);
    let (first, rest) = all.split_at(4);
    store(&ctx, &persons, &first.iter().collect::<Vec<_>>());
    run_all(&ctx);
    let before = alerts_in_force(&ctx, &persons);
    assert_eq!(before.len(), 1, "{before:?}");
    let alert = before.iter().next().unwrap();
    assert!(alert.6, "provisional: {alert:?}");
    assert_eq!(alert.2, "medium");
    let id: i64 = ctx
        .db
        .lock()
        .query_row("SELECT id FROM alerts", [], |r| r.get(0))
        .unwrap();
    // The officer acts on it.
    ctx.db
        .lock()
        .execute(
            "INSERT INTO alert_events (alert_id, at_ms, actor, from_status, to_status, comment)
             VALUES (?1, 0, 'officer', 'new', 'in_process', 'gebeld')",
            [id],
        )
        .unwrap();

    store(&ctx, &persons, &rest.iter().collect::<Vec<_>>());
    run_all(&ctx);
    let after = alerts_in_force(&ctx, &persons);
    assert_eq!(after.len(), 1, "{after:?}");
    let revised = after.iter().next().unwrap();
    assert!(!revised.6, "final now: {revised:?}");
    assert_eq!(
        (revised.1.as_str(), revised.2.as_str()),
        ("alcohol", "high")
    );
    assert!(revised.4 > alert.4, "the alert grew to the episode's end");
    let (same_id, revision, reason): (i64, i64, String) = ctx
        .db
        .lock()
        .query_row(
            "SELECT a.id, a.revision, r.reason FROM alerts a JOIN alert_revisions r ON r.alert_id = a.id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((same_id, revision, reason.as_str()), (id, 1, "confirmed"));
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM audit_log WHERE action = 'alert.revised'"
        ),
        1
    );
    assert_eq!(count(&ctx, "SELECT count(*) FROM alert_events"), 1);
    // Evaluating the same readings again changes nothing.
    run_all(&ctx);
    assert_eq!(count(&ctx, "SELECT count(*) FROM alert_revisions"), 1);
    let conn = ctx.db.lock();
    assert!(nachtwacht::trust::audit::seal::check(&conn)
        .unwrap()
        .is_none());
}

/// Several processes on one database: uploads arrive while two evaluators (each with its own
/// connection, as the scheduler of one node and a backfill started from the CLI would be) run over
/// and over. Every reconciliation is one write-locked transaction, so none sees another's half
/// work; once the uploads stop and both have run again, the alerts are those of one evaluation of
/// all data, with no alert twice.
#[test]
fn concurrent_evaluators_end_with_the_alerts_of_one_evaluation() {
    let tmp = tempfile::tempdir().unwrap();
    let people = 5;
    let t0 =
        (nachtwacht::base::time::now_ms() / DAY_MS) * DAY_MS - DAYS as i64 * DAY_MS - DAY_MS / 2;
    let recs = recordings(300, people, t0);
    let all = uploads(&recs);

    let (once, persons) = data_dir(&tmp, "once", people);
    store(&once, &persons, &all.iter().collect::<Vec<_>>());
    run_all(&once);
    let want = alerts_in_force(&once, &persons);

    let (shared, persons_shared) = data_dir(&tmp, "shared", people);
    let root = tmp.path().join("shared");
    let uploading = std::sync::atomic::AtomicBool::new(true);
    let from = chrono::DateTime::from_timestamp_millis(t0)
        .unwrap()
        .date_naive();
    let evaluator = |backfill: bool| {
        let ctx = Context::open(&root).unwrap();
        let ps = nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir).unwrap();
        let mut runs = 0;
        let mut rng = Rng::new(if backfill { 1 } else { 2 });
        loop {
            let last = !uploading.load(std::sync::atomic::Ordering::SeqCst);
            if backfill {
                let days = Days {
                    from,
                    to: from + chrono::Days::new(DAYS as u64 + 1),
                };
                let chunk = 1 + (rng.unit() * 3.0) as u32;
                evaluate::backfill(&ctx, &ps, &Default::default(), days, chunk, |_, _, _| {})
                    .unwrap();
            } else {
                evaluate::run_incremental(&ctx, &ps, &Default::default(), None).unwrap();
            }
            runs += 1;
            if last {
                return runs;
            }
        }
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| evaluator(false));
        let b = s.spawn(|| evaluator(true));
        let mut order: Vec<&Upload> = all.iter().collect();
        order.sort_by_key(|u| (u.first_ms, u.person));
        for batch in order.chunks(6) {
            store(&shared, &persons_shared, batch);
        }
        uploading.store(false, std::sync::atomic::Ordering::SeqCst);
        let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
        println!("incremental runs {ra}, backfills {rb}");
        assert!(
            ra > 1 && rb > 1,
            "both evaluators ran while uploads came in"
        );
    });
    assert_eq!(alerts_in_force(&shared, &persons_shared), want);
    let conn = shared.db.lock();
    assert!(nachtwacht::trust::audit::seal::check(&conn)
        .unwrap()
        .is_none());
}
