//! Named points at which a crash test makes the process die, to show that the step after them is
//! crash-safe (`tests/crash.rs`). A point is armed by naming it in `NACHTWACHT_FAILPOINT`; the
//! process then aborts (as a SIGKILL or power loss would leave it: no unwinding, no flush) the first
//! time it gets there. Unarmed, a point costs one comparison with a value read once.

use std::sync::OnceLock;

/// The points. Each names the moment just after the step it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// A rejected bundle's ciphertext has moved into `quarantine/`; its row still says `spooled`.
    QuarantineAfterMove,
    /// Erasure wrote a dataset file without a person's rows; the catalog still names the old one.
    ErasureAfterWrite,
    /// Erasure swapped the new file into the catalog; the old one is retired but still on disk.
    ErasureAfterSwap,
}

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Point::QuarantineAfterMove => "quarantine-after-move",
            Point::ErasureAfterWrite => "erasure-after-write",
            Point::ErasureAfterSwap => "erasure-after-swap",
        }
    }
}

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var("NACHTWACHT_FAILPOINT").ok())
        .as_deref()
}

/// Aborts the process if `point` is armed.
pub fn hit(point: Point) {
    if armed() == Some(point.name()) {
        tracing::warn!(point = point.name(), "failpoint armed: aborting");
        std::process::abort();
    }
}
