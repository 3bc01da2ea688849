//! The decode worker: from spooled ciphertext to pseudonymised Parquet.
//!
//! For each `spooled` bundle: decrypt with the server's age identities, check the station's Ed25519
//! signature against the key registered for the station that uploaded it, decode the v1 bundle, find
//! the person the device is assigned to, keep only the signals that person's programme may collect
//! (the rest are counted and discarded), replace the device with the operational pseudonym, and
//! write the rows (see [`crate::dataset`]). The original ciphertext moves to `evidence/` (kept for
//! the retention policy's `[evidence]` period, see [`prune_evidence`]) and the bundle becomes
//! `processed`, with the public key that verified it recorded in its row.
//!
//! Anything that fails is *quarantined*, never dropped: the ciphertext moves to `quarantine/` with a
//! `.reason` file and the bundle row records the reason. The worker is restartable at any point:
//! accepted bundles are written in batches (one file per signal and day per batch) and catalogued
//! in the transaction that marks them processed, so processing a bundle twice writes nothing twice.

mod bundle;
mod memory;
use memory::MemoryBudget;
pub use memory::DECODE_MEMORY_BUDGET;

mod evidence;
pub use evidence::prune_evidence;

pub mod quarantine;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;

use crate::base::db::OptionalExtension;
use nachtwacht_wire::bundle::decode_bundle;
use nachtwacht_wire::signed::decode_signed;
use nachtwacht_wire::{BundleId, Signal};
use tracing::{debug, info, warn};

use crate::base::blobs::Key;
use crate::base::Context;
use crate::dataset;
use crate::spool::BundleState;
use crate::trust::audit;
use crate::trust::pseudonym::Pseudonymiser;
use validate::FlagCounts;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    #[error(transparent)]
    File(#[from] crate::base::fsio::Error),
    #[error(transparent)]
    Storage(#[from] crate::base::blobs::Error),
    #[error(transparent)]
    Dataset(#[from] dataset::Error),
    #[error(transparent)]
    Audit(#[from] crate::trust::audit::Error),
    #[error(transparent)]
    Secrets(#[from] crate::trust::secrets::Error),
    #[error("another process has taken over decoding (this one's lease ran out); nothing of this batch was committed")]
    LeaseLost,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failure of the machine rather than of one bundle's content (the disk, the database): it
    /// stops the pass and is charged to no bundle, since every bundle would meet it.
    fn is_environmental(&self) -> bool {
        matches!(
            self,
            Error::Db(_)
                | Error::LeaseLost
                | Error::Spool(_)
                | Error::File(_)
                | Error::Storage(_)
                | Error::Secrets(_)
                | Error::Audit(_)
                | Error::Dataset(
                    dataset::Error::Io { .. } | dataset::Error::File(_) | dataset::Error::Db(_)
                )
        )
    }
}

/// Why a bundle cannot be processed: becomes its quarantine reason. `person`: whose readings the
/// bundle carried, when that is known (a bundle that arrived after its wearer's supervision
/// ended), so that erasing the person's data reaches the quarantined copy too.
#[derive(Debug)]
struct Reject {
    reason: String,
    person: Option<i64>,
}

impl Reject {
    fn new(reason: String) -> Self {
        Self {
            reason,
            person: None,
        }
    }
}

/// What opening one bundle came to.
enum Opened {
    Accepted(Processed),
    /// The bundle is bad: quarantined with this reason.
    Rejected(Reject),
    /// Processing failed unexpectedly (an error that is not the bundle's verdict, or a panic):
    /// tried again later, set aside after [`MAX_ATTEMPTS`].
    Failed(String),
}

/// Attempts after which a bundle whose processing keeps failing unexpectedly is quarantined. The
/// back-off between them ([`retry_delay_ms`]) spreads them over about seven minutes, so a passing
/// fault does not set healthy bundles aside.
pub const MAX_ATTEMPTS: i64 = 5;

/// The wait before attempt `attempts + 1`: 30 s, doubling.
fn retry_delay_ms(attempts: i64) -> i64 {
    30_000i64.saturating_mul(1 << attempts.clamp(1, 20).saturating_sub(1))
}

/// Runs `f`, turning a panic into an error message: one bundle's panic must not end the pass.
fn catching<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("panic: {what}")
    })
}

/// What processing one bundle produced: its rows, not yet written.
#[derive(Debug)]
struct Processed {
    stored: usize,
    discarded: usize,
    /// Hex public key that verified the signature.
    signed_by: String,
    /// The rows to store, per signal, in the stored schema.
    rows: Vec<(Signal, RecordBatch)>,
    flags: FlagCounts,
    /// Whose readings these are (`None` for a bundle without readings).
    person: Option<i64>,
}

/// Accepted bundles whose rows are written together: one file per signal and day for the whole
/// batch, then one transaction that catalogues the files and marks every bundle processed.
/// Where a bundle's ciphertext waits, and where it goes once its batch commits.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub spooled: crate::spool::Location,
    pub evidence: Key,
    pub received_at_ms: i64,
}

/// A `bundles` row waiting to be decoded.
struct Pending {
    bundle_id: String,
    received_at_ms: i64,
    sha256: String,
    segment: Option<String>,
    segment_offset: Option<i64>,
    size: i64,
}

#[derive(Default)]
struct Batch {
    bundles: Vec<(BundleId, Keys, Processed)>,
    rows: usize,
}

impl Batch {
    /// Enough to amortise a file's footer and fsync, small enough to bound memory (a few hundred
    /// MB at most) and to make progress visible between batches.
    const MAX_ROWS: usize = 2_000_000;

    fn is_full(&self) -> bool {
        self.bundles.len() >= Decoder::BATCH_BUNDLES || self.rows >= Self::MAX_ROWS
    }
}

/// Writes each signal's rows of a batch (see [`dataset::write_rows`]), several signals at a time,
/// one per core. Encoding Parquet is most of the writer stage's CPU and the signals' files are
/// independent, so this is what lets the stage keep up with the opening stage and use every core
/// while the last batch drains. The files come back in signal order.
fn write_signals(
    blobs: &crate::base::blobs::Blobs,
    by_signal: &BTreeMap<Signal, Vec<(BundleId, RecordBatch)>>,
) -> Result<Vec<dataset::WrittenFile>> {
    let jobs: Vec<_> = by_signal.iter().collect();
    let mut files = Vec::new();
    for written in crate::base::parallel::map_in_order(&jobs, |(signal, parts)| {
        dataset::write_rows(blobs, **signal, parts)
    }) {
        files.extend(written?);
    }
    Ok(files)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeReport {
    pub processed: usize,
    pub quarantined: usize,
    pub rows_stored: usize,
    pub rows_discarded: usize,
    /// Rows stored with at least one validation flag.
    pub rows_flagged: usize,
    /// Bundles whose processing failed unexpectedly this pass and wait for another attempt.
    pub deferred: usize,
}

/// How far past its receipt (beyond the station's reported clock offset) a sample may be dated
/// before it is flagged as lying in the future.
const FUTURE_MARGIN_MS: i64 = 5 * 60_000;

/// The latest time a sample received at `received_at_ms` may carry before it is flagged as lying in
/// the future: the station's reported clock offset (either sign, at most
/// [`crate::base::time::MAX_CLOCK_OFFSET_MS`]) plus [`FUTURE_MARGIN_MS`]. Saturating: no offset
/// a station reports can wrap the limit into the past.
fn future_limit_ms(received_at_ms: i64, clock_offset_ms: i64) -> i64 {
    let offset = crate::base::time::bounded_clock_offset_ms(clock_offset_ms).saturating_abs();
    received_at_ms
        .saturating_add(offset)
        .saturating_add(FUTURE_MARGIN_MS)
}

/// What became of a bundle whose processing failed.
enum Deferral {
    /// It waits for another attempt.
    Later,
    /// It failed [`MAX_ATTEMPTS`] times and is quarantined.
    SetAside,
}

pub struct Decoder {
    ctx: Context,
    pseudonyms: Pseudonymiser,
    memory: MemoryBudget,
    /// The decode lease of the pass under way ([`pass`]): a batch commits only while it is held.
    lease: std::sync::Mutex<Option<crate::base::lease::Lease>>,
}

impl Decoder {
    /// Bundles written together in one batch (see [`Batch`]), unless they reach its row limit.
    pub const BATCH_BUNDLES: usize = 64;
    /// Bundles opened at a time per core (see [`Decoder::open_all`]): enough to even out their
    /// sizes, few enough that the writer gets its first batch soon.
    const OPEN_PER_CORE: usize = 4;

    pub fn new(ctx: Context, pseudonyms: Pseudonymiser) -> Self {
        Self {
            ctx,
            pseudonyms,
            memory: MemoryBudget::new(),
            lease: std::sync::Mutex::new(None),
        }
    }

    /// The server's age identities, read afresh for every pass so `nachtwacht keys rotate` takes
    /// effect without a restart. All are tried: bundles sealed to a retired recipient still open.
    fn identities(&self) -> Result<Vec<age::x25519::Identity>> {
        Ok(crate::trust::secrets::load_age_identities(
            &self.ctx.dir.age_identity(),
        )?)
    }

    /// Processes every spooled bundle. Blocking: run on a blocking thread.
    pub fn process_pending(&self) -> Result<DecodeReport> {
        let pending: Vec<Pending> = {
            let conn = self.ctx.db.lock();
            let mut stmt = conn.prepare(
                "SELECT bundle_id, received_at_ms, sha256, segment, segment_offset, size
                   FROM bundles
                  WHERE state = ?2 AND (next_attempt_ms IS NULL OR next_attempt_ms <= ?1)
                  ORDER BY received_at_ms, bundle_id",
            )?;

            stmt.query_map(
                crate::params![crate::base::time::now_ms(), BundleState::Spooled],
                |r| {
                    Ok(Pending {
                        bundle_id: r.get(0)?,
                        received_at_ms: r.get(1)?,
                        sha256: r.get(2)?,
                        segment: r.get(3)?,
                        segment_offset: r.get(4)?,
                        size: r.get(5)?,
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?
        };
        if pending.is_empty() {
            return Ok(DecodeReport::default());
        }
        let identities = self.identities()?;
        // Two stages: this thread opens bundles (read, decrypt, verify, decode, validate,
        // pseudonymise) while a writer commits the previous batch (Parquet, fsync, catalogue).
        // Each spreads its work over the cores (`open_all`, `write_signals`). One batch waits
        // between them at most, which bounds memory.
        let (to_writer, batches) = std::sync::mpsc::sync_channel::<Batch>(1);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> Result<DecodeReport> {
                let mut report = DecodeReport::default();
                for batch in batches {
                    self.commit_or_split(batch, &mut report)?;
                }
                Ok(report)
            });
            let opened = self.open_all(pending, &identities, to_writer);
            let mut report = writer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            let (quarantined, deferred) = opened?;
            report.quarantined += quarantined;
            report.deferred += deferred;
            Ok(report)
        })
    }

    /// The opening stage: processes bundles in order, quarantines the bad ones, defers the ones
    /// whose processing failed, and hands the accepted ones to the writer in batches. Returns how
    /// many were quarantined and deferred. Stops early if the writer has stopped (its error is the
    /// one reported).
    fn open_all(
        &self,
        pending: Vec<Pending>,
        identities: &[age::x25519::Identity],
        to_writer: std::sync::mpsc::SyncSender<Batch>,
    ) -> Result<(usize, usize)> {
        let mut counts = (0, 0);
        let mut batch = Batch::default();
        let pending: Vec<(BundleId, Keys)> = pending
            .into_iter()
            .filter_map(|p| {
                let id = BundleId::from_hex(&p.bundle_id)?;
                let keys = Keys {
                    spooled: crate::spool::Location::of_row(
                        &id,
                        &p.sha256,
                        p.segment.as_deref(),
                        p.segment_offset,
                        p.size,
                    ),
                    evidence: Key::evidence(&id, p.received_at_ms),
                    received_at_ms: p.received_at_ms,
                };
                Some((id, keys))
            })
            .collect();
        // A few bundles per core are opened at a time, in parallel; their outcomes are then taken
        // in spool order, so batches and quarantine decisions are what a sequential pass makes.
        for chunk in pending.chunks(Self::OPEN_PER_CORE * crate::base::parallel::cores()) {
            let opened = crate::base::parallel::map_in_order(chunk, |(bundle_id, keys)| {
                match catching(|| self.process(bundle_id, keys, identities)) {
                    Ok(Ok(Ok(processed))) => Ok(Opened::Accepted(processed)),
                    Ok(Ok(Err(reject))) => Ok(Opened::Rejected(reject)),
                    Ok(Err(e)) if e.is_environmental() => Err(e),
                    Ok(Err(e)) => Ok(Opened::Failed(e.to_string())),
                    Err(panic) => Ok(Opened::Failed(panic)),
                }
            });
            for ((bundle_id, keys), outcome) in chunk.iter().zip(opened) {
                self.take_opened(*bundle_id, keys.clone(), outcome?, &mut batch, &mut counts)?;
                if batch.is_full() && to_writer.send(std::mem::take(&mut batch)).is_err() {
                    return Ok(counts);
                }
            }
        }
        if !batch.bundles.is_empty() {
            // An error here means the writer stopped; it reports why.
            let _ = to_writer.send(batch);
        }
        Ok(counts)
    }

    /// Files one opened bundle: into the batch if accepted, into quarantine if rejected, back to
    /// wait (or, after [`MAX_ATTEMPTS`], into quarantine) if processing failed.
    /// `counts` is (quarantined, deferred).
    fn take_opened(
        &self,
        bundle_id: BundleId,
        keys: Keys,
        outcome: Opened,
        batch: &mut Batch,
        counts: &mut (usize, usize),
    ) -> Result<()> {
        match outcome {
            Opened::Accepted(processed) => {
                batch.rows += processed.stored;
                batch.bundles.push((bundle_id, keys, processed));
            }
            Opened::Rejected(Reject { reason, person }) => {
                counts.0 += 1;
                self.quarantine(&bundle_id, &keys.spooled, &reason)?;
                if let Some(person) = person {
                    self.ctx.db.lock().execute(
                        "UPDATE bundles SET person_id = ?2 WHERE bundle_id = ?1",
                        crate::params![bundle_id.to_hex(), person],
                    )?;
                }
                warn!(bundle = %bundle_id, %reason, "bundle quarantined");
            }
            Opened::Failed(error) => match self.record_failure(&bundle_id, &keys, &error)? {
                Deferral::Later => counts.1 += 1,
                Deferral::SetAside => counts.0 += 1,
            },
        }
        Ok(())
    }

    /// Counts an unexpected failure against a bundle: it is tried again after a back-off, and
    /// quarantined with the failure as its reason once it has failed [`MAX_ATTEMPTS`] times.
    fn record_failure(&self, bundle_id: &BundleId, keys: &Keys, error: &str) -> Result<Deferral> {
        let error: String = error.chars().take(2_000).collect();
        let attempts: i64 = {
            let mut conn = self.ctx.db.lock();
            let tx = conn.transaction()?;
            let attempts: i64 = tx.query_row(
                "UPDATE bundles SET attempts = attempts + 1, last_error = ?2
                  WHERE bundle_id = ?1 RETURNING attempts",
                crate::params![bundle_id.to_hex(), error],
                |r| r.get(0),
            )?;
            tx.execute(
                "UPDATE bundles SET next_attempt_ms = ?2 WHERE bundle_id = ?1",
                crate::params![
                    bundle_id.to_hex(),
                    crate::base::time::now_ms() + retry_delay_ms(attempts)
                ],
            )?;
            tx.commit()?;
            attempts
        };
        if attempts >= MAX_ATTEMPTS {
            let reason = format!("processing failed {attempts} times; last: {error}");
            warn!(bundle = %bundle_id, %reason, "bundle set aside");
            self.quarantine(bundle_id, &keys.spooled, &reason)?;
            Ok(Deferral::SetAside)
        } else {
            warn!(bundle = %bundle_id, attempts, %error, "bundle processing failed; will retry");
            Ok(Deferral::Later)
        }
    }

    /// Commits a batch; if that fails other than by the machine (see [`Error::is_environmental`]),
    /// or panics, commits its bundles one by one, so only the bundle at fault is charged.
    fn commit_or_split(&self, batch: Batch, report: &mut DecodeReport) -> Result<()> {
        let failure = match catching(|| self.commit(&batch, report)) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if e.is_environmental() => return Err(e),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic,
        };
        if batch.bundles.len() == 1 {
            let (bundle_id, keys, _) = &batch.bundles[0];
            match self.record_failure(bundle_id, keys, &failure)? {
                Deferral::Later => report.deferred += 1,
                Deferral::SetAside => report.quarantined += 1,
            }
            return Ok(());
        }
        warn!(bundles = batch.bundles.len(), %failure, "batch failed; committing its bundles one by one");
        for one in batch.bundles {
            let rows = one.2.stored;
            self.commit_or_split(
                Batch {
                    bundles: vec![one],
                    rows,
                },
                report,
            )?;
        }
        Ok(())
    }

    /// Writes a batch's rows, moves its ciphertexts to evidence, then catalogues the files and
    /// marks its bundles processed in one transaction.
    ///
    /// Crash safety: until the transaction commits, the bundles stay `spooled` (a move to evidence
    /// is followed, on the next pass, by reading the ciphertext from there) and the files written
    /// are uncatalogued orphans, which readers never see and the next compaction removes. The next
    /// pass writes the rows again, under the same file names if it batches the same bundles.
    fn commit(&self, batch: &Batch, report: &mut DecodeReport) -> Result<()> {
        if batch.bundles.is_empty() {
            return Ok(());
        }
        let mut by_signal: BTreeMap<Signal, Vec<(BundleId, RecordBatch)>> = BTreeMap::new();
        for (bundle_id, _, processed) in &batch.bundles {
            for (signal, rows) in &processed.rows {
                by_signal
                    .entry(*signal)
                    .or_default()
                    .push((*bundle_id, rows.clone()));
            }
        }
        let files = write_signals(&self.ctx.blobs, &by_signal)?;
        let moves: Vec<_> = batch
            .bundles
            .iter()
            .map(|(_, keys, _)| (keys.spooled.clone(), keys.evidence.clone()))
            .collect();
        crate::spool::Location::move_all(&self.ctx.blobs, &moves)?;
        let now = crate::base::time::now_ms();
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut conn = self.ctx.db.lock();
        let tx = conn.transaction()?;
        // Fencing: a decoder whose lease ran out (it stalled; another process decodes now)
        // commits nothing. The files it wrote are uncatalogued and compaction removes them.
        if let Some(lease) = &lease {
            if !lease.held_in(&tx)? {
                return Err(Error::LeaseLost);
            }
        }
        for (bundle_id, _, p) in &batch.bundles {
            tx.execute(
                "UPDATE bundles SET state = ?8, rows_stored = ?2, rows_discarded = ?3, processed_at_ms = ?4,
                        signed_by = ?5, rows_flagged = ?6, flags = ?7, next_attempt_ms = NULL,
                        person_id = ?9
                 WHERE bundle_id = ?1",
                crate::params![
                    bundle_id.to_hex(),
                    p.stored as i64,
                    p.discarded as i64,
                    now,
                    p.signed_by,
                    p.flags.flagged as i64,
                    p.flags.to_json(),
                    BundleState::Processed,
                    p.person
                ],
            )?;
        }
        for file in &files {
            dataset::catalog_insert(&tx, file, "bundle", now)?;
        }
        let decoded = {
            let mut stmt = tx.prepare_cached("SELECT sha256 FROM bundles WHERE bundle_id = ?1")?;
            batch
                .bundles
                .iter()
                .map(|(id, _, _)| {
                    let hex = id.to_hex();
                    stmt.query_row([&hex], |r| r.get::<_, String>(0))
                        .map(|sha| (hex, sha))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        audit::custody::record(&tx, now, audit::custody::CustodyStep::Decoded, &decoded)?;
        tx.commit()?;
        let segments: Vec<Key> = batch
            .bundles
            .iter()
            .filter_map(|(_, keys, _)| keys.spooled.segment().cloned())
            .collect();
        crate::spool::release_segments(&self.ctx.blobs, &conn, &segments)?;
        drop(conn);
        for (bundle_id, _, p) in &batch.bundles {
            report.processed += 1;
            report.rows_stored += p.stored;
            report.rows_discarded += p.discarded;
            report.rows_flagged += p.flags.flagged;
            debug!(bundle = %bundle_id, rows = p.stored, discarded = p.discarded, flagged = p.flags.flagged, "bundle processed");
        }
        info!(
            bundles = batch.bundles.len(),
            rows = batch.rows,
            files = files.len(),
            "decode batch committed"
        );
        Ok(())
    }

    /// Moves a bundle to `quarantine/` with its reason. Crash-safe in this order: the reason file
    /// is written durably first, then the ciphertext is moved, then the row updated. A crash after
    /// the move leaves a `spooled` row whose file is in `quarantine/`; the next pass finishes the
    /// quarantine with the recorded reason (see [`Decoder::process`]).
    fn quarantine(
        &self,
        bundle_id: &BundleId,
        spooled: &crate::spool::Location,
        reason: &str,
    ) -> Result<()> {
        crate::decode::quarantine::move_in(&self.ctx.blobs, bundle_id, spooled, reason)?;
        let conn = self.ctx.db.lock();
        conn.execute(
            "UPDATE bundles SET state = ?4, reason = ?2, processed_at_ms = ?3, next_attempt_ms = NULL
              WHERE bundle_id = ?1",
            crate::params![
                bundle_id.to_hex(),
                reason,
                crate::base::time::now_ms(),
                BundleState::Quarantined
            ],
        )?;
        if let Some(segment) = spooled.segment() {
            crate::spool::release_segments(&self.ctx.blobs, &conn, std::slice::from_ref(segment))?;
        }
        Ok(())
    }
}

/// Exclusive right to decode and compact in this data directory, across processes: `serve` and a
/// standalone `nachtwacht decode` may both run, but never decode or compact at the same moment
/// (compaction deletes uncatalogued files, which another decoder may just have written).
pub struct DecodeLock {
    _file: std::fs::File,
}

impl DecodeLock {
    /// Blocks until the lock is free. Released when dropped (or when the process dies).
    pub fn acquire(dir: &crate::base::datadir::DataDir) -> Result<Self> {
        let path = dir.root().join("decode.lock");
        let file = crate::base::datadir::lock_file(&path, libc::LOCK_EX)
            .map_err(|source| crate::base::fsio::Error {
                path: path.display().to_string(),
                source,
            })?
            .expect("a blocking flock either locks or fails");
        Ok(Self { _file: file })
    }
}

/// How long a decode lease lasts without renewal (it is renewed every third of it while a pass
/// runs): how long a dead decoder's bundles wait for another process.
pub const LEASE_TTL_MS: i64 = 30_000;

/// One decode pass and one compaction pass under the [`DecodeLock`] and the decode lease.
/// Blocking.
pub fn pass(decoder: &Decoder) -> Result<(DecodeReport, dataset::CompactionReport)> {
    let _lock = DecodeLock::acquire(&decoder.ctx.dir)?;
    // Across machines: one decoder at a time holds the database's decode lease; the others
    // skip their pass. A decoder that dies releases it when it runs out.
    let Some(lease) = crate::base::lease::Lease::try_acquire(
        &decoder.ctx.db,
        crate::base::lease::Work::Decode,
        crate::base::lease::holder_name(),
        LEASE_TTL_MS,
        crate::base::time::now_ms(),
    )?
    else {
        return Ok(Default::default());
    };
    let renewing = crate::base::lease::Renewing::start(lease.clone());
    *decoder.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease);
    let report = decoder.process_pending();
    *decoder.lease.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let report = report?;
    // Still under the lease: compaction deletes uncatalogued files, which another decoder may
    // just have written.
    let policy = dataset::CompactionPolicy {
        min_files: decoder.ctx.config.pipeline.compact_min_files,
    };
    let compaction = dataset::compact(
        &decoder.ctx.dir,
        &decoder.ctx.blobs,
        &decoder.ctx.db,
        policy,
        crate::base::time::now_ms(),
    )?;
    drop(renewing);
    Ok((report, compaction))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    /// A data directory with one enrolled station and one spooled bundle (its bytes are no
    /// bundle; these tests never open it).
    fn one_spooled_bundle() -> (tempfile::TempDir, Context, BundleId) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        crate::server::init::init(
            &root,
            &crate::base::db::testing::config(crate::base::config::Config::default()),
            crate::base::time::now_ms(),
        )
        .unwrap();
        let ctx = Context::open(&root).unwrap();
        crate::registry::enroll::add_station(&ctx, "home-1", "test").unwrap();
        let id = BundleId([9; 16]);
        let body = b"ciphertext".to_vec();
        let sha256 = hex::encode(sha2::Sha256::digest(&body));
        // Where the ingest puts it: in a segment on a local disk, an object of its own on
        // object storage.
        let segment = Key::new_segment();
        match ctx.blobs.local() {
            Some(local) => local.write_segment(&segment, &[b"padding", &body]).unwrap(),
            None => ctx.blobs.put(&Key::spooled(&id, &sha256), &body).unwrap(),
        }
        crate::spool::insert_row(
            &ctx.db.lock(),
            &crate::spool::Spooled {
                bundle_id: id,
                station_id: 1,
                sequence: 1,
                size: body.len() as u64,
                sha256: &sha256,
                received_at_ms: crate::base::time::now_ms(),
                segment: ctx.blobs.local().map(|_| (&segment, 7)),
            },
        )
        .unwrap();
        (tmp, ctx, id)
    }

    /// The keys of the bundle of [`one_spooled_bundle`].
    fn keys(ctx: &Context, id: &BundleId) -> Keys {
        Keys {
            spooled: crate::spool::location(&ctx.db.lock(), id).unwrap().unwrap(),
            evidence: Key::evidence(id, 0),
            received_at_ms: 0,
        }
    }

    fn state(ctx: &Context, id: &BundleId) -> (String, i64, Option<String>) {
        ctx.db
            .lock()
            .query_row(
                "SELECT state, attempts, reason FROM bundles WHERE bundle_id = ?1",
                [id.to_hex()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    }

    /// The second line of defence: a bundle whose processing fails unexpectedly (a panic is turned
    /// into an error) waits out a back-off between attempts, is skipped by passes meanwhile, and
    /// is quarantined with the error after MAX_ATTEMPTS.
    #[test]
    fn a_bundle_that_keeps_failing_is_retried_with_back_off_then_set_aside() {
        let (_tmp, ctx, id) = one_spooled_bundle();
        let pseudonyms = crate::trust::pseudonym::Pseudonymiser::load(&ctx.dir).unwrap();
        let decoder = Decoder::new(ctx.clone(), pseudonyms);
        let panic = catching(|| -> () { panic!("day out of range") }).unwrap_err();
        assert_eq!(panic, "panic: day out of range");
        let mut batch = Batch::default();
        let mut counts = (0, 0);
        for attempt in 1..MAX_ATTEMPTS {
            decoder
                .take_opened(
                    id,
                    keys(&ctx, &id),
                    Opened::Failed(panic.clone()),
                    &mut batch,
                    &mut counts,
                )
                .unwrap();
            assert_eq!(state(&ctx, &id), ("spooled".into(), attempt, None));
            // In its back-off the bundle is not attempted: a pass finds nothing to do.
            assert_eq!(decoder.process_pending().unwrap(), DecodeReport::default());
        }
        assert_eq!(counts, (0, MAX_ATTEMPTS as usize - 1));
        decoder
            .take_opened(
                id,
                keys(&ctx, &id),
                Opened::Failed(panic),
                &mut batch,
                &mut counts,
            )
            .unwrap();
        let (st, attempts, reason) = state(&ctx, &id);
        assert_eq!((st.as_str(), attempts), ("quarantined", MAX_ATTEMPTS));
        assert!(reason
            .unwrap()
            .contains("processing failed 5 times; last: panic: day out of range"));
        assert!(ctx.blobs.exists(&Key::quarantined(&id)).unwrap());
        // The operator sends it back: attempts start again.
        crate::decode::quarantine::retry(&ctx, &id.to_hex(), "test").unwrap();
        assert_eq!(state(&ctx, &id).0, "spooled");
        assert_eq!(state(&ctx, &id).1, 0);
        assert_eq!(retry_delay_ms(1), 30_000);
        assert_eq!(retry_delay_ms(4), 240_000);
    }

    /// An operator can set aside a bundle that waits to be decoded, with a reason, and send it back.
    #[test]
    fn an_operator_quarantines_a_waiting_bundle_by_id_and_retries_it() {
        let (_tmp, ctx, id) = one_spooled_bundle();
        assert!(matches!(
            crate::decode::quarantine::put(&ctx, &id.to_hex(), "  ", "test"),
            Err(crate::decode::quarantine::Error::NoReason)
        ));
        crate::decode::quarantine::put(&ctx, &id.to_hex(), "suspected poison", "test").unwrap();
        let (st, _, reason) = state(&ctx, &id);
        assert_eq!(st, "quarantined");
        assert_eq!(reason.unwrap(), "quarantined by test: suspected poison");
        // Out of the spool: an object is moved, a segment none of whose bundles waits is gone.
        let spooled = keys(&ctx, &id).spooled;
        assert_eq!(spooled.read(&ctx.blobs).unwrap(), None, "{spooled:?}");
        assert_eq!(
            ctx.blobs.get(&Key::quarantined(&id)).unwrap().as_deref(),
            Some(&b"ciphertext"[..])
        );
        // Only a waiting bundle can be put aside.
        assert!(crate::decode::quarantine::put(&ctx, &id.to_hex(), "again", "test").is_err());
        crate::decode::quarantine::retry(&ctx, &id.to_hex(), "test").unwrap();
        assert_eq!(state(&ctx, &id).0, "spooled");
        // Back in the spool as an object of its own, whatever it was before.
        let back = keys(&ctx, &id).spooled;
        assert!(back.segment().is_none(), "{back:?}");
        assert_eq!(
            back.read(&ctx.blobs).unwrap().as_deref(),
            Some(&b"ciphertext"[..])
        );
        let audited: i64 = ctx
            .db
            .lock()
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action IN ('quarantine.put', 'quarantine.retry')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(audited, 2);
    }

    #[test]
    fn no_reported_clock_offset_moves_the_future_limit_into_the_past() {
        let received = 1_700_000_000_000;
        for offset in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX] {
            let limit = future_limit_ms(received, offset);
            assert!(
                limit >= received + FUTURE_MARGIN_MS,
                "offset {offset}: {limit}"
            );
            assert!(
                limit <= received + crate::base::time::MAX_CLOCK_OFFSET_MS + FUTURE_MARGIN_MS,
                "offset {offset}: {limit}"
            );
        }
        assert_eq!(
            future_limit_ms(received, -60_000),
            received + 60_000 + FUTURE_MARGIN_MS
        );
    }
}
