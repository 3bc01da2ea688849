//! `nachtwacht bench ingest`: the ingest under load, with its floors measured in the same run.
//!
//! A real `nachtwacht serve --ingest-only` child process on loopback; N simulated stations, each
//! with its own enrolled certificate and signing key, upload real sealed wristband bundles all at
//! once; then K further stations open connections and stay idle. Measured:
//! * throughput (bundles/s, MB/s, samples/s) and p50/p99 acknowledgement latency;
//! * server CPU-seconds per GB ingested (from /proc of the server process);
//! * server resident memory per idle connection;
//! * the floors: single-core age decryption of the same bundles, and fsync latency of a
//!   bundle-sized file on the data directory's file system (what one ungrouped commit costs);
//! * the station agent's peak RSS while it seals and uploads wristband data.
//!
//! Part of the binary (it prints and uses `anyhow`); see docs/benchmarks.md for method and figures.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Leave the data directory in place at the end. Besides inspection: deleting it frees
    /// thousands of inodes, and on ext4 without a journal every file created in the next minutes
    /// (up to 6) skips and re-reads those, which slows the next run's spool (docs/benchmarks.md).
    #[arg(long)]
    pub keep_data_dir: bool,
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
    uploads: Vec<Upload>,
}

impl PhaseStation {
    /// Sequence numbers count from 1 within the phase, as after a station's restart.
    fn prepare(config: StationConfig, bundles: Vec<SealedBundle>) -> Self {
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
        Self { config, uploads }
    }
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
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
    init::init(&root, &config, nachtwacht::base::time::now_ms()).context("init")?;
    let ctx = ServerContext::open(&root)?;

    let t = Instant::now();
    let total = args.stations + args.idle;
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
    let mut active = Vec::with_capacity(args.stations);
    for config in stations {
        let key = config.signing_key()?;
        let signer = seal::Signer {
            station: &config.name,
            key: &key,
        };
        let mut bundles = Vec::with_capacity(PHASES * args.bundles_per_station);
        for b in 0..PHASES * args.bundles_per_station {
            let mut content = template[b % template.len()].clone();
            content.device_serial = format!("WB-{}-{b}", config.name);
            bundles.push(seal::seal(&content, &signer, &recipient)?);
        }
        active.push(Station { config, bundles });
    }
    let n_bundles = PHASES * args.stations * args.bundles_per_station;
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

    // The server, as operators run it, ingest only.
    drop(ctx);
    let server = Server::start(&root)?;
    let quic = server.quic_addr;
    let endpoints = client_endpoints(args.client_sockets)?;

    // Each station's bundles, split into one set per phase (fresh bundle ids for each).
    let mut sets: [Vec<PhaseStation>; PHASES] = Default::default();
    for mut s in active {
        for (phase, set) in sets.iter_mut().enumerate().rev() {
            let bundles = s.bundles.split_off(phase * args.bundles_per_station);
            set.push(PhaseStation::prepare(s.config.clone(), bundles));
        }
    }
    let [herd, cold, paced] = sets;
    let herd = run_phase(&server, &endpoints, quic, herd, Start::Herd).await?;
    let cold = run_phase(&server, &endpoints, quic, cold, Start::Cold).await?;
    let paced = run_phase(
        &server,
        &endpoints,
        quic,
        paced,
        Start::Paced(Duration::from_secs(args.paced_interval_secs)),
    )
    .await?;

    // Idle connections: resident memory per connection.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = server.rss_kib()?;
    let t_idle = Instant::now();
    let idle_conns = open_idle(&endpoints, quic, &idle_stations).await?;
    let idle_s = t_idle.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = server.rss_kib()?;
    let per_conn_kib =
        (rss_after.saturating_sub(rss_before)) as f64 / idle_conns.len().max(1) as f64;
    let still_open = idle_conns
        .iter()
        .filter(|c| c.close_reason().is_none())
        .count();
    drop(idle_conns);

    // The station agent at wristband rates: peak RSS of a real process.
    let station_rss = station_peak_rss(&root, quic, tmp.path()).await;

    server.stop();
    // Floor 2: fsync of a bundle-sized file in the data directory. Measured after the uploads: on
    // ext4 without a journal, inodes freed in the last 60 s (6 min while their inode-table block is
    // dirty) are skipped, each one re-read, when a new file is created in the same group, so probing
    // first would slow the spool's creates.
    let fsync = fsync_latencies(&root, mean_bundle as usize, 200)?;
    let decrypt_rate = n_bundles as f64 / decrypt_s;
    let per_phase = (n_bundles / PHASES) as f64;
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
                "cold herd: {} stations connect at once and upload {} bundles as soon as each is connected",
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
            println!("connections          opened on the clock below");
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
        println!(
            "server CPU s per GB  {:>10.1}   ({:.1} CPU-s for {:.3} GB; bench client on the same cores: {:.1} CPU-s)",
            p.server_cpu / (p.bytes as f64 / 1e9),
            p.server_cpu,
            p.bytes as f64 / 1e9,
            p.client_cpu
        );
    }
    println!("== floors, same run ==");
    println!(
        "age decrypt, 1 core  {:>10.0} bundles/s   herd ingest / decrypt = {:.2}",
        decrypt_rate,
        per_phase / herd.wall / decrypt_rate
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
        per_conn_kib
    );
    match station_rss {
        Ok((kib, acked)) => println!(
            "== station agent ==\npeak RSS             {:>10.1} MiB   (target < 20 MiB; {acked} wristband bundles of 5 min sealed and uploaded)",
            kib as f64 / 1024.0
        ),
        Err(e) => println!("== station agent ==\nnot measured: {e:#}"),
    }
    Ok(())
}

/// How the stations of a phase begin.
#[derive(Clone, Copy)]
enum Start {
    /// Every station connects and has one heartbeat answered (what the station agent sends first
    /// on a new connection, and proof that the server has finished its side of the handshake);
    /// then all start uploading at the same instant. The clock starts at that instant.
    Herd,
    /// Every station starts connecting at the same instant and uploads as soon as its own side of
    /// the handshake is done, so the server's handshake work overlaps the first uploads. The clock
    /// starts before the handshakes.
    Cold,
    /// Connected as for `Herd`; station i of n sends at offset i/n of every interval.
    Paced(Duration),
}

/// Bundle sets per station: herd, cold herd, paced.
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
    bytes: u64,
    busy: usize,
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
    let last = sorted.len().saturating_sub(1);
    let i = ((sorted.len() as f64 * p) as usize).min(last);
    sorted.get(i).map_or(0.0, Duration::as_secs_f64)
}

async fn run_phase(
    server: &Server,
    endpoints: &[quinn::Endpoint],
    quic: SocketAddr,
    stations: Vec<PhaseStation>,
    start: Start,
) -> anyhow::Result<Phase> {
    let bytes = stations
        .iter()
        .flat_map(|s| &s.uploads)
        .map(|u| u.body.len() as u64)
        .sum();
    let n = stations.len();
    let t = Instant::now();
    // Set by the one task that releases the barrier: when the clock started, and the CPU time both
    // processes had used by then.
    let clock = Arc::new(std::sync::OnceLock::new());
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in stations.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let go = Go {
            barrier: barrier.clone(),
            clock: clock.clone(),
            server_pid: server.pid(),
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
    while let Some(r) = tasks.join_next().await {
        let (l, b) = r??;
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
        server_cpu: server.cpu_seconds()? - server_before,
        client_cpu: cpu_seconds_of("self")? - client_before,
        bytes,
        busy,
        latencies,
        by_round,
    })
}

/// User + system CPU time of a process (a pid, or "self") from /proc.
fn cpu_seconds_of(pid: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    // Fields after the command name (in parentheses): utime is the 14th field, stime the 15th.
    let rest = stat.rsplit_once(')').context("/proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn fsync_latencies(dir: &Path, size: usize, n: usize) -> anyhow::Result<(f64, f64)> {
    let bytes = vec![0x5au8; size.max(1)];
    let mut l = Vec::with_capacity(n);
    for i in 0..n {
        let path = dir.join(format!("fsync-probe-{i}"));
        let t = Instant::now();
        nachtwacht_station::durable::write_synced(&path, &bytes)?;
        l.push(t.elapsed().as_secs_f64());
        std::fs::remove_file(&path)?;
    }
    l.sort_by(f64::total_cmp);
    Ok((l[n / 2], l[(n * 99 / 100).min(n - 1)]))
}

fn client_endpoints(n: usize) -> anyhow::Result<Vec<quinn::Endpoint>> {
    use socket2::{Domain, Protocol, Socket, Type};
    (0..n.max(1))
        .map(|_| {
            let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_recv_buffer_size(8 << 20)?;
            socket.set_send_buffer_size(8 << 20)?;
            socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into())?;
            quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                None,
                socket.into(),
                Arc::new(quinn::TokioRuntime),
            )
            .context("client socket")
        })
        .collect()
}

async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    station: &StationConfig,
) -> anyhow::Result<quinn::Connection> {
    let tls = client_tls_config(station)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(Arc::new(client_transport()));
    Ok(endpoint.connect_with(client, addr, "localhost")?.await?)
}

/// The start line of a phase: every station waits at the barrier; the last to arrive starts the
/// clock.
struct Go {
    barrier: Arc<tokio::sync::Barrier>,
    clock: Arc<std::sync::OnceLock<(Instant, f64, f64)>>,
    server_pid: u32,
}

impl Go {
    async fn wait(&self) -> anyhow::Result<()> {
        if self.barrier.wait().await.is_leader() {
            let server_cpu = cpu_seconds_of(&self.server_pid.to_string())?;
            let client_cpu = cpu_seconds_of("self")?;
            let _ = self.clock.set((Instant::now(), server_cpu, client_cpu));
        }
        Ok(())
    }
}

/// One station: connect and wait for everyone (or, cold, wait for everyone and connect), then
/// upload its bundles one after the other.
async fn upload_station(
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    s: PhaseStation,
    go: Go,
    cold: bool,
    schedule: Option<(Duration, Duration)>,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let conn = if cold {
        go.wait().await?;
        connect(&endpoint, addr, &s.config).await?
    } else {
        let conn = connect(&endpoint, addr, &s.config).await?;
        let hello = encode_heartbeat(&heartbeat(&s));
        let ack = exchange(&conn, hello, bytes::Bytes::new())
            .await
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            ack.code == AckCode::Stored,
            "heartbeat refused: {:?}",
            ack.reason
        );
        go.wait().await?;
        conn
    };
    let began = tokio::time::Instant::now();
    let mut latencies = Vec::with_capacity(s.uploads.len());
    let mut busy = 0;
    for (i, u) in s.uploads.iter().enumerate() {
        if let Some((offset, interval)) = schedule {
            tokio::time::sleep_until(began + offset + interval * i as u32).await;
        }
        loop {
            let t = Instant::now();
            let ack = exchange(&conn, u.head.clone(), u.body.clone())
                .await
                .map_err(anyhow::Error::msg)?;
            match ack.code {
                AckCode::Stored | AckCode::Duplicate => {
                    latencies.push(t.elapsed());
                    break;
                }
                AckCode::Busy => {
                    busy += 1;
                    tokio::time::sleep(Duration::from_millis(ack.retry_after_ms.unwrap_or(1_000)))
                        .await;
                }
                AckCode::Rejected => bail!("bundle rejected: {:?}", ack.reason),
            }
        }
    }
    conn.close(0u32.into(), b"done");
    Ok((latencies, busy))
}

/// What a station reports when it comes back: its spool holds the bundles it is about to send.
fn heartbeat(s: &PhaseStation) -> Heartbeat {
    Heartbeat {
        station: s.config.name.clone(),
        sent_at_ms: nachtwacht::base::time::now_ms(),
        clock_offset_ms: None,
        spool: SpoolStatus {
            pending_bundles: s.uploads.len() as u64,
            pending_bytes: s.uploads.iter().map(|u| u.body.len() as u64).sum(),
            capacity_bytes: 1 << 30,
            full: false,
        },
        devices: Vec::new(),
    }
}

/// Opens one idle connection per station, a few hundred handshakes at a time.
async fn open_idle(
    endpoints: &[quinn::Endpoint],
    addr: SocketAddr,
    stations: &[StationConfig],
) -> anyhow::Result<Vec<quinn::Connection>> {
    let mut out = Vec::with_capacity(stations.len());
    for (chunk_no, chunk) in stations.chunks(250).enumerate() {
        let mut set = tokio::task::JoinSet::new();
        for (i, s) in chunk.iter().enumerate() {
            let endpoint = endpoints[(chunk_no * 250 + i) % endpoints.len()].clone();
            let s = s.clone();
            set.spawn(async move { connect(&endpoint, addr, &s).await });
        }
        while let Some(c) = set.join_next().await {
            out.push(c??);
        }
    }
    Ok(out)
}

/// Runs the real station binary on 2 hours of wristband data in 5-minute bundles; returns its peak
/// RSS (KiB) and how many bundles it got acknowledged.
async fn station_peak_rss(
    root: &Path,
    quic: SocketAddr,
    scratch: &Path,
) -> anyhow::Result<(i64, usize)> {
    let bin = std::env::current_exe()?.with_file_name("nachtwacht-station");
    if !bin.exists() {
        bail!(
            "{} not built (cargo build --release --workspace)",
            bin.display()
        );
    }
    let ctx = ServerContext::open(root)?;
    let mut station = enroll::add_station(&ctx, "bench-agent", "bench")?;
    station.servers = vec![quic.to_string()];
    station.source = SourceConfig::Simulator(SimulatorConfig {
        device: DeviceKind::Wristband,
        device_serial: "WB-AGENT".into(),
        start_ms: nachtwacht::base::time::now_ms() - 86_400_000,
        days: 1,
        seed: 3,
        drinking: vec![],
        wear_hours_per_day: 2,
        bundle_minutes: 5,
    });
    let dir = scratch.join("agent");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("station.toml");
    std::fs::write(&config, station.to_toml())?;
    let child = Command::new(&bin)
        .args(["run", "--once", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Peak RSS from /proc (VmHWM belongs to the exec'd image; wait4's ru_maxrss would also count
    // the bench process's pages the child had between fork and exec).
    let mut child = child;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0i64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            if let Some(v) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i64>().ok())
            {
                peak_kib = peak_kib.max(v);
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    if !status.success() {
        bail!("station agent exited with {status}");
    }
    let acked = std::fs::read_to_string(dir.join("spool").join("acknowledged.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    Ok((peak_kib, acked))
}

/// The server child process.
struct Server {
    child: Child,
    quic_addr: SocketAddr,
}

impl Server {
    fn start(root: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--ingest-only",
                "--quic-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(root)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nachtwacht serve")?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        // "QUIC ingest on 127.0.0.1:PORT, HTTP on http://…"
        let addr = line
            .strip_prefix("QUIC ingest on ")
            .and_then(|r| r.split(',').next())
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("unexpected server output {line:?}"))?;
        Ok(Self {
            child,
            quic_addr: addr,
        })
    }

    fn proc_file(&self, name: &str) -> anyhow::Result<String> {
        let path = PathBuf::from(format!("/proc/{}/{name}", self.child.id()));
        std::fs::read_to_string(&path).with_context(|| path.display().to_string())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU time of the server process.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds_of(&self.pid().to_string())
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = self.proc_file("status")?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("VmRSS")?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .context("VmRSS value")?
            .parse()?)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
