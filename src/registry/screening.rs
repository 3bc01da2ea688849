//! Staff screening (BIO 7.1.1): the record that a member of staff was screened, e.g. a VOG
//! (Verklaring Omtrent het Gedrag) or a security clearance, with its date and expiry.
//!
//! The rule: an account opens personal data (an officer's caseload, a researcher's token) only
//! while its latest screening is in force. An account without one, or whose latest one has
//! expired, is refused with [`Error::NotScreened`] until an administrator records a new one;
//! [`require`] writes an audit entry for every such refusal, [`record`] one for every record.

use crate::base::db::{Connection, OptionalExtension};

use crate::base::db::Db;
use crate::trust::audit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The account has no screening in force: shown to the user as it is.
    #[error(
        "your staff screening ({0}) is not in force: personal data stays closed until an \
         administrator records a new screening"
    )]
    NotScreened(String),
    #[error("account: {0}")]
    Account(String),
    #[error(transparent)]
    Refused(#[from] crate::base::refusal::Refusal),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kinds of screening the justice chain uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScreeningKind {
    /// Verklaring Omtrent het Gedrag (certificate of conduct, Justis).
    Vog,
    /// A security clearance (veiligheidsonderzoek) for a position of trust.
    SecurityClearance,
}

impl ScreeningKind {
    pub const ALL: [ScreeningKind; 2] = [Self::Vog, Self::SecurityClearance];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Vog => "vog",
            Self::SecurityClearance => "security-clearance",
        }
    }
}

crate::closed_set_text!(ScreeningKind);

/// One screening record.
#[derive(Debug, Clone, PartialEq)]
pub struct Screening {
    pub kind: ScreeningKind,
    pub screened_on_ms: i64,
    pub expires_at_ms: i64,
    pub recorded_by: String,
    pub recorded_at_ms: i64,
}

impl Screening {
    pub fn in_force(&self, now_ms: i64) -> bool {
        self.screened_on_ms <= now_ms && now_ms < self.expires_at_ms
    }
}

/// Records a screening of `username`. Audited as `screening.record`.
pub fn record(
    db: &Db,
    username: &str,
    kind: ScreeningKind,
    screened_on_ms: i64,
    expires_at_ms: i64,
    actor: &str,
    now_ms: i64,
) -> Result<()> {
    if expires_at_ms <= screened_on_ms {
        return Err(crate::base::refusal::Refusal::ScreeningExpiresFirst.into());
    }
    if screened_on_ms > now_ms {
        return Err(crate::base::refusal::Refusal::ScreeningInFuture.into());
    }
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let account_id = crate::registry::accounts::id_of(&tx, username)?.ok_or_else(|| {
        Error::Refused(crate::base::refusal::Refusal::NoAccount(
            username.to_string(),
        ))
    })?;
    tx.execute(
        "INSERT INTO staff_screenings
             (account_id, kind, screened_on_ms, expires_at_ms, recorded_by, recorded_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        crate::params![
            account_id,
            kind,
            screened_on_ms,
            expires_at_ms,
            actor,
            now_ms
        ],
    )?;
    audit::append(
        &tx,
        now_ms,
        actor,
        "screening.record",
        &format!("account:{username}"),
        &serde_json::json!({"kind": kind.as_str(), "screened_on_ms": screened_on_ms,
                            "expires_at_ms": expires_at_ms})
        .to_string(),
    )?;
    tx.commit()?;
    Ok(())
}

const COLUMNS: &str =
    "account_id, kind, screened_on_ms, expires_at_ms, recorded_by, recorded_at_ms";

fn screening_row(r: &crate::base::db::Row) -> crate::base::db::Result<(i64, Screening)> {
    Ok((
        r.get(0)?,
        Screening {
            kind: r.get(1)?,
            screened_on_ms: r.get(2)?,
            expires_at_ms: r.get(3)?,
            recorded_by: r.get(4)?,
            recorded_at_ms: r.get(5)?,
        },
    ))
}

/// The account's latest screening record (the one that counts), if any.
pub fn latest(conn: &Connection, account_id: i64) -> Result<Option<Screening>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM staff_screenings WHERE account_id = ?1
                  ORDER BY recorded_at_ms DESC, id DESC LIMIT 1"
            ),
            [account_id],
            screening_row,
        )
        .optional()?
        .map(|(_, s)| s))
}

/// The latest screening of every account that has one, by account id.
pub fn latest_all(conn: &Connection) -> Result<std::collections::HashMap<i64, Screening>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM staff_screenings ORDER BY recorded_at_ms, id"
    ))?;
    let rows = stmt.query_map([], screening_row)?;
    // Later rows replace earlier ones: the map holds each account's latest.
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Refuses an account whose latest screening is not in force, with an audit entry naming the
/// path it tried (`attempted`). Call it outside any transaction (`conn` in autocommit), so the
/// refusal is written whatever the caller does next.
pub fn require(
    conn: &Connection,
    account_id: i64,
    username: &str,
    attempted: &str,
    now_ms: i64,
) -> Result<()> {
    let state = match latest(conn, account_id)? {
        Some(s) if s.in_force(now_ms) => return Ok(()),
        Some(s) if s.screened_on_ms > now_ms => "not yet valid".to_string(),
        Some(s) => format!(
            "{} expired on {}",
            s.kind.as_str().to_uppercase(),
            crate::base::time::date_of(s.expires_at_ms)
        ),
        None => "none recorded".to_string(),
    };
    audit::append(
        conn,
        now_ms,
        username,
        "screening.refused",
        &format!("account:{username}"),
        &serde_json::json!({"attempted": attempted, "screening": state}).to_string(),
    )?;
    Err(Error::NotScreened(state))
}

/// A VOG from yesterday, valid for a year: what the tests give every account that opens personal
/// data. Not for production code paths.
#[doc(hidden)]
pub fn screen_for_a_year(db: &Db, username: &str, now_ms: i64) -> Result<()> {
    use crate::base::time::DAY_MS;
    record(
        db,
        username,
        ScreeningKind::Vog,
        now_ms - DAY_MS,
        now_ms + 365 * DAY_MS,
        "test",
        now_ms,
    )
}

/// A researcher account `username` (created when missing) with [`screen_for_a_year`]: what tests
/// and benchmarks hold research tokens with. Not for production code paths.
#[doc(hidden)]
pub fn screened_researcher(db: &Db, username: &str, now_ms: i64) -> Result<()> {
    let exists = crate::registry::accounts::id_of(&db.lock(), username)?.is_some();
    if !exists {
        let role = crate::registry::accounts::Role::Researcher;
        crate::registry::accounts::create(db, username, role, "test", now_ms)
            .map_err(|e| Error::Account(e.to_string()))?;
    }
    screen_for_a_year(db, username, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::time::DAY_MS;
    use crate::registry::accounts::{self, Role};

    #[test]
    fn an_expired_or_missing_screening_refuses_and_a_new_record_reopens() {
        let (_dir, ctx) = crate::server::init::temporary();
        let now = 1_800_000_000_000;
        let olga = accounts::create(&ctx.db, "olga", Role::Officer, "admin", now).unwrap();
        let refusals = |ctx: &crate::base::Context| -> i64 {
            ctx.db
                .lock()
                .query_row(
                    "SELECT count(*) FROM audit_log WHERE action = 'screening.refused'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let err = require(&ctx.db.lock(), olga.id, "olga", "alerts.list", now).unwrap_err();
        assert!(err.to_string().contains("none recorded"), "{err}");
        assert_eq!(refusals(&ctx), 1);

        record(
            &ctx.db,
            "olga",
            ScreeningKind::Vog,
            now - 400 * DAY_MS,
            now - DAY_MS,
            "admin",
            now,
        )
        .unwrap();
        let err = require(&ctx.db.lock(), olga.id, "olga", "alerts.list", now).unwrap_err();
        assert!(err.to_string().contains("VOG expired on"), "{err}");
        assert_eq!(refusals(&ctx), 2);

        record(
            &ctx.db,
            "olga",
            ScreeningKind::Vog,
            now - DAY_MS,
            now + 365 * DAY_MS,
            "admin",
            now + 1,
        )
        .unwrap();
        require(&ctx.db.lock(), olga.id, "olga", "alerts.list", now + 2).unwrap();
        assert_eq!(refusals(&ctx), 2, "a screened account writes no refusal");
        let recorded: i64 = ctx
            .db
            .lock()
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action = 'screening.record'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(recorded, 2);
        assert!(
            record(
                &ctx.db,
                "olga",
                ScreeningKind::Vog,
                now,
                now - 1,
                "admin",
                now
            )
            .is_err(),
            "an expiry before the date is refused"
        );
    }
}
