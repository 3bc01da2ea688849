//! Caseloads: which officer may see which person, for which period.
//!
//! The one rule of officer access: an officer reaches a person's alerts and evidence only while
//! that person is on their caseload (an assignment whose period contains *now*). Every query the
//! officer UI runs goes through [`persons_of`] or [`may_see`]; there is no other path from an
//! officer to personal data.

use crate::base::db::{Connection, OptionalExtension};

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

/// Whether `officer_id` has `person_id` on their caseload at `now_ms`.
pub fn may_see(conn: &Connection, officer_id: i64, person_id: i64, now_ms: i64) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM caseloads
              WHERE officer_id = ?1 AND person_id = ?2 AND valid_from_ms <= ?3
                AND (valid_to_ms IS NULL OR valid_to_ms > ?3)
              LIMIT 1",
            crate::params![officer_id, person_id, now_ms],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The persons on an officer's caseload at `now_ms`.
pub fn persons_of(conn: &Connection, officer_id: i64, now_ms: i64) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT person_id FROM caseloads
          WHERE officer_id = ?1 AND valid_from_ms <= ?2 AND (valid_to_ms IS NULL OR valid_to_ms > ?2)
          ORDER BY person_id",
    )?;
    let rows = stmt.query_map(crate::params![officer_id, now_ms], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A caseload period in whole local days of `zone` (the server's `http.time_zone`, the days
/// people mean), as `assign` takes it: from local midnight starting `from` (today when `None`)
/// to the local midnight ending `to`, inclusive (open-ended when `None`). DST-correct: a day of
/// 23 or 25 hours is one day.
pub fn day_bounds(
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    zone: crate::base::time::Zone,
    now_ms: i64,
) -> (i64, Option<i64>) {
    let from = from.unwrap_or_else(|| zone.date_of(now_ms));
    let end = |d: chrono::NaiveDate| zone.day_start_ms(d.succ_opt().unwrap_or(d));
    (zone.day_start_ms(from), to.map(end))
}

/// Assigns a person to an officer from `from_ms` until `to_ms` (open-ended when `None`).
pub fn assign(
    db: &Db,
    officer: &str,
    person_reference: &str,
    from_ms: i64,
    to_ms: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<i64> {
    if to_ms.is_some_and(|to| to <= from_ms) {
        return Err(crate::base::refusal::Refusal::PeriodBackwards.into());
    }
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let officer_id: i64 = tx
        .query_row(
            "SELECT id FROM accounts WHERE username = ?1 AND role = 'officer' AND disabled_at_ms IS NULL",
            [officer],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::Refused(crate::base::refusal::Refusal::NotAnActiveOfficer(officer.to_string())))?;
    let person_id: i64 =
        crate::registry::enroll::person_id(&tx, person_reference)?.ok_or_else(|| {
            Error::Refused(crate::base::refusal::Refusal::NoPerson(
                person_reference.to_string(),
            ))
        })?;
    let id: i64 = tx.query_row(
        "INSERT INTO caseloads (officer_id, person_id, valid_from_ms, valid_to_ms, assigned_by)
         VALUES (?1, ?2, ?3, ?4, ?5)
         RETURNING id",
        crate::params![officer_id, person_id, from_ms, to_ms, actor],
        |r| r.get(0),
    )?;
    audit::append(
        &tx,
        now_ms,
        actor,
        "caseload.assign",
        &format!("person:{person_id}"),
        &serde_json::json!({"officer": officer, "from_ms": from_ms, "to_ms": to_ms}).to_string(),
    )?;
    tx.commit()?;
    Ok(id)
}

/// Ends an assignment now (the officer loses access at once).
pub fn end(db: &Db, assignment_id: i64, actor: &str, now_ms: i64) -> Result<()> {
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let changed = tx.execute(
        "UPDATE caseloads SET valid_to_ms = ?2
          WHERE id = ?1 AND (valid_to_ms IS NULL OR valid_to_ms > ?2) AND valid_from_ms < ?2",
        crate::params![assignment_id, now_ms],
    )?;
    if changed == 0 {
        return Err(crate::base::refusal::Refusal::AssignmentNotCurrent(assignment_id).into());
    }
    audit::append(
        &tx,
        now_ms,
        actor,
        "caseload.end",
        &format!("caseload:{assignment_id}"),
        "{}",
    )?;
    tx.commit()?;
    Ok(())
}

/// One assignment, for the administrator's list.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub id: i64,
    pub officer: String,
    pub person_reference: String,
    pub valid_from_ms: i64,
    pub valid_to_ms: Option<i64>,
}

pub fn list(db: &Db) -> Result<Vec<Assignment>> {
    let conn = db.lock();
    let mut stmt = conn.prepare(
        "SELECT c.id, a.username, p.reference, c.valid_from_ms, c.valid_to_ms
           FROM caseloads c JOIN accounts a ON a.id = c.officer_id JOIN persons p ON p.id = c.person_id
          ORDER BY a.username, p.reference, c.valid_from_ms",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Assignment {
            id: r.get(0)?,
            officer: r.get(1)?,
            person_reference: r.get(2)?,
            valid_from_ms: r.get(3)?,
            valid_to_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn caseload_days_are_local_days_and_a_dst_day_is_one_day() {
        let zone = crate::base::time::Zone::named("Europe/Amsterdam").unwrap();
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let utc = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        // The last Sunday of March has 23 hours in Amsterdam.
        let (from, to) = day_bounds(Some(day("2026-03-29")), Some(day("2026-03-29")), zone, 0);
        assert_eq!(from, utc("2026-03-28T23:00:00Z"));
        assert_eq!(to, Some(utc("2026-03-29T22:00:00Z")));
        // A winter day: local midnight is 23:00 UTC the day before.
        let (from, to) = day_bounds(Some(day("2026-12-03")), None, zone, 0);
        assert_eq!(from, utc("2026-12-02T23:00:00Z"));
        assert_eq!(to, None);
        // Today when no start is given: the local day of `now`, even at 23:30 UTC.
        let now = utc("2026-12-02T23:30:00Z");
        assert_eq!(
            day_bounds(None, None, zone, now).0,
            utc("2026-12-02T23:00:00Z")
        );
    }

    use super::*;
    use crate::registry::accounts::{self, Role};

    #[test]
    fn access_follows_the_assignment_period() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(dir.path());
        let now = 1_800_000_000_000;
        let officer = accounts::create(&db, "olga", Role::Officer, "t", now).unwrap();
        accounts::create(&db, "adam", Role::Administrator, "t", now).unwrap();
        db.lock()
            .execute(
                "INSERT INTO persons (reference, programme, created_at_ms) VALUES ('case-1', 'alcohol-ban', 0)",
                [],
            )
            .unwrap();
        let person: i64 = db.lock().last_insert_rowid();
        db.lock()
            .execute(
                "INSERT INTO episodes (person_id, reference, programme, started_at_ms) VALUES (?1, 'case-1', 'alcohol-ban', 0)",
                [person],
            )
            .unwrap();
        assert!(
            assign(&db, "adam", "case-1", now, None, "t", now).is_err(),
            "not an officer"
        );
        let id = assign(
            &db,
            "olga",
            "case-1",
            now + 1000,
            Some(now + 5000),
            "t",
            now,
        )
        .unwrap();
        let conn = || db.lock();
        assert!(
            !may_see(&conn(), officer.id, person, now).unwrap(),
            "before the period"
        );
        assert!(may_see(&conn(), officer.id, person, now + 1000).unwrap());
        assert_eq!(
            persons_of(&conn(), officer.id, now + 2000).unwrap(),
            vec![person]
        );
        assert!(
            !may_see(&conn(), officer.id, person, now + 5000).unwrap(),
            "after it"
        );
        end(&db, id, "t", now + 2000).unwrap();
        assert!(
            !may_see(&conn(), officer.id, person, now + 3000).unwrap(),
            "ended early"
        );
    }
}
