//! A filesystem that keeps only what was made durable: the disk of the power-cut tests.
//!
//! It is served over FUSE (`fuser`) from the test's own process and holds everything in memory.
//! Every write, create, rename and delete takes effect at once, as on any filesystem, but survives
//! a power cut only once it was made durable, the weakest promise POSIX gives and so the one a
//! program must be written against:
//!
//! - a file's bytes by `fsync`/`fdatasync` of that file;
//! - a directory's entries (names created, linked, removed, renamed in or out) by `fsync` of that
//!   directory. A new file whose directory was never synced is gone after a cut, however often the
//!   file itself was synced; a new directory is gone unless its parent was synced; a rename between
//!   two directories holds in each only once that directory is synced, so a program that syncs
//!   one of them can find the file in both places after a cut, or in neither.
//!
//! [`DurableFs::cut`] is the power going: the mount is taken down (whoever used it must be dead
//! by then: a cut kills the machine), everything not durable is thrown away, files no durable
//! entry reaches are gone, and what survived is mounted again at the same place, with the
//! kernel's caches of the old mount gone with it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// How long the kernel may cache names and attributes. Nothing else changes this filesystem while
/// it is mounted, and a cut mounts it afresh, so caching is safe.
const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;

#[derive(Debug)]
enum Content {
    File {
        data: Vec<u8>,
        /// The bytes as of the last fsync: what a cut leaves.
        durable: Vec<u8>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        /// The entries as of the last fsync of this directory.
        durable: BTreeMap<OsString, u64>,
    },
}

#[derive(Debug)]
struct Node {
    content: Content,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    /// Names pointing at this node now.
    links: u32,
    /// Open handles: a file unlinked while open keeps its bytes until the last close.
    open: u32,
}

/// What the cuts threw away, summed over every cut so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Discarded {
    pub cuts: u64,
    /// Files whose bytes went back to their last fsync (or to nothing).
    pub files_reverted: u64,
    /// Change in file length undone (bytes appended, or cut off, since the last fsync).
    pub bytes: u64,
    /// Directory entries created, removed or renamed and never synced.
    pub entries: u64,
    /// Files and directories no durable entry reached any more.
    pub nodes_lost: u64,
}

#[derive(Debug)]
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    discarded: Discarded,
    fsyncs: u64,
}

impl State {
    fn new() -> Self {
        let root = Node {
            content: Content::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
            mode: 0o700,
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
            mtime: SystemTime::now(),
            links: 1,
            open: 0,
        };
        Self {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            discarded: Discarded::default(),
            fsyncs: 0,
        }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let node = self.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        let (kind, size) = match &node.content {
            Content::File { data, .. } => (FileType::RegularFile, data.len() as u64),
            Content::Dir { entries, .. } => (FileType::Directory, entries.len() as u64),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm: (node.mode & 0o7777) as u16,
            nlink: node.links.max(1),
            uid: node.uid,
            gid: node.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        })
    }

    fn entries(&self, dir: u64) -> Result<&BTreeMap<OsString, u64>, Errno> {
        match &self.nodes.get(&dir).ok_or(Errno::ENOENT)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            Content::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        let node = self.nodes.get_mut(&dir).ok_or(Errno::ENOENT)?;
        node.mtime = SystemTime::now();
        match &mut node.content {
            Content::Dir { entries, .. } => Ok(entries),
            Content::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn data_mut(&mut self, ino: u64) -> Result<&mut Vec<u8>, Errno> {
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        node.mtime = SystemTime::now();
        match &mut node.content {
            Content::File { data, .. } => Ok(data),
            Content::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    /// A new node named `name` in `parent`.
    fn add(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        dir: bool,
    ) -> Result<u64, Errno> {
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let content = if dir {
            Content::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            }
        } else {
            Content::File {
                data: Vec::new(),
                durable: Vec::new(),
            }
        };
        self.nodes.insert(
            ino,
            Node {
                content,
                mode,
                uid: req.uid(),
                gid: req.gid(),
                mtime: SystemTime::now(),
                links: 1,
                open: 0,
            },
        );
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// One name fewer for `ino`; a file with no name and no open handle is freed.
    fn unlinked(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.links = node.links.saturating_sub(1);
            self.free_if_unused(ino);
        }
    }

    fn free_if_unused(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            if node.links == 0 && node.open == 0 {
                if let Content::File { data, .. } = &mut node.content {
                    // Its durable bytes stay: a durable entry may still name it after a cut.
                    *data = Vec::new();
                }
            }
        }
    }

    /// The power goes: only durable bytes and entries are left, and what they no longer reach.
    fn cut(&mut self) {
        let d = &mut self.discarded;
        d.cuts += 1;
        let named_before: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.links > 0)
            .map(|(ino, _)| *ino)
            .collect();
        for node in self.nodes.values_mut() {
            node.open = 0;
            match &mut node.content {
                Content::File { data, durable } => {
                    if data != durable {
                        if node.links > 0 {
                            d.files_reverted += 1;
                            d.bytes += data.len().abs_diff(durable.len()) as u64;
                        }
                        *data = durable.clone();
                    }
                }
                Content::Dir { entries, durable } => {
                    let changed = entries
                        .iter()
                        .filter(|(k, v)| durable.get(*k) != Some(v))
                        .count()
                        + durable.keys().filter(|k| !entries.contains_key(*k)).count();
                    d.entries += changed as u64;
                    *entries = durable.clone();
                }
            }
        }
        // Reachable from the root by durable entries; count the names of each.
        let mut links: HashMap<u64, u32> = HashMap::from([(ROOT, 1)]);
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            let Some(Node {
                content: Content::Dir { entries, .. },
                ..
            }) = self.nodes.get(&dir)
            else {
                continue;
            };
            for ino in entries.values() {
                let count = links.entry(*ino).or_insert(0);
                *count += 1;
                if *count == 1 {
                    stack.push(*ino);
                }
            }
        }
        self.discarded.nodes_lost += named_before
            .iter()
            .filter(|ino| !links.contains_key(ino))
            .count() as u64;
        self.nodes.retain(|ino, _| links.contains_key(ino));
        for (ino, node) in &mut self.nodes {
            node.links = links[ino];
        }
    }

    /// Everything as it is now becomes durable (a clean shutdown with `sync`).
    fn sync_everything(&mut self) {
        for node in self.nodes.values_mut() {
            match &mut node.content {
                Content::File { data, durable } => *durable = data.clone(),
                Content::Dir { entries, durable } => *durable = entries.clone(),
            }
        }
    }
}

/// The FUSE face of a [`State`]; a new one for every mount.
struct Served(Arc<Mutex<State>>);

impl Served {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn reply_entry(state: &State, ino: Result<u64, Errno>, reply: ReplyEntry) {
    match ino.and_then(|ino| state.attr(ino)) {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Served {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let state = self.state();
        let ino = state
            .entries(parent.0)
            .and_then(|e| e.get(name).copied().ok_or(Errno::ENOENT));
        reply_entry(&state, ino, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        let result = (|| {
            if let Some(size) = size {
                state.data_mut(ino.0)?.resize(size as usize, 0);
            }
            let node = state.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            if let Some(mode) = mode {
                node.mode = mode;
            }
            if let Some(uid) = uid {
                node.uid = uid;
            }
            if let Some(gid) = gid {
                node.gid = gid;
            }
            state.attr(ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.state();
        let ino = state.add(req, parent.0, name, mode & !umask, true);
        reply_entry(&state, ino, reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state();
        let result = state
            .add(req, parent.0, name, mode & !umask, false)
            .and_then(|ino| {
                state.nodes.get_mut(&ino).expect("just added").open += 1;
                state.attr(ino)
            });
        match result {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state();
        let result = (|| {
            let ino = *state.entries(parent.0)?.get(name).ok_or(Errno::ENOENT)?;
            if matches!(state.nodes[&ino].content, Content::Dir { .. }) {
                return Err(Errno::EISDIR);
            }
            state.entries_mut(parent.0)?.remove(name);
            state.unlinked(ino);
            Ok(())
        })();
        reply_empty(result, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state();
        let result = (|| {
            let ino = *state.entries(parent.0)?.get(name).ok_or(Errno::ENOENT)?;
            if !state.entries(ino)?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            state.entries_mut(parent.0)?.remove(name);
            state.unlinked(ino);
            Ok(())
        })();
        reply_empty(result, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        let result = (|| {
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                return Err(Errno::EINVAL);
            }
            let ino = *state.entries(parent.0)?.get(name).ok_or(Errno::ENOENT)?;
            if let Some(&there) = state.entries(newparent.0)?.get(newname) {
                if there == ino {
                    return Ok(());
                }
                if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    return Err(Errno::EEXIST);
                }
                if let Content::Dir { entries, .. } = &state.nodes[&there].content {
                    if !entries.is_empty() {
                        return Err(Errno::ENOTEMPTY);
                    }
                }
                state.unlinked(there);
            }
            state.entries_mut(parent.0)?.remove(name);
            state
                .entries_mut(newparent.0)?
                .insert(newname.to_owned(), ino);
            Ok(())
        })();
        reply_empty(result, reply);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut state = self.state();
        let result = (|| {
            if matches!(
                state.nodes.get(&ino.0).ok_or(Errno::ENOENT)?.content,
                Content::Dir { .. }
            ) {
                return Err(Errno::EPERM);
            }
            if state.entries(newparent.0)?.contains_key(newname) {
                return Err(Errno::EEXIST);
            }
            state
                .entries_mut(newparent.0)?
                .insert(newname.to_owned(), ino.0);
            state.nodes.get_mut(&ino.0).expect("checked above").links += 1;
            Ok(ino.0)
        })();
        reply_entry(&state, result, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state().nodes.get_mut(&ino.0) {
            Some(node) => {
                node.open += 1;
                reply.opened(FileHandle(0), FopenFlags::empty());
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.state();
        match state.nodes.get(&ino.0).map(|n| &n.content) {
            Some(Content::File { data, .. }) => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Some(Content::Dir { .. }) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state();
        match state.data_mut(ino.0) {
            Ok(data) => {
                let end = offset as usize + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[offset as usize..end].copy_from_slice(bytes);
                reply.written(bytes.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        if let Some(node) = state.nodes.get_mut(&ino.0) {
            node.open = node.open.saturating_sub(1);
        }
        state.free_if_unused(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        state.fsyncs += 1;
        let result = match state.nodes.get_mut(&ino.0).map(|n| &mut n.content) {
            Some(Content::File { data, durable }) => {
                durable.clone_from(data);
                Ok(())
            }
            Some(Content::Dir { entries, durable }) => {
                durable.clone_from(entries);
                Ok(())
            }
            None => Err(Errno::ENOENT),
        };
        reply_empty(result, reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.state();
        let entries = match state.entries(ino.0) {
            Ok(entries) => entries,
            Err(e) => return reply.error(e),
        };
        let listing = [
            (ino.0, FileType::Directory, OsString::from(".")),
            (ino.0, FileType::Directory, OsString::from("..")),
        ]
        .into_iter()
        .chain(entries.iter().map(|(name, child)| {
            let kind = match state.nodes[child].content {
                Content::File { .. } => FileType::RegularFile,
                Content::Dir { .. } => FileType::Directory,
            };
            (*child, kind, name.clone())
        }));
        for (i, (child, kind, name)) in listing.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.fsync(req, ino, fh, datasync, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: the programs under test check free space before they write.
        let blocks = 64 << 20; // 256 GiB of 4 KiB blocks
        reply.statfs(
            blocks,
            blocks / 2,
            blocks / 2,
            1 << 20,
            1 << 19,
            4096,
            255,
            4096,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// A mounted [`DurableFs`]: see the module's documentation.
pub struct DurableFs {
    state: Arc<Mutex<State>>,
    mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl DurableFs {
    /// Mounts an empty filesystem at `mountpoint` (an existing empty directory).
    pub fn mount(mountpoint: &Path) -> std::io::Result<Self> {
        let mut fs = Self {
            state: Arc::new(Mutex::new(State::new())),
            mountpoint: mountpoint.to_path_buf(),
            session: None,
        };
        fs.start()?;
        Ok(fs)
    }

    fn start(&mut self) -> std::io::Result<()> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("nachtwacht-durable".into()),
            MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(Served(self.state.clone()), &self.mountpoint, &config)?;
        self.session = Some(session);
        Ok(())
    }

    fn unmount(&mut self) {
        if let Some(session) = self.session.take() {
            match session.umount_and_join() {
                Ok(()) => {}
                // The kernel aborts the connection when the unmount meets a request still in
                // flight (a release from a killed process); the session thread then ends with
                // this instead of a clean end. The mount itself is gone, as checked below.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(e) => panic!("unmount (is a process still using the filesystem?): {e}"),
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let here = self
            .mountpoint
            .canonicalize()
            .unwrap_or(self.mountpoint.clone());
        assert!(
            !mounts.lines().any(|l| l.split(' ').nth(1) == here.to_str()),
            "{} is still mounted",
            here.display()
        );
    }

    /// The power goes and comes back: the mount is taken down, everything not durable is lost,
    /// and the rest is mounted again. Whoever used the filesystem must be dead (killed) first.
    pub fn cut(&mut self) {
        self.unmount();
        self.state.lock().unwrap().cut();
        self.start().expect("mount again after the cut");
    }

    /// Makes everything as it is now durable, as a clean shutdown does.
    pub fn sync_everything(&self) {
        self.state.lock().unwrap().sync_everything();
    }

    /// What the cuts so far threw away.
    pub fn discarded(&self) -> Discarded {
        self.state.lock().unwrap().discarded
    }

    /// The fsyncs (of files and directories) made so far.
    pub fn fsyncs(&self) -> u64 {
        self.state.lock().unwrap().fsyncs
    }
}

impl Drop for DurableFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}
