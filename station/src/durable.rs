//! Writing files so that they survive a power cut at any instant: write a temporary file, fsync it,
//! rename it into place, fsync the directory. A reader sees the old file or the new one, never a
//! torn one. Shared by the station's spool and the server's spool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` durably and atomically.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // The temporary name is this process's and this call's own: two processes sharing a
    // directory (several server nodes on one data directory) may write one file at once, and
    // with one temporary name the second rename found its file gone.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Writes and fsyncs a file (no rename, no directory sync: the caller does those, possibly for many
/// files at once).
pub fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Creates a directory and whichever of its parents are missing, each made durable in its own
/// parent: a new directory whose parent was never synced can vanish in a power cut, taking every
/// file synced inside it along.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir_all(parent)?;
    match fs::create_dir(dir) {
        // Made by another process at the same moment: its parent's sync may still be to come.
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => sync_dir(parent),
        Err(e) => Err(e),
    }
}

/// Makes renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Appends one line to a journal file and fsyncs it; the first line also syncs the directory,
/// without which a power cut can take the new file, synced lines and all.
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    let (mut f, created) = match OpenOptions::new().append(true).open(path) {
        Ok(f) => (f, false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (
            OpenOptions::new().create(true).append(true).open(path)?,
            true,
        ),
        Err(e) => return Err(e),
    };
    f.write_all(line.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_data()?;
    if created {
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}
