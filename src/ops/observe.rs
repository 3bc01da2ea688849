//! The gauges of state, read when Prometheus scrapes: backlogs and lags from SQL, quarantine by
//! class of reason, ε spent by project, the audit chain's length, free disk and certificate
//! expiry. Events (uploads, commits, alerts raised, sign-in failures) are counted where they
//! happen (`base::metrics`).

use crate::base::db::OptionalExtension;

use crate::base::metrics::{label, metrics};
use crate::base::Context;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
}

/// What the pipelines and the decoder have still to do, as ages in ms at `now_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    pub spooled_bundles: i64,
    pub spooled_bytes: i64,
    /// Age of the oldest bundle waiting to be decoded (0 when none waits).
    pub decode_lag_ms: i64,
    /// Age of the oldest dataset file written after the pipelines' watermark (0 when none).
    pub pipeline_lag_ms: i64,
}

/// Reads the backlog from SQL.
pub fn backlog(conn: &crate::base::db::Connection, now_ms: i64) -> Result<Backlog, Error> {
    let (spooled_bundles, spooled_bytes, oldest): (i64, i64, Option<i64>) = conn.query_row(
        "SELECT count(*), COALESCE(sum(size), 0), min(received_at_ms) FROM bundles
          WHERE state = 'spooled'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let watermark: Option<i64> = conn
        .query_row(
            "SELECT files_until_ms FROM pipeline_watermarks WHERE name = 'evaluate'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let unevaluated: Option<i64> = conn.query_row(
        "SELECT min(written_at_ms) FROM dataset_files WHERE written_at_ms > ?1",
        [watermark.unwrap_or(i64::MIN)],
        |r| r.get(0),
    )?;
    let age = |t: Option<i64>| t.map_or(0, |t| (now_ms - t).max(0));
    Ok(Backlog {
        spooled_bundles,
        spooled_bytes,
        decode_lag_ms: age(oldest),
        pipeline_lag_ms: age(unevaluated),
    })
}

/// Sets every gauge of state from the database and the data directory, then returns the metrics
/// as text. A part that cannot be read keeps its last value and is logged.
pub fn scrape(ctx: &Context) -> String {
    if let Err(e) = refresh(ctx) {
        tracing::warn!(error = %e, "metrics: state not read");
    }
    refresh_files(ctx);
    metrics().encode()
}

fn refresh(ctx: &Context) -> Result<(), Error> {
    let m = metrics();
    // Every series of a closed set exists from the start, at 0: a rate over a series that
    // appears only at its first event misses that event.
    for kind in crate::alerts::AlertKind::ALL {
        let _ = m.alerts_raised.get_or_create(&label("kind", kind.as_str()));
    }
    let now = crate::base::time::now_ms();
    let conn = ctx.db.lock();
    let b = backlog(&conn, now)?;
    m.spool_backlog_bundles.set(b.spooled_bundles);
    m.spool_backlog_bytes.set(b.spooled_bytes);
    m.decode_lag.set(b.decode_lag_ms as f64 / 1000.0);
    m.pipeline_lag.set(b.pipeline_lag_ms as f64 / 1000.0);
    // Quarantine by class: every class present, so a class that empties drops to 0.
    let mut by_class: std::collections::BTreeMap<&str, i64> =
        crate::decode::quarantine::REASON_CLASSES
            .iter()
            .map(|c| (*c, 0))
            .collect();
    let mut stmt =
        conn.prepare("SELECT COALESCE(reason, '') FROM bundles WHERE state = 'quarantined'")?;
    for reason in stmt.query_map([], |r| r.get::<_, String>(0))? {
        *by_class
            .entry(crate::decode::quarantine::reason_class(&reason?))
            .or_default() += 1;
    }
    for (class, n) in by_class {
        m.quarantined
            .get_or_create(&label("reason_class", class))
            .set(n);
    }
    let mut stmt = conn.prepare("SELECT name, epsilon_spent FROM research_projects")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))? {
        let (project, spent) = row?;
        let _ = m
            .research_releases
            .get_or_create(&label("project", project.clone()));
        m.research_epsilon_spent
            .get_or_create(&label("project", project))
            .set(spent);
    }
    let entries: i64 = conn.query_row("SELECT COALESCE(max(seq), 0) FROM audit_log", [], |r| {
        r.get(0)
    })?;
    m.audit_entries.set(entries);
    Ok(())
}

/// Free disk and the certificates' expiry.
fn refresh_files(ctx: &Context) {
    let m = metrics();
    match crate::base::fsio::available_bytes(ctx.dir.root()) {
        Ok(free) => {
            m.disk_free.set(free.min(i64::MAX as u64) as i64);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: free disk not read"),
    }
    for (name, path) in [("ca", ctx.dir.ca_cert()), ("server", ctx.dir.server_cert())] {
        match crate::trust::pki::validity_of(&path) {
            Ok((_, not_after_ms)) => {
                m.certificate_expiry
                    .get_or_create(&label("certificate", name))
                    .set(not_after_ms / 1000);
            }
            Err(e) => {
                tracing::warn!(error = %e, certificate = name, "metrics: certificate not read")
            }
        }
    }
}
