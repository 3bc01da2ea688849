//! An operator's file (a rules file, the retention policy) recorded as in force, with a change
//! audited key by key. The text in force is kept in `rules_in_force`, so a reload of the same text
//! is no change, and a data directory's first load of the shipped defaults is none either.

use std::collections::{BTreeMap, BTreeSet};

use crate::base::db::{Connection, OptionalExtension};

use super::{append, Result};

/// A file as just loaded.
pub struct LoadedFile<'a> {
    /// Its name in `rules_in_force`.
    pub name: &'a str,
    pub text: &'a str,
    /// What is in force when nothing was recorded yet (the shipped defaults).
    pub defaults: &'a str,
    /// Its values by key, as text, for the audit entry.
    pub values: fn(&str) -> BTreeMap<String, String>,
    /// The audit entry's action and object.
    pub action: &'a str,
    pub object: &'a str,
}

/// Records `file` as in force; when it differs from what was in force, appends an entry with
/// every key whose value changed, old and new. Call inside a transaction.
pub fn record_in_force(
    conn: &Connection,
    file: &LoadedFile<'_>,
    actor: &str,
    now_ms: i64,
) -> Result<()> {
    let before: Option<String> = conn
        .query_row(
            "SELECT content FROM rules_in_force WHERE file = ?1",
            [file.name],
            |r| r.get(0),
        )
        .optional()?;
    if before.as_deref() == Some(file.text) {
        return Ok(());
    }
    let (old, new) = (
        (file.values)(before.as_deref().unwrap_or(file.defaults)),
        (file.values)(file.text),
    );
    let changes: Vec<serde_json::Value> = old
        .keys()
        .chain(new.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| serde_json::json!({"key": k, "old": old.get(k), "new": new.get(k)}))
        .collect();
    if !changes.is_empty() {
        append(
            conn,
            now_ms,
            actor,
            file.action,
            file.object,
            &serde_json::json!({ "changes": changes }).to_string(),
        )?;
    }
    conn.execute(
        "INSERT INTO rules_in_force (file, content, since_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(file) DO UPDATE SET content = excluded.content, since_ms = excluded.since_ms",
        crate::params![file.name, file.text, now_ms],
    )?;
    Ok(())
}
