//! `nachtwacht db migrate-to-postgres`: an SQLite installation's state copied into an empty
//! PostgreSQL database, verified, and the data directory pointed at it.
//!
//! The servers are stopped first (the copy is of one moment). Every table is copied in an order
//! in which each row's references already exist, one transaction per table; then the identities
//! continue after the largest id copied, the row counts of both sides are compared and the audit
//! chain is verified on PostgreSQL. Only then does the configuration name PostgreSQL; the SQLite
//! file stays where it was, untouched, until the operator removes it.

use std::collections::{BTreeMap, BTreeSet};

use crate::base::config::{Config, DatabaseBackend, DatabaseConfig};
use crate::base::datadir::DataDir;
use crate::base::db::{self, Connection, Db, PostgresTarget, Target, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::base::config::Error),
    #[error("database: {0}")]
    Db(#[from] db::Error),
    #[error("audit: {0}")]
    Audit(#[from] crate::trust::audit::Error),
    #[error("{0} already keeps its state in PostgreSQL")]
    AlreadyPostgres(String),
    #[error("the PostgreSQL database is not empty ({table} has {rows} rows): migrate into a new database")]
    TargetNotEmpty { table: String, rows: i64 },
    #[error("the copy differs from the original: {0}")]
    Differs(String),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What was copied: rows per table, and the audit chain's length as verified on PostgreSQL.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: BTreeMap<String, i64>,
    pub audit_entries: usize,
}

/// Copies the state of the data directory `root` into the PostgreSQL database `target` and
/// points the configuration at it. `progress(table, rows_done, rows_total)` follows the copy.
pub fn to_postgres(
    root: &std::path::Path,
    target: &PostgresTarget,
    progress: &mut dyn FnMut(&str, i64, i64),
) -> Result<Report> {
    let dir = DataDir::new(root);
    let mut config = Config::load(&dir.config())?;
    if config.database.backend == DatabaseBackend::Postgres {
        return Err(Error::AlreadyPostgres(root.display().to_string()));
    }
    let source = Db::open(&dir.database())?;
    let destination = Db::open_target(&Target::Postgres(target.clone()))?;
    let source = source.lock();
    let mut destination = destination.lock();
    let tables = tables_in_reference_order(&source)?;

    // A new database holds only what its schema seeds: the programmes and the notifier's row.
    for table in &tables {
        let rows = count(&destination, table)?;
        let seeded = matches!(table.as_str(), "programmes" | "notifier_state");
        if rows > 0 && !seeded {
            return Err(Error::TargetNotEmpty {
                table: table.clone(),
                rows,
            });
        }
    }
    {
        let tx = destination.transaction()?;
        tx.execute("DELETE FROM notifier_state", ())?;
        tx.execute("DELETE FROM programmes", ())?;
        tx.commit()?;
    }

    let mut report = Report::default();
    for table in &tables {
        let total = count(&source, table)?;
        let mut stmt = source.prepare(&format!("SELECT * FROM {table}"))?;
        let columns = stmt.column_names();
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            columns.join(", "),
            (1..=columns.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // A column referencing its own table (an account's manager) is filled in after every
        // row is there: the referenced row may come later in id order.
        let own_references: Vec<usize> = self_references(&source, table)?
            .iter()
            .filter_map(|c| columns.iter().position(|name| name == c))
            .collect();
        let id_column = columns.iter().position(|c| c == "id");
        let mut later: Vec<(usize, Value, Value)> = Vec::new();
        let mut rows = stmt.query(())?;
        let tx = destination.transaction()?;
        let mut done = 0;
        progress(table, 0, total);
        while let Some(row) = rows.next()? {
            let mut values: Vec<Value> = (0..columns.len())
                .map(|i| row.get_ref(i).map(Value::from))
                .collect::<db::Result<_>>()?;
            if let Some(id) = id_column {
                for &c in &own_references {
                    if values[c] != Value::Null {
                        later.push((
                            c,
                            values[id].clone(),
                            std::mem::replace(&mut values[c], Value::Null),
                        ));
                    }
                }
            }
            tx.execute(&insert, values)?;
            done += 1;
            if done % 1000 == 0 {
                progress(table, done, total);
            }
        }
        for (c, id, value) in later {
            tx.execute(
                &format!("UPDATE {table} SET {} = ?1 WHERE id = ?2", columns[c]),
                (value, id),
            )?;
        }
        if id_column.is_some() {
            // Identities go on after the largest id copied.
            tx.query_row(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                ),
                (),
                |_| Ok(()),
            )?;
        }
        tx.commit()?;
        progress(table, done, total);
        report.rows.insert(table.clone(), done);
    }

    // Verified before the configuration changes: every table's count, and the audit chain.
    for (table, rows) in &report.rows {
        let there = count(&destination, table)?;
        if there != *rows {
            return Err(Error::Differs(format!(
                "{table}: {rows} rows copied, {there} in PostgreSQL"
            )));
        }
    }
    report.audit_entries = match crate::trust::audit::verify(&destination)? {
        crate::trust::audit::Verdict::Intact { entries } => entries,
        crate::trust::audit::Verdict::Broken { at_seq, reason } => {
            return Err(Error::Differs(format!(
                "the audit chain breaks at entry {at_seq}: {reason}"
            )))
        }
    };

    config.database = DatabaseConfig {
        backend: DatabaseBackend::Postgres,
        url: Some(target.url.clone()),
        password_file: target
            .password_file
            .as_ref()
            .map(|p| p.display().to_string()),
        ca_file: target.ca_file.as_ref().map(|p| p.display().to_string()),
    };
    crate::base::fsio::write_durably(&dir.config(), config.to_toml().as_bytes()).map_err(|e| {
        Error::Write {
            path: e.path.clone(),
            source: e.source,
        }
    })?;
    Ok(report)
}

fn count(conn: &Connection, table: &str) -> Result<i64> {
    Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), (), |r| r.get(0))?)
}

/// The columns of `table` that reference `table` itself.
fn self_references(conn: &Connection, table: &str) -> Result<Vec<String>> {
    Ok(conn
        .prepare("SELECT \"from\" FROM pragma_foreign_key_list(?1) WHERE \"table\" = ?1")?
        .query_map([table], |r| r.get(0))?
        .collect::<db::Result<_>>()?)
}

/// The tables of SQLite's schema, each after the tables it references.
fn tables_in_reference_order(conn: &Connection) -> Result<Vec<String>> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map((), |r| r.get(0))?
        .collect::<db::Result<_>>()?;
    let mut references: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in &names {
        let referenced: BTreeSet<String> = conn
            .prepare("SELECT \"table\" FROM pragma_foreign_key_list(?1)")?
            .query_map([name], |r| r.get(0))?
            .collect::<db::Result<BTreeSet<String>>>()?
            .into_iter()
            .filter(|t| t != name)
            .collect();
        references.insert(name.clone(), referenced);
    }
    let mut ordered: Vec<String> = Vec::new();
    while ordered.len() < names.len() {
        let before = ordered.len();
        for name in &names {
            if !ordered.contains(name) && references[name].iter().all(|r| ordered.contains(r)) {
                ordered.push(name.clone());
            }
        }
        if ordered.len() == before {
            return Err(Error::Differs("the tables' references form a cycle".into()));
        }
    }
    Ok(ordered)
}
