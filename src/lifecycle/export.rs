//! Subject access export (GDPR art. 15): one archive with everything nachtwacht holds about one
//! person, and every access to it that the audit log records. docs/data-lifecycle.md describes
//! the format; `README.txt` inside the archive explains each file in Dutch and English.
//!
//! The archive is a plain tar file. Its members, in this order:
//! - `README.txt`;
//! - `person.csv` (case reference, programme, research attributes, enrolment);
//! - `devices.csv` (assignments), `stations.csv` (stations linked to the person),
//!   `pairings.csv` (which station uploaded each of the person's devices, when);
//! - `readings/<signal>.csv` and `readings/<signal>.parquet` for every signal with rows of the
//!   person (operational pseudonym `pid`);
//! - `daily_indicators.csv` (the research dataset's rows of the person's research pseudonym);
//! - `alerts.csv`, `alert_workflow.csv` (every step with its comment), `alert_revisions.csv`;
//! - `accesses.csv`: every audit entry naming the person, one of their alerts, devices or stations;
//! - `SHA256SUMS`: the SHA-256 of every member above.
//!
//! Writing the export is itself audited (`person.export`), after the archive is complete.

use std::path::Path;

use crate::base::db::OptionalExtension;
use crate::base::db::ValueRef;
use nachtwacht_wire::Signal;
use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::base::Context;
use crate::dataset;
use crate::trust::{audit, pseudonym::Pseudonymiser, secrets};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no person with reference {0:?}")]
    UnknownPerson(String),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error(transparent)]
    Dataset(#[from] dataset::Error),
    #[error(transparent)]
    Secrets(#[from] secrets::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error(transparent)]
    File(#[from] crate::base::fsio::Error),
    #[error("building the archive: {0}")]
    Archive(std::io::Error),
    #[error("the supervision of {0:?} has not ended: only a closed case is archived")]
    NotClosed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub person_id: i64,
    /// Member name and its SHA-256, in archive order (`SHA256SUMS` not included).
    pub members: Vec<(String, String)>,
    /// Reading rows, all signals.
    pub readings: usize,
    pub alerts: usize,
    pub accesses: usize,
}

const README: &str = include_str!("export_readme.txt");

/// The person's stations: the one in their home, and every station their devices were paired with.
const PERSONS_STATIONS: &str = "person_id = ?1 OR id IN (
    SELECT station_id FROM device_pairings WHERE device_serial IN (
        SELECT device_serial FROM assignments WHERE person_id = ?1))";

/// Exports everything held about the person with case reference `reference` into a tar archive
/// at `out` (written whole, then fsynced; an existing file is replaced), audited as `actor` once
/// it is on disk.
pub fn export_person(
    ctx: &Context,
    reference: &str,
    out: &Path,
    actor: &str,
    now_ms: i64,
) -> Result<ExportReport> {
    let (archive, report) = build(ctx, reference, now_ms)?;
    crate::base::fsio::write_durably(out, &archive)?;
    record(ctx, &report, &archive, actor, now_ms)?;
    Ok(report)
}

/// The same archive as bytes (a download), audited as `actor` once it is complete.
pub fn export_person_bytes(
    ctx: &Context,
    reference: &str,
    actor: &str,
    now_ms: i64,
) -> Result<(Vec<u8>, ExportReport)> {
    let (archive, report) = build(ctx, reference, now_ms)?;
    record(ctx, &report, &archive, actor, now_ms)?;
    Ok((archive, report))
}

/// A case archive: where it was written, with its digest.
#[derive(Debug, Clone)]
pub struct CaseArchive {
    /// The archive, under `exports/` in the data directory.
    pub path: std::path::PathBuf,
    /// `<archive>.sha256`: its SHA-256 in `sha256sum` format, the manifest of the handover.
    pub manifest: std::path::PathBuf,
    pub sha256: String,
    pub report: ExportReport,
}

/// The record handed over when a closed case file is archived: the subject access archive of the
/// person (the same format, `SHA256SUMS` inside), written under `exports/` with a manifest beside
/// it (`sha256sum -c` checks the archive, then `SHA256SUMS` each member). Audited as
/// `person.archive`; the file is deleted at the end of the `exports` retention, so the handover
/// must take it before then. Refused while the supervision runs.
pub fn archive_closed_case(
    ctx: &Context,
    reference: &str,
    actor: &str,
    now_ms: i64,
) -> Result<CaseArchive> {
    let closed: Option<i64> = ctx
        .db
        .lock()
        .query_row(
            "SELECT p.closed_at_ms FROM episodes e JOIN persons p ON p.id = e.person_id
              WHERE e.reference = ?1",
            [reference],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::UnknownPerson(reference.into()))?;
    if closed.is_none() {
        return Err(Error::NotClosed(reference.into()));
    }
    let (archive, report) = build(ctx, reference, now_ms)?;
    let sha256 = hex::encode(Sha256::digest(&archive));
    // Named by the person's number and the time, never the case reference: a file name is seen
    // by more people than the file's content.
    let stamp = chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|t| t.format("%Y%m%dT%H%M%S%3fZ").to_string())
        .unwrap_or_default();
    let name = format!("case-{}-{stamp}.tar", report.person_id);
    let path = ctx.dir.exports().join(&name);
    let manifest = ctx.dir.exports().join(format!("{name}.sha256"));
    crate::base::fsio::create_dir_all(&ctx.dir.exports())?;
    crate::base::fsio::write_durably(&path, &archive)?;
    crate::base::fsio::write_durably(&manifest, format!("{sha256}  {name}\n").as_bytes())?;
    let rel = path
        .strip_prefix(ctx.dir.root())
        .unwrap_or(&path)
        .to_string_lossy()
        .into_owned();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO export_files (path, person_id, sha256, written_at_ms) VALUES (?1, ?2, ?3, ?4)",
        crate::params![rel, report.person_id, sha256, now_ms],
    )?;
    audit::append(
        &tx,
        now_ms,
        actor,
        "person.archive",
        &format!("person:{}", report.person_id),
        &serde_json::json!({"path": rel, "archive_sha256": sha256, "members": report.members.len() + 1})
            .to_string(),
    )?;
    tx.commit()?;
    Ok(CaseArchive {
        path,
        manifest,
        sha256,
        report,
    })
}

/// The archive and what it holds; nothing is written or audited.
fn build(ctx: &Context, reference: &str, now_ms: i64) -> Result<(Vec<u8>, ExportReport)> {
    let person_id = crate::registry::enroll::person_id(&ctx.db.lock(), reference)?
        .ok_or_else(|| Error::UnknownPerson(reference.into()))?;
    let pseudonyms = Pseudonymiser::load(&ctx.dir)?;
    let (pid, rid) = (
        pseudonyms.operational(person_id),
        pseudonyms.research(person_id),
    );

    let mut members: Vec<(String, Vec<u8>)> =
        vec![("README.txt".into(), README.as_bytes().to_vec())];
    let alert_ids: Vec<i64>;
    let serials: Vec<String>;
    let stations: Vec<String>;
    {
        let conn = ctx.db.lock();
        members.push((
            "person.csv".into(),
            sql_csv(
                &conn,
                "SELECT reference, programme, region, birth_year, created_at_ms, closed_at_ms FROM persons WHERE id = ?1",
                person_id,
            )?,
        ));
        members.push((
            "episodes.csv".into(),
            sql_csv(
                &conn,
                "SELECT reference, programme, started_at_ms, ended_at_ms FROM episodes
                  WHERE person_id = ?1 ORDER BY started_at_ms, id",
                person_id,
            )?,
        ));
        members.push((
            "devices.csv".into(),
            sql_csv(
                &conn,
                "SELECT a.device_serial, d.kind, a.valid_from_ms, a.valid_to_ms
                   FROM assignments a JOIN devices d ON d.serial = a.device_serial
                  WHERE a.person_id = ?1 ORDER BY a.valid_from_ms, a.id",
                person_id,
            )?,
        ));
        members.push((
            "stations.csv".into(),
            sql_csv(
                &conn,
                &format!(
                    "SELECT name, enrolled_at_ms, revoked_at_ms, last_contact_ms
                       FROM stations WHERE {PERSONS_STATIONS} ORDER BY name"
                ),
                person_id,
            )?,
        ));
        members.push((
            "pairings.csv".into(),
            sql_csv(
                &conn,
                "SELECT p.device_serial, s.name AS station, p.valid_from_ms, p.valid_to_ms
                   FROM device_pairings p JOIN stations s ON s.id = p.station_id
                  WHERE p.device_serial IN (SELECT device_serial FROM assignments WHERE person_id = ?1)
                  ORDER BY p.device_serial, p.valid_from_ms, p.id",
                person_id,
            )?,
        ));
        members.push((
            "alerts.csv".into(),
            sql_csv(
                &conn,
                "SELECT id, kind, severity, start_ms, end_ms, peak_tac_g_dl, status, provisional,
                        revision, withdrawn_at_ms, rule, evidence_bundles, created_at_ms
                   FROM alerts WHERE person_id = ?1 ORDER BY start_ms, id",
                person_id,
            )?,
        ));
        members.push((
            "alert_workflow.csv".into(),
            sql_csv(
                &conn,
                "SELECT e.alert_id, e.at_ms, e.actor, e.from_status, e.to_status, e.comment
                   FROM alert_events e JOIN alerts a ON a.id = e.alert_id
                  WHERE a.person_id = ?1 ORDER BY e.alert_id, e.at_ms, e.id",
                person_id,
            )?,
        ));
        members.push((
            "alert_revisions.csv".into(),
            sql_csv(
                &conn,
                "SELECT r.alert_id, r.revision, r.at_ms, r.reason, r.before, r.after
                   FROM alert_revisions r JOIN alerts a ON a.id = r.alert_id
                  WHERE a.person_id = ?1 ORDER BY r.alert_id, r.revision",
                person_id,
            )?,
        ));
        alert_ids = conn
            .prepare("SELECT id FROM alerts WHERE person_id = ?1")?
            .query_map([person_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        serials = conn
            .prepare("SELECT DISTINCT device_serial FROM assignments WHERE person_id = ?1")?
            .query_map([person_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        stations = conn
            .prepare(&format!(
                "SELECT name FROM stations WHERE {PERSONS_STATIONS}"
            ))?
            .query_map([person_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
    }

    let mut readings = 0;
    {
        let readers = dataset::Readers::of(ctx)?;
        for signal in Signal::ALL {
            let files = readers.signal_files(signal)?;
            let Some(lf) = dataset::scan_readings(&files)? else {
                continue;
            };
            let mut df = lf.filter(col("pid").eq(lit(pid.clone()))).collect()?;
            if df.height() == 0 {
                continue;
            }
            readings += df.height();
            let mut parquet = Vec::new();
            ParquetWriter::new(&mut parquet).finish(&mut df)?;
            let mut csv = Vec::new();
            CsvWriter::new(&mut csv)
                .include_header(true)
                .finish(&mut df)?;
            members.push((format!("readings/{}.csv", signal.name()), csv));
            members.push((format!("readings/{}.parquet", signal.name()), parquet));
        }
        let mut df =
            if let Some(daily) = readers.research_table(crate::base::blobs::RESEARCH_DAILY)? {
                LazyFrame::scan_parquet(
                    PlPath::new(&daily.to_string_lossy()),
                    ScanArgsParquet::default(),
                )?
                .filter(col("rid").eq(lit(rid.clone())))
                .collect()?
            } else {
                DataFrame::empty()
            };
        let mut csv = Vec::new();
        if df.width() > 0 {
            CsvWriter::new(&mut csv)
                .include_header(true)
                .finish(&mut df)?;
        }
        members.push(("daily_indicators.csv".into(), csv));
    }

    // Audit objects name a person and an alert with a prefix, a device by its bare serial and a
    // station by its name.
    let named: Vec<String> = std::iter::once(format!("person:{person_id}"))
        .chain(alert_ids.iter().map(|id| format!("alert:{id}")))
        .chain(serials.iter().cloned())
        .chain(stations.iter().cloned())
        .collect();
    let accesses: Vec<audit::Entry> = audit::entries(&ctx.db.lock())?
        .into_iter()
        .filter(|e| named.contains(&e.object))
        .collect();
    members.push(("accesses.csv".into(), audit::to_csv(&accesses).into_bytes()));

    let sums: Vec<(String, String)> = members
        .iter()
        .map(|(name, bytes)| (name.clone(), hex::encode(Sha256::digest(bytes))))
        .collect();
    let sums_text: String = sums.iter().map(|(n, h)| format!("{h}  {n}\n")).collect();
    members.push(("SHA256SUMS".into(), sums_text.into_bytes()));
    let archive = tar_archive(&members, now_ms)?;
    let report = ExportReport {
        person_id,
        members: sums,
        readings,
        alerts: alert_ids.len(),
        accesses: accesses.len(),
    };
    Ok((archive, report))
}

/// The export's audit entry: the person, what the archive holds and its SHA-256.
fn record(
    ctx: &Context,
    report: &ExportReport,
    archive: &[u8],
    actor: &str,
    now_ms: i64,
) -> Result<()> {
    audit::append(
        &ctx.db.lock(),
        now_ms,
        actor,
        "person.export",
        &format!("person:{}", report.person_id),
        &serde_json::json!({
            "members": report.members.len() + 1,
            "readings": report.readings,
            "alerts": report.alerts,
            "accesses": report.accesses,
            "archive_sha256": hex::encode(Sha256::digest(archive)),
        })
        .to_string(),
    )?;
    Ok(())
}

/// The rows of a query with one `?1` parameter, as CSV with the columns' names as header.
fn sql_csv(conn: &crate::base::db::Connection, sql: &str, param: i64) -> Result<Vec<u8>> {
    let mut stmt = conn.prepare(sql)?;
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let mut out = names.join(",") + "\n";
    let mut rows = stmt.query([param])?;
    while let Some(row) = rows.next()? {
        let fields: Vec<String> = (0..names.len())
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    ValueRef::Null => String::new(),
                    ValueRef::Integer(v) => v.to_string(),
                    ValueRef::Real(v) => v.to_string(),
                    ValueRef::Text(t) => audit::csv_field(t),
                    ValueRef::Blob(b) => hex::encode(b),
                })
            })
            .collect::<crate::base::db::Result<_>>()?;
        out += &fields.join(",");
        out.push('\n');
    }
    Ok(out.into_bytes())
}

fn tar_archive(members: &[(String, Vec<u8>)], now_ms: i64) -> Result<Vec<u8>> {
    crate::base::archive::tar(members, now_ms).map_err(Error::Archive)
}
