//! Storing alerts: every write to `alerts` and `alert_revisions` happens here, and seals the alert
//! into the audit log in the same transaction. Alerts are never deleted: a revision records the
//! before and after, a withdrawal keeps the content.

use crate::base::db::{Connection, OptionalExtension};

use super::{AlertKind, RevisionReason, Severity};
use crate::trust::audit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An alert as a pipeline or the communication check raises it.
#[derive(Debug, Clone, Copy)]
pub struct NewAlert<'a> {
    pub person_id: i64,
    pub kind: AlertKind,
    pub severity: Severity,
    pub start_ms: i64,
    pub end_ms: i64,
    pub peak_tac_g_dl: Option<f64>,
    /// JSON: the rule and the parameters it fired with.
    pub rule: &'a str,
    /// The evidence: comma-separated bundle ids, or the station for a communication alert.
    pub evidence: &'a str,
}

/// One alert per event: an event that overlaps an alert of the same person and kind *is* that
/// alert (late data extended it, or a re-evaluation saw it again), so the alert grows to cover
/// both and keeps its id and status; otherwise a new alert is inserted. Returns whether it is new.
/// The ids of every alert of a person (for finding the audit entries about them).
pub fn ids_of_person(conn: &Connection, person_id: i64) -> crate::base::db::Result<Vec<i64>> {
    let mut stmt = conn.prepare("SELECT id FROM alerts WHERE person_id = ?1")?;
    let rows = stmt.query_map([person_id], |r| r.get(0))?;
    rows.collect()
}

pub fn record_event(tx: &Connection, alert: &NewAlert<'_>, now_ms: i64) -> Result<bool> {
    let existing: Option<(i64, String)> = tx
        .query_row(
            "SELECT id, evidence_bundles FROM alerts
              WHERE person_id = ?1 AND kind = ?2 AND start_ms <= ?4 AND end_ms >= ?3
              ORDER BY start_ms LIMIT 1",
            crate::params![
                alert.person_id,
                alert.kind.as_str(),
                alert.start_ms,
                alert.end_ms
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let new = match existing {
        Some((id, had)) => {
            tx.execute(
                "UPDATE alerts SET start_ms = min(start_ms, ?2), end_ms = max(end_ms, ?3),
                        peak_tac_g_dl = CASE WHEN ?4 IS NULL THEN peak_tac_g_dl
                                             ELSE max(coalesce(peak_tac_g_dl, ?4), ?4) END,
                        evidence_bundles = ?5
                  WHERE id = ?1",
                crate::params![
                    id,
                    alert.start_ms,
                    alert.end_ms,
                    alert.peak_tac_g_dl,
                    merge_evidence(&had, alert.evidence)
                ],
            )?;
            // Sealed again only if widening changed it.
            audit::seal::reseal(tx, id, now_ms, "system")?;
            false
        }
        None => {
            let content = AlertContent {
                kind: alert.kind,
                severity: alert.severity,
                start_ms: alert.start_ms,
                end_ms: alert.end_ms,
                peak_tac_g_dl: alert.peak_tac_g_dl,
                provisional: false,
                evidence_bundles: alert.evidence.into(),
                rule: alert.rule.into(),
            };
            insert(tx, alert.person_id, &content, now_ms)?;
            true
        }
    };
    Ok(new)
}

/// An alert keyed by (person, kind, start): stored the first time, a second call with the same
/// key changes nothing. Returns whether it is new.
pub fn record_once(tx: &Connection, alert: &NewAlert<'_>, now_ms: i64) -> Result<bool> {
    let inserted: Option<i64> = tx.query_row(
        "INSERT OR IGNORE INTO alerts (person_id, kind, severity, start_ms, end_ms, peak_tac_g_dl,
                                       rule, evidence_bundles, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         RETURNING id",
        crate::params![
            alert.person_id,
            alert.kind.as_str(),
            alert.severity.as_str(),
            alert.start_ms,
            alert.end_ms,
            alert.peak_tac_g_dl,
            alert.rule,
            alert.evidence,
            now_ms
        ],
        |r| r.get(0),
    )
    .optional()?;
    if let Some(id) = inserted {
        audit::seal::reseal(tx, id, now_ms, "system")?;
        // Counted when inserted: an evaluation that then fails to commit (rare) counts too.
        crate::base::metrics::metrics()
            .alerts_raised
            .get_or_create(&crate::base::metrics::label("kind", alert.kind.as_str()))
            .inc();
    }
    Ok(inserted.is_some())
}

/// Comma-separated bundle ids of both lists, each once, in order of first appearance.
fn merge_evidence(had: &str, found: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    had.split(',')
        .chain(found.split(','))
        .filter(|b| !b.is_empty() && seen.insert(*b))
        .collect::<Vec<_>>()
        .join(",")
}

/// What the evidence decides about an alcohol alert (its workflow is the officer's).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertContent {
    pub kind: AlertKind,
    pub severity: Severity,
    pub start_ms: i64,
    pub end_ms: i64,
    pub peak_tac_g_dl: Option<f64>,
    pub provisional: bool,
    pub evidence_bundles: String,
    /// JSON: the rule, its parameters and the episode's explanation.
    pub rule: String,
}

impl AlertContent {
    pub fn same_as(&self, other: &AlertContent) -> bool {
        // Bit-exact peaks: the same readings give the same value.
        self.kind == other.kind
            && self.severity == other.severity
            && self.start_ms == other.start_ms
            && self.end_ms == other.end_ms
            && self.peak_tac_g_dl.map(f64::to_bits) == other.peak_tac_g_dl.map(f64::to_bits)
            && self.provisional == other.provisional
            && self.evidence_bundles == other.evidence_bundles
            && self.rule == other.rule
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// A stored alcohol or interferent alert.
#[derive(Debug, Clone)]
pub struct StoredAlert {
    pub id: i64,
    pub content: AlertContent,
    pub withdrawn: bool,
}

/// The alcohol and interferent alerts of a person that end at or after `from_ms`, withdrawn
/// ones included, oldest first.
pub fn alcohol_alerts_from(
    tx: &Connection,
    person_id: i64,
    from_ms: i64,
) -> Result<Vec<StoredAlert>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, kind, severity, start_ms, end_ms, peak_tac_g_dl, provisional,
                evidence_bundles, rule, withdrawn_at_ms
           FROM alerts
          WHERE person_id = ?1 AND kind IN (?2, ?3) AND end_ms >= ?4
          ORDER BY start_ms, id",
    )?;
    let rows = stmt.query_map(
        crate::params![
            person_id,
            AlertKind::Alcohol.as_str(),
            AlertKind::Interferent.as_str(),
            from_ms
        ],
        |r| {
            Ok(StoredAlert {
                id: r.get(0)?,
                content: AlertContent {
                    kind: r.get(1)?,
                    severity: r.get(2)?,
                    start_ms: r.get(3)?,
                    end_ms: r.get(4)?,
                    peak_tac_g_dl: r.get(5)?,
                    provisional: r.get::<_, i64>(6)? != 0,
                    evidence_bundles: r.get(7)?,
                    rule: r.get(8)?,
                },
                withdrawn: r.get::<_, Option<i64>>(9)?.is_some(),
            })
        },
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Stores a new alert with `content` and seals it.
pub fn insert(tx: &Connection, person_id: i64, c: &AlertContent, now_ms: i64) -> Result<()> {
    let id: i64 = tx.query_row(
        "INSERT INTO alerts (person_id, kind, severity, start_ms, end_ms, peak_tac_g_dl, rule,
                             evidence_bundles, created_at_ms, provisional)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         RETURNING id",
        crate::params![
            person_id,
            c.kind,
            c.severity,
            c.start_ms,
            c.end_ms,
            c.peak_tac_g_dl,
            c.rule,
            c.evidence_bundles,
            now_ms,
            i64::from(c.provisional)
        ],
        |r| r.get(0),
    )?;
    audit::seal::reseal(tx, id, now_ms, "system")?;
    Ok(())
}

/// Revises an alert to `after`; with `withdraw` (the reason in words) it is withdrawn instead,
/// keeping its content. Records the revision, audits it and seals the alert again.
pub fn revise(
    tx: &Connection,
    alert: &StoredAlert,
    after: &AlertContent,
    reason: RevisionReason,
    withdraw: Option<&str>,
    now_ms: i64,
) -> Result<()> {
    let withdrawn_at = withdraw.map(|_| now_ms);
    tx.execute(
        "UPDATE alerts SET kind = ?2, severity = ?3, start_ms = ?4, end_ms = ?5,
                peak_tac_g_dl = ?6, provisional = ?7, evidence_bundles = ?8, rule = ?9,
                revision = revision + 1, withdrawn_at_ms = ?10
          WHERE id = ?1",
        crate::params![
            alert.id,
            after.kind,
            after.severity,
            after.start_ms,
            after.end_ms,
            after.peak_tac_g_dl,
            i64::from(after.provisional),
            after.evidence_bundles,
            after.rule,
            withdrawn_at
        ],
    )?;
    let revision: i64 = tx.query_row(
        "SELECT revision FROM alerts WHERE id = ?1",
        [alert.id],
        |r| r.get(0),
    )?;
    let (before, mut after) = (alert.content.json(), after.json());
    if let Some(note) = withdraw {
        after["note"] = note.into();
    }
    tx.execute(
        "INSERT INTO alert_revisions (alert_id, revision, at_ms, reason, before, after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        crate::params![
            alert.id,
            revision,
            now_ms,
            reason.code(),
            before.to_string(),
            after.to_string()
        ],
    )?;
    audit::append(
        tx,
        now_ms,
        "system",
        if withdraw.is_some() {
            "alert.withdrawn"
        } else {
            "alert.revised"
        },
        &format!("alert:{}", alert.id),
        &serde_json::json!({
            "revision": revision,
            "reason": reason.code(),
            "note": withdraw,
            "before": {"kind": before["kind"], "start_ms": before["start_ms"], "end_ms": before["end_ms"],
                       "peak_tac_g_dl": before["peak_tac_g_dl"], "provisional": before["provisional"]},
            "after": {"kind": after["kind"], "start_ms": after["start_ms"], "end_ms": after["end_ms"],
                      "peak_tac_g_dl": after["peak_tac_g_dl"], "provisional": after["provisional"]},
        })
        .to_string(),
    )?;
    audit::seal::reseal(tx, alert.id, now_ms, "system")?;
    Ok(())
}
