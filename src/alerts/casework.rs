//! An officer's casework: the alerts of their caseload, each alert's evidence, and the workflow
//! new → in process → confirmed / not confirmed → resolved, every step with a comment.
//!
//! Every function takes the officer and checks the caseload itself ([`crate::registry::caseload`]), so a
//! handler cannot forget to; an alert outside the caseload is reported as [`Error::NotFound`],
//! exactly like one that does not exist, so guessing ids reveals nothing. Every read of personal
//! data and every step writes an audit entry in the same transaction as what it records.

use crate::base::db::OptionalExtension;
use polars::prelude::*;

use super::{AlertKind, Severity, Status};
use crate::base::Context;
use crate::registry::accounts::Account;
use crate::registry::caseload;
use crate::trust::audit;
use nachtwacht_wire::Signal;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The alert does not exist or is not on the officer's caseload (deliberately one error).
    #[error("no such alert on your caseload")]
    NotFound,
    /// The officer's request cannot be honoured as made (one of a closed set, so the pages can
    /// say it in the officer's language).
    #[error("{0}")]
    Refused(Refusal),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Caseload(#[from] caseload::Error),
    /// The officer's staff screening is not in force (refused and audited).
    #[error(transparent)]
    Screening(#[from] crate::registry::screening::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error(transparent)]
    Dataset(#[from] crate::dataset::Error),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    /// The server's own keys could not be read: an internal failure, not the officer's mistake.
    #[error("pseudonym keys: {0}")]
    Keys(#[from] crate::trust::secrets::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use crate::base::refusal::Refusal;

/// Filters of the alert list; empty fields do not filter.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AlertFilter {
    pub status: Option<String>,
    pub kind: Option<String>,
    /// `YYYY-MM-DD`, inclusive, on the alert's start, in the local time zone (`[http] time_zone`).
    pub from: Option<String>,
    pub to: Option<String>,
    /// A person reference.
    pub person: Option<String>,
    /// `closed`: only persons whose supervision has ended; otherwise only running supervisions.
    pub supervision: Option<String>,
    /// 1-based page of [`PAGE_SIZE`] alerts.
    pub page: Option<u32>,
    /// `start` (newest first, the default), `severity`, `person` or `status`.
    pub sort: Option<String>,
}

/// Alerts on one page of the list.
pub const PAGE_SIZE: usize = 100;

/// How the list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Start,
    Severity,
    Person,
    Status,
}

impl SortKey {
    pub const ALL: [SortKey; 4] = [Self::Start, Self::Severity, Self::Person, Self::Status];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Severity => "severity",
            Self::Person => "person",
            Self::Status => "status",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The SQL order; the alert's start (newest first) breaks ties. Severity and status sort in
    /// the order of their closed sets (most severe, least handled first).
    fn order_by(self) -> String {
        let rank = |column: &str, values: &[&str]| {
            let whens: String = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!(" WHEN '{v}' THEN {i}"))
                .collect();
            format!("CASE {column}{whens} ELSE {} END, ", values.len())
        };
        let first = match self {
            Self::Start => String::new(),
            Self::Severity => rank("a.severity", &Severity::ALL.map(|s| s.as_str())),
            Self::Person => "p.reference, ".into(),
            Self::Status => rank("a.status", &Status::ALL.map(|s| s.as_str())),
        };
        format!("{first}a.start_ms DESC, a.id DESC")
    }
}

/// One page of an officer's alert list, with what the whole list holds.
#[derive(Debug, Clone)]
pub struct AlertList {
    pub rows: Vec<AlertRow>,
    /// Alerts matching the filter, all pages.
    pub total: usize,
    /// Alerts matching the filter but its status, per status (for the counts above the list).
    pub by_status: Vec<(Status, usize)>,
    pub page: u32,
    pub pages: u32,
    /// When the officer last opened the list before now (from the audit log), if ever: alerts
    /// raised since are new to them.
    pub last_visit_ms: Option<i64>,
    /// Alerts matching the filter raised since that visit.
    pub new_since_last_visit: usize,
    /// The kinds the officer's caseload has alerts of (the kind filter offers only these), in
    /// the order of [`AlertKind::ALL`].
    pub kinds: Vec<AlertKind>,
}

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub id: i64,
    pub person_id: i64,
    pub person_reference: String,
    pub programme: crate::base::programme::Programme,
    pub kind: AlertKind,
    pub severity: Severity,
    pub start_ms: i64,
    pub end_ms: i64,
    pub peak_tac_g_dl: Option<f64>,
    pub rule: String,
    pub evidence_bundles: String,
    pub status: Status,
    /// Raised before its episode's end was known (see `evaluate::alcohol_alerts`).
    pub provisional: bool,
    /// How often new readings revised it (0: as first raised).
    pub revision: i64,
    /// Withdrawn because the readings no longer support it: kept, with its workflow.
    pub withdrawn: bool,
    /// When it was first raised.
    pub created_at_ms: i64,
}

/// One revision of an alert by new readings: what it said before and after, and why.
#[derive(Debug, Clone)]
pub struct Revision {
    pub revision: i64,
    pub at_ms: i64,
    pub reason: Option<crate::alerts::RevisionReason>,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct WorkflowStep {
    pub at_ms: i64,
    pub actor: String,
    pub from_status: Status,
    pub to_status: Status,
    pub comment: String,
}

/// An alert with its evidence: what the detail page and the report show.
#[derive(Debug, Clone)]
pub struct AlertDetail {
    pub alert: AlertRow,
    pub steps: Vec<WorkflowStep>,
    pub revisions: Vec<Revision>,
    /// Ankle readings from 12 h before the alert to 12 h after: (ts, TAC g/dL, worn).
    pub tac: Vec<(i64, f64, bool)>,
    /// The TAC threshold of the rule that fired.
    pub threshold_g_dl: f64,
    /// When the person's station was heard from (uploads and heartbeats) in the window.
    pub station_contacts: Vec<i64>,
    /// The station's last contact at or before the alert's start and its first after, at any
    /// distance (the silence of a communication alert can outlast the window).
    pub contacts_around: (Option<i64>, Option<i64>),
    /// The wristband's evidence over the same window, per minute (persons of a programme with a
    /// wristband; empty otherwise).
    pub wrist: WristEvidence,
    /// The evidence bundles with the SHA-256 of their ciphertexts as received.
    pub evidence_digests: Vec<(String, String)>,
    /// The alert's latest seal in the audit log: (entry number, entry hash).
    pub seal: Option<(i64, String)>,
}

/// A wristband's readings around an alert, one mean per minute: (minute start, value).
#[derive(Debug, Clone, Default)]
pub struct WristEvidence {
    pub hr_bpm: Vec<(i64, f64)>,
    pub eda_us: Vec<(i64, f64)>,
    /// Movement: the mean deviation of the acceleration's magnitude from 1 g.
    pub movement_g: Vec<(i64, f64)>,
}

impl WristEvidence {
    pub fn is_empty(&self) -> bool {
        self.hr_bpm.is_empty() && self.eda_us.is_empty() && self.movement_g.is_empty()
    }
}

const SELECT_ALERT: &str = "SELECT a.id, a.person_id, p.reference, p.programme, a.kind, a.severity,
        a.start_ms, a.end_ms, a.peak_tac_g_dl, a.rule, a.evidence_bundles, a.status,
        a.provisional, a.revision, a.withdrawn_at_ms, a.created_at_ms
   FROM alerts a JOIN persons p ON p.id = a.person_id";

fn alert_row(r: &crate::base::db::Row) -> crate::base::db::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        person_id: r.get(1)?,
        person_reference: r.get(2)?,
        programme: r.get(3)?,
        kind: r.get(4)?,
        severity: r.get(5)?,
        start_ms: r.get(6)?,
        end_ms: r.get(7)?,
        peak_tac_g_dl: r.get(8)?,
        rule: r.get(9)?,
        evidence_bundles: r.get(10)?,
        status: r.get(11)?,
        provisional: r.get::<_, i64>(12)? != 0,
        revision: r.get(13)?,
        withdrawn: r.get::<_, Option<i64>>(14)?.is_some(),
        created_at_ms: r.get(15)?,
    })
}

/// A `YYYY-MM-DD` filter field as a local calendar day of `zone`.
fn local_day(day: &str) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|_| Error::Refused(Refusal::NotADate(day.to_string())))
}

/// One page of the alerts of the officer's caseload matching `filter`, in its order, with the
/// total and the counts per status.
pub fn list(
    ctx: &Context,
    officer: &Account,
    filter: &AlertFilter,
    now_ms: i64,
) -> Result<AlertList> {
    matching(ctx, officer, filter, now_ms, PAGE_SIZE, "alerts.list")
}

/// The most alerts one export holds.
pub const EXPORT_LIMIT: usize = 10_000;

/// Every alert of the officer's caseload matching `filter` (the page ignored; at most
/// [`EXPORT_LIMIT`]) as CSV, times in the local zone. Audited as `alerts.export`.
pub fn export_csv(
    ctx: &Context,
    officer: &Account,
    filter: &AlertFilter,
    now_ms: i64,
) -> Result<String> {
    let all = AlertFilter {
        page: Some(1),
        ..filter.clone()
    };
    let list = matching(ctx, officer, &all, now_ms, EXPORT_LIMIT, "alerts.export")?;
    let zone = ctx.config.http.zone();
    let t = |ms: i64| zone.format(ms, "%Y-%m-%d %H:%M");
    let mut out = format!(
        "alert,start ({z}),end ({z}),person,programme,kind,severity,peak_tac_g_dl,status,withdrawn\n",
        z = zone.name()
    );
    for a in &list.rows {
        out += &format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            a.id,
            t(a.start_ms),
            t(a.end_ms),
            audit::csv_field(&a.person_reference),
            a.programme.as_str(),
            a.kind.as_str(),
            a.severity.as_str(),
            a.peak_tac_g_dl
                .map(|v| format!("{v:.3}"))
                .unwrap_or_default(),
            a.status.as_str(),
            a.withdrawn
        );
    }
    Ok(out)
}

fn matching(
    ctx: &Context,
    officer: &Account,
    filter: &AlertFilter,
    now_ms: i64,
    page_size: usize,
    action: &str,
) -> Result<AlertList> {
    let nonempty = |o: &Option<String>| {
        o.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    // Days are the officer's local days (`[http] time_zone`), daylight saving included.
    let zone = ctx.config.http.zone();
    let from = nonempty(&filter.from)
        .map(|d| local_day(&d).map(|d| zone.day_start_ms(d)))
        .transpose()?;
    let to = nonempty(&filter.to)
        .map(|d| local_day(&d).map(|d| zone.day_start_ms(d.succ_opt().unwrap_or(d))))
        .transpose()?;
    // `to` is the end of its day: a period of one day has from < to.
    if let (Some(from), Some(to)) = (from, to) {
        if to <= from {
            return Err(Error::Refused(Refusal::PeriodBackwards));
        }
    }
    let sort = match nonempty(&filter.sort) {
        None => SortKey::Start,
        Some(s) => {
            SortKey::parse(&s).ok_or_else(|| Error::Refused(Refusal::UnknownSort(s.clone())))?
        }
    };
    let page = filter.page.unwrap_or(1).max(1);
    require_screening(ctx, officer, action, now_ms)?;
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let persons = caseload::persons_of(&tx, officer.id, now_ms)?;
    // ?2 the status (NULL for the counts per status); ?6 a fragment of the case reference.
    const MATCHING: &str = "FROM alerts a JOIN persons p ON p.id = a.person_id
          WHERE a.person_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?1))
            AND (?2 IS NULL OR a.status = ?2) AND (?3 IS NULL OR a.kind = ?3)
            AND (?4 IS NULL OR a.start_ms >= ?4) AND (?5 IS NULL OR a.start_ms < ?5)
            AND (?6 IS NULL OR instr(lower(p.reference), lower(?6)) > 0)
            AND ((coalesce(?7, '') = 'closed') = (p.closed_at_ms IS NOT NULL))";
    let params = |status: Option<String>| {
        (
            serde_json::to_string(&persons).expect("ids"),
            status,
            nonempty(&filter.kind),
            from,
            to,
            nonempty(&filter.person),
            nonempty(&filter.supervision),
        )
    };
    let by_status: Vec<(Status, usize)> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT a.status, count(*) {MATCHING} GROUP BY a.status"
        ))?;
        let counted = stmt.query_map(params(None), |r| {
            Ok((r.get::<_, Status>(0)?, r.get::<_, i64>(1)? as usize))
        })?;
        let counted: Vec<(Status, usize)> = counted.collect::<Result<_, _>>()?;
        Status::ALL
            .into_iter()
            .map(|s| (s, counted.iter().find(|c| c.0 == s).map_or(0, |c| c.1)))
            .collect()
    };
    let total: usize = tx.query_row(
        &format!("SELECT count(*) {MATCHING}"),
        params(nonempty(&filter.status)),
        |r| r.get::<_, i64>(0),
    )? as usize;
    let pages = total.div_ceil(page_size).max(1) as u32;
    let page = page.min(pages);
    let rows = {
        let mut stmt = tx.prepare(&format!(
            "SELECT a.id, a.person_id, p.reference, p.programme, a.kind, a.severity,
                    a.start_ms, a.end_ms, a.peak_tac_g_dl, a.rule, a.evidence_bundles, a.status,
                    a.provisional, a.revision, a.withdrawn_at_ms, a.created_at_ms
               {MATCHING} ORDER BY {} LIMIT {page_size} OFFSET {}",
            sort.order_by(),
            (page as usize - 1) * page_size
        ))?;
        let rows = stmt.query_map(params(nonempty(&filter.status)), alert_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let last_visit_ms: Option<i64> = tx.query_row(
        "SELECT max(at_ms) FROM audit_log WHERE actor = ?1 AND action = 'alerts.list'",
        [&officer.username],
        |r| r.get(0),
    )?;
    let new_since_last_visit = match last_visit_ms {
        Some(visit) => {
            let (a, b, c, d, e, f, g) = params(nonempty(&filter.status));
            tx.query_row(
                &format!("SELECT count(*) {MATCHING} AND a.created_at_ms > ?8"),
                crate::params![a, b, c, d, e, f, g, visit],
                |r| r.get::<_, i64>(0),
            )? as usize
        }
        None => 0,
    };
    let kinds: Vec<AlertKind> = {
        let mut stmt = tx.prepare(
            "SELECT DISTINCT kind FROM alerts WHERE person_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?1))",
        )?;
        let present = stmt
            .query_map([serde_json::to_string(&persons).expect("ids")], |r| {
                r.get::<_, AlertKind>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        AlertKind::ALL
            .into_iter()
            .filter(|k| present.contains(k))
            .collect()
    };
    let persons_shown: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.person_id).collect();
    audit::append(
        &tx,
        now_ms,
        &officer.username,
        action,
        "alerts",
        &serde_json::json!({
            "filter": {"status": filter.status, "kind": filter.kind, "from": filter.from,
                       "to": filter.to, "person": filter.person, "supervision": filter.supervision,
                       "page": page, "sort": sort.as_str()},
            "alerts": rows.len(), "total": total, "persons": persons_shown,
        })
        .to_string(),
    )?;
    tx.commit()?;
    Ok(AlertList {
        rows,
        total,
        by_status,
        page,
        pages,
        last_visit_ms,
        new_since_last_visit,
        kinds,
    })
}

/// One alert of the officer's caseload, or [`Error::NotFound`].
fn own_alert(
    conn: &crate::base::db::Connection,
    officer: &Account,
    alert_id: i64,
    now_ms: i64,
) -> Result<AlertRow> {
    let alert = conn
        .query_row(
            &format!("{SELECT_ALERT} WHERE a.id = ?1"),
            [alert_id],
            alert_row,
        )
        .optional()?
        .ok_or(Error::NotFound)?;
    if !caseload::may_see(conn, officer.id, alert.person_id, now_ms)? {
        return Err(Error::NotFound);
    }
    Ok(alert)
}

/// Refuses an officer whose staff screening is not in force (audited by `screening::require`).
/// Every public function here (and in [`super::person`]) calls it first.
pub(super) fn require_screening(
    ctx: &Context,
    officer: &Account,
    attempted: &str,
    now_ms: i64,
) -> Result<()> {
    crate::registry::screening::require(
        &ctx.db.lock(),
        officer.id,
        &officer.username,
        attempted,
        now_ms,
    )?;
    Ok(())
}

/// Records a refused attempt to reach an alert (URL guessing shows up in the audit log).
fn audit_refusal(
    ctx: &Context,
    officer: &Account,
    alert_id: i64,
    action: &str,
    now_ms: i64,
) -> Result<()> {
    audit::append(
        &ctx.db.lock(),
        now_ms,
        &officer.username,
        "alert.refused",
        &format!("alert:{alert_id}"),
        &serde_json::json!({"attempted": action}).to_string(),
    )?;
    Ok(())
}

/// Who reads an alert's evidence.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    /// An officer: only alerts of their caseload, only with a staff screening in force.
    Officer(&'a Account),
    /// The operator at the server's command line (`nachtwacht alert dossier`), named in the
    /// audit entry: the operator already holds the data directory and its keys.
    Operator(&'a str),
}

impl Reader<'_> {
    pub fn name(&self) -> &str {
        match self {
            Self::Officer(a) => &a.username,
            Self::Operator(name) => name,
        }
    }
}

/// An alert with its evidence. `purpose` (`view` or `report`) is recorded in the audit entry.
pub fn detail(
    ctx: &Context,
    officer: &Account,
    alert_id: i64,
    purpose: &str,
    now_ms: i64,
) -> Result<AlertDetail> {
    detail_as(ctx, Reader::Officer(officer), alert_id, purpose, now_ms)
}

/// [`detail`] for any [`Reader`]; `purpose` (`view`, `report`, `dossier`) is recorded in the
/// audit entry as `alert.<purpose>`.
pub fn detail_as(
    ctx: &Context,
    reader: Reader<'_>,
    alert_id: i64,
    purpose: &str,
    now_ms: i64,
) -> Result<AlertDetail> {
    if let Reader::Officer(officer) = reader {
        require_screening(ctx, officer, &format!("alert.{purpose}"), now_ms)?;
    }
    let (alert, steps, revisions, (station_contacts, contacts_around), evidence_digests, seal) = {
        let mut conn = ctx.db.lock();
        let tx = conn.transaction()?;
        let found = match reader {
            Reader::Officer(officer) => own_alert(&tx, officer, alert_id, now_ms),
            Reader::Operator(_) => tx
                .query_row(
                    &format!("{SELECT_ALERT} WHERE a.id = ?1"),
                    [alert_id],
                    alert_row,
                )
                .optional()?
                .ok_or(Error::NotFound),
        };
        let alert = match (found, reader) {
            (Ok(a), _) => a,
            (Err(Error::NotFound), Reader::Officer(officer)) => {
                drop(tx);
                drop(conn);
                audit_refusal(ctx, officer, alert_id, purpose, now_ms)?;
                return Err(Error::NotFound);
            }
            (Err(e), _) => return Err(e),
        };
        let steps = {
            let mut stmt = tx.prepare(
                "SELECT at_ms, actor, from_status, to_status, comment FROM alert_events
                  WHERE alert_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([alert_id], |r| {
                Ok(WorkflowStep {
                    at_ms: r.get(0)?,
                    actor: r.get(1)?,
                    from_status: r.get(2)?,
                    to_status: r.get(3)?,
                    comment: r.get(4)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let revisions = {
            let mut stmt = tx.prepare(
                "SELECT revision, at_ms, reason, before, after FROM alert_revisions
                  WHERE alert_id = ?1 ORDER BY revision",
            )?;
            let json = |s: String| serde_json::from_str(&s).unwrap_or(serde_json::Value::Null);
            let rows = stmt.query_map([alert_id], |r| {
                Ok(Revision {
                    revision: r.get(0)?,
                    at_ms: r.get(1)?,
                    reason: crate::alerts::RevisionReason::parse(&r.get::<_, String>(2)?),
                    before: json(r.get(3)?),
                    after: json(r.get(4)?),
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let contacts = station_contacts(
            &tx,
            alert.person_id,
            alert.start_ms - WINDOW_MS,
            alert.end_ms + WINDOW_MS,
        )?;
        let around = contacts_around(&tx, alert.person_id, alert.start_ms)?;
        let digests = {
            let ids: Vec<&str> = alert
                .evidence_bundles
                .split(',')
                .filter(|b| !b.is_empty())
                .collect();
            let mut stmt = tx.prepare(
                "SELECT bundle_id, sha256 FROM bundles
                  WHERE bundle_id IN (SELECT value FROM json_each(?1)) ORDER BY bundle_id",
            )?;
            let rows = stmt.query_map([serde_json::to_string(&ids).expect("ids")], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect::<Result<Vec<(String, String)>, _>>()?
        };
        let seal = tx
            .query_row(
                "SELECT seq, hash FROM audit_log WHERE action = ?1 AND object = ?2
                  ORDER BY seq DESC LIMIT 1",
                crate::params![audit::seal::ACTION, format!("alert:{alert_id}")],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Reader::Officer(_) = reader {
            // An officer has seen it: a critical alert is not escalated to their manager.
            tx.execute(
                "UPDATE alerts SET first_opened_at_ms = ?2 WHERE id = ?1 AND first_opened_at_ms IS NULL",
                crate::params![alert_id, now_ms],
            )?;
        }
        audit::append(
            &tx,
            now_ms,
            reader.name(),
            &format!("alert.{purpose}"),
            &format!("alert:{alert_id}"),
            &serde_json::json!({"person": alert.person_id, "evidence_bundles": alert.evidence_bundles})
                .to_string(),
        )?;
        tx.commit()?;
        (alert, steps, revisions, (contacts, around), digests, seal)
    };
    let pid = crate::trust::pseudonym::Pseudonymiser::load(&ctx.dir)?.operational(alert.person_id);
    let tac = tac_between(
        ctx,
        &pid,
        alert.start_ms - WINDOW_MS,
        alert.end_ms + WINDOW_MS,
    )?;
    let wrist = if alert.programme.signals().contains("eda") {
        wrist_minutes(
            ctx,
            &pid,
            alert.start_ms - WINDOW_MS,
            alert.end_ms + WINDOW_MS,
        )?
    } else {
        WristEvidence::default()
    };
    let threshold_g_dl = serde_json::from_str::<serde_json::Value>(&alert.rule)
        .ok()
        .and_then(|v| v.get("threshold_g_dl").and_then(|t| t.as_f64()))
        .unwrap_or(nachtwacht_pipelines::rules::AlcoholRules::default().threshold_g_dl);
    Ok(AlertDetail {
        alert,
        steps,
        revisions,
        tac,
        threshold_g_dl,
        station_contacts,
        contacts_around,
        wrist,
        evidence_digests,
        seal,
    })
}

/// One person's wristband signals between two instants, reduced to one mean per minute.
fn wrist_minutes(ctx: &Context, pid: &str, from_ms: i64, to_ms: i64) -> Result<WristEvidence> {
    let readers = crate::dataset::Readers::of(ctx)?;
    let per_minute = |signal: Signal, value: Expr| -> Result<Vec<(i64, f64)>> {
        let Some(frame) = person_readings(&readers, signal, pid, from_ms, to_ms)? else {
            return Ok(vec![]);
        };
        let df = frame
            .filter(col("quality").cast(DataType::UInt32).eq(lit(0u32)))
            .group_by([(col("ts").floor_div(lit(60_000i64)) * lit(60_000i64)).alias("minute")])
            .agg([value.mean().alias("v")])
            .sort(["minute"], Default::default())
            .collect()?;
        let minutes = df.column("minute")?.i64()?.clone();
        let values = df.column("v")?.f64()?.clone();
        Ok((0..df.height())
            .filter_map(|i| Some((minutes.get(i)?, values.get(i)?)))
            .collect())
    };
    let magnitude = (col("x_g").pow(2) + col("y_g").pow(2) + col("z_g").pow(2)).sqrt();
    Ok(WristEvidence {
        hr_bpm: per_minute(Signal::Hr, col("hr_bpm"))?,
        eda_us: per_minute(Signal::Eda, col("eda_us"))?,
        movement_g: per_minute(Signal::Acc, (magnitude - lit(1.0)).abs())?,
    })
}

/// When the person's stations were heard from (uploads and heartbeats) between two instants.
pub(super) fn station_contacts(
    conn: &crate::base::db::Connection,
    person_id: i64,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT b.received_at_ms FROM bundles b JOIN stations s ON s.id = b.station_id
          WHERE s.person_id = ?1 AND b.received_at_ms BETWEEN ?2 AND ?3
         UNION
         SELECT h.received_at_ms FROM station_heartbeats h JOIN stations s ON s.id = h.station_id
          WHERE s.person_id = ?1 AND h.received_at_ms BETWEEN ?2 AND ?3
         ORDER BY 1",
    )?;
    let rows = stmt.query_map(crate::params![person_id, from_ms, to_ms], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<i64>, _>>()?)
}

/// The person's station's last contact at or before `at_ms` and its first after.
fn contacts_around(
    conn: &crate::base::db::Connection,
    person_id: i64,
    at_ms: i64,
) -> Result<(Option<i64>, Option<i64>)> {
    const CONTACTS: &str = "SELECT b.received_at_ms AS t FROM bundles b JOIN stations s ON s.id = b.station_id
                             WHERE s.person_id = ?1
                            UNION ALL
                            SELECT h.received_at_ms FROM station_heartbeats h JOIN stations s ON s.id = h.station_id
                             WHERE s.person_id = ?1";
    Ok(conn.query_row(
        &format!(
            "SELECT (SELECT max(t) FROM ({CONTACTS}) AS before WHERE t <= ?2),
                    (SELECT min(t) FROM ({CONTACTS}) AS after WHERE t > ?2)"
        ),
        crate::params![person_id, at_ms],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Every alert of a person, newest first.
pub(super) fn alerts_of_person(
    conn: &crate::base::db::Connection,
    person_id: i64,
) -> Result<Vec<AlertRow>> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT_ALERT} WHERE a.person_id = ?1 ORDER BY a.start_ms DESC, a.id DESC"
    ))?;
    let rows = stmt.query_map([person_id], alert_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// How far around an alert the evidence reaches.
pub const WINDOW_MS: i64 = 12 * crate::base::time::HOUR_MS;

/// One person's readings of a signal between two instants (see
/// [`crate::dataset::scan_person`]), read from the files of the UTC days they touch.
pub(super) fn person_readings(
    readers: &crate::dataset::Readers,
    signal: Signal,
    pid: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<LazyFrame>> {
    let day = |ms: i64| crate::base::time::date_of(ms);
    let files = readers.signal_files_between(
        signal,
        &day(from_ms),
        &day(to_ms + crate::base::time::DAY_MS),
    )?;
    Ok(crate::dataset::scan_person(&files, pid, from_ms, to_ms)?)
}

/// The ankle readings of one operational pseudonym in a time range: (ts, TAC, worn).
pub(super) fn tac_between(
    ctx: &Context,
    pid: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, f64, bool)>> {
    let readers = crate::dataset::Readers::of(ctx)?;
    let Some(readings) = person_readings(&readers, Signal::Ankle, pid, from_ms, to_ms)? else {
        return Ok(vec![]);
    };
    let df = readings
        .select([
            col("ts"),
            col("tac_g_dl"),
            col("strap_closed"),
            col("quality"),
        ])
        .collect()?;
    let ts = df.column("ts")?.i64()?.clone();
    let tac = df.column("tac_g_dl")?.f64()?.clone();
    let strap = df.column("strap_closed")?.bool()?.clone();
    let quality = df
        .column("quality")?
        .cast(&DataType::UInt32)?
        .u32()?
        .clone();
    Ok((0..df.height())
        .filter_map(|i| {
            Some((
                ts.get(i)?,
                tac.get(i)?,
                strap.get(i).unwrap_or(false) && quality.get(i) == Some(0),
            ))
        })
        .collect())
}

/// Moves an alert one step along the workflow, with a mandatory comment.
pub fn transition(
    ctx: &Context,
    officer: &Account,
    alert_id: i64,
    to: &str,
    comment: &str,
    now_ms: i64,
) -> Result<()> {
    let comment = comment.trim();
    if comment.is_empty() {
        return Err(Error::Refused(Refusal::CommentRequired));
    }
    if comment.len() > 4000 {
        return Err(Error::Refused(Refusal::CommentTooLong));
    }
    require_screening(ctx, officer, "alert.transition", now_ms)?;
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let alert = match own_alert(&tx, officer, alert_id, now_ms) {
        Ok(a) => a,
        Err(Error::NotFound) => {
            drop(tx);
            drop(conn);
            audit_refusal(ctx, officer, alert_id, "transition", now_ms)?;
            return Err(Error::NotFound);
        }
        Err(e) => return Err(e),
    };
    // A form sent twice (a double click, a reload after a slow answer) asks for the step just
    // taken: the same officer, target and comment as the last step. That is done already.
    let last: Option<(String, Status, String)> = tx
        .query_row(
            "SELECT actor, to_status, comment FROM alert_events WHERE alert_id = ?1
              ORDER BY id DESC LIMIT 1",
            [alert_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((actor, last_to, last_comment)) = last {
        if actor == officer.username
            && Some(last_to) == Status::parse(to)
            && last_to == alert.status
            && last_comment == comment
        {
            return Ok(());
        }
    }
    let to = match Status::parse(to) {
        Some(s) if alert.status.next().contains(&s) => s,
        _ => {
            return Err(Error::Refused(Refusal::StepNotAllowed {
                from: alert.status.as_str(),
                to: to.to_string(),
            }))
        }
    };
    tx.execute(
        "UPDATE alerts SET status = ?2 WHERE id = ?1",
        crate::params![alert_id, to],
    )?;
    tx.execute(
        "INSERT INTO alert_events (alert_id, at_ms, actor, from_status, to_status, comment)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        crate::params![
            alert_id,
            now_ms,
            officer.username,
            alert.status,
            to,
            comment
        ],
    )?;
    audit::append(
        &tx,
        now_ms,
        &officer.username,
        "alert.transition",
        &format!("alert:{alert_id}"),
        &serde_json::json!({"from": alert.status.as_str(), "to": to.as_str(), "comment": comment})
            .to_string(),
    )?;
    audit::seal::reseal(&tx, alert_id, now_ms, &officer.username)?;
    tx.commit()?;
    Ok(())
}

/// One station of the officer's caseload: last upload, spool depth and clock offset as its last
/// heartbeat reported them.
#[derive(Debug, Clone)]
pub struct StationRow {
    pub name: String,
    pub person_reference: String,
    pub last_contact_ms: Option<i64>,
    pub last_upload_ms: Option<i64>,
    pub spool_pending_bundles: Option<i64>,
    pub clock_offset_ms: Option<i64>,
    pub revoked: bool,
}

pub fn stations(ctx: &Context, officer: &Account, now_ms: i64) -> Result<Vec<StationRow>> {
    require_screening(ctx, officer, "stations.view", now_ms)?;
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let persons = caseload::persons_of(&tx, officer.id, now_ms)?;
    let rows = {
        let mut stmt = tx.prepare(
            "SELECT s.name, p.reference, s.last_contact_ms,
                    (SELECT max(received_at_ms) FROM bundles b WHERE b.station_id = s.id),
                    h.spool_pending_bundles, h.clock_offset_ms, s.revoked_at_ms IS NOT NULL
               FROM stations s JOIN persons p ON p.id = s.person_id
               LEFT JOIN station_heartbeats h ON h.id =
                    (SELECT max(id) FROM station_heartbeats WHERE station_id = s.id)
              WHERE s.person_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?1)) AND p.closed_at_ms IS NULL
              ORDER BY p.reference, s.name",
        )?;
        let rows = stmt.query_map([serde_json::to_string(&persons).expect("ids")], |r| {
            Ok(StationRow {
                name: r.get(0)?,
                person_reference: r.get(1)?,
                last_contact_ms: r.get(2)?,
                last_upload_ms: r.get(3)?,
                spool_pending_bundles: r.get(4)?,
                clock_offset_ms: r.get(5)?,
                revoked: r.get(6)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    audit::append(
        &tx,
        now_ms,
        &officer.username,
        "stations.view",
        "stations",
        &serde_json::json!({"stations": rows.len(), "persons": persons}).to_string(),
    )?;
    tx.commit()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::accounts::{self, Role};

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    /// A screened officer `olga` with the persons `references` (created here) on her caseload,
    /// and their ids.
    fn olga_with(ctx: &Context, references: &[&str], now: i64) -> (Account, Vec<i64>) {
        let programme = crate::base::programme::Programme::AlcoholBan;
        let id = accounts::create(&ctx.db, "olga", Role::Officer, "t", now)
            .unwrap()
            .id;
        crate::registry::screening::screen_for_a_year(&ctx.db, "olga", now).unwrap();
        let persons = references
            .iter()
            .map(|reference| {
                let person =
                    crate::registry::enroll::add_person(ctx, reference, programme, "t").unwrap();
                caseload::assign(&ctx.db, "olga", reference, now - 1000, None, "t", now).unwrap();
                person
            })
            .collect();
        let olga = Account {
            id,
            username: "olga".into(),
            role: Role::Officer,
            must_change_password: false,
        };
        (olga, persons)
    }

    /// An alert of `person` starting (and ending) at `start_ms`, raised at `created_ms`.
    fn alert_at(
        ctx: &Context,
        person: i64,
        kind: &str,
        start_ms: i64,
        created_ms: i64,
        status: &str,
    ) -> i64 {
        let conn = ctx.db.lock();
        conn.execute(
            "INSERT INTO alerts (person_id, kind, severity, start_ms, end_ms, rule,
                                 evidence_bundles, created_at_ms, status)
             VALUES (?1, ?2, 'high', ?3, ?3, '{}', '', ?4, ?5)",
            crate::params![person, kind, start_ms, created_ms, status],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    /// The date filter is the officer's local day (Europe/Amsterdam): a drinking event at
    /// 23:30 UTC on 1 July is at 01:30 on 2 July for the officer, and filed under that day.
    #[test]
    fn the_date_filter_takes_local_days() {
        let (_dir, ctx) = crate::server::init::temporary();
        let now = crate::base::time::now_ms();
        let (olga, persons) = olga_with(&ctx, &["CASE-1"], now);
        for start in ["2026-07-01T21:00:00Z", "2026-07-01T23:30:00Z"] {
            alert_at(&ctx, persons[0], "alcohol", utc(start), 0, "new");
        }
        let on = |day: &str| {
            let filter = AlertFilter {
                from: Some(day.into()),
                to: Some(day.into()),
                ..Default::default()
            };
            list(&ctx, &olga, &filter, now)
                .unwrap()
                .rows
                .iter()
                .map(|a| a.start_ms)
                .collect::<Vec<_>>()
        };
        assert_eq!(on("2026-07-01"), vec![utc("2026-07-01T21:00:00Z")]);
        assert_eq!(on("2026-07-02"), vec![utc("2026-07-01T23:30:00Z")]);
    }

    /// Past 500 alerts the list no longer stops silently: it pages, counts per status, finds a
    /// person by a fragment of the reference, and sorts.
    #[test]
    fn the_list_pages_counts_searches_and_sorts() {
        let (_dir, ctx) = crate::server::init::temporary();
        let now = crate::base::time::now_ms();
        let (olga, persons) = olga_with(&ctx, &["CASE-1", "CASE-22"], now);
        for (person, n, status) in [(persons[0], 200, "new"), (persons[1], 30, "in_process")] {
            for i in 0..n {
                alert_at(
                    &ctx,
                    person,
                    "alcohol",
                    1_000_000 * (i + 1) + person,
                    0,
                    status,
                );
            }
        }
        let get = |filter: AlertFilter| list(&ctx, &olga, &filter, now).unwrap();
        let first = get(AlertFilter::default());
        assert_eq!(
            (first.total, first.pages, first.rows.len()),
            (230, 3, PAGE_SIZE)
        );
        let counts: std::collections::HashMap<Status, usize> =
            first.by_status.into_iter().collect();
        assert_eq!(
            (counts[&Status::New], counts[&Status::InProcess]),
            (200, 30)
        );
        let last = get(AlertFilter {
            page: Some(99),
            ..Default::default()
        });
        assert_eq!(
            (last.page, last.rows.len()),
            (3, 30),
            "a page past the end is the last"
        );
        // Newest first across pages: no alert twice, none missing.
        let mut seen: Vec<i64> = (1..=3)
            .flat_map(|p| {
                get(AlertFilter {
                    page: Some(p),
                    ..Default::default()
                })
                .rows
            })
            .map(|a| a.id)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 230);
        // A fragment of the reference, in any case.
        let found = get(AlertFilter {
            person: Some("se-2".into()),
            ..Default::default()
        });
        assert_eq!(found.total, 30);
        assert!(found.rows.iter().all(|a| a.person_reference == "CASE-22"));
        // Sorted by status, open first: the 200 new ones come before the 30 in process.
        let by_status = get(AlertFilter {
            sort: Some("status".into()),
            page: Some(3),
            ..Default::default()
        });
        assert!(by_status.rows.iter().all(|a| a.status == Status::InProcess));
        let by_person = get(AlertFilter {
            sort: Some("person".into()),
            ..Default::default()
        });
        assert_eq!(by_person.rows[0].person_reference, "CASE-1");
        // The status filter narrows the total, not the counts.
        let open = get(AlertFilter {
            status: Some("in_process".into()),
            ..Default::default()
        });
        assert_eq!(open.total, 30);
        assert_eq!(open.by_status.iter().map(|c| c.1).sum::<usize>(), 230);
        assert!(list(
            &ctx,
            &olga,
            &AlertFilter {
                sort: Some("x".into()),
                ..Default::default()
            },
            now
        )
        .is_err());
        // The export holds every matching alert, not a page, and is audited.
        let page_two = AlertFilter {
            page: Some(2),
            ..Default::default()
        };
        let csv = export_csv(&ctx, &olga, &page_two, now).unwrap();
        assert_eq!(csv.lines().count(), 1 + 230);
        assert!(csv.starts_with("alert,start (Europe/Amsterdam),"), "{csv}");
        let audited = |action: &str| -> i64 {
            ctx.db
                .lock()
                .query_row(
                    "SELECT count(*) FROM audit_log WHERE action = ?1",
                    [action],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(audited("alerts.export"), 1);
        // New since the last visit: an alert raised after the officer last opened the list.
        let before = get(AlertFilter::default());
        assert_eq!(before.new_since_last_visit, 0);
        let visit = before.last_visit_ms.unwrap();
        alert_at(&ctx, persons[1], "strap-open", 5, visit + 1, "new");
        let after = list(&ctx, &olga, &AlertFilter::default(), visit + 10).unwrap();
        assert_eq!(after.new_since_last_visit, 1);
    }

    /// Before the fix the second of two identical submissions failed with "an alert that is
    /// in_process cannot become in_process".
    #[test]
    fn the_same_step_submitted_twice_is_taken_once() {
        let (_dir, ctx) = crate::server::init::temporary();
        let now = crate::base::time::now_ms();
        let (olga, persons) = olga_with(&ctx, &["CASE-1"], now);
        let alert = alert_at(&ctx, persons[0], "alcohol", 0, 0, "new");
        transition(&ctx, &olga, alert, "in_process", "Gebeld", now).unwrap();
        transition(&ctx, &olga, alert, "in_process", "Gebeld", now + 1).unwrap();
        let steps: i64 = ctx
            .db
            .lock()
            .query_row(
                "SELECT count(*) FROM alert_events WHERE alert_id = ?1",
                [alert],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(steps, 1);
        // Another comment is another step, which the workflow refuses.
        assert!(matches!(
            transition(&ctx, &olga, alert, "in_process", "Nogmaals", now + 2),
            Err(Error::Refused(Refusal::StepNotAllowed { .. }))
        ));
    }
}
