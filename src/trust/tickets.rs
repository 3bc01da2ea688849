//! TLS session tickets for stations: after a server restart, a station that held a connection
//! comes back with a ticket and resumes instead of paying (and making the server pay) a full
//! handshake with certificate signatures and verifications.
//!
//! A ticket is the server's resumption state (including the client certificate chain rustls
//! restores on resumption) sealed with AES-256-GCM under the key of one *period* of
//! [`PERIOD_SECS`]. Keys are random, kept in `keys/ticket-keys` (mode 0600) so that a restart and
//! the other ingest nodes on the same data directory can open the tickets, and erased from that
//! file (and from memory) one period after their own: a ticket opens for at most two periods, and
//! once its key is erased nobody can open it, as rustls asks of a ticketer ("lifetime by key
//! rolling and erasure"). A node that finds no key for the current period takes the lock file
//! `keys/ticket-keys.lock`, reads the file again and adds the key if no other node has, so every
//! node uses the same key.
//!
//! What resumption does not do: it does not check the certificate again (rustls restores the chain
//! from the ticket), so the ingest checks after every handshake, resumed or not, that the
//! certificate belongs to an enrolled, unrevoked station and has not expired
//! (`crate::ingest`). Early data (0-RTT) stays off: an upload replayed by an attacker must not
//! reach the server before the handshake completes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::base::datadir::DataDir;
use crate::trust::secrets;

/// How long one ticket key is the current one; tickets it sealed open for up to two periods.
pub const PERIOD_SECS: u64 = 6 * 3600;
const KEY_LEN: usize = 32;
const PERIOD_LEN: usize = 8;
const AAD_LABEL: &[u8] = b"nachtwacht session ticket v1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {reason}")]
    Invalid {
        path: String,
        line: usize,
        reason: String,
    },
    #[error(transparent)]
    Secret(#[from] secrets::Error),
    #[error("no randomness for a ticket key")]
    Random,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The ticket keys of one data directory, shared by every handshake of this process.
pub struct TicketKeys {
    file: PathBuf,
    lock: PathBuf,
    /// Period number → key, for the periods whose tickets still open.
    keys: RwLock<BTreeMap<u64, LessSafeKey>>,
    /// The wall clock in seconds since the epoch; replaced in tests.
    clock: fn() -> u64,
    /// The second of the last reload for an unknown period (see [`Self::open_ticket`]).
    last_reload: AtomicU64,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys")
            .field("file", &self.file)
            .field(
                "periods",
                &self
                    .keys
                    .read()
                    .map(|k| k.keys().copied().collect::<Vec<_>>()),
            )
            .finish()
    }
}

fn wall_clock_secs() -> u64 {
    (crate::base::time::now_ms().max(0) / 1000) as u64
}

impl TicketKeys {
    /// Loads the keys of `dir`, adding the current period's key if the file lacks it.
    pub fn open(dir: &DataDir) -> Result<Self> {
        Self::open_at(&dir.keys(), wall_clock_secs)
    }

    /// As [`Self::open`], for the key folder `keys` and a given clock.
    pub fn open_at(keys: &Path, clock: fn() -> u64) -> Result<Self> {
        let this = Self {
            file: keys.join("ticket-keys"),
            lock: keys.join("ticket-keys.lock"),
            keys: RwLock::new(BTreeMap::new()),
            clock,
            last_reload: AtomicU64::new(u64::MAX),
        };
        this.key_for(this.period_now())?;
        Ok(this)
    }

    fn period_now(&self) -> u64 {
        (self.clock)() / PERIOD_SECS
    }

    /// Whether tickets of `period` still open at `now` (one period late, or one early for a node
    /// whose clock runs behind the one that sealed it).
    fn usable(period: u64, now: u64) -> bool {
        period + 1 >= now && period <= now + 1
    }

    /// The key of `period`, from memory, else from the file, else made (under the lock file) and
    /// written to the file. Keys no longer usable are dropped from memory here and from the file
    /// whenever it is rewritten.
    fn key_for(&self, period: u64) -> Result<()> {
        let now = self.period_now();
        if self.keys.read().expect("ticket keys").contains_key(&period) {
            return Ok(());
        }
        let _lock = crate::base::datadir::lock_file(&self.lock, libc::LOCK_EX)
            .map_err(|source| self.io_error(&self.lock, source))?;
        let mut on_disk = self.read_file()?;
        let before = on_disk.len();
        on_disk.retain(|p, _| Self::usable(*p, now));
        let erased = on_disk.len() != before;
        let added = period == now && !on_disk.contains_key(&period);
        if added {
            let mut key = [0u8; KEY_LEN];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| Error::Random)?;
            on_disk.insert(period, key);
        }
        if added || erased {
            let text: String = on_disk
                .iter()
                .map(|(p, k)| format!("{p} {}\n", hex::encode(k)))
                .collect();
            secrets::replace_private(&self.file, text.as_bytes())?;
        }
        let mut keys = self.keys.write().expect("ticket keys");
        keys.clear();
        for (p, k) in on_disk {
            let unbound = UnboundKey::new(&AES_256_GCM, &k).expect("a 32-byte AES-256 key");
            keys.insert(p, LessSafeKey::new(unbound));
        }
        Ok(())
    }

    fn io_error(&self, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// `period hex-key` per line; a missing file holds no keys.
    fn read_file(&self) -> Result<BTreeMap<u64, [u8; KEY_LEN]>> {
        let text = match std::fs::read_to_string(&self.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.io_error(&self.file, e)),
        };
        let invalid = |line: usize, reason: &str| Error::Invalid {
            path: self.file.display().to_string(),
            line,
            reason: reason.into(),
        };
        let mut keys = BTreeMap::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let (period, key) = line
                .split_once(' ')
                .ok_or_else(|| invalid(i + 1, "expected `period key`"))?;
            let period: u64 = period
                .parse()
                .map_err(|_| invalid(i + 1, "period is not a number"))?;
            let key: [u8; KEY_LEN] = hex::decode(key.trim())
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| invalid(i + 1, "key is not 32 bytes of hex"))?;
            keys.insert(period, key);
        }
        Ok(keys)
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let period = self.period_now();
        if let Err(e) = self.key_for(period) {
            tracing::warn!(error = %e, "no ticket key: this handshake's station gets no ticket");
            return None;
        }
        let keys = self.keys.read().expect("ticket keys");
        let key = keys.get(&period)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(PERIOD_LEN + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&period.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad(period), &mut body)
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn open_ticket(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let (period, rest) = ticket.split_at_checked(PERIOD_LEN)?;
        let period = u64::from_be_bytes(period.try_into().ok()?);
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        let now = self.period_now();
        if !Self::usable(period, now) {
            return None;
        }
        // A key this process has not seen: another node may have made it. The file is read again,
        // at most once a second: tickets come from anyone who sends a ClientHello, and must not
        // make every handshake read a file under a lock.
        if !self.keys.read().expect("ticket keys").contains_key(&period) {
            let second = (self.clock)();
            if self.last_reload.swap(second, Ordering::Relaxed) == second {
                return None;
            }
            self.key_for(period).ok()?;
        }
        let keys = self.keys.read().expect("ticket keys");
        let key = keys.get(&period)?;
        let mut body = sealed.to_vec();
        let plain = key
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                aad(period),
                &mut body,
            )
            .ok()?;
        crate::base::metrics::metrics().tls_resumptions.inc();
        Some(plain.to_vec())
    }

    /// The periods whose keys this process holds (for tests and the operations docs).
    pub fn periods(&self) -> Vec<u64> {
        self.keys
            .read()
            .expect("ticket keys")
            .keys()
            .copied()
            .collect()
    }
}

fn aad(period: u64) -> Aad<[u8; AAD_LABEL.len() + PERIOD_LEN]> {
    let mut a = [0u8; AAD_LABEL.len() + PERIOD_LEN];
    a[..AAD_LABEL.len()].copy_from_slice(AAD_LABEL);
    a[AAD_LABEL.len()..].copy_from_slice(&period.to_be_bytes());
    Aad::from(a)
}

impl rustls::server::ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    /// A ticket sealed now opens until the end of the next period: at least one period.
    fn lifetime(&self) -> u32 {
        PERIOD_SECS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_ticket(cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    // One clock per test function (a `fn` pointer cannot capture).
    static CLOCK_A: AtomicU64 = AtomicU64::new(0);
    fn clock_a() -> u64 {
        CLOCK_A.load(Ordering::SeqCst)
    }

    fn keys_in(dir: &Path) -> Vec<u64> {
        std::fs::read_to_string(dir.join("ticket-keys"))
            .unwrap()
            .lines()
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn tickets_open_across_restarts_and_nodes_until_their_key_is_erased() {
        let tmp = tempfile::tempdir().unwrap();
        CLOCK_A.store(100 * PERIOD_SECS + 5, Ordering::SeqCst);
        let node_a = TicketKeys::open_at(tmp.path(), clock_a).unwrap();
        let ticket = node_a.encrypt(b"resumption state").unwrap();
        assert!(!ticket
            .windows(b"resumption".len())
            .any(|w| w == b"resumption"));

        // Another node, or this one after a restart: the same key from the file.
        let node_b = TicketKeys::open_at(tmp.path(), clock_a).unwrap();
        assert_eq!(
            node_b.decrypt(&ticket).as_deref(),
            Some(&b"resumption state"[..])
        );
        // Tampering is refused, as are short and empty tickets.
        let mut bent = ticket.clone();
        *bent.last_mut().unwrap() ^= 1;
        assert_eq!(node_b.decrypt(&bent), None);
        assert_eq!(node_b.decrypt(&ticket[..10]), None);
        assert_eq!(node_b.decrypt(&[]), None);

        // Next period: a new key, the old one still opens.
        CLOCK_A.store(101 * PERIOD_SECS + 1, Ordering::SeqCst);
        let newer = node_b.encrypt(b"later").unwrap();
        assert_eq!(keys_in(tmp.path()), vec![100, 101]);
        assert!(node_a.decrypt(&ticket).is_some());
        assert_eq!(node_a.decrypt(&newer).as_deref(), Some(&b"later"[..]));

        // Two periods on, the first key is erased from the file and from memory.
        CLOCK_A.store(102 * PERIOD_SECS + 1, Ordering::SeqCst);
        assert!(node_a.encrypt(b"x").is_some());
        assert_eq!(keys_in(tmp.path()), vec![101, 102]);
        assert_eq!(node_a.periods(), vec![101, 102]);
        assert_eq!(node_a.decrypt(&ticket), None, "an erased key opens nothing");
        assert!(node_a.decrypt(&newer).is_some());
        let mode = std::fs::metadata(tmp.path().join("ticket-keys"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap();
        assert_eq!(mode, 0o600);
    }

    static CLOCK_B: AtomicU64 = AtomicU64::new(0);
    fn clock_b() -> u64 {
        CLOCK_B.load(Ordering::SeqCst)
    }

    #[test]
    fn nodes_starting_at_once_agree_on_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        CLOCK_B.store(7 * PERIOD_SECS, Ordering::SeqCst);
        let nodes: Vec<TicketKeys> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| TicketKeys::open_at(tmp.path(), clock_b).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(keys_in(tmp.path()), vec![7]);
        for a in &nodes {
            let t = a.encrypt(b"state").unwrap();
            for b in &nodes {
                assert_eq!(b.decrypt(&t).as_deref(), Some(&b"state"[..]));
            }
        }
    }
}
