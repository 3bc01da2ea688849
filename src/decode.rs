//! The decode worker: from spooled ciphertext to pseudonymised Parquet.
//!
//! For each `spooled` bundle: decrypt with the server's age identities, decode the v1 bundle, find
//! the person the device is assigned to, keep only the signals that person's programme may collect
//! (the rest are counted and discarded), replace the device with the operational pseudonym, and
//! write the rows (see [`crate::dataset`]). The bundle becomes `processed`.
//!
//! Anything that fails is *quarantined*, never dropped: the ciphertext moves to `quarantine/` with a
//! `.reason` file and the bundle row records the reason. The worker is restartable at any point:
//! dataset files are keyed by bundle id, so processing a bundle twice writes nothing twice.

use std::collections::BTreeSet;

use nachtwacht_wire::bundle::decode_bundle;
use nachtwacht_wire::BundleId;
use rusqlite::OptionalExtension;
use tracing::{info, warn};

use crate::dataset;
use crate::pseudonym::Pseudonymiser;
use crate::server::Context;
use crate::spool::{write_durably, Spool};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    #[error(transparent)]
    Dataset(#[from] dataset::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a bundle cannot be processed: becomes its quarantine reason.
#[derive(Debug)]
struct Reject(String);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeReport {
    pub processed: usize,
    pub quarantined: usize,
    pub rows_stored: usize,
    pub rows_discarded: usize,
}

pub struct Decoder {
    ctx: Context,
    spool: Spool,
    identities: Vec<age::x25519::Identity>,
    pseudonyms: Pseudonymiser,
}

impl Decoder {
    pub fn new(
        ctx: Context,
        identities: Vec<age::x25519::Identity>,
        pseudonyms: Pseudonymiser,
    ) -> Self {
        let spool = Spool::new(ctx.dir.spool(), ctx.db.clone());
        Self {
            ctx,
            spool,
            identities,
            pseudonyms,
        }
    }

    /// Processes every spooled bundle. Blocking: run on a blocking thread.
    pub fn process_pending(&self) -> Result<DecodeReport> {
        let pending: Vec<String> = {
            let conn = self.ctx.db.lock();
            let mut stmt = conn.prepare(
                "SELECT bundle_id FROM bundles WHERE state = 'spooled' ORDER BY received_at_ms, bundle_id",
            )?;
            let ids = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            ids
        };
        let mut report = DecodeReport::default();
        for id in pending {
            let Some(bundle_id) = BundleId::from_hex(&id) else {
                continue;
            };
            match self.process(&bundle_id)? {
                Ok((stored, discarded)) => {
                    report.processed += 1;
                    report.rows_stored += stored;
                    report.rows_discarded += discarded;
                    self.ctx.db.lock().execute(
                        "UPDATE bundles SET state = 'processed', rows_stored = ?2, rows_discarded = ?3, processed_at_ms = ?4
                         WHERE bundle_id = ?1",
                        rusqlite::params![id, stored as i64, discarded as i64, crate::now_ms()],
                    )?;
                    info!(bundle = %id, rows = stored, discarded, "bundle processed");
                }
                Err(Reject(reason)) => {
                    report.quarantined += 1;
                    self.quarantine(&bundle_id, &reason)?;
                    warn!(bundle = %id, %reason, "bundle quarantined");
                }
            }
        }
        Ok(report)
    }

    fn quarantine(&self, bundle_id: &BundleId, reason: &str) -> Result<()> {
        let qdir = self.ctx.dir.quarantine();
        std::fs::create_dir_all(&qdir).map_err(|source| crate::spool::Error::Io {
            path: qdir.display().to_string(),
            source,
        })?;
        write_durably(&qdir.join(format!("{bundle_id}.reason")), reason.as_bytes())?;
        let from = self.spool.path_of(bundle_id);
        let to = qdir.join(format!("{bundle_id}.age"));
        if from.exists() {
            std::fs::rename(&from, &to).map_err(|source| crate::spool::Error::Io {
                path: to.display().to_string(),
                source,
            })?;
            crate::spool::sync_dir(&qdir)?;
        }
        self.ctx.db.lock().execute(
            "UPDATE bundles SET state = 'quarantined', reason = ?2, processed_at_ms = ?3 WHERE bundle_id = ?1",
            rusqlite::params![bundle_id.to_hex(), reason, crate::now_ms()],
        )?;
        Ok(())
    }

    /// Outer error: the server failed (retry later). Inner error: the bundle is bad (quarantine).
    fn process(&self, bundle_id: &BundleId) -> Result<Result<(usize, usize), Reject>> {
        let path = self.spool.path_of(bundle_id);
        let ciphertext = match std::fs::read(&path) {
            Ok(c) => c,
            Err(e) => return Ok(Err(Reject(format!("spool file unreadable: {e}")))),
        };
        let plaintext = match age::Decryptor::new_buffered(&ciphertext[..])
            .and_then(|d| d.decrypt(self.identities.iter().map(|i| i as &dyn age::Identity)))
        {
            Ok(mut reader) => {
                let mut out = Vec::new();
                if let Err(e) = std::io::Read::read_to_end(&mut reader, &mut out) {
                    return Ok(Err(Reject(format!("decryption failed: {e}"))));
                }
                out
            }
            Err(e) => return Ok(Err(Reject(format!("decryption failed: {e}")))),
        };
        let bundle = match decode_bundle(&plaintext) {
            Ok(b) => b,
            Err(e) => return Ok(Err(Reject(format!("invalid bundle: {e}")))),
        };
        if bundle.manifest.bundle_id != *bundle_id {
            return Ok(Err(Reject(format!(
                "manifest bundle id {} differs from the uploaded id",
                bundle.manifest.bundle_id
            ))));
        }
        let first_ts = bundle
            .batches
            .iter()
            .filter_map(|b| {
                b.batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::TimestampMillisecondArray>()
                    .and_then(arrow::compute::min)
            })
            .min();
        let Some(first_ts) = first_ts else {
            return Ok(Ok((0, 0)));
        };
        let serial = &bundle.manifest.device_serial;
        let assignment: Option<(i64, String)> = self
            .ctx
            .db
            .lock()
            .query_row(
                "SELECT p.id, pr.signals FROM assignments a
               JOIN persons p ON p.id = a.person_id
               JOIN programmes pr ON pr.name = p.programme
              WHERE a.device_serial = ?1 AND a.valid_from_ms <= ?2
                AND (a.valid_to_ms IS NULL OR a.valid_to_ms > ?2)
              ORDER BY a.valid_from_ms DESC LIMIT 1",
                rusqlite::params![serial, first_ts],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((person_id, allowed)) = assignment else {
            return Ok(Err(Reject(format!(
                "device {serial} is not assigned to a person at {first_ts} ms"
            ))));
        };
        let allowed: BTreeSet<&str> = allowed.split(',').collect();
        let pid = self.pseudonyms.operational(person_id);
        let (mut stored, mut discarded) = (0, 0);
        for sb in &bundle.batches {
            if allowed.contains(sb.signal.name()) {
                stored +=
                    dataset::write_signal(&self.ctx.dir, sb.signal, bundle_id, &pid, &sb.batch)?;
            } else {
                // Purpose binding: collected by the device, not allowed by the programme.
                discarded += sb.batch.num_rows();
            }
        }
        Ok(Ok((stored, discarded)))
    }
}
