//! `nachtwacht check`: everything a restart depends on, checked at once and reported together,
//! each problem with its fix: configuration, rule files, retention policy, keys, certificates
//! (a warning 30 days before one expires), permissions, storage and the database. `serve` runs
//! the same check at start-up and refuses to start on a problem; it logs the warnings.
//!
//! Reads only: nothing is created, recorded or repaired.

use std::path::Path;

use crate::base::config::Config;
use crate::base::datadir::DataDir;

/// How long before a certificate expires `check` starts to warn.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The server must not start like this.
    Problem,
    /// It may start, but someone has to act soon.
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Config,
    Rules,
    Retention,
    Keys,
    Certificates,
    Permissions,
    Storage,
    Database,
}

impl Area {
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Config => "config",
            Area::Rules => "rules",
            Area::Retention => "retention",
            Area::Keys => "keys",
            Area::Certificates => "certificates",
            Area::Permissions => "permissions",
            Area::Storage => "storage",
            Area::Database => "database",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub area: Area,
    pub severity: Severity,
    pub what: String,
    pub fix: String,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Problem)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }

    pub fn is_ok(&self) -> bool {
        self.problems().next().is_none()
    }

    fn add(&mut self, area: Area, severity: Severity, what: impl Into<String>, fix: &str) {
        self.findings.push(Finding {
            area,
            severity,
            what: what.into(),
            fix: fix.to_string(),
        });
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for x in &self.findings {
            let mark = match x.severity {
                Severity::Problem => "problem",
                Severity::Warning => "warning",
            };
            writeln!(
                f,
                "{mark} [{}] {}\n  fix: {}",
                x.area.as_str(),
                x.what,
                x.fix
            )?;
        }
        Ok(())
    }
}

/// Why `key` (PEM) is not the key `cert` (PEM) certifies, if it is not; `None` when they
/// belong together or either cannot be read (reported elsewhere).
fn key_mismatch(cert: &Path, key: &Path) -> Option<String> {
    let cert_pem = std::fs::read_to_string(cert).ok()?;
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(key).ok()?).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let parsed = pem.parse_x509().ok()?;
    let certified = parsed.public_key().raw.to_vec();
    (certified != rcgen::PublicKeyData::subject_public_key_info(&key))
        .then(|| format!("{} is for another key", cert.display()))
}

/// How to replace a certificate that ends.
fn renew_fix(name: &str) -> &'static str {
    if name == "server" {
        "`nachtwacht keys server-cert --data-dir …`, then restart the server"
    } else {
        "a new CA means new certificates for the server and every station: plan it with the \
         stations' operators (docs/operations.md, Certificates)"
    }
}

/// Checks the data directory at `root` as of `now_ms`.
pub fn run(root: &Path, now_ms: i64) -> Report {
    use Severity::*;
    let dir = DataDir::new(root);
    let mut r = Report::default();
    let config = match Config::load(&dir.config()) {
        Ok(c) => Some(c),
        Err(e) => {
            r.add(
                Area::Config,
                Problem,
                e.to_string(),
                "edit nachtwacht.toml (docs/operations.md lists the keys); \
                 `nachtwacht check` again",
            );
            None
        }
    };

    match DataDir::new(root).check_private() {
        Ok(Ok(())) => {}
        Ok(Err(problem)) => r.add(
            Area::Permissions,
            Problem,
            format!("refusing to serve from {}: {problem}", root.display()),
            &format!("chmod -R go-rwx {}", root.display()),
        ),
        Err(e) => r.add(
            Area::Permissions,
            Problem,
            format!("cannot check the permissions of {}: {e}", root.display()),
            "run as the service account that owns the data directory",
        ),
    }

    for p in crate::evaluate::rules_files::problems(&dir) {
        r.add(
            Area::Rules,
            Problem,
            p,
            "correct the rule file (docs/operations.md, Rule files), or delete it for the defaults",
        );
    }
    for p in crate::lifecycle::policy::problems(&dir) {
        r.add(
            Area::Retention,
            Problem,
            p,
            "correct retention.toml (docs/data-lifecycle.md)",
        );
    }

    let restore_keys = "restore it from the key backup (`nachtwacht backup --with-keys`)";
    if let Err(e) = crate::trust::secrets::load_age_identities(&dir.age_identity()) {
        r.add(
            Area::Keys,
            Problem,
            format!("age identity: {e}"),
            restore_keys,
        );
    }
    if let Err(e) = crate::trust::pseudonym::Pseudonymiser::load(&dir) {
        r.add(
            Area::Keys,
            Problem,
            format!("pseudonym keys: {e}"),
            restore_keys,
        );
    }
    if let Some(p) = crate::trust::audit::checkpoint::signing_key_problem(&dir) {
        r.add(
            Area::Keys,
            Problem,
            format!("audit signing key: {p}"),
            restore_keys,
        );
    }
    for (name, key) in [("CA", dir.ca_key()), ("server", dir.server_key())] {
        let readable = std::fs::read_to_string(&key)
            .map_err(|e| e.to_string())
            .and_then(|pem| rcgen::KeyPair::from_pem(&pem).map_err(|e| e.to_string()));
        if let Err(e) = readable {
            r.add(
                Area::Keys,
                Problem,
                format!("{name} key {}: {e}", key.display()),
                restore_keys,
            );
        }
    }

    for (name, cert, key) in [
        ("CA", dir.ca_cert(), dir.ca_key()),
        ("server", dir.server_cert(), dir.server_key()),
    ] {
        // A key that is not the certificate's (a renewal cut short between its two renames).
        if let Some(problem) = key_mismatch(&cert, &key) {
            r.add(
                Area::Keys,
                Problem,
                format!("the {name} key does not belong to its certificate: {problem}"),
                renew_fix(name),
            );
        }
        match crate::trust::pki::validity_of(&cert) {
            Err(e) => r.add(
                Area::Certificates,
                Problem,
                format!("{name} certificate: {e}"),
                "restore pki/ from the backup",
            ),
            Ok((_, not_after)) if not_after <= now_ms => r.add(
                Area::Certificates,
                Problem,
                format!(
                    "the {name} certificate expired on {}",
                    crate::base::time::date_of(not_after)
                ),
                renew_fix(name),
            ),
            Ok((_, not_after))
                if not_after - now_ms < EXPIRY_WARNING_DAYS * crate::base::time::DAY_MS =>
            {
                r.add(
                    Area::Certificates,
                    Warning,
                    format!(
                        "the {name} certificate expires on {}",
                        crate::base::time::date_of(not_after)
                    ),
                    renew_fix(name),
                )
            }
            Ok(_) => {}
        }
    }

    // Object storage: a probe object written, read back and deleted. The ciphertexts'
    // folders below are then unused.
    let object_storage = config
        .as_ref()
        .is_some_and(|c| c.storage.backend == crate::base::config::StorageBackend::S3);
    if let Some(config) = config.as_ref().filter(|_| object_storage) {
        match crate::base::blobs::Blobs::open(&config.storage, &dir).and_then(|b| b.probe()) {
            Ok(()) => {}
            Err(e) => r.add(
                Area::Storage,
                Problem,
                format!("the object storage takes no durable write: {e}"),
                "check [storage] in nachtwacht.toml (endpoint, bucket, credentials) and that the \
                 store is up",
            ),
        }
    }
    let folders = if object_storage {
        vec![]
    } else {
        vec![dir.spool(), dir.evidence(), dir.quarantine()]
    };
    for folder in folders {
        // A folder made when first needed: the data directory it will be made in must take it.
        let folder = if folder.exists() {
            folder
        } else {
            root.to_path_buf()
        };
        if let Err(e) = super::takes_durable_write(&folder) {
            r.add(
                Area::Storage,
                Problem,
                format!("{} takes no durable write: {e}", folder.display()),
                "give the service account its data directory back, or free the file system",
            );
        }
    }
    if let Some(config) = &config {
        let reserve = config.ingest.min_free_disk_bytes;
        match crate::base::fsio::available_bytes(root) {
            Ok(free) if free < reserve => r.add(
                Area::Storage,
                Warning,
                format!("{free} bytes free, below the reserve of {reserve}: uploads are refused"),
                "free space, or move the data directory to a larger file system",
            ),
            Ok(_) => {}
            Err(e) => r.add(
                Area::Storage,
                Warning,
                format!("free space unknown: {e}"),
                "check the file system",
            ),
        }
    }

    // The database the configuration names: SQLite's file opened to read only; PostgreSQL's
    // server connected to (and its schema brought up to date, as `serve` would).
    let target = match &config {
        Some(config) => crate::base::db::Target::of(&config.database, &dir),
        None => crate::base::db::Target::Sqlite(dir.database()),
    };
    let opened = match &target {
        crate::base::db::Target::Sqlite(database) => {
            crate::base::db::Connection::open_sqlite_read_only(database).and_then(|c| {
                c.query_row("SELECT count(*) FROM audit_log", [], |r| r.get::<_, i64>(0))
            })
        }
        crate::base::db::Target::Postgres(_) => {
            crate::base::db::Db::open_target(&target).and_then(|db| {
                db.lock()
                    .query_row("SELECT count(*) FROM audit_log", [], |r| r.get::<_, i64>(0))
            })
        }
    };
    if let Err(e) = opened {
        let fix = match target.backend() {
            crate::base::db::Backend::Sqlite => {
                "restore the database from a backup (`nachtwacht restore`)"
            }
            crate::base::db::Backend::Postgres => {
                "check [database] url, password_file and ca_file, and that the server is up"
            }
        };
        r.add(Area::Database, Problem, format!("{target}: {e}"), fix);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_installation_passes_and_every_problem_is_reported_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        let now = crate::base::time::now_ms();
        crate::server::init::init(
            &root,
            &crate::base::db::testing::config(Config::default()),
            now,
        )
        .unwrap();
        let report = run(&root, now);
        assert!(report.findings.is_empty(), "{report}");

        // Three things broken at once: all three named, each with its fix.
        let dir = DataDir::new(&root);
        std::fs::write(
            dir.rules().join("alcohol.toml"),
            "threshold_g_dl = \"high\"\n",
        )
        .unwrap();
        std::fs::write(dir.age_identity(), "not a key").unwrap();
        std::fs::write(dir.retention_policy(), "[nonsense]\nkeep = 1\n").unwrap();
        let report = run(&root, now);
        let areas: Vec<Area> = report.problems().map(|f| f.area).collect();
        for area in [Area::Rules, Area::Keys, Area::Retention] {
            assert!(areas.contains(&area), "{area:?} not reported:\n{report}");
        }
        assert!(report.findings.iter().all(|f| !f.fix.is_empty()));
        assert!(!report.is_ok());

        // A server key that is not its certificate's (a renewal cut short) is named.
        let fresh = tempfile::tempdir().unwrap();
        let other = fresh.path().join("o");
        crate::server::init::init(&other, &Config::default(), now).unwrap();
        std::fs::copy(DataDir::new(&other).server_key(), dir.server_key()).unwrap();
        let report = run(&root, now);
        assert!(
            report
                .problems()
                .any(|f| f.area == Area::Keys && f.what.contains("server key does not belong")),
            "{report}"
        );

        // A certificate that expires within 30 days is a warning; expired, a problem.
        let ca = crate::trust::pki::validity_of(&dir.ca_cert()).unwrap().1;
        let report = run(&root, ca - 10 * crate::base::time::DAY_MS);
        assert!(
            report
                .warnings()
                .any(|f| f.area == Area::Certificates && f.what.contains("CA certificate expires")),
            "{report}"
        );
        let report = run(&root, ca + 1);
        assert!(
            report
                .problems()
                .any(|f| f.area == Area::Certificates && f.what.contains("expired")),
            "{report}"
        );
    }
}
