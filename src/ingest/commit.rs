//! Group commit: many stream tasks hand over verified bundles, one thread makes them durable together.
//!
//! fsync latency would otherwise cap ingest at one bundle per (file fsync + directory fsync + WAL
//! fsync). Here the committer takes every bundle that is ready, writes them to the spool together
//! (locally one segment file for the batch, one data sync and one directory sync, see
//! [`crate::spool::Location`]; on object storage an object each, the PUTs in parallel), then
//! registers them all in one SQL transaction.
//! Stream tasks wait for their batch's outcome before acknowledging.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nachtwacht_wire::protocol::reader::Body;
use nachtwacht_wire::UploadHeader;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error};

use super::admission::ReceiveSlots;
use crate::base::blobs::Key;
use crate::spool::{self, Known, Spool};
use crate::trust::audit;

/// Largest batch: bounds the time one transaction holds the database.
const MAX_BATCH: usize = 512;

/// How long a small batch waits for uploads still being received, so that they share its
/// directory fsync and SQL commit. At 200 bundles/s a batch held about 3 bundles without waiting,
/// about 15 with it, and the server spent about a tenth less CPU per GB (docs/benchmarks.md); an
/// acknowledgement comes at most this much later.
pub const LINGER: Duration = Duration::from_millis(20);

/// A batch this large is committed at once, without waiting for more.
const LINGER_BATCH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Duplicate,
    /// The id is already held with different content.
    Conflict,
}

struct Job {
    station_id: i64,
    header: UploadHeader,
    /// The ciphertext, already checked against the header's size and digest, in the chunks it
    /// arrived in.
    body: Body,
    received_at_ms: i64,
    reply: oneshot::Sender<Result<Outcome, String>>,
}

/// How well batching works: bundles per directory fsync + SQL commit.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub batches: AtomicU64,
    pub bundles: AtomicU64,
}

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
    pub stats: Arc<CommitStats>,
}

impl Committer {
    /// Starts the committer thread; it ends when every `Committer` clone is dropped. A batch
    /// smaller than [`LINGER_BATCH`] waits up to `linger` for more while any of `slots` is in use.
    pub fn start(spool: Spool, slots: ReceiveSlots, linger: Duration) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let stats = Arc::new(CommitStats::default());
        let s = stats.clone();
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || {
                let linger = Linger {
                    slots,
                    longest: linger,
                };
                run(rx, spool, s, linger)
            })?;
        Ok(Self { tx, stats })
    }

    /// Stores a verified bundle as a registered spool file. Returns once it is durable (or failed).
    pub async fn commit(
        &self,
        station_id: i64,
        header: UploadHeader,
        body: Body,
    ) -> Result<Outcome, String> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            station_id,
            header,
            body,
            received_at_ms: crate::base::time::now_ms(),
            reply,
        };
        self.tx
            .send(job)
            .await
            .map_err(|_| "committer stopped".to_string())?;
        rx.await.map_err(|_| "committer stopped".to_string())?
    }
}

fn run(mut rx: mpsc::Receiver<Job>, spool: Spool, stats: Arc<CommitStats>, linger: Linger) {
    // A clock for waiting on the channel with a deadline; the thread has no runtime of its own.
    let clock = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(clock) => Some(clock),
        Err(e) => {
            error!(error = %e, "group commit: no timer, so batches do not wait for more bundles");
            None
        }
    };
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        take_ready(&mut rx, &mut batch);
        if let Some(clock) = &clock {
            linger.gather(clock, &mut rx, &mut batch);
        }
        let n = batch.len();
        let started = std::time::Instant::now();
        let committed = commit_batch(&spool, &mut batch);
        let m = crate::base::metrics::metrics();
        m.group_commit_bundles.observe(n as f64);
        m.group_commit_duration
            .observe(started.elapsed().as_secs_f64());
        match committed {
            Ok(outcomes) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.bundles.fetch_add(n as u64, Ordering::Relaxed);
                debug!(bundles = n, "group commit");
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                error!(error = %e, bundles = n, "group commit failed");
                for job in batch {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Moves every job that is ready into `batch`, up to [`MAX_BATCH`].
fn take_ready(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// When a small batch waits for more bundles.
struct Linger {
    slots: ReceiveSlots,
    longest: Duration,
}

impl Linger {
    /// Adds to `batch` what arrives while other uploads are still being received, until it holds
    /// [`LINGER_BATCH`] or `longest` has passed since this was called. With no upload being
    /// received nothing more is coming soon, and the batch is committed at once.
    fn gather(
        &self,
        clock: &tokio::runtime::Runtime,
        rx: &mut mpsc::Receiver<Job>,
        batch: &mut Vec<Job>,
    ) {
        let deadline = tokio::time::Instant::now() + self.longest;
        while batch.len() < LINGER_BATCH && self.slots.in_use() > 0 {
            let next = clock.block_on(async { tokio::time::timeout_at(deadline, rx.recv()).await });
            match next {
                Ok(Some(job)) => {
                    batch.push(job);
                    take_ready(rx, batch);
                }
                // The deadline passed, or every sender is gone: commit what there is.
                Ok(None) | Err(_) => break,
            }
        }
    }
}

fn commit_batch(spool: &Spool, batch: &mut [Job]) -> spool::Result<Vec<Outcome>> {
    // Decide each job's fate as far as this process can see. Several processes may store one id
    // at once; the database's primary key decides between them below, not this look.
    let mut outcomes = Vec::with_capacity(batch.len());
    // The digest of the first upload of each id in this batch: a later upload of the same id is a
    // duplicate only if its digest is the same. Answering `duplicate` to other content would make
    // its station delete readings the server never stored.
    let mut in_batch: HashMap<_, &str> = HashMap::new();
    for job in batch.iter() {
        let outcome = match in_batch.get(&job.header.bundle_id) {
            Some(first) if *first == job.header.sha256 => Outcome::Duplicate,
            Some(_) => Outcome::Conflict,
            None => {
                in_batch.insert(job.header.bundle_id, job.header.sha256.as_str());
                match spool.known(&job.header.bundle_id, &job.header.sha256)? {
                    Known::New => Outcome::Stored,
                    Known::Same => Outcome::Duplicate,
                    Known::Conflict { .. } => Outcome::Conflict,
                }
            }
        };
        outcomes.push(outcome);
    }
    // 1. Ciphertexts, made durable together. On a local disk: one new segment for the whole
    //    batch, one data sync and one directory sync; each bundle is a range of it. On object
    //    storage: an object each, named by its id and digest, so that another process's upload
    //    of the same id with other content has a key of its own. Bytes without their row (a
    //    crash, a failure before the transaction, or the loser of a race for the id) are never
    //    acknowledged; they are swept later or kept for the re-send.
    let to_place: Vec<usize> = (0..batch.len())
        .filter(|&i| outcomes[i] == Outcome::Stored)
        .collect();
    let mut offsets: HashMap<usize, u64> = HashMap::new();
    let segment = match spool.blobs().local() {
        Some(local) if !to_place.is_empty() => {
            let segment = Key::new_segment();
            let mut offset = 0;
            let parts: Vec<&[u8]> = to_place
                .iter()
                .flat_map(|&i| {
                    offsets.insert(i, offset);
                    offset += batch[i].body.len() as u64;
                    batch[i].body.chunks().iter().map(|c| c.as_ref())
                })
                .collect();
            local.write_segment(&segment, &parts)?;
            Some(segment)
        }
        _ => {
            // An object is put whole: each body in one piece.
            let bodies: Vec<Vec<u8>> = to_place.iter().map(|&i| batch[i].body.to_vec()).collect();
            let files: Vec<(Key, &[u8])> = to_place
                .iter()
                .zip(&bodies)
                .map(|(&i, body)| {
                    let h = &batch[i].header;
                    (Key::spooled(&h.bundle_id, &h.sha256), body.as_slice())
                })
                .collect();
            let placed = spool.blobs().place_all(&files)?;
            for (&i, placed) in to_place.iter().zip(placed) {
                if placed == crate::base::blobs::Placed::Other {
                    // Another upload of this id with other content holds the object.
                    outcomes[i] = Outcome::Conflict;
                }
            }
            None
        }
    };
    // 2. Rows, one transaction (one WAL fsync) for all of them. The primary key decides a race
    //    with another process: the row that is there already says duplicate or conflict.
    let bytes = {
        let mut conn = spool.db().lock();
        let written = conn
            .transaction()
            .map_err(spool::Error::from)
            .and_then(|tx| {
                let bytes = insert_rows(&tx, batch, &mut outcomes, segment.as_ref(), &offsets)?;
                Ok((tx, bytes))
            });
        match written {
            // A COMMIT that fails may still have committed (a connection lost on the way), so its
            // segment stays; the start-up sweep removes it if no row names it.
            Ok((tx, bytes)) => {
                tx.commit()?;
                bytes
            }
            // Nothing was committed, so no row names the segment: it goes now rather than at the
            // next start, or a database outage would leave one behind per attempt.
            Err(e) => {
                if let Some(segment) = &segment {
                    if let Err(removing) = spool.blobs().remove(segment) {
                        tracing::warn!(segment = segment.as_str(), error = %removing,
                            "removing the segment of a batch whose rows failed");
                    }
                }
                return Err(e);
            }
        }
    };
    if let Some(segment) = &segment {
        if !outcomes.contains(&Outcome::Stored) {
            // Every upload in it lost a race with another process for its id: no row names it.
            spool.blobs().remove(segment)?;
        }
    }
    spool.add_backlog(bytes);
    Ok(outcomes)
}

/// Inserts the rows of a batch's stored bundles and their custody entry in `tx`, turning the
/// outcome of each upload whose id another process stored first into duplicate or conflict.
/// Returns the bytes newly stored.
fn insert_rows(
    tx: &crate::base::db::Transaction<'_>,
    batch: &[Job],
    outcomes: &mut [Outcome],
    segment: Option<&Key>,
    offsets: &HashMap<usize, u64>,
) -> spool::Result<u64> {
    let mut bytes = 0;
    for (i, (job, outcome)) in batch.iter().zip(outcomes.iter_mut()).enumerate() {
        if *outcome == Outcome::Stored {
            let h = &job.header;
            let known = spool::insert_row_once(
                tx,
                &spool::Spooled {
                    bundle_id: h.bundle_id,
                    station_id: job.station_id,
                    sequence: h.sequence,
                    size: h.size,
                    sha256: &h.sha256,
                    received_at_ms: job.received_at_ms,
                    segment: segment.zip(offsets.get(&i).copied()),
                },
            )?;
            *outcome = match known {
                Known::New => {
                    bytes += h.size;
                    Outcome::Stored
                }
                Known::Same => Outcome::Duplicate,
                Known::Conflict { .. } => Outcome::Conflict,
            };
        }
    }
    let stored: Vec<(String, String)> = batch
        .iter()
        .zip(outcomes.iter())
        .filter(|(_, o)| **o == Outcome::Stored)
        .map(|(job, _)| (job.header.bundle_id.to_hex(), job.header.sha256.clone()))
        .collect();
    if !stored.is_empty() {
        let now = crate::base::time::now_ms();
        audit::custody::record(tx, now, audit::custody::CustodyStep::Stored, &stored)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::db::Db;
    use nachtwacht_wire::BundleId;

    /// A spool (the tests' ciphertext store) and database with one enrolled station (id 1,
    /// name `s`).
    fn spool_with_station() -> (tempfile::TempDir, Db, Spool) {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::base::db::testing::open(tmp.path());
        db.lock()
            .execute(
                "INSERT INTO stations (id, name, cert_sha256, enrolled_at_ms) VALUES (1, 's', 'f', 0)",
                [],
            )
            .unwrap();
        let spool = Spool::new(crate::base::blobs::testing::open(tmp.path()), db.clone());
        (tmp, db, spool)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_uploads_of_one_bundle_are_stored_once() {
        let (_tmp, db, spool) = spool_with_station();
        let committer = Committer::start(spool.clone(), ReceiveSlots::new(1), LINGER).unwrap();

        let mut tasks = Vec::new();
        for i in 0..40u8 {
            // 20 distinct bundles, each uploaded twice at the same time.
            let id = BundleId([i % 20; 16]);
            let body = vec![i % 20; 100];
            let header = UploadHeader::for_ciphertext(id, "s", (i % 20) as u64, &body);
            let c = committer.clone();
            tasks.push(tokio::spawn(async move {
                c.commit(1, header, body.into()).await
            }));
        }
        let mut stored = 0;
        let mut duplicate = 0;
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Outcome::Stored => stored += 1,
                Outcome::Duplicate => duplicate += 1,
                Outcome::Conflict => panic!("same content is no conflict"),
            }
        }
        assert_eq!((stored, duplicate), (20, 20));
        let rows: i64 = db
            .lock()
            .query_row("SELECT count(*) FROM bundles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 20);
        // Each stored bundle reads back from where its row says, and the spool holds nothing
        // else: on a local disk segments of the batches' stored bundles, on object storage an
        // object per bundle.
        for i in 0..20u8 {
            let at = spool.location(&BundleId([i; 16])).unwrap().unwrap();
            assert_eq!(
                at.read(spool.blobs()).unwrap(),
                Some(vec![i; 100]),
                "{at:?}"
            );
        }
        let objects = spool.blobs().list(crate::base::blobs::SPOOL).unwrap();
        let spooled_bytes: u64 = objects.iter().map(|o| o.size).sum();
        assert_eq!(spooled_bytes, 2000, "{objects:?}");
        match spool.blobs().local() {
            Some(_) => assert!(objects.iter().all(|o| o.key.is_segment()), "{objects:?}"),
            None => {
                assert_eq!(objects.len(), 20, "{objects:?}");
                assert!(objects.iter().all(|o| o.key.as_str().ends_with(".age")));
            }
        }
        assert_eq!(spool.backlog_bytes(), 2000);
        // Forty commits arriving together do not cost forty directory fsyncs and SQL commits.
        let batches = committer.stats.batches.load(Ordering::Relaxed);
        assert_eq!(committer.stats.bundles.load(Ordering::Relaxed), 40);
        assert!(batches < 40, "{batches} batches for 40 bundles");

        // The same id with other bytes is a conflict, and the stored file is untouched.
        let id = BundleId([3; 16]);
        let other = vec![9u8; 100];
        let header = UploadHeader::for_ciphertext(id, "s", 99, &other);
        assert_eq!(
            committer.commit(1, header, other.into()).await.unwrap(),
            Outcome::Conflict
        );
        let at = spool.location(&id).unwrap().unwrap();
        assert_eq!(at.read(spool.blobs()).unwrap(), Some(vec![3u8; 100]));
        let objects = spool.blobs().list(crate::base::blobs::SPOOL).unwrap();
        assert_eq!(objects.iter().map(|o| o.size).sum::<u64>(), 2000);
    }

    /// A batch whose rows cannot be written (here a station id the database does not know; in
    /// service a database that is down) is refused, and on a local disk its segment goes with
    /// it: no row names it, its stations send the bundles again, and a database outage must not
    /// fill the disk with a segment per attempt until the next start's sweep.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_whose_rows_fail_leaves_no_segment() {
        let (_tmp, db, spool) = spool_with_station();
        let committer = Committer::start(spool.clone(), ReceiveSlots::new(1), LINGER).unwrap();
        for i in 0..3 {
            let (header, body) = upload(i);
            let refused = committer.commit(999, header, body.into()).await;
            assert!(refused.is_err(), "{refused:?}");
        }
        let rows: i64 = db
            .lock()
            .query_row("SELECT count(*) FROM bundles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
        if spool.blobs().local().is_some() {
            let left = spool.blobs().list(crate::base::blobs::SPOOL).unwrap();
            assert!(left.is_empty(), "{left:?}");
        }
        // The committer goes on: the next batch is stored.
        let (header, body) = upload(7);
        assert_eq!(
            committer.commit(1, header, body.into()).await.unwrap(),
            Outcome::Stored
        );
        assert_eq!(
            spool
                .location(&upload(7).0.bundle_id)
                .unwrap()
                .unwrap()
                .read(spool.blobs())
                .unwrap(),
            Some(upload(7).1)
        );
    }

    /// A station's upload with one number: its own id, body and header.
    fn upload(i: u16) -> (UploadHeader, Vec<u8>) {
        let mut id = [0u8; 16];
        id[..2].copy_from_slice(&i.to_be_bytes());
        let body = i.to_be_bytes().repeat(50);
        let header = UploadHeader::for_ciphertext(BundleId(id), "s", i.into(), &body);
        (header, body)
    }

    /// A committer with `linger`, and a receive slot held by an upload whose body is arriving
    /// (until the permit is dropped).
    async fn committer_while_receiving(
        spool: Spool,
        linger: Duration,
    ) -> (Committer, tokio::sync::OwnedSemaphorePermit) {
        let slots = ReceiveSlots::new(4);
        let receiving = slots.semaphore.clone().acquire_owned().await.unwrap();
        (Committer::start(spool, slots, linger).unwrap(), receiving)
    }

    /// While another upload is being received, a small batch waits for more; here it can only be
    /// committed because the batch fills (the linger is an hour), so all of them share one commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_batch_waits_for_uploads_still_being_received() {
        let (_tmp, _db, spool) = spool_with_station();
        let (committer, _receiving) =
            committer_while_receiving(spool, Duration::from_secs(3600)).await;
        // They arrive one by one, far enough apart that each would be a batch of its own.
        let mut tasks = Vec::new();
        for i in 0..LINGER_BATCH as u16 {
            let c = committer.clone();
            let (header, body) = upload(i);
            tasks.push(tokio::spawn(async move {
                c.commit(1, header, body.into()).await
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), Outcome::Stored);
        }
        assert_eq!(committer.stats.batches.load(Ordering::Relaxed), 1);
        assert_eq!(
            committer.stats.bundles.load(Ordering::Relaxed),
            LINGER_BATCH as u64
        );
    }

    /// With no other upload being received nothing more is coming: a lone bundle is committed at
    /// once, even with an hour's linger.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_upload_does_not_wait() {
        let (_tmp, _db, spool) = spool_with_station();
        let committer =
            Committer::start(spool, ReceiveSlots::new(4), Duration::from_secs(3600)).unwrap();
        for i in 0..3 {
            let (header, body) = upload(i);
            let outcome = tokio::time::timeout(
                Duration::from_secs(60),
                committer.commit(1, header, body.into()),
            )
            .await
            .expect("committed without waiting for the linger");
            assert_eq!(outcome.unwrap(), Outcome::Stored);
        }
        assert_eq!(committer.stats.batches.load(Ordering::Relaxed), 3);
    }

    /// Another upload that never arrives holds a batch back only until the linger has passed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_waits_no_longer_than_the_linger() {
        let (_tmp, _db, spool) = spool_with_station();
        let linger = Duration::from_millis(200);
        let (committer, _receiving) = committer_while_receiving(spool, linger).await;
        let (header, body) = upload(1);
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(60),
            committer.commit(1, header, body.into()),
        )
        .await
        .expect("committed once the linger passed");
        assert_eq!(outcome.unwrap(), Outcome::Stored);
        assert!(started.elapsed() >= linger, "{:?}", started.elapsed());
    }

    /// Two uploads of one new id with different content, in the same batch: the first is stored,
    /// the second is a conflict (its station must keep its copy), never `duplicate`.
    #[test]
    fn a_different_body_under_an_id_in_the_same_batch_is_a_conflict() {
        let (_tmp, _db, spool) = spool_with_station();
        let id = BundleId([7; 16]);
        let job = |body: Vec<u8>| {
            let header = UploadHeader::for_ciphertext(id, "s", 1, &body);
            let (reply, _rx) = oneshot::channel();
            Job {
                station_id: 1,
                header,
                body: body.into(),
                received_at_ms: 0,
                reply,
            }
        };
        let mut batch = vec![job(vec![1u8; 50]), job(vec![2u8; 50]), job(vec![1u8; 50])];
        let outcomes = commit_batch(&spool, &mut batch).unwrap();
        assert_eq!(
            outcomes,
            vec![Outcome::Stored, Outcome::Conflict, Outcome::Duplicate]
        );
        let at = spool.location(&id).unwrap().unwrap();
        assert_eq!(at.read(spool.blobs()).unwrap(), Some(vec![1u8; 50]));
    }
}
