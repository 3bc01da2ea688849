//! The process's Prometheus metrics: one registry for the whole process, so that every stage
//! records what happens where it happens (an upload's outcome in ingest, a group commit in the
//! committer) without handing a registry down. Gauges of state (backlogs, lags, chain length,
//! disk) are read at scrape time by `ops::observe`.
//!
//! Names follow Prometheus conventions: a `nachtwacht_` prefix, units in the name (`_seconds`,
//! `_bytes`), counters ending in `_total`. Labels are closed sets (outcomes, kinds, reason
//! classes) or research project names: never a person, a station or a device.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label set of one label.
pub type Label = Vec<(&'static str, String)>;

/// One label `name` with `value`.
pub fn label(name: &'static str, value: impl Into<String>) -> Label {
    vec![(name, value.into())]
}

/// The outcomes an upload is answered with, in the order of [`Metrics::upload_outcomes`].
pub const UPLOAD_OUTCOMES: [&str; 4] = ["stored", "duplicate", "rejected", "busy"];

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    // Ingest.
    uploads: Family<Label, Counter>,
    /// The series of `uploads`, one per [`UPLOAD_OUTCOMES`], made once: counting an upload takes
    /// no lock and allocates nothing, and every outcome is exported from the start, at 0.
    pub upload_outcomes: [Counter; 4],
    pub upload_bytes: Counter,
    pub ack_latency: Histogram,
    pub station_connections: Gauge,
    /// Handshakes that verified a client certificate (no session resumed).
    pub tls_full_handshakes: Counter,
    /// Session tickets opened: handshakes that resumed a station's earlier session.
    pub tls_resumptions: Counter,
    pub receive_slot_wait: Histogram,
    pub group_commit_bundles: Histogram,
    pub group_commit_duration: Histogram,
    // Alerts and notifications.
    pub alerts_raised: Family<Label, Counter>,
    pub notification_failures: Counter,
    // Sign-in.
    pub login_failures: Counter,
    pub lockouts: Counter,
    // State, read at scrape time.
    pub spool_backlog_bundles: Gauge,
    pub spool_backlog_bytes: Gauge,
    pub decode_lag: Gauge<f64, AtomicU64>,
    pub pipeline_lag: Gauge<f64, AtomicU64>,
    pub quarantined: Family<Label, Gauge>,
    pub research_releases: Family<Label, Counter>,
    pub research_epsilon_spent: Family<Label, Gauge<f64, AtomicU64>>,
    pub audit_entries: Gauge,
    pub disk_free: Gauge,
    pub certificate_expiry: Family<Label, Gauge>,
    // The process.
    /// Panics reported by the process's panic hook ([`crate::base::panics`]).
    pub panics: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("nachtwacht");
        let m = Self {
            uploads: Family::default(),
            upload_outcomes: Default::default(),
            upload_bytes: Counter::default(),
            // 1 ms … ~16 s.
            ack_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            station_connections: Gauge::default(),
            tls_full_handshakes: Counter::default(),
            tls_resumptions: Counter::default(),
            receive_slot_wait: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            // 1 … 256 bundles.
            group_commit_bundles: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            group_commit_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            alerts_raised: Family::default(),
            notification_failures: Counter::default(),
            login_failures: Counter::default(),
            lockouts: Counter::default(),
            spool_backlog_bundles: Gauge::default(),
            spool_backlog_bytes: Gauge::default(),
            decode_lag: Gauge::default(),
            pipeline_lag: Gauge::default(),
            quarantined: Family::default(),
            research_releases: Family::default(),
            research_epsilon_spent: Family::default(),
            audit_entries: Gauge::default(),
            disk_free: Gauge::default(),
            certificate_expiry: Family::default(),
            panics: Counter::default(),
            registry: Registry::default(),
        };
        r.register(
            "uploads",
            "Upload requests answered, by outcome (stored, duplicate, rejected, busy)",
            m.uploads.clone(),
        );
        r.register(
            "upload_bytes",
            "Bundle bytes received and stored",
            m.upload_bytes.clone(),
        );
        r.register(
            "ack_latency_seconds",
            "Time from an upload stream's start to its acknowledgement",
            m.ack_latency.clone(),
        );
        r.register(
            "station_connections",
            "Open QUIC connections of stations",
            m.station_connections.clone(),
        );
        r.register(
            "tls_full_handshakes",
            "Station handshakes that verified a client certificate (no session resumed)",
            m.tls_full_handshakes.clone(),
        );
        r.register(
            "tls_resumptions",
            "Station handshakes that resumed an earlier session from its ticket",
            m.tls_resumptions.clone(),
        );
        r.register(
            "receive_slot_wait_seconds",
            "Time an upload waited for a receive slot before its body was read",
            m.receive_slot_wait.clone(),
        );
        r.register(
            "group_commit_bundles",
            "Bundles made durable by one group commit",
            m.group_commit_bundles.clone(),
        );
        r.register(
            "group_commit_duration_seconds",
            "Time of one group commit (writes, fsync, SQL commit)",
            m.group_commit_duration.clone(),
        );
        r.register(
            "panics",
            "Panics in any thread of the process, each also logged (contained ones included)",
            m.panics.clone(),
        );
        r.register(
            "alerts_raised",
            "Alerts raised by the pipelines, by kind",
            m.alerts_raised.clone(),
        );
        r.register(
            "notification_failures",
            "E-mail notifications whose sending failed (each attempt)",
            m.notification_failures.clone(),
        );
        r.register(
            "login_failures",
            "Failed sign-ins (wrong user, password or code; refused accounts)",
            m.login_failures.clone(),
        );
        r.register(
            "login_lockouts",
            "Accounts locked after too many failed sign-ins",
            m.lockouts.clone(),
        );
        r.register(
            "spool_backlog_bundles",
            "Bundles received and not yet decoded",
            m.spool_backlog_bundles.clone(),
        );
        r.register(
            "spool_backlog_bytes",
            "Bytes of the bundles received and not yet decoded",
            m.spool_backlog_bytes.clone(),
        );
        r.register(
            "decode_lag_seconds",
            "Age of the oldest bundle waiting to be decoded (0 when none waits)",
            m.decode_lag.clone(),
        );
        r.register(
            "pipeline_lag_seconds",
            "Age of the oldest dataset file the pipelines have not evaluated (0 when none)",
            m.pipeline_lag.clone(),
        );
        r.register(
            "quarantined_bundles",
            "Bundles in quarantine, by class of reason",
            m.quarantined.clone(),
        );
        r.register(
            "research_releases",
            "Differentially private answers released, by research project",
            m.research_releases.clone(),
        );
        r.register(
            "research_epsilon_spent",
            "Privacy budget ε spent, by research project",
            m.research_epsilon_spent.clone(),
        );
        r.register(
            "audit_entries",
            "Entries in the audit chain",
            m.audit_entries.clone(),
        );
        r.register(
            "disk_free_bytes",
            "Free bytes on the data directory's file system",
            m.disk_free.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "When a certificate of the server expires (Unix time), by certificate (ca, server)",
            m.certificate_expiry.clone(),
        );
        let upload_outcomes =
            UPLOAD_OUTCOMES.map(|o| m.uploads.get_or_create(&label("outcome", o)).clone());
        Self {
            registry: r,
            upload_outcomes,
            ..m
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_units_and_total() {
        let m = metrics();
        m.upload_outcomes[0].inc();
        m.upload_bytes.inc_by(10);
        m.ack_latency.observe(0.01);
        let text = m.encode();
        for name in [
            "nachtwacht_uploads_total{outcome=\"stored\"}",
            "nachtwacht_upload_bytes_total",
            "nachtwacht_ack_latency_seconds_bucket",
            "nachtwacht_disk_free_bytes",
            "nachtwacht_audit_entries",
        ] {
            assert!(text.contains(name), "{name} not in {text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
