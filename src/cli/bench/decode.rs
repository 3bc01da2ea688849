//! `nachtwacht bench decode`: the decode worker end to end (decrypt, verify the signature, decode
//! the Arrow IPC streams, validate, pseudonymise, write Parquet durably, catalogue), beside a
//! plain Parquet write of the same Arrow batches measured in the same run.
//!
//! Each stage runs `--runs` times, interleaved (plain, defaults, end to end, plain, …), each end
//! to end pass on its own copy of the prepared data directory; medians are reported, and the spread
//! of the per-run ratios. The worker spreads its work over the machine's cores (see
//! [`nachtwacht::decode`]); the plain write is one `ArrowWriter` on one thread. So the rate ratio
//! is what an operator sees (samples per second through each), and the per-CPU-second figures are
//! printed beside it. Part of the binary; method and figures in docs/benchmarks.md.

use anyhow::Context;
use nachtwacht::base::config::Config;
use nachtwacht::base::Context as ServerContext;
use nachtwacht::decode::Decoder;
use nachtwacht::spool::Spool;
use nachtwacht::{dataset, registry::enroll, server::init};
use nachtwacht_station::seal;
use nachtwacht_station::source::simulator::{self, SimulatorConfig};
use nachtwacht_wire::bundle::{decode_bundle, SignalBatch};
use nachtwacht_wire::signed::decode_signed;
use nachtwacht_wire::{DeviceKind, Signal};

use super::measure::{median, timed};

#[derive(Debug, Clone, clap::Args)]
pub struct DecodeArgs {
    /// Bundles to decode.
    #[arg(long, default_value_t = 200)]
    pub bundles: usize,
    /// Minutes of wristband readings (all five signals) per bundle; a station sends one bundle
    /// every 5 minutes.
    #[arg(long, default_value_t = 5)]
    pub bundle_minutes: u32,
    /// Times each stage is measured (interleaved); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Also run the decoder end to end with the ciphertexts in this S3-compatible bucket
    /// (`key=value` pairs as for `bench ingest --s3`), interleaved with the other stages.
    #[arg(long, value_name = "SETTINGS")]
    pub s3: Option<String>,
}

/// Blocking; run it on a blocking thread.
pub fn run(args: DecodeArgs) -> anyhow::Result<()> {
    let s3 = args
        .s3
        .as_deref()
        .map(nachtwacht::base::config::StorageConfig::s3_from_pairs)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--s3: {e}"))?;
    let tmp = tempfile::tempdir().context("temporary directory")?;
    let root = tmp.path().join("data");
    init::init(&root, &Config::default(), nachtwacht::base::time::now_ms()).context("init")?;
    let ctx = ServerContext::open(&root)?;

    let days = (args.bundles as u32 * args.bundle_minutes).div_ceil(24 * 60);
    let start_ms = nachtwacht::base::time::now_ms() - (days as i64 + 1) * 86_400_000;
    let person = enroll::add_person(
        &ctx,
        "BENCH-1",
        nachtwacht::base::programme::Programme::AggressionTraining,
        "bench",
    )?;
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
    let spool = Spool::new(ctx.blobs.clone(), ctx.db.clone());
    let received = nachtwacht::base::time::now_ms();
    for (i, s) in sealed.iter().enumerate() {
        spool.put_received(
            station_id,
            i as u64 + 1,
            s.bundle_id,
            &s.ciphertext,
            received,
        )?;
    }

    // Floor 1: age decryption alone, same bundles.
    let identities = nachtwacht::trust::secrets::load_age_identities(&ctx.dir.age_identity())?;
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

    // The end-to-end passes each get a copy of the prepared data directory (spool, database, keys),
    // made now, with the database closed, so every pass starts from the same `spooled` state.
    drop(spool);
    drop(ctx);
    let runs = args.runs.max(1);
    let copies = (0..runs)
        .map(|r| {
            let copy = tmp.path().join(format!("run-{r}"));
            copy_dir(&root, &copy)?;
            Ok(copy)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let (mut plain, mut default, mut e2e) = (Vec::new(), Vec::new(), Vec::new());
    let mut e2e_s3 = Vec::new();
    let mut report = None;
    // The last run's installations, whose datasets the reading comparison below scans.
    let (mut last_local, mut last_s3) = (None, None);
    for (r, copy) in copies.iter().enumerate() {
        if let Some(s3) = &s3 {
            let on_s3 = tmp.path().join(format!("run-{r}-s3"));
            copy_dir(copy, &on_s3)?;
            let ctx = to_object_storage(&on_s3, s3, &sealed, r)?;
            let decoder = Decoder::new(
                ctx.clone(),
                nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir)?,
            );
            let (pass, wall, cpu) = timed(|| Ok(decoder.process_pending()?))?;
            anyhow::ensure!(
                pass.processed == sealed.len() && pass.quarantined == 0,
                "decode from S3 processed {} and quarantined {} of {} bundles",
                pass.processed,
                pass.quarantined,
                sealed.len()
            );
            e2e_s3.push(((), wall, cpu));
            last_s3 = Some(ctx);
        }
        let out = tmp.path().join(format!("plain-{r}"));
        plain.push(timed(|| write_plain(&bundles, &out))?);
        let out = tmp.path().join(format!("default-{r}"));
        default.push(timed(|| write_with_defaults(&bundles, &out))?);
        let ctx = ServerContext::open(copy)?;
        let decoder = Decoder::new(
            ctx.clone(),
            nachtwacht::trust::pseudonym::Pseudonymiser::load(&ctx.dir)?,
        );
        let (pass, wall, cpu) = timed(|| Ok(decoder.process_pending()?))?;
        anyhow::ensure!(
            pass.processed == sealed.len() && pass.quarantined == 0,
            "decode processed {} and quarantined {} of {} bundles",
            pass.processed,
            pass.quarantined,
            sealed.len()
        );
        e2e.push(((), wall, cpu));
        report = Some(pass);
        last_local = Some(ctx);
    }
    let report = report.expect("at least one run");
    let medians = |runs: &[((), f64, f64)]| {
        (
            median(runs.iter().map(|r| r.1)),
            median(runs.iter().map(|r| r.2)),
        )
    };
    let (plain_wall, plain_cpu) = medians(&plain);
    let (default_wall, default_cpu) = medians(&default);
    let (e2e_wall, e2e_cpu) = medians(&e2e);

    let rate = |secs: f64| samples as f64 / secs / 1e6;
    println!();
    println!(
        "{:<46} {:>8} {:>12} {:>10}",
        format!("stage (median of {runs} runs where repeated)"),
        "wall s",
        "M samples/s",
        "per CPU-s"
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
    ]
    .into_iter()
    .chain((!e2e_s3.is_empty()).then(|| {
        let (wall, cpu) = medians(&e2e_s3);
        ("decode end to end, on S3 (ciphertexts, Parquet)", wall, cpu)
    })) {
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
    for (name, wall, cpu, runs) in [
        ("our encodings", plain_wall, plain_cpu, &plain),
        ("ArrowWriter defaults", default_wall, default_cpu, &default),
    ] {
        let ratio = wall / e2e_wall;
        let (lo, hi) = runs
            .iter()
            .zip(&e2e)
            .map(|(p, e)| p.1 / e.1)
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(r), hi.max(r)));
        println!(
            "end to end / plain write ({name}): {ratio:.2} of its rate, runs {lo:.2}–{hi:.2} \
             (target ≥ 0.50: {}); per CPU-second {:.2}",
            if ratio >= 0.5 { "met" } else { "NOT met" },
            cpu / e2e_cpu
        );
    }
    for (name, runs) in [
        ("plain write, our encodings", &plain),
        ("plain write, ArrowWriter defaults", &default),
        ("end to end", &e2e),
        ("end to end, on S3", &e2e_s3),
    ] {
        if runs.is_empty() {
            continue;
        }
        let walls: Vec<String> = runs.iter().map(|r| format!("{:.3}", r.1)).collect();
        println!("wall s per run, {name}: {}", walls.join(" "));
    }
    println!(
        "rows stored {}, flagged {}, discarded {}",
        report.rows_stored, report.rows_flagged, report.rows_discarded
    );
    if let (Some(local), Some(on_s3), Some(s3)) = (&last_local, &last_s3, &s3) {
        compare_dataset_reads(local, on_s3, s3, runs)?;
    }
    Ok(())
}

/// How the pipelines should read datasets kept on object storage, measured: every signal read
/// whole as the evaluator reads it ([`dataset::scan_readings`]) from the local files (baseline),
/// from objects fetched whole in parallel into a scratch folder (what [`dataset::Readers`] does),
/// and through polars' own S3 reader (ranged GETs of footers and column chunks).
fn compare_dataset_reads(
    local: &ServerContext,
    on_s3: &ServerContext,
    s3: &nachtwacht::base::config::StorageConfig,
    runs: usize,
) -> anyhow::Result<()> {
    use super::measure::median;
    use polars::prelude::{LazyFrame, PlPath, ScanArgsParquet};
    let read_all = |frames: Vec<LazyFrame>| -> anyhow::Result<usize> {
        let mut rows = 0;
        for lf in frames {
            rows += lf.collect()?.height();
        }
        Ok(rows)
    };
    let through_readers = |ctx: &ServerContext| -> anyhow::Result<usize> {
        let readers = dataset::Readers::of(ctx)?;
        let mut frames = Vec::new();
        for signal in nachtwacht_wire::Signal::ALL {
            if let Some(lf) = dataset::scan_readings(&readers.signal_files(signal)?)? {
                frames.push(lf);
            }
        }
        read_all(frames)
    };
    // polars' reader: the same objects by URL, with the installation's credentials.
    let config = &on_s3.config.storage;
    let secret = std::fs::read_to_string(
        on_s3
            .dir
            .root()
            .join(config.secret_access_key_file.as_deref().unwrap_or_default()),
    )?;
    let cloud = polars::prelude::cloud::CloudOptions::default().with_aws([
        (
            polars::prelude::cloud::AmazonS3ConfigKey::Endpoint,
            config.endpoint.clone().unwrap_or_default(),
        ),
        (
            polars::prelude::cloud::AmazonS3ConfigKey::AccessKeyId,
            config.access_key_id.clone().unwrap_or_default(),
        ),
        (
            polars::prelude::cloud::AmazonS3ConfigKey::SecretAccessKey,
            secret.trim().to_string(),
        ),
        (
            polars::prelude::cloud::AmazonS3ConfigKey::Region,
            if s3.region.is_empty() {
                "us-east-1".to_string()
            } else {
                s3.region.clone()
            },
        ),
    ]);
    let base = format!(
        "s3://{}/{}",
        config.bucket.as_deref().unwrap_or_default(),
        config.prefix.trim_matches('/')
    );
    let through_polars = || -> anyhow::Result<usize> {
        let mut frames = Vec::new();
        for signal in nachtwacht_wire::Signal::ALL {
            let mut catalogued: Vec<String> = Vec::new();
            {
                let conn = on_s3.db.lock();
                let mut stmt =
                    conn.prepare("SELECT path FROM dataset_files WHERE signal = ?1 ORDER BY path")?;
                for path in stmt.query_map([signal.name()], |r| r.get(0))? {
                    catalogued.push(path?);
                }
            }
            if catalogued.is_empty() {
                continue;
            }
            let urls = catalogued
                .iter()
                .map(|p| PlPath::new(&format!("{base}/{p}")))
                .collect();
            let args = ScanArgsParquet {
                cloud_options: Some(cloud.clone()),
                ..Default::default()
            };
            frames.push(dataset::scan_readings_at(urls, args)?);
        }
        read_all(frames)
    };
    // Per way of reading: (rows, wall s, CPU s) of each run.
    type Runs = Vec<(usize, f64, f64)>;
    let mut results: Vec<(&str, Runs)> = vec![
        ("local files (baseline)", vec![]),
        ("S3, objects fetched whole (Readers)", vec![]),
        ("S3, polars' own reader", vec![]),
    ];
    for _ in 0..runs {
        results[0].1.push(timed(|| through_readers(local))?);
        results[1].1.push(timed(|| through_readers(on_s3))?);
        results[2].1.push(timed(through_polars)?);
    }
    let rows = results[0].1[0].0;
    println!();
    println!("reading the datasets back (every signal, all columns, as the evaluator scans them; {rows} rows; median of {runs}):");
    for (name, measured) in &results {
        anyhow::ensure!(
            measured.iter().all(|m| m.0 == rows),
            "{name} read a different number of rows"
        );
        let wall = median(measured.iter().map(|m| m.1));
        let cpu = median(measured.iter().map(|m| m.2));
        let walls: Vec<String> = measured.iter().map(|m| format!("{:.3}", m.1)).collect();
        println!(
            "  {name:<38} wall {wall:>7.3} s ({}× local)  CPU {cpu:>7.3} s   runs {}",
            format_args!("{:.2}", wall / median(results[0].1.iter().map(|m| m.1))),
            walls.join(" ")
        );
    }
    Ok(())
}

/// The baseline: a plain Parquet write (same encodings, fsync, rename) of the decoded Arrow
/// batches in the same files the decoder writes: per batch of bundles, one file per signal.
fn write_plain(bundles: &[Vec<SignalBatch>], dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
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
            let path = dir.join(format!("{i}-{}.parquet", signal.name()));
            dataset::write_parquet_batches(
                &path,
                &signal.schema(),
                &batches,
                dataset::RowOrder::Arrival,
            )?;
        }
    }
    Ok(())
}

/// A second reference: the same batches through `ArrowWriter` with its default properties (no
/// compression, dictionary on every column), to a file per batch and signal, fsynced.
fn write_with_defaults(bundles: &[Vec<SignalBatch>], dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, group) in bundles.chunks(Decoder::BATCH_BUNDLES).enumerate() {
        for signal in Signal::ALL {
            let path = dir.join(format!("{i}-{}.parquet", signal.name()));
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
}

/// Moves the prepared data directory `root` onto object storage: its configuration names the
/// bucket (under a prefix of this run's own) and its spooled ciphertexts are PUT there, as the
/// ingest leaves them. The database is unchanged: the same `spooled` rows.
fn to_object_storage(
    root: &std::path::Path,
    s3: &nachtwacht::base::config::StorageConfig,
    sealed: &[seal::SealedBundle],
    run: usize,
) -> anyhow::Result<ServerContext> {
    use nachtwacht::base::blobs::{self, Blobs, Key};
    let dir = nachtwacht::base::datadir::DataDir::new(root);
    let mut config = Config::load(&dir.config())?;
    config.storage = s3.clone();
    config.storage.prefix = format!(
        "{}/bench-decode-{}-{run}",
        s3.prefix.trim_matches('/'),
        nachtwacht::base::time::now_ms()
    )
    .trim_start_matches('/')
    .to_string();
    std::fs::write(dir.config(), config.to_toml())?;
    let store = Blobs::open(&config.storage, &dir)?;
    let items: Vec<(Key, &[u8])> = sealed
        .iter()
        .map(|s| {
            let sha = nachtwacht_wire::protocol::sha256_hex(&s.ciphertext);
            (Key::spooled(&s.bundle_id, &sha), &s.ciphertext[..])
        })
        .collect();
    store.place_all(&items)?;
    std::fs::remove_dir_all(root.join(blobs::SPOOL))?;
    Ok(ServerContext::open(root)?)
}

/// Copies a directory tree (regular files and directories; a data directory holds nothing else).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| to.display().to_string())?;
    for entry in std::fs::read_dir(from).with_context(|| from.display().to_string())? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
