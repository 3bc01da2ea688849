//! Where everything lives inside a data directory. One place, so no module invents a path.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("nachtwacht.toml")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("state.sqlite")
    }
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.pki().join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.pki().join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.pki().join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.pki().join("server.key")
    }
    /// The CA's current certificate revocation list; the ingest reloads it when it changes.
    pub fn crl(&self) -> PathBuf {
        self.pki().join("ca.crl.pem")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn age_identity(&self) -> PathBuf {
        self.keys().join("age-identity.txt")
    }
    pub fn pseudonym_keys(&self) -> PathBuf {
        self.keys().join("pseudonym-keys.toml")
    }
    /// Received ciphertexts, durable before they are acknowledged.
    pub fn spool(&self) -> PathBuf {
        self.root.join("spool")
    }
    /// Ciphertexts of processed bundles, kept as evidence for `ingest.evidence_retention_days`:
    /// `evidence/<YYYY-MM-DD received>/<bundle id>.age`.
    pub fn evidence(&self) -> PathBuf {
        self.root.join("evidence")
    }
    /// Bundles that could not be processed, each with a `.reason` file.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    /// Pseudonymised raw signals: `datasets/raw/<signal>/<YYYY-MM-DD>/<bundle id>.parquet`.
    pub fn raw_signal(&self, signal: &str) -> PathBuf {
        self.root.join("datasets").join("raw").join(signal)
    }
    /// Daily indicators under research pseudonyms: the only dataset the research path reads.
    pub fn research_daily(&self) -> PathBuf {
        self.root
            .join("datasets")
            .join("research")
            .join("daily_indicators.parquet")
    }
    /// Alerts per person-day and kind group, research pseudonyms only (see `evaluate`).
    pub fn research_alert_counts(&self) -> PathBuf {
        self.root
            .join("datasets")
            .join("research")
            .join("alert_counts.parquet")
    }
    /// Station configs written by the demo.
    pub fn stations(&self) -> PathBuf {
        self.root.join("stations")
    }
}
