//! Erasure inside the chain, for the data lifecycle (`crate::lifecycle`).
//!
//! Two operations, both recorded by a tombstone entry and both leaving a chain that verifies:
//!
//! - [`erase_entries`]: the object and detail of entries that name an erased person's data (a
//!   device serial, a bundle id, a workflow comment) are replaced by [`ERASED`]. An erasable entry
//!   keeps the two digests its hash covers and loses its salt, so its hash is still checked; who
//!   acted, the action and the time stay. The tombstone lists every entry it erased, and
//!   [`super::verify`] accepts an erased entry only when a later tombstone lists it.
//! - [`prune_before`]: the entries older than the audit log's own retention are deleted from the
//!   start of the chain; the last deleted entry's number and hash become the *horizon* from which
//!   verification starts, and signed checkpoints before it are no longer checked.

use std::collections::HashMap;

use crate::base::db::{Connection, OptionalExtension};

use super::{append, field_digest, Entry, Result};

/// What an erased object or detail reads as.
pub const ERASED: &str = "[erased]";
/// The action of a tombstone: what was erased, under which policy, never the data.
pub const TOMBSTONE: &str = "retention.erase";
/// The action recorded when the start of the chain is pruned.
pub const PRUNED: &str = "retention.audit-prune";

/// The last entry removed from the start of the chain (its hash, its number), if any was.
pub fn horizon(conn: &Connection) -> Result<Option<(String, i64)>> {
    Ok(conn
        .query_row(
            "SELECT hash, through_seq FROM audit_pruned ORDER BY through_seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Why entry `seq`, marked erased by entry `by`, is not properly erased; `None` when it is.
pub(super) fn tombstone_problem(
    seq: i64,
    by: i64,
    entries: &HashMap<i64, &Entry>,
) -> Option<String> {
    let Some(tombstone) = entries.get(&by) else {
        return Some(format!(
            "erased by entry {by}, which the chain does not have"
        ));
    };
    let listed = tombstone.action == TOMBSTONE
        && by > seq
        && serde_json::from_str::<serde_json::Value>(&tombstone.detail)
            .ok()
            .and_then(|d| {
                d["audit_entries_erased"]
                    .as_array()
                    .map(|a| a.iter().any(|v| v.as_i64() == Some(seq)))
            })
            .unwrap_or(false);
    (!listed).then(|| format!("marked erased, but tombstone entry {by} does not list it"))
}

/// Entries not yet erased (and not tombstones) whose object is one of `objects` or whose object
/// or detail contains one of `needles` (identifiers such as serials, bundle ids, references).
pub fn entries_naming(
    conn: &Connection,
    objects: &[String],
    needles: &[String],
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT seq, action, object, detail FROM audit_log WHERE erased_by IS NULL ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, action, object, detail) = row?;
        if action == TOMBSTONE || action == PRUNED {
            continue;
        }
        let named = objects.contains(&object)
            || needles
                .iter()
                .filter(|n| !n.is_empty())
                .any(|n| object.contains(n.as_str()) || detail.contains(n.as_str()));
        if named {
            out.push(seq);
        }
    }
    Ok(out)
}

/// Appends a tombstone with `detail` (a JSON object; `audit_entries_erased` is added) and erases
/// the object and detail of entries `seqs` under it. Call inside the transaction that deletes the
/// data. Returns the tombstone's entry number.
pub fn erase_entries(
    conn: &Connection,
    now_ms: i64,
    actor: &str,
    object: &str,
    mut detail: serde_json::Value,
    seqs: &[i64],
) -> Result<i64> {
    detail["audit_entries_erased"] = serde_json::json!(seqs);
    let tombstone = append(conn, now_ms, actor, TOMBSTONE, object, &detail.to_string())?;
    for &seq in seqs {
        let (object, detail, salt): (String, String, Option<String>) = conn.query_row(
            "SELECT object, detail, salt FROM audit_log WHERE seq = ?1",
            [seq],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let digests = salt.map(|salt| (field_digest(&salt, &object), field_digest(&salt, &detail)));
        conn.execute(
            "UPDATE audit_log SET object = ?2, detail = ?2, salt = NULL, object_digest = ?3,
                    detail_digest = ?4, erased_by = ?5
              WHERE seq = ?1",
            crate::params![
                seq,
                ERASED,
                digests.as_ref().map(|d| &d.0),
                digests.as_ref().map(|d| &d.1),
                tombstone
            ],
        )?;
    }
    Ok(tombstone)
}

/// Deletes the entries written before `cutoff_ms` from the start of the chain (the longest prefix
/// that is all older) and records the new horizon; alerts whose seals went are sealed anew as they
/// stand, so every alert keeps a seal. Returns how many entries were deleted.
pub fn prune_before(conn: &Connection, cutoff_ms: i64, now_ms: i64, policy: &str) -> Result<usize> {
    let first_kept: Option<i64> = conn.query_row(
        "SELECT min(seq) FROM audit_log WHERE at_ms >= ?1",
        [cutoff_ms],
        |r| r.get(0),
    )?;
    let last: Option<i64> = conn.query_row("SELECT max(seq) FROM audit_log", [], |r| r.get(0))?;
    // Never the whole chain: the newest entry carries the head the checkpoints anchor.
    let through = match (first_kept, last) {
        (Some(f), _) => f - 1,
        (None, Some(l)) => l - 1,
        (None, None) => return Ok(0),
    };
    let (from, _) = match horizon(conn)? {
        Some((_, h)) => (h + 1, h),
        None => (1, 0),
    };
    if through < from {
        return Ok(0);
    }
    let hash: String = conn.query_row(
        "SELECT hash FROM audit_log WHERE seq = ?1",
        [through],
        |r| r.get(0),
    )?;
    let deleted = conn.execute("DELETE FROM audit_log WHERE seq <= ?1", [through])?;
    conn.execute(
        "INSERT INTO audit_pruned (through_seq, hash, pruned_at_ms) VALUES (?1, ?2, ?3)",
        crate::params![through, hash, now_ms],
    )?;
    let resealed = super::seal::seal_unsealed(conn, now_ms)?;
    append(
        conn,
        now_ms,
        "system",
        PRUNED,
        "audit_log",
        &serde_json::json!({
            "entries_deleted": deleted, "through_seq": through, "through_hash": hash,
            "written_before_ms": cutoff_ms, "alerts_resealed": resealed, "policy": policy,
        })
        .to_string(),
    )?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::super::{append, checkpoint, verify, verify_all, Verdict};
    use super::*;
    use crate::base::db::Db;

    fn log(n: i64) -> (tempfile::TempDir, Db) {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(tmp.path());
        for i in 1..=n {
            let object = if i % 2 == 0 { "ANK-0042" } else { "station-7" };
            append(
                &db.lock(),
                i * 1000,
                "admin",
                "device.assign",
                object,
                "{\"person\":3}",
            )
            .unwrap();
        }
        (tmp, db)
    }

    fn intact(db: &Db) -> bool {
        matches!(verify(&db.lock()).unwrap(), Verdict::Intact { .. })
    }

    /// Erasing the entries that name a serial leaves a chain that verifies, with the serial gone
    /// from every field and the tombstone listing them; erasing behind nachtwacht's back (no
    /// tombstone), or editing an erased entry's kept digest, is found.
    #[test]
    fn erased_entries_keep_the_chain_verifiable_and_only_a_tombstone_may_erase() {
        let (_tmp, db) = log(6);
        let conn = db.lock();
        let named = entries_naming(&conn, &[], &["ANK-0042".into()]).unwrap();
        assert_eq!(named, vec![2, 4, 6]);
        let tombstone = erase_entries(
            &conn,
            9000,
            "system",
            "person:3",
            serde_json::json!({"class": "identity"}),
            &named,
        )
        .unwrap();
        assert_eq!(tombstone, 7);
        drop(conn);
        assert!(intact(&db));
        let conn = db.lock();
        let left: i64 = conn
            .query_row(
                "SELECT count(*) FROM audit_log WHERE object LIKE '%ANK-0042%' OR detail LIKE '%ANK-0042%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        // Someone erases entry 3 by hand, imitating the marks: no tombstone lists it.
        conn.execute_batch("BEGIN").unwrap();
        conn.execute(
            "UPDATE audit_log SET object = '[erased]', detail = '[erased]', salt = NULL, erased_by = 7 WHERE seq = 3",
            [],
        )
        .unwrap();
        match verify(&conn).unwrap() {
            Verdict::Broken { at_seq: 3, reason } => {
                assert!(reason.contains("does not list"), "{reason}")
            }
            other => panic!("unlisted erasure went unnoticed: {other:?}"),
        }
        conn.execute_batch("ROLLBACK").unwrap();
        // The digest an erased entry keeps is still covered by its hash.
        conn.execute(
            "UPDATE audit_log SET detail_digest = 'ff' WHERE seq = 4",
            [],
        )
        .unwrap();
        assert!(matches!(
            verify(&conn).unwrap(),
            Verdict::Broken { at_seq: 4, .. }
        ));
    }

    /// Pruning the start of the chain keeps it verifiable from the horizon, and a checkpoint
    /// taken before the pruning still checks against the horizon's hash.
    #[test]
    fn a_pruned_chain_verifies_from_its_horizon() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::base::datadir::DataDir::new(tmp.path());
        std::fs::create_dir_all(dir.keys()).unwrap();
        let db = crate::base::db::testing::open(tmp.path());
        for i in 1..=5 {
            append(
                &db.lock(),
                i * 1000,
                "admin",
                "station.add",
                &format!("s-{i}"),
                "{}",
            )
            .unwrap();
        }
        checkpoint::write(&dir, &db.lock(), 5500).unwrap();
        let deleted = prune_before(&db.lock(), 3500, 6000, "sha256:test").unwrap();
        assert_eq!(deleted, 3);
        assert!(matches!(
            verify_all(&dir, &db.lock(), None).unwrap(),
            Verdict::Intact { entries: 3 }
        ));
        // Nothing more is due: a second run deletes nothing.
        assert_eq!(
            prune_before(&db.lock(), 3500, 6100, "sha256:test").unwrap(),
            0
        );
        // A forged entry slipped in at the start does not link to the horizon.
        db.lock()
            .execute("UPDATE audit_log SET prev_hash = '00' WHERE seq = 4", [])
            .unwrap();
        assert!(matches!(
            verify(&db.lock()).unwrap(),
            Verdict::Broken { at_seq: 4, .. }
        ));
    }
}
