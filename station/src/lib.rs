//! The nachtwacht base-station agent.
//!
//! Comes in: readings from a wearable (an E4 CSV export, or the built-in simulator).
//! Goes out: age-encrypted bundles, uploaded over mutually authenticated QUIC.
//!
//! Flow: [`source`] reads → [`seal`] builds and encrypts a bundle → [`spool`] makes it durable on the
//! station's disk → [`uploader`] sends it and deletes the local copy only after the server's
//! acknowledgement says the server holds it durably.
//!
//! Invariant: a reading is never deleted from the station before the server has acknowledged the
//! bundle that carries it.

pub mod config;
pub mod durable;
pub mod renewal;
pub mod seal;
pub mod source;
pub mod spool;
pub mod uploader;

use std::path::Path;

pub use config::StationConfig;
pub use source::SourceConfig;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("source {path}: {reason}")]
    Source { path: String, reason: String },
    #[error("sealing a bundle: {0}")]
    Seal(String),
    #[error("spool {path}: {source}")]
    Spool {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("upload: {0}")]
    Upload(String),
    #[error("spool is full ({pending_bytes} of {cap_bytes} bytes waiting)")]
    SpoolFull { pending_bytes: u64, cap_bytes: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What one pass of the agent did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub sealed: usize,
    pub acknowledged: usize,
    pub set_aside: usize,
    pub left_in_spool: usize,
    /// The spool reached its cap during this pass, so some readings were left on the device.
    pub spool_full: bool,
    pub heartbeats: usize,
    pub clock_offset_ms: Option<i64>,
}

/// Seals and spools whatever the configured source has that is not sealed yet. Stops early, leaving
/// the device's cursor where it is, when the spool is full.
pub fn collect(
    config: &StationConfig,
    base_dir: &Path,
    spool: &spool::Spool,
) -> Result<(usize, bool)> {
    let recipient = seal::parse_recipient(&current_recipient(config, base_dir)?)?;
    let key = config.signing_key()?;
    let signer = seal::Signer {
        station: &config.name,
        key: &key,
    };
    let mut sealed_count = 0;
    for content in source::read(&config.source, base_dir)? {
        // Readings up to the cursor are already in the spool or at the server: a source that
        // grows (an E4 export being appended to) is sealed from the cursor on, never again whole.
        let content = content?;
        let cursors = spool.signal_cursors(&content.device_serial)?;
        let (content, _) = after_cursor(content, &cursors)?;
        // A long read-out goes in several bundles, each within what the server accepts.
        for piece in content.split_to_fit()? {
            if piece.span().is_none() {
                continue;
            }
            let sealed = seal::seal(&piece, &signer, &recipient)?;
            match spool.put(&sealed) {
                Ok(spooled) => {
                    tracing::info!(bundle = %spooled.bundle_id, sequence = spooled.sequence, "bundle sealed and spooled");
                }
                Err(Error::SpoolFull {
                    pending_bytes,
                    cap_bytes,
                }) => {
                    tracing::warn!(
                        pending_bytes,
                        cap_bytes,
                        device = %piece.device_serial,
                        "spool full: readings stay on the device until the server takes the backlog"
                    );
                    return Ok((sealed_count, true));
                }
                Err(e) => return Err(e),
            }
            spool.advance_signal_cursors(&piece.device_serial, &last_per_signal(&piece))?;
            sealed_count += 1;
        }
    }
    Ok((sealed_count, false))
}

/// Where the station keeps the recipient the server asked for last (key rotation).
fn recipient_file(config: &StationConfig, base_dir: &Path) -> std::path::PathBuf {
    config.state_dir(base_dir).join("server-recipient.txt")
}

/// The age recipient to seal to: the one the server announced last, else the configured one.
pub fn current_recipient(config: &StationConfig, base_dir: &Path) -> Result<String> {
    match std::fs::read_to_string(recipient_file(config, base_dir)) {
        Ok(r) if !r.trim().is_empty() => Ok(r.trim().to_string()),
        Ok(_) => Ok(config.server_age_recipient.clone()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(config.server_age_recipient.clone())
        }
        Err(source) => Err(Error::Spool {
            path: recipient_file(config, base_dir).display().to_string(),
            source,
        }),
    }
}

/// Records a recipient announced by the server (over the authenticated connection) so the next
/// bundles are sealed to it. Refuses anything that is not an age X25519 recipient.
pub fn adopt_recipient(config: &StationConfig, base_dir: &Path, recipient: &str) -> Result<()> {
    seal::parse_recipient(recipient)?;
    if current_recipient(config, base_dir)? == recipient {
        return Ok(());
    }
    durable::write_durably(&recipient_file(config, base_dir), recipient.as_bytes()).map_err(
        |source| Error::Spool {
            path: recipient_file(config, base_dir).display().to_string(),
            source,
        },
    )?;
    tracing::info!(%recipient, "server rotated its key: sealing new bundles to the new recipient");
    Ok(())
}

/// File formats `nachtwacht-station import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// The ankle-monitor CSV layout (`source::ankle_csv`), one file.
    AnkleCsv,
    /// An Empatica E4 CSV export directory.
    E4Csv,
    /// EmbracePlus Avro: one file, or a directory of `.avro` files.
    EmbraceAvro,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub bundles: usize,
    pub readings: usize,
    /// Readings at or before the device's cursor: already sealed by this station, not sealed twice.
    pub already_sealed: usize,
}

/// Reads a device's memory from files (after a station failure, or a device brought in), seals it
/// into bundles and spools them; the next upload pass sends them. Readings this station already
/// sealed for the device (at or before its cursor) are skipped; the server de-duplicates whole
/// bundles by id on top of that.
pub fn import(
    config: &StationConfig,
    base_dir: &Path,
    format: ImportFormat,
    path: &Path,
    device_serial: &str,
) -> Result<ImportReport> {
    let what = path.display().to_string();
    let read_err = |e: std::io::Error| Error::Source {
        path: what.clone(),
        reason: e.to_string(),
    };
    let contents = match format {
        ImportFormat::AnkleCsv => {
            let text = std::fs::read_to_string(path).map_err(read_err)?;
            source::ankle_csv::bundles(source::ankle_csv::parse(&text, &what)?, device_serial)
        }
        ImportFormat::E4Csv => vec![source::e4::read_export(path, device_serial)?],
        ImportFormat::EmbraceAvro if path.is_dir() => {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "avro"))
                .collect();
            files.sort();
            files
                .iter()
                .map(|f| source::embrace_avro::read_file(f, device_serial))
                .collect::<Result<Vec<_>>>()?
        }
        ImportFormat::EmbraceAvro => vec![source::embrace_avro::read_file(path, device_serial)?],
    };
    let spool = spool::Spool::with_cap(&config.spool_dir(base_dir), config.spool_max_bytes)?;
    let recipient = seal::parse_recipient(&current_recipient(config, base_dir)?)?;
    let key = config.signing_key()?;
    let signer = seal::Signer {
        station: &config.name,
        key: &key,
    };
    let mut report = ImportReport::default();
    for content in contents {
        let cursors = spool.signal_cursors(device_serial)?;
        let (content, skipped) = after_cursor(content, &cursors)?;
        report.already_sealed += skipped;
        for piece in content.split_to_fit()? {
            if piece.span().is_none() {
                continue;
            }
            let sealed = seal::seal(&piece, &signer, &recipient)?;
            spool.put(&sealed)?;
            spool.advance_signal_cursors(device_serial, &last_per_signal(&piece))?;
            report.bundles += 1;
            report.readings += piece
                .batches
                .iter()
                .map(|b| b.batch.num_rows())
                .sum::<usize>();
        }
    }
    Ok(report)
}

/// Drops each signal's rows at or before that signal's cursor; returns what is left and how many
/// rows were dropped.
fn after_cursor(
    mut content: source::BundleContent,
    cursors: &spool::SignalCursors,
) -> Result<(source::BundleContent, usize)> {
    let mut dropped = 0;
    for b in &mut content.batches {
        let Some(cursor) = cursors.of(b.signal) else {
            continue;
        };
        let ts = timestamps(&b.batch);
        let keep = arrow::array::BooleanArray::from(
            ts.values().iter().map(|t| *t > cursor).collect::<Vec<_>>(),
        );
        dropped += keep.len() - keep.true_count();
        b.batch = arrow::compute::filter_record_batch(&b.batch, &keep)
            .map_err(|e| Error::Seal(e.to_string()))?;
    }
    content.batches.retain(|b| b.batch.num_rows() > 0);
    Ok((content, dropped))
}

/// A signal batch's `ts` column (the first of every wire schema).
fn timestamps(batch: &arrow::array::RecordBatch) -> &arrow::array::TimestampMillisecondArray {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::TimestampMillisecondArray>()
        .expect("every wire schema starts with ts")
}

/// The last reading time of each signal in a piece: what its cursors advance to once it is sealed.
fn last_per_signal(
    piece: &source::BundleContent,
) -> std::collections::BTreeMap<nachtwacht_wire::Signal, i64> {
    piece
        .batches
        .iter()
        .filter_map(|b| Some((b.signal, arrow::compute::max(timestamps(&b.batch))?)))
        .collect()
}

/// Reads everything the configured source has, seals and spools it, uploads the spool until it is
/// empty or the retry budget is spent, and sends a heartbeat. Returns what happened.
pub async fn run_once(config: &StationConfig, base_dir: &Path) -> Result<RunReport> {
    let config = renewal::current(config, &config.state_dir(base_dir))?;
    run_with(&config, base_dir, uploader::Uploader::new(&config)?).await
}

/// [`run_once`] with a given uploader (tests tune its backoff).
pub async fn run_with(
    config: &StationConfig,
    base_dir: &Path,
    client: uploader::Uploader,
) -> Result<RunReport> {
    let spool = spool::Spool::with_cap(&config.spool_dir(base_dir), config.spool_max_bytes)?;
    let (sealed, spool_full) = collect(config, base_dir, &spool)?;
    let state = config.state_dir(base_dir);
    let renewal_csr = renewal::request(
        &renewal::current(config, &state)?,
        &state,
        chrono::Utc::now().timestamp_millis(),
    )?;
    let heartbeat = |clock_offset_ms: Option<i64>| {
        let mut status = spool
            .status()
            .unwrap_or(nachtwacht_wire::protocol::SpoolStatus {
                pending_bundles: 0,
                pending_bytes: 0,
                capacity_bytes: config.spool_max_bytes,
                full: false,
            });
        status.full |= spool_full;
        nachtwacht_wire::protocol::Heartbeat {
            station: config.name.clone(),
            sent_at_ms: chrono::Utc::now().timestamp_millis(),
            clock_offset_ms,
            spool: status,
            devices: source::device_status(&config.source, base_dir, |serial| {
                spool.cursor(serial).ok().flatten()
            }),
            renewal_csr: renewal_csr.clone(),
        }
    };
    let outcome = client.drain(&spool, &heartbeat).await;
    client.shutdown().await;
    let outcome = outcome?;
    if let Some(r) = &outcome.recipient {
        adopt_recipient(config, base_dir, r)?;
    }
    if let Some(cert) = &outcome.certificate {
        renewal::adopt(&state, cert)?;
    }
    Ok(RunReport {
        sealed,
        acknowledged: outcome.acknowledged,
        set_aside: outcome.set_aside,
        left_in_spool: spool.pending()?.len(),
        spool_full,
        heartbeats: outcome.heartbeats,
        clock_offset_ms: outcome.clock_offset_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample export as it stood `seconds` into the recording: every file cut at the same
    /// wall-clock moment, as a device writing its export would leave it.
    fn export_until(sample: &Path, out: &Path, seconds: f64) {
        std::fs::create_dir_all(out).unwrap();
        let start_of =
            |line: &str| -> f64 { line.split(',').next().unwrap().trim().parse().unwrap() };
        let first: f64 = start_of(
            std::fs::read_to_string(sample.join("ACC.csv"))
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        );
        let until = first + seconds;
        for file in ["ACC.csv", "BVP.csv", "EDA.csv", "HR.csv", "TEMP.csv"] {
            let text = std::fs::read_to_string(sample.join(file)).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let (start, rate) = (start_of(lines[0]), start_of(lines[1]));
            let kept: Vec<&str> = lines[2..]
                .iter()
                .enumerate()
                .take_while(|(i, _)| start + *i as f64 / rate < until)
                .map(|(_, l)| *l)
                .collect();
            let body = [&lines[..2], &kept[..]].concat().join("\n");
            std::fs::write(out.join(file), body + "\n").unwrap();
        }
        let ibi = std::fs::read_to_string(sample.join("IBI.csv")).unwrap();
        let mut lines = ibi.lines();
        let header = lines.next().unwrap();
        let start = start_of(header);
        let kept: Vec<&str> = lines.filter(|l| start + start_of(l) < until).collect();
        std::fs::write(
            out.join("IBI.csv"),
            [header]
                .iter()
                .chain(&kept)
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
                + "\n",
        )
        .unwrap();
    }

    /// Readings in the spool, per signal, opened as the server would open them.
    fn spooled_rows(spool: &spool::Spool, identity: &age::x25519::Identity) -> usize {
        spool
            .pending()
            .unwrap()
            .iter()
            .map(|b| {
                let plain = age::decrypt(identity, &spool.read(b).unwrap()).unwrap();
                let signed = nachtwacht_wire::signed::decode_signed(&plain).unwrap();
                let bundle = nachtwacht_wire::bundle::decode_bundle(signed.bundle).unwrap();
                bundle
                    .batches
                    .iter()
                    .map(|b| b.batch.num_rows())
                    .sum::<usize>()
            })
            .sum()
    }

    /// A read-out larger than one bundle may declare is sealed as several, in time order, every
    /// reading in exactly one, each within the server's bound.
    #[test]
    fn a_read_out_too_large_for_one_bundle_is_split_by_time() {
        use arrow::array::{Float64Array, TimestampMillisecondArray};
        use nachtwacht_wire::Signal;
        let rows = 12_000_000usize; // BVP at 64 Hz: 52 hours, about 200 MB declared
        let ts = TimestampMillisecondArray::from(
            (0..rows as i64).map(|i| i * 1000 / 64).collect::<Vec<_>>(),
        )
        .with_timezone("UTC");
        let batch = arrow::array::RecordBatch::try_new(
            Signal::Bvp.schema(),
            vec![
                std::sync::Arc::new(ts),
                std::sync::Arc::new(Float64Array::from(vec![0.5; rows])),
            ],
        )
        .unwrap();
        let content = source::BundleContent {
            device_serial: "E4-1".into(),
            device_kind: nachtwacht_wire::DeviceKind::Wristband,
            batches: vec![nachtwacht_wire::SignalBatch::nominal(Signal::Bvp, batch)],
        };
        let pieces = content.split_to_fit().unwrap();
        assert!(pieces.len() >= 2, "{} pieces", pieces.len());
        let bound = nachtwacht_wire::bundle::MAX_BUNDLE_DECODED_LEN;
        let mut total = 0;
        let mut previous_last = i64::MIN;
        for p in &pieces {
            let n = p.batches[0].batch.num_rows();
            assert!(Signal::Bvp.max_stream_len(n as u64) <= bound);
            let (first, last) = p.span().unwrap();
            assert!(first > previous_last);
            previous_last = last;
            total += n;
        }
        assert_eq!(total, rows);
    }

    /// Signals that end at different instants keep their own cursors: the rows of a signal that
    /// lagged behind the others at one run are sealed at the next. With one cursor per device,
    /// the heart rate's rows between its last reading and the accelerometer's were skipped. A
    /// cursor file from before (one number) still holds for every signal.
    #[test]
    fn a_signal_that_lagged_behind_the_others_keeps_its_rows() {
        use arrow::array::{Float64Array, TimestampMillisecondArray};
        use nachtwacht_wire::Signal;
        let tmp = tempfile::tempdir().unwrap();
        let spool = spool::Spool::open(tmp.path()).unwrap();
        let hr = |from: i64, to: i64| {
            let ts: Vec<i64> = (from..to).map(|s| s * 1000).collect();
            let n = ts.len();
            nachtwacht_wire::SignalBatch::nominal(
                Signal::Hr,
                arrow::array::RecordBatch::try_new(
                    Signal::Hr.schema(),
                    vec![
                        std::sync::Arc::new(
                            TimestampMillisecondArray::from(ts).with_timezone("UTC"),
                        ),
                        std::sync::Arc::new(Float64Array::from(vec![70.0; n])),
                    ],
                )
                .unwrap(),
            )
        };
        let temp = |from: i64, to: i64| {
            let ts: Vec<i64> = (from..to).map(|s| s * 1000).collect();
            let n = ts.len();
            nachtwacht_wire::SignalBatch::nominal(
                Signal::Temp,
                arrow::array::RecordBatch::try_new(
                    Signal::Temp.schema(),
                    vec![
                        std::sync::Arc::new(
                            TimestampMillisecondArray::from(ts).with_timezone("UTC"),
                        ),
                        std::sync::Arc::new(Float64Array::from(vec![33.0; n])),
                    ],
                )
                .unwrap(),
            )
        };
        let content = |batches| source::BundleContent {
            device_serial: "E4-1".into(),
            device_kind: nachtwacht_wire::DeviceKind::Wristband,
            batches,
        };
        // First run: heart rate up to 100 s, temperature up to 110 s.
        let first = content(vec![hr(0, 100), temp(0, 110)]);
        spool
            .advance_signal_cursors("E4-1", &last_per_signal(&first))
            .unwrap();
        // Second run: the export has grown; heart rate's rows 100..110 s are new.
        let cursors = spool.signal_cursors("E4-1").unwrap();
        let (rest, skipped) =
            after_cursor(content(vec![hr(0, 120), temp(0, 120)]), &cursors).unwrap();
        assert_eq!(skipped, 100 + 110);
        let rows: Vec<(Signal, usize)> = rest
            .batches
            .iter()
            .map(|b| (b.signal, b.batch.num_rows()))
            .collect();
        assert_eq!(rows, vec![(Signal::Hr, 20), (Signal::Temp, 10)]);
        assert_eq!(
            spool.cursor("E4-1").unwrap(),
            Some(109_000),
            "overall cursor for the status"
        );
        // A cursor file from before per-signal cursors: one number for every signal.
        std::fs::write(tmp.path().join("cursor-E4-2"), "50000").unwrap();
        let legacy = spool.signal_cursors("E4-2").unwrap();
        assert_eq!(legacy.of(Signal::Hr), Some(50_000));
        assert_eq!(legacy.of(Signal::Eda), Some(50_000));
    }

    /// An E4 export that grows between two runs is sealed from the cursor on: every reading is in
    /// the spool once. Before the fix the second run sealed the whole export again (the first
    /// ten minutes twice).
    #[test]
    fn a_growing_e4_export_is_sealed_from_the_cursor_not_again_whole() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/e4-sample");
        let tmp = tempfile::tempdir().unwrap();
        let export = tmp.path().join("export");
        let identity = age::x25519::Identity::generate();
        let (signing_key, _) = seal::new_signing_key().unwrap();
        let config = StationConfig {
            name: "home-e4".into(),
            servers: vec![],
            server_name: "nachtwacht".into(),
            ca_cert_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
            server_age_recipient: identity.to_public().to_string(),
            signing_key_pkcs8: signing_key,
            spool: "spool".into(),
            spool_max_bytes: spool::DEFAULT_CAP_BYTES,
            heartbeat_interval_secs: 300,
            renew_before_days: 30,
            source: SourceConfig::E4Csv {
                dir: export.clone(),
                device_serial: "E4-1".into(),
            },
        };
        let spool =
            spool::Spool::with_cap(&config.spool_dir(tmp.path()), config.spool_max_bytes).unwrap();
        export_until(&sample, &export, 600.0);
        assert_eq!(collect(&config, tmp.path(), &spool).unwrap(), (1, false));
        let first = spooled_rows(&spool, &identity);
        export_until(&sample, &export, 1e9);
        assert_eq!(collect(&config, tmp.path(), &spool).unwrap(), (1, false));
        let whole: usize = source::e4::read_export(&export, "E4-1")
            .unwrap()
            .batches
            .iter()
            .map(|b| b.batch.num_rows())
            .sum();
        assert!(first > 0 && first < whole);
        assert_eq!(spooled_rows(&spool, &identity), whole, "every reading once");
        // Nothing new: nothing sealed.
        assert_eq!(collect(&config, tmp.path(), &spool).unwrap(), (0, false));
    }
}
