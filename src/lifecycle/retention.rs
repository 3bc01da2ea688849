//! The retention run: erases what the policy ([`super::policy`]) says is past its time, from
//! every place it went, and leaves a tombstone in the audit log instead (what class, how many
//! rows, which files, when, under which policy), never the data. `serve` runs it with its
//! housekeeping; `nachtwacht retention run [--dry-run]` runs it by hand.
//!
//! Per person whose supervision ended, each personal class goes when its period has passed:
//!
//! - **raw readings**: every Parquet file holding the person's rows is rewritten without them
//!   (`dataset::erase_pid`: new file, fsync, catalog swap, old file deleted);
//! - **alerts**: alerts with their workflow steps (officers' notes) and revisions are deleted,
//!   and the audit entries about them are erased (`trust::audit::erase`);
//! - **research**: the person's rows leave both research datasets.
//!
//! From the first of these on the person is *frozen*: evaluation derives nothing for them again.
//! When every personal class is gone and no hold is in force, the **identity** goes: bundle rows
//! and their evidence, quarantine and spool files, devices, pairings, assignments, heartbeats that
//! name the devices, caseload rows, holds, episodes with their case references, case archives,
//! and every audit entry naming any of these; the person's row keeps only its number (so it is
//! never reused: a new person must not inherit the old pseudonyms) and the time of erasure.
//! Without the reference nothing links the pseudonyms to anyone: that is the erasure of the
//! pseudonym mapping.
//!
//! Classes not tied to one person go by age: evidence ciphertexts, quarantined bundles, case
//! archives, and the start of the audit log itself.
//!
//! A legal hold ([`super::hold`]) on a person keeps all of theirs; on an alert it keeps the alert,
//! its evidence bundles' readings and ciphertexts, and the identity. The dry run lists both.
//!
//! Everything runs under the decode lock and the evaluation lock, so no decode, compaction or
//! evaluation sees a half-erased person; SQLite deletes overwrite freed space (`secure_delete`)
//! and the write-ahead log is truncated at the end, so erased rows are gone from the files too.

use std::collections::{BTreeMap, BTreeSet};

use crate::base::db::Connection;
use polars::prelude::*;

use super::policy::{DataClass, RetentionPolicy};
use crate::base::time::now_ms as wall_clock_ms;
use crate::base::Context;
use crate::trust::audit;
use crate::trust::pseudonym::Pseudonymiser;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error(transparent)]
    Dataset(#[from] crate::dataset::Error),
    #[error(transparent)]
    Decode(#[from] crate::decode::Error),
    #[error(transparent)]
    Evaluate(#[from] crate::evaluate::Error),
    #[error(transparent)]
    File(#[from] crate::base::fsio::Error),
    #[error(transparent)]
    Storage(#[from] crate::base::blobs::Error),
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error(transparent)]
    Hold(#[from] super::hold::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The tombstone class of a person's identity (not a policy class: it goes with the last of them).
const IDENTITY: &str = "identity";

/// What one person's data comes to at this run.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonPlan {
    pub person_id: i64,
    /// The latest case reference (shown to the operator; never in a tombstone).
    pub reference: String,
    pub closed_at_ms: i64,
    /// Personal classes whose period has passed and that are not yet erased.
    pub due: Vec<DataClass>,
    /// Whether the identity goes too.
    pub identity: bool,
    /// Holds in force that keep (part of) the person's data.
    pub holds: Vec<super::hold::Hold>,
}

/// What a run erases (or a dry run would), before it does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub persons: Vec<PersonPlan>,
    /// Evidence ciphertexts past their period (not held).
    pub evidence: usize,
    /// Quarantined bundles past their period (not held).
    pub quarantine: Vec<(String, i64)>,
    /// Case archives past their period (not held).
    pub exports: Vec<String>,
    /// Audit entries written before this go.
    pub audit_cutoff_ms: i64,
    pub audit_entries: usize,
}

/// What a run erased (for a dry run: would erase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub readings: usize,
    pub dataset_files: usize,
    pub alerts: usize,
    pub research_rows: usize,
    pub identities: usize,
    pub evidence_files: usize,
    pub quarantined_bundles: usize,
    pub exports: usize,
    pub audit_entries_erased: usize,
    pub audit_entries_pruned: usize,
    /// Persons whose due data a hold keeps, wholly or in part.
    pub persons_held: usize,
}

impl Report {
    /// Whether the run erased (or, dry, would erase) anything at all.
    pub fn erased_anything(&self) -> bool {
        Report {
            persons_held: 0,
            ..self.clone()
        } != Report::default()
    }
}

/// How far a run has come, for a progress bar: `done` of `total` persons, then the other classes.
pub type Progress<'a> = &'a (dyn Fn(&str, usize, usize) + Sync);

/// Holds in force, as what they keep.
#[derive(Default)]
struct Held {
    persons: BTreeSet<i64>,
    alerts: BTreeSet<i64>,
    /// Evidence bundles of held alerts.
    bundles: BTreeSet<String>,
}

fn held(conn: &Connection) -> Result<Held> {
    let mut out = Held::default();
    for h in super::hold::in_force(conn, None)? {
        match h.alert_id {
            None => {
                out.persons.insert(h.person_id);
            }
            Some(alert) => {
                out.alerts.insert(alert);
                let evidence: String = conn.query_row(
                    "SELECT evidence_bundles FROM alerts WHERE id = ?1",
                    [alert],
                    |r| r.get(0),
                )?;
                out.bundles.extend(
                    evidence
                        .split(',')
                        .filter(|b| !b.is_empty())
                        .map(String::from),
                );
            }
        }
    }
    Ok(out)
}

fn query_strings(
    conn: &Connection,
    sql: &str,
    params: impl crate::base::db::Params,
) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What is due at `now_ms` under `policy`.
pub fn plan(ctx: &Context, policy: &RetentionPolicy, now_ms: i64) -> Result<Plan> {
    let conn = ctx.db.lock();
    let held = held(&conn)?;
    let mut plan = Plan {
        audit_cutoff_ms: now_ms - policy.keep_ms(DataClass::AuditLog),
        ..Plan::default()
    };
    let closed: Vec<(i64, String, i64)> = {
        let mut stmt = conn.prepare(
            "SELECT id, reference, closed_at_ms FROM persons
              WHERE closed_at_ms IS NOT NULL AND erased_at_ms IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (person_id, reference, closed_at_ms) in closed {
        let erased: BTreeSet<String> = query_strings(
            &conn,
            "SELECT class FROM person_erasures WHERE person_id = ?1",
            [person_id],
        )?
        .into_iter()
        .collect();
        let personal = DataClass::ALL.into_iter().filter(|c| c.is_personal());
        let (gone, pending): (Vec<DataClass>, Vec<DataClass>) =
            personal.partition(|c| erased.contains(c.as_str()));
        let due: Vec<DataClass> = pending
            .iter()
            .copied()
            .filter(|c| now_ms >= closed_at_ms + policy.keep_ms(*c))
            .collect();
        let holds = super::hold::in_force(&conn, Some(person_id))?;
        let whole = holds.iter().any(|h| h.alert_id.is_none());
        let due = if whole { vec![] } else { due };
        let personal_classes = DataClass::ALL.iter().filter(|c| c.is_personal()).count();
        let identity = holds.is_empty() && gone.len() + due.len() == personal_classes;
        if !due.is_empty() || identity || !holds.is_empty() {
            plan.persons.push(PersonPlan {
                person_id,
                reference,
                closed_at_ms,
                due,
                identity,
                holds,
            });
        }
    }
    let received_before = |class| now_ms - policy.keep_ms(class);
    plan.evidence = {
        let ids = query_strings(
            &conn,
            "SELECT bundle_id FROM bundles WHERE state = 'processed' AND evidence_pruned_at_ms IS NULL
               AND received_at_ms < ?1 AND (person_id IS NULL OR person_id NOT IN (SELECT CAST(value AS INTEGER) FROM json_each(?2)))",
            crate::params![
                received_before(DataClass::Evidence),
                serde_json::to_string(&held.persons).expect("ids")
            ],
        )?;
        ids.iter().filter(|b| !held.bundles.contains(*b)).count()
    };
    plan.quarantine = {
        let mut stmt = conn.prepare(
            "SELECT bundle_id, received_at_ms FROM bundles WHERE state = 'quarantined'
               AND received_at_ms < ?1 AND (person_id IS NULL OR person_id NOT IN (SELECT CAST(value AS INTEGER) FROM json_each(?2)))
             ORDER BY received_at_ms",
        )?;
        let rows = stmt.query_map(
            crate::params![
                received_before(DataClass::Quarantine),
                serde_json::to_string(&held.persons).expect("ids")
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        rows.collect::<Result<_, _>>()?
    };
    plan.exports = query_strings(
        &conn,
        "SELECT path FROM export_files WHERE written_at_ms < ?1
            AND person_id NOT IN (SELECT CAST(value AS INTEGER) FROM json_each(?2)) ORDER BY path",
        crate::params![
            now_ms - policy.keep_ms(DataClass::Exports),
            serde_json::to_string(&held.persons).expect("ids")
        ],
    )?;
    plan.audit_entries = conn.query_row(
        "SELECT count(*) FROM audit_log WHERE at_ms < ?1",
        [plan.audit_cutoff_ms],
        |r| r.get::<_, i64>(0),
    )? as usize;
    Ok(plan)
}

/// Runs the policy at `now_ms` (the wall clock, or a later time to see what will go): erases
/// everything [`plan`] finds due, or with `dry_run` only counts it. Blocking; takes the decode
/// and evaluation locks for its whole run.
pub fn run(
    ctx: &Context,
    policy: &RetentionPolicy,
    now_ms: i64,
    dry_run: bool,
    actor: &str,
    progress: Progress<'_>,
) -> Result<(Plan, Report)> {
    let _decoding = crate::decode::DecodeLock::acquire(&ctx.dir)?;
    let _evaluating = crate::evaluate::EvaluationLock::acquire(ctx)?;
    let pseudonyms = Pseudonymiser::load(&ctx.dir).map_err(|e| {
        Error::File(crate::base::fsio::Error {
            path: ctx.dir.pseudonym_keys().display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })
    })?;
    let plan = plan(ctx, policy, now_ms)?;
    let mut report = Report::default();
    let eraser = Eraser {
        ctx,
        policy,
        pseudonyms: &pseudonyms,
        now_ms,
        dry_run,
        actor,
    };
    let total = plan.persons.len();
    for (i, person) in plan.persons.iter().enumerate() {
        progress("persons", i, total);
        if !person.holds.is_empty() {
            report.persons_held += 1;
        }
        eraser.person(person, &mut report)?;
    }
    progress("persons", total, total);
    // Evidence a hold keeps: of held alerts, and every bundle of a held person.
    let kept_evidence = {
        let conn = ctx.db.lock();
        let held = held(&conn)?;
        let mut kept = held.bundles;
        kept.extend(query_strings(
            &conn,
            "SELECT bundle_id FROM bundles WHERE person_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?1))",
            [serde_json::to_string(&held.persons).expect("ids")],
        )?);
        kept
    };
    progress("evidence", 0, 1);
    report.evidence_files = crate::decode::prune_evidence(
        ctx,
        now_ms,
        policy.keep_days(DataClass::Evidence),
        &kept_evidence,
        dry_run,
    )?;
    progress("quarantine", 0, 1);
    report.quarantined_bundles = plan.quarantine.len();
    if !dry_run && !plan.quarantine.is_empty() {
        eraser.quarantine(&plan.quarantine)?;
    }
    progress("exports", 0, 1);
    report.exports = plan.exports.len();
    if !dry_run && !plan.exports.is_empty() {
        eraser.exports(&plan.exports)?;
    }
    progress("audit log", 0, 1);
    report.audit_entries_pruned = if dry_run {
        plan.audit_entries
    } else {
        audit::erase::prune_before(
            &ctx.db.lock(),
            plan.audit_cutoff_ms,
            now_ms,
            policy.digest(),
        )?
    };
    if !dry_run && report.erased_anything() {
        // Pages freed by the deletes are zeroed in the database file (secure_delete); the
        // write-ahead log still holds their earlier images until it is checkpointed and cut.
        // Only after an erasure: the checkpoint waits for readers and holds writers meanwhile.
        ctx.db.lock().reclaim_erased(ERASED_TABLES)?;
    }
    progress("done", 1, 1);
    Ok((plan, report))
}

/// The tables an erasure deletes or overwrites rows in: their freed space is reclaimed after it.
const ERASED_TABLES: &[&str] = &[
    "alerts",
    "alert_events",
    "alert_revisions",
    "audit_log",
    "bundles",
    "dataset_files",
    "notifications",
    "persons",
    "station_heartbeats",
];

/// One run's erasing, with what every step needs.
struct Eraser<'a> {
    ctx: &'a Context,
    policy: &'a RetentionPolicy,
    pseudonyms: &'a Pseudonymiser,
    now_ms: i64,
    dry_run: bool,
    actor: &'a str,
}

impl Eraser<'_> {
    fn person(&self, person: &PersonPlan, report: &mut Report) -> Result<()> {
        let id = person.person_id;
        let held_alerts: BTreeSet<i64> = person.holds.iter().filter_map(|h| h.alert_id).collect();
        let held_bundles: BTreeSet<String> = {
            let conn = self.ctx.db.lock();
            let mut out = BTreeSet::new();
            for alert in &held_alerts {
                let evidence: String = conn.query_row(
                    "SELECT evidence_bundles FROM alerts WHERE id = ?1",
                    [alert],
                    |r| r.get(0),
                )?;
                out.extend(
                    evidence
                        .split(',')
                        .filter(|b| !b.is_empty())
                        .map(String::from),
                );
            }
            out
        };
        if !self.dry_run && !person.due.is_empty() {
            // From now on evaluation leaves the person alone (see `evaluate::Persons`).
            self.ctx.db.lock().execute(
                "UPDATE persons SET erasure_started_at_ms = coalesce(erasure_started_at_ms, ?2) WHERE id = ?1",
                crate::params![id, self.now_ms],
            )?;
        }
        for class in &person.due {
            // `held`: a hold keeps part of the class, which stays due until it is released.
            let (detail, entries, erased, held) = match class {
                DataClass::RawReadings => {
                    let erased = crate::dataset::erase_pid(
                        &self.ctx.dir,
                        &self.ctx.blobs,
                        &self.ctx.db,
                        &self.pseudonyms.operational(id),
                        &held_bundles,
                        self.now_ms,
                        self.dry_run,
                    )?;
                    report.readings += erased.rows;
                    report.dataset_files += erased.files.len();
                    if !self.dry_run {
                        // The bundles whose rows went are the person's, whatever decode recorded.
                        let conn = self.ctx.db.lock();
                        for b in &erased.bundles {
                            conn.execute(
                                "UPDATE bundles SET person_id = ?2 WHERE bundle_id = ?1 AND person_id IS NULL",
                                crate::params![b, id],
                            )?;
                        }
                    }
                    // The directories, not the old files' names: a batch of one bundle is
                    // named after its bundle id, which must not outlive the bundle.
                    let directories: BTreeSet<String> = erased
                        .files
                        .iter()
                        .filter_map(|f| std::path::Path::new(f).parent())
                        .map(|d| d.to_string_lossy().into_owned())
                        .collect();
                    let detail = serde_json::json!({
                        "rows": erased.rows, "files": erased.files.len(), "in": directories,
                        "replaced_by": erased.replacements, "bundles_held": held_bundles.len(),
                    });
                    (detail, vec![], erased.rows, !held_bundles.is_empty())
                }
                DataClass::Alerts => {
                    let (detail, entries, erased) = self.alerts(id, &held_alerts, report)?;
                    (detail, entries, erased, !held_alerts.is_empty())
                }
                DataClass::Research => {
                    let rows = self.research(&self.pseudonyms.research(id))?;
                    report.research_rows += rows;
                    (serde_json::json!({ "rows": rows }), vec![], rows, false)
                }
                _ => unreachable!("only personal classes are due per person"),
            };
            if !self.dry_run && (erased > 0 || !held) {
                self.tombstone(id, class.as_str(), detail, &entries, Some(*class), !held)?;
            }
        }
        if person.identity {
            report.identities += 1;
            if !self.dry_run {
                report.audit_entries_erased += self.identity(id)?;
            }
        }
        Ok(())
    }

    /// Appends the tombstone of one class of one person, erasing `entries` under it, and records
    /// the class as erased when `complete` (nothing of it kept for a hold).
    fn tombstone(
        &self,
        person_id: i64,
        class: &str,
        mut detail: serde_json::Value,
        entries: &[i64],
        policy_class: Option<DataClass>,
        complete: bool,
    ) -> Result<()> {
        detail["class"] = class.into();
        detail["policy"] = self.policy.digest().into();
        if let Some(c) = policy_class {
            detail["keep_days"] = self.policy.keep_days(c).into();
            detail["from"] = c.anchor().as_str().into();
        }
        let mut conn = self.ctx.db.lock();
        let tx = conn.transaction()?;
        audit::erase::erase_entries(
            &tx,
            self.now_ms,
            self.actor,
            &format!("person:{person_id}"),
            detail,
            entries,
        )?;
        if complete {
            tx.execute(
                "INSERT INTO person_erasures (person_id, class, erased_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (person_id, class) DO UPDATE SET erased_at_ms = excluded.erased_at_ms",
                crate::params![person_id, class, self.now_ms],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes the person's alerts (except held ones) with their workflow and revisions; returns
    /// the tombstone's detail and the audit entries about them.
    fn alerts(
        &self,
        person_id: i64,
        held: &BTreeSet<i64>,
        report: &mut Report,
    ) -> Result<(serde_json::Value, Vec<i64>, usize)> {
        let mut conn = self.ctx.db.lock();
        let ids: Vec<i64> = {
            let mut stmt =
                conn.prepare("SELECT id FROM alerts WHERE person_id = ?1 ORDER BY id")?;
            let rows = stmt.query_map([person_id], |r| r.get(0))?;
            rows.collect::<Result<Vec<i64>, _>>()?
                .into_iter()
                .filter(|id| !held.contains(id))
                .collect()
        };
        report.alerts += ids.len();
        let objects: Vec<String> = ids.iter().map(|id| format!("alert:{id}")).collect();
        let entries = audit::erase::entries_naming(&conn, &objects, &[])?;
        let ids_json = serde_json::to_string(&ids).expect("ids");
        let steps: i64 = conn.query_row(
            "SELECT count(*) FROM alert_events WHERE alert_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?1))",
            [&ids_json],
            |r| r.get(0),
        )?;
        if !self.dry_run {
            let tx = conn.transaction()?;
            for table in [
                "alert_events",
                "alert_revisions",
                "legal_holds",
                "notifications",
            ] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE alert_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?1))"
                    ),
                    [&ids_json],
                )?;
            }
            tx.execute(
                "DELETE FROM alerts WHERE id IN (SELECT CAST(value AS INTEGER) FROM json_each(?1))",
                [&ids_json],
            )?;
            tx.commit()?;
        }
        Ok((
            serde_json::json!({"alerts": ids.len(), "workflow_steps": steps, "kept_for_holds": held.len()}),
            entries,
            ids.len(),
        ))
    }

    /// Removes rows of research pseudonym `rid` from both research datasets; returns how many.
    fn research(&self, rid: &str) -> Result<usize> {
        let mut removed = 0;
        let readers = crate::dataset::Readers::of(self.ctx)?;
        for key in [
            crate::base::blobs::RESEARCH_DAILY,
            crate::base::blobs::RESEARCH_ALERT_COUNTS,
        ] {
            let Some(path) = readers.research_table(key)? else {
                continue;
            };
            let all =
                LazyFrame::scan_parquet(PlPath::new(&path.to_string_lossy()), Default::default())?
                    .collect()?;
            let mut kept = all
                .clone()
                .lazy()
                .filter(col("rid").neq(lit(rid)))
                .collect()?;
            let here = all.height() - kept.height();
            removed += here;
            if here > 0 && !self.dry_run {
                crate::evaluate::write_research_table(&self.ctx.blobs, key, &mut kept)?;
            }
        }
        Ok(removed)
    }

    /// Erases what is left of a person once all their data classes are gone: see the module
    /// documentation. Returns how many audit entries were erased.
    fn identity(&self, id: i64) -> Result<usize> {
        let (bundles, serials, references, stations, exports) = {
            let conn = self.ctx.db.lock();
            let serials = query_strings(
                &conn,
                "SELECT DISTINCT device_serial FROM assignments WHERE person_id = ?1",
                [id],
            )?;
            // The person's bundles, and those quarantined before they could be attributed
            // (their reason names the device: "device … is not paired …").
            let bundles: Vec<(String, i64)> = {
                let mut stmt = conn.prepare(
                    "SELECT bundle_id, received_at_ms FROM bundles
                      WHERE person_id = ?1
                         OR (state = 'quarantined' AND person_id IS NULL AND EXISTS (
                             SELECT 1 FROM json_each(?2) WHERE instr(reason, value) > 0))
                      ORDER BY bundle_id",
                )?;
                let rows = stmt.query_map(
                    crate::params![id, serde_json::to_string(&serials).expect("serials")],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                rows.collect::<Result<_, _>>()?
            };
            (
                bundles,
                serials,
                query_strings(
                    &conn,
                    "SELECT reference FROM episodes WHERE person_id = ?1",
                    [id],
                )?,
                query_strings(
                    &conn,
                    "SELECT name FROM stations WHERE person_id = ?1",
                    [id],
                )?,
                query_strings(
                    &conn,
                    "SELECT path FROM export_files WHERE person_id = ?1",
                    [id],
                )?,
            )
        };
        // Files first: a crash after this leaves rows naming files that are gone, which the next
        // run erases; never files that no row names any more.
        for (bundle, received_at_ms) in &bundles {
            self.bundle_files(bundle, *received_at_ms)?;
        }
        self.export_files(&exports)?;
        let mut needles: Vec<String> = references.clone();
        needles.push(self.pseudonyms.operational(id));
        needles.push(self.pseudonyms.research(id));
        needles.extend(serials.iter().cloned());
        needles.extend(bundles.iter().map(|(b, _)| b.clone()));
        let mut conn = self.ctx.db.lock();
        let tx = conn.transaction()?;
        let entries = audit::erase::entries_naming(&tx, &[format!("person:{id}")], &needles)?;
        let station_ids = serde_json::to_string(&stations).expect("names");
        tx.execute(
            "DELETE FROM station_heartbeats
              WHERE station_id IN (SELECT id FROM stations WHERE name IN (SELECT value FROM json_each(?1)))",
            [&station_ids],
        )?;
        let mut devices_deleted = 0;
        for serial in &serials {
            tx.execute(
                "DELETE FROM station_heartbeats WHERE instr(devices, ?1) > 0",
                [serial],
            )?;
            let others: i64 = tx.query_row(
                "SELECT count(*) FROM assignments WHERE device_serial = ?1 AND person_id != ?2",
                crate::params![serial, id],
                |r| r.get(0),
            )?;
            tx.execute(
                "DELETE FROM assignments WHERE device_serial = ?1 AND person_id = ?2",
                crate::params![serial, id],
            )?;
            if others == 0 {
                // The device was only ever this person's: its pairings and its serial go too. A
                // device worn by someone since stays theirs.
                tx.execute(
                    "DELETE FROM device_pairings WHERE device_serial = ?1",
                    [serial],
                )?;
                tx.execute("DELETE FROM devices WHERE serial = ?1", [serial])?;
                devices_deleted += 1;
            }
        }
        tx.execute(
            "UPDATE stations SET person_id = NULL WHERE person_id = ?1",
            [id],
        )?;
        let bundle_ids =
            serde_json::to_string(&bundles.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>())
                .expect("ids");
        let bundle_rows = tx.execute(
            "DELETE FROM bundles WHERE bundle_id IN (SELECT value FROM json_each(?1))",
            [&bundle_ids],
        )?;
        for table in ["caseloads", "legal_holds", "export_files", "episodes"] {
            tx.execute(&format!("DELETE FROM {table} WHERE person_id = ?1"), [id])?;
        }
        tx.execute(
            "UPDATE persons SET reference = 'erased-' || id, region = NULL, birth_year = NULL,
                    erased_at_ms = ?2 WHERE id = ?1",
            crate::params![id, self.now_ms],
        )?;
        let detail = serde_json::json!({
            "class": IDENTITY, "policy": self.policy.digest(), "bundles": bundle_rows,
            "devices": serials.len(), "devices_deleted": devices_deleted,
            "episodes": references.len(), "stations_unlinked": stations.len(),
            "case_archives": exports.len(),
        });
        audit::erase::erase_entries(
            &tx,
            self.now_ms,
            self.actor,
            &format!("person:{id}"),
            detail,
            &entries,
        )?;
        tx.execute(
            "INSERT INTO person_erasures (person_id, class, erased_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (person_id, class) DO UPDATE SET erased_at_ms = excluded.erased_at_ms",
            crate::params![id, IDENTITY, self.now_ms],
        )?;
        tx.commit()?;
        Ok(entries.len())
    }

    /// Deletes every file of a bundle: its evidence copy, its quarantined copy with its reason
    /// files, a spooled copy (an object of its own, or its bytes in a segment).
    fn bundle_files(&self, bundle: &str, received_at_ms: i64) -> Result<()> {
        use crate::base::blobs::{Key, QUARANTINE};
        let blobs = &self.ctx.blobs;
        let Some(id) = nachtwacht_wire::BundleId::from_hex(bundle) else {
            return Ok(());
        };
        // A copy still waiting in a segment, which other bundles share: its bytes are erased
        // where they lie.
        let location = crate::spool::location(&self.ctx.db.lock(), &id)?;
        if let Some(crate::spool::Location::Segment {
            segment,
            offset,
            len,
        }) = location
        {
            if let Some(local) = blobs.local() {
                local.erase_range(&segment, offset, len)?;
            }
        }
        let mut keys = vec![Key::evidence(&id, received_at_ms)];
        // Spooled copies (whatever their content), the quarantined copy, its reason and the
        // reasons of earlier retries.
        for prefix in [Key::spooled_prefix(&id), format!("{QUARANTINE}{bundle}")] {
            keys.extend(blobs.list(&prefix)?.into_iter().map(|o| o.key));
        }
        for key in keys {
            blobs.remove(&key)?;
        }
        Ok(())
    }

    /// Deletes quarantined bundles past their period: files and rows, with one tombstone.
    fn quarantine(&self, due: &[(String, i64)]) -> Result<()> {
        for (bundle, received_at_ms) in due {
            self.bundle_files(bundle, *received_at_ms)?;
        }
        let mut conn = self.ctx.db.lock();
        let tx = conn.transaction()?;
        let mut needles = Vec::new();
        for (bundle, _) in due {
            tx.execute("DELETE FROM bundles WHERE bundle_id = ?1", [bundle])?;
            needles.push(bundle.clone());
        }
        let entries = audit::erase::entries_naming(&tx, &[], &needles)?;
        audit::erase::erase_entries(
            &tx,
            self.now_ms,
            self.actor,
            "quarantine",
            serde_json::json!({
                "class": DataClass::Quarantine.as_str(), "bundles": due.len(),
                "policy": self.policy.digest(),
                "keep_days": self.policy.keep_days(DataClass::Quarantine),
            }),
            &entries,
        )?;
        tx.commit()?;
        Ok(())
    }

    fn export_files(&self, paths: &[String]) -> Result<()> {
        for rel in paths {
            let abs = self.ctx.dir.root().join(rel);
            crate::base::fsio::remove_if_exists(&abs)?;
            crate::base::fsio::remove_if_exists(&abs.with_extension("tar.sha256"))?;
        }
        Ok(())
    }

    /// Deletes case archives past their period, with one tombstone.
    fn exports(&self, due: &[String]) -> Result<()> {
        self.export_files(due)?;
        let mut conn = self.ctx.db.lock();
        let tx = conn.transaction()?;
        for rel in due {
            tx.execute("DELETE FROM export_files WHERE path = ?1", [rel])?;
        }
        audit::erase::erase_entries(
            &tx,
            self.now_ms,
            self.actor,
            "exports",
            serde_json::json!({
                "class": DataClass::Exports.as_str(), "files": due,
                "policy": self.policy.digest(),
                "keep_days": self.policy.keep_days(DataClass::Exports),
            }),
            &[],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// Runs the policy on the wall clock from `serve`'s housekeeping; returns what was erased.
pub fn housekeeping(ctx: &Context, policy: &RetentionPolicy) -> Result<Report> {
    let (_, report) = run(ctx, policy, wall_clock_ms(), false, "system", &|_, _, _| {})?;
    Ok(report)
}

/// What a dry run shows the operator: per person what is due and what holds keep, then the other
/// classes. Case references appear here (the operator's own view), never in tombstones.
pub fn describe(plan: &Plan, report: &Report) -> String {
    let mut out = String::new();
    let mut kept: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for p in &plan.persons {
        for h in &p.holds {
            let what = match h.alert_id {
                None => "everything of the person".to_string(),
                Some(a) => format!(
                    "alert {a} with its workflow, its evidence bundles' readings and ciphertexts, and the identity"
                ),
            };
            kept.entry(p.person_id).or_default().push(format!(
                "hold {} ({}, by {}): keeps {what}",
                h.id, h.reason, h.placed_by
            ));
        }
        let due: Vec<&str> = p.due.iter().map(|c| c.as_str()).collect();
        out += &format!(
            "{} (supervision ended {}): erase {}{}\n",
            p.reference,
            chrono::DateTime::from_timestamp_millis(p.closed_at_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            if due.is_empty() {
                "nothing yet".to_string()
            } else {
                due.join(", ")
            },
            if p.identity {
                ", then the identity"
            } else {
                ""
            },
        );
        for line in kept.get(&p.person_id).into_iter().flatten() {
            out += &format!("  {line}\n");
        }
    }
    out += &format!(
        "readings: {} rows in {} files; alerts: {}; research rows: {}; identities: {}\n\
         evidence ciphertexts: {}; quarantined bundles: {}; case archives: {}; audit entries pruned: {}\n",
        report.readings,
        report.dataset_files,
        report.alerts,
        report.research_rows,
        report.identities,
        report.evidence_files,
        report.quarantined_bundles,
        report.exports,
        report.audit_entries_pruned,
    );
    out
}
