//! Every fuzz target's checks (tests/fuzz/src/lib.rs), run over its checked-in seed corpus
//! (`tests/fuzz/corpus/<target>/`) and the inputs that once broke it
//! (`tests/fuzz/regressions/<target>/`), and over inputs mutated from them for a fixed number
//! each: a crash the fuzzer found stays fixed, and a target that breaks at once is caught by the
//! normal test suite without libFuzzer's instrumented build (docs/fuzzing.md).

#[path = "fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOCATOR: checks::CountingAllocator = checks::CountingAllocator;

/// How many mutated inputs each target's smoke runs: a count, not a time, so every machine runs
/// the same inputs and a pass here is a pass in CI.
const SMOKE_RUNS: u64 = 10_000;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut found = Vec::new();
    for folder in ["corpus", "regressions"] {
        let dir = root.join(folder).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            found.push((path, bytes));
        }
    }
    found.sort();
    found
}

/// Runs `check` over the target's corpus and regressions, then over mutations of them (bytes
/// flipped, cut, repeated, spliced) [`SMOKE_RUNS`] of them. Every corpus must have seeds.
fn replay(target: &str, check: fn(&[u8])) {
    let seeds = inputs(target);
    assert!(!seeds.is_empty(), "{target}: no seed corpus");
    for (path, bytes) in &seeds {
        let outcome = std::panic::catch_unwind(|| check(bytes));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
    // xorshift, seeded per target so a failure repeats.
    let mut state = target.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for runs in 0..SMOKE_RUNS {
        let (_, seed) = &seeds[next() as usize % seeds.len()];
        let mut input = seed.clone();
        for _ in 0..=(next() % 4) {
            mutate(&mut input, &mut next, &seeds);
        }
        let outcome = std::panic::catch_unwind(|| check(&input));
        assert!(
            outcome.is_ok(),
            "{target}: a mutated input fails (run {runs}); its bytes: {}",
            hex(&input)
        );
    }
}

fn mutate(input: &mut Vec<u8>, next: &mut impl FnMut() -> u64, seeds: &[(PathBuf, Vec<u8>)]) {
    let at = |n: u64, len: usize| if len == 0 { 0 } else { n as usize % len };
    match next() % 6 {
        0 if !input.is_empty() => {
            let i = at(next(), input.len());
            input[i] ^= 1 << (next() % 8);
        }
        1 if !input.is_empty() => {
            let i = at(next(), input.len());
            input[i] = [0, 0xff, 0x7f, 0x80, b'9', b'-'][next() as usize % 6];
        }
        2 => {
            let cut = at(next(), input.len() + 1);
            input.truncate(cut);
        }
        3 if !input.is_empty() => {
            let from = at(next(), input.len());
            let to = (from + 1 + at(next(), 64)).min(input.len());
            let piece = input[from..to].to_vec();
            let i = at(next(), input.len() + 1);
            input.splice(i..i, piece);
        }
        4 => {
            let (_, other) = &seeds[next() as usize % seeds.len()];
            let cut = at(next(), other.len() + 1);
            let i = at(next(), input.len() + 1);
            input.truncate(i);
            input.extend_from_slice(&other[cut..]);
        }
        _ => {
            let i = at(next(), input.len() + 1);
            let bytes = next().to_le_bytes();
            input.splice(i..i, bytes[..1 + at(next(), 8)].iter().copied());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The seed corpora, made from real inputs: bundles the simulator seals (both format versions,
/// signed and not), the upload and heartbeat frames a station sends and the replies a server
/// gives, the E4 sample export, an EmbracePlus file, the ankle readout, the shipped config,
/// retention policy and rules, documented research queries and the forms the UI posts. Each is
/// cut small (the fuzzer mutates short inputs fastest).
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use nachtwacht_station::source::{embrace_avro, simulator};
    use nachtwacht_wire::bundle::{self, BundleManifest, DeviceKind, SignalBatch};
    use nachtwacht_wire::protocol::{self, Ack, Heartbeat, SpoolStatus, UploadHeader};
    use nachtwacht_wire::{signed, BundleId};

    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");

    // Bundles: a few rows of each signal of a simulated wristband and ankle monitor.
    let mut bundles = Vec::new();
    for device in [DeviceKind::Wristband, DeviceKind::AnkleMonitor] {
        let cfg = simulator::SimulatorConfig {
            device,
            device_serial: "SIM-1".into(),
            start_ms: 1_790_000_000_000,
            days: 1,
            seed: 7,
            drinking: Vec::new(),
            wear_hours_per_day: 1,
            bundle_minutes: 1,
        };
        let content = simulator::generate_lazily(&cfg)
            .next()
            .expect("a simulated bundle");
        let batches: Vec<SignalBatch> = content
            .batches
            .iter()
            .map(|b| SignalBatch {
                batch: b.batch.slice(0, b.batch.num_rows().min(12)),
                ..b.clone()
            })
            .collect();
        for version in bundle::READABLE_VERSIONS {
            let manifest = BundleManifest {
                bundle_id: BundleId([version as u8; 16]),
                device_serial: content.device_serial.clone(),
                device_kind: content.device_kind,
                sealed_at_ms: cfg.start_ms,
                signals: Vec::new(),
            };
            let bytes = bundle::encode_bundle_as(version, manifest, &batches).expect("encode");
            let name = format!("{}-v{version}", device.as_str());
            out.push(("bundle_decode", name.clone(), bytes.clone()));
            bundles.push((name, bytes));
        }
    }
    for (name, bytes) in &bundles {
        out.push((
            "signed_envelope",
            name.clone(),
            signed::encode_signed("home-1", bytes, &[7; signed::SIGNATURE_LEN]),
        ));
    }

    // Protocol: an upload of a (short) ciphertext, a heartbeat, each prefixed by the chunking byte.
    let ciphertext = b"age-encryption.org/v1 ...".to_vec();
    let header = UploadHeader::for_ciphertext(BundleId([3; 16]), "home-1", 42, &ciphertext);
    let mut upload = vec![5];
    upload.extend(protocol::encode_upload_head(&header));
    upload.extend(&ciphertext);
    out.push(("protocol_reader", "upload".into(), upload));
    let heartbeat = Heartbeat {
        station: "home-1".into(),
        sent_at_ms: 1_790_000_000_000,
        clock_offset_ms: Some(-120),
        spool: SpoolStatus {
            pending_bundles: 2,
            pending_bytes: 4096,
            capacity_bytes: 1 << 30,
            full: false,
        },
        devices: vec![protocol::DeviceStatus {
            serial: "SIM-1".into(),
            connected: true,
            battery_percent: Some(80),
            last_reading_ms: Some(1_790_000_000_000),
        }],
        renewal_csr: None,
    };
    let mut beat = vec![2];
    beat.extend(protocol::encode_heartbeat(&heartbeat));
    out.push(("protocol_reader", "heartbeat".into(), beat));

    // The station's session: settings, then enqueue two bundles, connect, and the server's
    // replies (stored, busy with a retry hint, rejected) as the frames a server sends.
    let id = |n: u8| BundleId([n; 16]);
    for (name, ack) in [
        ("stored", Ack::stored(Some(id(1)), 5)),
        ("duplicate", Ack::duplicate(id(1), 5)),
        (
            "busy",
            Ack::busy(Some(id(1)), "spool full".into(), 2_000, 5),
        ),
        (
            "rejected",
            Ack::rejected(Some(id(1)), "not a bundle".into(), 5),
        ),
    ] {
        let frame = protocol::encode_ack(&ack);
        let mut script = vec![0, 3];
        script.extend([0u8; 32]);
        script.extend([0, 1, 1, 0, 2, 2, 2]); // enqueue bundle 1 (seq 1), bundle 2, connect
        script.extend([5, 0, frame.len() as u8]);
        script.extend(&frame);
        script.extend([6, 1, 4, 1]); // bundle 2's stream fails; connection lost; advance time
        out.push(("station_session", name.into(), script));
    }

    // Device files.
    let mut export = Vec::new();
    for file in [
        "EDA.csv", "BVP.csv", "HR.csv", "TEMP.csv", "ACC.csv", "IBI.csv", "tags.csv",
    ] {
        let text = std::fs::read_to_string(data.join("e4-sample").join(file)).unwrap_or_default();
        let head: Vec<&str> = text.lines().take(8).collect();
        if !export.is_empty() {
            export.push(0x1e);
        }
        export.extend(head.join("\n").into_bytes());
    }
    out.push(("e4_csv", "e4-sample".into(), export));
    let avro = tempfile::NamedTempFile::new().expect("temp file");
    embrace_avro::testfile::write(avro.path(), 1_790_000_000_000_000, 1, (1, 0)).expect("avro");
    out.push((
        "embrace_avro",
        "one-minute".into(),
        std::fs::read(avro.path()).expect("avro"),
    ));
    let ankle = std::fs::read_to_string(data.join("ankle-readout.csv")).expect("ankle readout");
    let head: Vec<&str> = ankle.lines().take(12).collect();
    out.push(("ankle_csv", "readout".into(), head.join("\n").into_bytes()));

    // Operators' files, each behind the byte that picks its parser.
    let config = toml::to_string(&nachtwacht::base::config::Config::default()).expect("config");
    for (which, name, text) in [
        (0u8, "config", config.as_str()),
        (
            1,
            "retention",
            nachtwacht::lifecycle::policy::DEFAULT_POLICY,
        ),
        (2, "alcohol", nachtwacht_pipelines::rules::ALCOHOL_DEFAULTS),
        (3, "stress", nachtwacht_pipelines::rules::STRESS_DEFAULTS),
        (4, "tamper", nachtwacht_pipelines::rules::TAMPER_DEFAULTS),
    ] {
        let mut bytes = vec![which];
        bytes.extend(text.as_bytes());
        out.push(("config_toml", name.into(), bytes));
    }

    // Research queries as the API documentation and the notebooks write them.
    for (name, json) in [
        (
            "mean",
            r#"{"dataset": "daily-indicators", "aggregate": {"kind": "mean", "column": "wear_minutes", "lower": 0, "upper": 1440}, "epsilon": 0.5, "group_by": ["programme"], "dry_run": false}"#,
        ),
        (
            "count-by-month",
            r#"{"dataset": "daily-indicators", "aggregate": {"kind": "count"}, "epsilon": 0.2, "group_by": ["month"], "from": "2026-01-01", "to": "2026-06-30", "only": {"programme": ["alcohol-ban"]}}"#,
        ),
        (
            "histogram",
            r#"{"dataset": "daily-indicators", "aggregate": {"kind": "histogram", "column": "peak_tac_g_dl", "edges": [0, 0.02, 0.08, 0.5]}, "epsilon": 1.0, "group_by": ["region"]}"#,
        ),
        (
            "quantile",
            r#"{"dataset": "daily-indicators", "aggregate": {"kind": "quantile", "column": "mean_hr_bpm", "lower": 40, "upper": 200, "quantile": 0.5}, "epsilon": 0.3, "dry_run": true}"#,
        ),
        (
            "alert-counts",
            r#"{"dataset": "alert-counts", "aggregate": {"kind": "sum", "column": "alcohol_alerts", "lower": 0, "upper": 48}, "epsilon": 0.4, "group_by": ["age_band", "week"], "from": "2026-03-02", "to": "2026-03-29"}"#,
        ),
    ] {
        out.push(("research_query", name.into(), json.as_bytes().to_vec()));
    }

    // Forms the officers' UI posts.
    for (name, form) in [
        ("transition", "csrf=0123456789abcdef&to=acknowledged&note=Gebeld+met+cli%C3%ABnt%2C+afspraak+morgen&outcome=contacted"),
        ("login", "username=officer1&password=correct+horse&totp=123456"),
        ("filter", "csrf=abc&state=open&kind=alcohol&kind=tamper&from=2026-11-01&to=2026-11-30&q=%E2%82%AC+%26+%3D"),
    ] {
        out.push(("web_form", name.into(), form.as_bytes().to_vec()));
    }
    out
}

/// The seeds are real inputs that every target accepts as they are (a check that refused the
/// station's own bundles would fuzz nothing), and each is in the checked-in corpus.
/// `NACHTWACHT_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_corpora` writes them there.
#[test]
fn seeds_are_real_inputs_and_are_checked_in() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    let write = std::env::var_os("NACHTWACHT_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in seeds() {
        let check = TARGETS
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, check)| *check)
            .expect("a known target");
        check(&bytes);
        let path = root.join(target).join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(path.parent().expect("folder")).expect("corpus folder");
            std::fs::write(&path, &bytes).expect("write seed");
        }
        assert!(path.exists(), "{} is not checked in", path.display());
    }
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {$(
        #[test]
        fn $target() {
            replay(stringify!($target), checks::$target);
        }
    )*};
}

macro_rules! targets {
    ($($target:ident),* $(,)?) => {
        const TARGETS: &[(&str, fn(&[u8]))] = &[$((stringify!($target), checks::$target)),*];
        replay_tests!($($target),*);
    };
}

targets!(
    protocol_reader,
    station_session,
    signed_envelope,
    bundle_decode,
    e4_csv,
    embrace_avro,
    ankle_csv,
    research_query,
    config_toml,
    web_form,
);
