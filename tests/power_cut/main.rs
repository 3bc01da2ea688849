//! Power-cut tests. A SIGKILL leaves the page cache to the kernel, which writes it out later: it
//! cannot show that a missing fsync loses data. Here the server's data directory and the stations'
//! spools live on filesystems that keep only what was made durable ([`durable_fs`]); the power is
//! cut at random moments, to the server, to the stations or to both, everything not durable is
//! thrown away, and the processes start again on what survived. Afterwards:
//!
//! - every bundle a station had recorded as acknowledged when a cut came is at the server, once,
//!   with the bytes the station sealed;
//! - every reading the devices produced is in the datasets exactly once: nothing a station sealed
//!   and synced was lost, nothing was stored twice;
//! - every acknowledgement a station reported is still in its journal;
//! - nothing was quarantined or set aside, and the audit chain verifies.
//!
//! `NACHTWACHT_POWER_CUTS=<n>` sets the number of cuts (CI runs a few; the figures of a long run
//! are in docs/fuzzing.md).

mod durable_fs;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::*;
use durable_fs::DurableFs;
use nachtwacht::base::config::Config;
use nachtwacht::base::Context;
use nachtwacht::server::init;
use nachtwacht_station::spool::Spool;
use nachtwacht_station::StationConfig;
use rand::Rng;

/// Cuts when `NACHTWACHT_POWER_CUTS` is not set.
const CUTS: usize = 12;
const STATIONS: usize = 3;
/// Simulated days per station (one bundle each) for every cut: enough that uploads go on until
/// about the last cut.
const DAYS_PER_CUT: usize = 3;

/// A process whose output goes to a log file (on the test's own disk, not a cut one).
struct Process {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Process {
    fn spawn(mut command: Command, log: &Path, what: &str) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = command
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        Self {
            child,
            log: log.to_path_buf(),
            what: what.into(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the log, for a failure message.
    fn log_tail(&self) -> String {
        let text = self.log_text();
        let from = text.len().saturating_sub(6000);
        let from = (from..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{} log:\n{}", self.what, &text[from..])
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL: the power is gone
        self.child.wait().unwrap();
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn server(root: &Path, port: u16, log: &Path) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nachtwacht"));
    command.args(["serve", "--data-dir"]).arg(root).args([
        "--quic-listen",
        &format!("127.0.0.1:{port}"),
        "--http-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    Process::spawn(command, log, "server")
}

fn station(config: &Path, log: &Path) -> Process {
    let mut command = Command::new(station_binary());
    command
        .args(["run", "--interval", "250ms", "--config"])
        .arg(config);
    Process::spawn(command, log, "station")
}

/// Waits until the server has said it serves `times` times in all, failing at once if it ended.
fn wait_serving(server: &mut Process, times: usize) {
    let start = Instant::now();
    while server.log_text().matches("nachtwacht serving").count() < times {
        assert!(
            server.still_running(),
            "the server did not start on what the cut left\n{}",
            server.log_tail()
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the server did not start in 120 s\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bundle ids a station journalled as acknowledged.
fn journal(spool_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(spool_dir.join("acknowledged.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// Bundle ids a station's log reported as acknowledged (logged once the journal line is synced).
fn logged_acknowledgements(log: &str) -> BTreeSet<String> {
    logged(log, "bundle acknowledged")
}

/// Bundle ids a station's log reported as sealed and spooled (logged once the file is durable).
fn logged_spooled(log: &str) -> BTreeSet<String> {
    logged(log, "bundle sealed and spooled")
}

fn logged(log: &str, event: &str) -> BTreeSet<String> {
    log.lines()
        .filter(|l| l.contains(event))
        .filter_map(|l| {
            let at = l.find("bundle=")? + "bundle=".len();
            Some(l[at..].split_whitespace().next()?.to_string())
        })
        .collect()
}

fn count(ctx: &Context, sql: &str) -> i64 {
    ctx.db.lock().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_bundles_and_sealed_readings_survive_power_cuts() {
    let cuts: usize = std::env::var("NACHTWACHT_POWER_CUTS")
        .ok()
        .map(|n| n.parse().expect("NACHTWACHT_POWER_CUTS is a number"))
        .unwrap_or(CUTS);
    let days = (cuts * DAYS_PER_CUT).max(30) as u32;
    let tmp = tempfile::tempdir().unwrap();
    let (server_disk, station_disk) = (tmp.path().join("server"), tmp.path().join("stations"));
    std::fs::create_dir_all(&server_disk).unwrap();
    std::fs::create_dir_all(&station_disk).unwrap();
    let mut server_fs = DurableFs::mount(&server_disk).expect("mount the server's disk (FUSE)");
    let mut station_fs = DurableFs::mount(&station_disk).expect("mount the stations' disk (FUSE)");

    // Installed and enrolled on the server's disk by an in-process server, on SQLite and local
    // files whatever the other tests use: the cut is of this disk.
    let installed = tempfile::tempdir_in(&server_disk).unwrap();
    // The folder the data directory goes in is there before the installation, durably.
    server_fs.sync_everything();
    let root = installed.path().join("data");
    init::init(&root, &Config::default(), nachtwacht::base::time::now_ms()).unwrap();
    let t = start_in(installed).await;
    let port = free_udp_port();
    let mut stations: Vec<(StationConfig, PathBuf)> = Vec::new();
    let mut expected_ids = BTreeSet::new();
    for i in 0..STATIONS {
        let (mut cfg, _, _) =
            t.ankle_station(&format!("cut-{i}"), &format!("AM-P{i}"), days, vec![]);
        cfg.servers = vec![format!("127.0.0.1:{port}")];
        // Room for two bundles: each pass seals two and uploads them, so sealing and uploading
        // go on through every cut instead of ending within the first second.
        let largest = seal_all(&cfg, &station_disk)
            .iter()
            .map(|b| b.ciphertext.len() as u64)
            .max()
            .unwrap();
        cfg.spool_max_bytes = 2 * largest + largest / 2;
        let dir = station_disk.join(&cfg.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("station.toml"), cfg.to_toml()).unwrap();
        for content in nachtwacht_station::source::read_all(&cfg.source, &dir).unwrap() {
            expected_ids.insert(nachtwacht_station::seal::content_id(&content).to_hex());
        }
        stations.push((cfg, dir));
    }
    assert_eq!(expected_ids.len(), STATIONS * days as usize);
    let TestServer {
        tmp: installed,
        ctx,
        server: setup,
    } = t;
    setup.shutdown().await;
    drop(ctx);
    // The server's disk holds what init and enrolment made durable, nothing more. The stations'
    // configuration was copied onto their disks by hand (the operator's copy, synced once).
    station_fs.sync_everything();

    let server_log = tmp.path().join("server.log");
    let mut serving = server(&root, port, &server_log);
    let mut starts = 1;
    wait_serving(&mut serving, starts);
    let station_logs: Vec<PathBuf> = stations
        .iter()
        .map(|(cfg, _)| tmp.path().join(format!("{}.log", cfg.name)))
        .collect();
    let start_stations = || -> Vec<Process> {
        stations
            .iter()
            .zip(&station_logs)
            .map(|((_, dir), log)| station(&dir.join("station.toml"), log))
            .collect()
    };
    let mut agents = start_stations();

    // Bundles the stations had journalled when a cut came: the server had sent each of those
    // acknowledgements before the power went, so it must still hold them.
    let mut acknowledged = BTreeSet::new();
    // Cuts that came while bundles were still going up (the rest struck decoding and the idle).
    let mut while_uploading = 0;
    let mut rng = rand::thread_rng();
    let (mut server_cuts, mut station_cuts) = (0, 0);
    let mut spooled_before_cuts = 0;
    for n in 0..cuts {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..700))).await;
        let (cut_server, cut_stations) = match rng.gen_range(0..3) {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        };
        for (cfg, dir) in &stations {
            acknowledged.extend(journal(&cfg.spool_dir(dir)));
        }
        while_uploading += usize::from(acknowledged.len() < expected_ids.len());
        if cut_server {
            serving.kill();
            server_cuts += 1;
        }
        if cut_stations {
            agents.iter_mut().for_each(Process::kill);
            station_cuts += 1;
        }
        if cut_server {
            server_fs.cut();
            serving = server(&root, port, &server_log);
            starts += 1;
            wait_serving(&mut serving, starts);
        }
        if cut_stations {
            station_fs.cut();
            // Nothing a station sealed and synced is gone: each is still in its spool or was
            // acknowledged (and journalled) before the cut.
            for ((cfg, dir), log) in stations.iter().zip(&station_logs) {
                let spool = Spool::open(&cfg.spool_dir(dir)).unwrap();
                let mut kept: BTreeSet<String> = journal(&cfg.spool_dir(dir)).into_iter().collect();
                kept.extend(
                    spool
                        .pending()
                        .unwrap()
                        .iter()
                        .map(|b| b.bundle_id.to_hex()),
                );
                let sealed = logged_spooled(&std::fs::read_to_string(log).unwrap());
                let lost: Vec<_> = sealed.difference(&kept).collect();
                assert!(
                    lost.is_empty(),
                    "{}: sealed and spooled, then lost in cut {n}: {lost:?}",
                    cfg.name
                );
                spooled_before_cuts += sealed.len();
            }
            agents = start_stations();
        }
    }

    // No more cuts: everything goes up and is decoded. A long run has hundreds of bundles still to
    // go at two per pass, so what fails is a stall: no bundle processed for two minutes.
    let ctx = Context::open(&root).unwrap();
    let (mut progress_at, mut last_processed) = (Instant::now(), -1);
    loop {
        let processed = count(
            &ctx,
            "SELECT count(*) FROM bundles WHERE state = 'processed'",
        );
        let left: usize = stations
            .iter()
            .map(|(cfg, dir)| {
                Spool::open(&cfg.spool_dir(dir))
                    .unwrap()
                    .pending()
                    .unwrap()
                    .len()
            })
            .sum();
        if processed as usize >= expected_ids.len() && left == 0 {
            break;
        }
        if processed > last_processed {
            (progress_at, last_processed) = (Instant::now(), processed);
        }
        let logs: Vec<String> = agents.iter().map(Process::log_tail).collect();
        assert!(
            progress_at.elapsed() < Duration::from_secs(120),
            "{processed} of {} bundles processed, {left} still in spools, none processed for 120 s\n{}\n{}",
            expected_ids.len(),
            serving.log_tail(),
            logs.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agents.iter_mut().for_each(Process::kill);
    serving.kill();

    // Every acknowledgement a station reported is in its journal, and the journals hold every
    // bundle once the spools are empty.
    for ((cfg, dir), log) in stations.iter().zip(&station_logs) {
        let journalled: BTreeSet<String> = journal(&cfg.spool_dir(dir)).into_iter().collect();
        let reported = logged_acknowledgements(&std::fs::read_to_string(log).unwrap());
        let missing: Vec<_> = reported.difference(&journalled).collect();
        assert!(
            missing.is_empty(),
            "{}: acknowledged, reported, then lost from the journal: {missing:?}",
            cfg.name
        );
        acknowledged.extend(journalled);
        assert_eq!(
            std::fs::read_dir(cfg.spool_dir(dir).join("set-aside")).map_or(0, |d| d.count()),
            0,
            "{} set bundles aside",
            cfg.name
        );
    }
    // Stored: exactly the bundles the devices' readings make, each once, none quarantined.
    let stored: BTreeSet<String> = {
        let conn = ctx.db.lock();
        let mut stmt = conn.prepare("SELECT bundle_id FROM bundles").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "acknowledged, then lost at the server: {lost:?}"
    );
    assert_eq!(stored, expected_ids);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM bundles WHERE state <> 'processed'"
        ),
        0
    );
    // Each kept with the bytes it was stored with.
    for id in &stored {
        let (received, sha256): (i64, String) = ctx
            .db
            .lock()
            .query_row(
                "SELECT received_at_ms, sha256 FROM bundles WHERE bundle_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let bundle = nachtwacht_wire::BundleId::from_hex(id).unwrap();
        let kept = ctx
            .blobs
            .get(&nachtwacht::base::blobs::Key::evidence(&bundle, received))
            .unwrap()
            .unwrap_or_else(|| panic!("{id}: no evidence file"));
        assert_eq!(nachtwacht_wire::protocol::sha256_hex(&kept), sha256, "{id}");
    }
    // Every reading once: stations × days × 48 half-hourly readings.
    let readings = (STATIONS * days as usize * 48) as i64;
    assert_eq!(
        count(&ctx, "SELECT coalesce(sum(rows_stored), 0) FROM bundles"),
        readings
    );
    assert_eq!(
        count(&ctx, "SELECT coalesce(sum(rows), 0) FROM dataset_files"),
        readings
    );
    drop(ctx);
    let verify = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let (server_lost, station_lost) = (server_fs.discarded(), station_fs.discarded());
    eprintln!(
        "power cuts: {cuts} ({server_cuts} of the server, {station_cuts} of the stations, \
         {while_uploading} while bundles were going up); \
         acknowledged bundles lost: 0 of {}; sealed bundles lost: 0 of {spooled_before_cuts} \
         (summed over station cuts); readings stored once: {readings}; \
         thrown away by the cuts: server {server_lost:?}, stations {station_lost:?}; \
         fsyncs: server {}, stations {}",
        acknowledged.len(),
        server_fs.fsyncs(),
        station_fs.fsyncs(),
    );
    assert!(
        server_cuts == 0 || server_lost.files_reverted + server_lost.entries > 0,
        "no server cut threw anything away: the cuts came while nothing was written"
    );
    drop(installed);
}

/// Every file under `dir` with its bytes (SQLite's shared-memory index left out: it is rebuilt).
fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.to_string_lossy().ends_with("-shm") {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// `nachtwacht init` makes what it wrote durable before it says it is done: a power cut right
/// after it leaves the same installation (before, its configuration, certificates and keys, the
/// server's decryption key among them, were never synced into their folders, and a cut took them
/// while the database, synced, already named the key's recipient).
#[test]
fn an_installation_survives_a_power_cut_right_after_init() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mut fs = DurableFs::mount(&disk).expect("mount a disk (FUSE)");
    let root = disk.join("data");
    let init = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["init", "--data-dir"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let installed = files_under(&root);
    assert!(installed.keys().any(|p| p.ends_with("nachtwacht.toml")));
    fs.cut();
    assert!(root.is_dir(), "the data directory itself was lost");
    let survived = files_under(&root);
    let lost: Vec<_> = installed
        .iter()
        .filter(|(path, bytes)| survived.get(*path) != Some(bytes))
        .map(|(path, _)| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        lost.is_empty(),
        "lost or changed by a cut right after init: {lost:?}"
    );
    assert!(fs.discarded().cuts == 1);
}
