//! Alerts under the hash chain. An alert and its workflow steps live in their own tables, which the
//! chain does not cover; so every change to them (created, widened by late data, a workflow step)
//! appends an `alert.sealed` entry holding a digest of the alert's whole content, in the same
//! transaction. [`check`] recomputes every alert's digest and names the first alert whose rows no
//! longer match its latest seal: an edit made in SQL (a comment, a peak TAC) is found.

use std::collections::HashMap;

use crate::base::db::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{append, Result};

pub const ACTION: &str = "alert.sealed";

fn object(alert_id: i64) -> String {
    format!("alert:{alert_id}")
}

/// SHA-256 over an alert's row and all of its workflow steps, each field length-prefixed.
pub fn digest(conn: &Connection, alert_id: i64) -> Result<Option<String>> {
    type Row = (Vec<String>, (i64, i64, Option<i64>));
    let row: Option<Row> = conn
        .query_row(
            "SELECT id, person_id, kind, severity, start_ms, end_ms, peak_tac_g_dl, rule,
                    evidence_bundles, status, created_at_ms, provisional, revision, withdrawn_at_ms
               FROM alerts WHERE id = ?1",
            [alert_id],
            |r| {
                let fields = vec![
                    r.get::<_, i64>(0)?.to_string(),
                    r.get::<_, i64>(1)?.to_string(),
                    r.get(2)?,
                    r.get(3)?,
                    r.get::<_, i64>(4)?.to_string(),
                    r.get::<_, i64>(5)?.to_string(),
                    // Bit-exact: any change to the peak is a change.
                    r.get::<_, Option<f64>>(6)?
                        .map(|v| format!("{:016x}", v.to_bits()))
                        .unwrap_or_default(),
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get::<_, i64>(10)?.to_string(),
                ];
                Ok((fields, (r.get(11)?, r.get(12)?, r.get(13)?)))
            },
        )
        .optional()?;
    let Some((row, (provisional, revision, withdrawn))) = row else {
        return Ok(None);
    };
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    for f in &row {
        field(f);
    }
    hash_rows(
        conn,
        &mut field,
        "event",
        "SELECT id, at_ms, actor, from_status, to_status, comment FROM alert_events
          WHERE alert_id = ?1 ORDER BY id",
        alert_id,
    )?;
    // Revision state and history (issue 19). Hashed only when there is any, so the digest of an
    // alert that was never revised is what it was before revisions existed: older seals verify.
    if provisional != 0 || revision != 0 || withdrawn.is_some() {
        field("revision-state");
        field(&provisional.to_string());
        field(&revision.to_string());
        field(&withdrawn.map(|w| w.to_string()).unwrap_or_default());
    }
    hash_rows(
        conn,
        &mut field,
        "revision",
        "SELECT revision, at_ms, reason, before, after FROM alert_revisions
          WHERE alert_id = ?1 ORDER BY revision",
        alert_id,
    )?;
    Ok(Some(hex::encode(h.finalize())))
}

/// Feeds every row of an alert's child table to `field`: the `tag`, then each column as text
/// (integers in decimal, NULL as empty).
fn hash_rows(
    conn: &Connection,
    field: &mut impl FnMut(&str),
    tag: &str,
    sql: &str,
    alert_id: i64,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([alert_id])?;
    while let Some(r) = rows.next()? {
        field(tag);
        for i in 0..columns {
            let text = match r.get_ref(i)? {
                crate::base::db::ValueRef::Integer(v) => v.to_string(),
                crate::base::db::ValueRef::Text(t) => t.to_owned(),
                crate::base::db::ValueRef::Real(v) => format!("{:016x}", v.to_bits()),
                crate::base::db::ValueRef::Null | crate::base::db::ValueRef::Blob(_) => {
                    String::new()
                }
            };
            field(&text);
        }
    }
    Ok(())
}

/// The digest in an alert's latest seal, with that entry's number.
fn latest_seal(conn: &Connection, alert_id: i64) -> Result<Option<(i64, String)>> {
    let found: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT seq, detail FROM audit_log WHERE action = ?1 AND object = ?2
              ORDER BY seq DESC LIMIT 1",
        )?
        .query_row(crate::params![ACTION, object(alert_id)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    Ok(found.map(|(seq, detail)| (seq, digest_of_detail(&detail))))
}

fn digest_of_detail(detail: &str) -> String {
    serde_json::from_str::<serde_json::Value>(detail)
        .ok()
        .and_then(|v| v["digest"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Seals an alert as it now stands, unless its latest seal already says so. Call in the
/// transaction that changed it. Returns whether a seal was appended.
pub fn reseal(conn: &Connection, alert_id: i64, now_ms: i64, actor: &str) -> Result<bool> {
    let Some(now) = digest(conn, alert_id)? else {
        return Ok(false);
    };
    if latest_seal(conn, alert_id)?.is_some_and(|(_, sealed)| sealed == now) {
        return Ok(false);
    }
    append(
        conn,
        now_ms,
        actor,
        ACTION,
        &object(alert_id),
        &serde_json::json!({ "digest": now }).to_string(),
    )?;
    Ok(true)
}

/// Seals every alert that has no seal yet: alerts created before sealing existed, sealed as they
/// stand when a server first starts with it. Returns how many.
pub fn seal_unsealed(conn: &Connection, now_ms: i64) -> Result<usize> {
    let sealed = latest_seals(conn)?;
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM alerts ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut n = 0;
    for id in ids.into_iter().filter(|id| !sealed.contains_key(id)) {
        n += usize::from(reseal(conn, id, now_ms, "system")?);
    }
    Ok(n)
}

/// Every alert's latest seal: alert id → (entry number, digest).
fn latest_seals(conn: &Connection) -> Result<HashMap<i64, (i64, String)>> {
    let mut stmt =
        conn.prepare("SELECT seq, object, detail FROM audit_log WHERE action = ?1 ORDER BY seq")?;
    let rows = stmt.query_map([ACTION], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (seq, object, detail) = row?;
        if let Some(id) = object.strip_prefix("alert:").and_then(|i| i.parse().ok()) {
            out.insert(id, (seq, digest_of_detail(&detail)));
        }
    }
    Ok(out)
}

/// An alert whose stored content differs from its latest seal, or that was never sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub alert_id: i64,
    /// The seal it no longer matches; `None` when it has none.
    pub sealed_at_seq: Option<i64>,
}

/// The first alert (by id) that does not match its latest seal, if any.
pub fn check(conn: &Connection) -> Result<Option<Mismatch>> {
    let seals = latest_seals(conn)?;
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM alerts ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for id in ids {
        let now = digest(conn, id)?.unwrap_or_default();
        match seals.get(&id) {
            Some((_, sealed)) if *sealed == now => {}
            other => {
                return Ok(Some(Mismatch {
                    alert_id: id,
                    sealed_at_seq: other.map(|(seq, _)| *seq),
                }))
            }
        }
    }
    Ok(None)
}
