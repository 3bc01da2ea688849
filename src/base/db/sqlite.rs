//! SQLite: the embedded default. One file, WAL mode, `synchronous = FULL` (a committed row survives
//! power loss), migrations recorded in `PRAGMA user_version`.

use std::path::Path;

use super::{Error, Result};

/// The schema, one migration per step, applied in order inside one transaction each.
/// PostgreSQL starts from `postgres_schema.sql` at the version of the last of these; a migration
/// added here is added to `postgres.rs`' `MIGRATIONS` too.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('administrator','officer','manager','researcher','auditor')),
    password_hash TEXT NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 1,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE stations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    cert_sha256 TEXT NOT NULL UNIQUE,
    enrolled_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE TABLE programmes (
    name TEXT PRIMARY KEY,
    signals TEXT NOT NULL
);
CREATE TABLE persons (
    id INTEGER PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    programme TEXT NOT NULL REFERENCES programmes(name),
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE devices (
    serial TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('ankle-monitor','wristband'))
);
CREATE TABLE assignments (
    id INTEGER PRIMARY KEY,
    device_serial TEXT NOT NULL REFERENCES devices(serial),
    person_id INTEGER NOT NULL REFERENCES persons(id),
    valid_from_ms INTEGER NOT NULL,
    valid_to_ms INTEGER
);
CREATE TABLE bundles (
    bundle_id TEXT PRIMARY KEY,
    station_id INTEGER NOT NULL REFERENCES stations(id),
    sequence INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('spooled','processed','quarantined')),
    reason TEXT,
    rows_stored INTEGER,
    rows_discarded INTEGER,
    processed_at_ms INTEGER
);
CREATE INDEX bundles_state ON bundles(state);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES persons(id),
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    peak_tac_g_dl REAL,
    rule TEXT NOT NULL,
    evidence_bundles TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'new',
    created_at_ms INTEGER NOT NULL,
    UNIQUE (person_id, kind, start_ms)
);
CREATE TABLE research_projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    epsilon_budget REAL NOT NULL CHECK (epsilon_budget >= 0),
    epsilon_spent REAL NOT NULL DEFAULT 0,
    max_epsilon_per_query REAL NOT NULL CHECK (max_epsilon_per_query > 0),
    CHECK (epsilon_spent <= epsilon_budget + 1e-9)
);
CREATE TABLE research_tokens (
    token_sha256 TEXT PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES research_projects(id),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
"#,
    r#"
-- Issue 3: revocation lists, bundle signatures, heartbeats, evidence retention.
ALTER TABLE stations ADD COLUMN cert_serial TEXT;
ALTER TABLE stations ADD COLUMN signing_public_key TEXT;
-- The person whose home the station is in (communication alerts name them).
ALTER TABLE stations ADD COLUMN person_id INTEGER REFERENCES persons(id);
ALTER TABLE stations ADD COLUMN last_contact_ms INTEGER;
CREATE TABLE station_heartbeats (
    id INTEGER PRIMARY KEY,
    station_id INTEGER NOT NULL REFERENCES stations(id),
    received_at_ms INTEGER NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    clock_offset_ms INTEGER,
    spool_pending_bundles INTEGER NOT NULL,
    spool_pending_bytes INTEGER NOT NULL,
    spool_full INTEGER NOT NULL,
    devices TEXT NOT NULL
);
CREATE INDEX station_heartbeats_station ON station_heartbeats(station_id, received_at_ms);
-- Every CRL the server signed; the highest number is current.
CREATE TABLE crls (
    number INTEGER PRIMARY KEY,
    signed_at_ms INTEGER NOT NULL,
    revoked_count INTEGER NOT NULL
);
-- Public key that verified the bundle's signature, where its ciphertext is kept as evidence,
-- and when that copy was deleted at the end of its retention.
ALTER TABLE bundles ADD COLUMN signed_by TEXT;
ALTER TABLE bundles ADD COLUMN evidence_pruned_at_ms INTEGER;
"#,
    r#"
-- Issue 4: purpose binding for the full v1 signal set, device pairing, validation counts,
-- coarse research attributes, the dataset catalog and the server's age keys.
UPDATE programmes SET signals = 'ankle,battery,event' WHERE name = 'alcohol-ban';
UPDATE programmes SET signals = 'eda,bvp,hr,ibi,temp,acc,tag,battery,event'
 WHERE name = 'aggression-training';
UPDATE programmes SET signals = 'ankle,eda,bvp,hr,ibi,temp,acc,tag,battery,event'
 WHERE name = 'tbs-leave';
-- Which station a device is paired with, over time. A bundle from a device that is not paired
-- with the uploading station when it arrives is quarantined.
CREATE TABLE device_pairings (
    id INTEGER PRIMARY KEY,
    device_serial TEXT NOT NULL REFERENCES devices(serial),
    station_id INTEGER NOT NULL REFERENCES stations(id),
    valid_from_ms INTEGER NOT NULL,
    valid_to_ms INTEGER
);
CREATE INDEX device_pairings_device ON device_pairings(device_serial, valid_from_ms);
-- Public, coarse attributes for research: a region and a birth year (released as an age band).
ALTER TABLE persons ADD COLUMN region TEXT;
ALTER TABLE persons ADD COLUMN birth_year INTEGER;
-- Samples stored with a validation flag, and per-flag counts as JSON.
ALTER TABLE bundles ADD COLUMN rows_flagged INTEGER;
ALTER TABLE bundles ADD COLUMN flags TEXT;
-- How often an operator sent a quarantined bundle back through decoding.
ALTER TABLE bundles ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
-- Every Parquet file of the raw datasets. Readers list files here, not on disk.
CREATE TABLE dataset_files (
    path TEXT PRIMARY KEY,
    signal TEXT NOT NULL,
    day TEXT NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    -- 'bundle' (one bundle's rows) or 'compacted' (many bundles of one signal and day).
    kind TEXT NOT NULL CHECK (kind IN ('bundle','compacted')),
    -- Comma-separated bundle ids whose rows the file holds.
    bundles TEXT NOT NULL,
    written_at_ms INTEGER NOT NULL
);
CREATE INDEX dataset_files_signal_day ON dataset_files(signal, day);
-- The server's age recipients, newest last. Identities stay in keys/age-identities.txt.
CREATE TABLE age_keys (
    id INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);
"#,
    r#"
-- Issue 5: incremental evaluation. The newest catalogued dataset file (written_at_ms) an
-- evaluation has seen: the next one evaluates only the days of files written since.
CREATE TABLE pipeline_watermarks (
    name TEXT PRIMARY KEY,
    files_until_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
"#,
    r#"
-- Issue 6: (ε, δ) accounting. Besides Σ ε (basic composition) a project keeps Σ ρ (zCDP, each
-- ε-DP release is ε²/2-zCDP) and its δ. epsilon_spent becomes the project's (ε, δ) loss: the
-- smaller of Σ ε and the zCDP bound at δ. Existing ledgers get ρ = (Σ ε)²/2, an upper bound.
ALTER TABLE research_projects ADD COLUMN delta REAL NOT NULL DEFAULT 1e-6
    CHECK (delta > 0 AND delta <= 1e-3);
ALTER TABLE research_projects ADD COLUMN epsilon_sum REAL NOT NULL DEFAULT 0;
ALTER TABLE research_projects ADD COLUMN rho_spent REAL NOT NULL DEFAULT 0;
UPDATE research_projects
   SET epsilon_sum = epsilon_spent, rho_spent = epsilon_spent * epsilon_spent / 2.0;
"#,
    r#"
-- Issue 7: accounts with TOTP and lockout, web sessions, caseloads and the alert workflow.
ALTER TABLE accounts ADD COLUMN totp_secret TEXT;
-- The last TOTP time step accepted: a code is never accepted twice.
ALTER TABLE accounts ADD COLUMN totp_last_step INTEGER;
ALTER TABLE accounts ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN locked_until_ms INTEGER;
ALTER TABLE accounts ADD COLUMN disabled_at_ms INTEGER;
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    csrf_token TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    ended_at_ms INTEGER
);
-- An officer's caseload: persons assigned for a period by an administrator.
CREATE TABLE caseloads (
    id INTEGER PRIMARY KEY,
    officer_id INTEGER NOT NULL REFERENCES accounts(id),
    person_id INTEGER NOT NULL REFERENCES persons(id),
    valid_from_ms INTEGER NOT NULL,
    valid_to_ms INTEGER,
    assigned_by TEXT NOT NULL,
    CHECK (valid_to_ms IS NULL OR valid_to_ms > valid_from_ms)
);
CREATE INDEX caseloads_officer ON caseloads(officer_id, person_id);
-- Every workflow step of an alert, with its mandatory comment.
CREATE TABLE alert_events (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    comment TEXT NOT NULL CHECK (length(trim(comment)) > 0)
);
CREATE INDEX alert_events_alert ON alert_events(alert_id);
"#,
    r#"
-- Issue 6 point 8: management figures, released once per month and figure through DP and kept,
-- so looking again spends no budget.
CREATE TABLE management_releases (
    month TEXT NOT NULL,
    figure TEXT NOT NULL,
    answer TEXT NOT NULL,
    released_at_ms INTEGER NOT NULL,
    released_by TEXT NOT NULL,
    PRIMARY KEY (month, figure)
);
"#,
    r#"
-- Issue 18 point 1: a bundle whose processing fails unexpectedly (an error or a panic, not a
-- rejection) is tried again later, with back-off, and quarantined after a bounded number of
-- attempts, so it never blocks the bundles behind it.
ALTER TABLE bundles ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bundles ADD COLUMN last_error TEXT;
ALTER TABLE bundles ADD COLUMN next_attempt_ms INTEGER;
-- Issue 18 point 7: files compaction took out of the catalog. A reader may still hold them (it
-- listed the catalog before the swap); they are deleted only when no reader holds the dataset
-- read lock (`dataset::ReadGuard`).
CREATE TABLE dataset_retired (
    path TEXT PRIMARY KEY,
    retired_at_ms INTEGER NOT NULL
);
-- Issue 18 point 12: an alert's latest seal is looked up by action and object.
CREATE INDEX audit_log_action_object ON audit_log(action, object, seq);
-- Issue 18 point 14: every release of every project, charged to one ledger per calendar year:
-- the privacy loss any one person suffers across all projects (see research::charge).
CREATE TABLE privacy_loss_periods (
    period TEXT PRIMARY KEY,
    epsilon_sum REAL NOT NULL,
    rho REAL NOT NULL,
    epsilon_spent REAL NOT NULL
);
"#,
    r#"
-- Issue 19 point 2-3: an alcohol alert raised before its episode's end was known is provisional;
-- when new readings change an alert (classification, extent, peak, provisional to final) it is
-- revised in place, and every revision is kept with its reason. An alert the readings no longer
-- support is withdrawn, never deleted: an officer may already have acted on it.
ALTER TABLE alerts ADD COLUMN provisional INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN withdrawn_at_ms INTEGER;
CREATE TABLE alert_revisions (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    revision INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    UNIQUE (alert_id, revision)
);
"#,
    r#"
-- Issue 20 point 6: the text of each operator rule file in force, to tell a change (audited with
-- old and new values) from a reload of the same rules.
CREATE TABLE rules_in_force (
    file TEXT PRIMARY KEY,
    content TEXT NOT NULL,
    since_ms INTEGER NOT NULL
);
"#,
    r#"
-- Issue 21: the data lifecycle.
-- A person is one identity (and one pair of pseudonyms) across supervision episodes; each episode
-- has its own case reference and programme. persons.reference and persons.programme are those of
-- the latest episode.
CREATE TABLE episodes (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES persons(id),
    reference TEXT NOT NULL UNIQUE,
    programme TEXT NOT NULL REFERENCES programmes(name),
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    ended_by TEXT
);
CREATE INDEX episodes_person ON episodes(person_id);
INSERT INTO episodes (person_id, reference, programme, started_at_ms)
    SELECT id, reference, programme, created_at_ms FROM persons;
-- When the person's latest supervision ended (NULL while one runs); when erasure of their data
-- began (from then on nothing is derived for them again); when their identity was erased.
ALTER TABLE persons ADD COLUMN closed_at_ms INTEGER;
ALTER TABLE persons ADD COLUMN erasure_started_at_ms INTEGER;
ALTER TABLE persons ADD COLUMN erased_at_ms INTEGER;
-- Whose readings a bundle carried (processed, or quarantined because the supervision had ended).
ALTER TABLE bundles ADD COLUMN person_id INTEGER;
CREATE INDEX bundles_person ON bundles(person_id);
-- Which data classes of a person are erased, and when.
CREATE TABLE person_erasures (
    person_id INTEGER NOT NULL REFERENCES persons(id),
    class TEXT NOT NULL,
    erased_at_ms INTEGER NOT NULL,
    PRIMARY KEY (person_id, class)
);
-- Legal holds: held data is not erased until the hold is released.
CREATE TABLE legal_holds (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES persons(id),
    alert_id INTEGER REFERENCES alerts(id),
    reason TEXT NOT NULL CHECK (length(trim(reason)) > 0),
    placed_by TEXT NOT NULL,
    placed_at_ms INTEGER NOT NULL,
    released_by TEXT,
    released_at_ms INTEGER,
    release_reason TEXT
);
CREATE INDEX legal_holds_person ON legal_holds(person_id);
-- Files nachtwacht wrote under exports/ (case archives), deleted at the end of their retention.
CREATE TABLE export_files (
    path TEXT PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES persons(id),
    sha256 TEXT NOT NULL,
    written_at_ms INTEGER NOT NULL
);
-- Erasable audit entries: the hash covers salted digests of object and detail (see trust::audit).
ALTER TABLE audit_log ADD COLUMN salt TEXT;
ALTER TABLE audit_log ADD COLUMN object_digest TEXT;
ALTER TABLE audit_log ADD COLUMN detail_digest TEXT;
ALTER TABLE audit_log ADD COLUMN erased_by INTEGER;
-- The start of the chain removed at the end of the audit log's retention: its last entry.
CREATE TABLE audit_pruned (
    through_seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    pruned_at_ms INTEGER NOT NULL
);
"#,
    r#"
-- Issue 22: accountability.
-- Staff screening (e.g. a VOG): an account whose latest screening has expired, or that has none,
-- opens no personal data until an administrator records a new one.
CREATE TABLE staff_screenings (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL CHECK (kind IN ('vog','security-clearance')),
    screened_on_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    CHECK (expires_at_ms > screened_on_ms)
);
CREATE INDEX staff_screenings_account ON staff_screenings(account_id, recorded_at_ms);
-- An auditor's periodic review of one account's accesses to personal data over a period.
CREATE TABLE access_reviews (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    period_from_ms INTEGER NOT NULL,
    period_to_ms INTEGER NOT NULL,
    accesses_reviewed INTEGER NOT NULL,
    findings TEXT NOT NULL CHECK (length(trim(findings)) > 0),
    reviewed_by TEXT NOT NULL,
    reviewed_at_ms INTEGER NOT NULL
);
CREATE INDEX access_reviews_account ON access_reviews(account_id, reviewed_at_ms);
-- The chain of custody: the audit entry of the group commit that stored a bundle, and of the
-- decode batch that processed it (each entry commits to its batch's bundle ids and digests).
ALTER TABLE bundles ADD COLUMN stored_audit_seq INTEGER;
ALTER TABLE bundles ADD COLUMN decoded_audit_seq INTEGER;
-- Research tokens name the researcher who holds them (their screening is checked on each use).
ALTER TABLE research_tokens ADD COLUMN account_id INTEGER REFERENCES accounts(id);
"#,
    r#"
-- Issue 23: e-mail notifications of new alerts, and escalation of unopened critical ones.
-- Where a member of staff is told (their work address), and the manager an officer reports to.
ALTER TABLE accounts ADD COLUMN email TEXT;
ALTER TABLE accounts ADD COLUMN manager_id INTEGER REFERENCES accounts(id);
-- The alert kinds an officer wants an e-mail about, for the persons on their caseload.
CREATE TABLE notification_kinds (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL,
    PRIMARY KEY (account_id, kind)
);
-- When an officer first opened the alert's page (a critical alert left unopened is escalated).
ALTER TABLE alerts ADD COLUMN first_opened_at_ms INTEGER;
-- The outbox: one row per message, claimed with a lease so that several processes on one
-- database send each message once; attempts and the last error are kept for the operator.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    reason TEXT NOT NULL CHECK (reason IN ('new-alert','escalation')),
    created_at_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    lease_until_ms INTEGER,
    sent_at_ms INTEGER,
    gave_up_at_ms INTEGER,
    last_error TEXT,
    UNIQUE (account_id, alert_id, reason)
);
CREATE INDEX notifications_due ON notifications(sent_at_ms, gave_up_at_ms, next_attempt_at_ms);
-- The newest alert the notifier has looked at, and the newest when notifications began: older
-- alerts are neither announced nor escalated.
CREATE TABLE notifier_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_alert_id INTEGER NOT NULL,
    first_alert_id INTEGER NOT NULL
);
INSERT INTO notifier_state (id, last_alert_id, first_alert_id)
    SELECT 1, coalesce(max(id), 0), coalesce(max(id), 0) FROM alerts;
"#,
    r#"
-- Issue 24: a station's next certificate, issued on renewal and accepted beside the current one
-- until the station first uses it (then it becomes the current one).
ALTER TABLE stations ADD COLUMN pending_cert_sha256 TEXT;
ALTER TABLE stations ADD COLUMN pending_cert_serial TEXT;
CREATE UNIQUE INDEX stations_pending_cert ON stations(pending_cert_sha256);
"#,
    r#"
-- Issue 25: several processes on one database. Work one process does at a time (decoding, the
-- pipelines) is leased: held until until_ms and renewed while working; token grows with every
-- new holder, and work is committed only while the token is still the holder's (fencing).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    until_ms INTEGER NOT NULL
);
"#,
    r#"
-- Issue 28: the group commit writes a batch's ciphertexts one after the other into one segment
-- file; a spooled bundle's bytes are [segment_offset, segment_offset + size) of it. NULL: the
-- bundle is an object of its own (object storage, or sent back from quarantine).
ALTER TABLE bundles ADD COLUMN segment TEXT;
ALTER TABLE bundles ADD COLUMN segment_offset INTEGER;
CREATE INDEX bundles_segment ON bundles(segment) WHERE segment IS NOT NULL;
"#,
];

/// Opens (creating if need be) and migrates the database file.
pub(super) fn open(path: &Path) -> Result<rusqlite::Connection> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows are overwritten with zeros, not left in free pages: data past its
    // retention must be gone from the file, not only from the tables (see `lifecycle`).
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut rusqlite::Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(Error::TooNew {
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        if i == 0 {
            // Migration 3 widened the lists to the signals bundle format v1 gained; it updates the
            // rows seeded before it to these values.
            for programme in crate::base::programme::Programme::ALL {
                tx.execute(
                    "INSERT INTO programmes (name, signals) VALUES (?1, ?2)",
                    (programme.as_str(), programme.signals()),
                )?;
            }
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// A parameter as rusqlite binds it (no copy of text or blobs).
pub(super) struct Bind<'a>(pub super::ValueRef<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use super::ValueRef as V;
        use rusqlite::types::ValueRef as R;
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match self.0 {
            V::Null => R::Null,
            V::Integer(v) => R::Integer(v),
            V::Real(v) => R::Real(v),
            V::Text(s) => R::Text(s.as_bytes()),
            V::Blob(b) => R::Blob(b),
        }))
    }
}

/// A column as the store modules read it.
pub(super) fn value(v: rusqlite::types::ValueRef<'_>) -> Result<super::ValueRef<'_>> {
    use super::ValueRef as V;
    use rusqlite::types::ValueRef as R;
    Ok(match v {
        R::Null => V::Null,
        R::Integer(v) => V::Integer(v),
        R::Real(v) => V::Real(v),
        R::Text(t) => V::Text(
            std::str::from_utf8(t)
                .map_err(|e| Error::Conversion(format!("text is not UTF-8: {e}")))?,
        ),
        R::Blob(b) => V::Blob(b),
    })
}
