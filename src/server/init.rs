//! `nachtwacht init`: creates a data directory with everything a server needs: configuration, CA,
//! server certificate, age identity, pseudonymisation keys, the database, and an administrator
//! whose one-time password is returned once and stored only as an argon2id hash.

use std::path::Path;

use crate::base::config::Config;
use crate::base::datadir::DataDir;
use crate::base::db::Db;
use crate::{trust::audit, trust::pki, trust::secrets};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} already exists and is not empty; refusing to overwrite a data directory")]
    NotEmpty(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] pki::Error),
    #[error(transparent)]
    Secrets(#[from] secrets::Error),
    #[error(transparent)]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error(transparent)]
    Keys(#[from] crate::trust::keys::Error),
    #[error(transparent)]
    Account(#[from] crate::registry::accounts::Error),
    #[error(transparent)]
    Crl(#[from] crate::trust::crl::Error),
    #[error(transparent)]
    Rules(#[from] crate::evaluate::rules_files::Error),
    #[error(transparent)]
    Retention(#[from] crate::lifecycle::policy::Error),
    #[error("object storage: {0}")]
    Storage(#[from] crate::base::blobs::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What `init` tells the operator once.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub admin_username: String,
    pub admin_password: String,
    /// The administrator's TOTP secret (base32) and the same as an `otpauth://` URI.
    pub admin_totp_secret: String,
    pub admin_otpauth_uri: String,
    pub age_recipient: String,
}

pub const ADMIN_USERNAME: &str = "admin";

fn mkdir(path: &Path) -> Result<()> {
    crate::base::fsio::create_dir_all(path).map_err(|e| Error::Io {
        path: e.path,
        source: e.source,
    })
}

pub fn init(root: &Path, config: &Config, now_ms: i64) -> Result<InitReport> {
    crate::base::datadir::restrict_umask();
    if root.exists() {
        let mut entries = std::fs::read_dir(root).map_err(|source| Error::Io {
            path: root.display().to_string(),
            source,
        })?;
        if entries.next().is_some() {
            return Err(Error::NotEmpty(root.display().to_string()));
        }
    }
    let dir = DataDir::new(root);
    for d in [
        root.to_path_buf(),
        dir.pki(),
        dir.keys(),
        dir.spool(),
        dir.quarantine(),
    ] {
        mkdir(&d)?;
    }
    // An existing empty directory (made by a package or an operator) keeps its mode; make it ours.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| Error::Io {
                path: root.display().to_string(),
                source,
            },
        )?;
    }
    std::fs::write(dir.config(), config.to_toml()).map_err(|source| Error::Io {
        path: dir.config().display().to_string(),
        source,
    })?;
    crate::evaluate::rules_files::write_defaults(&dir)?;
    crate::lifecycle::policy::write_default(&dir)?;
    // A bucket that cannot take a write now is named before anything else is made for it.
    crate::base::blobs::Blobs::open(&config.storage, &dir)?.probe()?;

    let ca = pki::create_ca()?;
    std::fs::write(dir.ca_cert(), &ca.cert_pem).map_err(|source| Error::Io {
        path: dir.ca_cert().display().to_string(),
        source,
    })?;
    secrets::write_private(&dir.ca_key(), ca.key_pem.as_bytes())?;
    let server = pki::issue_server_cert(&ca, &config.ingest.server_name)?;
    std::fs::write(dir.server_cert(), &server.cert_pem).map_err(|source| Error::Io {
        path: dir.server_cert().display().to_string(),
        source,
    })?;
    secrets::write_private(&dir.server_key(), server.key_pem.as_bytes())?;

    let (identity, recipient) = secrets::generate_age_identity();
    secrets::write_private(
        &dir.age_identity(),
        format!("# nachtwacht server age identity, created {now_ms}\n# recipient: {recipient}\n{identity}\n")
            .as_bytes(),
    )?;
    secrets::write_private(
        &dir.pseudonym_keys(),
        secrets::PseudonymKeys::generate().to_toml().as_bytes(),
    )?;

    let db = Db::open_target(&crate::base::db::Target::of(&config.database, &dir))?;
    // The first administrator, with a random password and a TOTP secret, both shown once.
    let admin = crate::registry::accounts::create(
        &db,
        ADMIN_USERNAME,
        crate::registry::accounts::Role::Administrator,
        "system",
        now_ms,
    )?;
    {
        let mut conn = db.lock();
        let tx = conn.transaction()?;
        audit::append(
            &tx,
            now_ms,
            "system",
            "init",
            root.display().to_string().as_str(),
            &format!("{{\"age_recipient\":\"{recipient}\"}}"),
        )?;
        crate::trust::keys::register_recipient(&tx, &recipient, now_ms)?;
        // An empty revocation list from the start: the verifier then knows every certificate's status.
        crate::trust::crl::publish(&dir, &tx, now_ms)?;
        tx.commit()?;
    }
    // Nothing above synced the folders it wrote into: a power cut now could take the keys while
    // the database (synced) already names their recipient.
    crate::base::fsio::sync_tree(root).map_err(|e| Error::Io {
        path: e.path,
        source: e.source,
    })?;
    Ok(InitReport {
        admin_username: ADMIN_USERNAME.into(),
        admin_password: admin.password,
        admin_totp_secret: admin.totp_secret,
        admin_otpauth_uri: admin.otpauth_uri,
        age_recipient: recipient,
    })
}

/// A data directory made by [`init`] with the default configuration in a temporary directory, and
/// its context: for tests of the library's modules.
#[cfg(test)]
pub fn temporary() -> (tempfile::TempDir, crate::base::Context) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let root = tmp.path().join("data");
    init(
        &root,
        &crate::base::db::testing::config(Config::default()),
        crate::base::time::now_ms(),
    )
    .expect("init");
    let ctx = crate::base::Context::open(&root).expect("open");
    (tmp, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_everything_with_private_keys_0600_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let report = init(&root, &Config::default(), 1).unwrap();
        assert_eq!(report.admin_password.len(), 24);
        assert!(crate::registry::accounts::totp_code(&report.admin_totp_secret, 0).is_some());
        let dir = DataDir::new(&root);
        for p in [
            dir.config(),
            dir.ca_cert(),
            dir.server_cert(),
            dir.database(),
        ] {
            assert!(p.exists(), "{}", p.display());
        }
        #[cfg(unix)]
        for p in [
            dir.ca_key(),
            dir.server_key(),
            dir.age_identity(),
            dir.pseudonym_keys(),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let db = Db::open(&dir.database()).unwrap();
        let hash: String = db
            .lock()
            .query_row(
                "SELECT password_hash FROM accounts WHERE username = 'admin'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains(&report.admin_password));

        let again = init(&root, &Config::default(), 2).unwrap_err();
        assert!(matches!(again, Error::NotEmpty(_)));
    }
}
