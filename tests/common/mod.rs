//! Shared set-up for the end-to-end tests: a real data directory, a real server on ephemeral
//! loopback ports, real certificates made at test time.

#![allow(dead_code)]

use std::path::PathBuf;

use nachtwacht::base::config::Config;
use nachtwacht::base::Context;
use nachtwacht::server::{ListenOverrides, RunningServer};
use nachtwacht::{registry::enroll, server::init};
use nachtwacht_station::source::simulator::{DrinkingEpisode, SimulatorConfig};
use nachtwacht_station::{SourceConfig, StationConfig};
use nachtwacht_wire::DeviceKind;

pub mod smtp;
pub mod web;
pub mod webdriver;

pub const DAY_MS: i64 = 86_400_000;

pub struct TestServer {
    pub tmp: tempfile::TempDir,
    pub ctx: Context,
    pub server: RunningServer,
}

/// A UDP port free on loopback now, for a server process started by a test to bind.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn loopback() -> ListenOverrides {
    ListenOverrides {
        quic: Some("127.0.0.1:0".parse().unwrap()),
        http: Some("127.0.0.1:0".parse().unwrap()),
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        roles: nachtwacht::server::Roles::ALL,
    }
}

/// The PostgreSQL server the tests put their state in, when `NACHTWACHT_TEST_POSTGRES` names one:
/// a libpq connection string without a database (`host=/tmp/pg port=5433 user=postgres`) for a
/// user who may create databases. `.ci/run` starts one and sets it; without it the tests run on
/// SQLite and say once that they skipped PostgreSQL.
pub fn postgres_server() -> Option<String> {
    // CI's PostgreSQL half skips the tests named for the `demo` subcommand, which always runs on
    // the embedded defaults (`.ci/run`): a test under that name must not use the tests' database,
    // or its PostgreSQL run would be skipped unseen. libtest names a test's thread after the test.
    let thread = std::thread::current();
    assert!(
        !thread.name().unwrap_or_default().contains("demo"),
        "{:?} uses the tests' database: CI's PostgreSQL half skips tests named for the demo",
        thread.name()
    );
    static SKIPPED: std::sync::Once = std::sync::Once::new();
    let server = std::env::var("NACHTWACHT_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if server.is_none() {
        SKIPPED.call_once(|| {
            eprintln!(
                "note: PostgreSQL half skipped (NACHTWACHT_TEST_POSTGRES is not set); these tests ran on SQLite"
            )
        });
    }
    server
}

/// A new, empty database on the test server: its connection string.
pub fn fresh_postgres_database(server: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "nw_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let admin = format!("{server} dbname=postgres");
    let create = format!("CREATE DATABASE {name}");
    // The blocking client cannot run inside a tokio test's runtime: a thread of its own.
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("NACHTWACHT_TEST_POSTGRES ({admin}): {e}"));
        client.batch_execute(&create).unwrap();
    })
    .join()
    .unwrap();
    format!("{server} dbname={name}")
}

/// `config` with its state in a new PostgreSQL database when the tests have a server, and its
/// ciphertexts under a new prefix of the tests' object storage when `NACHTWACHT_TEST_S3` names
/// one (`nachtwacht::base::blobs::testing`).
pub fn with_test_database(config: Config) -> Config {
    let mut config = nachtwacht::base::blobs::testing::config(config);
    if let Some(server) = postgres_server() {
        config.database = nachtwacht::base::config::DatabaseConfig::postgres(
            &fresh_postgres_database(&server),
            None,
        );
    }
    config
}

/// The default configuration on the tests' database.
pub fn test_config() -> Config {
    with_test_database(Config::default())
}

/// `nachtwacht init`'s arguments that put the state where the tests keep it.
pub fn init_database_args() -> Vec<String> {
    let mut args = match postgres_server() {
        Some(server) => vec!["--database-url".into(), fresh_postgres_database(&server)],
        None => Vec::new(),
    };
    if let Some(s3) = nachtwacht::base::blobs::testing::s3_config() {
        let flags = [
            ("--s3-endpoint", s3.endpoint),
            ("--s3-bucket", s3.bucket),
            ("--s3-prefix", Some(s3.prefix)),
            ("--s3-access-key-id", s3.access_key_id),
            ("--s3-secret-key-file", s3.secret_access_key_file),
        ];
        for (flag, value) in flags {
            args.extend([flag.to_string(), value.expect("set by s3_config")]);
        }
        args.push("--s3-allow-http".into());
    }
    args
}

/// Initialises `root` with `config` on the tests' database.
pub fn init_data_dir(
    root: &std::path::Path,
    config: &Config,
) -> nachtwacht::server::init::InitReport {
    init::init(
        root,
        &with_test_database(config.clone()),
        nachtwacht::base::time::now_ms(),
    )
    .unwrap()
}

/// A server on SQLite whatever the tests' database: for what only SQLite has (`nachtwacht backup`
/// copies the SQLite file; PostgreSQL is backed up with its own tools).
pub async fn start_server_on_sqlite(config: Config) -> TestServer {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    init::init(&root, &config, nachtwacht::base::time::now_ms()).unwrap();
    start_in(tmp).await
}

pub async fn start_server(config: Config) -> TestServer {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    init_data_dir(&root, &config);
    start_in(tmp).await
}

/// Starts a server on an initialised data directory `<tmp>/data`.
pub async fn start_in(tmp: tempfile::TempDir) -> TestServer {
    // NACHTWACHT_TEST_LOG=debug (a tracing filter) shows the server's log beside the test's.
    if let Ok(filter) = std::env::var("NACHTWACHT_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let root = tmp.path().join("data");
    let ctx = Context::open(&root).unwrap();
    let server = nachtwacht::server::start(ctx.clone(), loopback())
        .await
        .unwrap();
    TestServer { tmp, ctx, server }
}

/// Midnight UTC `days` days ago.
pub fn days_ago(days: i64) -> i64 {
    nachtwacht::base::time::now_ms().div_euclid(DAY_MS) * DAY_MS - days * DAY_MS
}

impl TestServer {
    /// Enrolls a station for a simulated ankle monitor assigned to a new alcohol-ban person.
    pub fn ankle_station(
        &self,
        name: &str,
        serial: &str,
        days: u32,
        drinking: Vec<DrinkingEpisode>,
    ) -> (StationConfig, PathBuf, i64) {
        let device = SimulatorConfig {
            device: DeviceKind::AnkleMonitor,
            device_serial: serial.into(),
            start_ms: days_ago(days as i64),
            days,
            seed: 7,
            drinking,
            wear_hours_per_day: 0,
            bundle_minutes: 60,
        };
        let reference = format!("CASE-{name}");
        let alcohol_ban = nachtwacht::base::programme::Programme::AlcoholBan;
        let (station, dir, person) = self.simulated_station(name, &reference, alcohol_ban, device);
        (station, dir, person)
    }

    /// A new person `reference` of `programme` wearing the simulated device, paired with a new
    /// station `name` from the simulation's start; the station, its folder and the person.
    fn simulated_station(
        &self,
        name: &str,
        reference: &str,
        programme: nachtwacht::base::programme::Programme,
        device: SimulatorConfig,
    ) -> (StationConfig, PathBuf, i64) {
        let (serial, start_ms) = (device.device_serial.clone(), device.start_ms);
        let person = enroll::add_person(&self.ctx, reference, programme, "test").unwrap();
        enroll::assign_device(&self.ctx, &serial, device.device, person, start_ms, "test").unwrap();
        let mut station = enroll::add_station(&self.ctx, name, "test").unwrap();
        enroll::pair_device(&self.ctx, &serial, name, start_ms, "test").unwrap();
        station.servers = vec![self.server.quic_addr().to_string()];
        station.source = SourceConfig::Simulator(device);
        let dir = self.tmp.path().join("stations").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        (station, dir, person)
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.ctx.db.lock().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Runs the pipelines with the default rules over what is decoded, as `serve` does.
    pub async fn evaluate_now(&self) -> nachtwacht::evaluate::EvaluationReport {
        let (ctx, pseudonyms) = (
            self.ctx.clone(),
            nachtwacht::trust::pseudonym::Pseudonymiser::load(&self.ctx.dir).unwrap(),
        );
        tokio::task::spawn_blocking(move || {
            nachtwacht::evaluate::run(&ctx, &pseudonyms, &Default::default())
        })
        .await
        .unwrap()
        .unwrap()
    }

    /// A wristband wearer `reference` of aggression training whose station `name` uploads
    /// `days` days from midnight `days` ago, one hour worn a day (from 10:00 UTC), in one
    /// bundle per hour. Returns the station, its folder, the person and the first day's start.
    pub fn wristband_station(
        &self,
        name: &str,
        serial: &str,
        reference: &str,
        days: u32,
    ) -> (StationConfig, PathBuf, i64, i64) {
        let start_ms = days_ago(days as i64);
        let device = SimulatorConfig {
            device: DeviceKind::Wristband,
            device_serial: serial.into(),
            start_ms,
            days,
            seed: 7,
            drinking: vec![],
            wear_hours_per_day: 1,
            bundle_minutes: 60,
        };
        let aggression = nachtwacht::base::programme::Programme::AggressionTraining;
        let (station, dir, person) = self.simulated_station(name, reference, aggression, device);
        (station, dir, person, start_ms)
    }
}

/// Seals everything a station's source has, signed with the station's key.
pub fn seal_all(
    station: &StationConfig,
    dir: &std::path::Path,
) -> Vec<nachtwacht_station::seal::SealedBundle> {
    seal_contents(
        station,
        &nachtwacht_station::source::read_all(&station.source, dir).unwrap(),
    )
}

/// Seals the given contents as the station would: signed with its key, sealed to the server.
pub fn seal_contents(
    station: &StationConfig,
    contents: &[nachtwacht_station::source::BundleContent],
) -> Vec<nachtwacht_station::seal::SealedBundle> {
    use nachtwacht_station::seal;
    let recipient = seal::parse_recipient(&station.server_age_recipient).unwrap();
    let key = station.signing_key().unwrap();
    let signer = seal::Signer {
        station: &station.name,
        key: &key,
    };
    contents
        .iter()
        .map(|c| seal::seal(c, &signer, &recipient).unwrap())
        .collect()
}

/// A heartbeat with an empty status, for drains in tests.
pub fn quiet_heartbeat(
    station: &StationConfig,
) -> impl Fn(Option<i64>) -> nachtwacht_wire::protocol::Heartbeat + Sync {
    let name = station.name.clone();
    move |clock_offset_ms| nachtwacht_wire::protocol::Heartbeat {
        station: name.clone(),
        sent_at_ms: nachtwacht::base::time::now_ms(),
        clock_offset_ms,
        spool: nachtwacht_wire::protocol::SpoolStatus {
            pending_bundles: 0,
            pending_bytes: 0,
            capacity_bytes: 1,
            full: false,
        },
        devices: vec![],
        renewal_csr: None,
    }
}

/// A raw QUIC connection with a station's certificate, for tests that speak the protocol by hand.
pub async fn raw_connect(
    station: &StationConfig,
    addr: std::net::SocketAddr,
) -> Result<quinn::Connection, String> {
    raw_connect_with(
        nachtwacht_station::uploader::client_tls_config(station).unwrap(),
        addr,
    )
    .await
}

pub async fn raw_connect_with(
    tls: rustls::ClientConfig,
    addr: std::net::SocketAddr,
) -> Result<quinn::Connection, String> {
    use std::sync::Arc;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(Arc::new(nachtwacht_station::uploader::client_transport()));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client);
    let conn = endpoint
        .connect(addr, "localhost")
        .unwrap()
        .await
        .map_err(|e| e.to_string())?;
    // A handshake can complete before the server's post-handshake checks close the connection.
    Ok(conn)
}

/// Sends one request (any bytes) on a new stream and reads the acknowledgement.
pub async fn raw_request(
    conn: &quinn::Connection,
    request: &[u8],
) -> Result<nachtwacht_wire::Ack, String> {
    nachtwacht_station::uploader::exchange(conn, request.to_vec(), bytes::Bytes::new()).await
}

/// An upload request (header and body) for a sealed bundle.
pub fn upload_request(
    station: &str,
    sequence: u64,
    sealed: &nachtwacht_station::seal::SealedBundle,
) -> Vec<u8> {
    let header = nachtwacht_wire::UploadHeader::for_ciphertext(
        sealed.bundle_id,
        station,
        sequence,
        &sealed.ciphertext,
    );
    let mut bytes = nachtwacht_wire::protocol::encode_upload_head(&header);
    bytes.extend_from_slice(&sealed.ciphertext);
    bytes
}

/// Audit entries of refused connections, as (object, detail).
pub fn refusals(ctx: &Context) -> Vec<String> {
    let conn = ctx.db.lock();
    let mut stmt = conn
        .prepare("SELECT detail FROM audit_log WHERE action = 'ingest.refuse' ORDER BY seq")
        .unwrap();

    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap()
}

/// The `nachtwacht-station` binary next to the test executable (built by `cargo test --workspace`).
pub fn station_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("nachtwacht-station");
    assert!(
        bin.exists(),
        "{} missing: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// The catalogued files of a signal as the server's readers get them (local paths; on object
/// storage, fetched copies that last as long as the returned hold).
pub fn signal_files(
    ctx: &Context,
    signal: nachtwacht_wire::Signal,
) -> (nachtwacht::dataset::Readers, Vec<PathBuf>) {
    let readers = nachtwacht::dataset::Readers::of(ctx).unwrap();
    let files = readers.signal_files(signal).unwrap();
    (readers, files)
}

/// A research table ([`nachtwacht::base::blobs::RESEARCH_DAILY`] or `RESEARCH_ALERT_COUNTS`)
/// read whole from the store.
pub fn research_table(ctx: &Context, key: &str) -> polars::prelude::DataFrame {
    let readers = nachtwacht::dataset::Readers::of(ctx).unwrap();
    let path = readers
        .research_table(key)
        .unwrap()
        .unwrap_or_else(|| panic!("{key} is not written"));
    read_parquet(&path)
}

/// Every Parquet object under the raw datasets, catalogued or not (catalog paths).
pub fn stored_raw_files(ctx: &Context) -> Vec<String> {
    let mut out: Vec<String> = ctx
        .blobs
        .list(nachtwacht::base::blobs::RAW_DATASETS)
        .unwrap()
        .into_iter()
        .map(|o| o.key.as_str().to_string())
        .filter(|k| k.ends_with(".parquet") && !k.rsplit('/').next().unwrap().starts_with('.'))
        .collect();
    out.sort();
    out
}

/// A Parquet file read whole, on a plain thread (polars must not block a tokio worker).
pub fn read_parquet(path: &std::path::Path) -> polars::prelude::DataFrame {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        polars::prelude::LazyFrame::scan_parquet(
            polars::prelude::PlPath::new(&path.to_string_lossy()),
            Default::default(),
        )
        .unwrap()
        .collect()
        .unwrap()
    })
    .join()
    .unwrap()
}

/// Log lines without terminal colour codes.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Replays an ankle-monitor CSV readout through `nachtwacht-station import` (the real binary) for
/// device `serial`, and returns its log without colour codes.
pub fn import_ankle_csv(config: &std::path::Path, serial: &str, file: &std::path::Path) -> String {
    let out = std::process::Command::new(station_binary())
        .args([
            "import",
            "--format",
            "ankle-csv",
            "--device-serial",
            serial,
            "--config",
        ])
        .arg(config)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    strip_ansi(&String::from_utf8_lossy(&out.stdout))
}
