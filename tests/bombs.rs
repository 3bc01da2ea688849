//! Decompression bombs against the real server process: small signed uploads whose streams
//! declare (and, decompressed, would fill) hundreds of MiB each. The server quarantines each from
//! its headers, and its peak resident memory stays under a stated bound. Before the bounds, a
//! 33 KB upload cost the server 1.08 GB and three larger ones aborted it.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nachtwacht::config::Config;
use nachtwacht::server::Context;
use nachtwacht::{enroll, init};
use nachtwacht_station::seal::SealedBundle;
use nachtwacht_station::{SourceConfig, StationConfig};
use nachtwacht_wire::bundle::{BundleManifest, SignalEntry, BUNDLE_MAGIC};
use nachtwacht_wire::{BundleId, DeviceKind, Signal};

/// The bound the server's peak RSS must stay under while it quarantines the bombs. One bomb
/// decompressed would exceed it by itself.
const PEAK_RSS_BOUND_BYTES: u64 = 256 << 20;
/// What each bomb's stream declares and holds: zeros, which compress about 30,000 to 1.
const BOMB_BYTES: u64 = 512 << 20;
const BOMBS: u8 = 3;

/// One zstd frame holding `n` zero bytes and declaring its size, compressed as it is written.
fn zero_frame(n: u64) -> Vec<u8> {
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    encoder.include_contentsize(true).unwrap();
    encoder.set_pledged_src_size(Some(n)).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        encoder.write_all(&chunk[..k]).unwrap();
        left -= k as u64;
    }
    encoder.finish().unwrap()
}

/// A v2 bundle of one heart-rate stream that claims one row but holds `frame`.
fn bomb(id: u8, serial: &str, frame: &[u8]) -> Vec<u8> {
    let manifest = BundleManifest {
        bundle_id: BundleId([id; 16]),
        device_serial: serial.into(),
        device_kind: DeviceKind::Wristband,
        sealed_at_ms: nachtwacht::now_ms(),
        signals: vec![SignalEntry {
            signal: Signal::Hr,
            rows: 1,
            bytes: frame.len() as u64,
            rate_hz: Some(1.0),
        }],
    };
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut out = BUNDLE_MAGIC.to_vec();
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(frame);
    out
}

/// Signed with the station's key and sealed to the server, as a station would.
fn seal(station: &StationConfig, id: u8, plaintext: &[u8]) -> SealedBundle {
    use nachtwacht_wire::signed::{encode_signed, signing_digest};
    let key = station.signing_key().unwrap();
    let signature: [u8; 64] = key
        .sign(&signing_digest(&station.name, plaintext))
        .as_ref()
        .try_into()
        .unwrap();
    let signed = encode_signed(&station.name, plaintext, &signature);
    let recipient: age::x25519::Recipient = station.server_age_recipient.parse().unwrap();
    SealedBundle {
        bundle_id: BundleId([id; 16]),
        ciphertext: age::encrypt(&recipient, &signed).unwrap(),
    }
}

fn peak_rss_bytes(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn spawn_server(root: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["serve", "--data-dir"])
        .arg(root)
        .args([
            "--quic-listen",
            &format!("127.0.0.1:{port}"),
            "--http-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_are_quarantined_and_the_server_stays_small() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    init::init(&root, &Config::default(), nachtwacht::now_ms()).unwrap();
    let ctx = Context::open(&root).unwrap();
    let from = nachtwacht::now_ms() - 86_400_000;
    let person = enroll::add_person(&ctx, "CASE-BOMB", "aggression-training", "test").unwrap();
    enroll::assign_device(&ctx, "WB-BOMB", DeviceKind::Wristband, person, from, "test").unwrap();
    let mut station = enroll::add_station(&ctx, "home-bomb", "test").unwrap();
    enroll::pair_device(&ctx, "WB-BOMB", "home-bomb", from, "test").unwrap();

    let frame = zero_frame(BOMB_BYTES);
    assert!(frame.len() < 64 * 1024, "{} bytes", frame.len());
    let dir = tmp.path().join("station");
    std::fs::create_dir_all(&dir).unwrap();
    let spool = nachtwacht_station::spool::Spool::open(&station.spool_dir(&dir)).unwrap();
    for id in 1..=BOMBS {
        spool
            .put(&seal(&station, id, &bomb(id, "WB-BOMB", &frame)))
            .unwrap();
    }

    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = spawn_server(&root, port);
    station.servers = vec![format!("127.0.0.1:{port}")];
    station.source = SourceConfig::None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match nachtwacht_station::run_once(&station, &dir).await {
            Ok(r) if r.acknowledged == BOMBS as usize => break,
            _ if Instant::now() > deadline => {
                server.kill().unwrap();
                panic!("the server never took the uploads");
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    let quarantined = || -> i64 {
        ctx.db
            .lock()
            .query_row(
                "SELECT count(*) FROM bundles WHERE state = 'quarantined'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while quarantined() < BOMBS as i64 && Instant::now() < deadline {
        if let Ok(Some(status)) = server.try_wait() {
            panic!("the server died: {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let peak = peak_rss_bytes(&server);
    server.kill().unwrap();
    server.wait().unwrap();
    eprintln!(
        "server peak RSS {} MiB (bound {} MiB) with {BOMBS} bombs of {} MiB each",
        peak >> 20,
        PEAK_RSS_BOUND_BYTES >> 20,
        BOMB_BYTES >> 20
    );
    assert_eq!(quarantined(), BOMBS as i64, "every bomb quarantined");
    let reason: String = ctx
        .db
        .lock()
        .query_row("SELECT reason FROM bundles LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert!(reason.contains("for 1 rows"), "{reason}");
    assert!(
        peak < PEAK_RSS_BOUND_BYTES,
        "peak RSS {} MiB over the bound",
        peak >> 20
    );
}
