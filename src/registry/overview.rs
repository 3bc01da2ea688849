//! What the administrator's page lists: every person with their programme and research
//! attributes, every station with whose home it is in, every device worn now. Reading it is a
//! read of personal data (case references), so it is audited.

use nachtwacht_wire::DeviceKind;

use crate::base::db::Db;
use crate::base::programme::Programme;
use crate::trust::audit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
}

#[derive(Debug, Clone)]
pub struct PersonSummary {
    pub id: i64,
    pub reference: String,
    pub programme: Programme,
    pub region: Option<String>,
    pub birth_year: Option<i64>,
    /// When the latest supervision ended; `None` while it runs.
    pub closed_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct StationSummary {
    pub name: String,
    /// The reference of the person whose home it is in.
    pub person: Option<String>,
    pub enrolled_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub last_contact_ms: Option<i64>,
}

/// A device worn now, with its wearer and since when.
#[derive(Debug, Clone)]
pub struct DeviceSummary {
    pub serial: String,
    pub kind: DeviceKind,
    pub person: String,
    pub since_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Overview {
    pub persons: Vec<PersonSummary>,
    pub stations: Vec<StationSummary>,
    pub devices: Vec<DeviceSummary>,
}

/// The registry as the administrator's page shows it; audited as `admin.view` by `actor`.
pub fn overview(db: &Db, actor: &str, now_ms: i64) -> Result<Overview, Error> {
    let conn = db.lock();
    let persons = conn
        // Erased persons are a number and a date: nothing to show or act on.
        .prepare(
            "SELECT id, reference, programme, region, birth_year, closed_at_ms FROM persons
              WHERE erased_at_ms IS NULL ORDER BY reference",
        )?
        .query_map([], |r| {
            Ok(PersonSummary {
                id: r.get(0)?,
                reference: r.get(1)?,
                programme: r.get(2)?,
                region: r.get(3)?,
                birth_year: r.get(4)?,
                closed_at_ms: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let stations = conn
        .prepare(
            "SELECT s.name, p.reference, s.enrolled_at_ms, s.revoked_at_ms, s.last_contact_ms
               FROM stations s LEFT JOIN persons p ON p.id = s.person_id ORDER BY s.name",
        )?
        .query_map([], |r| {
            Ok(StationSummary {
                name: r.get(0)?,
                person: r.get(1)?,
                enrolled_at_ms: r.get(2)?,
                revoked_at_ms: r.get(3)?,
                last_contact_ms: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let devices = conn
        .prepare(
            "SELECT a.device_serial, d.kind, p.reference, a.valid_from_ms
               FROM assignments a
               JOIN devices d ON d.serial = a.device_serial
               JOIN persons p ON p.id = a.person_id
              WHERE a.valid_to_ms IS NULL ORDER BY a.device_serial",
        )?
        .query_map([], |r| {
            let kind: String = r.get(1)?;
            Ok(DeviceSummary {
                serial: r.get(0)?,
                kind: DeviceKind::parse(&kind).ok_or_else(|| {
                    crate::base::db::Error::Conversion(format!("{kind:?} is not a device kind"))
                })?,
                person: r.get(2)?,
                since_ms: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    audit::append(
        &conn,
        now_ms,
        actor,
        "admin.view",
        "persons",
        &serde_json::json!({"persons": persons.len(), "devices": devices.len()}).to_string(),
    )?;
    Ok(Overview {
        persons,
        stations,
        devices,
    })
}
