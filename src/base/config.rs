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
    #[serde(default)]
    pub communication: CommunicationConfig,
    #[serde(default)]
    pub accountability: AccountabilityConfig,
    #[serde(default)]
    pub notifications: NotificationsConfig,
    #[serde(default)]
    pub operations: OperationsConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub storage: StorageConfig,
}

/// Where bundle ciphertexts are kept (spool, evidence, quarantine; see `crate::base::blobs`):
/// files in the data directory (the default), or an S3-compatible bucket several nodes share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub backend: StorageBackend,
    /// The S3 endpoint, e.g. `https://s3.example.nl` (path-style requests are used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Keys are written under this prefix within the bucket (empty: at its root).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default = "defaults::s3_region")]
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The file holding the secret access key (relative to the data directory, or absolute);
    /// never the key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<String>,
    /// Certificate authorities (PEM) that sign the endpoint's certificate, besides the
    /// system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Accept an `http://` endpoint: only for a store on this machine (tests, benchmarks).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,
}

impl StorageConfig {
    /// S3 settings from `key=value` pairs separated by spaces (`endpoint`, `bucket`, `prefix`,
    /// `region`, `access_key_id`, `secret_access_key_file`, `allow_http`), as the benchmarks'
    /// `--s3` and the tests' `NACHTWACHT_TEST_S3` give them.
    pub fn s3_from_pairs(spec: &str) -> std::result::Result<Self, String> {
        let mut config = Self {
            backend: StorageBackend::S3,
            ..Self::default()
        };
        for pair in spec.split_whitespace() {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let some = Some(v.to_string());
            match k {
                "endpoint" => config.endpoint = some,
                "bucket" => config.bucket = some,
                "prefix" => config.prefix = v.to_string(),
                "region" => config.region = v.to_string(),
                "access_key_id" => config.access_key_id = some,
                "secret_access_key_file" => config.secret_access_key_file = some,
                "allow_http" => {
                    config.allow_http = v.parse().map_err(|_| format!("allow_http={v}"))?
                }
                other => return Err(format!("unknown key {other}")),
            }
        }
        Ok(config)
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Local,
            endpoint: None,
            bucket: None,
            prefix: String::new(),
            region: defaults::s3_region(),
            access_key_id: None,
            secret_access_key_file: None,
            ca_file: None,
            allow_http: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    #[default]
    Local,
    S3,
}

/// Where the state lives: SQLite in the data directory (the default), or a PostgreSQL database
/// that several nachtwacht processes share.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(default)]
    pub backend: DatabaseBackend,
    /// PostgreSQL's connection URL without a password, e.g.
    /// `postgres://nachtwacht@db.example:5432/nachtwacht?sslmode=require` or
    /// `host=/run/postgresql dbname=nachtwacht user=nachtwacht`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The file holding the database password (relative to the data directory, or absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// Certificate authorities (PEM) that sign the database server's certificate, when the URL
    /// asks for TLS (`sslmode=require`); without it, the Web PKI's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseBackend {
    #[default]
    Sqlite,
    Postgres,
}

impl DatabaseConfig {
    /// PostgreSQL at `url`, its password in `password_file`.
    pub fn postgres(url: &str, password_file: Option<&str>) -> Self {
        Self {
            backend: DatabaseBackend::Postgres,
            url: Some(url.to_string()),
            password_file: password_file.map(str::to_string),
            ca_file: None,
        }
    }
}

/// What the operations team watches: metrics, readiness and the logs' format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationsConfig {
    /// Where Prometheus scrapes `/metrics` (with `/healthz` and `/readyz`), apart from the web
    /// UI; absent turns it off. Localhost by default.
    #[serde(default = "defaults::metrics_listen", with = "off_or_address")]
    pub metrics_listen: Option<SocketAddr>,
    /// `/readyz` reports not ready when the oldest bundle has waited longer than this to be
    /// decoded.
    #[serde(default = "defaults::max_decode_lag_secs")]
    pub max_decode_lag_secs: u64,
    /// ... or when the oldest dataset file has waited longer than this for the pipelines.
    #[serde(default = "defaults::max_pipeline_lag_secs")]
    pub max_pipeline_lag_secs: u64,
    /// `text` (default) or `json` (one object per line, for log shippers); `--log-format`
    /// overrides it.
    #[serde(default)]
    pub log_format: LogFormat,
}

impl Default for OperationsConfig {
    fn default() -> Self {
        Self {
            metrics_listen: defaults::metrics_listen(),
            max_decode_lag_secs: defaults::max_decode_lag_secs(),
            max_pipeline_lag_secs: defaults::max_pipeline_lag_secs(),
            log_format: LogFormat::default(),
        }
    }
}

/// An address, or `"off"` (TOML has no null).
mod off_or_address {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::net::SocketAddr;

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "off" => Ok(None),
            a => a.parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!(
                    "{a:?} is neither an address (host:port) nor \"off\""
                ))
            }),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// E-mail to staff about new alerts (`notify`). Without `[notifications.smtp]` nothing is sent;
/// officers' choices are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// The mail server. Messages carry no personal data: a sentence and a link.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// A critical (high-severity) alert no officer has opened this long after it was raised is
    /// escalated to the manager of each officer who has the person on their caseload.
    #[serde(default = "defaults::escalate_after_minutes")]
    pub escalate_after_minutes: u32,
    /// Seconds between passes of the notifier inside `serve`.
    #[serde(default = "defaults::notify_interval_secs")]
    pub interval_secs: u64,
    /// A message that failed this many times is given up (logged and audited).
    #[serde(default = "defaults::max_send_attempts")]
    pub max_attempts: u32,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            smtp: None,
            escalate_after_minutes: defaults::escalate_after_minutes(),
            interval_secs: defaults::notify_interval_secs(),
            max_attempts: defaults::max_send_attempts(),
        }
    }
}

/// How the mail server is reached. TLS is not optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "defaults::smtp_port")]
    pub port: u16,
    /// `starttls` (submission, port 587) or `implicit` (port 465).
    #[serde(default)]
    pub tls: SmtpTls,
    /// A PEM file of the CA(s) that sign the mail server's certificate, relative to the data
    /// directory; without it the public web PKI roots are trusted.
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// The file (relative to the data directory, mode 0600) holding the SMTP password.
    #[serde(default)]
    pub password_file: Option<String>,
    /// The sender, e.g. `nachtwacht <nachtwacht@reclassering.example>`.
    pub from: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Implicit,
}

/// What the compliance report holds staff to (`nachtwacht compliance report`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountabilityConfig {
    /// An officer's accesses are reviewed by an auditor at least this often.
    pub review_period_days: u32,
    /// An active account not signed in for this long fails the unused-accounts control.
    pub unused_account_days: u32,
    /// The current age key older than this fails the keys control (`nachtwacht keys rotate`).
    pub max_key_age_days: u32,
}

impl Default for AccountabilityConfig {
    fn default() -> Self {
        Self {
            review_period_days: 90,
            unused_account_days: 90,
            max_key_age_days: 365,
        }
    }
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
    /// Connections one station may hold at once; more are closed with a reason.
    #[serde(default = "defaults::max_connections_per_station")]
    pub max_connections_per_station: u32,
    /// Streams (bundles in flight) one connection may have open at once.
    #[serde(default = "defaults::max_streams_per_connection")]
    pub max_streams_per_connection: u32,
    /// Sustained bundles per minute per station (burst: the same number); beyond it, `busy`.
    #[serde(default = "defaults::max_bundles_per_minute")]
    pub max_bundles_per_minute: u32,
    /// Bytes waiting to be decoded (plus bytes being received) above which uploads get `busy`.
    #[serde(default = "defaults::spool_high_water_bytes")]
    pub spool_high_water_bytes: u64,
    /// Free disk space the spool never eats into; below it, uploads get `busy`.
    #[serde(default = "defaults::min_free_disk_bytes")]
    pub min_free_disk_bytes: u64,
    /// Uploads whose bodies are received at the same time; the others wait, holding only their
    /// header (QUIC flow control), in arrival order.
    #[serde(default = "defaults::max_receiving_uploads")]
    pub max_receiving_uploads: u32,
    /// Bundle bytes held in memory across all streams being received.
    #[serde(default = "defaults::max_in_flight_bytes")]
    pub max_in_flight_bytes: u64,
    /// A connection with no traffic (stations keep-alive every 20 s) is closed after this.
    #[serde(default = "defaults::idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// On shutdown, how long uploads already under way may take to finish.
    #[serde(default = "defaults::drain_timeout_secs")]
    pub drain_timeout_secs: u64,
    /// Threads of the ingest's own async runtime (QUIC packets, uploads; the group commit has a
    /// thread of its own besides). One core takes in over 100 MB/s; with one thread no upload's
    /// packets wake a second thread, which costs the paced case a sixth of its CPU.
    #[serde(default = "defaults::ingest_threads")]
    pub threads: u32,
}

/// When a station's silence or health raises a communication alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunicationConfig {
    /// No contact from a station for this long raises `communication-lost`.
    pub silence_minutes: u32,
    /// No contact for this long raises `communication-critical` (domain default: 48 hours).
    #[serde(default = "defaults::critical_silence_hours")]
    pub critical_silence_hours: u32,
    /// A station clock further off than this raises `clock-drift`.
    pub max_clock_offset_secs: u32,
}

impl Default for CommunicationConfig {
    fn default() -> Self {
        Self {
            silence_minutes: 60,
            critical_silence_hours: defaults::critical_silence_hours(),
            max_clock_offset_secs: 300,
        }
    }
}

mod defaults {
    pub fn s3_region() -> String {
        "us-east-1".into()
    }
    pub fn metrics_listen() -> Option<std::net::SocketAddr> {
        Some("127.0.0.1:9464".parse().expect("addr"))
    }
    pub fn max_decode_lag_secs() -> u64 {
        15 * 60
    }
    pub fn max_pipeline_lag_secs() -> u64 {
        60 * 60
    }
    pub fn time_zone() -> String {
        "Europe/Amsterdam".into()
    }
    pub fn person_epsilon_per_year() -> f64 {
        10.0
    }
    pub fn person_delta_per_year() -> f64 {
        1e-6
    }
    pub fn max_groups_per_query() -> u32 {
        10_000
    }
    pub fn requests_per_minute_per_token() -> u32 {
        60
    }
    pub fn critical_silence_hours() -> u32 {
        48
    }
    pub fn compact_min_files() -> usize {
        12
    }
    pub fn max_connections_per_station() -> u32 {
        2
    }
    pub fn max_streams_per_connection() -> u32 {
        8
    }
    pub fn max_bundles_per_minute() -> u32 {
        600
    }
    pub fn spool_high_water_bytes() -> u64 {
        4 << 30
    }
    pub fn min_free_disk_bytes() -> u64 {
        1 << 30
    }
    pub fn max_receiving_uploads() -> u32 {
        256
    }
    pub fn ingest_threads() -> u32 {
        1
    }
    pub fn max_in_flight_bytes() -> u64 {
        512 << 20
    }
    pub fn idle_timeout_secs() -> u64 {
        60
    }
    pub fn drain_timeout_secs() -> u64 {
        30
    }
    pub fn escalate_after_minutes() -> u32 {
        30
    }
    pub fn notify_interval_secs() -> u64 {
        30
    }
    pub fn max_send_attempts() -> u32 {
        10
    }
    pub fn smtp_port() -> u16 {
        587
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Serve the web UI over HTTPS with the server certificate from `init` (session cookies are
    /// then `Secure`). Off by default because the default listens on localhost only; turn it on
    /// for any other address.
    #[serde(default)]
    pub tls: bool,
    /// The address people type to reach the web UI, e.g. `https://nachtwacht.example.nl` (scheme,
    /// host and port). Requests must name it in `Host`, and form posts in `Origin`. Without it,
    /// the listen address itself (and `localhost` for a loopback address) with the scheme `tls`
    /// implies; required when listening on all addresses.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The IANA time zone the web UI shows times in and reads date filters in.
    #[serde(default = "defaults::time_zone")]
    pub time_zone: String,
}

impl HttpConfig {
    /// The zone of [`HttpConfig::time_zone`] (validated when the configuration is read).
    pub fn zone(&self) -> crate::base::time::Zone {
        crate::base::time::Zone::named(&self.time_zone).unwrap_or(crate::base::time::Zone::UTC)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResearchConfig {
    /// Public bound on how many person-days one person contributes to a query; a person's further
    /// days are dropped before aggregation (contribution bounding).
    pub max_days_per_person: u32,
    /// Public upper bound on the number of rows of the daily-indicators dataset.
    pub max_rows: u32,
    /// The most groups one answer may have (the product of its keys' public value sets). Every
    /// public group is computed, dry runs included, so this bounds a query's CPU and memory.
    #[serde(default = "defaults::max_groups_per_query")]
    pub max_groups_per_query: u32,
    /// Requests per minute one research token may make (queries, dry runs and budget reads); more
    /// are refused with 429 and audited.
    #[serde(default = "defaults::requests_per_minute_per_token")]
    pub requests_per_minute_per_token: u32,
    /// The most privacy loss (ε, at `person_delta_per_year`) any one person may suffer from all
    /// releases of all projects, management figures included, in one calendar year (UTC). Every
    /// release is charged to it and to its project's budget in one transaction.
    #[serde(default = "defaults::person_epsilon_per_year")]
    pub person_epsilon_per_year: f64,
    /// The δ at which `person_epsilon_per_year` is accounted (zCDP composition, as for projects).
    #[serde(default = "defaults::person_delta_per_year")]
    pub person_delta_per_year: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Seconds between pipeline runs inside `serve`.
    pub interval_secs: u64,
    /// A signal's day is compacted into one Parquet file once it has this many files (days before
    /// today are compacted whenever they have more than one).
    #[serde(default = "defaults::compact_min_files")]
    pub compact_min_files: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ingest: IngestConfig {
                listen: "127.0.0.1:4433".parse().expect("addr"),
                public_addresses: vec!["127.0.0.1:4433".into()],
                server_name: "localhost".into(),
                max_bundle_bytes: 64 << 20,
                max_connections_per_station: defaults::max_connections_per_station(),
                max_streams_per_connection: defaults::max_streams_per_connection(),
                max_bundles_per_minute: defaults::max_bundles_per_minute(),
                spool_high_water_bytes: defaults::spool_high_water_bytes(),
                min_free_disk_bytes: defaults::min_free_disk_bytes(),
                max_receiving_uploads: defaults::max_receiving_uploads(),
                max_in_flight_bytes: defaults::max_in_flight_bytes(),
                idle_timeout_secs: defaults::idle_timeout_secs(),
                drain_timeout_secs: defaults::drain_timeout_secs(),
                threads: defaults::ingest_threads(),
            },
            http: HttpConfig {
                listen: "127.0.0.1:8080".parse().expect("addr"),
                tls: false,
                public_url: None,
                time_zone: defaults::time_zone(),
            },
            research: ResearchConfig {
                max_days_per_person: 366,
                max_rows: 50_000_000,
                max_groups_per_query: defaults::max_groups_per_query(),
                requests_per_minute_per_token: defaults::requests_per_minute_per_token(),
                person_epsilon_per_year: defaults::person_epsilon_per_year(),
                person_delta_per_year: defaults::person_delta_per_year(),
            },
            pipeline: PipelineConfig {
                interval_secs: 60,
                compact_min_files: defaults::compact_min_files(),
            },
            communication: CommunicationConfig::default(),
            accountability: AccountabilityConfig::default(),
            notifications: NotificationsConfig::default(),
            operations: OperationsConfig::default(),
            database: DatabaseConfig::default(),
            storage: StorageConfig::default(),
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
        if self.ingest.max_connections_per_station == 0
            || self.ingest.max_streams_per_connection == 0
            || self.ingest.max_bundles_per_minute == 0
            || self.ingest.max_receiving_uploads == 0
            || self.ingest.threads == 0
        {
            p.push("ingest.max_connections_per_station, max_streams_per_connection, max_bundles_per_minute, max_receiving_uploads and threads must be positive".into());
        }
        if self.ingest.max_in_flight_bytes < self.ingest.max_bundle_bytes {
            p.push(
                "ingest.max_in_flight_bytes must hold at least one bundle of max_bundle_bytes"
                    .into(),
            );
        }
        if self.ingest.idle_timeout_secs < 30 {
            p.push(
                "ingest.idle_timeout_secs must be at least 30 (stations keep alive every 20 s)"
                    .into(),
            );
        }
        if self.storage.backend == StorageBackend::S3 {
            let s = &self.storage;
            for (name, value) in [
                ("endpoint", &s.endpoint),
                ("bucket", &s.bucket),
                ("access_key_id", &s.access_key_id),
                ("secret_access_key_file", &s.secret_access_key_file),
            ] {
                if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                    p.push(format!("storage.{name} is required with backend = \"s3\""));
                }
            }
        }
        if crate::base::time::Zone::named(&self.http.time_zone).is_none() {
            p.push(format!(
                "http.time_zone {:?} is not an IANA time zone (e.g. \"Europe/Amsterdam\")",
                self.http.time_zone
            ));
        }
        let a = &self.accountability;
        if a.review_period_days == 0 || a.unused_account_days == 0 || a.max_key_age_days == 0 {
            p.push(
                "accountability.review_period_days, unused_account_days and max_key_age_days must be positive"
                    .into(),
            );
        }
        if self.research.max_days_per_person == 0 {
            p.push("research.max_days_per_person must be positive".into());
        }
        if self.research.max_groups_per_query == 0
            || self.research.requests_per_minute_per_token == 0
        {
            p.push(
                "research.max_groups_per_query and requests_per_minute_per_token must be positive"
                    .into(),
            );
        }
        let r = &self.research;
        let person_budget_ok = r.person_epsilon_per_year.is_finite()
            && r.person_epsilon_per_year > 0.0
            && r.person_delta_per_year > 0.0
            && r.person_delta_per_year < 1.0;
        if !person_budget_ok {
            p.push("research.person_epsilon_per_year must be positive and person_delta_per_year in (0, 1)".into());
        }
        let n = &self.notifications;
        if n.interval_secs == 0 || n.max_attempts == 0 {
            p.push("notifications.interval_secs and max_attempts must be positive".into());
        }
        if let Some(smtp) = &n.smtp {
            if smtp.host.trim().is_empty() {
                p.push("notifications.smtp.host must not be empty".into());
            }
            if !smtp.from.contains('@') {
                p.push(format!(
                    "notifications.smtp.from {:?} must be an e-mail address",
                    smtp.from
                ));
            }
            if smtp.username.is_some() != smtp.password_file.is_some() {
                p.push("notifications.smtp.username and password_file go together".into());
            }
        }
        let d = &self.database;
        match d.backend {
            DatabaseBackend::Postgres => match &d.url {
                None => p.push("database.url is required when database.backend is \"postgres\"".into()),
                Some(url) if url.parse::<postgres::Config>().is_err() => {
                    p.push("database.url is not a PostgreSQL connection URL".into())
                }
                Some(url) if url.parse::<postgres::Config>().is_ok_and(|c| c.get_password().is_some()) => {
                    p.push("database.url must not carry a password: put it in the file database.password_file names".into())
                }
                Some(_) => {}
            },
            DatabaseBackend::Sqlite if d.url.is_some() || d.password_file.is_some() || d.ca_file.is_some() => {
                p.push("database.url, password_file and ca_file are for database.backend = \"postgres\"".into())
            }
            DatabaseBackend::Sqlite => {}
        }
        if self.pipeline.interval_secs == 0 {
            p.push("pipeline.interval_secs must be positive".into());
        }
        match &self.http.public_url {
            // The scheme here; host and port are parsed by the web module when the server starts.
            Some(url) => {
                let scheme = url.split_once("://").map(|(s, rest)| (s, rest.trim_matches('/')));
                if !matches!(scheme, Some(("http" | "https", rest)) if !rest.is_empty()) {
                    p.push(format!(
                        "http.public_url {url:?} must be http(s)://host[:port]"
                    ));
                }
            }
            None if self.http.listen.ip().is_unspecified() => p.push(
                "http.public_url is required when http.listen is all addresses (requests must name the server)".into(),
            ),
            None => {}
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
        assert!(cfg.operations.metrics_listen.unwrap().ip().is_loopback());
    }

    #[test]
    fn metrics_can_be_turned_off_and_a_bad_address_is_named() {
        let mut cfg = Config::default();
        cfg.operations.metrics_listen = None;
        let text = cfg.to_toml();
        assert!(text.contains("metrics_listen = \"off\""), "{text}");
        assert_eq!(Config::parse(&text, "x").unwrap(), cfg);
        let bad = text.replace("\"off\"", "\"somewhere\"");
        let err = Config::parse(&bad, "x").unwrap_err().to_string();
        assert!(err.contains("neither an address"), "{err}");
    }

    #[test]
    fn a_public_url_is_checked_and_required_on_all_addresses() {
        let mut cfg = Config::default();
        assert!(cfg.problems().is_empty());
        cfg.http.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(cfg
            .problems()
            .iter()
            .any(|p| p.contains("public_url is required")));
        cfg.http.public_url = Some("ftp://nachtwacht.example".into());
        assert!(cfg.problems().iter().any(|p| p.contains("must be http(s)")));
        cfg.http.public_url = Some("https://nachtwacht.example.nl".into());
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
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
        let mut cfg = Config::default();
        cfg.ingest.threads = 0;
        assert!(
            cfg.problems().iter().any(|p| p.contains("threads")),
            "{:?}",
            cfg.problems()
        );
    }
}
