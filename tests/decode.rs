//! The decode side end to end: key rotation picked up by a real station over QUIC, and a decode
//! worker that can be interrupted between writing Parquet and recording it without counting
//! anything twice.

use crate::common;

use std::str::FromStr;

use crate::common::*;
use nachtwacht::base::blobs::Key;
use nachtwacht::base::config::Config;
use nachtwacht::evaluate;
use nachtwacht_station::SourceConfig;
use nachtwacht_wire::BundleId;

/// Bundle ids and receipt times, in receipt order.
fn bundles(t: &TestServer) -> Vec<(BundleId, i64)> {
    let conn = t.ctx.db.lock();
    let mut stmt = conn
        .prepare("SELECT bundle_id, received_at_ms FROM bundles ORDER BY received_at_ms, bundle_id")
        .unwrap();

    stmt.query_map([], |r| {
        Ok((
            BundleId::from_hex(&r.get::<_, String>(0)?).unwrap(),
            r.get(1)?,
        ))
    })
    .unwrap()
    .collect::<Result<Vec<_>, _>>()
    .unwrap()
}

fn opens_with(ciphertext: &[u8], identity: &age::x25519::Identity) -> bool {
    age::decrypt(identity, ciphertext).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_reaches_the_station_and_old_and_new_bundles_both_decode() {
    let t = start_server(Config::default()).await;
    // Enrolled for three days of readings; the station first has only the first day.
    let (mut station, dir, _) = t.ankle_station("home-k", "AM-K", 3, vec![]);
    if let SourceConfig::Simulator(sim) = &mut station.source {
        sim.days = 1;
    }
    let old_identity = nachtwacht::trust::secrets::load_age_identities(&t.ctx.dir.age_identity())
        .unwrap()[0]
        .clone();
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert!(report.acknowledged > 0, "{report:?}");
    let before = bundles(&t).len();
    assert_eq!(
        nachtwacht_station::current_recipient(&station, &dir).unwrap(),
        station.server_age_recipient,
        "no rotation yet: the configured recipient"
    );

    let new_recipient = nachtwacht::trust::keys::rotate(&t.ctx, "test").unwrap();
    assert_ne!(new_recipient, station.server_age_recipient);
    // The ingest polls for a new recipient once a second; heartbeats carry it to the station.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while nachtwacht_station::current_recipient(&station, &dir).unwrap() != new_recipient {
        assert!(
            std::time::Instant::now() < deadline,
            "station never learned the new recipient"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        nachtwacht_station::run_once(&station, &dir).await.unwrap();
    }

    // A second day of readings is sealed to the new recipient.
    if let SourceConfig::Simulator(sim) = &mut station.source {
        sim.days = 2;
    }
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert!(report.acknowledged > 0, "{report:?}");
    let all = bundles(&t);
    assert!(all.len() > before);

    t.server.decode_now().await;
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed'"),
        all.len() as i64,
        "the server opens bundles sealed to either key"
    );
    // The evidence copies show which key each bundle was sealed to.
    for (i, (id, received)) in all.iter().enumerate() {
        let ciphertext = t
            .ctx
            .blobs
            .get(&Key::evidence(id, *received))
            .unwrap()
            .unwrap();
        assert_eq!(
            opens_with(&ciphertext, &old_identity),
            i < before,
            "bundle {i} ({id}) sealed to the wrong recipient"
        );
    }
    assert_eq!(
        t.count("SELECT count(*) FROM audit_log WHERE action = 'keys.rotate'"),
        1
    );
    // A station never adopts something that is not an age recipient.
    assert!(nachtwacht_station::adopt_recipient(&station, &dir, "age1notakey").is_err());
    assert!(age::x25519::Recipient::from_str(
        &nachtwacht_station::current_recipient(&station, &dir).unwrap()
    )
    .is_ok());
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decode_interrupted_before_its_commit_is_redone_without_double_rows() {
    let t = start_server(Config::default()).await;
    let (station, dir, _) = t.ankle_station("home-i", "AM-I", 3, vec![]);
    nachtwacht_station::run_once(&station, &dir).await.unwrap();
    t.server.decode_now().await;
    let processed = t.count("SELECT count(*) FROM bundles WHERE state = 'processed'");
    assert!(processed >= 3);
    let rows = t.count("SELECT sum(rows) FROM dataset_files");
    assert_eq!(rows, t.count("SELECT sum(rows_stored) FROM bundles"));
    let files_before = common::signal_files(&t.ctx, nachtwacht_wire::Signal::Ankle).1;

    // Simulate a worker killed after writing its Parquet files but before the transaction that
    // catalogues them and marks the bundles processed: the rows are on disk, nothing in SQL.
    {
        let conn = t.ctx.db.lock();
        conn.execute_batch(
            "UPDATE bundles SET state = 'spooled', rows_stored = NULL, processed_at_ms = NULL;
             DELETE FROM dataset_files;",
        )
        .unwrap();
    }
    t.server.decode_now().await;
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed'"),
        processed
    );
    assert_eq!(
        t.count("SELECT sum(rows) FROM dataset_files"),
        rows,
        "every row catalogued once"
    );
    let (readers, files_after) = common::signal_files(&t.ctx, nachtwacht_wire::Signal::Ankle);
    // Same rows, and on disk exactly the catalogued files: nothing left over from the first pass.
    let total: usize = files_after
        .iter()
        .map(|f| {
            nachtwacht::dataset::read_parquet(f)
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(total as i64, rows);
    drop(readers);
    let on_disk = common::stored_raw_files(&t.ctx);
    assert_eq!(on_disk.len(), files_after.len(), "{on_disk:?}");
    assert!(!files_before.is_empty());
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ankle_readout_is_replayed_through_a_replacement_station() {
    let t = start_server(Config::default()).await;
    let ctx = &t.ctx;
    person_with_monitor(ctx, "CASE-R", "AM-R");
    // The old station failed; the device's memory is read out and replayed through a new one.
    nachtwacht::registry::enroll::add_station(ctx, "home-old", "test").unwrap();
    nachtwacht::registry::enroll::pair_device(ctx, "AM-R", "home-old", 0, "test").unwrap();
    let mut station = nachtwacht::registry::enroll::add_station(ctx, "home-new", "test").unwrap();
    nachtwacht::registry::enroll::pair_device(
        ctx,
        "AM-R",
        "home-new",
        nachtwacht::base::time::now_ms() - 1,
        "test",
    )
    .unwrap();
    let config = station_config_file(&t, &mut station);
    let import = move || import_ankle_csv(&config, "AM-R", &readout());
    let log = tokio::task::spawn_blocking(import.clone()).await.unwrap();
    assert!(
        log.contains("bundles=2") && log.contains("acknowledged=2"),
        "{log}"
    );
    t.server.decode_now().await;
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed'"),
        2,
        "one bundle per UTC day of the readout"
    );
    assert_eq!(t.count("SELECT sum(rows_stored) FROM bundles"), 96);
    // The strap-open reading is stored with the rest (a tamper signal, not invalid data); nothing
    // in the readout is out of range.
    assert_eq!(t.count("SELECT sum(rows_flagged) FROM bundles"), 0);

    // The pipelines turn the open strap into one strap-open alert (not a removal: the strap
    // rule covers it, and one reading is not an obstruction), with the bundle that carried the
    // reading as evidence.
    let (ctx, pseudonyms) = (
        t.ctx.clone(),
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&t.ctx.dir).unwrap(),
    );
    let report =
        tokio::task::spawn_blocking(move || evaluate::run(&ctx, &pseudonyms, &Default::default()))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(report.device_events, 1, "{report:?}");
    let opened_ms = chrono::DateTime::parse_from_rfc3339("2026-11-19T15:00:00Z")
        .unwrap()
        .timestamp_millis();
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM alerts WHERE kind = 'strap-open' AND start_ms = {opened_ms}
               AND evidence_bundles IN (SELECT bundle_id FROM bundles)"
        )),
        1
    );
    // The readout's evening drinking curve (20:00–23:30 on the second day) is the only other.
    assert_eq!(
        t.count("SELECT count(*) FROM alerts WHERE kind = 'alcohol' AND peak_tac_g_dl = 0.07"),
        1
    );
    assert_eq!(t.count("SELECT count(*) FROM alerts"), 2);

    // Replaying the same readout again seals nothing new.
    let log = tokio::task::spawn_blocking(import.clone()).await.unwrap();
    assert!(
        log.contains("bundles=0") && log.contains("already_sealed=96"),
        "{log}"
    );
    assert_eq!(t.count("SELECT count(*) FROM bundles"), 2);
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_after_a_device_is_returned_are_attributed_to_nobody() {
    let t = start_server(Config::default()).await;
    let ctx = &t.ctx;
    let person = person_with_monitor(ctx, "CASE-X", "AM-X");
    let mut station = nachtwacht::registry::enroll::add_station(ctx, "home-x", "test").unwrap();
    nachtwacht::registry::enroll::pair_device(ctx, "AM-X", "home-x", 0, "test").unwrap();
    // The monitor is handed in at noon on the readout's first day (2026-11-19). Its memory still
    // holds readings from after that, and the station uploads them late.
    let handed_in = chrono::DateTime::parse_from_rfc3339("2026-11-19T12:00:00Z")
        .unwrap()
        .timestamp_millis();
    assert!(
        nachtwacht::registry::enroll::end_assignment(ctx, "AM-X", 1_700_000_000_000, "test")
            .is_err()
    );
    assert_eq!(
        nachtwacht::registry::enroll::end_assignment(ctx, "AM-X", handed_in, "test").unwrap(),
        person
    );
    assert!(nachtwacht::registry::enroll::end_assignment(ctx, "AM-X", handed_in, "test").is_err());

    let config = station_config_file(&t, &mut station);
    let log = tokio::task::spawn_blocking(move || import_ankle_csv(&config, "AM-X", &readout()))
        .await
        .unwrap();
    assert!(log.contains("acknowledged=2"), "{log}");
    t.server.decode_now().await;

    // Day one started under the assignment: stored, its afternoon and evening flagged (24
    // half-hours from noon, the strap opening at 15:00 among them).
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed' AND rows_stored = 48"),
        1
    );
    assert_eq!(t.count("SELECT sum(rows_flagged) FROM bundles"), 24);
    let flags: Vec<serde_json::Value> = t
        .ctx
        .db
        .lock()
        .prepare("SELECT flags FROM bundles WHERE flags IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|f| serde_json::from_str(&f.unwrap()).unwrap())
        .collect();
    assert_eq!(
        flags.iter().filter(|f| f["after-assignment"] == 24).count(),
        1,
        "{flags:?}"
    );
    // Day two started after it: no one's readings. Quarantined, kept, with the reason.
    assert_eq!(
        t.count(
            "SELECT count(*) FROM bundles WHERE state = 'quarantined'
               AND reason LIKE '%not assigned to a person%'"
        ),
        1
    );
    // So neither the strap opening after the hand-in nor day two's drinking becomes an alert.
    let (ctx, pseudonyms) = (
        t.ctx.clone(),
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&t.ctx.dir).unwrap(),
    );
    tokio::task::spawn_blocking(move || evaluate::run(&ctx, &pseudonyms, &Default::default()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.count("SELECT count(*) FROM alerts"), 0);
    t.server.shutdown().await;
}

/// A person on the alcohol ban wearing ankle monitor `serial` since 2025-11-13, before the readout.
fn person_with_monitor(ctx: &nachtwacht::base::Context, reference: &str, serial: &str) -> i64 {
    let person = nachtwacht::registry::enroll::add_person(
        ctx,
        reference,
        nachtwacht::base::programme::Programme::AlcoholBan,
        "test",
    )
    .unwrap();
    nachtwacht::registry::enroll::assign_device(
        ctx,
        serial,
        nachtwacht_wire::DeviceKind::AnkleMonitor,
        person,
        1_763_000_000_000,
        "test",
    )
    .unwrap();
    person
}

/// Two days of half-hourly ankle readings, 2026-11-19 and -20 (UTC).
fn readout() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ankle-readout.csv")
}

/// Points a station at the test server and writes its configuration into its own directory.
fn station_config_file(
    t: &TestServer,
    station: &mut nachtwacht_station::StationConfig,
) -> std::path::PathBuf {
    station.servers = vec![t.server.quic_addr().to_string()];
    let dir = t.tmp.path().join(&station.name);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("station.toml");
    std::fs::write(&config, station.to_toml()).unwrap();
    config
}

/// The opening stage works on several bundles at once; what it decides must still be what a
/// sequential pass decides. Good and corrupt bundles interleaved, over several open chunks and
/// more than one batch: every good one is stored in full, every corrupt one quarantined with
/// its own reason, nothing lost or doubled.
#[test]
fn interleaved_good_and_corrupt_bundles_are_each_stored_or_quarantined() {
    use nachtwacht::base::Context;
    use nachtwacht::spool::Spool;
    use nachtwacht_station::seal;
    use nachtwacht_station::source::simulator::{self, SimulatorConfig};
    use nachtwacht_wire::DeviceKind;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    nachtwacht::server::init::init(
        &root,
        &common::test_config(),
        nachtwacht::base::time::now_ms(),
    )
    .unwrap();
    let ctx = Context::open(&root).unwrap();
    let start_ms = days_ago(2);
    let person = nachtwacht::registry::enroll::add_person(
        &ctx,
        "CASE-mix",
        nachtwacht::base::programme::Programme::AggressionTraining,
        "test",
    )
    .unwrap();
    nachtwacht::registry::enroll::assign_device(
        &ctx,
        "WB-MIX",
        DeviceKind::Wristband,
        person,
        start_ms,
        "test",
    )
    .unwrap();
    let station = nachtwacht::registry::enroll::add_station(&ctx, "mix-home", "test").unwrap();
    nachtwacht::registry::enroll::pair_device(&ctx, "WB-MIX", "mix-home", 0, "test").unwrap();
    let station_id: i64 = ctx
        .db
        .lock()
        .query_row("SELECT id FROM stations WHERE name = 'mix-home'", [], |r| {
            r.get(0)
        })
        .unwrap();

    // 150 one-minute bundles: more than two batches of 64, many open chunks. Every seventh is
    // replaced by bytes that are not age at all, each different so each has its own reason.
    let contents: Vec<_> = simulator::generate_lazily(&SimulatorConfig {
        device: DeviceKind::Wristband,
        device_serial: "WB-MIX".into(),
        start_ms,
        days: 1,
        seed: 9,
        drinking: vec![],
        wear_hours_per_day: 24,
        bundle_minutes: 1,
    })
    .take(150)
    .collect();
    let key = station.signing_key().unwrap();
    let signer = seal::Signer {
        station: &station.name,
        key: &key,
    };
    let recipient = seal::parse_recipient(&station.server_age_recipient).unwrap();
    let spool = Spool::new(ctx.blobs.clone(), ctx.db.clone());
    let (mut good_rows, mut corrupt) = (0usize, Vec::new());
    for (i, content) in contents.iter().enumerate() {
        let mut sealed = seal::seal(content, &signer, &recipient).unwrap();
        if i % 7 == 3 {
            sealed.ciphertext = format!("not age, bundle {i}").into_bytes();
            corrupt.push(sealed.bundle_id.to_hex());
        } else {
            good_rows += content
                .batches
                .iter()
                .map(|b| b.batch.num_rows())
                .sum::<usize>();
        }
        spool
            .put_received(
                station_id,
                i as u64 + 1,
                sealed.bundle_id,
                &sealed.ciphertext,
                nachtwacht::base::time::now_ms() + i as i64,
            )
            .unwrap();
    }

    let decoder = nachtwacht::decode::Decoder::new(
        ctx.clone(),
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir).unwrap(),
    );
    let report = decoder.process_pending().unwrap();
    assert_eq!(report.processed, 150 - corrupt.len());
    assert_eq!(report.quarantined, corrupt.len());
    assert_eq!(report.rows_stored, good_rows);

    let conn = ctx.db.lock();
    let mut stmt = conn
        .prepare(
            "SELECT bundle_id, reason FROM bundles WHERE state = 'quarantined' ORDER BY sequence",
        )
        .unwrap();
    let quarantined: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        quarantined
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>(),
        corrupt,
        "exactly the corrupt bundles, no others"
    );
    assert!(quarantined
        .iter()
        .all(|(_, reason)| reason.starts_with("decryption failed")));
    let catalogued: i64 = conn
        .query_row("SELECT sum(rows) FROM dataset_files", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        catalogued as usize, good_rows,
        "every good row catalogued once"
    );
    let listed: String = conn
        .prepare("SELECT bundles FROM dataset_files")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .join(",");
    assert!(
        corrupt.iter().all(|id| !listed.contains(id.as_str())),
        "no file claims a quarantined bundle"
    );
}

/// Puts bundles straight into a station's spool and uploads them (the source is switched off, so
/// only these go).
async fn upload_sealed(
    station: &nachtwacht_station::StationConfig,
    dir: &std::path::Path,
    sealed: &[nachtwacht_station::seal::SealedBundle],
) {
    let spool = nachtwacht_station::spool::Spool::open(&station.spool_dir(dir)).unwrap();
    for s in sealed {
        spool.put(s).unwrap();
    }
    let mut quiet = station.clone();
    quiet.source = SourceConfig::None;
    let report = nachtwacht_station::run_once(&quiet, dir).await.unwrap();
    assert_eq!(report.acknowledged, sealed.len(), "{report:?}");
}

/// A signed bundle with one timestamp past chrono's range (9e15 ms) is quarantined with its
/// reason, and the bundles received after it are decoded. Before the fix the Parquet writer
/// panicked on it ("day in range") at every pass, and nothing behind it was ever decoded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_with_a_timestamp_out_of_range_is_quarantined_and_blocks_nothing() {
    use arrow::array::{Array, TimestampMillisecondArray};
    let t = start_server(Config::default()).await;
    let (station, dir, _) = t.ankle_station("home-p", "AM-P", 3, vec![]);
    let mut contents = nachtwacht_station::source::read_all(&station.source, &dir).unwrap();
    assert!(contents.len() >= 2, "{} bundles", contents.len());
    // The first bundle in receipt order is the poisoned one.
    let poisoned = &mut contents[0];
    let batch = &mut poisoned.batches[0].batch;
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    let mut values: Vec<i64> = ts.values().to_vec();
    *values.last_mut().unwrap() = 9_000_000_000_000_000;
    let mut columns = batch.columns().to_vec();
    columns[0] = std::sync::Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"));
    *batch = arrow::array::RecordBatch::try_new(batch.schema(), columns).unwrap();

    let sealed = seal_contents(&station, &contents);
    upload_sealed(&station, &dir, &sealed[..1]).await;
    upload_sealed(&station, &dir, &sealed[1..]).await;

    tokio::time::timeout(std::time::Duration::from_secs(120), t.server.decode_now())
        .await
        .expect("decoding finished");
    let reason: String = t
        .ctx
        .db
        .lock()
        .query_row(
            "SELECT reason FROM bundles WHERE bundle_id = ?1 AND state = 'quarantined'",
            [sealed[0].bundle_id.to_hex()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        reason.contains("outside 1970-01-01..2100-01-01"),
        "{reason}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed'"),
        sealed.len() as i64 - 1,
        "every bundle behind the poisoned one is decoded"
    );
    t.server.shutdown().await;
}

/// The state a kill leaves between moving a bundle into quarantine/ and updating its row: the
/// next pass finishes the quarantine with the recorded reason. Before the fix it re-quarantined
/// the bundle as "spool file unreadable" and overwrote the `.reason` file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_interrupted_after_the_move_keeps_its_reason() {
    let t = start_server(Config::default()).await;
    let (station, dir, _) = t.ankle_station("home-q", "AM-Q", 1, vec![]);
    let sealed = seal_all(&station, &dir);
    // Uploaded while the decoder is busy elsewhere: hold the decode lock so nothing is decoded.
    let lock = nachtwacht::decode::DecodeLock::acquire(&t.ctx.dir).unwrap();
    upload_sealed(&station, &dir, &sealed).await;
    let victim = sealed[0].bundle_id;
    let blobs = &t.ctx.blobs;
    blobs
        .put(&Key::quarantine_reason(&victim), b"the original reason")
        .unwrap();
    // Moved where the decoder's quarantine moves it (from a segment: copied, the segment kept).
    let spooled = nachtwacht::spool::location(&t.ctx.db.lock(), &victim)
        .unwrap()
        .unwrap();
    nachtwacht::spool::Location::move_all(blobs, &[(spooled, Key::quarantined(&victim))]).unwrap();
    assert!(blobs.exists(&Key::quarantined(&victim)).unwrap());
    drop(lock);
    tokio::time::timeout(std::time::Duration::from_secs(120), t.server.decode_now())
        .await
        .expect("decoding finished");
    let (state, reason): (String, String) = t
        .ctx
        .db
        .lock()
        .query_row(
            "SELECT state, reason FROM bundles WHERE bundle_id = ?1",
            [victim.to_hex()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("quarantined", "the original reason")
    );
    assert_eq!(
        blobs
            .get(&Key::quarantine_reason(&victim))
            .unwrap()
            .unwrap(),
        b"the original reason"
    );
    assert!(blobs.exists(&Key::quarantined(&victim)).unwrap());
    t.server.shutdown().await;
}

/// The same readings reaching the dataset under two bundle ids (an overlapping read-out: the
/// second bundle holds all but the last reading of the first) are counted once by the pipelines.
/// Person B gets both bundles, person A (same simulated readings) only the first: their daily
/// indicators must be equal. Before the fix B's wear minutes were counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_stored_twice_under_two_bundle_ids_are_counted_once() {
    let t = start_server(Config::default()).await;
    let mut per_station = Vec::new();
    for (name, serial) in [("home-a", "AM-A"), ("home-b", "AM-B")] {
        let (station, dir, _) = t.ankle_station(name, serial, 1, vec![]);
        let mut contents = nachtwacht_station::source::read_all(&station.source, &dir).unwrap();
        contents.truncate(1);
        per_station.push((station, dir, contents));
    }
    for (i, (station, dir, contents)) in per_station.iter_mut().enumerate() {
        if i == 1 {
            // The overlapping read-out: the same readings but the last.
            let mut overlap = contents[0].clone();
            for b in &mut overlap.batches {
                let n = b.batch.num_rows();
                b.batch = b.batch.slice(0, n.saturating_sub(1));
            }
            contents.push(overlap);
        }
        let sealed = seal_contents(station, contents);
        upload_sealed(station, dir, &sealed).await;
    }
    t.server.decode_now().await;
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed'"),
        3
    );
    let (ctx, pseudonyms) = (
        t.ctx.clone(),
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&t.ctx.dir).unwrap(),
    );
    tokio::task::spawn_blocking(move || evaluate::run(&ctx, &pseudonyms, &Default::default()))
        .await
        .unwrap()
        .unwrap();
    let daily = common::research_table(&t.ctx, nachtwacht::base::blobs::RESEARCH_DAILY);
    let wear: Vec<Option<i64>> = daily
        .column("wear_minutes")
        .unwrap()
        .i64()
        .unwrap()
        .into_iter()
        .collect();
    assert!(wear.len() >= 2, "{daily}");
    assert!(wear.iter().all(|w| *w == wear[0]), "{daily}");
    t.server.shutdown().await;
}
