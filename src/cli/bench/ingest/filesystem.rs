//! Which file system the benchmark's data directory is on, printed beside the figures: on ext4
//! without a journal every new file's inode allocation skips, one by one, the inodes freed in the
//! last minutes (the kernel's `recently_deleted` check, made only when there is no journal), which
//! after a large deletion is most of the spool's cost. A reader of the figures needs to know
//! whether they include that.

use std::path::Path;

/// The file system a directory is on, as far as `/proc` tells.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FileSystem {
    pub kind: String,
    pub device: String,
    /// For ext4: whether it has a journal (`/proc/fs/jbd2/<device>-8` exists); otherwise `None`.
    pub journal: Option<bool>,
}

impl std::fmt::Display for FileSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.kind, self.device)?;
        match self.journal {
            Some(true) => write!(f, ", with a journal"),
            Some(false) => write!(
                f,
                ", without a journal: a new file's inode skips those freed in the last minutes"
            ),
            None => Ok(()),
        }
    }
}

/// The file system `dir` is on, from this process's mount table; `None` if it cannot be read.
pub(super) fn of(dir: &Path) -> Option<FileSystem> {
    let dir = dir.canonicalize().ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (kind, source) = mount_of(&mountinfo, &dir)?;
    let journal = (kind == "ext4").then(|| {
        // jbd2 names a journal after the kernel's name of the device (dm-0 for a mapper link).
        let name = Path::new(&source)
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        name.is_some_and(|n| Path::new("/proc/fs/jbd2").join(format!("{n}-8")).exists())
    });
    Some(FileSystem {
        kind,
        device: source,
        journal,
    })
}

/// The file system type and source of the mount that holds `path` (the longest mount point that
/// is a prefix of it), from the text of `/proc/<pid>/mountinfo`.
fn mount_of(mountinfo: &str, path: &Path) -> Option<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let point = unescape(mount.split(' ').nth(4)?);
            let mut fs = fs.split(' ');
            let kind = fs.next()?.to_string();
            let source = unescape(fs.next()?);
            path.starts_with(&point).then_some((point, kind, source))
        })
        // A later line mounted over the same point hides the earlier one: keep the last longest.
        .fold(
            None,
            |best: Option<(String, String, String)>, m| match &best {
                Some(b) if b.0.len() > m.0.len() => best,
                _ => Some(m),
            },
        )
        .map(|(_, kind, source)| (kind, source))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and tab, newline and backslash).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 22 0:25 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
31 22 259:1 / /srv/nacht\\040data rw,relatime shared:6 - xfs /dev/nvme0n1p1 rw
32 22 0:26 / /srv rw shared:7 - ext4 /dev/sdb1 rw
33 22 0:27 / /srv rw shared:8 - btrfs /dev/sdc rw
";

    #[test]
    fn the_longest_mount_point_holding_the_path_wins() {
        let at = |p: &str| mount_of(MOUNTINFO, Path::new(p));
        assert_eq!(at("/var/lib/x"), Some(("ext4".into(), "/dev/vda".into())));
        assert_eq!(at("/tmp/a/b"), Some(("tmpfs".into(), "tmpfs".into())));
        // A mount point with a space, escaped in the table.
        assert_eq!(
            at("/srv/nacht data/spool"),
            Some(("xfs".into(), "/dev/nvme0n1p1".into()))
        );
        // Whole path components only: /tmpx is not under /tmp. Two mounts on /srv: the later,
        // on top, is the one the path sees.
        assert_eq!(at("/tmpx"), Some(("ext4".into(), "/dev/vda".into())));
        assert_eq!(at("/srv/other"), Some(("btrfs".into(), "/dev/sdc".into())));
    }

    #[test]
    fn octal_escapes_are_undone_and_a_lone_backslash_kept() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape("trailing\\"), "trailing\\");
        assert_eq!(unescape("no\\x"), "no\\x");
    }

    #[test]
    fn this_machines_temporary_directory_has_a_file_system() {
        let fs = of(&std::env::temp_dir()).expect("a mount holds the temporary directory");
        assert!(!fs.kind.is_empty(), "{fs:?}");
        assert_eq!(fs.journal.is_some(), fs.kind == "ext4", "{fs:?}");
    }
}
