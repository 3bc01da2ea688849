//! Certificate renewal over the authenticated connection. While the station's certificate has
//! less than `renew_before_days` left, the station keeps a new key (made once, stored durably
//! before it is offered) and sends a certificate signing request for it with its heartbeat. The
//! server answers with the new certificate in the heartbeat's acknowledgement; the station checks
//! that it is for its new key and stores both durably (`identity.toml`, written, fsynced,
//! renamed) before any connection uses them. A crash at any point leaves either the old identity
//! in use (and the same new key offered again) or the new one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::StationConfig;
use crate::{durable, Error, Result};

/// The identity the server renewed last; it replaces the configuration's certificate and key.
/// `state_dir` is the station's [`StationConfig::state_dir`].
fn identity_file(state_dir: &Path) -> PathBuf {
    state_dir.join("identity.toml")
}

/// The key offered in a renewal request, until its certificate arrives.
fn pending_key_file(state_dir: &Path) -> PathBuf {
    state_dir.join("renewal-key.pem")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    cert_pem: String,
    key_pem: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Spool {
        path: path.display().to_string(),
        source,
    }
}

/// Not after of a PEM certificate, ms since the epoch.
pub fn not_after_ms(cert_pem: &str) -> Result<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| Error::Config(format!("certificate: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| Error::Config(format!("certificate: {e}")))?;
    Ok(cert.validity().not_after.timestamp() * 1000)
}

/// The public key (SubjectPublicKeyInfo, DER) a PEM certificate certifies.
fn certified_key(cert_pem: &str) -> Result<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| Error::Config(format!("certificate: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| Error::Config(format!("certificate: {e}")))?;
    Ok(cert.public_key().raw.to_vec())
}

/// The configuration with the identity the station uses now: the renewed one when it is stored
/// and lasts at least as long as the configured one (certificates end on a day, so one renewed
/// today may end on the same day as the configured one).
pub fn current(config: &StationConfig, state_dir: &Path) -> Result<StationConfig> {
    let path = identity_file(state_dir);
    let stored: Identity = match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(config.clone()),
        Err(e) => return Err(io(&path)(e)),
    };
    if not_after_ms(&stored.cert_pem)? < not_after_ms(&config.cert_pem)? {
        return Ok(config.clone());
    }
    Ok(StationConfig {
        cert_pem: stored.cert_pem,
        key_pem: stored.key_pem,
        ..config.clone()
    })
}

/// The renewal request to send with this run's heartbeat, if the identity in use (`current`)
/// expires within `renew_before_days` of `now_ms`. Makes the new key on first need and stores
/// it durably before offering it, so that an answer always finds its key.
pub fn request(current: &StationConfig, state_dir: &Path, now_ms: i64) -> Result<Option<String>> {
    let left_ms = not_after_ms(&current.cert_pem)? - now_ms;
    if left_ms > i64::from(current.renew_before_days) * 86_400_000 {
        return Ok(None);
    }
    let path = pending_key_file(state_dir);
    let key = match std::fs::read_to_string(&path) {
        Ok(pem) => rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = rcgen::KeyPair::generate().map_err(|e| Error::Config(e.to_string()))?;
            durable::write_durably(&path, key.serialize_pem().as_bytes()).map_err(io(&path))?;
            key
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| Error::Config(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, current.name.clone());
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| Error::Config(format!("certificate request: {e}")))?;
    tracing::info!(
        days_left = left_ms / 86_400_000,
        "certificate nears its end: asking for a new one"
    );
    Ok(Some(csr))
}

/// Takes the certificate the server sent for the pending key: stores the new identity durably,
/// then forgets the pending key. A certificate for another key is refused (and the pending key
/// kept for the next request).
pub fn adopt(state_dir: &Path, cert_pem: &str) -> Result<()> {
    let path = pending_key_file(state_dir);
    let key_pem = std::fs::read_to_string(&path).map_err(io(&path))?;
    let key = rcgen::KeyPair::from_pem(&key_pem)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    if certified_key(cert_pem)? != rcgen::PublicKeyData::subject_public_key_info(&key) {
        return Err(Error::Config(
            "the server's new certificate is not for this station's new key".into(),
        ));
    }
    let identity = toml::to_string(&Identity {
        cert_pem: cert_pem.to_string(),
        key_pem,
    })
    .map_err(|e| Error::Config(e.to_string()))?;
    let target = identity_file(state_dir);
    durable::write_durably(&target, identity.as_bytes()).map_err(io(&target))?;
    std::fs::remove_file(&path).map_err(io(&path))?;
    tracing::info!(
        not_after_ms = not_after_ms(cert_pem)?,
        "new certificate stored; the next connection uses it"
    );
    Ok(())
}
