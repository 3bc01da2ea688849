//! `nachtwacht bench decode`: the decode worker end to end (decrypt, verify the signature, decode
//! the Arrow IPC streams, validate, pseudonymise, write Parquet durably, catalogue), beside a
//! plain Parquet write of the same Arrow batches measured in the same run.
//!
//! The worker is single-threaded by design (one pass at a time under the decode lock), so its
//! samples per CPU-second is its rate per core. Part of the binary; method and figures in
//! docs/benchmarks.md.

use anyhow::Context;
use nachtwacht::config::Config;
use nachtwacht::decode::Decoder;
use nachtwacht::server::Context as ServerContext;
use nachtwacht::spool::{write_durably, Spool};
use nachtwacht::{dataset, enroll, init};
use nachtwacht_station::seal;
use nachtwacht_station::source::simulator::{self, SimulatorConfig};
use nachtwacht_wire::bundle::decode_bundle;
use nachtwacht_wire::signed::decode_signed;
use nachtwacht_wire::{DeviceKind, Signal};
use sha2::{Digest, Sha256};

use crate::bench_clock::timed;

#[derive(Debug, Clone, clap::Args)]
pub struct DecodeArgs {
    /// Bundles to decode.
    #[arg(long, default_value_t = 200)]
    pub bundles: usize,
    /// Minutes of wristband readings (all five signals) per bundle; a station sends one bundle
    /// every 5 minutes.
    #[arg(long, default_value_t = 5)]
    pub bundle_minutes: u32,
}

/// Blocking; run it on a blocking thread.
pub fn run(args: DecodeArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir().context("temporary directory")?;
    let root = tmp.path().join("data");
    init::init(&root, &Config::default(), nachtwacht::now_ms()).context("init")?;
    let ctx = ServerContext::open(&root)?;

    let days = (args.bundles as u32 * args.bundle_minutes).div_ceil(24 * 60);
    let start_ms = nachtwacht::now_ms() - (days as i64 + 1) * 86_400_000;
    let person = enroll::add_person(&ctx, "BENCH-1", "aggression-training", "bench")?;
    enroll::assign_device(
        &ctx,
        "WB-BENCH",
        DeviceKind::Wristband,
        person,
        start_ms,
        "bench",
    )?;
    let station = enroll::add_station(&ctx, "bench-home", "bench")?;
    enroll::pair_device(&ctx, "WB-BENCH", "bench-home", 0, "bench")?;
    let station_id: i64 = ctx.db.lock().query_row(
        "SELECT id FROM stations WHERE name = 'bench-home'",
        [],
        |r| r.get(0),
    )?;

    // The workload: consecutive wristband bundles, sealed as a station seals them.
    let contents: Vec<_> = simulator::generate_lazily(&SimulatorConfig {
        device: DeviceKind::Wristband,
        device_serial: "WB-BENCH".into(),
        start_ms,
        days,
        seed: 3,
        drinking: vec![],
        wear_hours_per_day: 24,
        bundle_minutes: args.bundle_minutes,
    })
    .take(args.bundles)
    .collect();
    anyhow::ensure!(
        contents.len() == args.bundles,
        "the simulator made {} bundles, not {}",
        contents.len(),
        args.bundles
    );
    let samples: usize = contents.iter().map(|c| c.samples()).sum();
    let key = station.signing_key()?;
    let signer = seal::Signer {
        station: &station.name,
        key: &key,
    };
    let recipient = seal::parse_recipient(&station.server_age_recipient)?;
    let sealed = contents
        .iter()
        .map(|c| seal::seal(c, &signer, &recipient))
        .collect::<Result<Vec<_>, _>>()?;
    let ciphertext_bytes: usize = sealed.iter().map(|s| s.ciphertext.len()).sum();
    println!(
        "workload: {} wristband bundles of {} min, {:.2} M samples, {:.1} MB of ciphertext",
        sealed.len(),
        args.bundle_minutes,
        samples as f64 / 1e6,
        ciphertext_bytes as f64 / 1e6
    );

    // Into the spool as the ingest leaves them: file durable, row `spooled`.
    let spool = Spool::new(ctx.dir.spool(), ctx.db.clone());
    std::fs::create_dir_all(ctx.dir.spool())?;
    let received = nachtwacht::now_ms();
    for (i, s) in sealed.iter().enumerate() {
        write_durably(&spool.path_of(&s.bundle_id), &s.ciphertext)?;
        ctx.db.lock().execute(
            "INSERT INTO bundles (bundle_id, station_id, sequence, size, sha256, received_at_ms, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'spooled')",
            rusqlite::params![
                s.bundle_id.to_hex(),
                station_id,
                i as i64 + 1,
                s.ciphertext.len() as i64,
                hex::encode(Sha256::digest(&s.ciphertext)),
                received
            ],
        )?;
    }

    // Floor 1: age decryption alone, same bundles.
    let identities = nachtwacht::secrets::load_age_identities(&ctx.dir.age_identity())?;
    let (plaintexts, decrypt_wall, decrypt_cpu) = timed(|| {
        sealed
            .iter()
            .map(|s| {
                age::decrypt(&identities[0], &s.ciphertext).context("decrypting a bench bundle")
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;

    // Floor 2: the signed envelope and the Arrow IPC streams (zstd) decoded, same bundles.
    let (bundles, ipc_wall, ipc_cpu) = timed(|| {
        plaintexts
            .iter()
            .map(|p| {
                let signed = decode_signed(p).context("bench envelope")?;
                Ok(decode_bundle(signed.bundle)
                    .context("bench bundle")?
                    .batches)
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;

    // Baseline: a plain Parquet write (same encodings, fsync, rename) of those Arrow batches in
    // the same files the decoder writes: per batch of bundles, one file per signal.
    let plain_dir = tmp.path().join("plain");
    std::fs::create_dir_all(&plain_dir)?;
    let ((), plain_wall, plain_cpu) = timed(|| {
        for (i, group) in bundles.chunks(Decoder::BATCH_BUNDLES).enumerate() {
            for signal in Signal::ALL {
                let batches: Vec<_> = group
                    .iter()
                    .flatten()
                    .filter(|sb| sb.signal == signal)
                    .map(|sb| sb.batch.clone())
                    .collect();
                if batches.is_empty() {
                    continue;
                }
                let path = plain_dir.join(format!("{i}-{}.parquet", signal.name()));
                dataset::write_parquet_batches(&path, &signal.schema(), &batches)?;
            }
        }
        Ok(())
    })?;

    // A second reference: the same batches through `ArrowWriter` with its default properties (no
    // compression, dictionary on every column), to a file per batch and signal, fsynced.
    let default_dir = tmp.path().join("default");
    std::fs::create_dir_all(&default_dir)?;
    let ((), default_wall, default_cpu) = timed(|| {
        for (i, group) in bundles.chunks(Decoder::BATCH_BUNDLES).enumerate() {
            for signal in Signal::ALL {
                let path = default_dir.join(format!("{i}-{}.parquet", signal.name()));
                let file = std::fs::File::create(&path)?;
                let mut w = parquet::arrow::ArrowWriter::try_new(&file, signal.schema(), None)?;
                for sb in group.iter().flatten().filter(|sb| sb.signal == signal) {
                    w.write(&sb.batch)?;
                }
                w.close()?;
                file.sync_all()?;
            }
        }
        Ok(())
    })?;

    // End to end: the real decode worker over the spool.
    let decoder = Decoder::new(ctx.clone(), ctx.pseudonymiser()?);
    let (report, e2e_wall, e2e_cpu) = timed(|| Ok(decoder.process_pending()?))?;
    anyhow::ensure!(
        report.processed == sealed.len() && report.quarantined == 0,
        "decode processed {} and quarantined {} of {} bundles",
        report.processed,
        report.quarantined,
        sealed.len()
    );

    let rate = |secs: f64| samples as f64 / secs / 1e6;
    println!();
    println!(
        "{:<46} {:>8} {:>12} {:>10}",
        "stage", "wall s", "M samples/s", "per CPU-s"
    );
    for (name, wall, cpu) in [
        ("age decryption only (floor)", decrypt_wall, decrypt_cpu),
        (
            "envelope + Arrow IPC decode only (floor)",
            ipc_wall,
            ipc_cpu,
        ),
        (
            "plain Parquet write, our encodings (baseline)",
            plain_wall,
            plain_cpu,
        ),
        (
            "plain Parquet write, ArrowWriter defaults",
            default_wall,
            default_cpu,
        ),
        ("decode end to end (decrypt…catalogue)", e2e_wall, e2e_cpu),
    ] {
        println!(
            "{name:<46} {wall:>8.3} {:>12.2} {:>10.2}",
            rate(wall),
            rate(cpu)
        );
    }
    println!();
    println!(
        "end to end: {:.2} M samples per CPU-second (target ≥ 5.0: {})",
        rate(e2e_cpu),
        if rate(e2e_cpu) >= 5.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    for (name, wall) in [
        ("our encodings", plain_wall),
        ("ArrowWriter defaults", default_wall),
    ] {
        let ratio = wall / e2e_wall;
        println!(
            "end to end / plain write ({name}): {ratio:.2} of its rate (target ≥ 0.50: {})",
            if ratio >= 0.5 { "met" } else { "NOT met" }
        );
    }
    println!(
        "rows stored {}, flagged {}, discarded {}",
        report.rows_stored, report.rows_flagged, report.rows_discarded
    );
    Ok(())
}
