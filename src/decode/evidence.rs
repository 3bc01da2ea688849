//! The evidence store: each processed bundle's original ciphertext kept under `evidence/` (in the
//! ciphertext store, [`crate::base::blobs`]) for the
//! retention the policy sets (chain of custody, `retention.toml` `[evidence]`), and pruned after it
//! by the retention run (`crate::lifecycle::retention`).

use super::*;

/// Deletes evidence copies received more than `keep_days` before `now_ms`, except those of
/// bundles in `held` (under a legal hold), and records it in the bundle rows and the audit log.
/// Quarantined ciphertexts are not touched: their own retention applies. With `dry_run`, only
/// counts. Returns how many copies are (or would be) deleted.
pub fn prune_evidence(
    ctx: &Context,
    now_ms: i64,
    keep_days: u32,
    held: &std::collections::BTreeSet<String>,
    dry_run: bool,
) -> Result<usize> {
    let cutoff = now_ms - i64::from(keep_days) * crate::base::time::DAY_MS;
    let due: Vec<(String, i64)> = {
        let conn = ctx.db.lock();
        let mut stmt = conn.prepare(
            "SELECT bundle_id, received_at_ms FROM bundles
              WHERE state = ?2 AND evidence_pruned_at_ms IS NULL AND received_at_ms < ?1",
        )?;
        let rows = stmt
            .query_map(
                crate::params![cutoff, crate::spool::BundleState::Processed],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .filter(|(id, _)| !held.contains(id))
            .collect()
    };
    if due.is_empty() || dry_run {
        return Ok(due.len());
    }
    for (id, received_at_ms) in &due {
        if let Some(bundle_id) = BundleId::from_hex(id) {
            ctx.blobs
                .remove(&Key::evidence(&bundle_id, *received_at_ms))?;
        }
    }
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    for (id, _) in &due {
        tx.execute(
            "UPDATE bundles SET evidence_pruned_at_ms = ?2 WHERE bundle_id = ?1",
            (id, now_ms),
        )?;
    }
    crate::trust::audit::append(
        &tx,
        now_ms,
        "system",
        "evidence.prune",
        "evidence",
        &format!(
            "{{\"bundles\":{},\"retention_days\":{}}}",
            due.len(),
            keep_days
        ),
    )?;
    tx.commit()?;
    Ok(due.len())
}
