//! The end of a supervision. `nachtwacht person close` and the administrator's page end a
//! person's current episode: their devices are returned (assignments and pairings end), the
//! stations in their home are revoked, and from then on the person shows only under the "closed"
//! filter of the caseload views. A bundle that arrives later with readings from after the end is
//! quarantined as "supervision ended" (see `decode`), never decoded and never dropped.
//!
//! The end is also the moment from which the person's data is kept under the retention policy
//! ([`super::policy`]).

use crate::base::Context;
use crate::trust::audit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] crate::base::refusal::Refusal),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error(transparent)]
    Crl(#[from] crate::trust::crl::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What closing a supervision changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub person_id: i64,
    pub devices_returned: usize,
    pub stations_revoked: usize,
}

/// Ends the supervision episode with case reference `reference` at `at_ms` (audited as
/// `person.close`). Refused when that episode already ended or `at_ms` lies before its start.
pub fn close(ctx: &Context, reference: &str, at_ms: i64, actor: &str) -> Result<Closed> {
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let episode: Option<(i64, i64, i64, Option<i64>)> = {
        use crate::base::db::OptionalExtension;
        tx.query_row(
            "SELECT id, person_id, started_at_ms, ended_at_ms FROM episodes WHERE reference = ?1",
            [reference],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?
    };
    let Some((episode, person_id, started_ms, ended_ms)) = episode else {
        return Err(crate::base::refusal::Refusal::NoPerson(reference.to_string()).into());
    };
    if let Some(ended_ms) = ended_ms {
        return Err(crate::base::refusal::Refusal::SupervisionEnded {
            reference: reference.to_string(),
            at_ms: ended_ms,
        }
        .into());
    }
    if at_ms < started_ms {
        return Err(crate::base::refusal::Refusal::SupervisionEndsBeforeStart {
            reference: reference.to_string(),
            started_ms,
        }
        .into());
    }
    tx.execute(
        "UPDATE episodes SET ended_at_ms = ?2, ended_by = ?3 WHERE id = ?1",
        crate::params![episode, at_ms, actor],
    )?;
    tx.execute(
        "UPDATE persons SET closed_at_ms = ?2 WHERE id = ?1",
        crate::params![person_id, at_ms],
    )?;
    // Devices are returned: their assignments to the person, and their pairings, end at the end.
    let serials: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT DISTINCT device_serial FROM assignments
              WHERE person_id = ?1 AND valid_from_ms < ?2
                AND (valid_to_ms IS NULL OR valid_to_ms > ?2)",
        )?;
        let rows = stmt.query_map(crate::params![person_id, at_ms], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for serial in &serials {
        tx.execute(
            "UPDATE assignments SET valid_to_ms = ?3
              WHERE person_id = ?1 AND device_serial = ?2 AND valid_from_ms < ?3
                AND (valid_to_ms IS NULL OR valid_to_ms > ?3)",
            crate::params![person_id, serial, at_ms],
        )?;
        tx.execute(
            "UPDATE device_pairings SET valid_to_ms = max(valid_from_ms + 1, ?2)
              WHERE device_serial = ?1 AND (valid_to_ms IS NULL OR valid_to_ms > ?2)",
            crate::params![serial, at_ms],
        )?;
    }
    // The stations in the person's home are revoked: a returned station is not trusted again
    // until it is enrolled anew.
    let revoked = tx.execute(
        "UPDATE stations SET revoked_at_ms = ?2 WHERE person_id = ?1 AND revoked_at_ms IS NULL",
        crate::params![person_id, now],
    )?;
    let crl = if revoked > 0 {
        Some(crate::trust::crl::publish(&ctx.dir, &tx, now)?)
    } else {
        None
    };
    audit::append(
        &tx,
        now,
        actor,
        "person.close",
        &format!("person:{person_id}"),
        &serde_json::json!({
            "episode": episode, "ended_at_ms": at_ms, "devices_returned": serials.len(),
            "stations_revoked": revoked, "crl_number": crl,
        })
        .to_string(),
    )?;
    tx.commit()?;
    Ok(Closed {
        person_id,
        devices_returned: serials.len(),
        stations_revoked: revoked,
    })
}

/// One supervision episode of a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub reference: String,
    pub programme: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

/// Every episode of a person, oldest first.
pub fn episodes(
    conn: &crate::base::db::Connection,
    person_id: i64,
) -> crate::base::db::Result<Vec<Episode>> {
    let mut stmt = conn.prepare(
        "SELECT reference, programme, started_at_ms, ended_at_ms FROM episodes
          WHERE person_id = ?1 ORDER BY started_at_ms, id",
    )?;
    let rows = stmt.query_map([person_id], |r| {
        Ok(Episode {
            reference: r.get(0)?,
            programme: r.get(1)?,
            started_at_ms: r.get(2)?,
            ended_at_ms: r.get(3)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::programme::Programme;
    use crate::registry::enroll;

    use crate::server::init::temporary as context;

    #[test]
    fn closing_returns_devices_revokes_the_home_station_and_refuses_a_second_close() {
        let (_tmp, ctx) = context();
        let p = enroll::add_person(&ctx, "CASE-1", Programme::AlcoholBan, "admin").unwrap();
        enroll::add_station(&ctx, "home-1", "admin").unwrap();
        enroll::link_station(&ctx, "home-1", "CASE-1", "admin").unwrap();
        enroll::assign_device(
            &ctx,
            "ANK-1",
            nachtwacht_wire::DeviceKind::AnkleMonitor,
            p,
            0,
            "admin",
        )
        .unwrap();
        enroll::pair_device(&ctx, "ANK-1", "home-1", 0, "admin").unwrap();
        let end = crate::base::time::now_ms() + 5_000;
        let closed = close(&ctx, "CASE-1", end, "admin").unwrap();
        assert_eq!(
            closed,
            Closed {
                person_id: p,
                devices_returned: 1,
                stations_revoked: 1
            }
        );
        let conn = ctx.db.lock();
        let (assigned_to, paired_to, revoked): (Option<i64>, Option<i64>, Option<i64>) = conn
            .query_row(
                "SELECT (SELECT valid_to_ms FROM assignments), (SELECT valid_to_ms FROM device_pairings),
                        (SELECT revoked_at_ms FROM stations)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((assigned_to, paired_to), (Some(end), Some(end)));
        assert!(revoked.is_some());
        drop(conn);
        let again = close(&ctx, "CASE-1", end + 1, "admin")
            .unwrap_err()
            .to_string();
        assert!(again.contains("already ended"), "{again}");
    }

    /// A person convicted again keeps one identity: the new episode's reference finds the same
    /// person, so the same research pseudonym. Before, enrolling under the new reference made a
    /// second research person.
    #[test]
    fn a_returning_person_keeps_one_identity_and_one_research_pseudonym() {
        let (_tmp, ctx) = context();
        let first = enroll::add_person(&ctx, "CASE-1", Programme::AlcoholBan, "admin").unwrap();
        let early = enroll::start_episode(&ctx, "CASE-1", "CASE-2", Programme::AlcoholBan, "admin")
            .unwrap_err()
            .to_string();
        assert!(early.contains("has not ended"), "{early}");
        let end = crate::base::time::now_ms() + 10;
        close(&ctx, "CASE-1", end, "admin").unwrap();
        let again = enroll::start_episode(
            &ctx,
            "CASE-1",
            "CASE-2",
            Programme::AggressionTraining,
            "admin",
        )
        .unwrap();
        assert_eq!(again, first);
        let conn = ctx.db.lock();
        assert_eq!(enroll::person_id(&conn, "CASE-2").unwrap(), Some(first));
        assert_eq!(enroll::person_id(&conn, "CASE-1").unwrap(), Some(first));
        let eps = episodes(&conn, first).unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].ended_at_ms, Some(end));
        assert_eq!(
            (eps[1].reference.as_str(), eps[1].ended_at_ms),
            ("CASE-2", None)
        );
        let persons: i64 = conn
            .query_row("SELECT count(*) FROM persons", [], |r| r.get(0))
            .unwrap();
        assert_eq!(persons, 1, "one identity, so one research pseudonym");
        drop(conn);
        let taken = enroll::add_person(&ctx, "CASE-1", Programme::AlcoholBan, "admin")
            .unwrap_err()
            .to_string();
        assert!(taken.contains("already enrolled"), "{taken}");
    }
}
