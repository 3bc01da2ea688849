//! An order-preserving parallel map on scoped threads: the decode worker's CPU-bound stages (one
//! thread per core) and the group commit's fsyncs (more threads than cores, since they wait).
//!
//! Deliberately small: both callers run on their own threads, outside any async runtime or thread
//! pool (polars keeps its own), and need only "do these independent jobs at once and give me the
//! results in input order". Threads are spawned per call; a call's jobs take from a fraction of a
//! millisecond (an fsync) to milliseconds, so the spawn (tens of microseconds) does not show.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many threads [`map_in_order`] uses at most: the machine's cores.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `items.iter().map(f).collect()`, with the calls spread over up to [`cores`] threads (each takes
/// the next unstarted item, so uneven jobs balance). Results are in the order of `items`. A panic in
/// `f` propagates to the caller.
pub fn map_in_order<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    map_in_order_on(cores(), items, f)
}

/// [`map_in_order`] on up to `threads` threads: more than the cores for jobs that mostly wait
/// (an fsync waits for the disk, and a disk serves several at once).
pub fn map_in_order_on<T, R, F>(threads: usize, items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return out;
                        };
                        out.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_input_order_whatever_order_jobs_finish_in() {
        // Early items sleep longest, so on more than one core they finish last.
        let items: Vec<u64> = (0..16).collect();
        let out = map_in_order(&items, |i| {
            std::thread::sleep(std::time::Duration::from_millis(16 - i));
            i * 10
        });
        assert_eq!(out, (0..16).map(|i| i * 10).collect::<Vec<_>>());
    }

    #[test]
    fn jobs_run_on_more_than_one_thread_when_the_machine_has_cores() {
        let items: Vec<u32> = (0..8).collect();
        let ids = map_in_order(&items, |_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::thread::current().id()
        });
        let distinct: std::collections::HashSet<_> = ids.into_iter().collect();
        assert_eq!(distinct.len(), cores().min(items.len()));
    }

    #[test]
    fn waiting_jobs_can_use_more_threads_than_cores() {
        // Eight jobs that each wait 200 ms run together on eight threads.
        let items: Vec<u32> = (0..8).collect();
        let ids = map_in_order_on(8, &items, |_| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            std::thread::current().id()
        });
        let distinct: std::collections::HashSet<_> = ids.into_iter().collect();
        assert_eq!(distinct.len(), 8);
    }

    #[test]
    fn an_empty_input_gives_an_empty_output() {
        let out: Vec<u8> = map_in_order(&[] as &[u8], |b| *b);
        assert!(out.is_empty());
    }
}
