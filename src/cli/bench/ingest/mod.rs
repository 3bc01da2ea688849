//! `nachtwacht bench ingest`: the ingest under load, with its floors measured in the same run.
//!
//! A real `nachtwacht serve --roles ingest` child process on loopback; N simulated stations, each
//! with its own enrolled certificate and signing key, upload real sealed wristband bundles all at
//! once; then K further stations open connections and stay idle. Measured:
//! * throughput (bundles/s, MB/s, samples/s) and p50/p99 acknowledgement latency;
//! * server CPU-seconds per GB ingested (from /proc of the server process);
//! * server resident memory per idle connection;
//! * the floors: single-core age decryption of the same bundles, and fsync latency of a
//!   bundle-sized file on the data directory's file system (what one ungrouped commit costs);
//! * the station agent's peak RSS while it seals and uploads wristband data;
//! * the herd again against several ingest nodes on the same machine (`--nodes`, 3 by default).
//!
//! Part of the binary (it prints and uses `anyhow`); see docs/benchmarks.md for method and figures.

mod stations;
use stations::{client_endpoints, open_idle, upload_station, Go};

mod filesystem;
mod floors;
mod process;
use process::{cpu_seconds_of, fsync_latencies, station_peak_rss, Server};

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::measure::quantile_index;
use anyhow::{bail, Context};
use nachtwacht::base::config::Config;
use nachtwacht::base::Context as ServerContext;
use nachtwacht::{registry::enroll, server::init, trust::secrets};
use nachtwacht_station::seal::{self, SealedBundle};
use nachtwacht_station::source::simulator::{self, SimulatorConfig};
use nachtwacht_station::uploader::{client_tls_config, client_transport, exchange};
use nachtwacht_station::{SourceConfig, StationConfig};
use nachtwacht_wire::protocol::{encode_heartbeat, encode_upload_head, Heartbeat, SpoolStatus};
use nachtwacht_wire::{AckCode, DeviceKind, UploadHeader};

#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// After the run on SQLite, run it again with the server's state in this empty PostgreSQL
    /// database and print the two side by side (a URL or `host=… dbname=…`; no password: a
    /// bench uses trust or peer authentication).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// After the run on local files, run it again (on SQLite) with the ciphertexts in this
    /// S3-compatible bucket: `key=value` pairs, e.g. `endpoint=http://127.0.0.1:9014
    /// bucket=bench access_key_id=… secret_access_key_file=/path allow_http=true`.
    #[arg(long, value_name = "SETTINGS")]
    pub s3: Option<String>,
    /// Stations uploading at the same time.
    #[arg(long, default_value_t = 1000)]
    pub stations: usize,
    /// Bundles each uploading station sends (one after the other).
    #[arg(long, default_value_t = 3)]
    pub bundles_per_station: usize,
    /// Minutes of wristband readings (all five signals) per bundle.
    #[arg(long, default_value_t = 1)]
    pub bundle_minutes: u32,
    /// Further stations that connect and stay idle, for the memory-per-connection figure.
    #[arg(long, default_value_t = 10_000)]
    pub idle: usize,
    /// Second phase: each station sends its bundles this many seconds apart, the stations spread
    /// evenly over the interval (a steady load instead of everyone at the same instant).
    #[arg(long, default_value_t = 5)]
    pub paced_interval_secs: u64,
    /// Client endpoints (UDP sockets) the simulated stations share.
    #[arg(long, default_value_t = 8)]
    pub client_sockets: usize,
    /// The server's `ingest.max_receiving_uploads` (receive slots); its default if not given.
    #[arg(long)]
    pub receiving_uploads: Option<u32>,
    /// After the one-node phases, the herd again against this many ingest nodes (`serve --roles
    /// ingest` processes on the same data directory and database), the stations spread over
    /// them, beside the one-node herd of the same run. 1 skips it.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Leave the data directory in place at the end. Besides inspection: deleting it frees
    /// thousands of inodes, and on ext4 without a journal every file created in the next minutes
    /// (up to 6) skips and re-reads those, which slows the next run's spool (docs/benchmarks.md).
    #[arg(long)]
    pub keep_data_dir: bool,
    /// Runs of every case on SQLite and local files, each from a fresh data directory; all are
    /// printed with their median and worst. The idle connections, the station agent and the
    /// several-node herd run in the last only; the PostgreSQL and S3 comparisons run once.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

struct Station {
    config: StationConfig,
    bundles: Vec<SealedBundle>,
}

/// What a simulated station sends for one bundle, prepared before the clock starts: a real station
/// sealed its bundles long before it uploads them, and the load generator's own work (hashing,
/// copying) would otherwise take CPU from the server on these shared cores.
struct Upload {
    head: Vec<u8>,
    body: bytes::Bytes,
}

/// A connected-to-be station of one phase and the uploads it will send, in order.
struct PhaseStation {
    config: StationConfig,
    /// The station's client configuration, the same in every phase (it keeps session tickets).
    client: quinn::ClientConfig,
    uploads: Vec<Upload>,
}

impl PhaseStation {
    /// Sequence numbers count from 1 within the phase, as after a station's restart.
    fn prepare(
        config: StationConfig,
        client: quinn::ClientConfig,
        bundles: Vec<SealedBundle>,
    ) -> Self {
        let uploads = bundles
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let header = UploadHeader::for_ciphertext(
                    b.bundle_id,
                    &config.name,
                    i as u64 + 1,
                    &b.ciphertext,
                );
                Upload {
                    head: encode_upload_head(&header),
                    body: b.ciphertext.into(),
                }
            })
            .collect();
        Self {
            config,
            client,
            uploads,
        }
    }
}

/// The figures of one case in one run.
#[derive(Clone, Copy)]
struct CaseFigures {
    p99: f64,
    rate: f64,
    cpu_per_gb: f64,
}

impl CaseFigures {
    fn of(p: &Phase, bundles: f64) -> Self {
        Self {
            p99: p.percentile(0.99),
            rate: bundles / p.wall,
            cpu_per_gb: p.server_cpu / (p.bytes as f64 / 1e9),
        }
    }
}

/// One run of every case, from its own fresh data directory.
struct RunFigures {
    herd: CaseFigures,
    cold: CaseFigures,
    paced: CaseFigures,
    /// Cold herd: handshakes that resumed a session, and full ones.
    resumed: u64,
    full_handshakes: u64,
    /// AEAD decryption of the bundles' bytes in QUIC-packet-sized pieces plus SHA-256 of the
    /// bundles, one core: the work every received byte needs, CPU-s per GB.
    floor_cpu_per_gb: f64,
    /// Group commits (one database transaction each) and the bundles they stored.
    commits: u64,
    committed: u64,
    /// The run's data directory, removed when the bench ends rather than before the next run.
    _data: tempfile::TempDir,
}

/// The runs of one store (SQLite, PostgreSQL, S3), for the summary and the comparison at the end.
struct StoreRuns {
    store: String,
    runs: Vec<RunFigures>,
}

/// Median and worst of a figure over the runs; worst is the highest unless `higher_is_better`.
fn median_worst(values: impl Iterator<Item = f64>, higher_is_better: bool) -> (f64, f64) {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let worst = if higher_is_better {
        v[0]
    } else {
        v[v.len() - 1]
    };
    (median, worst)
}

impl StoreRuns {
    fn column(&self, f: impl Fn(&RunFigures) -> f64, higher_is_better: bool) -> (f64, f64) {
        median_worst(self.runs.iter().map(f), higher_is_better)
    }

    /// Every run of every case, then the median and the worst of each column, and whether the
    /// targets held in every run.
    fn print_summary(&self) {
        println!(
            "\n== {}: {} runs, each from a fresh data directory ==",
            self.store,
            self.runs.len()
        );
        type Col = (&'static str, fn(&RunFigures) -> f64, bool, f64);
        let cols: [Col; 10] = [
            ("herd p99 ms", |r| r.herd.p99 * 1e3, false, 1.0),
            ("herd b/s", |r| r.herd.rate, true, 1.0),
            ("herd CPU/GB", |r| r.herd.cpu_per_gb, false, 0.1),
            ("cold p99 ms", |r| r.cold.p99 * 1e3, false, 1.0),
            ("cold b/s", |r| r.cold.rate, true, 1.0),
            ("cold resumed", |r| r.resumed as f64, true, 1.0),
            ("cold CPU/GB", |r| r.cold.cpu_per_gb, false, 0.1),
            ("paced p99 ms", |r| r.paced.p99 * 1e3, false, 1.0),
            ("paced CPU/GB", |r| r.paced.cpu_per_gb, false, 0.1),
            ("floor CPU/GB", |r| r.floor_cpu_per_gb, false, 0.01),
        ];
        let fmt = |v: f64, step: f64| {
            if step < 0.05 {
                format!("{v:.2}")
            } else if step < 0.5 {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            }
        };
        print!("{:<8}", "run");
        for (name, ..) in &cols {
            print!(" {name:>13}");
        }
        println!();
        for (i, r) in self.runs.iter().enumerate() {
            print!("{:<8}", i + 1);
            for (_, f, _, step) in &cols {
                print!(" {:>13}", fmt(f(r), *step));
            }
            println!();
        }
        let summaries: Vec<(f64, f64)> = cols
            .iter()
            .map(|(_, f, better, _)| self.column(f, *better))
            .collect();
        for (label, pick) in [("median", 0), ("worst", 1)] {
            print!("{label:<8}");
            for ((_, _, _, step), s) in cols.iter().zip(&summaries) {
                let v = if pick == 0 { s.0 } else { s.1 };
                print!(" {:>13}", fmt(v, *step));
            }
            println!();
        }
        let held = |ok: bool| if ok { "met in every run" } else { "NOT met" };
        let all = |f: &dyn Fn(&RunFigures) -> bool| self.runs.iter().all(f);
        println!(
            "target herd p99 < 1000 ms:       {}",
            held(all(&|r| r.herd.p99 < 1.0))
        );
        println!(
            "target cold herd p99 < 1000 ms:  {}",
            held(all(&|r| r.cold.p99 < 1.0))
        );
        println!(
            "target herd CPU/GB ≤ 5:          {}",
            held(all(&|r| r.herd.cpu_per_gb <= 5.0))
        );
        println!(
            "target paced CPU/GB ≤ 10:        {}",
            held(all(&|r| r.paced.cpu_per_gb <= 10.0))
        );
        let resumed: u64 = self.runs.iter().map(|r| r.resumed).sum();
        let full: u64 = self.runs.iter().map(|r| r.full_handshakes).sum();
        println!(
            "cold herds: {resumed} connections resumed a session, {full} made a full handshake"
        );
    }
}

/// Runs the bench on SQLite and, given `--database-url`, again on PostgreSQL in the same
/// invocation, ending with the two side by side.
pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let s3 = args
        .s3
        .as_deref()
        .map(nachtwacht::base::config::StorageConfig::s3_from_pairs)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--s3: {e}"))?;
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    // Freed inodes slow the next creates on ext4 without a journal for up to 6 minutes (see
    // --keep-data-dir): each run's directory stays until the bench ends.
    let mut stores = vec![run_store(&args, None, None).await?];
    if let Some(url) = &args.database_url {
        stores.push(run_store(&args, Some(url), None).await?);
    }
    if let Some(s3) = &s3 {
        stores.push(run_store(&args, None, Some(s3)).await?);
    }
    for s in &stores {
        s.print_summary();
    }
    if stores.len() > 1 {
        println!("\n== stores, same run (medians over the runs) ==");
        println!(
            "{:<12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>18}",
            "store",
            "herd p99 ms",
            "herd b/s",
            "cold p99 ms",
            "paced p99 ms",
            "herd CPU/GB",
            "bundles per commit"
        );
        for s in &stores {
            let (commits, committed) = s
                .runs
                .iter()
                .fold((0, 0), |(a, b), r| (a + r.commits, b + r.committed));
            println!(
                "{:<12} {:>12.1} {:>12.0} {:>12.1} {:>12.1} {:>12.1} {:>18}",
                s.store,
                s.column(|r| r.herd.p99, false).0 * 1e3,
                s.column(|r| r.herd.rate, true).0,
                s.column(|r| r.cold.p99, false).0 * 1e3,
                s.column(|r| r.paced.p99, false).0 * 1e3,
                s.column(|r| r.herd.cpu_per_gb, false).0,
                format!(
                    "{:.1} ({} in {})",
                    committed as f64 / commits.max(1) as f64,
                    committed,
                    commits
                )
            );
        }
    }
    Ok(())
}

/// `--runs` runs on one store; the measurements that have no target to hold in every run (idle
/// connections, the station agent, several nodes) only in the last.
async fn run_store(
    args: &IngestArgs,
    database_url: Option<&str>,
    s3: Option<&nachtwacht::base::config::StorageConfig>,
) -> anyhow::Result<StoreRuns> {
    // The comparison stores run once: their database or bucket starts empty only the first time.
    let n = if database_url.is_some() || s3.is_some() {
        1
    } else {
        args.runs
    };
    let mut runs = Vec::with_capacity(n);
    let mut store = String::new();
    for run in 1..=n {
        let last = run == n;
        let (name, figures) = run_on(args, database_url, s3, run, n, last).await?;
        store = name;
        runs.push(figures);
    }
    Ok(StoreRuns { store, runs })
}

/// One run: the state in SQLite or the PostgreSQL database at `database_url`; the ciphertexts
/// in the data directory or the bucket `s3` names (under a prefix of this run's own).
async fn run_on(
    args: &IngestArgs,
    database_url: Option<&str>,
    s3: Option<&nachtwacht::base::config::StorageConfig>,
    run: usize,
    runs: usize,
    last: bool,
) -> anyhow::Result<(String, RunFigures)> {
    let tmp = tempfile::Builder::new()
        .disable_cleanup(args.keep_data_dir)
        .tempdir()
        .context("temporary directory")?;
    if args.keep_data_dir {
        println!("data directory kept: {}", tmp.path().display());
    }
    let root = tmp.path().join("data");
    let mut config = Config::default();
    config.ingest.max_bundles_per_minute = 100_000;
    config.ingest.max_connections_per_station = 4;
    if let Some(slots) = args.receiving_uploads {
        config.ingest.max_receiving_uploads = slots;
    }
    if let Some(url) = database_url {
        config.database = nachtwacht::base::config::DatabaseConfig::postgres(url, None);
    }
    if let Some(s3) = s3 {
        config.storage = s3.clone();
        config.storage.prefix = format!(
            "{}/bench-ingest-{}",
            s3.prefix.trim_matches('/'),
            nachtwacht::base::time::now_ms()
        )
        .trim_start_matches('/')
        .to_string();
    }
    let store = format!(
        "{}{}",
        database_url.map_or("sqlite", |_| "postgres"),
        if s3.is_some() { "+s3" } else { "" }
    );
    println!("\n#### store: {store}, run {run} of {runs} ####");
    init::init(&root, &config, nachtwacht::base::time::now_ms()).context("init")?;
    let ctx = ServerContext::open(&root)?;

    let t = Instant::now();
    let idle = if last { args.idle } else { 0 };
    let total = args.stations + idle;
    let mut stations = Vec::with_capacity(total);
    for i in 0..total {
        let name = format!("bench-{i:05}");
        let config = enroll::add_station(&ctx, &name, "bench").context("enrolling")?;
        stations.push(config);
    }
    println!(
        "enrolled {total} stations in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let idle_stations = stations.split_off(args.stations);

    // The workload: distinct wristband bundles per station, sealed (signed + encrypted) up front.
    let t = Instant::now();
    let template = simulator::generate(&SimulatorConfig {
        device: DeviceKind::Wristband,
        device_serial: "WB-BENCH".into(),
        start_ms: nachtwacht::base::time::now_ms() - 86_400_000,
        days: 1,
        seed: 1,
        drinking: vec![],
        wear_hours_per_day: 1,
        bundle_minutes: args.bundle_minutes,
    });
    let samples_per_bundle = template[0].samples();
    let recipient = seal::parse_recipient(&stations[0].server_age_recipient)?;
    // The three one-node phases, and the several-node herd.
    let several_nodes = last && args.nodes > 1;
    let phases = PHASES + usize::from(several_nodes);
    let mut active = Vec::with_capacity(args.stations);
    for config in stations {
        let key = config.signing_key()?;
        let signer = seal::Signer {
            station: &config.name,
            key: &key,
        };
        let mut bundles = Vec::with_capacity(phases * args.bundles_per_station);
        for b in 0..phases * args.bundles_per_station {
            let mut content = template[b % template.len()].clone();
            content.device_serial = format!("WB-{}-{b}", config.name);
            bundles.push(seal::seal(&content, &signer, &recipient)?);
        }
        active.push(Station { config, bundles });
    }
    let n_bundles = phases * args.stations * args.bundles_per_station;
    let bytes: u64 = active
        .iter()
        .flat_map(|s| &s.bundles)
        .map(|b| b.ciphertext.len() as u64)
        .sum();
    let mean_bundle = bytes / n_bundles.max(1) as u64;
    println!(
        "sealed {n_bundles} bundles ({:.1} MB, {} samples each, mean {} KiB) in {:.1} s",
        bytes as f64 / 1e6,
        samples_per_bundle,
        mean_bundle / 1024,
        t.elapsed().as_secs_f64()
    );

    // Floor 1: age decryption of the same bundles, one core.
    let identities = secrets::load_age_identities(&ctx.dir.age_identity())?;
    let t = Instant::now();
    for b in active.iter().flat_map(|s| &s.bundles) {
        let d = age::Decryptor::new_buffered(&b.ciphertext[..])?;
        let mut r = d.decrypt(identities.iter().map(|i| i as &dyn age::Identity))?;
        let mut out = Vec::with_capacity(b.ciphertext.len());
        r.read_to_end(&mut out)?;
    }
    let decrypt_s = t.elapsed().as_secs_f64();
    // Floor 3: what every received byte costs at least (QUIC packet decryption, SHA-256).
    let floor_cpu_per_gb = floors::per_byte_cpu_per_gb(
        active
            .iter()
            .flat_map(|s| &s.bundles)
            .map(|b| &b.ciphertext[..]),
    );

    // The server, as operators run it, ingest only.
    drop(ctx);
    let mut server = Server::start(&root)?;
    let endpoints = client_endpoints(args.client_sockets)?;

    // Each station's bundles, split into one set per phase (fresh bundle ids for each); one client
    // configuration per station for all phases, so its session tickets carry over.
    let mut sets: Vec<Vec<PhaseStation>> = (0..phases).map(|_| Vec::new()).collect();
    for mut s in active {
        let client = stations::client_for(&s.config)?;
        for (phase, set) in sets.iter_mut().enumerate().rev() {
            let bundles = s.bundles.split_off(phase * args.bundles_per_station);
            set.push(PhaseStation::prepare(
                s.config.clone(),
                client.clone(),
                bundles,
            ));
        }
    }
    let mut sets = sets.into_iter();
    let mut next_set = || sets.next().expect("one set per phase");
    let herd = run_phase(
        std::slice::from_ref(&server),
        &endpoints,
        next_set(),
        Start::Herd,
    )
    .await?;
    // A restart (the server is killed, as by a crash or an upgrade): every station comes back at
    // once, each with the session ticket of its connection before.
    let (mut commits, mut committed) = server.group_commits()?;
    server.stop();
    server = Server::start(&root)?;
    let quic = server.quic_addr;
    let one = std::slice::from_ref(&server);
    let cold = run_phase(one, &endpoints, next_set(), Start::Cold).await?;
    let resumed = server.metric("nachtwacht_tls_resumptions_total")?;
    let full_handshakes = server.metric("nachtwacht_tls_full_handshakes_total")?;
    let paced = run_phase(
        one,
        &endpoints,
        next_set(),
        Start::Paced(Duration::from_secs(args.paced_interval_secs)),
    )
    .await?;

    // Idle connections: resident memory per connection (none asked for: no figure, rather than
    // the server's unrelated growth over these seconds divided by one).
    let idle_figures = if last && !idle_stations.is_empty() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_before = server.rss_kib()?;
        let t_idle = Instant::now();
        let idle_conns = open_idle(&endpoints, quic, &idle_stations).await?;
        let idle_s = t_idle.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_after = server.rss_kib()?;
        let still_open = idle_conns
            .iter()
            .filter(|c| c.close_reason().is_none())
            .count();
        let opened = idle_conns.len();
        drop(idle_conns);
        Some((rss_before, rss_after, idle_s, still_open, opened))
    } else {
        None
    };

    // The station agent at wristband rates: peak RSS of a real process.
    let station_rss = if last {
        Some(station_peak_rss(&root, quic, tmp.path()).await)
    } else {
        None
    };

    let (c, b) = server.group_commits()?;
    (commits, committed) = (commits + c, committed + b);
    server.stop();
    // The herd again, spread over several ingest nodes on the same data directory and database.
    let several = if several_nodes {
        let nodes = (0..args.nodes)
            .map(|_| Server::start(&root))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let phase = run_phase(&nodes, &endpoints, next_set(), Start::Herd).await?;
        for node in nodes {
            node.stop();
        }
        Some(phase)
    } else {
        None
    };
    // Floor 2: fsync of a bundle-sized file in the data directory. Measured after the uploads: on
    // ext4 without a journal, inodes freed in the last 60 s (6 min while their inode-table block is
    // dirty) are skipped, each one re-read, when a new file is created in the same group, so probing
    // first would slow the spool's creates.
    let fsync = fsync_latencies(&root, mean_bundle as usize, 200)?;
    let filesystem = filesystem::of(&root);
    // Floor 2 on object storage: one bundle-sized PUT at a time (what an ungrouped commit waits
    // for there).
    let put = match s3 {
        Some(_) => Some(put_latencies(
            &ServerContext::open(&root)?.blobs,
            mean_bundle as usize,
            200,
        )?),
        None => None,
    };
    let decrypt_rate = n_bundles as f64 / decrypt_s;
    let per_phase = (n_bundles / phases) as f64;
    println!();
    for (label, p) in [
        (
            format!(
                "herd: {} connected stations × {} bundles, all starting at once",
                args.stations, args.bundles_per_station
            ),
            &herd,
        ),
        (
            format!(
                "cold herd: the server restarts, {} stations reconnect at once and upload {} bundles as soon as each is connected",
                args.stations, args.bundles_per_station
            ),
            &cold,
        ),
        (
            format!(
                "paced: {} stations × {} bundles, one per station every {} s",
                args.stations, args.bundles_per_station, args.paced_interval_secs
            ),
            &paced,
        ),
    ] {
        println!("== {label} ==");
        if p.handshakes_timed {
            println!(
                "connections          opened on the clock below: {resumed} resumed a session, {full_handshakes} full handshakes"
            );
        } else {
            println!(
                "connections ready    {:>10.2} s   (before the clock below starts)",
                p.ready_after
            );
        }
        println!("bundles/s            {:>10.0}", per_phase / p.wall);
        println!(
            "MB/s                 {:>10.1}",
            p.bytes as f64 / 1e6 / p.wall
        );
        println!(
            "samples/s            {:>10.0}",
            per_phase * samples_per_bundle as f64 / p.wall
        );
        println!("ack latency p50      {:>10.1} ms", p.percentile(0.50) * 1e3);
        println!(
            "ack latency p99      {:>10.1} ms   (target < 1000 ms)",
            p.percentile(0.99) * 1e3
        );
        println!("ack latency max      {:>10.1} ms", p.percentile(1.0) * 1e3);
        for (i, round) in p.by_round.iter().enumerate() {
            println!(
                "  bundle {} of each  p10 {:>6.0}  p50 {:>6.0}  p99 {:>6.0}  max {:>6.0} ms",
                i + 1,
                percentile(round, 0.10) * 1e3,
                percentile(round, 0.50) * 1e3,
                percentile(round, 0.99) * 1e3,
                percentile(round, 1.0) * 1e3
            );
        }
        println!("busy answers         {:>10}", p.busy);
        let per_bundle = |n: u64| n as f64 / p.latencies.len().max(1) as f64;
        println!(
            "datagrams per bundle {:>10.1} from the server ({:.1} ACK, {:.1} MAX_DATA, {:.1} MAX_STREAM_DATA frames), {:.1} to it",
            per_bundle(p.packets.from_server),
            per_bundle(p.packets.acks),
            per_bundle(p.packets.max_data),
            per_bundle(p.packets.max_stream_data),
            per_bundle(p.packets.to_server),
        );
        println!(
            "group commit busy    {:>10.2} s   ({:.0} % of the clock; a bundle waits for the commit before its own)",
            p.commit_busy,
            100.0 * p.commit_busy / p.wall
        );
        println!(
            "server CPU s per GB  {:>10.1}   ({:.1} CPU-s for {:.3} GB; floor {:.2}; bench client on the same cores: {:.1} CPU-s)",
            p.server_cpu / (p.bytes as f64 / 1e9),
            p.server_cpu,
            p.bytes as f64 / 1e9,
            floor_cpu_per_gb,
            p.client_cpu
        );
    }
    if let Some(p) = &several {
        println!(
            "== herd on {} ingest nodes (one machine: the same cores as one node, none added) ==",
            args.nodes
        );
        println!(
            "bundles/s            {:>10.0}   (one node, same run: {:.0})",
            per_phase / p.wall,
            per_phase / herd.wall
        );
        println!(
            "ack latency p99      {:>10.1} ms   (one node, same run: {:.1} ms)",
            p.percentile(0.99) * 1e3,
            herd.percentile(0.99) * 1e3
        );
        println!(
            "server CPU s per GB  {:>10.1}   (all nodes; one node, same run: {:.1})",
            p.server_cpu / (p.bytes as f64 / 1e9),
            herd.server_cpu / (herd.bytes as f64 / 1e9)
        );
        println!("busy answers         {:>10}", p.busy);
    }
    println!("== floors, same run ==");
    println!(
        "age decrypt, 1 core  {:>10.0} bundles/s   herd ingest / decrypt = {:.2}",
        decrypt_rate,
        per_phase / herd.wall / decrypt_rate
    );
    println!(
        "per-byte floor       {:>10.2} CPU-s per GB (AES-256-GCM open of {} B packets + SHA-256, 1 core)",
        floor_cpu_per_gb,
        floors::PACKET_PAYLOAD
    );
    println!(
        "fsync p50 / p99      {:>7.2} / {:.2} ms  ({} KiB file)",
        fsync.0 * 1e3,
        fsync.1 * 1e3,
        mean_bundle / 1024
    );
    println!(
        "ungrouped ceiling    {:>10.0} bundles/s (1 / fsync p50)   herd ingest / ceiling = {:.2}",
        1.0 / fsync.0,
        per_phase / herd.wall * fsync.0
    );
    if let Some(filesystem) = &filesystem {
        println!("data directory       {filesystem}");
    }
    if let Some(put) = put {
        println!(
            "S3 PUT p50 / p99     {:>7.2} / {:.2} ms  ({} KiB object, one at a time)",
            put.0 * 1e3,
            put.1 * 1e3,
            mean_bundle / 1024
        );
    }
    if let Some((rss_before, rss_after, idle_s, still_open, opened)) = idle_figures {
        println!("== idle connections ==");
        println!(
            "{} connected in {:.1} s, {} still open; server RSS {} → {} KiB",
            idle_stations.len(),
            idle_s,
            still_open,
            rss_before,
            rss_after
        );
        println!(
            "RSS per idle conn    {:>10.1} KiB   (target < 64 KiB)",
            rss_after.saturating_sub(rss_before) as f64 / opened.max(1) as f64
        );
    }
    match station_rss {
        Some(Ok((kib, acked))) => println!(
            "== station agent ==\npeak RSS             {:>10.1} MiB   (target < 20 MiB; {acked} wristband bundles of 5 min sealed and uploaded)",
            kib as f64 / 1024.0
        ),
        Some(Err(e)) => println!("== station agent ==\nnot measured: {e:#}"),
        None => {}
    }
    println!("== group commit ==");
    println!(
        "{committed} bundles stored in {commits} database transactions ({:.1} per transaction)",
        committed as f64 / commits.max(1) as f64
    );
    Ok((
        store,
        RunFigures {
            herd: CaseFigures::of(&herd, per_phase),
            cold: CaseFigures::of(&cold, per_phase),
            paced: CaseFigures::of(&paced, per_phase),
            resumed,
            full_handshakes,
            floor_cpu_per_gb,
            commits,
            committed,
            _data: tmp,
        },
    ))
}

/// How the stations of a phase begin.
#[derive(Clone, Copy)]
enum Start {
    /// Every station connects and has one heartbeat answered (what the station agent sends first
    /// on a new connection, and proof that the server has finished its side of the handshake);
    /// then all start uploading at the same instant. The clock starts at that instant.
    Herd,
    /// Right after the server restarted: every station starts connecting at the same instant
    /// (resuming the session of its connection before, when the server accepts its ticket) and
    /// uploads as soon as its own side of the handshake is done, so the server's handshake work
    /// overlaps the first uploads. The clock starts before the handshakes.
    Cold,
    /// Connected as for `Herd`; station i of n sends at offset i/n of every interval.
    Paced(Duration),
}

/// Bundle sets per station on one node: herd, cold herd, paced (a several-node herd adds one).
const PHASES: usize = 3;

struct Phase {
    /// The stations connected after the clock started (a cold herd).
    handshakes_timed: bool,
    /// Seconds from the phase's start to the instant the clock started.
    ready_after: f64,
    /// Seconds from the clock's start to the last acknowledgement.
    wall: f64,
    server_cpu: f64,
    client_cpu: f64,
    /// Seconds the servers' group commits spent committing (writing, syncing, registering).
    commit_busy: f64,
    bytes: u64,
    busy: usize,
    /// Datagrams and frames the stations saw, summed over them.
    packets: stations::Packets,
    /// Every acknowledgement latency, sorted.
    latencies: Vec<Duration>,
    /// The latencies of each station's first, second, … bundle, each sorted: where in the phase
    /// the slow acknowledgements are.
    by_round: Vec<Vec<Duration>>,
}

impl Phase {
    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies, p)
    }
}

/// The `p` quantile of sorted latencies, in seconds (0 for none).
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    quantile_index(sorted.len(), p).map_or(0.0, |i| sorted[i].as_secs_f64())
}

/// One phase against `servers`: station i uploads to server i mod n.
async fn run_phase(
    servers: &[Server],
    endpoints: &[quinn::Endpoint],
    stations: Vec<PhaseStation>,
    start: Start,
) -> anyhow::Result<Phase> {
    let server_pids = Arc::new(servers.iter().map(Server::pid).collect::<Vec<_>>());
    let bytes = stations
        .iter()
        .flat_map(|s| &s.uploads)
        .map(|u| u.body.len() as u64)
        .sum();
    let n = stations.len();
    let commit_seconds = || {
        servers
            .iter()
            .map(Server::group_commit_seconds)
            .sum::<anyhow::Result<f64>>()
    };
    // Nothing is committed before the clock starts (connections and heartbeats only).
    let commit_before = commit_seconds()?;
    let t = Instant::now();
    // Set by the one task that releases the barrier: when the clock started, and the CPU time both
    // processes had used by then.
    let clock = Arc::new(std::sync::OnceLock::new());
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in stations.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let quic = servers[i % servers.len()].quic_addr;
        let go = Go {
            barrier: barrier.clone(),
            clock: clock.clone(),
            server_pids: server_pids.clone(),
        };
        // Paced: station i takes slot i/n of every interval.
        let schedule = match start {
            Start::Paced(p) => Some((p.mul_f64(i as f64 / n as f64), p)),
            _ => None,
        };
        let cold = matches!(start, Start::Cold);
        tasks.spawn(async move { upload_station(endpoint, quic, s, go, cold, schedule).await });
    }
    let mut latencies = Vec::new();
    let mut by_round: Vec<Vec<Duration>> = Vec::new();
    let mut busy = 0;
    let mut packets = stations::Packets::default();
    while let Some(r) = tasks.join_next().await {
        let (l, b, p) = r??;
        packets.add(&p);
        for (round, latency) in l.iter().enumerate() {
            if by_round.len() <= round {
                by_round.push(Vec::new());
            }
            by_round[round].push(*latency);
        }
        latencies.extend(l);
        busy += b;
    }
    latencies.sort_unstable();
    for round in &mut by_round {
        round.sort_unstable();
    }
    let &(started, server_before, client_before) = clock.get().context("no station started")?;
    Ok(Phase {
        handshakes_timed: matches!(start, Start::Cold),
        ready_after: started.duration_since(t).as_secs_f64(),
        wall: started.elapsed().as_secs_f64(),
        server_cpu: servers
            .iter()
            .map(Server::cpu_seconds)
            .sum::<anyhow::Result<f64>>()?
            - server_before,
        client_cpu: cpu_seconds_of("self")? - client_before,
        commit_busy: commit_seconds()? - commit_before,
        bytes,
        busy,
        packets,
        latencies,
        by_round,
    })
}

/// p50 and p99 of `n` PUTs of a `size`-byte object through the ciphertext store, one at a time;
/// the objects are removed afterwards.
fn put_latencies(
    blobs: &nachtwacht::base::blobs::Blobs,
    size: usize,
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    use nachtwacht::base::blobs::Key;
    let body = vec![0x5a_u8; size];
    let mut took: Vec<Duration> = Vec::with_capacity(n);
    let keys: Vec<Key> = (0..n)
        .map(|i| {
            Key::spooled(
                &nachtwacht_wire::BundleId([i as u8; 16]),
                &format!("probe{i}"),
            )
        })
        .collect();
    for key in &keys {
        let t = Instant::now();
        blobs.put(key, &body)?;
        took.push(t.elapsed());
    }
    for key in &keys {
        blobs.remove(key)?;
    }
    took.sort();
    Ok((percentile(&took, 0.50), percentile(&took, 0.99)))
}
