//! The data inventory for the DPIA: every table, dataset and file class nachtwacht keeps, with
//! its columns, which of them are personal data and which special categories (health data,
//! art. 9 AVG; criminal-law data, art. 10 AVG), the purpose, the legal basis, the retention class
//! and who can read it through which path.
//!
//! [`REGISTRY`] is the one description. What it describes is taken from the code itself: the
//! tables and columns from the database the migrations build, the raw datasets' columns from
//! `dataset::stored_schema` (the schema the decoder writes), the research datasets' columns from
//! the research module's public column lists. A table, column or dataset without an entry, or an
//! entry naming something that no longer exists, fails the tests (`tests` below and
//! `tests/ingest_to_research.rs`), and `docs/dpia-inventory.md` is this module's Markdown output,
//! checked to be current by `tests/inventory.rs`.

use nachtwacht_wire::Signal;

use crate::lifecycle::policy::DataClass;

/// What a column holds, for the DPIA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Nothing about a person.
    NotPersonal,
    /// About an identifiable person (a supervised person or a member of staff).
    Personal,
    /// About a person, under a keyed pseudonym: personal data, but not linkable without the keys.
    Pseudonymised,
    /// Health data (art. 9 AVG): physiological readings and what is derived from them.
    Health,
    /// Criminal-law data (art. 10 AVG): the supervision, its conditions and its violations.
    CriminalLaw,
}

impl Category {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotPersonal => "not personal",
            Self::Personal => "personal",
            Self::Pseudonymised => "pseudonymised",
            Self::Health => "special: health",
            Self::CriminalLaw => "special: criminal-law",
        }
    }

    pub fn is_personal(self) -> bool {
        self != Self::NotPersonal
    }
}

/// How long an item is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// A class of `retention.toml`.
    Class(DataClass),
    /// Not personal, or kept as long as what it describes (said how).
    AsLongAs(&'static str),
}

/// What kind of store an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Table,
    Dataset,
    Files,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::Dataset => "dataset",
            Self::Files => "files",
        }
    }
}

/// One column: its name, category and meaning.
pub type Column = (&'static str, Category, &'static str);

/// One table, dataset or file class.
pub struct Item {
    pub name: &'static str,
    pub kind: Kind,
    pub purpose: &'static str,
    pub legal_basis: &'static str,
    pub retention: Retention,
    /// Who reads it, through which path.
    pub readers: &'static [&'static str],
    /// For tables: every column. Datasets take theirs from the code ([`dataset_columns`]).
    pub columns: &'static [Column],
}

use Category::{
    CriminalLaw as Crim, Health, NotPersonal as No, Personal as Pers, Pseudonymised as Pseud,
};

const SUPERVISION: &str = "Sr art. 14c/38v (bijzondere voorwaarden en toezicht door de reclassering); AVG art. 6(1)(e); strafrechtelijke gegevens AVG art. 10 met UAVG art. 32–33; gezondheidsgegevens AVG art. 9(2)(g) met UAVG art. 30";
const STAFF: &str =
    "AVG art. 6(1)(c)/(e): beveiliging en verantwoording van de verwerking (AVG art. 32, BIO)";
const ACCOUNTABILITY: &str = "AVG art. 5(2) en 32: aantonen wie wat verwerkte (BIO 12.4)";
const RESEARCH: &str = "AVG art. 89 met UAVG art. 24 (wetenschappelijk onderzoek, WODC); alleen differentieel private aggregaten verlaten het systeem";
const OPERATIONS: &str = "geen persoonsgegevens (technische werking)";

const OFFICER: &str =
    "officer: own caseload only, web /alerts, /alerts/{id}, report, dossier (audited)";
const OPERATOR: &str =
    "operator: command line on the server (person export, alert dossier, retention)";
const ADMIN: &str = "administrator: web /admin (audited as admin.view)";
const AUDITOR: &str = "auditor: web /audit (audited as audit.view / audit.export)";
const SUBJECT: &str = "data subject: subject access export (person export)";
const SYSTEM: &str = "server processes only (ingest, decode, evaluate)";
const RESEARCHER: &str =
    "researcher: DP aggregates only, POST /api/v1/research/query (token, audited)";
const MANAGER: &str = "manager: DP monthly figures only, web /management";

/// Every table, dataset and file class.
pub const REGISTRY: &[Item] = &[
    Item { name: "persons", kind: Kind::Table, purpose: "the supervised person: one identity across episodes, its pseudonyms derived from the id", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::RawReadings), readers: &[OFFICER, ADMIN, OPERATOR, SUBJECT], columns: &[
        ("id", Pseud, "internal number; pseudonyms are keyed hashes of it"),
        ("reference", Crim, "case reference of the latest supervision episode"),
        ("programme", Crim, "supervision programme (alcohol ban, aggression training, forensic leave)"),
        ("created_at_ms", Pers, "enrolment time"),
        ("region", Pers, "coarse region, a public research attribute"),
        ("birth_year", Pers, "birth year, released only as an age band"),
        ("closed_at_ms", Crim, "end of the latest supervision"),
        ("erasure_started_at_ms", Pers, "start of erasure (nothing derived after it)"),
        ("erased_at_ms", No, "time the identity was erased (the row keeps only its number)"),
    ]},
    Item { name: "episodes", kind: Kind::Table, purpose: "supervision episodes of a person (case reference, programme, period)", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::RawReadings), readers: &[ADMIN, OPERATOR, SUBJECT], columns: &[
        ("id", No, "row number"), ("person_id", Pers, "the person"), ("reference", Crim, "case reference"),
        ("programme", Crim, "programme of this episode"), ("started_at_ms", Crim, "start of supervision"),
        ("ended_at_ms", Crim, "end of supervision"), ("ended_by", Pers, "staff member who ended it"),
    ]},
    Item { name: "programmes", kind: Kind::Table, purpose: "which signals each programme may collect (purpose binding)", legal_basis: OPERATIONS, retention: Retention::AsLongAs("fixed reference data"), readers: &[SYSTEM], columns: &[
        ("name", No, "programme"), ("signals", No, "signals the programme may collect"),
    ]},
    Item { name: "devices", kind: Kind::Table, purpose: "wearables by serial and kind", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::RawReadings), readers: &[ADMIN, OPERATOR, SUBJECT], columns: &[
        ("serial", Pers, "device serial (links to the wearer through assignments)"), ("kind", No, "ankle monitor or wristband"),
    ]},
    Item { name: "assignments", kind: Kind::Table, purpose: "which person wore which device when", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::RawReadings), readers: &[ADMIN, OPERATOR, SUBJECT], columns: &[
        ("id", No, "row number"), ("device_serial", Pers, "device"), ("person_id", Pers, "wearer"),
        ("valid_from_ms", Crim, "worn from"), ("valid_to_ms", Crim, "returned at"),
    ]},
    Item { name: "stations", kind: Kind::Table, purpose: "base stations in persons' homes: certificate, signing key, contact", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::RawReadings), readers: &[OFFICER, ADMIN, OPERATOR, SUBJECT], columns: &[
        ("id", No, "row number"), ("name", Pers, "station name (in the person's home)"), ("cert_sha256", No, "client certificate fingerprint"),
        ("enrolled_at_ms", No, "enrolment"), ("revoked_at_ms", No, "revocation"), ("cert_serial", No, "certificate serial (CRL)"),
        ("pending_cert_sha256", No, "renewed certificate's fingerprint, until first used"), ("pending_cert_serial", No, "renewed certificate's serial (CRL)"),
        ("signing_public_key", No, "Ed25519 key verifying its bundles"), ("person_id", Pers, "whose home it is in"),
        ("last_contact_ms", Crim, "last upload or heartbeat (communication alerts)"),
    ]},
    Item { name: "device_pairings", kind: Kind::Table, purpose: "which station uploaded which device when (chain of custody)", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::RawReadings), readers: &[OPERATOR, SUBJECT], columns: &[
        ("id", No, "row number"), ("device_serial", Pers, "device"), ("station_id", Pers, "station"),
        ("valid_from_ms", No, "from"), ("valid_to_ms", No, "until"),
    ]},
    Item { name: "station_heartbeats", kind: Kind::Table, purpose: "station health (spool, clock, devices seen) for communication alerts", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::RawReadings), readers: &[OFFICER, SYSTEM], columns: &[
        ("id", No, "row number"), ("station_id", Pers, "station"), ("received_at_ms", Crim, "when heard from"),
        ("sent_at_ms", No, "station clock"), ("clock_offset_ms", No, "clock offset"), ("spool_pending_bundles", No, "backlog"),
        ("spool_pending_bytes", No, "backlog bytes"), ("spool_full", No, "spool full"), ("devices", Pers, "device serials seen"),
    ]},
    Item { name: "bundles", kind: Kind::Table, purpose: "registry of received ciphertexts: state, digest, custody", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::Evidence), readers: &[OPERATOR, SYSTEM], columns: &[
        ("bundle_id", No, "content-derived id"), ("station_id", Pers, "uploading station"), ("sequence", No, "station's sequence"),
        ("size", No, "bytes"), ("sha256", No, "ciphertext digest"), ("received_at_ms", No, "receipt"), ("state", No, "spooled, processed, quarantined"),
        ("reason", Pers, "quarantine reason (may name a device)"), ("rows_stored", No, "rows"), ("rows_discarded", No, "rows outside the programme"),
        ("processed_at_ms", No, "decoded at"), ("signed_by", No, "station key that verified it"), ("evidence_pruned_at_ms", No, "evidence copy deleted at"),
        ("rows_flagged", No, "rows with quality flags"), ("flags", No, "flag counts"), ("retries", No, "operator retries"),
        ("attempts", No, "failed attempts"), ("last_error", No, "last failure"), ("next_attempt_ms", No, "back-off"),
        ("person_id", Pers, "whose readings it carried"), ("stored_audit_seq", No, "custody entry: stored"), ("decoded_audit_seq", No, "custody entry: decoded"),
        ("segment", No, "spool segment holding the ciphertext while it waits"), ("segment_offset", No, "where in the segment it starts"),
    ]},
    Item { name: "dataset_files", kind: Kind::Table, purpose: "catalog of the raw Parquet files", legal_basis: OPERATIONS, retention: Retention::AsLongAs("the files it lists"), readers: &[SYSTEM], columns: &[
        ("path", No, "file"), ("signal", No, "signal"), ("day", No, "UTC day"), ("rows", No, "rows"), ("bytes", No, "size"),
        ("kind", No, "bundle or compacted"), ("bundles", No, "bundle ids in the file"), ("written_at_ms", No, "written"),
    ]},
    Item { name: "dataset_retired", kind: Kind::Table, purpose: "files out of the catalog awaiting deletion", legal_basis: OPERATIONS, retention: Retention::AsLongAs("until no reader holds them"), readers: &[SYSTEM], columns: &[
        ("path", No, "file"), ("retired_at_ms", No, "retired"),
    ]},
    Item { name: "pipeline_watermarks", kind: Kind::Table, purpose: "how far evaluation has read", legal_basis: OPERATIONS, retention: Retention::AsLongAs("always"), readers: &[SYSTEM], columns: &[
        ("name", No, "pipeline"), ("files_until_ms", No, "watermark"), ("updated_at_ms", No, "updated"),
    ]},
    Item { name: "leases", kind: Kind::Table, purpose: "which process decodes and runs the pipelines now", legal_basis: OPERATIONS, retention: Retention::AsLongAs("always"), readers: &[SYSTEM], columns: &[
        ("name", No, "kind of work"), ("holder", No, "host, process id and a random part"), ("token", No, "fencing token"), ("until_ms", No, "held until"),
    ]},
    Item { name: "alerts", kind: Kind::Table, purpose: "alcohol, tamper and communication alerts for the officer", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::Alerts), readers: &[OFFICER, OPERATOR, SUBJECT], columns: &[
        ("id", No, "alert number"), ("person_id", Pers, "the person"), ("kind", Crim, "alert kind (a possible violation)"), ("severity", Crim, "severity"),
        ("start_ms", Crim, "event start"), ("end_ms", Crim, "event end"), ("peak_tac_g_dl", Health, "peak transdermal alcohol"),
        ("rule", Crim, "rule values that fired"), ("evidence_bundles", No, "bundles carrying the evidence"), ("status", Crim, "workflow status"),
        ("created_at_ms", No, "raised"), ("provisional", No, "episode not yet ended"), ("revision", No, "revisions"), ("withdrawn_at_ms", Crim, "withdrawn"),
        ("first_opened_at_ms", No, "first opened by an officer"),
    ]},
    Item { name: "alert_events", kind: Kind::Table, purpose: "officers' workflow steps with their comments", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::Alerts), readers: &[OFFICER, OPERATOR, SUBJECT], columns: &[
        ("id", No, "row number"), ("alert_id", Pers, "alert"), ("at_ms", No, "when"), ("actor", Pers, "officer"),
        ("from_status", Crim, "before"), ("to_status", Crim, "after"), ("comment", Crim, "officer's comment"),
    ]},
    Item { name: "alert_revisions", kind: Kind::Table, purpose: "how new readings revised an alert", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::Alerts), readers: &[OFFICER, OPERATOR, SUBJECT], columns: &[
        ("id", No, "row number"), ("alert_id", Pers, "alert"), ("revision", No, "number"), ("at_ms", No, "when"),
        ("reason", Crim, "why"), ("before", Crim, "alert before"), ("after", Crim, "alert after"),
    ]},
    Item { name: "legal_holds", kind: Kind::Table, purpose: "data kept past retention for proceedings", legal_basis: SUPERVISION, retention: Retention::AsLongAs("until released, then with the held data"), readers: &[OFFICER, ADMIN, OPERATOR], columns: &[
        ("id", No, "hold"), ("person_id", Pers, "person"), ("alert_id", Pers, "alert"), ("reason", Crim, "proceedings"),
        ("placed_by", Pers, "staff"), ("placed_at_ms", No, "when"), ("released_by", Pers, "staff"), ("released_at_ms", No, "when"), ("release_reason", Crim, "why"),
    ]},
    Item { name: "person_erasures", kind: Kind::Table, purpose: "which data classes of a person are erased", legal_basis: ACCOUNTABILITY, retention: Retention::AsLongAs("always (names no identifier)"), readers: &[SYSTEM], columns: &[
        ("person_id", Pseud, "person number"), ("class", No, "data class"), ("erased_at_ms", No, "when"),
    ]},
    Item { name: "export_files", kind: Kind::Table, purpose: "case archives written for handover", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::Exports), readers: &[OPERATOR], columns: &[
        ("path", Pers, "archive file"), ("person_id", Pers, "person"), ("sha256", No, "digest"), ("written_at_ms", No, "written"),
    ]},
    Item { name: "accounts", kind: Kind::Table, purpose: "staff accounts: role, credentials, lockout", legal_basis: STAFF, retention: Retention::AsLongAs("while the account exists (disabled accounts kept for the audit trail)"), readers: &[ADMIN, AUDITOR], columns: &[
        ("id", No, "account number"), ("username", Pers, "staff member"), ("role", Pers, "role"), ("password_hash", Pers, "Argon2id hash (credential)"),
        ("must_change_password", No, "first sign-in pending"), ("created_at_ms", No, "created"), ("totp_secret", Pers, "TOTP secret (credential)"),
        ("totp_last_step", No, "replay guard"), ("failed_logins", Pers, "failed sign-ins"), ("locked_until_ms", Pers, "lockout"), ("disabled_at_ms", Pers, "disabled"),
        ("email", Pers, "work address for notifications"), ("manager_id", Pers, "the officer's manager (escalations)"),
    ]},
    Item { name: "notification_kinds", kind: Kind::Table, purpose: "alert kinds an officer is e-mailed about", legal_basis: STAFF, retention: Retention::AsLongAs("while the account exists"), readers: &[SYSTEM, ADMIN], columns: &[
        ("account_id", Pers, "officer"), ("kind", No, "alert kind"),
    ]},
    Item { name: "notifications", kind: Kind::Table, purpose: "outbox of e-mails to staff (no personal data in the message: a sentence and a link)", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::Alerts), readers: &[SYSTEM, OPERATOR], columns: &[
        ("id", No, "message number"), ("account_id", Pers, "recipient (staff)"), ("alert_id", No, "the alert linked to"), ("reason", No, "new alert or escalation"),
        ("created_at_ms", No, "queued"), ("attempts", No, "attempts"), ("next_attempt_at_ms", No, "next attempt"), ("lease_until_ms", No, "claimed by a sender until"),
        ("sent_at_ms", No, "sent"), ("gave_up_at_ms", No, "given up"), ("last_error", No, "last SMTP error"),
    ]},
    Item { name: "notifier_state", kind: Kind::Table, purpose: "the newest alert the notifier has looked at", legal_basis: OPERATIONS, retention: Retention::AsLongAs("always"), readers: &[SYSTEM], columns: &[
        ("id", No, "one row"), ("last_alert_id", No, "newest alert looked at"), ("first_alert_id", No, "newest alert when notifications began"),
    ]},
    Item { name: "sessions", kind: Kind::Table, purpose: "web sessions", legal_basis: STAFF, retention: Retention::AsLongAs("ended sessions kept as sign-in history"), readers: &[SYSTEM, AUDITOR], columns: &[
        ("token_sha256", No, "session token hash"), ("account_id", Pers, "staff member"), ("csrf_token", No, "CSRF token"),
        ("created_at_ms", Pers, "signed in"), ("last_seen_ms", Pers, "last activity"), ("ended_at_ms", Pers, "ended"),
    ]},
    Item { name: "staff_screenings", kind: Kind::Table, purpose: "staff screening (VOG) gating access to personal data", legal_basis: STAFF, retention: Retention::AsLongAs("while the account exists"), readers: &[ADMIN, AUDITOR], columns: &[
        ("id", No, "row number"), ("account_id", Pers, "staff member"), ("kind", Pers, "VOG or security clearance"),
        ("screened_on_ms", Pers, "date"), ("expires_at_ms", Pers, "expiry"), ("recorded_by", Pers, "administrator"), ("recorded_at_ms", No, "recorded"),
    ]},
    Item { name: "access_reviews", kind: Kind::Table, purpose: "auditors' periodic reviews of staff accesses", legal_basis: ACCOUNTABILITY, retention: Retention::Class(DataClass::AuditLog), readers: &[AUDITOR], columns: &[
        ("id", No, "row number"), ("account_id", Pers, "reviewed staff member"), ("period_from_ms", No, "period"), ("period_to_ms", No, "period"),
        ("accesses_reviewed", Pers, "accesses in the period"), ("findings", Pers, "findings"), ("reviewed_by", Pers, "auditor"), ("reviewed_at_ms", No, "when"),
    ]},
    Item { name: "caseloads", kind: Kind::Table, purpose: "which officer may see which person when", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::RawReadings), readers: &[ADMIN, SYSTEM], columns: &[
        ("id", No, "assignment"), ("officer_id", Pers, "officer"), ("person_id", Pers, "person"),
        ("valid_from_ms", No, "from"), ("valid_to_ms", No, "until"), ("assigned_by", Pers, "administrator"),
    ]},
    Item { name: "audit_log", kind: Kind::Table, purpose: "tamper-evident record of every access and change", legal_basis: ACCOUNTABILITY, retention: Retention::Class(DataClass::AuditLog), readers: &[AUDITOR, OPERATOR, SUBJECT], columns: &[
        ("seq", No, "entry number"), ("at_ms", No, "when"), ("actor", Pers, "who (staff, system, project)"), ("action", No, "what"),
        ("object", Pers, "about what (may name a person, alert, device)"), ("detail", Pers, "details (may name persons)"),
        ("prev_hash", No, "chain link"), ("hash", No, "entry hash"), ("salt", No, "salt of the field digests"),
        ("object_digest", No, "kept digest of an erased object"), ("detail_digest", No, "kept digest of an erased detail"), ("erased_by", No, "tombstone entry"),
    ]},
    Item { name: "audit_pruned", kind: Kind::Table, purpose: "the chain's start after pruning at the end of its retention", legal_basis: ACCOUNTABILITY, retention: Retention::AsLongAs("always"), readers: &[AUDITOR], columns: &[
        ("through_seq", No, "last pruned entry"), ("hash", No, "its hash"), ("pruned_at_ms", No, "when"),
    ]},
    Item { name: "crls", kind: Kind::Table, purpose: "certificate revocation lists signed", legal_basis: OPERATIONS, retention: Retention::AsLongAs("always"), readers: &[SYSTEM, AUDITOR], columns: &[
        ("number", No, "CRL number"), ("signed_at_ms", No, "signed"), ("revoked_count", No, "certificates revoked"),
    ]},
    Item { name: "age_keys", kind: Kind::Table, purpose: "the server's age recipients (stations encrypt to the newest)", legal_basis: OPERATIONS, retention: Retention::AsLongAs("always (old keys decrypt old bundles)"), readers: &[SYSTEM, AUDITOR], columns: &[
        ("id", No, "key number"), ("recipient", No, "public recipient"), ("created_at_ms", No, "created"),
    ]},
    Item { name: "rules_in_force", kind: Kind::Table, purpose: "text of the rule files and retention policy in force", legal_basis: OPERATIONS, retention: Retention::AsLongAs("always"), readers: &[SYSTEM], columns: &[
        ("file", No, "file"), ("content", No, "text"), ("since_ms", No, "in force since"),
    ]},
    Item { name: "research_projects", kind: Kind::Table, purpose: "research projects and their privacy budgets", legal_basis: RESEARCH, retention: Retention::AsLongAs("always (the ledger)"), readers: &[ADMIN, AUDITOR, RESEARCHER], columns: &[
        ("id", No, "project"), ("name", No, "name"), ("epsilon_budget", No, "ε budget"), ("epsilon_spent", No, "ε spent"),
        ("max_epsilon_per_query", No, "ε per query"), ("delta", No, "δ"), ("epsilon_sum", No, "Σε"), ("rho_spent", No, "Σρ"),
    ]},
    Item { name: "research_tokens", kind: Kind::Table, purpose: "researchers' bearer tokens (hashes)", legal_basis: STAFF, retention: Retention::AsLongAs("always (revoked and expired kept)"), readers: &[ADMIN], columns: &[
        ("token_sha256", No, "token hash"), ("project_id", No, "project"), ("created_at_ms", No, "issued"),
        ("expires_at_ms", No, "expiry"), ("revoked_at_ms", No, "revoked"), ("account_id", Pers, "researcher holding it"),
    ]},
    Item { name: "privacy_loss_periods", kind: Kind::Table, purpose: "privacy loss any one person suffers per year, all projects", legal_basis: RESEARCH, retention: Retention::AsLongAs("always (the ledger)"), readers: &[AUDITOR], columns: &[
        ("period", No, "year"), ("epsilon_sum", No, "Σε"), ("rho", No, "Σρ"), ("epsilon_spent", No, "ε"),
    ]},
    Item { name: "management_releases", kind: Kind::Table, purpose: "monthly DP figures released to managers", legal_basis: RESEARCH, retention: Retention::AsLongAs("always (DP aggregates)"), readers: &[MANAGER], columns: &[
        ("month", No, "month"), ("figure", No, "figure"), ("answer", No, "DP answer"), ("released_at_ms", No, "released"), ("released_by", Pers, "manager"),
    ]},
    Item { name: "raw readings (datasets/raw/<signal>/<day>/*.parquet)", kind: Kind::Dataset, purpose: "the wearables' readings, pseudonymised, for the pipelines and the evidence views", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::RawReadings), readers: &[OFFICER, OPERATOR, SUBJECT, SYSTEM], columns: &[] },
    Item { name: "research daily indicators (datasets/research/daily_indicators.parquet)", kind: Kind::Dataset, purpose: "daily indicators per research pseudonym for DP research", legal_basis: RESEARCH, retention: Retention::Class(DataClass::Research), readers: &[RESEARCHER, MANAGER, SYSTEM], columns: &[] },
    Item { name: "research alert counts (datasets/research/alert_counts.parquet)", kind: Kind::Dataset, purpose: "alert counts per research pseudonym and day for DP research", legal_basis: RESEARCH, retention: Retention::Class(DataClass::Research), readers: &[RESEARCHER, MANAGER, SYSTEM], columns: &[] },
    Item { name: "spool/segments/*.seg, spool/<bundle>.age", kind: Kind::Files, purpose: "received ciphertexts waiting to be decoded (a segment holds one group commit's batch)", legal_basis: SUPERVISION, retention: Retention::AsLongAs("until decoded (minutes)"), readers: &[SYSTEM], columns: &[("ciphertext", Health, "age-encrypted readings")] },
    Item { name: "evidence/<day>/<bundle>.age", kind: Kind::Files, purpose: "original ciphertexts kept for the chain of custody", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::Evidence), readers: &[OPERATOR, OFFICER], columns: &[("ciphertext", Health, "age-encrypted readings, signed by the station")] },
    Item { name: "quarantine/<bundle>.age, .reason", kind: Kind::Files, purpose: "bundles set aside with their reason", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::Quarantine), readers: &[OPERATOR], columns: &[("ciphertext", Health, "age-encrypted readings"), ("reason", Pers, "why (may name a device)")] },
    Item { name: "exports/*.tar", kind: Kind::Files, purpose: "case archives for handover", legal_basis: SUPERVISION, retention: Retention::Class(DataClass::Exports), readers: &[OPERATOR], columns: &[("archive", Crim, "everything held about one person")] },
    Item { name: "audit/checkpoints/<day>.json", kind: Kind::Files, purpose: "signed daily anchors of the audit chain's head", legal_basis: ACCOUNTABILITY, retention: Retention::AsLongAs("always"), readers: &[AUDITOR], columns: &[("checkpoint", No, "entry number, hash, signature")] },
    Item { name: "keys/, pki/", kind: Kind::Files, purpose: "CA, server and signing keys, age identities, pseudonym keys", legal_basis: OPERATIONS, retention: Retention::AsLongAs("always (0600)"), readers: &[SYSTEM, OPERATOR], columns: &[("keys", No, "secret keys; the pseudonym keys link pseudonyms to person numbers")] },
    Item { name: "nachtwacht.toml, rules/*.toml, retention.toml", kind: Kind::Files, purpose: "configuration, rule thresholds, retention policy", legal_basis: OPERATIONS, retention: Retention::AsLongAs("always"), readers: &[OPERATOR], columns: &[("settings", No, "configuration")] },
    Item { name: "stations/<name>/", kind: Kind::Files, purpose: "demo and test stations' configuration (demo only)", legal_basis: OPERATIONS, retention: Retention::AsLongAs("the demo"), readers: &[OPERATOR], columns: &[("station.toml", No, "station configuration with its key")] },
];

/// Meanings of the dataset columns: every column any dataset has must be here.
const DATASET_COLUMNS: &[Column] = &[
    (
        "pid",
        Pseud,
        "operational pseudonym (keyed hash of the person number)",
    ),
    (
        "rid",
        Pseud,
        "research pseudonym (another key; not linkable to pid)",
    ),
    ("bundle_id", No, "bundle that carried the reading"),
    ("quality", No, "validation flags of the reading"),
    ("ts", Health, "time of the reading (UTC)"),
    ("day", Health, "UTC day"),
    ("tac_g_dl", Health, "transdermal alcohol concentration"),
    ("ambient_g_dl", Health, "ambient alcohol (interference)"),
    ("skin_temp_c", Health, "skin temperature"),
    ("ir", Health, "infrared proximity (worn or not)"),
    ("strap_closed", Health, "strap closed"),
    ("eda_us", Health, "electrodermal activity"),
    ("bvp", Health, "blood-volume pulse"),
    ("hr_bpm", Health, "heart rate"),
    ("temp_c", Health, "skin temperature"),
    ("x_g", Health, "acceleration x"),
    ("y_g", Health, "acceleration y"),
    ("z_g", Health, "acceleration z"),
    ("ibi_s", Health, "inter-beat interval"),
    ("battery_pct", No, "device battery"),
    ("event", Crim, "device event (strap opened, power, faults)"),
    (
        "programme",
        Crim,
        "supervision programme (public key of the research groups)",
    ),
    ("region", Pers, "region (public key)"),
    ("age_band", Pers, "age band (public key)"),
    ("wear_minutes", Health, "minutes worn"),
    ("peak_tac_g_dl", Health, "peak TAC of the day"),
    ("drinking_events", Crim, "drinking events of the day"),
    ("tamper_events", Crim, "tamper events of the day"),
    ("valid_eda_minutes", Health, "minutes of valid EDA"),
    ("mean_eda_us", Health, "mean EDA"),
    (
        "scr_per_minute",
        Health,
        "skin conductance responses per minute",
    ),
    (
        "minutes_aroused",
        Health,
        "minutes of arousal above baseline",
    ),
    ("stress_episodes", Health, "stress episodes"),
    ("mean_hr_bpm", Health, "mean heart rate"),
    ("alcohol_alerts", Crim, "alcohol alerts starting that day"),
    ("interferent_alerts", Crim, "interferent alerts"),
    ("tamper_alerts", Crim, "tamper alerts"),
    ("device_alerts", Crim, "device alerts"),
    ("communication_alerts", Crim, "communication alerts"),
];

/// The meaning of a dataset column, if the inventory has one.
pub fn dataset_column(name: &str) -> Option<&'static Column> {
    DATASET_COLUMNS.iter().find(|c| c.0 == name)
}

/// The columns of a dataset item, from the code that writes it.
pub fn dataset_columns(item: &Item) -> Vec<String> {
    if item.name.starts_with("raw readings") {
        let mut names: Vec<String> = Vec::new();
        for signal in Signal::ALL {
            for f in crate::dataset::stored_schema(signal).fields() {
                if !names.contains(f.name()) {
                    names.push(f.name().clone());
                }
            }
        }
        names
    } else if item.name.starts_with("research daily") {
        ["rid", "day"]
            .into_iter()
            .chain(crate::research::PERSON_KEYS.iter().copied())
            .chain(crate::research::DAILY_COLUMNS.iter().map(|c| c.0))
            .map(String::from)
            .collect()
    } else if item.name.starts_with("research alert") {
        ["rid", "day"]
            .into_iter()
            .chain(crate::research::PERSON_KEYS.iter().copied())
            .chain(crate::research::ALERT_COLUMNS.iter().map(|c| c.0))
            .map(String::from)
            .collect()
    } else {
        vec![]
    }
}

fn retention_text(r: Retention) -> String {
    match r {
        Retention::Class(c) => format!("retention.toml [{}]", c.as_str()),
        Retention::AsLongAs(s) => s.to_string(),
    }
}

/// Every column of an item with its category and meaning.
fn columns_of(item: &Item) -> Vec<(String, Category, String)> {
    match item.kind {
        Kind::Dataset => dataset_columns(item)
            .into_iter()
            .map(|name| {
                let (cat, meaning) = dataset_column(&name)
                    .map(|c| (c.1, c.2.to_string()))
                    .unwrap_or((Category::Personal, "NOT IN THE INVENTORY".into()));
                (name, cat, meaning)
            })
            .collect(),
        _ => item
            .columns
            .iter()
            .map(|(n, c, m)| (n.to_string(), *c, m.to_string()))
            .collect(),
    }
}

/// The inventory as Markdown (what `docs/dpia-inventory.md` holds).
pub fn markdown() -> String {
    let mut out = String::from(
        "# Data inventory (DPIA)\n\n\
         Generated by `nachtwacht inventory --format markdown` from the registry in\n\
         `src/accountability/inventory.rs`; `tests/inventory.rs` fails when this file is not current,\n\
         and the registry's own tests fail when a table, column or dataset has no entry.\n\n\
         Categories: *personal* (about an identifiable person or member of staff), *pseudonymised*\n\
         (personal data under a keyed pseudonym), *special: health* (art. 9 AVG), *special:\n\
         criminal-law* (art. 10 AVG), *not personal*. The legal basis is the field the\n\
         data-protection officer confirms.\n\n",
    );
    for item in REGISTRY {
        let columns = columns_of(item);
        let personal = columns.iter().filter(|c| c.1.is_personal()).count();
        out += &format!(
            "## {} ({})\n\n- **Purpose:** {}\n- **Legal basis:** {}\n- **Retention:** {}\n- **Read by:** {}\n- **Columns:** {} ({} personal)\n\n",
            item.name,
            item.kind.as_str(),
            item.purpose,
            item.legal_basis,
            retention_text(item.retention),
            item.readers.join("; "),
            columns.len(),
            personal
        );
        out += "| column | category | meaning |\n|---|---|---|\n";
        for (name, cat, meaning) in columns {
            out += &format!("| `{name}` | {} | {meaning} |\n", cat.as_str());
        }
        out.push('\n');
    }
    out
}

/// The inventory as JSON.
pub fn json() -> serde_json::Value {
    serde_json::Value::Array(
        REGISTRY
            .iter()
            .map(|item| {
                serde_json::json!({
                    "name": item.name,
                    "kind": item.kind.as_str(),
                    "purpose": item.purpose,
                    "legal_basis": item.legal_basis,
                    "retention": retention_text(item.retention),
                    "readers": item.readers,
                    "columns": columns_of(item).into_iter().map(|(n, c, m)| serde_json::json!({
                        "name": n, "category": c.as_str(), "personal": c.is_personal(), "meaning": m,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table and column of the database the migrations build has an entry, and every
    /// entry names a table and column that exist.
    #[test]
    fn every_table_and_column_has_an_inventory_entry_and_no_entry_is_stale() {
        // Read off SQLite's schema; PostgreSQL's is the same (base::db's parity test).
        let dir = tempfile::tempdir().unwrap();
        let db = crate::base::db::Db::open(&dir.path().join("s.sqlite")).unwrap();
        let conn = db.lock();
        let tables: Vec<String> = {
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        let mut missing = Vec::new();
        for table in &tables {
            let Some(item) = REGISTRY
                .iter()
                .find(|i| i.kind == Kind::Table && i.name == table)
            else {
                missing.push(format!("table {table}"));
                continue;
            };
            let mut stmt = conn
                .prepare(&format!("PRAGMA table_info({table})"))
                .unwrap();
            let columns: Vec<String> = stmt
                .query_map([], |r| r.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for c in &columns {
                if !item.columns.iter().any(|e| e.0 == c) {
                    missing.push(format!("column {table}.{c}"));
                }
            }
            for e in item.columns {
                if !columns.iter().any(|c| c == e.0) {
                    missing.push(format!("stale entry {table}.{}", e.0));
                }
            }
        }
        for item in REGISTRY.iter().filter(|i| i.kind == Kind::Table) {
            if !tables.iter().any(|t| t == item.name) {
                missing.push(format!("stale table entry {}", item.name));
            }
        }
        assert!(missing.is_empty(), "inventory out of date: {missing:?}");
    }

    #[test]
    fn every_dataset_column_has_an_inventory_entry() {
        let mut missing = Vec::new();
        for item in REGISTRY.iter().filter(|i| i.kind == Kind::Dataset) {
            let columns = dataset_columns(item);
            assert!(!columns.is_empty(), "{} has no columns", item.name);
            for c in columns {
                if dataset_column(&c).is_none() {
                    missing.push(format!("{}: {c}", item.name));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "dataset columns without an entry: {missing:?}"
        );
        // The pseudonyms are marked as such, the readings as health data.
        assert_eq!(dataset_column("pid").unwrap().1, Category::Pseudonymised);
        assert_eq!(dataset_column("tac_g_dl").unwrap().1, Category::Health);
    }
}
