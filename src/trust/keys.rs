//! The server's age keys and their rotation.
//!
//! `keys/age-identity.txt` holds every identity, newest first; the decoder tries them all, so a
//! bundle sealed to an older recipient still opens. `age_keys` in SQL lists the recipients, newest
//! last; the ingest reads the newest and sends it in every positive acknowledgement, and a station
//! that sees a new one seals its next bundles to it (see `docs/protocol.md`). The acknowledgement
//! travels over the mutually authenticated QUIC connection, so a station takes a new recipient only
//! from the server whose certificate it pinned.

use std::str::FromStr;

use crate::base::db::OptionalExtension;

use crate::base::Context;
use crate::{trust::audit, trust::secrets};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Secrets(#[from] secrets::Error),
    #[error(transparent)]
    File(#[from] crate::base::fsio::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Pki(#[from] crate::trust::pki::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The recipient stations should seal to now.
pub fn current_recipient(conn: &crate::base::db::Connection) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT recipient FROM age_keys ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// Records a recipient as the newest (idempotent).
pub fn register_recipient(
    conn: &crate::base::db::Connection,
    recipient: &str,
    now_ms: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO age_keys (recipient, created_at_ms) VALUES (?1, ?2) ON CONFLICT (recipient) DO NOTHING",
        (recipient, now_ms),
    )?;
    Ok(())
}

/// Creates a new age identity and makes its recipient the current one. Old identities stay, so
/// bundles already sealed (or still in stations' spools) decrypt. Returns the new recipient.
///
/// A new server certificate (two years, for `[ingest] server_name`) and key, signed by the CA,
/// replacing the old ones (both written and fsynced beside them, then renamed over them); the
/// server uses them from its next start. Audited. Returns the new certificate's end, ms.
pub fn renew_server_cert(ctx: &Context, actor: &str) -> Result<i64> {
    let read = |path: std::path::PathBuf| {
        std::fs::read_to_string(&path).map_err(|source| secrets::Error::Io {
            path: path.display().to_string(),
            source,
        })
    };
    let ca = crate::trust::pki::Issued {
        cert_pem: read(ctx.dir.ca_cert())?,
        key_pem: read(ctx.dir.ca_key())?,
    };
    let issued = crate::trust::pki::issue_server_cert(&ca, &ctx.config.ingest.server_name)?;
    let (cert, key) = (ctx.dir.server_cert(), ctx.dir.server_key());
    // `server.key.new`, `server.pem.new`: written beside the old ones, then renamed over them.
    let fresh = |p: &std::path::Path| {
        let mut name = p.file_name().unwrap_or_default().to_os_string();
        name.push(".new");
        p.with_file_name(name)
    };
    crate::base::fsio::write_files_durably(
        &ctx.dir.pki(),
        &[
            (fresh(&key), issued.key_pem.as_bytes()),
            (fresh(&cert), issued.cert_pem.as_bytes()),
        ],
    )?;
    crate::base::fsio::move_all_durably(&[(fresh(&key), key), (fresh(&cert), cert.clone())])?;
    let (_, not_after) = crate::trust::pki::validity_of(&cert)?;
    audit::append(
        &ctx.db.lock(),
        crate::base::time::now_ms(),
        actor,
        "keys.server-cert",
        "server",
        &serde_json::json!({ "not_after_ms": not_after, "fingerprint": issued.fingerprint()? })
            .to_string(),
    )?;
    Ok(not_after)
}

/// Order: the identity file first (written to a temporary file, fsynced, renamed over the old
/// one), then the SQL row the ingest advertises. A crash in between leaves an identity nobody
/// seals to yet, never a recipient without its identity.
pub fn rotate(ctx: &Context, actor: &str) -> Result<String> {
    let path = ctx.dir.age_identity();
    let old = std::fs::read_to_string(&path).map_err(|source| secrets::Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let previous = secrets::load_age_identities(&path)?;
    let (identity, recipient) = secrets::generate_age_identity();
    let now = crate::base::time::now_ms();
    let text = format!(
        "# nachtwacht server age identity, created {now}\n# recipient: {recipient}\n{identity}\n{old}"
    );
    secrets::replace_private(&path, text.as_bytes())?;
    debug_assert!(age::x25519::Identity::from_str(&identity).is_ok());

    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    // A data directory from before the table: record the recipient it had.
    if current_recipient(&tx)?.is_none() {
        register_recipient(&tx, &previous[0].to_public().to_string(), now)?;
    }
    register_recipient(&tx, &recipient, now)?;
    audit::append(
        &tx,
        now,
        actor,
        "keys.rotate",
        "age",
        &format!(
            "{{\"recipient\":\"{recipient}\",\"identities\":{}}}",
            previous.len() + 1
        ),
    )?;
    tx.commit()?;
    Ok(recipient)
}
