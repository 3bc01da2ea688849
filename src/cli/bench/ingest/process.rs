//! Measuring other processes: the server under test as a child process (its CPU seconds and RSS
//! from `/proc`), the station agent's peak RSS, and the fsync latency floor of the data directory.

use super::*;

/// User + system CPU time of a process (a pid, or "self") from /proc.
pub(super) fn cpu_seconds_of(pid: &str) -> anyhow::Result<f64> {
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

pub(super) fn fsync_latencies(dir: &Path, size: usize, n: usize) -> anyhow::Result<(f64, f64)> {
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

/// Runs the real station binary on 2 hours of wristband data in 5-minute bundles; returns its peak
/// RSS (KiB) and how many bundles it got acknowledged.
pub(super) async fn station_peak_rss(
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
pub(super) struct Server {
    child: Child,
    pub(super) quic_addr: SocketAddr,
    metrics_addr: SocketAddr,
}

impl Server {
    pub(super) fn start(root: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--roles",
                "ingest",
                "--quic-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--metrics-listen",
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
        // "QUIC ingest on 127.0.0.1:PORT, metrics on http://127.0.0.1:PORT (roles ingest)"
        let unexpected = || format!("unexpected server output {line:?}");
        let after = |label: &str| {
            line.split_once(label)
                .and_then(|(_, rest)| rest.split([',', ' ']).next())
                .and_then(|a| a.parse().ok())
        };
        let addr = after("QUIC ingest on ").with_context(unexpected)?;
        let metrics_addr = after("metrics on http://").with_context(unexpected)?;
        Ok(Self {
            child,
            quic_addr: addr,
            metrics_addr,
        })
    }

    /// The server's group commits so far and the bundles they stored, from its metrics.
    pub(super) fn group_commits(&self) -> anyhow::Result<(u64, u64)> {
        Ok((
            self.metric("nachtwacht_group_commit_bundles_count")?,
            self.metric("nachtwacht_group_commit_bundles_sum")?,
        ))
    }

    /// One value of the server's metrics (a counter, or a histogram's `_count` or `_sum`).
    pub(super) fn metric(&self, name: &str) -> anyhow::Result<u64> {
        Ok(self.metric_value(name)? as u64)
    }

    /// Seconds the group commit has spent committing since the server started.
    pub(super) fn group_commit_seconds(&self) -> anyhow::Result<f64> {
        self.metric_value("nachtwacht_group_commit_duration_seconds_sum")
    }

    fn metric_value(&self, name: &str) -> anyhow::Result<f64> {
        use std::io::Write;
        let mut conn = std::net::TcpStream::connect(self.metrics_addr)?;
        write!(
            conn,
            "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.metrics_addr
        )?;
        let mut text = String::new();
        conn.read_to_string(&mut text)?;
        let v: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .with_context(|| format!("{name} not in the server's metrics"))?
            .trim()
            .parse()?;
        Ok(v)
    }

    fn proc_file(&self, name: &str) -> anyhow::Result<String> {
        let path = PathBuf::from(format!("/proc/{}/{name}", self.child.id()));
        std::fs::read_to_string(&path).with_context(|| path.display().to_string())
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU time of the server process.
    pub(super) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds_of(&self.pid().to_string())
    }

    pub(super) fn rss_kib(&self) -> anyhow::Result<u64> {
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

    pub(super) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
