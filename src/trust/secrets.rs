//! Secret material on disk: the server's age identities and the pseudonymisation keys.
//! Every secret file is created with mode 0600 and never overwritten.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use rand::RngCore;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Creates `path` with mode 0600 and writes `bytes`, durably (the file and then its folder are
/// synced: a key that a power cut can take while what it signed survives stops the server);
/// fails if the file exists.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    sync_parent(path)
}

/// Syncs the directory holding `path`, so that its entry survives a power cut.
fn sync_parent(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    nachtwacht_station::durable::sync_dir(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })
}

/// Creates `path` as a mode-0600 file holding `bytes` unless it exists, durably, such that
/// whoever sees the name sees the whole content: the bytes go to a temporary file of this process
/// (`fsio::temp_path`), synced, which is then linked to `path` (failing if the name exists) and removed.
/// Several processes creating one key on first use at once all end up reading the one that was
/// linked first. Returns whether this call created it.
pub fn create_private_once(path: &Path, bytes: &[u8]) -> Result<bool> {
    let tmp = crate::base::fsio::temp_path(path.parent().unwrap_or(Path::new(".")));
    write_private(&tmp, bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let removed = std::fs::remove_file(&tmp);
    let created = match linked {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(source) => {
            return Err(Error::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    removed.map_err(|source| Error::Io {
        path: tmp.display().to_string(),
        source,
    })?;
    sync_parent(path)?;
    Ok(created)
}

/// Removes the copies of keys whose creation ([`create_private_once`]) a crash interrupted: the
/// temporary files in `dir` whose writer on this machine is gone, or that are older than ten
/// minutes (a node elsewhere sharing the directory finishes a key in well under that). Returns
/// how many went.
pub fn remove_interrupted_creations(dir: &Path) -> Result<usize> {
    const WRITER_DONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(600);
    crate::base::fsio::remove_orphaned_temps(dir, WRITER_DONE_WITHIN).map_err(|e| Error::Io {
        path: e.path,
        source: e.source,
    })
}

/// Replaces `path` atomically with a new mode-0600 file holding `bytes` (temporary file, fsync,
/// rename, directory fsync): a crash leaves the old content or the new, never a mix.
pub fn replace_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| Error::Io {
                path: dir.display().to_string(),
                source,
            })?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A new age identity, as the text written to the identity file.
pub fn generate_age_identity() -> (String, String) {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    (id.to_string().expose_secret().to_string(), recipient)
}

/// The server's age identities, newest first. Lines starting with `#` are comments.
pub fn load_age_identities(path: &Path) -> Result<Vec<age::x25519::Identity>> {
    let text = read(path)?;
    let ids = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            age::x25519::Identity::from_str(l).map_err(|e| Error::Invalid {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        return Err(Error::Invalid {
            path: path.display().to_string(),
            reason: "no age identity".into(),
        });
    }
    Ok(ids)
}

/// Keys of the keyed pseudonyms, one per domain, with a version so they can be rotated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PseudonymKeys {
    pub version: u32,
    /// Hex key for operational pseudonyms (raw datasets, alerts).
    pub operational: String,
    /// Hex key for research pseudonyms (the research dataset only).
    pub research: String,
}

impl PseudonymKeys {
    pub fn generate() -> Self {
        let mut op = [0u8; 32];
        let mut re = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut op);
        rand::thread_rng().fill_bytes(&mut re);
        Self {
            version: 1,
            operational: hex::encode(op),
            research: hex::encode(re),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let keys: Self = toml::from_str(&read(path)?).map_err(|e| Error::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        for (name, k) in [
            ("operational", &keys.operational),
            ("research", &keys.research),
        ] {
            if hex::decode(k).map(|b| b.len()) != Ok(32) {
                return Err(Error::Invalid {
                    path: path.display().to_string(),
                    reason: format!("{name} key must be 32 bytes of hex"),
                });
            }
        }
        Ok(keys)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("keys serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_private(&p, b"secret").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(write_private(&p, b"other").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
    }

    #[test]
    fn age_identity_round_trips_and_keys_validate() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, recipient) = generate_age_identity();
        let p = dir.path().join("id");
        write_private(&p, format!("# created by test\n{secret}\n").as_bytes()).unwrap();
        let ids = load_age_identities(&p).unwrap();
        assert_eq!(ids[0].to_public().to_string(), recipient);

        let kp = dir.path().join("keys.toml");
        write_private(&kp, PseudonymKeys::generate().to_toml().as_bytes()).unwrap();
        assert_eq!(PseudonymKeys::load(&kp).unwrap().version, 1);
        let bad = dir.path().join("bad.toml");
        write_private(
            &bad,
            b"version = 1\noperational = \"ab\"\nresearch = \"cd\"\n",
        )
        .unwrap();
        assert!(PseudonymKeys::load(&bad).is_err());
    }
}
