//! The database the library's own tests use: a new PostgreSQL database when
//! `NACHTWACHT_TEST_POSTGRES` names a server (see `tests/common`), SQLite otherwise.

use std::path::Path;

use super::{Db, PostgresTarget, Target};

/// The test server's connection string, or `None` (and a note, once) for SQLite.
pub fn postgres_server() -> Option<String> {
    static SKIPPED: std::sync::Once = std::sync::Once::new();
    let server = std::env::var("NACHTWACHT_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if server.is_none() {
        SKIPPED.call_once(|| {
            eprintln!("note: PostgreSQL half skipped (NACHTWACHT_TEST_POSTGRES is not set)")
        });
    }
    server
}

/// A new empty database on `server`: its connection string.
pub fn fresh_postgres_database(server: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "nwu_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let admin = format!("{server} dbname=postgres");
    let create = format!("CREATE DATABASE {name}");
    std::thread::spawn(move || {
        let mut client = ::postgres::Client::connect(&admin, ::postgres::NoTls)
            .unwrap_or_else(|e| panic!("NACHTWACHT_TEST_POSTGRES ({admin}): {e}"));
        client.batch_execute(&create).unwrap();
    })
    .join()
    .unwrap();
    format!("{server} dbname={name}")
}

/// The tests' database: PostgreSQL when there is a server, else an SQLite file in `dir`.
pub fn target(dir: &Path) -> Target {
    match postgres_server() {
        Some(server) => Target::Postgres(PostgresTarget {
            url: fresh_postgres_database(&server),
            password_file: None,
            ca_file: None,
        }),
        None => Target::Sqlite(dir.join("s.sqlite")),
    }
}

/// Opens [`target`].
pub fn open(dir: &Path) -> Db {
    Db::open_target(&target(dir)).expect("the tests' database")
}

/// `config` with its state in the tests' database (and its ciphertexts in the tests' object
/// storage, when there is one: `crate::base::blobs::testing`).
pub fn config(config: crate::base::config::Config) -> crate::base::config::Config {
    let mut config = crate::base::blobs::testing::config(config);
    if let Some(server) = postgres_server() {
        config.database =
            crate::base::config::DatabaseConfig::postgres(&fresh_postgres_database(&server), None);
    }
    config
}
