//! The retention policy as data: `retention.toml` in the data directory says, per class of data,
//! how long it is kept and from which moment. `init` writes the shipped defaults
//! (`retention.default.toml`); the server and `nachtwacht retention run` read it, report every
//! problem at once, and record a change in the audit log (`retention.changed`, old and new value
//! of every key) the first time a policy that differs from the one last in force is loaded.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::base::datadir::DataDir;
use crate::base::db::Db;
use crate::base::time::DAY_MS;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Every problem of the file, one per line.
    #[error("retention.toml is not valid:\n{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] crate::trust::audit::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The shipped policy, with the meaning of every key.
pub const DEFAULT_POLICY: &str = include_str!("retention.default.toml");

/// The name the policy text is kept under in `rules_in_force` (to tell a change from a reload).
const IN_FORCE_NAME: &str = "retention.toml";

/// A class of data with its own retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataClass {
    RawReadings,
    Alerts,
    Evidence,
    Quarantine,
    Research,
    AuditLog,
    Exports,
}

/// The moment a retention period counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    SupervisionEnd,
    Received,
    Recorded,
    Written,
}

impl Anchor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SupervisionEnd => "supervision_end",
            Self::Received => "received",
            Self::Recorded => "recorded",
            Self::Written => "written",
        }
    }
}

impl DataClass {
    pub const ALL: [DataClass; 7] = [
        Self::RawReadings,
        Self::Alerts,
        Self::Evidence,
        Self::Quarantine,
        Self::Research,
        Self::AuditLog,
        Self::Exports,
    ];

    /// The section name in `retention.toml`, and the class's name in tombstones.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RawReadings => "raw_readings",
            Self::Alerts => "alerts",
            Self::Evidence => "evidence",
            Self::Quarantine => "quarantine",
            Self::Research => "research",
            Self::AuditLog => "audit_log",
            Self::Exports => "exports",
        }
    }

    /// The one moment this class's retention can count from.
    pub fn anchor(self) -> Anchor {
        match self {
            Self::RawReadings | Self::Alerts | Self::Research => Anchor::SupervisionEnd,
            Self::Evidence | Self::Quarantine => Anchor::Received,
            Self::AuditLog => Anchor::Recorded,
            Self::Exports => Anchor::Written,
        }
    }

    /// Whether the class holds data about one person that goes when the person's time is up.
    pub fn is_personal(self) -> bool {
        self.anchor() == Anchor::SupervisionEnd
    }
}

/// How long each class is kept. Built only by [`parse`], so every class has a valid period.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionPolicy {
    keep_days: BTreeMap<DataClass, u32>,
    /// SHA-256 of the text the policy was read from: tombstones name the policy they applied.
    digest: String,
}

impl RetentionPolicy {
    pub fn keep_days(&self, class: DataClass) -> u32 {
        self.keep_days[&class]
    }

    pub fn keep_ms(&self, class: DataClass) -> i64 {
        i64::from(self.keep_days(class)) * DAY_MS
    }

    /// `sha256:<hex>` of the policy's text.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The shipped defaults.
    pub fn defaults() -> Self {
        parse(DEFAULT_POLICY).expect("the shipped policy is valid")
    }
}

/// The longest period a policy may set: a century.
const MAX_KEEP_DAYS: i64 = 36_500;

/// Parses a policy, collecting every problem (unknown or missing classes and keys, periods out
/// of range, moments a class does not support) instead of stopping at the first.
pub fn parse(text: &str) -> Result<RetentionPolicy, Vec<String>> {
    let table: toml::Table = text.parse().map_err(|e| vec![format!("not TOML: {e}")])?;
    let mut problems = Vec::new();
    let mut keep_days = BTreeMap::new();
    for name in table.keys() {
        if !DataClass::ALL.iter().any(|c| c.as_str() == name) {
            let known: Vec<&str> = DataClass::ALL.iter().map(|c| c.as_str()).collect();
            problems.push(format!(
                "[{name}]: unknown class; the classes are {}",
                known.join(", ")
            ));
        }
    }
    for class in DataClass::ALL {
        let name = class.as_str();
        let Some(section) = table.get(name) else {
            problems.push(format!("[{name}]: missing"));
            continue;
        };
        let Some(section) = section.as_table() else {
            problems.push(format!("[{name}]: must be a table with keep_days and from"));
            continue;
        };
        for key in section.keys() {
            if key != "keep_days" && key != "from" {
                problems.push(format!("{name}.{key}: unknown key (keep_days, from)"));
            }
        }
        match section.get("keep_days").map(|v| v.as_integer()) {
            Some(Some(days)) if (0..=MAX_KEEP_DAYS).contains(&days) => {
                keep_days.insert(class, days as u32);
            }
            Some(Some(days)) => problems.push(format!(
                "{name}.keep_days: {days} is outside 0..={MAX_KEEP_DAYS}"
            )),
            Some(None) => {
                problems.push(format!("{name}.keep_days: must be a whole number of days"))
            }
            None => problems.push(format!("{name}.keep_days: missing")),
        }
        let expected = class.anchor().as_str();
        match section.get("from").map(|v| v.as_str()) {
            Some(Some(from)) if from == expected => {}
            Some(Some(from)) => problems.push(format!(
                "{name}.from: {from:?} is not supported; {name} is kept from {expected:?}"
            )),
            Some(None) => problems.push(format!("{name}.from: must be a string")),
            None => problems.push(format!("{name}.from: missing (\"{expected}\")")),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(RetentionPolicy {
        keep_days,
        digest: format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes()))),
    })
}

/// Writes the shipped policy (by `init`); an existing file is left alone.
pub fn write_default(dir: &DataDir) -> Result<()> {
    let path = dir.retention_policy();
    if path.exists() {
        return Ok(());
    }
    crate::base::fsio::write_durably(&path, DEFAULT_POLICY.as_bytes()).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Reads and validates `retention.toml` (the shipped defaults when the file does not exist: a
/// data directory from before it did) and records a change against the policy last in force.
pub fn load(dir: &DataDir, db: &Db, actor: &str, now_ms: i64) -> Result<RetentionPolicy> {
    let path = dir.retention_policy();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DEFAULT_POLICY.to_string(),
        Err(source) => {
            return Err(Error::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let policy = parse(&text).map_err(|problems| Error::Invalid(problems.join("\n")))?;
    record(db, &text, actor, now_ms)?;
    Ok(policy)
}

/// Every problem of `retention.toml`, without recording anything (`nachtwacht check`).
pub fn problems(dir: &DataDir) -> Vec<String> {
    let path = dir.retention_policy();
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| format!("retention.toml: {p}"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => vec![format!("{}: {e}", path.display())],
    }
}

/// `class.key` → value as text.
fn values(text: &str) -> BTreeMap<String, String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (class, section) in table {
        if let Some(section) = section.as_table() {
            for (key, value) in section {
                out.insert(format!("{class}.{key}"), value.to_string());
            }
        }
    }
    out
}

fn record(db: &Db, text: &str, actor: &str, now_ms: i64) -> Result<()> {
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let file = crate::trust::audit::file_change::LoadedFile {
        name: IN_FORCE_NAME,
        text,
        defaults: DEFAULT_POLICY,
        values,
        action: "retention.changed",
        object: IN_FORCE_NAME,
    };
    crate::trust::audit::file_change::record_in_force(&tx, &file, actor, now_ms)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policy_is_valid_and_names_every_class() {
        let p = RetentionPolicy::defaults();
        for c in DataClass::ALL {
            assert!(DEFAULT_POLICY.contains(&format!("[{}]", c.as_str())));
            let _ = p.keep_days(c);
        }
        assert_eq!(p.keep_days(DataClass::Evidence), 730);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = DEFAULT_POLICY
            .replace("keep_days = 90", "keep_days = -1")
            .replace(
                "[exports]\nkeep_days = 30",
                "[exports]\nkeep_days = \"a month\"",
            )
            .replace(
                "[evidence]\nkeep_days = 730\nfrom = \"received\"",
                "[evidence]\nkeep_days = 730\nfrom = \"supervision_end\"\nkeep_for_ever = true",
            )
            .replace("[audit_log]", "[backups]\nkeep_days = 1\n\n[audit_log]");
        let problems = parse(&text).unwrap_err();
        let all = problems.join("\n");
        for expected in [
            "raw_readings.keep_days: -1 is outside",
            "exports.keep_days: must be a whole number",
            "evidence.from: \"supervision_end\" is not supported",
            "evidence.keep_for_ever: unknown key",
            "[backups]: unknown class",
        ] {
            assert!(all.contains(expected), "{expected} missing from:\n{all}");
        }
        assert_eq!(problems.len(), 5, "{all}");
        let missing =
            DEFAULT_POLICY.replace("[quarantine]\nkeep_days = 180\nfrom = \"received\"", "");
        assert_eq!(parse(&missing).unwrap_err(), vec!["[quarantine]: missing"]);
    }

    #[test]
    fn a_changed_policy_is_audited_once_with_old_and_new_values() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let db = crate::base::db::testing::open(tmp.path());
        write_default(&dir).unwrap();
        load(&dir, &db, "system", 1).unwrap();
        let changes = |db: &Db| -> Vec<String> {
            let conn = db.lock();
            let mut stmt = conn
                .prepare("SELECT detail FROM audit_log WHERE action = 'retention.changed'")
                .unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        assert!(changes(&db).is_empty(), "the shipped policy is no change");
        let text = DEFAULT_POLICY.replace("keep_days = 90", "keep_days = 60");
        std::fs::write(dir.retention_policy(), &text).unwrap();
        let p = load(&dir, &db, "ops", 2).unwrap();
        assert_eq!(p.keep_days(DataClass::RawReadings), 60);
        load(&dir, &db, "system", 3).unwrap();
        let entries = changes(&db);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(
            entries[0].contains(r#""key":"raw_readings.keep_days","new":"60","old":"90""#),
            "{}",
            entries[0]
        );
        // A broken file keeps nothing from loading silently: the error lists the problem.
        std::fs::write(dir.retention_policy(), text.replace("= 60", "= 1e3")).unwrap();
        let e = load(&dir, &db, "system", 4).unwrap_err().to_string();
        assert!(e.contains("raw_readings.keep_days"), "{e}");
    }
}
