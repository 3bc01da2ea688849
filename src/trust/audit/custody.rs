//! The chain of custody of bundles under the hash chain. The group commit that stores a batch of
//! bundles and the decode batch that processes one each append one entry (`bundles.stored`,
//! `bundles.decoded`) whose detail commits to the batch: the number of bundles and the SHA-256 of
//! their sorted `bundle_id sha256` lines ([`list_digest`]). Each bundle row keeps the sequence
//! number of its two entries, so a court dossier can show, for one bundle, the entry, its hash,
//! and the batch list that hashes to the digest the entry holds.
//!
//! One entry per batch, not per bundle: the ingest's hot path appends one row per group commit.

use crate::base::db::Connection;
use sha2::{Digest, Sha256};

use super::{append, Result};

/// A step of a bundle's custody recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustodyStep {
    /// Its ciphertext was made durable and its row committed (the moment it was acknowledged).
    Stored,
    /// It was decrypted, verified, decoded and its rows written to the datasets.
    Decoded,
}

impl CustodyStep {
    pub const fn action(self) -> &'static str {
        match self {
            Self::Stored => "bundles.stored",
            Self::Decoded => "bundles.decoded",
        }
    }

    const fn column(self) -> &'static str {
        match self {
            Self::Stored => "stored_audit_seq",
            Self::Decoded => "decoded_audit_seq",
        }
    }
}

/// SHA-256 over the batch's `bundle_id sha256` lines, sorted by bundle id.
pub fn list_digest(items: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = items.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    for (id, sha) in sorted {
        h.update(id.as_bytes());
        h.update(b" ");
        h.update(sha.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Appends the entry for a batch of bundles (`(bundle_id, ciphertext sha256)`) and stamps its
/// sequence number on their rows. Call inside the transaction that stores or processes them.
pub fn record(
    conn: &Connection,
    now_ms: i64,
    step: CustodyStep,
    items: &[(String, String)],
) -> Result<i64> {
    let detail = serde_json::json!({"bundles": items.len(), "list_sha256": list_digest(items)});
    let seq = append(
        conn,
        now_ms,
        "system",
        step.action(),
        "bundles",
        &detail.to_string(),
    )?;
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE bundles SET {} = ?2 WHERE bundle_id = ?1",
        step.column()
    ))?;
    for (id, _) in items {
        stmt.execute(crate::params![id, seq])?;
    }
    Ok(seq)
}

/// The batch a custody entry commits to, as far as the bundle rows still hold it (rows of erased
/// persons are gone): `(bundle_id, sha256)` sorted by bundle id.
pub fn batch_of(conn: &Connection, step: CustodyStep, seq: i64) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT bundle_id, sha256 FROM bundles WHERE {} = ?1 ORDER BY bundle_id",
        step.column()
    ))?;
    let rows = stmt.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_digest_ignores_order_and_sees_every_byte() {
        let a = ("aa".to_string(), "11".to_string());
        let b = ("bb".to_string(), "22".to_string());
        assert_eq!(
            list_digest(&[a.clone(), b.clone()]),
            list_digest(&[b.clone(), a.clone()])
        );
        let b2 = ("bb".to_string(), "23".to_string());
        assert_ne!(list_digest(&[a.clone(), b]), list_digest(&[a, b2]));
    }
}
