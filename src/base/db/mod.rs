//! The SQL state: accounts, stations, persons and programmes, device assignments, the bundle
//! registry, alerts, research budgets and the audit log.
//!
//! Two backends behind one API: SQLite (bundled; the embedded default, one file) and PostgreSQL
//! (several nachtwacht processes on one database). The store modules write each statement once,
//! in the SQL both share with SQLite's parameters (`?1`); [`dialect`] rewrites the few spellings
//! that differ for PostgreSQL. The API follows rusqlite's (`execute`, `query_row`, `prepare`,
//! `query_map`, `transaction`), so a store module reads the same on either backend.
//!
//! PostgreSQL is reached through `postgres` (rust-postgres, the blocking face of tokio-postgres):
//! the store modules are synchronous and run on blocking threads, as with rusqlite, and take plain
//! SQL text; sqlx's checked queries would need a database (or prepared offline data) at build
//! time, and diesel's query builder would rewrite every store module. TLS goes through
//! tokio-postgres-rustls, the same rustls as QUIC and HTTPS.
//!
//! Every transaction is a writer's: it takes the database's one write lock when it begins
//! (SQLite's `BEGIN IMMEDIATE`; on PostgreSQL a transaction-scoped advisory lock), so a
//! read-then-write inside a transaction sees no other process's write between its read and its
//! write, on either backend and across processes.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

mod dialect;
mod postgres;
mod sqlite;
#[cfg(test)]
pub mod testing;
mod value;

pub use dialect::to_postgres;
pub use postgres::PostgresTarget;
pub use value::{FromSql, ToSql, Value, ValueRef};

#[macro_export]
macro_rules! closed_set_text {
    ($type:ty) => {
        impl $type {
            /// The value whose [`Self::as_str`] is `s`.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == s)
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                <$type>::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!("{s:?} is not a {}", stringify!($type)))
                })
            }
        }

        impl $crate::base::db::ToSql for $type {
            fn to_sql(&self) -> Result<$crate::base::db::ValueRef<'_>, $crate::base::db::Error> {
                Ok($crate::base::db::ValueRef::Text(self.as_str()))
            }
        }

        impl $crate::base::db::FromSql for $type {
            fn column_result(
                value: $crate::base::db::ValueRef<'_>,
            ) -> Result<Self, $crate::base::db::Error> {
                let s = <String as $crate::base::db::FromSql>::column_result(value)?;
                <$type>::parse(&s).ok_or_else(|| {
                    $crate::base::db::Error::Conversion(format!(
                        "{s:?} is not a {}",
                        stringify!($type)
                    ))
                })
            }
        }
    };
}

/// Builds the parameters of a statement from values of different types, as rusqlite's macro of
/// the same name does: `params![a, b, c]`.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::base::db::ToSql]
    };
    ($($param:expr),+ $(,)?) => {
        &[$(&$param as &dyn $crate::base::db::ToSql),+] as &[&dyn $crate::base::db::ToSql]
    };
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Sqlite(rusqlite::Error),
    #[error("postgres: {message}")]
    Postgres {
        /// The SQLSTATE, when the server sent one (`23505` is a unique violation).
        code: Option<String>,
        message: String,
    },
    #[error("query returned no rows")]
    NoRows,
    #[error("{0}")]
    Conversion(String),
    #[error("database schema version {found} is newer than this build ({supported})")]
    TooNew { found: i64, supported: i64 },
    #[error("connecting to PostgreSQL ({target}): {reason}")]
    Connect { target: String, reason: String },
    #[error("the PostgreSQL connection's thread has stopped")]
    Gone,
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Error::NoRows,
            e => Error::Sqlite(e),
        }
    }
}

impl Error {
    /// A UNIQUE or PRIMARY KEY constraint refused the write (the row exists).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            Error::Postgres { code, .. } => code.as_deref() == Some("23505"),
            _ => false,
        }
    }

    /// Any constraint (UNIQUE, CHECK, FOREIGN KEY, NOT NULL) refused the write.
    pub fn is_constraint_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::ConstraintViolation
            }
            Error::Postgres { code, .. } => code.as_deref().is_some_and(|c| c.starts_with("23")),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub enum Target {
    Sqlite(PathBuf),
    Postgres(PostgresTarget),
}

impl Target {
    /// The database `config` names for the data directory `dir`: SQLite's file in it, or the
    /// PostgreSQL server (relative file names are the data directory's).
    pub fn of(
        config: &crate::base::config::DatabaseConfig,
        dir: &crate::base::datadir::DataDir,
    ) -> Self {
        use crate::base::config::DatabaseBackend;
        let path = |f: &String| dir.root().join(f);
        match config.backend {
            DatabaseBackend::Sqlite => Target::Sqlite(dir.database()),
            DatabaseBackend::Postgres => Target::Postgres(PostgresTarget {
                url: config.url.clone().unwrap_or_default(),
                password_file: config.password_file.as_ref().map(path),
                ca_file: config.ca_file.as_ref().map(path),
            }),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Target::Sqlite(_) => Backend::Sqlite,
            Target::Postgres(_) => Backend::Postgres,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Sqlite(path) => write!(f, "sqlite {}", path.display()),
            Target::Postgres(pg) => write!(f, "postgres {pg}"),
        }
    }
}

/// A shared handle to the database: one connection per process behind a mutex. Statements are
/// short; the mutex keeps one process's statements in order, and transactions keep processes'
/// writes apart (see the module's comment).
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    target: Arc<Target>,
}

impl Db {
    /// An SQLite database file (created and migrated when new).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_target(&Target::Sqlite(path.to_path_buf()))
    }

    /// The database a data directory's configuration names (created and migrated when new).
    pub fn open_target(target: &Target) -> Result<Self> {
        let inner = match target {
            Target::Sqlite(path) => Inner::Sqlite(sqlite::open(path)?),
            Target::Postgres(pg) => Inner::Postgres(postgres::Connection::open(pg)?),
        };
        Ok(Self {
            conn: Arc::new(Mutex::new(Connection {
                inner,
                in_transaction: std::cell::Cell::new(false),
            })),
            target: Arc::new(target.clone()),
        })
    }

    /// The connection. Hold it briefly: never across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn backend(&self) -> Backend {
        self.target.backend()
    }

    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// One connection to either backend.
pub struct Connection {
    inner: Inner,
    /// Inside a [`Transaction`] (or [`Connection::atomically`]): nested work joins it.
    in_transaction: std::cell::Cell<bool>,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Connection),
}

impl Connection {
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// An SQLite file opened to read only (a backup's snapshot, `check`'s look at the database).
    pub fn open_sqlite_read_only(path: &Path) -> Result<Self> {
        let c = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        Ok(Self {
            inner: Inner::Sqlite(c),
            in_transaction: std::cell::Cell::new(false),
        })
    }

    /// The SQLite connection underneath, for what only SQLite has (`VACUUM INTO`, pragmas).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        let values = params.values()?;
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(
                    values.into_iter().map(sqlite::Bind),
                ))?)
            }
            Inner::Postgres(c) => c.execute(sql, &values),
        }
    }

    /// The id the last INSERT on this connection was given (SQLite's rowid; PostgreSQL's
    /// `lastval()`, the identity it drew). Store modules use `RETURNING id` instead.
    pub fn last_insert_rowid(&self) -> i64 {
        match &self.inner {
            Inner::Sqlite(c) => c.last_insert_rowid(),
            Inner::Postgres(_) => self
                .query_row("SELECT lastval()", (), |r| r.get(0))
                .unwrap_or(0),
        }
    }

    /// The first row's `f`, or [`Error::NoRows`].
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.prepare(sql)?.query_row(params, f)
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            inner: match &self.inner {
                Inner::Sqlite(c) => StatementInner::Sqlite(c.prepare_cached(sql)?),
                Inner::Postgres(c) => StatementInner::Postgres {
                    conn: c,
                    sql: sql.to_owned(),
                },
            },
        })
    }

    /// The same as [`Self::prepare`]: both backends cache prepared statements.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare(sql)
    }

    /// Several statements without parameters (schema changes).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => c.batch(&to_postgres(sql)),
        }
    }

    /// Makes rows deleted from `tables` gone from the database's files, not only from its
    /// tables: SQLite zeroes freed pages itself (`secure_delete`) and here cuts the write-ahead
    /// log that still holds their earlier images; PostgreSQL's deleted rows stay in their pages
    /// until the tables are rewritten (`VACUUM FULL`, which locks each table while it runs).
    /// PostgreSQL's own write-ahead log and its archive keep them until they are recycled: the
    /// operator's retention of those is part of the policy (docs/deployment.md).
    pub fn reclaim_erased(&self, tables: &[&str]) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?),
            Inner::Postgres(c) => c.batch(&format!("VACUUM FULL {}", tables.join(", "))),
        }
    }

    /// A writer's transaction: it holds the database's write lock until it commits or is
    /// dropped (rolled back).
    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.begin()?;
        Ok(Transaction {
            conn: self,
            open: true,
        })
    }

    fn begin(&self) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Inner::Postgres(c) => c.batch(postgres::BEGIN)?,
        }
        self.in_transaction.set(true);
        Ok(())
    }

    fn end(&self, how: &str) -> Result<()> {
        self.in_transaction.set(false);
        self.execute_batch(how)
    }

    /// Runs `f` as one writer's transaction: inside the caller's if there is one, else in its own
    /// (committed when `f` succeeds). For a read-then-write that must not interleave with another
    /// process's, such as appending to the audit chain.
    pub fn atomically<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Connection) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        if self.in_transaction.get() {
            return f(self);
        }
        self.begin()?;
        match f(self) {
            Ok(v) => {
                self.end("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rollback) = self.end("ROLLBACK") {
                    tracing::warn!(error = %rollback, "rolling back failed");
                }
                Err(e)
            }
        }
    }
}

/// An open transaction; dropping it without [`Transaction::commit`] rolls it back.
pub struct Transaction<'c> {
    conn: &'c mut Connection,
    open: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.conn.end("COMMIT")
    }

    pub fn rollback(mut self) -> Result<()> {
        self.open = false;
        self.conn.end("ROLLBACK")
    }
}

impl Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            if let Err(e) = self.conn.end("ROLLBACK") {
                tracing::warn!(error = %e, "rolling back a transaction failed");
            }
        }
    }
}

/// A prepared statement.
pub struct Statement<'c> {
    inner: StatementInner<'c>,
}

enum StatementInner<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Postgres {
        conn: &'c postgres::Connection,
        sql: String,
    },
}

impl Statement<'_> {
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let values = params.values()?;
        match &mut self.inner {
            StatementInner::Sqlite(s) => Ok(s.execute(rusqlite::params_from_iter(
                values.into_iter().map(sqlite::Bind),
            ))?),
            StatementInner::Postgres { conn, sql } => conn.execute(sql, &values),
        }
    }

    /// Every row's `f`, read at once.
    pub fn query_map<T, P, F>(
        &mut self,
        params: P,
        mut f: F,
    ) -> Result<std::vec::IntoIter<Result<T>>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        let values = params.values()?;
        let mut out = Vec::new();
        match &mut self.inner {
            StatementInner::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(
                    values.into_iter().map(sqlite::Bind),
                ))?;
                while let Some(row) = rows.next()? {
                    out.push(f(&Row(RowInner::Sqlite(row))));
                }
            }
            StatementInner::Postgres { conn, sql } => {
                for row in conn.query(sql, &values)?.rows.iter() {
                    out.push(f(&Row(RowInner::Owned(row))));
                }
            }
        }
        Ok(out.into_iter())
    }

    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        let values = params.values()?;
        match &mut self.inner {
            StatementInner::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(
                    values.into_iter().map(sqlite::Bind),
                ))?;
                match rows.next()? {
                    Some(row) => f(&Row(RowInner::Sqlite(row))),
                    None => Err(Error::NoRows),
                }
            }
            StatementInner::Postgres { conn, sql } => {
                let result = conn.query(sql, &values)?;
                match result.rows.first() {
                    Some(row) => f(&Row(RowInner::Owned(row))),
                    None => Err(Error::NoRows),
                }
            }
        }
    }

    /// Whether the query returns a row.
    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        match self.query_row(params, |_| Ok(())) {
            Ok(()) => Ok(true),
            Err(Error::NoRows) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every row, read at once, to walk with [`Rows::next`].
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows> {
        let values = params.values()?;
        let rows = match &mut self.inner {
            StatementInner::Sqlite(s) => {
                let columns: Arc<[String]> =
                    s.column_names().into_iter().map(str::to_owned).collect();
                let n = columns.len();
                let mut rows = s.query(rusqlite::params_from_iter(
                    values.into_iter().map(sqlite::Bind),
                ))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let values = (0..n)
                        .map(|i| Ok(Value::from(sqlite::value(row.get_ref(i)?)?)))
                        .collect::<Result<Vec<_>>>()?;
                    out.push(OwnedRow {
                        columns: columns.clone(),
                        values,
                    });
                }
                out
            }
            StatementInner::Postgres { conn, sql } => conn.query(sql, &values)?.rows,
        };
        Ok(Rows {
            rows: rows.into_iter(),
            current: None,
        })
    }

    pub fn column_names(&self) -> Vec<String> {
        match &self.inner {
            StatementInner::Sqlite(s) => s.column_names().into_iter().map(str::to_owned).collect(),
            StatementInner::Postgres { conn, sql } => conn.columns(sql).unwrap_or_default(),
        }
    }

    pub fn column_count(&self) -> usize {
        match &self.inner {
            StatementInner::Sqlite(s) => s.column_count(),
            StatementInner::Postgres { .. } => self.column_names().len(),
        }
    }
}

/// A query's rows, walked one at a time.
pub struct Rows {
    rows: std::vec::IntoIter<OwnedRow>,
    current: Option<OwnedRow>,
}

impl Rows {
    #[allow(clippy::should_implement_trait)] // rusqlite's shape: fallible, lends the row
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        self.current = self.rows.next();
        Ok(self.current.as_ref().map(|r| Row(RowInner::Owned(r))))
    }
}

/// A row held in memory: PostgreSQL's, or SQLite's read through [`Statement::query`].
#[derive(Debug, Clone)]
pub struct OwnedRow {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

/// One row of a result.
pub struct Row<'a>(RowInner<'a>);

enum RowInner<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Owned(&'a OwnedRow),
}

/// A column by position or by name.
pub trait RowIndex {
    fn position(&self, row: &Row<'_>) -> Result<usize>;
}

impl RowIndex for usize {
    fn position(&self, _: &Row<'_>) -> Result<usize> {
        Ok(*self)
    }
}

impl RowIndex for &str {
    fn position(&self, row: &Row<'_>) -> Result<usize> {
        match row.0 {
            RowInner::Sqlite(r) => Ok(r.as_ref().column_index(self)?),
            RowInner::Owned(r) => r
                .columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(self))
                .ok_or_else(|| Error::Conversion(format!("no column named {self}"))),
        }
    }
}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromSql>(&self, index: I) -> Result<T> {
        let i = index.position(self)?;
        T::column_result(self.get_ref(i)?)
            .map_err(|e| Error::Conversion(format!("column {i}: {e}")))
    }

    pub fn get_ref(&self, index: usize) -> Result<ValueRef<'_>> {
        match self.0 {
            RowInner::Sqlite(r) => sqlite::value(r.get_ref(index)?),
            RowInner::Owned(r) => r
                .values
                .get(index)
                .map(Value::as_ref)
                .ok_or_else(|| Error::Conversion(format!("no column {index}"))),
        }
    }
}

/// What a statement's parameters can be given as: a tuple, an array, `params![…]`, or `()`.
pub trait Params {
    fn values(&self) -> Result<Vec<ValueRef<'_>>>;
}

impl Params for () {
    fn values(&self) -> Result<Vec<ValueRef<'_>>> {
        Ok(Vec::new())
    }
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Result<Vec<ValueRef<'_>>> {
        self.iter().map(|v| v.to_sql()).collect()
    }
}

impl Params for [&(dyn ToSql + Send + Sync); 0] {
    fn values(&self) -> Result<Vec<ValueRef<'_>>> {
        Ok(Vec::new())
    }
}

impl<T: ToSql> Params for Vec<T> {
    fn values(&self) -> Result<Vec<ValueRef<'_>>> {
        self.iter().map(|v| v.to_sql()).collect()
    }
}

macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn values(&self) -> Result<Vec<ValueRef<'_>>> {
                self.iter().map(|v| v.to_sql()).collect()
            }
        }
    )*};
}

array_params!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);

macro_rules! tuple_params {
    ($(($($name:ident $index:tt),+))*) => {$(
        impl<$($name: ToSql),+> Params for ($($name,)+) {
            fn values(&self) -> Result<Vec<ValueRef<'_>>> {
                Ok(vec![$(self.$index.to_sql()?),+])
            }
        }
    )*};
}

tuple_params! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15)
}

/// `query_row(…).optional()`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub use crate::params;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_seed_programmes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        Db::open(&path).unwrap();
        let db = Db::open(&path).unwrap(); // second open applies nothing twice
        let n: i64 = db
            .lock()
            .query_row("SELECT count(*) FROM programmes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, crate::base::programme::Programme::ALL.len() as i64);
    }

    /// Two processes' connections (two `Db`s on one file), each running read-then-write
    /// transactions as fast as it can: with deferred transactions most of one side's commits failed
    /// with "database is locked"; with immediate ones every transaction waits and succeeds.
    #[test]
    fn read_then_write_transactions_of_two_connections_never_fail_locked() {
        // On SQLite and, when the tests have a server, on PostgreSQL: each transaction reads the
        // count and writes it; serialised writers see every other's row, so the counts written
        // are 0..300, each once (a lost update would write one twice).
        let dir = tempfile::tempdir().unwrap();
        let target = testing::target(dir.path());
        Db::open_target(&target)
            .unwrap()
            .lock()
            .execute_batch("CREATE TABLE t (who INTEGER, n INTEGER)")
            .unwrap();
        let run = |who: i64| {
            let db = Db::open_target(&target).unwrap();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for _ in 0..150 {
                    let mut conn = db.lock();
                    let result = conn.transaction().and_then(|tx| {
                        let n: i64 = tx.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
                        tx.execute("INSERT INTO t (who, n) VALUES (?1, ?2)", (who, n))?;
                        tx.commit()
                    });
                    if let Err(e) = result {
                        failures.push(e.to_string());
                    }
                }
                failures
            })
        };
        let (a, b) = (run(1), run(2));
        let failures: Vec<String> = a
            .join()
            .unwrap()
            .into_iter()
            .chain(b.join().unwrap())
            .collect();
        assert!(
            failures.is_empty(),
            "{} failed: {:?}",
            failures.len(),
            failures.first()
        );
        let (n, distinct): (i64, i64) = Db::open_target(&target)
            .unwrap()
            .lock()
            .query_row("SELECT count(*), count(DISTINCT n) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, distinct), (300, 300));
    }

    /// The PostgreSQL schema is SQLite's: the same tables, columns and named indexes.
    #[test]
    fn both_backends_have_the_same_tables_columns_and_indexes() {
        let Some(server) = testing::postgres_server() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Db::open(&dir.path().join("s.sqlite")).unwrap();
        let pg = Db::open_target(&Target::Postgres(PostgresTarget {
            url: testing::fresh_postgres_database(&server),
            password_file: None,
            ca_file: None,
        }))
        .unwrap();
        let list = |db: &Db, sql: &str| -> Vec<(String, String)> {
            db.lock()
                .prepare(sql)
                .unwrap()
                .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_>>()
                .unwrap()
        };
        let sqlite_columns = list(
            &sqlite,
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
              WHERE m.type = 'table' ORDER BY 1, 2",
        );
        let pg_columns = list(
            &pg,
            "SELECT table_name::text, column_name::text FROM information_schema.columns
              WHERE table_schema = 'public' AND table_name <> 'schema_version' ORDER BY 1, 2",
        );
        assert_eq!(sqlite_columns, pg_columns);
        let sqlite_indexes = list(
            &sqlite,
            "SELECT tbl_name, name FROM sqlite_master
              WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%' ORDER BY 1, 2",
        );
        let pg_indexes = list(
            &pg,
            "SELECT tablename::text, indexname::text FROM pg_indexes
              WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'
              ORDER BY 1, 2",
        );
        assert_eq!(sqlite_indexes, pg_indexes);
    }

    /// What the store modules write once reads the same on both: types, the rewritten spellings,
    /// a refused duplicate.
    #[test]
    fn one_statement_text_means_the_same_on_both_backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = testing::open(dir.path());
        let conn = db.lock();
        conn.execute_batch(
            "CREATE TABLE v (k TEXT PRIMARY KEY, i INTEGER, r REAL, b BLOB, t TEXT)",
        )
        .unwrap();
        let inserted = conn
            .execute(
                "INSERT INTO v (k, i, r, b, t) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    "a",
                    1i64 << 40,
                    0.25f64,
                    vec![0u8, 255],
                    Option::<String>::None
                ],
            )
            .unwrap();
        assert_eq!(inserted, 1);
        let ignored = conn
            .execute("INSERT OR IGNORE INTO v (k, i) VALUES (?1, ?2)", ("a", 2))
            .unwrap();
        assert_eq!(ignored, 0);
        let again = conn.execute("INSERT INTO v (k, i) VALUES (?1, ?2)", ("a", 3));
        assert!(again.unwrap_err().is_unique_violation());
        conn.execute("INSERT INTO v (k, i, r) VALUES ('b', 5, 1.5)", ())
            .unwrap();
        let row: (i64, f64, Vec<u8>, Option<String>, bool) = conn
            .query_row("SELECT i, r, b, t, i > 0 FROM v WHERE k = ?", ["a"], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap();
        assert_eq!(row, (1 << 40, 0.25, vec![0, 255], None, true));
        // sum() of integers is NUMERIC on PostgreSQL; it reads as an integer.
        let (sum, most, least): (i64, i64, f64) = conn
            .query_row(
                "SELECT (SELECT sum(i) FROM v), max(i, ?1), min(r, 0.5) FROM v WHERE k = 'b'",
                [7],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((sum, most, least), ((1 << 40) + 5, 7, 0.5));
        let keys: Vec<String> = conn
            .prepare("SELECT k FROM v WHERE i IN (SELECT CAST(value AS INTEGER) FROM json_each(?1)) ORDER BY k")
            .unwrap()
            .query_map(["[5, 1099511627776]"], |r| r.get(0))
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(
            conn.query_row("SELECT k FROM v WHERE k = 'none'", (), |r| r
                .get::<_, String>(0))
                .optional()
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        Db::open(&path).unwrap();
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Db::open(&path),
            Err(Error::TooNew { found: 99, .. })
        ));
    }
}
