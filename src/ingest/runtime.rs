//! The ingest on an async runtime of its own, apart from the web interface, the decoder and the
//! pipelines.
//!
//! Why: a station's upload is a stream of small events (packets, acknowledgements, flow-control
//! credit, the commit's answer). On a shared multi-threaded runtime each of them can wake a second
//! worker thread, and in the ingest benchmark's paced case those wake-ups and context switches
//! were the largest cost after the packets themselves. One thread keeps an upload's events on one
//! core; it takes in over 100 MB/s, far beyond what stations send. `ingest.threads` gives more on
//! a machine that needs them. The runtime also keeps the QUIC endpoint responsive while a web
//! request or a decode pass keeps the main runtime's workers busy.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify};

use super::{Error, Ingest, Result};
use crate::base::Context;

/// How long, once the ingest has stopped, its runtime waits for blocking work it started (a
/// contact-time flush, a duplicate check) before its thread ends anyway.
const BLOCKING_GRACE: Duration = Duration::from_secs(10);

/// Binds the ingest at `addr` on its own runtime (`ingest.threads` threads) and runs it until
/// `shutdown` turns true. Returns the bound address once it listens, and a future that ends when
/// the ingest has stopped.
pub async fn start(
    ctx: Context,
    addr: SocketAddr,
    stored: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, impl Future<Output = ()>)> {
    let threads = ctx.config.ingest.threads as usize;
    let (bound_tx, bound_rx) = oneshot::channel();
    let (stopped_tx, stopped_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("ingest".into())
        .spawn(move || {
            let runtime = match build(threads) {
                Ok(runtime) => runtime,
                Err(source) => {
                    let _ = bound_tx.send(Err(Error::Io {
                        path: "ingest runtime".into(),
                        source,
                    }));
                    return;
                }
            };
            // The endpoint and every connection task belong to the runtime they are made in.
            runtime.block_on(async move {
                match Ingest::bind(ctx, addr, stored) {
                    Ok(ingest) => {
                        let _ = bound_tx.send(Ok(ingest.local_addr()));
                        ingest.run(shutdown).await;
                    }
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                    }
                }
            });
            runtime.shutdown_timeout(BLOCKING_GRACE);
            drop(stopped_tx);
        })
        .map_err(|source| Error::Io {
            path: "ingest thread".into(),
            source,
        })?;
    let addr = bound_rx.await.map_err(|_| Error::Io {
        path: "ingest thread".into(),
        source: std::io::Error::other("ended before the ingest was bound"),
    })??;
    Ok((addr, async move {
        let _ = stopped_rx.await;
    }))
}

/// Threads for the ingest's blocking work (heartbeats and refusals written to the database,
/// registry reads on PostgreSQL). Tokio's default of 512 let a reconnect storm start hundreds of
/// threads that all waited for the same database connection, each start and wake-up a context
/// switch on the cores the uploads need; beyond this many, the work queues.
const MAX_BLOCKING_THREADS: usize = 8;

fn build(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(MAX_BLOCKING_THREADS)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("ingest-worker")
            .max_blocking_threads(MAX_BLOCKING_THREADS)
            .enable_all()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A burst of blocking work queues for a few threads instead of starting one thread each.
    #[test]
    fn a_burst_of_blocking_work_runs_on_at_most_the_cap_of_threads() {
        for threads in [1, 2] {
            let runtime = super::build(threads).unwrap();
            let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            runtime.block_on(async {
                let tasks: Vec<_> = (0..40)
                    .map(|_| {
                        let (running, most) = (running.clone(), most.clone());
                        tokio::task::spawn_blocking(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
            let most = most.load(Ordering::SeqCst);
            assert!(
                (2..=super::MAX_BLOCKING_THREADS).contains(&most),
                "{most} blocking threads at once with {threads} ingest threads"
            );
        }
    }
}
