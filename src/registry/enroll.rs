//! Enrollment: base stations (a client certificate from the CA, registered by fingerprint), persons
//! and their programme, devices and their assignment to a person for a period.

use crate::base::db::OptionalExtension;

use nachtwacht_station::StationConfig;

use crate::base::programme::Programme;
use crate::base::Context;
use crate::{trust::audit, trust::pki, trust::secrets};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("signing key: {0}")]
    SigningKey(String),
    #[error(transparent)]
    Refused(#[from] crate::base::refusal::Refusal),
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
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Crl(#[from] crate::trust::crl::Error),
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
        return Err(crate::base::refusal::Refusal::StationNameInvalid(name.to_string()).into());
    }
    let ca = pki::Issued {
        cert_pem: read(&ctx.dir.ca_cert())?,
        key_pem: read(&ctx.dir.ca_key())?,
    };
    let (issued, serial) = pki::issue_station_cert_with(&ca, name, pki::Validity::Years(2))?;
    let fingerprint = issued.fingerprint()?;
    let (signing_key, signing_public_key) = nachtwacht_station::seal::new_signing_key()
        .map_err(|e| Error::SigningKey(e.to_string()))?;
    let recipient = secrets::load_age_identities(&ctx.dir.age_identity())?[0]
        .to_public()
        .to_string();
    let now = crate::base::time::now_ms();
    {
        let mut conn = ctx.db.lock();
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM stations WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(crate::base::refusal::Refusal::StationEnrolled(name.to_string()).into());
        }
        tx.execute(
            "INSERT INTO stations (name, cert_sha256, cert_serial, signing_public_key, enrolled_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            (name, &fingerprint, &serial, &signing_public_key, now),
        )?;
        audit::append(
            &tx,
            now,
            actor,
            "station.add",
            name,
            &format!(
                "{{\"cert_sha256\":\"{fingerprint}\",\"cert_serial\":\"{serial}\",\"signing_public_key\":\"{signing_public_key}\"}}"
            ),
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
        signing_key_pkcs8: signing_key,
        spool: "spool".into(),
        spool_max_bytes: nachtwacht_station::spool::DEFAULT_CAP_BYTES,
        heartbeat_interval_secs: 300,
        renew_before_days: nachtwacht_station::config::default_renew_before_days(),
        source: Default::default(),
    })
}

/// The CA, for issuing.
fn ca(ctx: &Context) -> Result<pki::Issued> {
    Ok(pki::Issued {
        cert_pem: read(&ctx.dir.ca_cert())?,
        key_pem: read(&ctx.dir.ca_key())?,
    })
}

/// Records `cert_pem` as the next certificate of the active station `station_id` (accepted
/// beside its current one until first used) and audits it. Refuses a revoked station.
fn set_pending(
    ctx: &Context,
    station_id: i64,
    cert_pem: &str,
    serial: &str,
    how: &str,
    actor: &str,
) -> Result<String> {
    let fingerprint = pki::cert_fingerprint_pem(cert_pem)?;
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let name: Option<String> = tx
        .query_row(
            "SELECT name FROM stations WHERE id = ?1 AND revoked_at_ms IS NULL",
            [station_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(name) = name else {
        return Err(
            crate::base::refusal::Refusal::NoActiveStation(format!("#{station_id}")).into(),
        );
    };
    tx.execute(
        "UPDATE stations SET pending_cert_sha256 = ?2, pending_cert_serial = ?3 WHERE id = ?1",
        crate::params![station_id, fingerprint, serial],
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "station.renew",
        &name,
        &serde_json::json!({ "pending_cert_sha256": fingerprint, "cert_serial": serial, "how": how })
            .to_string(),
    )?;
    tx.commit()?;
    Ok(name)
}

/// Renewal over the authenticated connection: the next certificate of station `station_id` for
/// the key of the station's signing request (it never leaves the station), pending until the
/// station first uses it. Returns the certificate (PEM).
pub fn renew_from_request(ctx: &Context, station_id: i64, csr_pem: &str) -> Result<String> {
    let name: String = ctx
        .db
        .lock()
        .query_row(
            "SELECT name FROM stations WHERE id = ?1 AND revoked_at_ms IS NULL",
            [station_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| crate::base::refusal::Refusal::NoActiveStation(format!("#{station_id}")))?;
    let (cert_pem, serial) = pki::issue_station_cert_for_request(&ca(ctx)?, &name, csr_pem)?;
    set_pending(ctx, station_id, &cert_pem, &serial, "connection", "ingest")?;
    Ok(cert_pem)
}

/// Renewal by an administrator (`nachtwacht station renew`): a new key and certificate for the
/// station `name`, pending until the station first uses it; returned as the station's
/// `identity.toml` (certificate and key, PEM), to be put in its directory.
pub fn renew_station(ctx: &Context, name: &str, actor: &str) -> Result<String> {
    let id: i64 = ctx
        .db
        .lock()
        .query_row(
            "SELECT id FROM stations WHERE name = ?1 AND revoked_at_ms IS NULL",
            [name],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| crate::base::refusal::Refusal::NoActiveStation(name.to_string()))?;
    let (issued, serial) = pki::issue_station_cert_with(&ca(ctx)?, name, pki::Validity::Years(2))?;
    set_pending(ctx, id, &issued.cert_pem, &serial, "administrator", actor)?;
    let mut identity = toml::Table::new();
    identity.insert("cert_pem".into(), issued.cert_pem.into());
    identity.insert("key_pem".into(), issued.key_pem.into());
    Ok(identity.to_string())
}

/// A station's first connection with its pending certificate makes it the current one; the
/// previous certificate is refused from then on.
pub fn promote_pending(ctx: &Context, station_id: i64, fingerprint: &str) -> Result<()> {
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let changed = tx.execute(
        "UPDATE stations SET cert_sha256 = pending_cert_sha256, cert_serial = pending_cert_serial,
                pending_cert_sha256 = NULL, pending_cert_serial = NULL
          WHERE id = ?1 AND pending_cert_sha256 = ?2 AND revoked_at_ms IS NULL",
        crate::params![station_id, fingerprint],
    )?;
    if changed > 0 {
        audit::append(
            &tx,
            crate::base::time::now_ms(),
            "ingest",
            "station.certificate",
            &station_id.to_string(),
            &serde_json::json!({ "cert_sha256": fingerprint }).to_string(),
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Revokes a station: its certificate goes on a newly signed revocation list, which the running
/// ingest picks up within seconds (no restart): the next handshake is refused and open connections
/// are closed.
pub fn revoke_station(ctx: &Context, name: &str, actor: &str) -> Result<()> {
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let n = tx.execute(
        "UPDATE stations SET revoked_at_ms = ?2 WHERE name = ?1 AND revoked_at_ms IS NULL",
        (name, now),
    )?;
    if n == 0 {
        return Err(crate::base::refusal::Refusal::NoActiveStation(name.to_string()).into());
    }
    let crl = crate::trust::crl::publish(&ctx.dir, &tx, now)?;
    audit::append(
        &tx,
        now,
        actor,
        "station.revoke",
        name,
        &format!("{{\"crl_number\":{crl}}}"),
    )?;
    tx.commit()?;
    Ok(())
}

/// Records whose home a station is in, so its silence raises alerts for that person.
/// The internal id of the person with case reference `reference` (of any of their supervision
/// episodes), if enrolled. Takes a connection so it can run inside the caller's transaction.
pub fn person_id(
    conn: &crate::base::db::Connection,
    reference: &str,
) -> crate::base::db::Result<Option<i64>> {
    conn.query_row(
        "SELECT person_id FROM episodes WHERE reference = ?1",
        [reference],
        |r| r.get(0),
    )
    .optional()
}

pub fn link_station(
    ctx: &Context,
    station: &str,
    person_reference: &str,
    actor: &str,
) -> Result<()> {
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let Some(person) = person_id(&tx, person_reference)? else {
        return Err(crate::base::refusal::Refusal::NoPerson(person_reference.to_string()).into());
    };
    let n = tx.execute(
        "UPDATE stations SET person_id = ?2 WHERE name = ?1",
        (station, person),
    )?;
    if n == 0 {
        return Err(crate::base::refusal::Refusal::NoStation(station.to_string()).into());
    }
    audit::append(
        &tx,
        now,
        actor,
        "station.link",
        station,
        &format!("{{\"person\":{person}}}"),
    )?;
    tx.commit()?;
    Ok(())
}

/// Refuses a case reference that any episode of anyone already has.
fn ensure_new_reference(conn: &crate::base::db::Connection, reference: &str) -> Result<()> {
    match person_id(conn, reference)? {
        Some(_) => Err(crate::base::refusal::Refusal::ReferenceTaken(reference.to_string()).into()),
        None => Ok(()),
    }
}

/// Enrolls a person in a programme. `reference` is the operational case reference; it stays in SQL
/// and never reaches a dataset.
pub fn add_person(
    ctx: &Context,
    reference: &str,
    programme: Programme,
    actor: &str,
) -> Result<i64> {
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    ensure_new_reference(&tx, reference)?;
    let id: i64 = tx.query_row(
        "INSERT INTO persons (reference, programme, created_at_ms) VALUES (?1, ?2, ?3) RETURNING id",
        (reference, programme, now),
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO episodes (person_id, reference, programme, started_at_ms) VALUES (?1, ?2, ?3, ?4)",
        crate::params![id, reference, programme, now],
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "person.add",
        &format!("person:{id}"),
        &serde_json::json!({"programme": programme.as_str()}).to_string(),
    )?;
    tx.commit()?;
    Ok(id)
}

/// Starts a new supervision episode for a person who was supervised before (a new conviction),
/// under the new case reference: the person keeps their identity, so their pseudonyms, and with
/// them their weight in every research answer, stay one person's. `earlier_reference` is the case
/// reference of any earlier episode; the person's last supervision must have ended, and their
/// erasure must not have begun (then too little of them is left to continue: enrol anew).
pub fn start_episode(
    ctx: &Context,
    earlier_reference: &str,
    reference: &str,
    programme: Programme,
    actor: &str,
) -> Result<i64> {
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let Some(id) = person_id(&tx, earlier_reference)? else {
        return Err(crate::base::refusal::Refusal::NoPerson(earlier_reference.to_string()).into());
    };
    ensure_new_reference(&tx, reference)?;
    let (closed, erasing): (Option<i64>, Option<i64>) = tx.query_row(
        "SELECT closed_at_ms, erasure_started_at_ms FROM persons WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if erasing.is_some() {
        return Err(crate::base::refusal::Refusal::PersonBeingErased(
            earlier_reference.to_string(),
        )
        .into());
    }
    if closed.is_none() {
        return Err(crate::base::refusal::Refusal::SupervisionNotEnded(
            earlier_reference.to_string(),
        )
        .into());
    }
    tx.execute(
        "INSERT INTO episodes (person_id, reference, programme, started_at_ms) VALUES (?1, ?2, ?3, ?4)",
        crate::params![id, reference, programme, now],
    )?;
    tx.execute(
        "UPDATE persons SET reference = ?2, programme = ?3, closed_at_ms = NULL WHERE id = ?1",
        crate::params![id, reference, programme],
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "person.episode",
        &format!("person:{id}"),
        &serde_json::json!({"programme": programme.as_str()}).to_string(),
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
    let kind = kind.as_str();
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO devices (serial, kind) VALUES (?1, ?2) ON CONFLICT (serial) DO NOTHING",
        (serial, kind),
    )?;
    // An open assignment of this device ends where the new one starts.
    end_open_assignment(&tx, serial, valid_from_ms)?;
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

/// Ends a device's current assignment at `at_ms`: the device was taken off and handed in, or the
/// supervision ended. Readings from `at_ms` on belong to nobody: rows of a bundle that straddles
/// the end are flagged `after-assignment`, and a bundle that starts after it is quarantined, instead
/// of either being counted against the last wearer. The pairing with the station stays, so that a
/// late upload of readings taken before `at_ms` is still accepted; assigning the device anew ends it.
pub fn end_assignment(ctx: &Context, serial: &str, at_ms: i64, actor: &str) -> Result<i64> {
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let open: Option<(i64, i64)> = tx
        .query_row(
            "SELECT person_id, valid_from_ms FROM assignments
              WHERE device_serial = ?1 AND valid_to_ms IS NULL",
            [serial],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((person_id, from_ms)) = open else {
        return Err(crate::base::refusal::Refusal::DeviceNotAssigned(serial.to_string()).into());
    };
    if at_ms <= from_ms {
        return Err(crate::base::refusal::Refusal::AssignmentEndsBeforeStart {
            serial: serial.to_string(),
            from_ms,
        }
        .into());
    }
    end_open_assignment(&tx, serial, at_ms)?;
    audit::append(
        &tx,
        now,
        actor,
        "device.return",
        serial,
        &format!("{{\"person\":{person_id},\"to_ms\":{at_ms}}}"),
    )?;
    tx.commit()?;
    Ok(person_id)
}

/// Ends the device's open assignment, if it has one, at `at_ms`.
fn end_open_assignment(
    tx: &crate::base::db::Transaction,
    serial: &str,
    at_ms: i64,
) -> crate::base::db::Result<usize> {
    tx.execute(
        "UPDATE assignments SET valid_to_ms = ?2 WHERE device_serial = ?1 AND valid_to_ms IS NULL",
        (serial, at_ms),
    )
}

/// Pairs a device with the station that will upload its readings, from `valid_from_ms` on. An open
/// pairing of the device with another station ends where this one starts (a replacement station).
/// A bundle is decoded only when its device is paired with the uploading station at receipt.
pub fn pair_device(
    ctx: &Context,
    serial: &str,
    station: &str,
    valid_from_ms: i64,
    actor: &str,
) -> Result<()> {
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let station_id: Option<i64> = tx
        .query_row(
            "SELECT id FROM stations WHERE name = ?1 AND revoked_at_ms IS NULL",
            [station],
            |r| r.get(0),
        )
        .optional()?;
    let Some(station_id) = station_id else {
        return Err(crate::base::refusal::Refusal::NoActiveStation(station.to_string()).into());
    };
    let known: Option<String> = tx
        .query_row(
            "SELECT serial FROM devices WHERE serial = ?1",
            [serial],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_none() {
        return Err(crate::base::refusal::Refusal::UnknownDevice(serial.to_string()).into());
    }
    tx.execute(
        "UPDATE device_pairings SET valid_to_ms = ?2 WHERE device_serial = ?1 AND valid_to_ms IS NULL",
        (serial, valid_from_ms),
    )?;
    tx.execute(
        "INSERT INTO device_pairings (device_serial, station_id, valid_from_ms) VALUES (?1, ?2, ?3)",
        (serial, station_id, valid_from_ms),
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "device.pair",
        serial,
        &format!("{{\"station\":\"{station}\",\"from_ms\":{valid_from_ms}}}"),
    )?;
    tx.commit()?;
    Ok(())
}

/// Regions a person may be attributed to for research: the twelve provinces. Coarse on purpose.
pub const REGIONS: &[&str] = &[
    "drenthe",
    "flevoland",
    "friesland",
    "gelderland",
    "groningen",
    "limburg",
    "noord-brabant",
    "noord-holland",
    "overijssel",
    "utrecht",
    "zeeland",
    "zuid-holland",
];

/// Sets the coarse attributes research may see (released as region and age band, never raw).
pub fn set_research_attributes(
    ctx: &Context,
    person_id: i64,
    region: Option<&str>,
    birth_year: Option<i32>,
    actor: &str,
) -> Result<()> {
    if let Some(r) = region {
        if !REGIONS.contains(&r) {
            return Err(Error::Refused(
                crate::base::refusal::Refusal::UnknownRegion(r.to_string()),
            ));
        }
    }
    if let Some(y) = birth_year {
        if !(1900..=2100).contains(&y) {
            return Err(crate::base::refusal::Refusal::ImplausibleBirthYear(y).into());
        }
    }
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let n = tx.execute(
        "UPDATE persons SET region = ?2, birth_year = ?3 WHERE id = ?1",
        crate::params![person_id, region, birth_year],
    )?;
    if n == 0 {
        return Err(crate::base::refusal::Refusal::NoPerson(person_id.to_string()).into());
    }
    audit::append(
        &tx,
        now,
        actor,
        "person.attributes",
        &format!("person:{person_id}"),
        "{}",
    )?;
    tx.commit()?;
    Ok(())
}
