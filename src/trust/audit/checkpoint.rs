//! The chain's head, anchored outside the database. The hash chain shows that no entry was changed
//! *given* its head; someone who rewrites an entry and recomputes every later hash produces a chain
//! that verifies, with only a different head. So the server writes the head (entry number and
//! hash) into a signed checkpoint file per day, `audit/checkpoints/<YYYY-MM-DD>.json`, which
//! [`verify`] checks against the chain; `nachtwacht audit verify` prints the latest checkpoint for
//! the auditor to record somewhere nachtwacht cannot reach (a report, a ticket), and checks a head
//! recorded that way with `--anchor`.
//!
//! The signing key (Ed25519, `keys/audit-signing-key.txt`, 0600) lives on the same machine: it
//! shows that a checkpoint was written by this installation, and it makes a rewrite need the key
//! as well as the database. It cannot stop someone who holds both; the head recorded elsewhere does.

use crate::base::db::{Connection, OptionalExtension};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::base::datadir::DataDir;

/// One day's anchor of the chain's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub written_at_ms: i64,
    /// Hex Ed25519 public key of the installation's audit signing key.
    pub public_key: String,
    /// Hex signature over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    fn message(seq: i64, hash: &str, written_at_ms: i64) -> Vec<u8> {
        format!("nachtwacht audit checkpoint\n{seq}\n{hash}\n{written_at_ms}\n").into_bytes()
    }
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The installation's audit signing key, created on first use. Nodes starting together on one
/// data directory may each make one; the first linked into place is the key of all of them.
fn signing_key(dir: &DataDir) -> Result<Ed25519KeyPair> {
    let path = dir.audit_signing_key();
    if !path.exists() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Key("cannot generate the audit signing key".into()))?;
        crate::trust::secrets::create_private_once(&path, hex::encode(pkcs8.as_ref()).as_bytes())
            .map_err(|e| Error::Key(e.to_string()))?;
    }
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let der =
        hex::decode(text.trim()).map_err(|e| Error::Key(format!("{}: {e}", path.display())))?;
    Ed25519KeyPair::from_pkcs8(&der).map_err(|e| Error::Key(format!("{}: {e}", path.display())))
}

/// What is wrong with the audit signing key, if anything: unreadable, or missing while
/// checkpoints signed with it exist. Never creates one.
pub fn signing_key_problem(dir: &DataDir) -> Option<String> {
    if dir.audit_signing_key().exists() {
        return signing_key(dir).err().map(|e| e.to_string());
    }
    match all(dir) {
        Ok(checkpoints) if !checkpoints.is_empty() => Some(format!(
            "{} is missing, and {} checkpoints were signed with it",
            dir.audit_signing_key().display(),
            checkpoints.len()
        )),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// Signs `message` with the installation's signing key (the key of the checkpoints), for another
/// artefact the server vouches for (a court dossier). Returns (public key, signature), hex.
pub fn sign(dir: &DataDir, message: &[u8]) -> Result<(String, String)> {
    let key = signing_key(dir)?;
    Ok((
        hex::encode(key.public_key().as_ref()),
        hex::encode(key.sign(message).as_ref()),
    ))
}

/// Whether `signature_hex` is `public_key_hex`'s Ed25519 signature of `message`.
pub fn signature_valid(public_key_hex: &str, message: &[u8], signature_hex: &str) -> bool {
    match (hex::decode(public_key_hex), hex::decode(signature_hex)) {
        (Ok(key), Ok(sig)) => UnparsedPublicKey::new(&ED25519, key)
            .verify(message, &sig)
            .is_ok(),
        _ => false,
    }
}

/// The installation's signing public key (hex), creating the key on first use.
pub fn public_key(dir: &DataDir) -> Result<String> {
    Ok(hex::encode(signing_key(dir)?.public_key().as_ref()))
}

/// Writes (or rewrites) today's checkpoint with the current head. Days before today keep theirs.
pub fn write(dir: &DataDir, conn: &Connection, now_ms: i64) -> Result<Option<Checkpoint>> {
    let Some((seq, hash)) = super::head(conn)? else {
        return Ok(None);
    };
    let key = signing_key(dir)?;
    let signature = key.sign(&Checkpoint::message(seq, &hash, now_ms));
    let checkpoint = Checkpoint {
        seq,
        hash,
        written_at_ms: now_ms,
        public_key: hex::encode(key.public_key().as_ref()),
        signature: hex::encode(signature.as_ref()),
    };
    let day = chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "unknown".into());
    let folder = dir.audit_checkpoints();
    nachtwacht_station::durable::create_dir_all(&folder).map_err(io(&folder))?;
    let text = serde_json::to_string_pretty(&checkpoint).expect("checkpoint serialises");
    crate::base::fsio::write_durably(&folder.join(format!("{day}.json")), text.as_bytes())
        .map_err(|e| Error::Key(e.to_string()))?;
    Ok(Some(checkpoint))
}

/// Every checkpoint file, oldest first.
pub fn all(dir: &DataDir) -> Result<Vec<(String, Checkpoint)>> {
    let folder = dir.audit_checkpoints();
    if !folder.exists() {
        return Ok(vec![]);
    }
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .map_err(io(&folder))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = folder.join(&name);
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let c = serde_json::from_str(&text)
                .map_err(|e| Error::Key(format!("{}: {e}", path.display())))?;
            Ok((name, c))
        })
        .collect()
}

/// Checks every checkpoint: signed by this installation's key, and naming an entry the chain
/// still has with the same hash. Returns the first problem as (entry, reason).
pub fn verify(dir: &DataDir, conn: &Connection) -> Result<Option<(i64, String)>> {
    let checkpoints = all(dir)?;
    if checkpoints.is_empty() {
        return Ok(None);
    }
    // Verifying never creates a key: without one, no checkpoint can be this installation's.
    let public = if dir.audit_signing_key().exists() {
        hex::encode(signing_key(dir)?.public_key().as_ref())
    } else {
        String::new()
    };
    for (name, c) in checkpoints {
        let signed = c.public_key == public
            && hex::decode(&c.signature).is_ok_and(|sig| {
                UnparsedPublicKey::new(&ED25519, hex::decode(&c.public_key).unwrap_or_default())
                    .verify(&Checkpoint::message(c.seq, &c.hash, c.written_at_ms), &sig)
                    .is_ok()
            });
        if !signed {
            return Ok(Some((
                c.seq,
                format!("checkpoint {name} is not signed by this installation's audit key"),
            )));
        }
        if let Some(problem) = anchor_problem(conn, c.seq, &c.hash)? {
            return Ok(Some((c.seq, format!("checkpoint {name}: {problem}"))));
        }
    }
    Ok(None)
}

/// Whether the chain has entry `seq` with `hash` (a head recorded elsewhere, or a checkpoint's).
pub fn anchor_problem(conn: &Connection, seq: i64, hash: &str) -> Result<Option<String>> {
    // Entries up to the retention horizon were deleted on purpose; only its last hash is kept.
    if let Some((through_hash, through)) = super::erase::horizon(conn)? {
        if seq < through {
            return Ok(None);
        }
        if seq == through {
            return Ok((through_hash != hash).then(|| {
                format!("entry {seq} was pruned with hash {through_hash}, but {hash} was anchored")
            }));
        }
    }
    let found: Option<String> = conn
        .query_row("SELECT hash FROM audit_log WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(match found {
        None => Some(format!(
            "the chain has no entry {seq} (entries were removed from the end)"
        )),
        Some(h) if h != hash => Some(format!(
            "entry {seq} has hash {h}, but {hash} was anchored: the chain was rewritten"
        )),
        Some(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several nodes starting on one data directory each create the signing key on first use:
    /// every one of them must get the one key, none an error or a half-written file.
    #[test]
    fn nodes_creating_the_signing_key_at_once_all_get_the_same_key() {
        const NODES: usize = 8;
        for round in 0..20 {
            let tmp = tempfile::tempdir().unwrap();
            let dir = DataDir::new(tmp.path());
            std::fs::create_dir_all(dir.keys()).unwrap();
            let start = std::sync::Barrier::new(NODES);
            let keys: Vec<Result<String>> = std::thread::scope(|s| {
                let nodes: Vec<_> = (0..NODES)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            public_key(&dir)
                        })
                    })
                    .collect();
                nodes.into_iter().map(|n| n.join().unwrap()).collect()
            });
            let first = keys[0]
                .as_ref()
                .map_err(|e| format!("round {round}: {e}"))
                .unwrap();
            for key in &keys {
                let key = key
                    .as_ref()
                    .map_err(|e| format!("round {round}: {e}"))
                    .unwrap();
                assert_eq!(key, first, "round {round}");
            }
        }
    }
}
