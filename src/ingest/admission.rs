//! Receive slots: how many bundle bodies the server takes in at once.
//!
//! Why: when every station comes back at the same moment (after an outage), a thousand senders
//! each push a congestion window of data at one UDP socket. The socket's receive buffer overflows,
//! packets are dropped, and the uploads whose last packets were lost wait for retransmission
//! timers: a few fast acknowledgements and a long tail. Here a connection is only given the QUIC
//! flow-control credit for a request header ([`HEADER_WINDOW`]) until one of a fixed number of
//! receive slots is free; then its window opens to [`BODY_WINDOW`] for the body and closes again
//! after it. Waiting stations wait in first-come order and send nothing but their header meanwhile,
//! so the data in flight stays near `slots × BODY_WINDOW` whatever the number of stations.

use std::sync::{Arc, Mutex};

use nachtwacht_wire::protocol::{MAX_HEADER_LEN, REQUEST_PREFIX_LEN};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connection credit while no upload of the connection holds a slot: a whole request header fits.
pub const HEADER_WINDOW: u32 = 8 * 1024;
/// Connection credit while an upload holds a slot. With the default 256 slots, at most 16 MiB are
/// in flight towards the server, what its UDP receive buffer is sized to hold (`UDP_BUFFER_BYTES`
/// in the ingest); a station 60 ms away still sends at about 8 Mbit/s, more than a home uplink.
pub const BODY_WINDOW: u32 = 64 * 1024;

const _: () = assert!(HEADER_WINDOW as usize >= REQUEST_PREFIX_LEN + MAX_HEADER_LEN);

/// The receive slots of one ingest, shared by all its uploads.
#[derive(Clone)]
pub struct ReceiveSlots {
    pub(super) semaphore: Arc<Semaphore>,
    total: usize,
}

impl ReceiveSlots {
    pub fn new(total: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Uploads whose bodies are being received right now: they will reach the group commit soon.
    pub fn in_use(&self) -> usize {
        self.total - self.semaphore.available_permits()
    }
}

/// The flow-control window of one station connection, open while any of its uploads holds a slot.
pub struct ConnectionWindow {
    conn: quinn::Connection,
    holders: Mutex<usize>,
}

impl ConnectionWindow {
    pub fn new(conn: quinn::Connection) -> Arc<Self> {
        Arc::new(Self {
            conn,
            holders: Mutex::new(0),
        })
    }

    /// Waits (first come, first served) for a receive slot, then opens this connection's window.
    /// The slot is returned and the window closed when the [`Admitted`] is dropped.
    pub async fn admit(self: &Arc<Self>, slots: &ReceiveSlots) -> Admitted {
        let waiting = std::time::Instant::now();
        let permit = slots
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the receive-slot semaphore is never closed");
        crate::base::metrics::metrics()
            .receive_slot_wait
            .observe(waiting.elapsed().as_secs_f64());
        let mut holders = self.holders.lock().expect("window lock");
        *holders += 1;
        if *holders == 1 {
            self.conn.set_receive_window(BODY_WINDOW.into());
        }
        Admitted {
            _permit: permit,
            window: self.clone(),
        }
    }
}

/// A held receive slot.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    window: Arc<ConnectionWindow>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut holders = self.window.holders.lock().expect("window lock");
        *holders -= 1;
        if *holders == 0 {
            self.window.conn.set_receive_window(HEADER_WINDOW.into());
        }
    }
}
