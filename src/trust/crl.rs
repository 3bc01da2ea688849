//! The CA's certificate revocation list: signed from the `stations` table, written durably to
//! `pki/ca.crl.pem`, numbered in `crls`. The ingest's TLS verifier loads it and reloads it when the
//! file changes, so `nachtwacht station revoke` takes effect on the next handshake without a restart
//! (and the ingest closes the revoked station's open connections).

use crate::base::db::Connection;

use crate::base::datadir::DataDir;
use crate::trust::pki;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pki(#[from] pki::Error),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Signs a new list naming every revoked station certificate and makes it durable. Call inside
/// the transaction that revokes, before it commits: if the commit then fails, the list names one
/// certificate too many, which fails safe.
pub fn publish(dir: &DataDir, conn: &Connection, now_ms: i64) -> Result<u64> {
    let ca = pki::Issued {
        cert_pem: read(&dir.ca_cert())?,
        key_pem: read(&dir.ca_key())?,
    };
    let revoked = {
        let mut stmt = conn.prepare(
            "SELECT cert_serial, revoked_at_ms FROM stations
              WHERE revoked_at_ms IS NOT NULL AND cert_serial IS NOT NULL
             UNION ALL
             SELECT pending_cert_serial, revoked_at_ms FROM stations
              WHERE revoked_at_ms IS NOT NULL AND pending_cert_serial IS NOT NULL",
        )?;

        stmt.query_map([], |r| {
            Ok(pki::Revoked {
                serial_hex: r.get(0)?,
                revoked_at_ms: r.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    let number: u64 = conn.query_row("SELECT COALESCE(MAX(number), 0) + 1 FROM crls", [], |r| {
        r.get::<_, i64>(0)
    })? as u64;
    let pem = pki::sign_crl(&ca, &revoked, number, now_ms)?;
    nachtwacht_station::durable::write_durably(&dir.crl(), pem.as_bytes()).map_err(|source| {
        Error::Io {
            path: dir.crl().display().to_string(),
            source,
        }
    })?;
    conn.execute(
        "INSERT INTO crls (number, signed_at_ms, revoked_count) VALUES (?1, ?2, ?3)",
        (number as i64, now_ms, revoked.len() as i64),
    )?;
    Ok(number)
}

/// Re-signs the list when it is missing or past half its validity, so it never expires under a
/// running server.
pub fn refresh_if_due(dir: &DataDir, conn: &Connection, now_ms: i64) -> Result<Option<u64>> {
    let last: Option<i64> =
        conn.query_row("SELECT MAX(signed_at_ms) FROM crls", [], |r| r.get(0))?;
    let half_life_ms = pki::CRL_VALIDITY_DAYS * crate::base::time::DAY_MS / 2;
    let due = !dir.crl().exists() || last.is_none_or(|t| now_ms - t > half_life_ms);
    if due {
        Ok(Some(publish(dir, conn, now_ms)?))
    } else {
        Ok(None)
    }
}
