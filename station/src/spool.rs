//! The station's durable local spool.
//!
//! A bundle is written to a temporary file, fsynced, renamed into `pending/` and the directory
//! fsynced, so after a power cut it is either fully there or not there at all. It leaves `pending/`
//! only when the server acknowledged it (deleted) or rejected it for good (moved to `set-aside/`
//! with a `.reason` file beside it, for an operator to look at).
//!
//! File names are `<sequence, 12 digits>-<bundle id>.age`, so the directory listing is upload order.
//!
//! The spool has a size cap. When a new bundle would pass it, [`Spool::put`] refuses with
//! [`Error::SpoolFull`] and the agent stops taking readings off the device for this pass: its cursor
//! does not move, so those readings stay on the device (or in the export) and are sealed once the
//! server has taken some of the backlog. Nothing already sealed is ever dropped to make room, and
//! heartbeats report `full` so the server raises a communication alert.
//!
//! Every acknowledgement is appended to `acknowledged.log` (fsynced) before the local copy is
//! deleted: the station's own record of what the server confirmed, and when.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use nachtwacht_wire::protocol::{Ack, SpoolStatus};
use nachtwacht_wire::{BundleId, Signal};

use crate::durable;
use crate::seal::SealedBundle;
use crate::{Error, Result};

/// Default cap (see [`crate::config::DEFAULT_SPOOL_CAP_BYTES`]).
pub const DEFAULT_CAP_BYTES: u64 = crate::config::DEFAULT_SPOOL_CAP_BYTES;

#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    cap_bytes: u64,
}

/// A bundle waiting in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledBundle {
    pub path: PathBuf,
    pub sequence: u64,
    pub bundle_id: BundleId,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Spool {
        path: path.display().to_string(),
        source,
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    durable::write_durably(path, bytes).map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    durable::sync_dir(dir).map_err(io_err(dir))
}

impl Spool {
    pub fn open(root: &Path) -> Result<Self> {
        Self::with_cap(root, DEFAULT_CAP_BYTES)
    }

    pub fn with_cap(root: &Path, cap_bytes: u64) -> Result<Self> {
        for sub in ["pending", "set-aside"] {
            let d = root.join(sub);
            durable::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            cap_bytes,
        })
    }

    /// Bundles and bytes waiting, against the cap.
    pub fn status(&self) -> Result<SpoolStatus> {
        let pending = self.pending()?;
        let bytes = self.pending_bytes(&pending);
        Ok(SpoolStatus {
            pending_bundles: pending.len() as u64,
            pending_bytes: bytes,
            capacity_bytes: self.cap_bytes,
            full: bytes >= self.cap_bytes,
        })
    }

    fn pending_bytes(&self, pending: &[SpooledBundle]) -> u64 {
        pending
            .iter()
            .filter_map(|b| fs::metadata(&b.path).ok())
            .map(|m| m.len())
            .sum()
    }

    fn pending_dir(&self) -> PathBuf {
        self.root.join("pending")
    }

    /// The next sequence number, persisted before it is used so it never repeats.
    fn next_sequence(&self) -> Result<u64> {
        let path = self.root.join("sequence");
        let last = match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|e| Error::Spool {
                path: path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err(&path)(e)),
        };
        let next = last + 1;
        write_durably(&path, next.to_string().as_bytes())?;
        Ok(next)
    }

    /// The latest reading time (ms) sealed into the spool of any of this device's signals (each
    /// signal has its own cursor, see [`Spool::signal_cursors`]).
    pub fn cursor(&self, device_serial: &str) -> Result<Option<i64>> {
        let path = self.cursor_path(device_serial);
        match fs::read_to_string(&path) {
            // The first line: the device's overall cursor (per-signal lines follow).
            Ok(s) => Ok(s.lines().next().and_then(|l| l.trim().parse().ok())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Up to which reading time each of this device's signals has been sealed. A device's files
    /// need not end at the same instant (an export being written, one signal a sample behind), so
    /// one cursor per device would skip the lagging signal's next rows.
    pub fn signal_cursors(&self, device_serial: &str) -> Result<SignalCursors> {
        let path = self.cursor_path(device_serial);
        let text = match fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SignalCursors::default())
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut lines = text.lines();
        let overall: Option<i64> = lines.next().and_then(|l| l.trim().parse().ok());
        let by_signal: BTreeMap<Signal, i64> = lines
            .filter_map(|l| {
                let (name, ts) = l.split_once(' ')?;
                Some((Signal::from_name(name)?, ts.trim().parse().ok()?))
            })
            .collect();
        // A file of one line (written before cursors were per signal) holds for every signal.
        let legacy = by_signal.is_empty().then_some(overall).flatten();
        Ok(SignalCursors { legacy, by_signal })
    }

    /// Records that each signal's readings up to the given time are sealed (never moving a
    /// cursor back). The first line stays the device's overall cursor, which [`Spool::cursor`]
    /// reads.
    pub fn advance_signal_cursors(
        &self,
        device_serial: &str,
        sealed_up_to: &BTreeMap<Signal, i64>,
    ) -> Result<()> {
        let mut cursors = self.signal_cursors(device_serial)?;
        for (signal, ts) in sealed_up_to {
            let at = cursors.of(*signal).map_or(*ts, |c| c.max(*ts));
            cursors.by_signal.insert(*signal, at);
        }
        let overall = cursors
            .by_signal
            .values()
            .copied()
            .chain(cursors.legacy)
            .max()
            .unwrap_or(i64::MIN);
        let mut text = format!("{overall}\n");
        for (signal, ts) in &cursors.by_signal {
            text += &format!("{} {ts}\n", signal.name());
        }
        if let Some(legacy) = cursors.legacy {
            // Signals not seen since the upgrade keep the old device-wide cursor.
            for signal in Signal::ALL {
                if !cursors.by_signal.contains_key(&signal) {
                    text += &format!("{} {legacy}\n", signal.name());
                }
            }
        }
        write_durably(&self.cursor_path(device_serial), text.as_bytes())
    }

    fn cursor_path(&self, device_serial: &str) -> PathBuf {
        let safe: String = device_serial
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join(format!("cursor-{safe}"))
    }

    /// Makes a sealed bundle durable in `pending/` and returns where it is. A bundle whose id is
    /// already pending is not spooled twice.
    pub fn put(&self, sealed: &SealedBundle) -> Result<SpooledBundle> {
        let pending = self.pending()?;
        if let Some(existing) = pending.iter().find(|b| b.bundle_id == sealed.bundle_id) {
            return Ok(existing.clone());
        }
        let pending_bytes = self.pending_bytes(&pending);
        if pending_bytes + sealed.ciphertext.len() as u64 > self.cap_bytes {
            return Err(Error::SpoolFull {
                pending_bytes,
                cap_bytes: self.cap_bytes,
            });
        }
        let sequence = self.next_sequence()?;
        let path = self
            .pending_dir()
            .join(format!("{sequence:012}-{}.age", sealed.bundle_id));
        write_durably(&path, &sealed.ciphertext)?;
        Ok(SpooledBundle {
            path,
            sequence,
            bundle_id: sealed.bundle_id,
        })
    }

    /// Pending bundles in sequence order.
    pub fn pending(&self) -> Result<Vec<SpooledBundle>> {
        let dir = self.pending_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".age") else {
                continue; // leftovers of an interrupted write end in .tmp
            };
            let Some((seq, id)) = stem.split_once('-') else {
                continue;
            };
            if let (Ok(sequence), Some(bundle_id)) = (seq.parse(), BundleId::from_hex(id)) {
                out.push(SpooledBundle {
                    path,
                    sequence,
                    bundle_id,
                });
            }
        }
        out.sort_by_key(|b| b.sequence);
        Ok(out)
    }

    pub fn read(&self, bundle: &SpooledBundle) -> Result<Vec<u8>> {
        fs::read(&bundle.path).map_err(io_err(&bundle.path))
    }

    /// The server holds the bundle durably: note the acknowledgement, then forget the bundle.
    pub fn acknowledge(&self, bundle: &SpooledBundle, ack: &Ack) -> Result<()> {
        let journal = self.root.join("acknowledged.log");
        let line = format!(
            "{} {} {:?} {}",
            bundle.sequence, bundle.bundle_id, ack.code, ack.server_time_ms
        );
        durable::append_line(&journal, &line).map_err(io_err(&journal))?;
        fs::remove_file(&bundle.path).map_err(io_err(&bundle.path))?;
        sync_dir(&self.pending_dir())
    }

    /// The server will never take this bundle: keep it aside with the reason.
    pub fn set_aside(&self, bundle: &SpooledBundle, reason: &str) -> Result<()> {
        let name = bundle.path.file_name().expect("spooled file has a name");
        let dest = self.root.join("set-aside").join(name);
        write_durably(&dest.with_extension("reason"), reason.as_bytes())?;
        fs::rename(&bundle.path, &dest).map_err(io_err(&dest))?;
        // Both directories: synced only where it left, a cut could leave the bundle in neither.
        sync_dir(&self.root.join("set-aside"))?;
        sync_dir(&self.pending_dir())
    }
}

/// Per-signal cursors of one device (see [`Spool::signal_cursors`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalCursors {
    /// A cursor file from before cursors were per signal: it holds for every signal.
    legacy: Option<i64>,
    by_signal: BTreeMap<Signal, i64>,
}

impl SignalCursors {
    /// Up to which time `signal` is sealed.
    pub fn of(&self, signal: Signal) -> Option<i64> {
        self.by_signal.get(&signal).copied().or(self.legacy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(b: u8) -> SealedBundle {
        SealedBundle {
            bundle_id: BundleId([b; 16]),
            ciphertext: vec![b; 100],
        }
    }

    #[test]
    fn bundles_come_back_in_sequence_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let a = spool.put(&sealed(1)).unwrap();
        let b = spool.put(&sealed(2)).unwrap();
        assert_eq!((a.sequence, b.sequence), (1, 2));
        // A torn write leaves only a .tmp file, which is not a pending bundle.
        fs::write(spool.pending_dir().join("000000000003-xx.tmp"), b"torn").unwrap();

        let reopened = Spool::open(dir.path()).unwrap();
        assert_eq!(reopened.pending().unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(reopened.read(&a).unwrap(), vec![1; 100]);

        reopened
            .acknowledge(&a, &Ack::stored(Some(a.bundle_id), 77))
            .unwrap();
        let journal = fs::read_to_string(dir.path().join("acknowledged.log")).unwrap();
        assert_eq!(journal, format!("1 {} Stored 77\n", a.bundle_id));
        reopened.set_aside(&b, "rejected: unknown device").unwrap();
        assert!(reopened.pending().unwrap().is_empty());
        let reason = fs::read_to_string(
            dir.path()
                .join("set-aside")
                .join(b.path.file_name().unwrap())
                .with_extension("reason"),
        )
        .unwrap();
        assert_eq!(reason, "rejected: unknown device");
        // Sequence numbers never repeat, even after reopening.
        assert_eq!(reopened.put(&sealed(3)).unwrap().sequence, 3);
    }

    #[test]
    fn a_full_spool_refuses_new_bundles_and_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::with_cap(dir.path(), 250).unwrap();
        spool.put(&sealed(1)).unwrap();
        spool.put(&sealed(2)).unwrap();
        assert!(matches!(
            spool.put(&sealed(3)),
            Err(Error::SpoolFull {
                pending_bytes: 200,
                cap_bytes: 250
            })
        ));
        let status = spool.status().unwrap();
        assert_eq!((status.pending_bundles, status.pending_bytes), (2, 200));
        assert!(!status.full);
        assert_eq!(spool.pending().unwrap().len(), 2);
    }
}
