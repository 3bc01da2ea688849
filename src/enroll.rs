//! Enrollment: base stations (a client certificate from the CA, registered by fingerprint), persons
//! and their programme, devices and their assignment to a person for a period.

use rusqlite::OptionalExtension;

use nachtwacht_station::StationConfig;

use crate::server::Context;
use crate::{audit, pki, secrets};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] pki::Error),
    #[error(transparent)]
    Secrets(#[from] secrets::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Issues a station certificate, registers it, and returns the station's whole configuration.
pub fn add_station(ctx: &Context, name: &str, actor: &str) -> Result<StationConfig> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::Invalid(format!(
            "station name {name:?} must be letters, digits, '-' or '_'"
        )));
    }
    let ca = pki::Issued {
        cert_pem: read(&ctx.dir.ca_cert())?,
        key_pem: read(&ctx.dir.ca_key())?,
    };
    let issued = pki::issue_station_cert(&ca, name)?;
    let fingerprint = issued.fingerprint()?;
    let recipient = secrets::load_age_identities(&ctx.dir.age_identity())?[0]
        .to_public()
        .to_string();
    let now = crate::now_ms();
    {
        let mut conn = ctx.db.lock();
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM stations WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(Error::Invalid(format!(
                "station {name:?} is already enrolled"
            )));
        }
        tx.execute(
            "INSERT INTO stations (name, cert_sha256, enrolled_at_ms) VALUES (?1, ?2, ?3)",
            (name, &fingerprint, now),
        )?;
        audit::append(
            &tx,
            now,
            actor,
            "station.add",
            name,
            &format!("{{\"cert_sha256\":\"{fingerprint}\"}}"),
        )?;
        tx.commit()?;
    }
    Ok(StationConfig {
        name: name.to_string(),
        servers: ctx.config.ingest.public_addresses.clone(),
        server_name: ctx.config.ingest.server_name.clone(),
        ca_cert_pem: ca.cert_pem,
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        server_age_recipient: recipient,
        spool: "spool".into(),
        source: Default::default(),
    })
}

/// Revokes a station: its next connection is refused (no restart needed).
pub fn revoke_station(ctx: &Context, name: &str, actor: &str) -> Result<()> {
    let now = crate::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let n = tx.execute(
        "UPDATE stations SET revoked_at_ms = ?2 WHERE name = ?1 AND revoked_at_ms IS NULL",
        (name, now),
    )?;
    if n == 0 {
        return Err(Error::Invalid(format!("no active station named {name:?}")));
    }
    audit::append(&tx, now, actor, "station.revoke", name, "{}")?;
    tx.commit()?;
    Ok(())
}

/// Enrolls a person in a programme. `reference` is the operational case reference; it stays in SQL
/// and never reaches a dataset.
pub fn add_person(ctx: &Context, reference: &str, programme: &str, actor: &str) -> Result<i64> {
    let now = crate::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let known: Option<String> = tx
        .query_row(
            "SELECT name FROM programmes WHERE name = ?1",
            [programme],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_none() {
        return Err(Error::Invalid(format!("unknown programme {programme:?}")));
    }
    tx.execute(
        "INSERT INTO persons (reference, programme, created_at_ms) VALUES (?1, ?2, ?3)",
        (reference, programme, now),
    )?;
    let id = tx.last_insert_rowid();
    audit::append(
        &tx,
        now,
        actor,
        "person.add",
        &format!("person:{id}"),
        &format!("{{\"programme\":\"{programme}\"}}"),
    )?;
    tx.commit()?;
    Ok(id)
}

/// Registers a device (if new) and assigns it to a person from `valid_from_ms` on.
pub fn assign_device(
    ctx: &Context,
    serial: &str,
    kind: nachtwacht_wire::DeviceKind,
    person_id: i64,
    valid_from_ms: i64,
    actor: &str,
) -> Result<()> {
    let kind = match kind {
        nachtwacht_wire::DeviceKind::AnkleMonitor => "ankle-monitor",
        nachtwacht_wire::DeviceKind::Wristband => "wristband",
    };
    let now = crate::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO devices (serial, kind) VALUES (?1, ?2) ON CONFLICT (serial) DO NOTHING",
        (serial, kind),
    )?;
    // An open assignment of this device ends where the new one starts.
    tx.execute(
        "UPDATE assignments SET valid_to_ms = ?2 WHERE device_serial = ?1 AND valid_to_ms IS NULL",
        (serial, valid_from_ms),
    )?;
    tx.execute(
        "INSERT INTO assignments (device_serial, person_id, valid_from_ms) VALUES (?1, ?2, ?3)",
        (serial, person_id, valid_from_ms),
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "device.assign",
        serial,
        &format!("{{\"person\":{person_id},\"from_ms\":{valid_from_ms}}}"),
    )?;
    tx.commit()?;
    Ok(())
}
