//! The operator's rule files: `rules/alcohol.toml`, `rules/tamper.toml` and `rules/stress.toml` in
//! the data directory. `init` writes them from the shipped defaults; the server (at start-up and
//! before every scheduled evaluation) and `nachtwacht pipeline run` read them, so a threshold an
//! operator changes takes effect without a rebuild.
//!
//! All three files are validated together and every problem of every file is reported at once. A
//! change is recorded in the audit log (`rules.changed`, each changed value old and new) the first
//! time rules that differ from the ones last in force are loaded; the text in force is kept in the
//! `rules_in_force` table for that comparison.

use std::collections::BTreeMap;

use nachtwacht_pipelines::rules::{ALCOHOL_DEFAULTS, STRESS_DEFAULTS, TAMPER_DEFAULTS};
use nachtwacht_pipelines::{AlcoholRules, StressRules, TamperRules};

use crate::base::datadir::DataDir;
use crate::base::db::Db;
use crate::evaluate::Rules;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rule file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Every problem of every file, one per line.
    #[error("the rule files are not valid:\n{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] crate::trust::audit::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One rule file: its name in `rules/` and the shipped defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleFile {
    Alcohol,
    Tamper,
    Stress,
}

impl RuleFile {
    pub const ALL: [RuleFile; 3] = [Self::Alcohol, Self::Tamper, Self::Stress];

    pub fn file_name(self) -> &'static str {
        match self {
            Self::Alcohol => "alcohol.toml",
            Self::Tamper => "tamper.toml",
            Self::Stress => "stress.toml",
        }
    }

    pub fn defaults(self) -> &'static str {
        match self {
            Self::Alcohol => ALCOHOL_DEFAULTS,
            Self::Tamper => TAMPER_DEFAULTS,
            Self::Stress => STRESS_DEFAULTS,
        }
    }
}

/// Writes the shipped defaults into `rules/` (by `init`). Existing files are left alone.
pub fn write_defaults(dir: &DataDir) -> Result<()> {
    let rules = dir.rules();
    std::fs::create_dir_all(&rules).map_err(|source| Error::Io {
        path: rules.display().to_string(),
        source,
    })?;
    for f in RuleFile::ALL {
        let path = rules.join(f.file_name());
        if !path.exists() {
            crate::base::fsio::write_durably(&path, f.defaults().as_bytes()).map_err(|e| {
                Error::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
        }
    }
    Ok(())
}

/// The texts of the three files; a file that does not exist (a data directory from before the
/// files existed) is the shipped default.
fn read_texts(dir: &DataDir) -> Result<Vec<(RuleFile, String)>> {
    RuleFile::ALL
        .into_iter()
        .map(|f| {
            let path = dir.rules().join(f.file_name());
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok((f, text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Ok((f, f.defaults().to_string()))
                }
                Err(source) => Err(Error::Io {
                    path: path.display().to_string(),
                    source,
                }),
            }
        })
        .collect()
}

/// Reads and validates the operator's rules, reporting every problem of every file at once, and
/// records a change against the rules last in force in the audit log. `actor` is who loads them
/// (`system` for the server, the operator's name for the CLI).
pub fn load(dir: &DataDir, db: &Db, actor: &str, now_ms: i64) -> Result<Rules> {
    let texts = read_texts(dir)?;
    let (rules, problems) = parse_all(&texts);
    if !problems.is_empty() {
        return Err(Error::Invalid(problems.join("\n")));
    }
    record(db, &texts, actor, now_ms)?;
    Ok(rules)
}

/// Every problem of every rule file, without recording anything (`nachtwacht check`).
pub fn problems(dir: &DataDir) -> Vec<String> {
    match read_texts(dir) {
        Ok(texts) => parse_all(&texts).1,
        Err(e) => vec![e.to_string()],
    }
}

fn parse_all(texts: &[(RuleFile, String)]) -> (Rules, Vec<String>) {
    let mut problems = Vec::new();
    let mut rules = Rules::default();
    for (f, text) in texts {
        let shown = format!("rules/{}", f.file_name());
        let parsed = match f {
            RuleFile::Alcohol => AlcoholRules::parse(text, &shown).map(|r| rules.alcohol = r),
            RuleFile::Tamper => TamperRules::parse(text, &shown).map(|r| rules.tamper = r),
            RuleFile::Stress => StressRules::parse(text, &shown).map(|r| rules.stress = r),
        };
        if let Err(e) = parsed {
            problems.push(e.to_string());
        }
    }
    (rules, problems)
}

/// Top-level values of a rules file, as text, by key (what a change records, old and new).
pub fn values(text: &str) -> BTreeMap<String, String> {
    text.parse::<toml::Table>()
        .map(|t| t.into_iter().map(|(k, v)| (k, v.to_string())).collect())
        .unwrap_or_default()
}

fn record(db: &Db, texts: &[(RuleFile, String)], actor: &str, now_ms: i64) -> Result<()> {
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    for (f, text) in texts {
        let object = format!("rules/{}", f.file_name());
        let file = crate::trust::audit::file_change::LoadedFile {
            name: f.file_name(),
            text,
            defaults: f.defaults(),
            values,
            action: "rules.changed",
            object: &object,
        };
        crate::trust::audit::file_change::record_in_force(&tx, &file, actor, now_ms)?;
    }
    tx.commit()?;
    Ok(())
}
