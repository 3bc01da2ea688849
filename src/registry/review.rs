//! Periodic access reviews (BIO 9.2.5): an auditor looks at what one account read of personal
//! data over a period and records the findings. The compliance report shows when each account
//! was last reviewed and fails its control when a review is older than the configured period.
//!
//! Which audit actions are reads of personal data is one list, [`PERSONAL_DATA_READS`], shared by
//! the review and the compliance report.

use crate::base::db::Connection;

use crate::base::db::Db;
use crate::trust::audit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] crate::base::refusal::Refusal),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The audit actions that record a member of staff opening personal data.
pub const PERSONAL_DATA_READS: &[&str] = &[
    "alerts.list",
    "alerts.export",
    "alert.view",
    "alert.report",
    "alert.dossier",
    "stations.view",
    "admin.view",
    "person.export",
    "person.archive",
    "quarantine.list",
    "quarantine.show",
    "audit.view",
    "audit.export",
    "compliance.report",
];

/// The SQL list of [`PERSONAL_DATA_READS`], for `action IN (…)`.
pub fn personal_data_reads_sql() -> String {
    PERSONAL_DATA_READS
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(",")
}

/// How many times `username` opened personal data in `[from_ms, to_ms)`.
pub fn accesses_in(conn: &Connection, username: &str, from_ms: i64, to_ms: i64) -> Result<i64> {
    Ok(conn.query_row(
        &format!(
            "SELECT count(*) FROM audit_log
              WHERE actor = ?1 AND at_ms >= ?2 AND at_ms < ?3
                AND action IN ({})",
            personal_data_reads_sql()
        ),
        crate::params![username, from_ms, to_ms],
        |r| r.get(0),
    )?)
}

/// One recorded review.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub username: String,
    pub period_from_ms: i64,
    pub period_to_ms: i64,
    pub accesses_reviewed: i64,
    pub findings: String,
    pub reviewed_by: String,
    pub reviewed_at_ms: i64,
}

/// Records the review of `username`'s accesses over `[from_ms, to_ms)` by `reviewer`, counting
/// those accesses from the audit log in the same transaction. Audited as `review.record`.
pub fn record(
    db: &Db,
    username: &str,
    from_ms: i64,
    to_ms: i64,
    findings: &str,
    reviewer: &str,
    now_ms: i64,
) -> Result<Review> {
    if to_ms <= from_ms || to_ms > now_ms + crate::base::time::DAY_MS {
        return Err(crate::base::refusal::Refusal::ReviewPeriodInvalid.into());
    }
    let findings = findings.trim();
    if findings.is_empty() {
        return Err(crate::base::refusal::Refusal::FindingsRequired.into());
    }
    if reviewer == username {
        return Err(crate::base::refusal::Refusal::CannotReviewSelf.into());
    }
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let account_id = crate::registry::accounts::id_of(&tx, username)?.ok_or_else(|| {
        Error::Refused(crate::base::refusal::Refusal::NoAccount(
            username.to_string(),
        ))
    })?;
    let accesses = accesses_in(&tx, username, from_ms, to_ms)?;
    tx.execute(
        "INSERT INTO access_reviews (account_id, period_from_ms, period_to_ms, accesses_reviewed,
                                     findings, reviewed_by, reviewed_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        crate::params![account_id, from_ms, to_ms, accesses, findings, reviewer, now_ms],
    )?;
    audit::append(
        &tx,
        now_ms,
        reviewer,
        "review.record",
        &format!("account:{username}"),
        &serde_json::json!({"from_ms": from_ms, "to_ms": to_ms, "accesses": accesses,
                            "findings": findings})
        .to_string(),
    )?;
    tx.commit()?;
    Ok(Review {
        username: username.to_string(),
        period_from_ms: from_ms,
        period_to_ms: to_ms,
        accesses_reviewed: accesses,
        findings: findings.to_string(),
        reviewed_by: reviewer.to_string(),
        reviewed_at_ms: now_ms,
    })
}

/// The latest review of every account that has one, by username.
pub fn latest_reviews(conn: &Connection) -> Result<Vec<Review>> {
    let mut stmt = conn.prepare(
        "SELECT a.username, r.period_from_ms, r.period_to_ms, r.accesses_reviewed, r.findings,
                r.reviewed_by, r.reviewed_at_ms
           FROM access_reviews r JOIN accounts a ON a.id = r.account_id
          WHERE r.id = (SELECT r2.id FROM access_reviews r2 WHERE r2.account_id = r.account_id
                         ORDER BY r2.reviewed_at_ms DESC, r2.id DESC LIMIT 1)
          ORDER BY a.username",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Review {
            username: r.get(0)?,
            period_from_ms: r.get(1)?,
            period_to_ms: r.get(2)?,
            accesses_reviewed: r.get(3)?,
            findings: r.get(4)?,
            reviewed_by: r.get(5)?,
            reviewed_at_ms: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::accounts::{self, Role};

    #[test]
    fn a_review_counts_the_accounts_reads_of_its_period_and_is_audited() {
        let (_dir, ctx) = crate::server::init::temporary();
        let now = 1_800_000_000_000;
        accounts::create(&ctx.db, "olga", Role::Officer, "admin", now).unwrap();
        {
            let conn = ctx.db.lock();
            for (at, action) in [
                (now + 10, "alert.view"),
                (now + 20, "alerts.list"),
                (now + 30, "login"),
                (now + 5_000, "alert.view"),
            ] {
                audit::append(&conn, at, "olga", action, "alert:1", "{}").unwrap();
            }
        }
        let review = record(
            &ctx.db,
            "olga",
            now,
            now + 1_000,
            "no findings",
            "aud",
            now + 6_000,
        )
        .unwrap();
        assert_eq!(
            review.accesses_reviewed, 2,
            "two reads inside the period, a login is none"
        );
        assert!(record(&ctx.db, "olga", now, now + 1_000, "  ", "aud", now + 6_000).is_err());
        assert!(record(&ctx.db, "olga", now, now + 1_000, "x", "olga", now + 6_000).is_err());
        let latest = latest_reviews(&ctx.db.lock()).unwrap();
        assert_eq!(latest, vec![review]);
        let audited: i64 = ctx
            .db
            .lock()
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action = 'review.record' AND actor = 'aud'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(audited, 1);
    }
}
