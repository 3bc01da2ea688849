//! PostgreSQL: the shared state store of several nachtwacht processes.
//!
//! The client is `postgres` (rust-postgres, the blocking face of `tokio-postgres`): the store
//! modules are synchronous, short statements under a mutex, and rust-postgres is the most used
//! and longest kept PostgreSQL driver in Rust, with no ORM or compile-time database between the
//! SQL and the server. Its blocking client runs its own small runtime and must not be called
//! from inside a tokio worker, where most statements come from; so each connection lives on a
//! thread of its own and a statement is a message to it and its answer a message back (as a
//! mutex-held SQLite connection, the caller blocks for the statement's time).
//!
//! Values cross as [`Value`]s: parameters bind to whatever type the server inferred for them
//! (an integer to BIGINT or DOUBLE PRECISION, text to TEXT or JSON), and columns read back as
//! SQLite's five storage classes (BOOLEAN as 0/1, NUMERIC — a `sum` of integers — as an integer
//! when whole).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use ::postgres::types::{FromSql, IsNull, ToSql, Type};
use bytes::{BufMut, BytesMut};

use super::{Error, OwnedRow, Result, Value, ValueRef};

/// Begins a writer's transaction: the advisory lock is the database's one write lock (see the
/// module comment of `db`), held until COMMIT or ROLLBACK.
pub(super) const BEGIN: &str = "BEGIN; SELECT pg_advisory_xact_lock(7236828093417062656)";

/// Held while migrating, so two processes starting at once do not both create the schema.
const MIGRATION_LOCK: i64 = 7236828093417062657;

/// Where the database is: a connection URL (`postgres://user@host:port/db?sslmode=require`, or
/// `host=/run/postgresql` for the local socket) without its password, which is read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresTarget {
    pub url: String,
    pub password_file: Option<PathBuf>,
    /// Certificate authorities (PEM) to verify the server with when the URL asks for TLS;
    /// without one, the Web PKI's roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Display for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A password written into the URL by mistake is not repeated in errors or logs.
        match self.url.parse::<::postgres::Config>().ok() {
            Some(config) => {
                let hosts: Vec<String> = config
                    .get_hosts()
                    .iter()
                    .map(|h| match h {
                        ::postgres::config::Host::Tcp(h) => h.clone(),
                        ::postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .collect();
                write!(
                    f,
                    "{} on {} as {}",
                    config.get_dbname().unwrap_or("(default database)"),
                    hosts.join(","),
                    config.get_user().unwrap_or("(current user)")
                )
            }
            None => write!(f, "(an unreadable connection URL)"),
        }
    }
}

impl PostgresTarget {
    fn config(&self) -> Result<::postgres::Config> {
        let fail = |reason: String| Error::Connect {
            target: self.to_string(),
            reason,
        };
        let mut config: ::postgres::Config = self
            .url
            .parse()
            .map_err(|e| fail(format!("the URL does not parse: {e}")))?;
        if config.get_password().is_some() {
            return Err(fail(
                "the URL carries a password; put it in the file `password_file` names".into(),
            ));
        }
        if let Some(file) = &self.password_file {
            let password = std::fs::read_to_string(file)
                .map_err(|e| fail(format!("reading the password file {}: {e}", file.display())))?;
            config.password(password.trim_end_matches(['\n', '\r']));
        }
        if config.get_application_name().is_none() {
            config.application_name("nachtwacht");
        }
        Ok(config)
    }

    fn connect(&self) -> Result<::postgres::Client> {
        let config = self.config()?;
        let fail = |reason: String| Error::Connect {
            target: self.to_string(),
            reason,
        };
        let client = if config.get_ssl_mode() == ::postgres::config::SslMode::Disable {
            config.connect(::postgres::NoTls)
        } else {
            let mut roots = rustls::RootCertStore::empty();
            match &self.ca_file {
                Some(file) => {
                    let pem = std::fs::read(file)
                        .map_err(|e| fail(format!("reading {}: {e}", file.display())))?;
                    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                        let cert = cert.map_err(|e| fail(format!("{}: {e}", file.display())))?;
                        roots
                            .add(cert)
                            .map_err(|e| fail(format!("{}: {e}", file.display())))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        };
        client.map_err(|e| fail(e.to_string()))
    }
}

use rustls_pki_types::pem::PemObject;

enum Request {
    Execute(String, Vec<Value>),
    Query(String, Vec<Value>),
    Batch(String),
    Columns(String),
}

enum Reply {
    Count(u64),
    Rows(QueryResult),
    Done,
    Columns(Vec<String>),
}

pub(super) struct QueryResult {
    pub rows: Vec<OwnedRow>,
}

/// A connection: a handle to the thread that owns the client.
pub(super) struct Connection {
    requests: mpsc::Sender<Request>,
    replies: mpsc::Receiver<Result<Reply>>,
}

impl Connection {
    /// Starts the connection's thread, which connects and migrates before it answers.
    pub(super) fn open(target: &PostgresTarget) -> Result<Self> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, replies) = mpsc::channel::<Result<Reply>>();
        let target = target.clone();
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                // On this thread, not the caller's: the blocking client cannot start inside a
                // tokio runtime.
                let client = target.connect().and_then(|mut client| {
                    migrate(&mut client)?;
                    Ok(client)
                });
                match client {
                    Ok(client) => {
                        if outbox.send(Ok(Reply::Done)).is_ok() {
                            serve(target, client, inbox, outbox);
                        }
                    }
                    Err(e) => {
                        let _ = outbox.send(Err(e));
                    }
                }
            })
            .map_err(|e| Error::Connect {
                target: "(thread)".into(),
                reason: e.to_string(),
            })?;
        replies.recv().map_err(|_| Error::Gone)??;
        Ok(Self { requests, replies })
    }

    fn call(&self, request: Request) -> Result<Reply> {
        self.requests.send(request).map_err(|_| Error::Gone)?;
        self.replies.recv().map_err(|_| Error::Gone)?
    }

    pub(super) fn execute(&self, sql: &str, params: &[ValueRef<'_>]) -> Result<usize> {
        let params = params.iter().map(|v| Value::from(*v)).collect();
        match self.call(Request::Execute(sql.to_owned(), params))? {
            Reply::Count(n) => Ok(n as usize),
            _ => Err(Error::Gone),
        }
    }

    pub(super) fn query(&self, sql: &str, params: &[ValueRef<'_>]) -> Result<QueryResult> {
        let params = params.iter().map(|v| Value::from(*v)).collect();
        match self.call(Request::Query(sql.to_owned(), params))? {
            Reply::Rows(rows) => Ok(rows),
            _ => Err(Error::Gone),
        }
    }

    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        match self.call(Request::Batch(sql.to_owned()))? {
            Reply::Done => Ok(()),
            _ => Err(Error::Gone),
        }
    }

    pub(super) fn columns(&self, sql: &str) -> Result<Vec<String>> {
        match self.call(Request::Columns(sql.to_owned()))? {
            Reply::Columns(c) => Ok(c),
            _ => Err(Error::Gone),
        }
    }
}

fn server_error(e: ::postgres::Error) -> Error {
    let code = e.code().map(|c| c.code().to_owned());
    let message = match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {detail}", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    };
    Error::Postgres { code, message }
}

/// A prepared statement and its columns' names.
struct Prepared {
    statement: ::postgres::Statement,
    columns: Arc<[String]>,
}

/// The connection's thread: answers requests until the handle is dropped. A connection the
/// server closed (a restart, a failover) is opened again before the next request; a request
/// that was in flight fails with the server's error.
fn serve(
    target: PostgresTarget,
    mut client: ::postgres::Client,
    inbox: mpsc::Receiver<Request>,
    outbox: mpsc::Sender<Result<Reply>>,
) {
    let mut prepared: HashMap<String, Prepared> = HashMap::new();
    let mut in_transaction = false;
    for request in inbox {
        if client.is_closed() {
            match target.connect() {
                Ok(c) => {
                    client = c;
                    prepared.clear();
                    in_transaction = false;
                }
                Err(e) => {
                    if outbox.send(Err(e)).is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let statement = match &request {
            Request::Execute(sql, _)
            | Request::Query(sql, _)
            | Request::Batch(sql)
            | Request::Columns(sql) => sql.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        // The statement goes with its error: a log line names what failed.
        if let Request::Batch(sql) = &request {
            if sql.starts_with("BEGIN") {
                in_transaction = true;
            } else if sql == "COMMIT" || sql == "ROLLBACK" {
                in_transaction = false;
            }
        }
        let reply =
            answer(&mut client, &mut prepared, in_transaction, request).map_err(|e| match e {
                Error::Postgres { code, message } => Error::Postgres {
                    code,
                    message: format!("{message} (in: {})", truncate(&statement, 160)),
                },
                e => e,
            });
        if outbox.send(reply).is_err() {
            return;
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn prepare<'p>(
    client: &mut ::postgres::Client,
    prepared: &'p mut HashMap<String, Prepared>,
    in_transaction: bool,
    sql: &str,
    params: &[Value],
) -> Result<&'p Prepared> {
    if !prepared.contains_key(sql) {
        let translated = super::to_postgres(sql);
        // A statement that fails to prepare aborts the transaction it is in; a savepoint keeps
        // the transaction alive for the second attempt below (once per statement text, as
        // prepared statements are kept).
        if in_transaction {
            client
                .batch_execute("SAVEPOINT nw_prepare")
                .map_err(server_error)?;
        }
        let statement = match client.prepare(&translated) {
            Ok(s) => Ok(s),
            // A parameter whose type the statement does not show (`?1 IS NULL`) takes its
            // value's.
            Err(e)
                if e.code() == Some(&::postgres::error::SqlState::INDETERMINATE_DATATYPE)
                    || e.code() == Some(&::postgres::error::SqlState::AMBIGUOUS_PARAMETER) =>
            {
                if in_transaction {
                    client
                        .batch_execute("ROLLBACK TO SAVEPOINT nw_prepare")
                        .map_err(server_error)?;
                }
                // The types the parameters' other uses give them (see `without_null_tests`);
                // a parameter only ever tested for NULL takes its value's.
                let probe = client
                    .prepare(&super::dialect::without_null_tests(sql))
                    .map(|p| p.params().to_vec());
                let types: Vec<Type> = match probe {
                    Ok(types) if types.len() == params.len() => types,
                    _ => {
                        if in_transaction {
                            client
                                .batch_execute("ROLLBACK TO SAVEPOINT nw_prepare")
                                .map_err(server_error)?;
                        }
                        params.iter().map(type_of).collect()
                    }
                };
                client.prepare_typed(&translated, &types)
            }
            Err(e) => Err(e),
        };
        if in_transaction {
            let end = if statement.is_ok() {
                "RELEASE SAVEPOINT nw_prepare"
            } else {
                "ROLLBACK TO SAVEPOINT nw_prepare; RELEASE SAVEPOINT nw_prepare"
            };
            client.batch_execute(end).map_err(server_error)?;
        }
        let statement = statement.map_err(server_error)?;
        let columns = statement
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        prepared.insert(sql.to_owned(), Prepared { statement, columns });
    }
    Ok(&prepared[sql])
}

fn type_of(v: &Value) -> Type {
    match v {
        Value::Integer(_) => Type::INT8,
        Value::Real(_) => Type::FLOAT8,
        Value::Text(_) => Type::TEXT,
        Value::Blob(_) => Type::BYTEA,
        Value::Null => Type::TEXT,
    }
}

fn answer(
    client: &mut ::postgres::Client,
    prepared: &mut HashMap<String, Prepared>,
    in_transaction: bool,
    request: Request,
) -> Result<Reply> {
    match request {
        Request::Batch(sql) => {
            client.batch_execute(&sql).map_err(server_error)?;
            Ok(Reply::Done)
        }
        Request::Columns(sql) => {
            let p = prepare(client, prepared, in_transaction, &sql, &[])?;
            Ok(Reply::Columns(p.columns.to_vec()))
        }
        Request::Execute(sql, params) => {
            let p = prepare(client, prepared, in_transaction, &sql, &params)?;
            let binds: Vec<Bind<'_>> = params.iter().map(Bind).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b as _).collect();
            let n = client.execute(&p.statement, &refs).map_err(server_error)?;
            Ok(Reply::Count(n))
        }
        Request::Query(sql, params) => {
            let p = prepare(client, prepared, in_transaction, &sql, &params)?;
            let binds: Vec<Bind<'_>> = params.iter().map(Bind).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b as _).collect();
            let columns = p.columns.clone();
            let rows = client.query(&p.statement, &refs).map_err(server_error)?;
            let rows = rows
                .iter()
                .map(|row| {
                    let values = (0..row.len())
                        .map(|i| {
                            row.try_get::<_, Column>(i)
                                .map(|c| c.0)
                                .map_err(|e| Error::Conversion(e.to_string()))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok(OwnedRow {
                        columns: columns.clone(),
                        values,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Reply::Rows(QueryResult { rows }))
        }
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// A parameter, bound as the type the server expects for it.
#[derive(Debug)]
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        let wrong = || -> BoxError { format!("cannot bind {:?} as {ty}", self.0).into() };
        match (self.0, ty) {
            (Value::Null, _) => return Ok(IsNull::Yes),
            (Value::Integer(v), &Type::INT8) => out.put_i64(*v),
            (Value::Integer(v), &Type::INT4) => out.put_i32(i32::try_from(*v)?),
            (Value::Integer(v), &Type::INT2) => out.put_i16(i16::try_from(*v)?),
            (Value::Integer(v), &Type::FLOAT8) => out.put_f64(*v as f64),
            (Value::Integer(v), &Type::FLOAT4) => out.put_f32(*v as f32),
            (Value::Integer(v), &Type::BOOL) => out.put_u8(u8::from(*v != 0)),
            (Value::Integer(v), t) if is_text(t) => out.put_slice(v.to_string().as_bytes()),
            (Value::Real(v), &Type::FLOAT8) => out.put_f64(*v),
            (Value::Real(v), &Type::FLOAT4) => out.put_f32(*v as f32),
            (Value::Real(v), &Type::INT8) if v.fract() == 0.0 => out.put_i64(*v as i64),
            (Value::Real(v), t) if is_text(t) => out.put_slice(v.to_string().as_bytes()),
            (Value::Text(s), t) if is_text(t) || *t == Type::JSON => out.put_slice(s.as_bytes()),
            (Value::Text(s), &Type::JSONB) => {
                out.put_u8(1);
                out.put_slice(s.as_bytes());
            }
            (Value::Text(s), &Type::INT8) => out.put_i64(s.parse().map_err(|_| wrong())?),
            (Value::Blob(b), &Type::BYTEA) => out.put_slice(b),
            (Value::Blob(b), t) if is_text(t) => out.put_slice(std::str::from_utf8(b)?.as_bytes()),
            _ => return Err(wrong()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    ::postgres::types::to_sql_checked!();
}

fn is_text(t: &Type) -> bool {
    matches!(
        *t,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    )
}

/// A column read back as one of SQLite's storage classes.
struct Column(Value);

impl<'a> FromSql<'a> for Column {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, BoxError> {
        Ok(Column(match *ty {
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Integer(i16::from_sql(ty, raw)?.into()),
            Type::OID => Value::Integer(u32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Integer(bool::from_sql(ty, raw)?.into()),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::JSONB => {
                Value::Text(std::str::from_utf8(raw.get(1..).unwrap_or_default())?.to_owned())
            }
            _ => Value::Text(std::str::from_utf8(raw)?.to_owned()),
        }))
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Self, BoxError> {
        Ok(Column(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// NUMERIC's binary form (digit count, weight, sign, scale, then base-10000 digits): a whole
/// number as an integer where it fits, anything else as a real.
fn numeric(raw: &[u8]) -> std::result::Result<Value, BoxError> {
    let word = |i: usize| -> std::result::Result<u16, BoxError> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a numeric value is cut short".into())
    };
    let digits = word(0)? as usize;
    let weight = word(1)? as i16 as i32;
    let sign = word(2)?;
    let scale = word(3)?;
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let negative = sign == 0x4000;
    let mut whole: Option<i64> = Some(0);
    let mut real = 0f64;
    for i in 0..digits {
        let d = word(4 + i)? as i64;
        let power = weight - i as i32;
        real += d as f64 * 10000f64.powi(power);
        whole = match whole {
            Some(w) if power >= 0 => 10000i64
                .checked_pow(power as u32)
                .and_then(|p| d.checked_mul(p))
                .and_then(|v| w.checked_add(v)),
            Some(w) if d == 0 => Some(w),
            _ => None,
        };
    }
    Ok(match whole {
        Some(w) if scale == 0 || real.fract() == 0.0 => {
            Value::Integer(if negative { -w } else { w })
        }
        _ => Value::Real(if negative { -real } else { real }),
    })
}

/// The SQLite migration `postgres_schema.sql` equals: PostgreSQL starts there.
const BASELINE: i64 = 14;

/// PostgreSQL's migrations after its baseline: a migration added to SQLite's list is added here
/// in PostgreSQL's spelling, at the same position.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token BIGINT NOT NULL,
    until_ms BIGINT NOT NULL
);
"#,
    r#"
ALTER TABLE bundles ADD COLUMN segment TEXT;
ALTER TABLE bundles ADD COLUMN segment_offset BIGINT;
CREATE INDEX bundles_segment ON bundles(segment) WHERE segment IS NOT NULL;
"#,
];

fn migrate(client: &mut ::postgres::Client) -> Result<()> {
    let baseline = BASELINE;
    let supported = baseline + MIGRATIONS.len() as i64;
    let mut tx = client.transaction().map_err(server_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(server_error)?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .map_err(server_error)?
        .get(0);
    if !exists {
        tx.batch_execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
            .map_err(server_error)?;
    }
    let version: i64 = match tx
        .query_opt("SELECT version FROM schema_version", &[])
        .map_err(server_error)?
    {
        Some(row) => row.get(0),
        None => 0,
    };
    if version > supported {
        return Err(Error::TooNew {
            found: version,
            supported,
        });
    }
    if version == 0 {
        tx.batch_execute(include_str!("postgres_schema.sql"))
            .map_err(server_error)?;
        for programme in crate::base::programme::Programme::ALL {
            tx.execute(
                "INSERT INTO programmes (name, signals) VALUES ($1, $2)",
                &[&programme.as_str(), &programme.signals()],
            )
            .map_err(server_error)?;
        }
        tx.execute(
            "INSERT INTO notifier_state (id, last_alert_id, first_alert_id) VALUES (1, 0, 0)",
            &[],
        )
        .map_err(server_error)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&baseline],
        )
        .map_err(server_error)?;
    }
    let from = version.max(baseline);
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip((from - baseline) as usize)
    {
        tx.batch_execute(sql).map_err(server_error)?;
        tx.execute(
            "UPDATE schema_version SET version = $1",
            &[&(baseline + i as i64 + 1)],
        )
        .map_err(server_error)?;
    }
    tx.commit().map_err(server_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(words: &[u16]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    /// A migration added to SQLite's list is added to PostgreSQL's too.
    #[test]
    fn both_backends_have_every_migration() {
        assert_eq!(
            BASELINE + MIGRATIONS.len() as i64,
            super::super::sqlite::MIGRATIONS.len() as i64
        );
    }

    #[test]
    fn numeric_reads_whole_sums_as_integers_and_fractions_as_reals() {
        // 123456789 = 1·10000² + 2345·10000 + 6789
        let v = numeric(&numeric_bytes(&[3, 2, 0, 0, 1, 2345, 6789])).unwrap();
        assert_eq!(v, Value::Integer(123_456_789));
        let v = numeric(&numeric_bytes(&[1, 0, 0x4000, 0, 42])).unwrap();
        assert_eq!(v, Value::Integer(-42));
        // 1.5 = 1 + 5000·10000⁻¹, scale 1
        let v = numeric(&numeric_bytes(&[2, 0, 0, 1, 1, 5000])).unwrap();
        assert_eq!(v, Value::Real(1.5));
        assert_eq!(
            numeric(&numeric_bytes(&[0, 0, 0, 0])).unwrap(),
            Value::Integer(0)
        );
    }
}
