//! Durable file writes: a file (or a batch of files, or a rename) that has been written through
//! these survives a crash once the call returns, because the file and its directory entry are both
//! fsynced. Every stage that must not lose a file on power loss writes through here.

use std::fs;
use std::path::{Path, PathBuf};

use nachtwacht_station::durable;

use crate::base::direct_write;

/// A file-system operation that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct Error {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `map_err` helper: an I/O error on `path`.
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a file so that, once this returns, it and its directory entry survive a crash.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    durable::write_durably(path, bytes).map_err(io_err(path))
}

/// Deletes a file; one that is not there is already deleted. The directory entry's removal is made
/// durable, so a crash cannot bring the file back.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => match path.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error {
            path: path.display().to_string(),
            source,
        }),
    }
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    durable::sync_dir(dir).map_err(io_err(dir))
}

/// Creates a directory and its missing parents so that they survive a power cut (each synced in
/// its parent): files made durable inside a new directory are only as durable as the directory.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    durable::create_dir_all(dir).map_err(io_err(dir))
}

/// How many fsyncs [`write_files_durably`] keeps in flight.
pub const SYNC_THREADS: usize = 8;

/// Writes new files in `dir` and makes them and their directory entries durable: an fsync per file
/// and one of the directory, so a batch costs one directory flush however many files it holds.
/// Every file is written before the first fsync, so the kernel's write-back of one overlaps the
/// others. The fsyncs run on [`SYNC_THREADS`] threads at once, so the disk serves them
/// concurrently instead of one after the other (in the ingest benchmark's herd the first uploads'
/// group commit takes 20–100 ms this way, about 300 ms with one fsync at a time). `syncfs` would
/// flush the batch in one call, no faster, and would also wait for every other writer's dirty pages
/// on the file system.
pub fn write_files_durably(dir: &Path, files: &[(PathBuf, &[u8])]) -> Result<()> {
    use std::io::Write;
    let mut written = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let mut f = fs::File::create(path).map_err(io_err(path))?;
        f.write_all(bytes).map_err(io_err(path))?;
        written.push((f, path));
    }
    for synced in crate::base::parallel::map_in_order_on(SYNC_THREADS, &written, |(f, path)| {
        f.sync_all().map_err(io_err(path))
    }) {
        synced?;
    }
    if !files.is_empty() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Writes a new file from `parts`, one after the other, and makes it and its directory entry
/// durable: one data sync and one directory sync however many parts it holds. Fails if the file
/// exists, so a name is never written twice. The group commit writes a batch's ciphertexts so (a
/// segment, see [`crate::spool::Location`]): one sync where a file per bundle cost one each. The
/// bytes go past the page cache where the file system allows it ([`direct_write`]): they are
/// read once, by the decoder.
pub fn write_new_durably(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    direct_write::write_parts(&f, parts).map_err(io_err(path))?;
    // `fdatasync` also syncs the size and allocation a read back needs.
    f.sync_data().map_err(io_err(path))?;
    sync_dir(path.parent().expect("file in a directory"))
}

/// `len` bytes of a file from `offset`; `None` when the file is not there. A file shorter than
/// the range is an error, not a short read.
pub fn read_range(path: &Path, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
    use std::os::unix::fs::FileExt;
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let len = usize::try_from(len)
        .map_err(|e| io_err(path)(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let mut bytes = vec![0u8; len];
    f.read_exact_at(&mut bytes, offset).map_err(io_err(path))?;
    Ok(Some(bytes))
}

/// Erases `len` bytes of a file from `offset` durably, keeping its size: the file system
/// deallocates them (a hole, which reads as zeros), or, where it cannot, they are overwritten
/// with zeros. A file that is not there has nothing to erase.
pub fn erase_range(path: &Path, offset: u64, len: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let f = match fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let invalid = |e| io_err(path)(std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
    let (off, n) = (
        libc::off_t::try_from(offset).map_err(invalid)?,
        libc::off_t::try_from(len).map_err(invalid)?,
    );
    // SAFETY: fallocate on a file descriptor we own, with integer arguments only.
    let punched = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            n,
        )
    } == 0;
    if !punched {
        let zeros = vec![0u8; len as usize];
        f.write_all_at(&zeros, offset).map_err(io_err(path))?;
    }
    f.sync_data().map_err(io_err(path))
}

/// Where [`place_files_durably`] put a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The file is new, with these bytes.
    New,
    /// A file was there already with the same bytes (another process stored the same upload, or
    /// an earlier attempt left it); it is kept.
    Same,
    /// A file was there already with other bytes; it is kept and these bytes are not written.
    Other,
}

/// A new temporary file's path in `dir`, this process's next: `.<process name>.<n>.part`, so that
/// whoever finds it later can tell whether its writer is gone ([`temp_owner`]).
pub fn temp_path(dir: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!(".{}.{n}.part", crate::base::process::name()))
}

/// The process that wrote the temporary file `file_name` (a [`crate::base::process::name`]).
pub fn temp_owner(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(".part")?;
    Some(stem.rsplit_once('.')?.0)
}

/// Whether a file its writer left (a temporary file or a segment, named for `writer`) will never
/// be finished: its writer was a process on this machine that is gone, or the file is at least
/// `min_age` old (a writer on another machine sharing the directory is done well within that).
pub fn abandoned(
    writer: Option<&str>,
    modified: std::time::SystemTime,
    min_age: std::time::Duration,
) -> bool {
    let age = std::time::SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    age >= min_age || writer.is_some_and(crate::base::process::died_here)
}

/// Removes the temporary files ([`temp_path`]) in `dir` that were [`abandoned`]. Returns how
/// many went. A temporary file of a key holds the key: left behind, it is a copy nobody manages.
pub fn remove_orphaned_temps(dir: &Path, min_age: std::time::Duration) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(writer) = temp_owner(&name) else {
            continue;
        };
        let path = entry.path();
        let modified = match entry.metadata().and_then(|m| m.modified()) {
            Ok(modified) => modified,
            // Gone meanwhile: its writer finished it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        if abandoned(Some(writer), modified, min_age) {
            remove_if_exists(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Writes files durably without ever replacing one: each goes to a temporary name, is synced,
/// then linked to its name (which fails if the name exists), and the directory is synced once.
/// Several processes sharing a directory can race for one name; the first file stays.
pub fn place_files_durably(dir: &Path, files: &[(PathBuf, &[u8])]) -> Result<Vec<Placed>> {
    use sha2::Digest;
    use std::io::Write;
    let mut written = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let temp = temp_path(dir);
        let mut f = fs::File::create(&temp).map_err(io_err(&temp))?;
        f.write_all(bytes).map_err(io_err(&temp))?;
        written.push((f, temp, path, *bytes));
    }
    for synced in
        crate::base::parallel::map_in_order_on(SYNC_THREADS, &written, |(f, temp, _, _)| {
            f.sync_all().map_err(io_err(temp))
        })
    {
        synced?;
    }
    let mut placed = Vec::with_capacity(files.len());
    for (_, temp, path, bytes) in &written {
        let outcome = match fs::hard_link(temp, path) {
            Ok(()) => Placed::New,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let there = fs::read(path).map_err(io_err(path))?;
                if sha2::Sha256::digest(&there) == sha2::Sha256::digest(bytes) {
                    Placed::Same
                } else {
                    Placed::Other
                }
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        fs::remove_file(temp).map_err(io_err(temp))?;
        placed.push(outcome);
    }
    if !files.is_empty() {
        sync_dir(dir)?;
    }
    Ok(placed)
}

/// Moves a file and makes the move durable in the destination directory (and the source's).
pub fn move_durably(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        create_dir_all(parent)?;
    }
    fs::rename(from, to).map_err(io_err(to))?;
    sync_dir(to.parent().expect("file in a directory"))?;
    sync_dir(from.parent().expect("file in a directory"))
}

/// Renames many files, then makes every directory involved durable once: the batch form of
/// [`move_durably`], one directory fsync per directory instead of two per file.
pub fn move_all_durably(moves: &[(PathBuf, PathBuf)]) -> Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for (from, to) in moves {
        let parent = to.parent().expect("file in a directory");
        if dirs.insert(parent.to_path_buf()) {
            create_dir_all(parent)?;
        }
        fs::rename(from, to).map_err(io_err(to))?;
        dirs.insert(from.parent().expect("file in a directory").to_path_buf());
    }
    for dir in &dirs {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes every file and folder under `root` durable, and `root` in its parent: for a tree written
/// without a sync per file (an installation), synced once when it is complete.
pub fn sync_tree(root: &Path) -> Result<()> {
    for entry in fs::read_dir(root).map_err(io_err(root))? {
        let path = entry.map_err(io_err(root))?.path();
        let kind = fs::symlink_metadata(&path)
            .map_err(io_err(&path))?
            .file_type();
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&path))?;
        }
    }
    sync_dir(root)?;
    match root.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Free bytes on the file system of `path` for an unprivileged writer.
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid, writable statvfs.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment of more parts than one `writev` takes holds every part, in order.
    #[test]
    fn a_segment_of_thousands_of_parts_holds_them_all_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("segment");
        let parts: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| i.to_be_bytes().repeat(1 + (i % 7) as usize))
            .collect();
        let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        write_new_durably(&path, &slices).unwrap();
        assert_eq!(fs::read(&path).unwrap(), parts.concat());
    }

    /// Erased bytes read back as zeros, the rest of the file is untouched and keeps its size;
    /// a segment is written once only.
    #[test]
    fn a_range_is_erased_in_place_and_a_new_file_is_never_written_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("segment");
        let (a, b, c) = (vec![1u8; 10_000], vec![2u8; 20_000], vec![3u8; 10_000]);
        write_new_durably(&path, &[&a, &b, &c]).unwrap();
        assert!(write_new_durably(&path, &[b"again"]).is_err());
        assert_eq!(read_range(&path, 10_000, 20_000).unwrap(), Some(b.clone()));
        erase_range(&path, 10_000, 20_000).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 40_000);
        assert_eq!(
            read_range(&path, 10_000, 20_000).unwrap(),
            Some(vec![0; 20_000])
        );
        assert_eq!(read_range(&path, 0, 10_000).unwrap(), Some(a));
        assert_eq!(read_range(&path, 30_000, 10_000).unwrap(), Some(c));
        // Beyond the end is an error, not a short read; a missing file is None.
        assert!(read_range(&path, 39_000, 2_000).is_err());
        assert_eq!(read_range(&tmp.path().join("gone"), 0, 1).unwrap(), None);
        erase_range(&tmp.path().join("gone"), 0, 1).unwrap();
    }
}
