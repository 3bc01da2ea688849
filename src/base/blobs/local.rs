//! The embedded default: each key is a file under the data directory, written through
//! [`crate::base::fsio`] (temporary file, fsync, link or rename, fsync of the directory).
//! `object_store`'s own `LocalFileSystem` is not used: it renames without syncing the file or
//! the directory, so an acknowledged bundle could be lost with the power.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Key, Listed, Placed, Result};
use crate::base::fsio::{self, io_err};

#[derive(Clone, Debug)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn parent_made(&self, key: &Key) -> Result<PathBuf> {
        let path = self.path(key);
        let parent = path.parent().expect("a key names a file in a folder");
        fsio::create_dir_all(parent)?;
        Ok(parent.to_path_buf())
    }

    pub fn place_all(&self, items: &[(Key, &[u8])]) -> Result<Vec<Placed>> {
        // One batch per folder: one directory fsync each (the spool's batches are one folder).
        let mut by_dir: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
        for (i, (key, _)) in items.iter().enumerate() {
            by_dir.entry(self.parent_made(key)?).or_default().push(i);
        }
        let mut placed = vec![Placed::New; items.len()];
        for (dir, indices) in by_dir {
            let files: Vec<(PathBuf, &[u8])> = indices
                .iter()
                .map(|&i| (self.path(&items[i].0), items[i].1))
                .collect();
            for (i, p) in indices
                .into_iter()
                .zip(fsio::place_files_durably(&dir, &files)?)
            {
                placed[i] = p;
            }
        }
        Ok(placed)
    }

    /// Writes a new segment from `parts` durably (see [`fsio::write_new_durably`]).
    pub fn write_segment(&self, key: &Key, parts: &[&[u8]]) -> Result<()> {
        self.parent_made(key)?;
        Ok(fsio::write_new_durably(&self.path(key), parts)?)
    }

    /// `len` bytes of an object from `offset`; `None` when it is not there.
    pub fn read_range(&self, key: &Key, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        Ok(fsio::read_range(&self.path(key), offset, len)?)
    }

    /// Erases `len` bytes of an object from `offset` durably (see [`fsio::erase_range`]).
    pub fn erase_range(&self, key: &Key, offset: u64, len: u64) -> Result<()> {
        Ok(fsio::erase_range(&self.path(key), offset, len)?)
    }

    pub fn put(&self, key: &Key, bytes: &[u8]) -> Result<()> {
        self.parent_made(key)?;
        Ok(fsio::write_durably(&self.path(key), bytes)?)
    }

    pub fn get(&self, key: &Key) -> Result<Option<Vec<u8>>> {
        let path = self.path(key);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e).into()),
        }
    }

    pub fn exists(&self, key: &Key) -> Result<bool> {
        let path = self.path(key);
        path.try_exists().map_err(|e| io_err(&path)(e).into())
    }

    pub fn remove(&self, key: &Key) -> Result<()> {
        Ok(fsio::remove_if_exists(&self.path(key))?)
    }

    pub fn move_all(&self, moves: &[(Key, Key)]) -> Result<()> {
        let mut present = Vec::with_capacity(moves.len());
        for (from, to) in moves {
            if self.exists(from)? {
                present.push((self.path(from), self.path(to)));
            }
        }
        Ok(fsio::move_all_durably(&present)?)
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        // The prefix's folder part is walked; its last part filters names.
        let (folder, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let start = self.root.join(folder);
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e).into()),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let path = entry.path();
                // Other processes on the data directory write, rename and remove files while this
                // walks (another node's probe, its temporary files): one gone since the directory
                // was read is not listed.
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&path)(e).into()),
                };
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Some(key) = path
                    .strip_prefix(&self.root)
                    .ok()
                    .and_then(|rel| rel.to_str())
                    .and_then(Key::parse)
                else {
                    continue;
                };
                if key.as_str().starts_with(prefix) {
                    out.push(Listed {
                        key,
                        size: meta.len(),
                        modified: meta.modified().map_err(io_err(&path))?,
                    });
                }
            }
        }
        Ok(out)
    }

    pub fn available_bytes(&self) -> Result<u64> {
        fsio::available_bytes(&self.root).map_err(|e| io_err(&self.root)(e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Other processes on the data directory write and rename files while a node lists them (a
    /// starting node's spool sweep beside another node's probe): a file gone between the
    /// directory read and its stat is not in the listing, and the listing does not fail.
    #[test]
    fn listing_survives_files_vanishing_under_it() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(tmp.path());
        let spool = tmp.path().join("spool");
        fs::create_dir_all(&spool).unwrap();
        fs::write(spool.join("kept.age"), b"k").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (spool, stop) = (spool.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let temp = spool.join(format!(".probe.{n}.tmp"));
                    let done = spool.join(format!(".probe.{n}"));
                    fs::write(&temp, b"p").unwrap();
                    fs::rename(&temp, &done).unwrap();
                    fs::remove_file(&done).unwrap();
                    n += 1;
                }
            })
        };
        let listings: Vec<_> = (0..3000).map(|_| blobs.list(super::super::SPOOL)).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
        for listed in listings {
            let listed = listed.expect("a listing while files come and go");
            assert!(listed.iter().any(|l| l.key.file_name() == "kept.age"));
        }
    }
}
