//! Several `nachtwacht serve` processes on one database (PostgreSQL when the tests have a server,
//! else one SQLite file) and one shared data directory, raced against each other: what must be
//! decided once is decided once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::*;
use nachtwacht::base::db::OptionalExtension;
use nachtwacht::base::Context;
use nachtwacht_station::seal::SealedBundle;
use nachtwacht_station::source::simulator::DrinkingEpisode;
use nachtwacht_station::spool::Spool;
use nachtwacht_station::uploader::Uploader;
use nachtwacht_station::StationConfig;

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process on the shared data directory, its log in `log`.
struct Node {
    child: Child,
    quic: u16,
    http: u16,
    log: PathBuf,
    root: PathBuf,
    extra: Vec<String>,
    /// Ports picked free by the test (not fixed by a restart): may be picked again if another
    /// process took one between the pick and the node's bind.
    ports_picked: bool,
}

impl Node {
    fn start(root: &Path, log: PathBuf) -> Self {
        Self::start_with(root, log, &[])
    }

    /// A node started with further `serve` arguments (`--roles ingest,web`).
    fn start_with(root: &Path, log: PathBuf, extra: &[&str]) -> Self {
        let mut node = Self::spawn(root, log, (free_udp_port(), free_tcp_port()), extra);
        node.ports_picked = true;
        node
    }

    /// The node started again on the same ports (after it was killed), logging to `log`.
    fn restart(&mut self, root: &Path, log: PathBuf, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Self::spawn(root, log, (self.quic, self.http), extra);
    }

    fn spawn(root: &Path, log: PathBuf, (quic, http): (u16, u16), extra: &[&str]) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
            .args(["serve", "--data-dir"])
            .arg(root)
            .args([
                "--quic-listen",
                &format!("127.0.0.1:{quic}"),
                "--http-listen",
                &format!("127.0.0.1:{http}"),
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start nachtwacht serve");
        Self {
            child,
            quic,
            http,
            log,
            root: root.to_path_buf(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            ports_picked: false,
        }
    }

    /// Has the process ended (it never should while the test runs)?
    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn serving(&self) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains("nachtwacht serving")
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every node serves. A node that ends before fails the test at once with every
/// node's log; one whose freely picked port another process bound between the pick and the node's
/// own bind (the tests of both halves of CI run side by side) starts again on new ports.
fn wait_serving(what: &str, nodes: &mut [&mut Node]) {
    let start = Instant::now();
    let logs = |nodes: &[&mut Node]| {
        nodes
            .iter()
            .map(|n| format!("{}:\n{}", n.log.display(), n.log_text()))
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let mut retries = 0;
    while !nodes.iter().all(|n| n.serving()) {
        for i in 0..nodes.len() {
            if nodes[i].serving() || !nodes[i].exited() {
                continue;
            }
            let port_taken = nodes[i].log_text().contains("Address already in use");
            if port_taken && nodes[i].ports_picked && retries < 5 {
                retries += 1;
                let node = &mut *nodes[i];
                let extra: Vec<&str> = node.extra.iter().map(String::as_str).collect();
                *node = Node::start_with(&node.root.clone(), node.log.clone(), &extra);
            } else {
                panic!("{what}: a node ended while starting:\n{}", logs(nodes));
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{what}: the nodes did not start in 120 s:\n{}",
            logs(nodes)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_nodes(root: &Path, logs: &Path, n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = (0..n)
        .map(|i| Node::start(root, logs.join(format!("node-{i}.log"))))
        .collect();
    wait_serving("the nodes", &mut nodes.iter_mut().collect::<Vec<_>>());
    nodes
}

fn count(ctx: &Context, sql: &str) -> i64 {
    ctx.db.lock().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The ciphertext kept as evidence of a decoded bundle (hex id).
fn evidence(ctx: &Context, id: &str) -> Vec<u8> {
    let received: i64 = ctx
        .db
        .lock()
        .query_row(
            "SELECT received_at_ms FROM bundles WHERE bundle_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    let bundle_id = nachtwacht_wire::BundleId::from_hex(id).unwrap();
    let key = nachtwacht::base::blobs::Key::evidence(&bundle_id, received);
    ctx.blobs.get(&key).unwrap().expect("an evidence copy")
}

/// How many bundles the chain-of-custody entries of `action` name, over all entries.
fn custody(ctx: &Context, action: &str) -> i64 {
    ctx.db
        .lock()
        .prepare("SELECT detail FROM audit_log WHERE action = ?1")
        .unwrap()
        .query_map([action], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(&d.unwrap()).unwrap()["bundles"]
                .as_i64()
                .unwrap()
        })
        .sum()
}

/// Each station sends every one of its bundles to every node at once (a copy of the station per
/// node, each with its own spool holding all of them), until all are acknowledged.
async fn upload_to_every_node(
    stations: &[(StationConfig, Vec<SealedBundle>)],
    nodes: &[Node],
    scratch: &Path,
) {
    let mut uploads = Vec::new();
    for (s, (cfg, sealed)) in stations.iter().enumerate() {
        for (n, node) in nodes.iter().enumerate() {
            let mut cfg = cfg.clone();
            cfg.servers = vec![format!("127.0.0.1:{}", node.quic)];
            let dir = scratch.join(format!("station-{s}-node-{n}"));
            let spool = Spool::open(&cfg.spool_dir(&dir)).unwrap();
            for b in sealed {
                spool.put(b).unwrap();
            }
            uploads.push(tokio::spawn(async move {
                let heartbeat = quiet_heartbeat(&cfg);
                let start = Instant::now();
                while !spool.pending().unwrap().is_empty() {
                    assert!(
                        start.elapsed() < Duration::from_secs(120),
                        "uploads stalled"
                    );
                    let up = Uploader::new(&cfg).unwrap().with_max_failures(3);
                    let _ = up.drain(&spool, &heartbeat).await;
                }
            }));
        }
    }
    for u in uploads {
        u.await.unwrap();
    }
}

/// Three stations upload every bundle to all three nodes at once, so each bundle id races on
/// three processes: each is stored once (one row, one file, one custody entry, the original
/// bytes), acknowledged to every copy, decoded once (one `decoded` custody entry, its rows in the
/// datasets once), and the audit chain is one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_raced_to_three_nodes_are_stored_and_decoded_once() {
    let tmp = tempfile::tempdir().unwrap();
    let t = start_server(nachtwacht::base::config::Config::default()).await;
    let root = t.tmp.path().join("data");
    let mut stations = Vec::new();
    for i in 0..3 {
        let (cfg, dir, _) = t.ankle_station(&format!("race-{i}"), &format!("AM-R{i}"), 2, vec![]);
        let sealed = seal_all(&cfg, &dir);
        stations.push((cfg, sealed));
    }
    let sent: std::collections::BTreeMap<String, String> = stations
        .iter()
        .flat_map(|(_, sealed)| sealed.iter())
        .map(|b| {
            (
                b.bundle_id.to_hex(),
                nachtwacht_wire::protocol::sha256_hex(&b.ciphertext),
            )
        })
        .collect();
    let TestServer {
        tmp: data,
        ctx,
        server,
    } = t;
    server.shutdown().await;

    let nodes = start_nodes(&root, tmp.path(), 3);
    upload_to_every_node(&stations, &nodes, tmp.path()).await;
    wait_for("every bundle decoded", Duration::from_secs(120), || {
        count(&ctx, "SELECT count(*) FROM bundles WHERE state = 'spooled'") == 0
    });

    let stored: Vec<(String, String, String)> = ctx
        .db
        .lock()
        .prepare("SELECT bundle_id, sha256, state FROM bundles ORDER BY bundle_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored.len(), sent.len(), "one row per bundle");
    for (id, sha, state) in &stored {
        assert_eq!(sent.get(id), Some(sha), "{id} stored with its own digest");
        assert_eq!(state, "processed", "{id}");
        // Its ciphertext kept as evidence: the bytes the station sent.
        let kept = evidence(&ctx, id);
        assert_eq!(&nachtwacht_wire::protocol::sha256_hex(&kept), sha, "{id}");
    }
    // One custody entry per step per bundle: the entries' counts add up to the bundles.
    assert_eq!(custody(&ctx, "bundles.stored"), sent.len() as i64);
    assert_eq!(custody(&ctx, "bundles.decoded"), sent.len() as i64);
    // Rows in the datasets once: the catalogue holds what the bundles say they stored.
    assert_eq!(
        count(&ctx, "SELECT coalesce(sum(rows), 0) FROM dataset_files"),
        count(&ctx, "SELECT coalesce(sum(rows_stored), 0) FROM bundles"),
    );
    assert!(count(&ctx, "SELECT coalesce(sum(rows_stored), 0) FROM bundles") > 0);
    // The spool empties: every file moved to evidence once, none left behind. A decoder deletes a
    // segment just after the transaction that marks its last bundle processed, so the last one
    // may still be there for a moment after the rows say `processed`.
    let start = Instant::now();
    loop {
        let left = ctx.blobs.list(nachtwacht::base::blobs::SPOOL).unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "spool left {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(nodes);
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
    drop(data);
}

/// A decoder killed while it holds the decode lease (in the middle of a pass, perhaps of a
/// batch's transaction) hands its work on: another node takes the lease at once (the holder is
/// a dead process on this machine; on another machine when its lease runs out) and every bundle
/// is decoded once, none lost with the dead node, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoder_killed_mid_claim_hands_its_bundles_on() {
    let tmp = tempfile::tempdir().unwrap();
    let t = start_server(nachtwacht::base::config::Config::default()).await;
    let root = t.tmp.path().join("data");
    let mut stations = Vec::new();
    for i in 0..3 {
        let (cfg, dir, _) = t.ankle_station(&format!("kill-{i}"), &format!("AM-K{i}"), 6, vec![]);
        let sealed = seal_all(&cfg, &dir);
        stations.push((cfg, sealed));
    }
    let total: usize = stations.iter().map(|(_, b)| b.len()).sum();
    let TestServer {
        tmp: data,
        ctx,
        server,
    } = t;
    server.shutdown().await;

    // Everything spooled first, by a node that only ingests.
    {
        let mut ingest = Node::start_with(
            &root,
            tmp.path().join("ingest.log"),
            &["--roles", "ingest,web"],
        );
        wait_serving("the ingest node", &mut [&mut ingest]);
        upload_to_every_node(&stations, std::slice::from_ref(&ingest), tmp.path()).await;
    }
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM bundles WHERE state = 'spooled'") as usize,
        total
    );

    // Three decoders; the one holding the lease is killed while bundles are still spooled (as
    // soon as it holds it: a node decodes as it starts).
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(&root, tmp.path().join(format!("node-{i}.log"))))
        .collect();
    let holder = || -> Option<(String, i64)> {
        ctx.db
            .lock()
            .query_row(
                "SELECT holder, until_ms FROM leases WHERE name = 'decode' AND until_ms > ?1",
                [nachtwacht::base::time::now_ms()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .unwrap()
    };
    let start = Instant::now();
    let (killed, killed_at, lease_until) = loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no decoder held the lease while bundles were spooled"
        );
        if let Some((name, until)) = holder() {
            let pid = name.rsplit(':').nth(1).unwrap().to_string();
            if let Some(i) = nodes.iter().position(|n| n.child.id().to_string() == pid) {
                let spooled = count(&ctx, "SELECT count(*) FROM bundles WHERE state = 'spooled'");
                assert!(
                    spooled > 0,
                    "the decoding finished before a decoder could be killed"
                );
                let mut node = nodes.remove(i);
                node.child.kill().unwrap();
                node.child.wait().unwrap();
                break (node, nachtwacht::base::time::now_ms(), until);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    wait_for("every bundle decoded", Duration::from_secs(120), || {
        count(&ctx, "SELECT count(*) FROM bundles WHERE state = 'spooled'") == 0
    });
    drop(nodes);
    drop(killed);

    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM bundles WHERE state = 'processed'"
        ) as usize,
        total
    );
    let decoded: Vec<(i64, i64)> = ctx
        .db
        .lock()
        .prepare("SELECT at_ms, detail FROM audit_log WHERE action = 'bundles.decoded'")
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (at, detail) = r.unwrap();
            let v: serde_json::Value = serde_json::from_str(&detail).unwrap();
            (at, v["bundles"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        decoded.iter().map(|(_, n)| n).sum::<i64>() as usize,
        total,
        "each bundle decoded once: {decoded:?}"
    );
    // Another node went on before the dead holder's lease would have run out.
    assert!(
        decoded
            .iter()
            .any(|(at, _)| *at > killed_at && *at < lease_until),
        "no batch decoded while the dead holder's lease ran ({lease_until}): {decoded:?}"
    );
    assert_eq!(
        count(&ctx, "SELECT coalesce(sum(rows), 0) FROM dataset_files"),
        count(&ctx, "SELECT coalesce(sum(rows_stored), 0) FROM bundles"),
    );
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
    drop(data);
}

/// The pipelines on three nodes evaluating every second: each watermark is evaluated by one
/// node only (the pipelines lease), the drinking of each person is one alert, and a station
/// that went silent raises one communication alert, however many rounds the nodes run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_on_three_nodes_evaluate_each_watermark_once() {
    let tmp = tempfile::tempdir().unwrap();
    let t = start_server(nachtwacht::base::config::Config::default()).await;
    let root = t.tmp.path().join("data");
    let drinking = || {
        vec![DrinkingEpisode {
            day: 1,
            hour: 20.0,
            peak_tac: 0.05,
        }]
    };
    let mut stations = Vec::new();
    for i in 0..2 {
        let (cfg, dir, _) =
            t.ankle_station(&format!("drinks-{i}"), &format!("AM-D{i}"), 3, drinking());
        let sealed = seal_all(&cfg, &dir);
        stations.push((cfg, sealed));
    }
    // Enrolled two hours ago and never heard from since.
    let (_, _, silent) = t.ankle_station("silent", "AM-S0", 1, vec![]);
    nachtwacht::registry::enroll::link_station(&t.ctx, "silent", "CASE-silent", "test").unwrap();
    t.ctx
        .db
        .lock()
        .execute(
            "UPDATE stations SET enrolled_at_ms = ?1 WHERE name = 'silent'",
            [nachtwacht::base::time::now_ms() - 2 * 3_600_000],
        )
        .unwrap();
    let TestServer {
        tmp: data,
        ctx,
        server,
    } = t;
    server.shutdown().await;
    let mut config = ctx.config.clone();
    config.pipeline.interval_secs = 1;
    std::fs::write(ctx.dir.config(), config.to_toml()).unwrap();

    let nodes = start_nodes(&root, tmp.path(), 3);
    upload_to_every_node(&stations, &nodes, tmp.path()).await;
    let evaluated_to = || -> Option<i64> {
        ctx.db
            .lock()
            .query_row(
                "SELECT files_until_ms FROM pipeline_watermarks WHERE name = 'evaluate'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap()
    };
    wait_for(
        "everything decoded and evaluated",
        Duration::from_secs(120),
        || {
            count(&ctx, "SELECT count(*) FROM bundles WHERE state = 'spooled'") == 0
                && evaluated_to()
                    == Some(count(
                        &ctx,
                        "SELECT coalesce(max(written_at_ms), 0) FROM dataset_files",
                    ))
        },
    );
    // A few more rounds on every node, with nothing new to evaluate.
    std::thread::sleep(Duration::from_secs(4));
    let logs: Vec<String> = nodes
        .iter()
        .map(|n| std::fs::read_to_string(&n.log).unwrap())
        .collect();
    drop(nodes);

    // Every evaluation logs the watermark it committed: none twice, across all nodes.
    let mut watermarks: Vec<i64> = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter(|l| l.contains("pipelines evaluated new data"))
        .map(|l| {
            l.split("watermark=")
                .nth(1)
                .and_then(|w| w.split_whitespace().next())
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("no watermark in {l:?}"))
        })
        .collect();
    assert!(
        !watermarks.is_empty(),
        "no evaluation logged:\n{}",
        logs.join("\n---\n")
    );
    let evaluations = watermarks.len();
    watermarks.sort_unstable();
    watermarks.dedup();
    assert_eq!(
        watermarks.len(),
        evaluations,
        "a watermark evaluated twice: {watermarks:?}"
    );
    assert_eq!(watermarks.last().copied(), evaluated_to());

    let alerts = |kind: &str| -> Vec<(i64, i64)> {
        ctx.db
            .lock()
            .prepare("SELECT person_id, start_ms FROM alerts WHERE kind = ?1 ORDER BY person_id")
            .unwrap()
            .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let drinking_persons: std::collections::BTreeSet<i64> =
        alerts("alcohol").into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        alerts("alcohol").len(),
        2,
        "one alcohol alert per drinking person"
    );
    assert_eq!(drinking_persons.len(), 2);
    let silence = alerts("communication-lost");
    assert_eq!(
        silence.iter().filter(|(p, _)| *p == silent).count(),
        1,
        "the silent station raised one communication alert: {silence:?}"
    );
    drop(data);
}

/// Web sign-in on three nodes: one TOTP code signs in once however many nodes it is sent to at
/// once; a session begun on one node is valid on the others; wrong passwords spread over the
/// nodes in parallel lock the account (the failures of all nodes count together).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_codes_sessions_and_lockout_hold_across_three_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let report = init_data_dir(&root, &nachtwacht::base::config::Config::default());
    let nodes = start_nodes(&root, tmp.path(), 3);
    let admin = web::Creds {
        username: report.admin_username.clone(),
        password: report.admin_password.clone(),
        totp_secret: report.admin_totp_secret.clone(),
    };
    let try_login = |base: String, password: String, code: String| {
        let username = admin.username.clone();
        std::thread::spawn(move || {
            let r = web::agent().post(&format!("{base}/login")).send_form(&[
                ("username", username.as_str()),
                ("password", password.as_str()),
                ("code", code.as_str()),
            ]);
            match r {
                Ok(r) => r
                    .all("set-cookie")
                    .into_iter()
                    .find(|c| c.starts_with("nw_session="))
                    .map(|c| c.split(';').next().unwrap().to_string()),
                Err(_) => None,
            }
        })
    };

    // One code, three nodes, at once: one session.
    let code = admin.code();
    let attempts: Vec<_> = nodes
        .iter()
        .map(|n| try_login(n.base(), admin.password.clone(), code.clone()))
        .collect();
    let sessions: Vec<String> = attempts
        .into_iter()
        .filter_map(|a| a.join().unwrap())
        .collect();
    assert_eq!(sessions.len(), 1, "a TOTP code is used once: {sessions:?}");
    let cookie = &sessions[0];

    // The session is the database's: every node knows it.
    let account_page = |base: &str| -> u16 {
        match web::agent()
            .get(&format!("{base}/account/password"))
            .set("Cookie", cookie)
            .call()
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    for node in &nodes {
        assert_eq!(account_page(&node.base()), 200, "{}", node.base());
    }

    // Wrong passwords, spread over the nodes in parallel: the account locks at the limit, and
    // then even the right password and a fresh code are refused on every node.
    let guesses: Vec<_> = (0..nachtwacht::registry::accounts::LOCKOUT_AFTER_FAILURES as usize + 3)
        .map(|i| {
            let node = &nodes[i % nodes.len()];
            try_login(node.base(), format!("wrong-{i}"), admin.code())
        })
        .collect();
    for g in guesses {
        assert!(g.join().unwrap().is_none());
    }
    let ctx = Context::open(&root).unwrap();
    // No node saw more than three of the guesses: only failures counted together lock it.
    let locked: Option<i64> = ctx
        .db
        .lock()
        .query_row(
            "SELECT locked_until_ms FROM accounts WHERE username = ?1",
            [&admin.username],
            |r| r.get(0),
        )
        .unwrap();
    assert!(locked.is_some(), "the account is locked");
}

/// The ledgers of differential privacy across three nodes. A manager's release of a month's
/// figures sent to all three at once releases each figure once and pays for it once; then
/// research queries of two projects, spread over the nodes at once, spend neither project's
/// budget nor the per-person budget of the year beyond its cap, and every answer is charged:
/// each project's Σ ε is its answered queries' ε, and the year's per-person Σ ε is the projects'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_privacy_ledgers_hold_across_three_nodes() {
    use chrono::Datelike;
    use nachtwacht::{research, research::management};
    let f = web::web_fixture().await;
    let manager = f.accounts["manager"].clone();
    let ctx = f.t.ctx.clone();
    research::create_project(
        &ctx,
        management::PROJECT,
        research::Budget::new(10.0, 0.5),
        "test",
    )
    .unwrap();
    research::create_project(&ctx, "q", research::Budget::new(1.0, 0.5), "test").unwrap();
    let tokens = [
        f.research_token.clone(),
        research::issue_token(&ctx, "q", "ria", 1, "test").unwrap(),
    ];
    // The year's per-person cap binds before the two projects' budgets together do: after the
    // management figures (six releases of ε ≤ 0.5) about 1.0 is left for 2.0 of project budget.
    let cap = 4.0;
    let mut config = ctx.config.clone();
    config.research.person_epsilon_per_year = cap;
    std::fs::write(ctx.dir.config(), config.to_toml()).unwrap();
    let web::WebFixture { t, .. } = f;
    let root = t.tmp.path().join("data");
    let TestServer { tmp, ctx, server } = t;
    server.shutdown().await;
    let logs = tempfile::tempdir().unwrap();
    let nodes = start_nodes(&root, logs.path(), 3);

    // Last month's figures, released on all three nodes at once by one manager's session.
    let month = chrono::Utc::now()
        .date_naive()
        .with_day(1)
        .unwrap()
        .pred_opt()
        .unwrap()
        .format("%Y-%m")
        .to_string();
    let session = web::login(&nodes[0].base(), &manager);
    let releases: Vec<_> = nodes
        .iter()
        .map(|node| {
            let (base, month) = (node.base(), month.clone());
            let (cookie, csrf) = (session.cookie.clone(), session.csrf.clone());
            std::thread::spawn(move || {
                web::outcome(
                    web::agent()
                        .post(&format!("{base}/management/release"))
                        .set("Cookie", &cookie)
                        .send_form(&[("csrf", &csrf), ("month", &month)]),
                )
            })
        })
        .collect();
    for r in releases {
        let (status, location, body) = r.join().unwrap();
        assert_eq!((status, location.as_str()), (303, "/management"), "{body}");
    }
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM management_releases") as usize,
        management::FIGURES.len()
    );
    let released_by_manager = count(
        &ctx,
        &format!(
            "SELECT count(*) FROM audit_log WHERE action = 'research.release' AND actor = '{}'",
            manager.username
        ),
    );
    assert_eq!(
        released_by_manager as usize,
        management::FIGURES.len(),
        "each figure paid for once"
    );

    // Research queries of both projects, at once over the three nodes.
    let epsilon = 0.1;
    let queries: Vec<_> = (0..36)
        .map(|i| {
            let base = nodes[i % nodes.len()].base();
            let (project, token) = (i % 2, tokens[i % 2].clone());
            std::thread::spawn(move || {
                let body = serde_json::json!({
                    "dataset": "daily-indicators",
                    "aggregate": {"kind": "count"},
                    "epsilon": epsilon,
                });
                let status = match ureq::post(&format!("{base}/api/v1/research/query"))
                    .set("Authorization", &format!("Bearer {token}"))
                    .send_json(body)
                {
                    Ok(r) => r.status(),
                    Err(ureq::Error::Status(code, _)) => code,
                    Err(e) => panic!("{e}"),
                };
                (project, status)
            })
        })
        .collect();
    let statuses: Vec<(usize, u16)> = queries.into_iter().map(|q| q.join().unwrap()).collect();
    let answered = |project: usize| {
        statuses
            .iter()
            .filter(|(p, s)| *p == project && *s == 200)
            .count()
    };
    assert!(answered(0) + answered(1) > 0, "{statuses:?}");
    assert!(
        statuses.iter().all(|(_, s)| [200, 403, 429].contains(s)),
        "answers or budget refusals only: {statuses:?}"
    );
    let ledger = |name: &str| -> (f64, f64, f64) {
        ctx.db
            .lock()
            .query_row(
                "SELECT epsilon_budget, epsilon_spent, epsilon_sum FROM research_projects WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    let mut projects_sum = 0.0;
    for (i, name) in ["p", "q"].into_iter().enumerate() {
        let (budget, spent, sum) = ledger(name);
        assert!(spent <= budget + 1e-9, "{name}: spent {spent} of {budget}");
        assert!(
            (sum - answered(i) as f64 * epsilon).abs() < 1e-9,
            "{name}: {} answers of ε {epsilon}, ledger Σ ε {sum}: {statuses:?}",
            answered(i)
        );
        projects_sum += sum;
    }
    projects_sum += ledger(management::PROJECT).2;
    let (person_spent, person_sum): (f64, f64) = ctx
        .db
        .lock()
        .query_row(
            "SELECT epsilon_spent, epsilon_sum FROM privacy_loss_periods",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        person_spent <= cap + 1e-9,
        "per person {person_spent} of {cap}"
    );
    assert!(
        (person_sum - projects_sum).abs() < 1e-9,
        "the year's ledger {person_sum} is every project's charges {projects_sum}"
    );
    assert!(
        person_spent > cap - 2.0 * epsilon,
        "the cap, not the projects' budgets, stopped the queries: {person_spent} of {cap}"
    );
    drop(nodes);
    drop(tmp);
}

/// Bundle ids a station journalled as acknowledged (with repeats, were one acknowledged twice).
fn journal(spool_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(spool_dir.join("acknowledged.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

/// Node roles and station failover: two nodes that only ingest and serve the web, one that only
/// decodes and evaluates. Four stations list both ingest nodes (the first one first) and upload
/// while the first ingest node is SIGKILLed (they move to the second), the decode node is killed
/// too, and both come back later. Afterwards every bundle a station recorded as acknowledged is
/// stored exactly once, with the bytes the station sent, and decoded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_fail_over_between_ingest_nodes_and_nothing_is_lost_or_doubled() {
    const DAYS: u32 = 20;
    let tmp = tempfile::tempdir().unwrap();
    let t = start_server(nachtwacht::base::config::Config::default()).await;
    let root = t.tmp.path().join("data");
    let mut stations = Vec::new();
    let mut originals = std::collections::BTreeMap::new();
    for i in 0..4 {
        let (cfg, dir, _) = t.ankle_station(&format!("fo-{i}"), &format!("AM-F{i}"), DAYS, vec![]);
        let sealed = seal_all(&cfg, &dir);
        for b in &sealed {
            originals.insert(b.bundle_id.to_hex(), b.ciphertext.clone());
        }
        stations.push((cfg, dir, sealed));
    }
    let TestServer {
        tmp: data,
        ctx,
        server,
    } = t;
    server.shutdown().await;

    const FRONT: &[&str] = &["--roles", "ingest,web"];
    const BACK: &[&str] = &["--roles", "decode,evaluate"];
    let log = |name: &str| tmp.path().join(format!("{name}.log"));
    let mut a = Node::start_with(&root, log("a-1"), FRONT);
    let mut b = Node::start_with(&root, log("b"), FRONT);
    let mut worker = Node::start_with(&root, log("worker-1"), BACK);
    wait_serving("three nodes", &mut [&mut a, &mut b, &mut worker]);
    // Each node runs its roles and no other: the worker has no QUIC or HTTP listener.
    assert!(
        a.log_text().contains("(roles ingest,web)"),
        "{}",
        a.log_text()
    );
    let first_line = worker.log_text();
    assert!(
        first_line.contains("(roles decode,evaluate)") && !first_line.contains("QUIC ingest on"),
        "{first_line}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", worker.http)).is_err());

    let servers = vec![
        format!("127.0.0.1:{}", a.quic),
        format!("127.0.0.1:{}", b.quic),
    ];
    let uploads: Vec<_> = stations
        .iter()
        .cloned()
        .map(|(mut cfg, dir, sealed)| {
            cfg.servers = servers.clone();
            tokio::spawn(async move {
                let spool = Spool::open(&cfg.spool_dir(&dir)).unwrap();
                let heartbeat = quiet_heartbeat(&cfg);
                let drain = || async {
                    let up = Uploader::new(&cfg)
                        .unwrap()
                        .with_backoff(20, 300)
                        .with_max_failures(4)
                        .with_connect_timeout(Duration::from_millis(500))
                        .with_idle_timeout(Duration::from_secs(2));
                    let _ = up.drain(&spool, &heartbeat).await;
                };
                for b in &sealed {
                    spool.put(b).unwrap();
                    drain().await;
                    let pause = rand::random::<u64>() % 100 + 20;
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
    let acknowledged = || -> usize {
        stations
            .iter()
            .map(|(cfg, dir, _)| journal(&cfg.spool_dir(dir)).len())
            .sum()
    };

    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_kill = acknowledged();
    a.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    worker.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let while_a_was_down = acknowledged() - before_kill;
    worker.restart(&root, log("worker-2"), BACK);
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.restart(&root, log("a-2"), FRONT);
    wait_serving("the restarted nodes", &mut [&mut a, &mut worker]);
    for u in uploads {
        u.await.unwrap();
    }
    wait_for("every bundle decoded", Duration::from_secs(120), || {
        count(&ctx, "SELECT count(*) FROM bundles WHERE state = 'spooled'") == 0
    });
    drop((a, b, worker));

    let total = originals.len();
    assert!(
        before_kill < total,
        "all {before_kill} bundles were acknowledged before the kill"
    );
    assert!(
        while_a_was_down > 0,
        "no station was acknowledged by the second ingest node while the first was down"
    );
    // Every bundle was acknowledged in the end, and none is left in a station's spool.
    let mut acked = std::collections::BTreeSet::new();
    for (cfg, dir, _) in &stations {
        let spool_dir = cfg.spool_dir(dir);
        assert!(Spool::open(&spool_dir)
            .unwrap()
            .pending()
            .unwrap()
            .is_empty());
        acked.extend(journal(&spool_dir));
    }
    assert_eq!(acked, originals.keys().cloned().collect());
    // Stored exactly once, with the digest of what the station sent, and decoded once.
    assert_eq!(count(&ctx, "SELECT count(*) FROM bundles") as usize, total);
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
        assert_eq!(sha, nachtwacht_wire::protocol::sha256_hex(bytes), "{id}");
        // Its ciphertext kept as evidence: the bytes the station sent.
        let kept = evidence(&ctx, id);
        assert_eq!(&kept, bytes, "{id}");
    }
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM bundles WHERE state = 'processed'"
        ) as usize,
        total
    );
    assert_eq!(custody(&ctx, "bundles.stored") as usize, total);
    assert_eq!(
        custody(&ctx, "bundles.decoded") as usize,
        total,
        "each bundle decoded once"
    );
    // Every reading in the datasets once: 4 stations × DAYS days × 48 readings.
    let readings = 4 * DAYS as i64 * 48;
    assert_eq!(
        count(&ctx, "SELECT coalesce(sum(rows_stored), 0) FROM bundles"),
        readings
    );
    assert_eq!(
        count(&ctx, "SELECT coalesce(sum(rows), 0) FROM dataset_files"),
        readings
    );
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
    drop(data);
}
