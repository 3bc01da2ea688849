//! Online backup and restore of a data directory, while the server runs.
//!
//! A backup is one consistent moment: the database copied with `VACUUM INTO` (one read
//! transaction), then the files that copy refers to: the catalogued dataset files, each bundle's
//! ciphertext where that moment had it (spool, evidence or quarantine, with its reason), and the
//! configuration, rule files, certificates, audit checkpoints and research datasets. The dataset
//! readers' hold (`dataset::ReadGuard`) keeps files that compaction retires on disk meanwhile; a
//! spooled bundle the decoder files as evidence during the backup is found there and stored
//! where the backed-up database expects it. A bundle waiting in a segment is kept by keeping its
//! whole segment; one the decoder filed since, and whose segment it deleted, is kept where it
//! was filed, where a restored decoder looks for it. Keys (age identity, pseudonym keys, audit signing
//! key, CA and server keys) are copied only on request, under `keys/` of the backup, so that
//! they can be kept apart.
//!
//! `manifest.json`, written last, lists every file with its size and SHA-256: a backup without
//! it is unfinished, and `restore` refuses it, as it refuses one whose files do not match.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base::Context;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error("datasets: {0}")]
    Dataset(#[from] crate::dataset::Error),
    #[error("{0} exists and is not empty: a backup or restore goes into a new directory")]
    NotEmpty(String),
    #[error("{0} has no manifest.json: not a backup, or one that did not finish")]
    NoManifest(String),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("the backup is incomplete or damaged:\n{}", .0.join("\n"))]
    Damaged(Vec<String>),
    #[error("{what} changed during the backup ({path} is gone); run the backup again")]
    Vanished { what: &'static str, path: String },
    #[error("audit: {0}")]
    Audit(#[from] crate::trust::audit::Error),
    #[error("the state is in PostgreSQL: back it up with PostgreSQL's own tools (pg_basebackup with WAL archiving, or pg_dump) and the data directory's files with the file backup; see docs/deployment.md")]
    Postgres,
    #[error("the bundle ciphertexts are in object storage ({0}): back the bucket up with the store's own replication or versioning; `nachtwacht backup` covers an installation on local files; see docs/deployment.md")]
    ObjectStorage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

pub const MANIFEST: &str = "manifest.json";

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub nachtwacht_version: String,
    pub created_at_ms: i64,
    /// Whether `keys/` holds the keys (without them the restored directory cannot decrypt,
    /// pseudonymise or verify its audit checkpoints until the keys are put back).
    pub with_keys: bool,
    pub bundles: i64,
    pub alerts: i64,
    pub audit_entries: i64,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Relative to the data directory (and to the backup).
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// A directory that may be written into: absent, or empty.
fn fresh(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::NotEmpty(dir.display().to_string()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        Err(e) => return Err(io(dir)(e)),
    }
    Ok(())
}

/// Copies `from` to `to` (parents created), fsyncs it, and returns its entry under `rel`.
fn copy_file(from: &Path, to: &Path, rel: &str) -> Result<FileEntry> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut input = std::fs::File::open(from).map_err(io(from))?;
    let mut output = std::fs::File::create(to).map_err(io(to))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = input.read(&mut buffer).map_err(io(from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n]).map_err(io(to))?;
        bytes += n as u64;
    }
    output.sync_all().map_err(io(to))?;
    Ok(FileEntry {
        path: rel.to_string(),
        bytes,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// SHA-256 and size of a file.
fn digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut input = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = input.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// Every file under `dir`, relative to `root`, but for temporary files: a running node writes
/// every file through a temporary name (`….tmp`, `….part`) and renames it, so one listed here
/// could be gone by the time it is copied (a ticket key rotated, a research table rewritten), and
/// it is never part of the installation.
fn files_under(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        let temporary = path.extension().is_some_and(|e| e == "tmp" || e == "part");
        if path.is_dir() {
            files_under(root, &path, out)?;
        } else if temporary {
            continue;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Makes a backup of the running installation `ctx` in `out` (absent or empty). `actor` is
/// recorded in the audit log with the backup's counts.
pub fn backup(ctx: &Context, out: &Path, with_keys: bool, actor: &str) -> Result<Manifest> {
    if ctx.db.backend() != crate::base::db::Backend::Sqlite {
        return Err(Error::Postgres);
    }
    if ctx.blobs.local_root().is_none() {
        return Err(Error::ObjectStorage(ctx.blobs.describe()));
    }
    fresh(out)?;
    let root = ctx.dir.root().to_path_buf();
    // Retired dataset files stay on disk while the backup copies them.
    let _readers = crate::dataset::ReadGuard::acquire(&ctx.dir)?;
    let database_rel = rel(&root, &ctx.dir.database());
    let snapshot_path = out.join(&database_rel);
    if let Some(parent) = snapshot_path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    // One read transaction: the moment the backup stands for.
    ctx.db
        .lock()
        .execute("VACUUM INTO ?1", [snapshot_path.to_string_lossy().as_ref()])?;
    let snapshot = crate::base::db::Connection::open_sqlite_read_only(&snapshot_path)?;
    let count = |sql: &str| -> Result<i64> { Ok(snapshot.query_row(sql, [], |r| r.get(0))?) };
    let (bundles, alerts, audit_entries) = (
        count("SELECT count(*) FROM bundles")?,
        count("SELECT count(*) FROM alerts")?,
        count("SELECT COALESCE(max(seq), 0) FROM audit_log")?,
    );
    let mut files = vec![{
        let (bytes, sha256) = digest(&snapshot_path).map_err(io(&snapshot_path))?;
        FileEntry {
            path: database_rel.clone(),
            bytes,
            sha256,
        }
    }];
    let mut take = |from: &Path, to_rel: &str| -> Result<()> {
        files.push(copy_file(from, &out.join(to_rel), to_rel)?);
        Ok(())
    };

    // The catalogued dataset files.
    let mut stmt = snapshot.prepare("SELECT path FROM dataset_files ORDER BY path")?;
    let dataset_paths: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for path in dataset_paths {
        let from = root.join(&path);
        if !from.exists() {
            return Err(Error::Vanished {
                what: "a dataset file",
                path,
            });
        }
        take(&from, &path)?;
    }

    // Each bundle's ciphertext where the snapshot has it.
    let mut stmt = snapshot.prepare(
        "SELECT bundle_id, state, received_at_ms, evidence_pruned_at_ms IS NOT NULL, sha256,
                segment
           FROM bundles",
    )?;
    type Row = (String, String, i64, bool, String, Option<String>);
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut segments_taken = std::collections::BTreeSet::new();
    for (id, state, received_at_ms, pruned, sha256, segment) in rows {
        let Some(bundle_id) = nachtwacht_wire::BundleId::from_hex(&id) else {
            continue;
        };
        use crate::base::blobs::Key;
        let spooled = root.join(Key::spooled(&bundle_id, &sha256).as_str());
        let evidence = root.join(Key::evidence(&bundle_id, received_at_ms).as_str());
        let quarantined = root.join(Key::quarantined(&bundle_id).as_str());
        let segment = segment.as_deref().and_then(Key::segment);
        if let (Some(segment), "spooled") = (segment, state.as_str()) {
            // Waiting in a segment: the whole segment is kept, once, where it is. If the decoder
            // has filed the bundle since (and deleted the segment), its copy is kept where it
            // is now; a restored decoder looks there when the segment is missing.
            let path = root.join(segment.as_str());
            if path.exists() {
                if segments_taken.insert(segment.clone()) {
                    take(&path, segment.as_str())?;
                }
                continue;
            }
            let Some(from) = [&evidence, &quarantined].into_iter().find(|p| p.exists()) else {
                return Err(Error::Vanished {
                    what: "a bundle",
                    path: segment.to_string(),
                });
            };
            take(from, &rel(&root, from))?;
            continue;
        }
        let (wanted, candidates): (&Path, Vec<&Path>) = match state.as_str() {
            // The decoder may have filed it since: it is the same ciphertext.
            "spooled" => (&spooled, vec![&spooled, &evidence, &quarantined]),
            "processed" if pruned => continue,
            "processed" => (&evidence, vec![&evidence]),
            _ => (&quarantined, vec![&quarantined]),
        };
        let Some(from) = candidates.into_iter().find(|p| p.exists()) else {
            return Err(Error::Vanished {
                what: "a bundle",
                path: rel(&root, wanted),
            });
        };
        take(from, &rel(&root, wanted))?;
        if state == "quarantined" {
            let reason = root.join(Key::quarantine_reason(&bundle_id).as_str());
            if reason.exists() {
                take(&reason, &rel(&root, &reason))?;
            }
        }
    }

    // Configuration, rules, certificates, audit checkpoints, research datasets; keys on request.
    let keys: Vec<PathBuf> = vec![ctx.dir.ca_key(), ctx.dir.server_key()];
    let mut fixed = Vec::new();
    for path in [ctx.dir.config(), ctx.dir.retention_policy()] {
        if path.exists() {
            fixed.push(rel(&root, &path));
        }
    }
    for dir in [
        ctx.dir.rules(),
        ctx.dir.pki(),
        ctx.dir.audit_checkpoints(),
        // The research tables' folder.
        root.join(
            Path::new(crate::base::blobs::RESEARCH_DAILY)
                .parent()
                .unwrap_or(Path::new("")),
        ),
    ] {
        files_under(&root, &dir, &mut fixed)?;
    }
    fixed.retain(|f| !keys.iter().any(|k| rel(&root, k) == *f));
    if with_keys {
        files_under(&root, &ctx.dir.keys(), &mut fixed)?;
        fixed.extend(keys.iter().map(|k| rel(&root, k)));
    }
    fixed.sort();
    fixed.dedup();
    for path in fixed {
        // Keys are kept apart in the backup so they can be stored apart.
        let to = if with_keys
            && (path.starts_with("keys/") || keys.iter().any(|k| rel(&root, k) == path))
        {
            format!("keys/{path}")
        } else {
            path.clone()
        };
        take(&root.join(&path), &to)?;
    }

    let manifest = Manifest {
        format: 1,
        nachtwacht_version: env!("CARGO_PKG_VERSION").into(),
        created_at_ms: crate::base::time::now_ms(),
        with_keys,
        bundles,
        alerts,
        audit_entries,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Manifest(e.to_string()))?;
    crate::base::fsio::write_durably(&out.join(MANIFEST), &text)
        .map_err(|e| Error::Manifest(e.to_string()))?;
    crate::trust::audit::append(
        &ctx.db.lock(),
        crate::base::time::now_ms(),
        actor,
        "backup.made",
        "data_dir",
        &serde_json::json!({
            "bundles": bundles, "alerts": alerts, "audit_entries": audit_entries,
            "files": manifest.files.len(), "with_keys": with_keys,
        })
        .to_string(),
    )?;
    Ok(manifest)
}

/// Reads a backup's manifest and checks every file it lists; returns it, or every problem.
pub fn check(from: &Path) -> Result<Manifest> {
    let path = from.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoManifest(from.display().to_string()))
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| Error::Manifest(e.to_string()))?;
    let mut problems = Vec::new();
    for f in &manifest.files {
        match digest(&from.join(&f.path)) {
            Ok((bytes, sha256)) if bytes == f.bytes && sha256 == f.sha256 => {}
            Ok((bytes, _)) if bytes != f.bytes => problems.push(format!(
                "{}: {bytes} bytes, the manifest says {}",
                f.path, f.bytes
            )),
            Ok(_) => problems.push(format!("{}: its SHA-256 differs from the manifest", f.path)),
            Err(e) => problems.push(format!("{}: {e}", f.path)),
        }
    }
    if problems.is_empty() {
        Ok(manifest)
    } else {
        Err(Error::Damaged(problems))
    }
}

/// Restores the backup in `from` into the new data directory `to` (absent or empty), after
/// checking every file against the manifest. Keys come back to where they were when the backup
/// has them.
pub fn restore(from: &Path, to: &Path) -> Result<Manifest> {
    let manifest = check(from)?;
    fresh(to)?;
    crate::base::datadir::restrict_umask();
    for f in &manifest.files {
        let target = f.path.strip_prefix("keys/").unwrap_or(&f.path);
        let entry = copy_file(&from.join(&f.path), &to.join(target), target)?;
        if entry.sha256 != f.sha256 {
            return Err(Error::Damaged(vec![format!(
                "{}: changed while it was restored",
                f.path
            )]));
        }
    }
    // The directories the server creates at `init`, empty where the backup had no file.
    let dir = crate::base::datadir::DataDir::new(to);
    for d in [dir.spool(), dir.evidence(), dir.quarantine()] {
        std::fs::create_dir_all(&d).map_err(io(&d))?;
    }
    crate::base::fsio::sync_dir(to).map_err(|e| Error::Manifest(e.to_string()))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_of_running_writers_are_not_backed_up() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = tmp.path().join("keys");
        std::fs::create_dir_all(keys.join("sub")).unwrap();
        for name in [
            "ticket-keys",
            "ticket-keys.4242.0.tmp",
            ".host:4242:0a0b0c0d.7.part",
            "sub/kept.pem",
        ] {
            std::fs::write(keys.join(name), b"x").unwrap();
        }
        let mut out = Vec::new();
        files_under(tmp.path(), &keys, &mut out).unwrap();
        out.sort();
        assert_eq!(out, ["keys/sub/kept.pem", "keys/ticket-keys"]);
    }
}
