//! The decode worker's memory budget: a bundle's decoded size is reserved before it is opened, so a
//! batch of large bundles waits instead of exhausting memory.

/// Decoded bytes the opening stage holds at once across its parallel bundles (declared sizes,
/// see `nachtwacht_wire::bundle::declared_decoded_len`). One bundle may declare at most
/// `MAX_BUNDLE_DECODED_LEN` (256 MiB), so this lets four of the largest decode at once.
pub const DECODE_MEMORY_BUDGET: u64 = 1 << 30;

/// A counting semaphore over bytes: the opening stage's decoding memory.
pub(super) struct MemoryBudget {
    used: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
}

/// Bytes reserved from a [`MemoryBudget`], given back when dropped.
pub(super) struct Reservation<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl MemoryBudget {
    pub(super) fn new() -> Self {
        Self {
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits until `bytes` (at most the whole budget) fit, then reserves them.
    pub(super) fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let bytes = bytes.min(DECODE_MEMORY_BUDGET);
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used + bytes > DECODE_MEMORY_BUDGET {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += bytes;
        Reservation {
            budget: self,
            bytes,
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used -= self.bytes;
        self.budget.freed.notify_all();
    }
}
