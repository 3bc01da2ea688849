//! The station's configuration: one TOML file written by `nachtwacht station add`, holding everything
//! the station needs (its key and certificate, the CA certificate, the server addresses, the server's
//! age recipient) and where its readings come from.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// The station's name, as enrolled on the server (also the certificate's common name).
    pub name: String,
    /// Server addresses, tried in order.
    pub servers: Vec<String>,
    /// Name the server's certificate is checked against.
    pub server_name: String,
    /// The nachtwacht CA certificate (PEM) the server's certificate must chain to.
    pub ca_cert_pem: String,
    /// This station's client certificate (PEM), issued by the nachtwacht CA.
    pub cert_pem: String,
    /// This station's private key (PEM). The file holding it must be readable by the station only.
    pub key_pem: String,
    /// The server's age recipient; bundles are encrypted to it.
    pub server_age_recipient: String,
    /// This station's Ed25519 signing key (PKCS#8, hex), created at enrollment. The server holds the
    /// public key and checks every bundle's signature with it.
    pub signing_key_pkcs8: String,
    /// Local spool directory, relative to the config file's directory unless absolute.
    #[serde(default = "default_spool")]
    pub spool: PathBuf,
    /// Cap on the bytes waiting in the spool (see `spool` for what happens when it is reached).
    #[serde(default = "default_spool_cap")]
    pub spool_max_bytes: u64,
    /// Seconds between heartbeats while the agent runs.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_interval_secs: u64,
    /// Days before its certificate ends that the station asks the server for a new one (over the
    /// authenticated connection, with its heartbeat).
    #[serde(default = "default_renew_before_days")]
    pub renew_before_days: u32,
    /// Where readings come from.
    #[serde(default)]
    pub source: crate::source::SourceConfig,
}

fn default_spool() -> PathBuf {
    PathBuf::from("spool")
}

/// How many bytes the spool may hold unless the config says otherwise: a month of wristband data
/// at a few worn hours a day fits several times over.
pub const DEFAULT_SPOOL_CAP_BYTES: u64 = 1 << 30;

fn default_spool_cap() -> u64 {
    DEFAULT_SPOOL_CAP_BYTES
}

fn default_heartbeat_secs() -> u64 {
    300
}

pub fn default_renew_before_days() -> u32 {
    30
}

impl StationConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("station config serialises")
    }

    pub fn spool_dir(&self, base_dir: &Path) -> PathBuf {
        base_dir.join(&self.spool)
    }

    /// Where the station keeps what it learns from the server (the recipient to seal to, its
    /// renewed certificate): beside its spool, which is writable wherever the station runs (the
    /// systemd unit keeps the configuration's folder read-only and the spool in its state
    /// directory).
    pub fn state_dir(&self, base_dir: &Path) -> PathBuf {
        let spool = self.spool_dir(base_dir);
        spool
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| base_dir.to_path_buf())
    }

    /// The signing key pair, parsed.
    pub fn signing_key(&self) -> Result<ring::signature::Ed25519KeyPair> {
        let der = hex::decode(self.signing_key_pkcs8.trim())
            .map_err(|e| Error::Config(format!("signing_key_pkcs8: {e}")))?;
        ring::signature::Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| Error::Config(format!("signing_key_pkcs8: {e}")))
    }
}
