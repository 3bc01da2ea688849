//! Server configuration: `nachtwacht.toml` in the data directory. Unknown keys are errors, every
//! problem is reported at once, and nothing listens beyond localhost unless configured.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub ingest: IngestConfig,
    pub http: HttpConfig,
    pub research: ResearchConfig,
    pub pipeline: PipelineConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// UDP address the QUIC ingest listens on.
    pub listen: SocketAddr,
    /// Addresses written into station configs (what stations dial).
    pub public_addresses: Vec<String>,
    /// DNS name in the server certificate; stations check it.
    pub server_name: String,
    /// Largest bundle ciphertext accepted, bytes.
    pub max_bundle_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResearchConfig {
    /// Public bound on how many person-days one person contributes to a query; a person's further
    /// days are dropped before aggregation (contribution bounding).
    pub max_days_per_person: u32,
    /// Public upper bound on the number of rows of the daily-indicators dataset.
    pub max_rows: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Seconds between pipeline runs inside `serve`.
    pub interval_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ingest: IngestConfig {
                listen: "127.0.0.1:4433".parse().expect("addr"),
                public_addresses: vec!["127.0.0.1:4433".into()],
                server_name: "localhost".into(),
                max_bundle_bytes: 64 << 20,
            },
            http: HttpConfig {
                listen: "127.0.0.1:8080".parse().expect("addr"),
            },
            research: ResearchConfig {
                max_days_per_person: 366,
                max_rows: 50_000_000,
            },
            pipeline: PipelineConfig { interval_secs: 60 },
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<Self> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::Invalid {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let problems = cfg.problems();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(Error::Invalid {
                path: path.into(),
                reason: problems.join("; "),
            })
        }
    }

    /// Every semantic problem, not just the first.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.ingest.public_addresses.is_empty() {
            p.push("ingest.public_addresses must name at least one address".into());
        }
        if self.ingest.server_name.trim().is_empty() {
            p.push("ingest.server_name must not be empty".into());
        }
        if self.ingest.max_bundle_bytes == 0 {
            p.push("ingest.max_bundle_bytes must be positive".into());
        }
        if self.research.max_days_per_person == 0 {
            p.push("research.max_days_per_person must be positive".into());
        }
        if self.pipeline.interval_secs == 0 {
            p.push("pipeline.interval_secs must be positive".into());
        }
        p
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_listen_on_localhost_only() {
        let cfg = Config::default();
        assert_eq!(Config::parse(&cfg.to_toml(), "x").unwrap(), cfg);
        assert!(cfg.ingest.listen.ip().is_loopback());
        assert!(cfg.http.listen.ip().is_loopback());
    }

    #[test]
    fn unknown_keys_and_every_problem_are_reported() {
        let text = Config::default()
            .to_toml()
            .replace("[http]", "[http]\nport = 1");
        assert!(Config::parse(&text, "x")
            .unwrap_err()
            .to_string()
            .contains("port"));
        let mut cfg = Config::default();
        cfg.ingest.public_addresses.clear();
        cfg.research.max_days_per_person = 0;
        assert_eq!(cfg.problems().len(), 2);
    }
}
