//! Every call into opendp runs inside [`run`]: one section at a time in this process, and the
//! process's panic hook put back when each ends.
//!
//! Why: opendp 0.16 swaps the process-wide panic hook for a silent one and back around each of its
//! float operations (`catch_unwind_silent`). Two threads doing so at once can leave the silent hook
//! in place for good, and from then on no panic in the server is reported ([`crate::base::panics`]).
//! Within one section opendp may still race with itself (a release's noise is drawn on polars'
//! threads), so the hook is put back when the section ends, while no other section runs.
//!
//! The cost: research answers are computed one at a time per process (each takes tens of
//! milliseconds; docs/benchmarks.md, `bench research`).

use std::cell::Cell;
use std::sync::{Mutex, PoisonError};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

thread_local! {
    /// Whether this thread is inside a section: a nested one runs in it.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, which may call opendp, as a section.
pub fn run<R>(f: impl FnOnce() -> R) -> R {
    if INSIDE.get() {
        return f();
    }
    // A panic inside a section poisons nothing this lock guards.
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    INSIDE.set(true);
    // Dropped before `_turn`: the hook is back before the next section starts.
    let _leaving = Leaving;
    f()
}

struct Leaving;

impl Drop for Leaving {
    fn drop(&mut self) {
        INSIDE.set(false);
        crate::base::panics::reinstall();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_nest_on_one_thread_and_exclude_each_other_across_threads() {
        assert_eq!(run(|| run(|| 7)), 7);
        let inside = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..20 {
                        run(|| {
                            let now = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                            most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(1));
                            inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        })
                    }
                });
            }
        });
        assert_eq!(most.into_inner(), 1);
    }
}
