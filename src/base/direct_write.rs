//! Writing a new file past the page cache (`O_DIRECT`), from one reused aligned buffer per thread.
//!
//! Why: the group commit writes every received ciphertext once, into a new segment, and the
//! decoder reads it once, soon after. Written through the page cache, a herd of 1,000 stations
//! puts about 260 MB into fresh page-cache pages, and copying into them was 3–5 % of the server's
//! CPU in most runs of `bench ingest` but 20–37 % in the slow ones (docs/benchmarks.md): on a VM
//! that hands free memory back to its host, fresh pages are expensive and their cost varies. Here
//! the bytes are copied into a buffer the thread keeps, which stays in memory, and the device
//! reads them from there.
//!
//! `O_DIRECT` needs buffer, file offset and length aligned to the device's logical block size; the
//! last part of a file shorter than a block is written through the page cache instead, so the file
//! has exactly the bytes given. A file system that refuses `O_DIRECT` (some FUSE or tmpfs mounts)
//! is written through the page cache throughout ([`Written::Buffered`]).

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;

/// The alignment this module gives buffer, offsets and lengths: the largest logical block size of
/// the disks Linux servers use (512 or 4096). A device that needs more makes the first write
/// fail with `EINVAL`, and the file is then written through the page cache.
pub const ALIGN: usize = 4096;

/// The reused buffer's size: how many bytes go to the device in one write. At 1 MiB and above the
/// disk of the benchmark machine wrote about 1.1 GB/s either way (`dd oflag=direct`); a small
/// buffer stays in the CPU's caches while it is filled.
pub const BUFFER: usize = 4 << 20;

/// How a file's bytes reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// All whole blocks past the page cache, only the last partial block through it.
    Direct,
    /// Through the page cache: the file system does not take `O_DIRECT`.
    Buffered,
}

/// Writes `parts`, one after the other, from the start of `file` (new and empty, opened for
/// writing, without `O_DIRECT`), past the page cache where the file system allows it. The caller
/// syncs: the bytes are not durable until `fdatasync`.
pub fn write_parts(file: &File, parts: &[&[u8]]) -> io::Result<Written> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total < ALIGN || set_direct(file, true).is_err() {
        write_buffered(file, parts, 0)?;
        return Ok(Written::Buffered);
    }
    let written = BUFFERS.with(|cell| {
        let mut cell = cell.borrow_mut();
        let buffer = match &mut *cell {
            Some(b) => b,
            empty => empty.insert(AlignedBuffer::new(BUFFER)?),
        };
        write_through(file, parts, buffer.as_mut_slice())
    });
    match written {
        Ok(()) => Ok(Written::Direct),
        // The device wants a larger alignment, or the file system takes the flag but not the
        // write: start again through the page cache, over whatever was written.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            set_direct(file, false)?;
            write_buffered(file, parts, 0)?;
            Ok(Written::Buffered)
        }
        Err(e) => Err(e),
    }
}

thread_local! {
    /// Each writing thread's buffer, made on its first direct write and kept: the group commit
    /// is one long-lived thread.
    static BUFFERS: RefCell<Option<AlignedBuffer>> = const { RefCell::new(None) };
}

/// Copies `parts` into `buffer` and writes every full buffer, then the whole blocks of the rest,
/// with `O_DIRECT` (set on `file`); then clears the flag and writes the last partial block.
fn write_through(file: &File, parts: &[&[u8]], buffer: &mut [u8]) -> io::Result<()> {
    let mut at = 0u64;
    let mut filled = 0;
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            let n = rest.len().min(buffer.len() - filled);
            buffer[filled..filled + n].copy_from_slice(&rest[..n]);
            filled += n;
            rest = &rest[n..];
            if filled == buffer.len() {
                file.write_all_at(buffer, at)?;
                at += filled as u64;
                filled = 0;
            }
        }
    }
    let whole = filled / ALIGN * ALIGN;
    if whole > 0 {
        file.write_all_at(&buffer[..whole], at)?;
        at += whole as u64;
    }
    set_direct(file, false)?;
    if whole < filled {
        file.write_all_at(&buffer[whole..filled], at)?;
    }
    Ok(())
}

/// Writes `parts` through the page cache from `at`, as many in each `pwritev` as the kernel takes
/// (a segment is thousands of received chunks; a system call each would be thousands).
fn write_buffered(file: &File, parts: &[&[u8]], mut at: u64) -> io::Result<()> {
    /// Linux's `IOV_MAX`.
    const MAX_SLICES: usize = 1024;
    for group in parts.chunks(MAX_SLICES) {
        let mut slices: Vec<io::IoSlice<'_>> = group.iter().map(|p| io::IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let iov = rest.as_ptr().cast::<libc::iovec>();
            let count = libc::c_int::try_from(rest.len()).expect("at most IOV_MAX slices");
            let offset = libc::off_t::try_from(at)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and every slice borrows
            // memory that outlives the call.
            let n = unsafe { libc::pwritev(file.as_raw_fd(), iov, count, offset) };
            match n {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n if n > 0 => {
                    io::IoSlice::advance_slices(&mut rest, n as usize);
                    at += n as u64;
                }
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Sets or clears `O_DIRECT` on an open file. Fails with `EINVAL` where the file system does not
/// take it.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = match on {
        true => flags | libc::O_DIRECT,
        false => flags & !libc::O_DIRECT,
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Zeroed memory aligned to [`ALIGN`]: what `O_DIRECT` reads from.
struct AlignedBuffer {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl AlignedBuffer {
    fn new(len: usize) -> io::Result<Self> {
        let layout = Layout::from_size_align(len, ALIGN)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        assert!(layout.size() > 0, "an empty buffer holds nothing to write");
        // SAFETY: the layout's size is not zero.
        let ptr = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(Self { ptr, layout })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points at `layout.size()` initialised (zeroed) bytes that only this
        // value owns, borrowed mutably for as long as the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ at every offset, so a part written to the wrong place shows.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
            .collect()
    }

    fn new_file(dir: &std::path::Path, name: &str) -> File {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(name))
            .unwrap()
    }

    /// Whether the file system under `dir` takes `O_DIRECT` at all.
    fn takes_direct(dir: &std::path::Path) -> bool {
        set_direct(&new_file(dir, "probe"), true).is_ok()
    }

    /// How many of the file's pages are in the page cache.
    fn cached_pages(path: &std::path::Path) -> usize {
        let f = File::open(path).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        // SAFETY: a read-only shared mapping of a file we keep open while it is mapped; mincore
        // writes one byte per page into a vector that long.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let mut resident = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(map, len, resident.as_mut_ptr()), 0);
            libc::munmap(map, len);
            resident.iter().filter(|&&r| r & 1 == 1).count()
        }
    }

    #[test]
    fn a_file_written_in_parts_reads_back_whole_at_every_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            ALIGN + 1,
            BUFFER - 1,
            BUFFER,
            BUFFER + 1,
            2 * BUFFER + 12_345,
        ];
        for (i, &size) in sizes.iter().enumerate() {
            let whole = pattern(size, i as u8);
            // Parts of uneven sizes, as QUIC's chunks arrive: 1,200-byte packets and odd tails.
            let parts: Vec<&[u8]> = whole.chunks(1_187).collect();
            let name = format!("f{i}");
            write_parts(&new_file(dir.path(), &name), &parts).unwrap();
            let back = std::fs::read(dir.path().join(&name)).unwrap();
            assert_eq!(back.len(), size, "size {size}");
            assert!(back == whole, "content of a file of {size} bytes");
        }
    }

    #[test]
    fn the_whole_blocks_of_a_file_bypass_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let whole = pattern(BUFFER + 10 * ALIGN + 100, 7);
        let parts: Vec<&[u8]> = whole.chunks(65_000).collect();
        let path = dir.path().join("segment");
        let how = write_parts(&new_file(dir.path(), "segment"), &parts).unwrap();
        if !takes_direct(dir.path()) {
            assert_eq!(how, Written::Buffered);
            return;
        }
        assert_eq!(how, Written::Direct);
        // Only the last, partial block went through the page cache.
        assert!(cached_pages(&path) <= 1, "{} pages", cached_pages(&path));
        assert!(std::fs::read(&path).unwrap() == whole);
    }

    #[test]
    fn a_buffered_write_is_seen_in_the_page_cache() {
        // The check above can fail: a file written through the page cache is found there.
        let dir = tempfile::tempdir().unwrap();
        let whole = pattern(10 * ALIGN, 3);
        let path = dir.path().join("buffered");
        write_buffered(&new_file(dir.path(), "buffered"), &[&whole], 0).unwrap();
        assert_eq!(cached_pages(&path), 10);
    }
}
