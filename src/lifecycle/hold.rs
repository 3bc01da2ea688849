//! Legal holds: data needed in court proceedings is kept past its retention until the hold is
//! released. A hold names a person (nothing of theirs is erased) or one alert (the alert with its
//! workflow and revisions, the readings and evidence ciphertexts of its evidence bundles, and the
//! person's identity, so the alert stays attributable). Placing and releasing are audited; an
//! officer may hold only what is on their own caseload.

use crate::base::db::{Connection, OptionalExtension};

use crate::registry::accounts::{Account, Role};
use crate::trust::audit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] crate::base::refusal::Refusal),
    #[error("not found")]
    NotFound,
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error(transparent)]
    Caseload(#[from] crate::registry::caseload::Error),
    #[error(transparent)]
    Screening(#[from] crate::registry::screening::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a hold keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldTarget {
    Person(i64),
    Alert(i64),
    /// Everything of the person an alert is about (an officer holds from the alert's page).
    PersonOfAlert(i64),
}

/// A hold in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: i64,
    pub person_id: i64,
    pub alert_id: Option<i64>,
    pub reason: String,
    pub placed_by: String,
    pub placed_at_ms: i64,
}

/// Who places or releases a hold: an account from the web, or an operator at the command line
/// (`actor` is then the operator's name and no caseload applies).
pub enum HoldActor<'a> {
    Account(&'a Account),
    Operator(&'a str),
}

impl HoldActor<'_> {
    fn name(&self) -> &str {
        match self {
            Self::Account(a) => &a.username,
            Self::Operator(name) => name,
        }
    }
}

/// Whether `actor` may hold or release data of `person_id`: administrators and operators always,
/// officers only for persons on their caseload now, nobody else.
fn may_act(conn: &Connection, actor: &HoldActor<'_>, person_id: i64, now_ms: i64) -> Result<bool> {
    Ok(match actor {
        HoldActor::Operator(_) => true,
        HoldActor::Account(a) => match a.role {
            Role::Administrator => true,
            Role::Officer => crate::registry::caseload::may_see(conn, a.id, person_id, now_ms)?,
            _ => false,
        },
    })
}

/// An officer opens a person's data to hold or release it: only with a screening in force.
fn screened(conn: &Connection, actor: &HoldActor<'_>, attempted: &str, now_ms: i64) -> Result<()> {
    if let HoldActor::Account(a) = actor {
        if a.role == Role::Officer {
            crate::registry::screening::require(conn, a.id, &a.username, attempted, now_ms)?;
        }
    }
    Ok(())
}

/// Places a hold (audited as `hold.place`). A refusal (unknown target, not on the officer's
/// caseload) is audited as `hold.refused` and reads as not found.
pub fn place(
    conn: &mut Connection,
    actor: HoldActor<'_>,
    target: HoldTarget,
    reason: &str,
    now_ms: i64,
) -> Result<i64> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(crate::base::refusal::Refusal::HoldReasonRequired.into());
    }
    screened(conn, &actor, "hold.place", now_ms)?;
    let tx = conn.transaction()?;
    let (person_id, alert_id) = match target {
        HoldTarget::Person(p) => {
            let known: Option<i64> = tx
                .query_row(
                    "SELECT id FROM persons WHERE id = ?1 AND erased_at_ms IS NULL",
                    [p],
                    |r| r.get(0),
                )
                .optional()?;
            (known, None)
        }
        HoldTarget::Alert(a) | HoldTarget::PersonOfAlert(a) => {
            let person: Option<i64> = tx
                .query_row("SELECT person_id FROM alerts WHERE id = ?1", [a], |r| {
                    r.get(0)
                })
                .optional()?;
            (person, matches!(target, HoldTarget::Alert(_)).then_some(a))
        }
    };
    let object = match (target, person_id) {
        (HoldTarget::Person(p), _) | (HoldTarget::PersonOfAlert(_), Some(p)) => {
            format!("person:{p}")
        }
        (HoldTarget::Alert(a), _) | (HoldTarget::PersonOfAlert(a), None) => format!("alert:{a}"),
    };
    let allowed = match person_id {
        Some(p) => may_act(&tx, &actor, p, now_ms)?,
        None => false,
    };
    let (Some(person_id), true) = (person_id, allowed) else {
        audit::append(&tx, now_ms, actor.name(), "hold.refused", &object, "{}")?;
        tx.commit()?;
        return Err(Error::NotFound);
    };
    let id: i64 = tx.query_row(
        "INSERT INTO legal_holds (person_id, alert_id, reason, placed_by, placed_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         RETURNING id",
        crate::params![person_id, alert_id, reason, actor.name(), now_ms],
        |r| r.get(0),
    )?;
    audit::append(
        &tx,
        now_ms,
        actor.name(),
        "hold.place",
        &object,
        &serde_json::json!({"hold": id, "reason": reason}).to_string(),
    )?;
    tx.commit()?;
    Ok(id)
}

/// Releases a hold in force (audited as `hold.release`); the held data is then kept only as long
/// as the retention policy says.
pub fn release(
    conn: &mut Connection,
    actor: HoldActor<'_>,
    hold_id: i64,
    reason: &str,
    now_ms: i64,
) -> Result<()> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(crate::base::refusal::Refusal::ReleaseReasonRequired.into());
    }
    screened(conn, &actor, "hold.release", now_ms)?;
    let tx = conn.transaction()?;
    let person: Option<i64> = tx
        .query_row(
            "SELECT person_id FROM legal_holds WHERE id = ?1 AND released_at_ms IS NULL",
            [hold_id],
            |r| r.get(0),
        )
        .optional()?;
    let allowed = match person {
        Some(p) => may_act(&tx, &actor, p, now_ms)?,
        None => false,
    };
    if !allowed {
        audit::append(
            &tx,
            now_ms,
            actor.name(),
            "hold.refused",
            &format!("hold:{hold_id}"),
            "{}",
        )?;
        tx.commit()?;
        return Err(Error::NotFound);
    }
    tx.execute(
        "UPDATE legal_holds SET released_by = ?2, released_at_ms = ?3, release_reason = ?4 WHERE id = ?1",
        crate::params![hold_id, actor.name(), now_ms, reason],
    )?;
    audit::append(
        &tx,
        now_ms,
        actor.name(),
        "hold.release",
        &format!("hold:{hold_id}"),
        &serde_json::json!({"reason": reason}).to_string(),
    )?;
    tx.commit()?;
    Ok(())
}

/// Every hold in force, of one person or of everyone.
pub fn in_force(conn: &Connection, person_id: Option<i64>) -> Result<Vec<Hold>> {
    let mut stmt = conn.prepare(
        "SELECT id, person_id, alert_id, reason, placed_by, placed_at_ms FROM legal_holds
          WHERE released_at_ms IS NULL AND (?1 IS NULL OR person_id = ?1) ORDER BY id",
    )?;
    let rows = stmt.query_map([person_id], |r| {
        Ok(Hold {
            id: r.get(0)?,
            person_id: r.get(1)?,
            alert_id: r.get(2)?,
            reason: r.get(3)?,
            placed_by: r.get(4)?,
            placed_at_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Context;
    use crate::registry::accounts;

    use crate::server::init::temporary as context;

    fn officer(ctx: &Context, name: &str) -> Account {
        let now = crate::base::time::now_ms();
        let id = accounts::create(&ctx.db, name, Role::Officer, "t", now)
            .unwrap()
            .id;
        crate::registry::screening::screen_for_a_year(&ctx.db, name, now).unwrap();
        Account {
            id,
            username: name.into(),
            role: Role::Officer,
            must_change_password: false,
        }
    }

    /// An officer holds an alert, or its whole person, on their own caseload only; the refusal
    /// reads as not found and is audited; placing and releasing are audited with the reason.
    #[test]
    fn officers_hold_only_their_caseload_and_every_step_is_audited() {
        let (_tmp, ctx) = context();
        let programme = crate::base::programme::Programme::AlcoholBan;
        let p = crate::registry::enroll::add_person(&ctx, "CASE-1", programme, "t").unwrap();
        let alert = {
            let conn = ctx.db.lock();
            conn.execute(
                "INSERT INTO alerts (person_id, kind, severity, start_ms, end_ms, rule, evidence_bundles, created_at_ms)
                 VALUES (?1, 'alcohol', 'high', 0, 1, '{}', '', 0)",
                [p],
            )
            .unwrap();
            conn.last_insert_rowid()
        };
        let (olga, otto) = (officer(&ctx, "olga"), officer(&ctx, "otto"));
        let now = crate::base::time::now_ms();
        crate::registry::caseload::assign(&ctx.db, "olga", "CASE-1", now - 1000, None, "t", now)
            .unwrap();
        let place = |who: &Account, target| {
            place(
                &mut ctx.db.lock(),
                HoldActor::Account(who),
                target,
                "zitting",
                now,
            )
        };
        assert!(matches!(
            place(&otto, HoldTarget::Alert(alert)),
            Err(Error::NotFound)
        ));
        let on_alert = place(&olga, HoldTarget::Alert(alert)).unwrap();
        let on_person = place(&olga, HoldTarget::PersonOfAlert(alert)).unwrap();
        let holds = in_force(&ctx.db.lock(), Some(p)).unwrap();
        assert_eq!(
            holds.iter().map(|h| (h.id, h.alert_id)).collect::<Vec<_>>(),
            vec![(on_alert, Some(alert)), (on_person, None)]
        );
        assert!(matches!(
            release(
                &mut ctx.db.lock(),
                HoldActor::Account(&otto),
                on_person,
                "klaar",
                now
            ),
            Err(Error::NotFound)
        ));
        release(
            &mut ctx.db.lock(),
            HoldActor::Account(&olga),
            on_person,
            "klaar",
            now,
        )
        .unwrap();
        assert_eq!(in_force(&ctx.db.lock(), Some(p)).unwrap().len(), 1);
        let actions: Vec<String> = {
            let conn = ctx.db.lock();
            let mut stmt = conn
                .prepare("SELECT actor || ' ' || action || ' ' || object FROM audit_log WHERE action LIKE 'hold.%' ORDER BY seq")
                .unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        assert_eq!(
            actions,
            vec![
                format!("otto hold.refused alert:{alert}"),
                format!("olga hold.place alert:{alert}"),
                format!("olga hold.place person:{p}"),
                format!("otto hold.refused hold:{on_person}"),
                format!("olga hold.release hold:{on_person}"),
            ]
        );
    }
}
