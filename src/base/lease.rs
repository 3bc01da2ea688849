//! Leases: work that one process of several does at a time (decoding and compaction, the
//! pipelines), held in the database so that processes on different machines agree.
//!
//! A lease is held until `until_ms` and renewed while its holder works; a holder that dies stops
//! renewing and the lease is free once it runs out. Every new holder gets a larger `token`
//! (fencing): a holder that stalled past its lease and woke up finds, in the transaction that
//! would commit its work, that the token in the database is no longer its own, and commits
//! nothing.

use crate::base::db::{Connection, Db, OptionalExtension, Result};

/// The work a lease stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Decoding spooled bundles and compacting the datasets.
    Decode,
    /// The incremental evaluation of the pipelines and the housekeeping after it.
    Pipelines,
    /// Releasing a month's management figures.
    ManagementRelease,
}

impl Work {
    pub const ALL: [Work; 3] = [Work::Decode, Work::Pipelines, Work::ManagementRelease];

    pub fn as_str(self) -> &'static str {
        match self {
            Work::Decode => "decode",
            Work::Pipelines => "pipelines",
            Work::ManagementRelease => "management-release",
        }
    }
}

use crate::base::process::died_here;
pub use crate::base::process::name as holder_name;

/// A lease this process holds.
#[derive(Clone)]
pub struct Lease {
    db: Db,
    work: Work,
    holder: String,
    token: i64,
    ttl_ms: i64,
}

impl Lease {
    /// Takes the lease for `ttl_ms` if it is free, run out, or already this holder's.
    pub fn try_acquire(
        db: &Db,
        work: Work,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Self>> {
        let mut conn = db.lock();
        let tx = conn.transaction()?;
        let current: Option<(String, i64, i64)> = tx
            .query_row(
                "SELECT holder, token, until_ms FROM leases WHERE name = ?1",
                [work.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let token = match current {
            None => {
                tx.execute(
                    "INSERT INTO leases (name, holder, token, until_ms) VALUES (?1, ?2, 1, ?3)",
                    (work.as_str(), holder, now_ms + ttl_ms),
                )?;
                1
            }
            Some((h, token, until)) if h == holder || until < now_ms || died_here(&h) => {
                let token = if h == holder { token } else { token + 1 };
                tx.execute(
                    "UPDATE leases SET holder = ?2, token = ?3, until_ms = ?4 WHERE name = ?1",
                    (work.as_str(), holder, token, now_ms + ttl_ms),
                )?;
                token
            }
            Some(_) => return Ok(None),
        };
        tx.commit()?;
        Ok(Some(Self {
            db: db.clone(),
            work,
            holder: holder.to_string(),
            token,
            ttl_ms,
        }))
    }

    pub fn token(&self) -> i64 {
        self.token
    }

    /// Extends the lease; `false` when another holder has it now.
    pub fn renew(&self, now_ms: i64) -> Result<bool> {
        let changed = self.db.lock().execute(
            "UPDATE leases SET until_ms = ?4 WHERE name = ?1 AND holder = ?2 AND token = ?3",
            (
                self.work.as_str(),
                &self.holder,
                self.token,
                now_ms + self.ttl_ms,
            ),
        )?;
        Ok(changed == 1)
    }

    /// Whether the lease is still this holder's, read inside the caller's transaction: work is
    /// committed in the same transaction only if it is.
    pub fn held_in(&self, tx: &Connection) -> Result<bool> {
        let token: Option<i64> = tx
            .query_row(
                "SELECT token FROM leases WHERE name = ?1 AND holder = ?2",
                (self.work.as_str(), &self.holder),
                |r| r.get(0),
            )
            .optional()?;
        Ok(token == Some(self.token))
    }

    /// Gives the lease up at once (its next holder need not wait for it to run out).
    pub fn release(self) -> Result<()> {
        self.db.lock().execute(
            "UPDATE leases SET until_ms = 0 WHERE name = ?1 AND holder = ?2 AND token = ?3",
            (self.work.as_str(), &self.holder, self.token),
        )?;
        Ok(())
    }
}

/// Keeps a lease renewed from a thread of its own while work runs; stops (and releases the
/// lease) when dropped.
pub struct Renewing {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    lease: Lease,
}

impl Renewing {
    pub fn start(lease: Lease) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let l = lease.clone();
        let every = std::time::Duration::from_millis((lease.ttl_ms / 3).max(1) as u64);
        let thread = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                match l.renew(crate::base::time::now_ms()) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(work = l.work.as_str(), "lease lost to another process");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(work = l.work.as_str(), error = %e, "lease not renewed")
                    }
                }
            }
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
            lease,
        }
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl Drop for Renewing {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = self.lease.clone().release() {
            tracing::warn!(work = self.lease.work.as_str(), error = %e, "lease not released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_a_run_out_lease_passes_on_and_the_old_holder_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(dir.path());
        let a = Lease::try_acquire(&db, Work::Decode, "a", 1_000, 10_000)
            .unwrap()
            .unwrap();
        assert!(Lease::try_acquire(&db, Work::Decode, "b", 1_000, 10_500)
            .unwrap()
            .is_none());
        // Another kind of work is another lease.
        assert!(Lease::try_acquire(&db, Work::Pipelines, "b", 1_000, 10_500)
            .unwrap()
            .is_some());
        assert!(a.renew(10_900).unwrap());
        // a stops renewing; once its lease has run out b takes it, with a larger token.
        let b = Lease::try_acquire(&db, Work::Decode, "b", 1_000, 12_000)
            .unwrap()
            .unwrap();
        assert!(b.token() > a.token());
        assert!(!a.renew(12_100).unwrap(), "the old holder cannot renew");
        let conn = db.lock();
        assert!(!a.held_in(&conn).unwrap(), "nor commit");
        assert!(b.held_in(&conn).unwrap());
        drop(conn);
        b.release().unwrap();
        assert!(Lease::try_acquire(&db, Work::Decode, "c", 1_000, 12_200)
            .unwrap()
            .is_some());
    }

    /// A holder on this machine whose process is gone does not make the next one wait.
    #[test]
    fn a_dead_local_holders_lease_is_free_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(dir.path());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let host = holder_name().rsplitn(3, ':').nth(2).unwrap().to_string();
        let dead = format!("{host}:{pid}:00000000");
        let live = format!("{host}:{}:00000000", std::process::id());
        Lease::try_acquire(&db, Work::Decode, &dead, 60_000, 0)
            .unwrap()
            .unwrap();
        assert!(Lease::try_acquire(&db, Work::Decode, "me", 60_000, 2)
            .unwrap()
            .is_some());
        Lease::try_acquire(&db, Work::Pipelines, &live, 60_000, 0)
            .unwrap()
            .unwrap();
        assert!(Lease::try_acquire(&db, Work::Pipelines, "me", 60_000, 1)
            .unwrap()
            .is_none());
    }
}
