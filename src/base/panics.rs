//! The process's panic hook: every panic, in any thread, is counted
//! (`nachtwacht_panics_total`), logged through tracing (so it lands in the server's log with the
//! rest of its evidence), and then printed by the standard hook as before.
//!
//! Why the hook is put back again and again: opendp 0.16 keeps panics in its float arithmetic
//! quiet by swapping the process-wide hook for a silent one and back around each operation
//! (`catch_unwind_silent` in its `traits::arithmetic`: `take_hook`, `set_hook`, `set_hook`). Two
//! threads doing that at once can leave the silent hook installed for good, after which no panic
//! anywhere in the process says a word (a research test failed with no message at all, even with
//! `--nocapture`). [`crate::research`] therefore runs its opendp calls one at a time and calls
//! [`reinstall`] after each.

use std::panic::PanicHookInfo;
use std::sync::OnceLock;

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Send + Sync + 'static>;

/// The standard hook, taken when [`install`] first ran; `None` until then.
static STANDARD: OnceLock<Hook> = OnceLock::new();

/// Installs the reporting hook. Call it at start-up, before other threads run.
pub fn install() {
    STANDARD.get_or_init(|| {
        // `take_hook` puts the standard hook in place and returns what was there: the second
        // call returns the standard hook itself.
        let _ = std::panic::take_hook();
        std::panic::take_hook()
    });
    std::panic::set_hook(Box::new(report));
}

/// Puts the process's hook back: the reporting hook once [`install`] has run, the standard hook
/// otherwise. Not from a panicking thread (a panic is being reported; the hook stays).
pub fn reinstall() {
    if std::thread::panicking() {
        return;
    }
    if STANDARD.get().is_some() {
        std::panic::set_hook(Box::new(report));
    } else {
        let _ = std::panic::take_hook();
    }
}

/// Panics reported since the process started.
pub fn reported() -> u64 {
    crate::base::metrics::metrics().panics.get()
}

fn report(info: &PanicHookInfo<'_>) {
    crate::base::metrics::metrics().panics.inc();
    let thread = std::thread::current();
    tracing::error!(thread = thread.name().unwrap_or("unnamed"), "panic: {info}");
    if let Some(standard) = STANDARD.get() {
        standard(info);
    }
}
