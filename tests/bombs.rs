//! Decompression bombs against the real server process: small signed uploads whose streams
//! declare (and, decompressed, would fill) hundreds of MiB each. The server quarantines each from
//! its headers, and its peak resident memory stays under a stated bound. Before the bounds, a
//! 33 KB upload cost the server 1.08 GB and three larger ones aborted it.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nachtwacht::base::Context;
use nachtwacht::{registry::enroll, server::init};
use nachtwacht_station::seal::SealedBundle;
use nachtwacht_station::{SourceConfig, StationConfig};
use nachtwacht_wire::bundle::{BundleManifest, SignalEntry, BUNDLE_MAGIC};
use nachtwacht_wire::{BundleId, DeviceKind, Signal};

/// The bound the server's peak RSS must stay under while it quarantines the bombs. One bomb
/// decompressed would exceed it by itself.
const PEAK_RSS_BOUND_BYTES: u64 = 256 << 20;
/// What the largest bombs' streams declare and hold: zeros, which compress about 30,000 to 1.
const BOMB_BYTES: u64 = 512 << 20;
const BOMBS: u8 = 5;

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

/// A v2 bundle of the given streams (signal, declared rows, zstd frame).
fn bundle(id: u8, serial: &str, streams: &[(Signal, u64, &[u8])]) -> Vec<u8> {
    let manifest = BundleManifest {
        bundle_id: BundleId([id; 16]),
        device_serial: serial.into(),
        device_kind: DeviceKind::Wristband,
        sealed_at_ms: nachtwacht::base::time::now_ms(),
        signals: streams
            .iter()
            .map(|(signal, rows, frame)| SignalEntry {
                signal: *signal,
                rows: *rows,
                bytes: frame.len() as u64,
                rate_hz: signal.nominal_rate_hz(),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut out = BUNDLE_MAGIC.to_vec();
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, frame) in streams {
        out.extend_from_slice(frame);
    }
    out
}

/// An honest heart-rate stream of `rows` readings, all at one instant: what no device produces.
fn one_instant_hr(rows: usize) -> Vec<u8> {
    use arrow::array::{Float64Array, TimestampMillisecondArray};
    let ts =
        TimestampMillisecondArray::from(vec![nachtwacht::base::time::now_ms() - 3_600_000; rows])
            .with_timezone("UTC");
    let batch = arrow::array::RecordBatch::try_new(
        Signal::Hr.schema(),
        vec![
            std::sync::Arc::new(ts),
            std::sync::Arc::new(Float64Array::from(vec![70.0; rows])),
        ],
    )
    .unwrap();
    let mut ipc = Vec::new();
    {
        let mut w =
            arrow::ipc::writer::StreamWriter::try_new(&mut ipc, &Signal::Hr.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    zstd::bulk::compress(&ipc, 1).unwrap()
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
            "--metrics-listen",
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
    init::init(
        &root,
        &common::test_config(),
        nachtwacht::base::time::now_ms(),
    )
    .unwrap();
    let ctx = Context::open(&root).unwrap();
    let from = nachtwacht::base::time::now_ms() - 86_400_000;
    let person = enroll::add_person(
        &ctx,
        "CASE-BOMB",
        nachtwacht::base::programme::Programme::AggressionTraining,
        "test",
    )
    .unwrap();
    enroll::assign_device(&ctx, "WB-BOMB", DeviceKind::Wristband, person, from, "test").unwrap();
    let mut station = enroll::add_station(&ctx, "home-bomb", "test").unwrap();
    enroll::pair_device(&ctx, "WB-BOMB", "home-bomb", from, "test").unwrap();

    // The corpus: (a) streams that claim one row but declare 512 MiB, (b) five streams whose
    // declared sizes fit their declared rows one by one but not together, (c) two million
    // honest heart-rate readings at one instant, which decode to 32 MB and are then refused.
    let zeros = zero_frame(BOMB_BYTES);
    assert!(zeros.len() < 64 * 1024, "{} bytes", zeros.len());
    let (big, rows) = (zero_frame(60 << 20), 4_000_000u64);
    let instant_rows = 2_000_000u64;
    let instant = one_instant_hr(instant_rows as usize);
    let mut corpus: Vec<Vec<u8>> = (1..=3)
        .map(|id| bundle(id, "WB-BOMB", &[(Signal::Hr, 1, &zeros)]))
        .collect();
    corpus.push(bundle(
        4,
        "WB-BOMB",
        &[
            (Signal::Hr, rows, &big),
            (Signal::Eda, rows, &big),
            (Signal::Temp, rows, &big),
            (Signal::Bvp, rows, &big),
            (Signal::Acc, rows / 2, &big),
        ],
    ));
    corpus.push(bundle(
        5,
        "WB-BOMB",
        &[(Signal::Hr, instant_rows, &instant)],
    ));
    let total: usize = corpus.iter().map(Vec::len).sum();
    assert!(total < 1 << 20, "the corpus is {total} bytes");
    let dir = tmp.path().join("station");
    std::fs::create_dir_all(&dir).unwrap();
    let spool = nachtwacht_station::spool::Spool::open(&station.spool_dir(&dir)).unwrap();
    for (i, plaintext) in corpus.iter().enumerate() {
        spool.put(&seal(&station, i as u8 + 1, plaintext)).unwrap();
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
        "server peak RSS {} MiB (bound {} MiB) after a corpus of {BOMBS} bombs, {} KiB uploaded",
        peak >> 20,
        PEAK_RSS_BOUND_BYTES >> 20,
        total >> 10
    );
    assert_eq!(quarantined(), BOMBS as i64, "every bomb quarantined");
    let reasons: Vec<String> = {
        let conn = ctx.db.lock();
        let mut stmt = conn
            .prepare("SELECT reason FROM bundles ORDER BY bundle_id")
            .unwrap();

        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    for (i, expected) in [
        "for 1 rows",
        "for 1 rows",
        "for 1 rows",
        "per bundle",
        "more than the device can produce",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            reasons[i].contains(expected),
            "bomb {}: {}",
            i + 1,
            reasons[i]
        );
    }
    assert!(
        peak < PEAK_RSS_BOUND_BYTES,
        "peak RSS {} MiB over the bound",
        peak >> 20
    );
}
