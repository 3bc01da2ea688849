//! Quarantined bundles: what the decode worker could not process, kept with its reason.
//!
//! A bundle lands in `quarantine/<bundle id>.age` (in the ciphertext store,
//! [`crate::base::blobs`]) with a `.reason` object next to it, and its row
//! in `bundles` says `quarantined` with the same reason. Nothing is dropped: once the cause is
//! fixed (a device assigned or paired, a key restored) an operator sends it back through decoding
//! with `nachtwacht quarantine retry`. Listing, showing and retrying are audited: a quarantined
//! bundle is personal data waiting for a decision.

use nachtwacht_wire::BundleId;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::base::blobs::{Blobs, Key};
use crate::base::Context;
use crate::spool::BundleState;
use crate::trust::audit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no quarantined bundle {0}")]
    NotQuarantined(String),
    #[error("no bundle {0} waiting to be decoded")]
    NotSpooled(String),
    #[error("a reason is required")]
    NoReason,
    #[error("bundle {bundle}: the quarantined file does not match the digest recorded at receipt ({found} instead of {expected}); not retried")]
    DigestMismatch {
        bundle: String,
        expected: String,
        found: String,
    },
    #[error("bundle {bundle}: its ciphertext {key} is gone; not retried")]
    Missing { bundle: String, key: String },
    #[error(transparent)]
    Storage(#[from] crate::base::blobs::Error),
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    #[error(transparent)]
    File(#[from] crate::base::fsio::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub bundle_id: String,
    pub station: String,
    pub sequence: i64,
    pub size: i64,
    pub sha256: String,
    pub received_at_ms: i64,
    pub quarantined_at_ms: Option<i64>,
    pub reason: String,
    pub retries: i64,
    /// Whether the ciphertext is present in `quarantine/`.
    pub file_present: bool,
}

/// The classes of quarantine reasons, for metrics: a closed set however the reasons are worded.
pub const REASON_CLASSES: [&str; 7] = [
    "decryption",
    "signature",
    "invalid-bundle",
    "registry",
    "storage",
    "processing",
    "other",
];

/// The class of a quarantine reason (one of [`REASON_CLASSES`]), from how the decoder words it.
pub fn reason_class(reason: &str) -> &'static str {
    let r = reason.trim_start();
    let starts = |p: &str| r.starts_with(p);
    if starts("decryption failed") {
        "decryption"
    } else if starts("signed envelope")
        || starts("signed as")
        || starts("signature")
        || starts("uploading station has no registered signing key")
    {
        "signature"
    } else if starts("invalid bundle") || starts("manifest") {
        "invalid-bundle"
    } else if starts("supervision ended") || starts("device ") {
        "registry"
    } else if starts("spool file unreadable") {
        "storage"
    } else if starts("processing failed") {
        "processing"
    } else {
        "other"
    }
}

fn entries(ctx: &Context, bundle: Option<&str>) -> Result<Vec<Entry>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(
        "SELECT b.bundle_id, s.name, b.sequence, b.size, b.sha256, b.received_at_ms, b.processed_at_ms,
                coalesce(b.reason, ''), b.retries
           FROM bundles b JOIN stations s ON s.id = b.station_id
          WHERE b.state = ?2 AND (?1 IS NULL OR b.bundle_id = ?1)
          ORDER BY b.received_at_ms, b.bundle_id",
    )?;
    let rows = stmt
        .query_map(crate::params![bundle, BundleState::Quarantined], |r| {
            Ok(Entry {
                bundle_id: r.get(0)?,
                station: r.get(1)?,
                sequence: r.get(2)?,
                size: r.get(3)?,
                sha256: r.get(4)?,
                received_at_ms: r.get(5)?,
                quarantined_at_ms: r.get(6)?,
                reason: r.get(7)?,
                retries: r.get(8)?,
                file_present: false,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    drop(conn);
    rows.into_iter()
        .map(|mut e| {
            if let Some(id) = BundleId::from_hex(&e.bundle_id) {
                e.file_present = ctx.blobs.exists(&Key::quarantined(&id))?;
            }
            Ok(e)
        })
        .collect()
}

/// Moves a waiting bundle's ciphertext into `quarantine/` beside its reason, in the order that
/// survives a crash: the reason file durably first, then the move. The caller updates the row
/// after; a decode pass that finds the file moved but the row still `spooled` finishes the
/// quarantine with the recorded reason (`decode`), so a kill between the two loses nothing.
pub(crate) fn move_in(
    blobs: &Blobs,
    bundle_id: &BundleId,
    spooled: &crate::spool::Location,
    reason: &str,
) -> crate::spool::Result<()> {
    blobs.put(&Key::quarantine_reason(bundle_id), reason.as_bytes())?;
    crate::spool::Location::move_all(blobs, &[(spooled.clone(), Key::quarantined(bundle_id))])?;
    if blobs.exists(&Key::quarantined(bundle_id))? {
        crate::base::failpoint::hit(crate::base::failpoint::Point::QuarantineAfterMove);
    }
    Ok(())
}

/// Every quarantined bundle, oldest first.
pub fn list(ctx: &Context, actor: &str) -> Result<Vec<Entry>> {
    let all = entries(ctx, None)?;
    let conn = ctx.db.lock();
    audit::append(
        &conn,
        crate::base::time::now_ms(),
        actor,
        "quarantine.list",
        "quarantine",
        &format!("{{\"bundles\":{}}}", all.len()),
    )?;
    Ok(all)
}

/// One quarantined bundle.
pub fn show(ctx: &Context, bundle: &str, actor: &str) -> Result<Entry> {
    let entry = entries(ctx, Some(bundle))?
        .pop()
        .ok_or_else(|| Error::NotQuarantined(bundle.into()))?;
    let conn = ctx.db.lock();
    audit::append(
        &conn,
        crate::base::time::now_ms(),
        actor,
        "quarantine.show",
        &format!("bundle:{bundle}"),
        "{}",
    )?;
    Ok(entry)
}

/// Sends a quarantined bundle back to the spool for another decode attempt, after checking that
/// the file is byte for byte what was received. The decode worker picks it up on its next pass.
pub fn retry(ctx: &Context, bundle: &str, actor: &str) -> Result<()> {
    let entry = entries(ctx, Some(bundle))?
        .pop()
        .ok_or_else(|| Error::NotQuarantined(bundle.into()))?;
    let id = BundleId::from_hex(bundle).ok_or_else(|| Error::NotQuarantined(bundle.into()))?;
    let (quarantined, spooled) = (Key::quarantined(&id), Key::spooled(&id, &entry.sha256));
    // A retry interrupted after the move finds the ciphertext in the spool already.
    let bytes = match ctx.blobs.get(&quarantined)? {
        Some(bytes) => Some(bytes),
        None => ctx.blobs.get(&spooled)?,
    }
    .ok_or_else(|| Error::Missing {
        bundle: bundle.into(),
        key: quarantined.to_string(),
    })?;
    let found = hex::encode(Sha256::digest(&bytes));
    if found != entry.sha256 {
        return Err(Error::DigestMismatch {
            bundle: bundle.into(),
            expected: entry.sha256,
            found,
        });
    }
    ctx.blobs.move_all(&[(quarantined, spooled)])?;
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let n = tx.execute(
        "UPDATE bundles SET state = ?2, retries = retries + 1, processed_at_ms = NULL,
                attempts = 0, last_error = NULL, next_attempt_ms = NULL,
                segment = NULL, segment_offset = NULL
          WHERE bundle_id = ?1 AND state = ?3",
        crate::params![bundle, BundleState::Spooled, BundleState::Quarantined],
    )?;
    if n == 0 {
        return Err(Error::NotQuarantined(bundle.into()));
    }
    audit::append(
        &tx,
        crate::base::time::now_ms(),
        actor,
        "quarantine.retry",
        &format!("bundle:{bundle}"),
        &serde_json::json!({ "previous_reason": entry.reason }).to_string(),
    )?;
    tx.commit()?;
    // The reason file stays until the retry's outcome replaces it (quarantined again) — it is
    // evidence of what happened — but it no longer describes a file in quarantine/.
    ctx.blobs.move_all(&[(
        Key::quarantine_reason(&id),
        Key::retried_reason(&id, entry.retries + 1),
    )])?;
    Ok(())
}

/// Quarantines a bundle that waits to be decoded, by hand: an operator sets aside a bundle that
/// keeps failing (see `decode::MAX_ATTEMPTS`) without waiting for its attempts to run out, or one
/// that must not be processed. It can be sent back with [`retry`]. Audited.
pub fn put(ctx: &Context, bundle: &str, reason: &str, actor: &str) -> Result<()> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::NoReason);
    }
    let reason = format!("quarantined by {actor}: {reason}");
    let id = BundleId::from_hex(bundle).ok_or_else(|| Error::NotSpooled(bundle.into()))?;
    let state: Option<BundleState> = {
        use crate::base::db::OptionalExtension;
        ctx.db
            .lock()
            .query_row(
                "SELECT state FROM bundles WHERE bundle_id = ?1",
                [bundle],
                |r| r.get(0),
            )
            .optional()?
    };
    let location = crate::spool::location(&ctx.db.lock(), &id)?;
    let (Some(BundleState::Spooled), Some(spooled)) = (state, location) else {
        return Err(Error::NotSpooled(bundle.into()));
    };
    move_in(&ctx.blobs, &id, &spooled, &reason)?;
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let n = tx.execute(
        "UPDATE bundles SET state = ?4, reason = ?2, processed_at_ms = ?3, next_attempt_ms = NULL
          WHERE bundle_id = ?1 AND state = ?5",
        crate::params![
            bundle,
            reason,
            crate::base::time::now_ms(),
            BundleState::Quarantined,
            BundleState::Spooled
        ],
    )?;
    if n == 0 {
        return Err(Error::NotSpooled(bundle.into()));
    }
    audit::append(
        &tx,
        crate::base::time::now_ms(),
        actor,
        "quarantine.put",
        &format!("bundle:{bundle}"),
        &serde_json::json!({ "reason": crate::trust::audit::bounded(&reason) }).to_string(),
    )?;
    tx.commit()?;
    if let Some(segment) = spooled.segment() {
        crate::spool::release_segments(&ctx.blobs, &conn, std::slice::from_ref(segment))?;
    }
    Ok(())
}
