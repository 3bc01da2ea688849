//! Crash tests: real processes killed with SIGKILL at random moments, many times.
//!
//! 1. Several stations upload while the server process is killed and restarted. Afterwards every
//!    bundle a station journalled as acknowledged is at the server exactly once, byte for byte, and
//!    every bundle that was not acknowledged before a crash was sent again and stored.
//! 2. A station agent process is killed and restarted while it seals and uploads. Afterwards every
//!    reading the device produced is stored once: no bundle lost, none stored twice.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::base::Context;
use nachtwacht::{server::init, trust::audit};
use nachtwacht_station::spool::Spool;
use nachtwacht_station::uploader::Uploader;
use nachtwacht_station::StationConfig;
use nachtwacht_wire::protocol::sha256_hex;
use rand::Rng;

const KILLS: usize = 8;
/// Bundles (simulated days) per station in the server-kill test.
const DAYS: u32 = 40;

fn spawn_server(root: &Path, port: u16, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["serve", "--data-dir"])
        .arg(root)
        .args([
            "--quic-listen",
            &format!("127.0.0.1:{port}"),
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start nachtwacht serve")
}

/// Bundle ids a station journalled as acknowledged (with repeats, if it was acknowledged twice).
fn journal(spool_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(spool_dir.join("acknowledged.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

/// The server's copy of a bundle, wherever it is now (spool or evidence).
fn server_copy(ctx: &Context, bundle_id: &str) -> Option<Vec<u8>> {
    let (received, state): (i64, String) = ctx
        .db
        .lock()
        .query_row(
            "SELECT received_at_ms, state FROM bundles WHERE bundle_id = ?1",
            [bundle_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()?;
    let id = nachtwacht_wire::BundleId::from_hex(bundle_id)?;
    use nachtwacht::base::blobs::Key;
    // Where its row says it waits (an object, or a range of a segment), else where it was filed.
    let spooled = nachtwacht::spool::location(&ctx.db.lock(), &id).unwrap()?;
    let found = spooled.read(&ctx.blobs).unwrap().or_else(|| {
        [Key::evidence(&id, received), Key::quarantined(&id)]
            .iter()
            .find_map(|key| ctx.blobs.get(key).unwrap())
    });
    assert!(
        found.is_some() || state == "quarantined",
        "{bundle_id} has no file"
    );
    found
}

fn parquet_rows(ctx: &Context, signal: nachtwacht_wire::Signal) -> i64 {
    common::signal_files(ctx, signal)
        .1
        .iter()
        .map(|p| {
            let reader =
                parquet::file::reader::SerializedFileReader::new(std::fs::File::open(p).unwrap())
                    .unwrap();
            parquet::file::reader::FileReader::metadata(&reader)
                .file_metadata()
                .num_rows()
        })
        .sum()
}

async fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_bundles_survive_server_kills_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    init::init(
        &root,
        &common::test_config(),
        nachtwacht::base::time::now_ms(),
    )
    .unwrap();
    // Enrol through a short-lived in-process server (same data directory), then stop it.
    let t = start_in(tmp).await;
    let port = free_udp_port();
    let mut stations = Vec::new();
    let mut originals: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..3 {
        let (mut cfg, dir, _) =
            t.ankle_station(&format!("crash-{i}"), &format!("AM-K{i}"), DAYS, vec![]);
        cfg.servers = vec![format!("127.0.0.1:{port}")];
        let sealed = seal_all(&cfg, &dir);
        for b in &sealed {
            originals.insert(b.bundle_id.to_hex(), b.ciphertext.clone());
        }
        stations.push((cfg, dir, sealed));
    }
    let TestServer { tmp, ctx, server } = t;
    server.shutdown().await;
    let log = tmp.path().join("server.log");

    let mut child = spawn_server(&root, port, &log);
    let mut started = 1;
    assert!(
        wait_until(Duration::from_secs(30), || serving(&log) >= started).await,
        "server did not start"
    );
    // Each station seals a bundle every few tens of milliseconds and uploads it at once, so
    // uploads are under way whenever the server dies.
    let uploads: Vec<_> = stations
        .iter()
        .cloned()
        .map(|(cfg, dir, sealed)| {
            tokio::spawn(async move {
                let spool = Spool::open(&cfg.spool_dir(&dir)).unwrap();
                let heartbeat = quiet_heartbeat(&cfg);
                let drain = || async {
                    let up = Uploader::new(&cfg)
                        .unwrap()
                        .with_backoff(20, 300)
                        .with_max_failures(3)
                        .with_connect_timeout(Duration::from_millis(500))
                        .with_idle_timeout(Duration::from_secs(2));
                    let _ = up.drain(&spool, &heartbeat).await;
                };
                for b in &sealed {
                    spool.put(b).unwrap();
                    drain().await;
                    let pause = rand::thread_rng().gen_range(20..120);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                let start = Instant::now();
                while !spool.pending().unwrap().is_empty()
                    && start.elapsed() < Duration::from_secs(240)
                {
                    drain().await;
                }
            })
        })
        .collect();

    let acknowledged_so_far = |stations: &[(StationConfig, PathBuf, Vec<_>)]| -> usize {
        stations
            .iter()
            .map(|(cfg, dir, _)| journal(&cfg.spool_dir(dir)).len())
            .sum()
    };
    let mut before_first_kill = None;
    for _ in 0..KILLS {
        let pause = rand::thread_rng().gen_range(100..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        before_first_kill.get_or_insert_with(|| acknowledged_so_far(&stations));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        child = spawn_server(&root, port, &log);
        started += 1;
        assert!(
            wait_until(Duration::from_secs(30), || serving(&log) >= started).await,
            "server did not restart"
        );
    }
    for u in uploads {
        u.await.unwrap();
    }
    // Let the decoder of the surviving server finish, then stop it too.
    let db = ctx.db.clone();
    let decoded = wait_until(Duration::from_secs(60), || {
        db.lock()
            .query_row(
                "SELECT count(*) FROM bundles WHERE state = 'spooled'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            == 0
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        decoded,
        "decoder did not finish; server log:\n{}",
        &server_log[server_log.len().saturating_sub(4000)..]
    );

    let mut acknowledged = BTreeSet::new();
    for (cfg, dir, _) in &stations {
        let spool_dir = cfg.spool_dir(dir);
        assert!(
            Spool::open(&spool_dir)
                .unwrap()
                .pending()
                .unwrap()
                .is_empty(),
            "{} left bundles behind",
            cfg.name
        );
        acknowledged.extend(journal(&spool_dir));
    }
    // Every bundle was acknowledged in the end: the ones lost in a crash were sent again.
    assert_eq!(
        acknowledged,
        originals.keys().cloned().collect::<BTreeSet<_>>()
    );
    // Each is registered once, with the digest of what the station sent, and the file is intact.
    let rows: i64 = ctx
        .db
        .lock()
        .query_row("SELECT count(*) FROM bundles", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as usize, originals.len());
    for (id, bytes) in &originals {
        let sha: String = ctx
            .db
            .lock()
            .query_row(
                "SELECT sha256 FROM bundles WHERE bundle_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(sha, sha256_hex(bytes), "{id}");
        assert_eq!(server_copy(&ctx, id).as_deref(), Some(&bytes[..]), "{id}");
    }
    assert_eq!(
        ctx.db
            .lock()
            .query_row(
                "SELECT count(*) FROM bundles WHERE state <> 'processed'",
                [],
                |r| r.get::<_, i64>(0)
            )
            .unwrap(),
        0
    );
    // Every reading is in the dataset once: 3 stations × DAYS days × 48 readings.
    assert_eq!(
        parquet_rows(&ctx, nachtwacht_wire::Signal::Ankle),
        3 * DAYS as i64 * 48
    );
    // No partial upload survived a restart, and the audit chain is intact.
    let parts = ctx
        .blobs
        .list(nachtwacht::base::blobs::SPOOL)
        .unwrap()
        .iter()
        .filter(|o| o.key.as_str().ends_with(".part"))
        .count();
    assert_eq!(parts, 0);
    assert!(matches!(
        audit::verify(&ctx.db.lock()).unwrap(),
        audit::Verdict::Intact { .. }
    ));
    // The first kill struck while uploads were still going on (each station needs seconds to
    // seal and send its 40 bundles; the first kill comes within 0.6 s).
    let before = before_first_kill.expect("killed at least once");
    assert!(
        before < originals.len(),
        "all {before} bundles were acknowledged before the first kill"
    );
}

/// How many times the server logged that it was serving.
fn serving(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("nachtwacht serving")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_survive_station_kills_exactly_once() {
    let t = start_server(Config::default()).await;
    let days = 40;
    let (cfg, dir, _) = t.ankle_station("crash-station", "AM-S1", days, vec![]);
    let config_path = dir.join("station.toml");
    std::fs::write(&config_path, cfg.to_toml()).unwrap();
    let bin = station_binary();
    let log = dir.join("station.log");
    let spawn = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        Command::new(&bin)
            .args(["run", "--interval", "100ms", "--config"])
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut rng = rand::thread_rng();
    let mut child = spawn();
    let mut last_spawn_at = 0;
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(30..400))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        last_spawn_at = std::fs::metadata(&log)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        child = spawn();
    }
    let expected = days as i64;
    let db = t.ctx.db.clone();
    let all_in = wait_until(Duration::from_secs(90), || {
        db.lock()
            .query_row("SELECT count(*) FROM bundles", [], |r| r.get::<_, i64>(0))
            .unwrap()
            >= expected
    })
    .await;
    // The last station finishes a whole pass with an empty spool (and says so) before it is
    // stopped; on a loaded machine that can come a while after its final upload. Only lines the
    // last station wrote count: an earlier one may have finished a pass before it was killed,
    // and the spool it left is the last station's to empty.
    let log_path = log.clone();
    wait_until(Duration::from_secs(90), || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        text.get(last_spawn_at..)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("pass done") && l.contains("left_in_spool=0"))
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let station_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        all_in,
        "station log:\n{}",
        &station_log[station_log.len().saturating_sub(4000)..]
    );
    t.server.decode_now().await;

    // One bundle per simulated day, each the id the station derives from its content.
    let expected_ids: BTreeSet<String> = nachtwacht_station::source::read_all(&cfg.source, &dir)
        .unwrap()
        .iter()
        .map(|c| nachtwacht_station::seal::content_id(c).to_hex())
        .collect();
    let stored: BTreeSet<String> = {
        let conn = t.ctx.db.lock();
        let mut stmt = conn.prepare("SELECT bundle_id FROM bundles").unwrap();

        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(stored, expected_ids);
    assert_eq!(
        t.count("SELECT count(*) FROM bundles WHERE state = 'processed'"),
        expected
    );
    assert_eq!(
        parquet_rows(&t.ctx, nachtwacht_wire::Signal::Ankle),
        expected * 48
    );
    // Nothing was set aside and nothing waits in the station's spool.
    let spool = Spool::open(&cfg.spool_dir(&dir)).unwrap();
    assert!(spool.pending().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(cfg.spool_dir(&dir).join("set-aside"))
            .unwrap()
            .count(),
        0
    );
    assert!(station_log.matches("pass done").count() >= 1);
    t.server.shutdown().await;
}

/// A real kill at the one step of quarantining that used to lose information: after the
/// ciphertext moved into `quarantine/`, before the row was updated. The decoder process is made to
/// abort exactly there (failpoint `quarantine-after-move`); the next pass finishes the quarantine
/// with the reason recorded before the kill. Before the fix it re-quarantined the bundle as "spool
/// file unreadable" and overwrote the `.reason` file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoder_killed_after_moving_a_bundle_into_quarantine_keeps_its_reason() {
    use nachtwacht::registry::enroll;
    use nachtwacht_station::source::simulator::SimulatorConfig;
    use nachtwacht_wire::DeviceKind;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    init::init(
        &root,
        &common::test_config(),
        nachtwacht::base::time::now_ms(),
    )
    .unwrap();
    let ctx = Context::open(&root).unwrap();
    let start_ms = days_ago(2);
    let person = enroll::add_person(
        &ctx,
        "CASE-KQ",
        nachtwacht::base::programme::Programme::AlcoholBan,
        "test",
    )
    .unwrap();
    enroll::assign_device(
        &ctx,
        "AM-KQ",
        DeviceKind::AnkleMonitor,
        person,
        start_ms,
        "test",
    )
    .unwrap();
    // The device is never paired with the station: its bundles are quarantined.
    let mut station = enroll::add_station(&ctx, "home-kq", "test").unwrap();
    let port = free_udp_port();
    station.servers = vec![format!("127.0.0.1:{port}")];
    station.source = nachtwacht_station::SourceConfig::Simulator(SimulatorConfig {
        device: DeviceKind::AnkleMonitor,
        device_serial: "AM-KQ".into(),
        start_ms,
        days: 2,
        seed: 7,
        drinking: vec![],
        wear_hours_per_day: 0,
        bundle_minutes: 60,
    });
    let dir = tmp.path().join("station");
    std::fs::create_dir_all(&dir).unwrap();
    let log = tmp.path().join("server.log");
    let mut server = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["serve", "--roles", "ingest,web", "--data-dir"])
        .arg(&root)
        .args([
            "--quic-listen",
            &format!("127.0.0.1:{port}"),
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut acknowledged = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged < 2 {
        assert!(Instant::now() < deadline, "uploads never acknowledged");
        match nachtwacht_station::run_once(&station, &dir).await {
            Ok(r) => acknowledged += r.acknowledged,
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();

    let decode = |failpoint: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nachtwacht"));
        cmd.args(["decode", "--data-dir"]).arg(&root);
        if let Some(point) = failpoint {
            cmd.env("NACHTWACHT_FAILPOINT", point);
        }
        cmd.output().unwrap()
    };
    let killed = decode(Some("quarantine-after-move"));
    assert!(
        !killed.status.success(),
        "the decoder died at the failpoint"
    );
    let spooled: Vec<String> = {
        let conn = ctx.db.lock();
        let mut stmt = conn
            .prepare("SELECT bundle_id FROM bundles WHERE state = 'spooled'")
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let in_between: Vec<String> = spooled
        .into_iter()
        .filter(|id| {
            let id = nachtwacht_wire::BundleId::from_hex(id).unwrap();
            let key = nachtwacht::base::blobs::Key::quarantined(&id);
            ctx.blobs.exists(&key).unwrap()
        })
        .collect();
    assert_eq!(
        in_between.len(),
        1,
        "one bundle caught between move and row"
    );
    let victim = &in_between[0];
    let victim_id = nachtwacht_wire::BundleId::from_hex(victim).unwrap();
    let reason_key = nachtwacht::base::blobs::Key::quarantine_reason(&victim_id);
    let recorded = String::from_utf8(ctx.blobs.get(&reason_key).unwrap().unwrap()).unwrap();
    assert!(recorded.contains("not paired"), "{recorded}");

    let again = decode(None);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let (state, reason): (String, String) = ctx
        .db
        .lock()
        .query_row(
            "SELECT state, reason FROM bundles WHERE bundle_id = ?1",
            [victim],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("quarantined", recorded.as_str())
    );
    assert_eq!(
        String::from_utf8(ctx.blobs.get(&reason_key).unwrap().unwrap()).unwrap(),
        recorded
    );
    let not_paired: i64 = ctx
        .db
        .lock()
        .query_row(
            "SELECT count(*) FROM bundles WHERE state = 'quarantined' AND reason LIKE '%not paired%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        not_paired, acknowledged as i64,
        "every bundle quarantined for its real reason"
    );
}

/// A node killed while creating a key (between writing its temporary file and removing it)
/// leaves a copy of the key under a temporary name; the next start removes it. A young one of a
/// node on another machine sharing the directory may still be finishing, and stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_copy_left_by_a_killed_creation_is_gone_after_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    init_data_dir(&tmp.path().join("data"), &Config::default());
    let keys = tmp.path().join("data").join("keys");
    let mut child = Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let me = nachtwacht::base::process::name();
    let host = me.rsplitn(3, ':').nth(2).unwrap();
    let killed = keys.join(format!(".{host}:{dead_pid}:0badc0de.3.part"));
    let elsewhere = keys.join(format!(".other-host.example:{dead_pid}:0badc0de.4.part"));
    for copy in [&killed, &elsewhere] {
        std::fs::write(copy, b"302e020100300506032b657004220420...").unwrap();
    }
    let server = start_in(tmp).await;
    assert!(!killed.exists(), "{} is still there", killed.display());
    assert!(
        elsewhere.exists(),
        "a young file of another machine's node went"
    );
    server.server.shutdown().await;
}
