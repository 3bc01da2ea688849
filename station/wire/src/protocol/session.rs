//! The station's side: an upload scheduler with no sockets and no clock of its own.
//!
//! In the style of quinn-proto, the transport feeds [`Event`]s in ([`UploadSession::handle`]) and
//! asks for [`Command`]s ([`UploadSession::poll`]); time is a number of milliseconds the caller passes
//! in, and [`UploadSession::poll_timeout`] says when to poll again. All policy lives here: which
//! bundle goes next (lowest sequence first), how many streams are open at once, failing over to the
//! next server address, exponential backoff with jitter, honouring `busy` + `retry_after_ms`, and
//! when a heartbeat is due. Because it is pure, the same code is driven by the real QUIC uploader and
//! by the simulated link in the tests (loss, reordering, truncation, disconnects, server crashes).
//!
//! Safety rule: a bundle is deleted only on an acknowledgement that names it and says the server
//! holds it durably (`stored` or `duplicate`). Everything else puts it back in the queue.

use std::collections::VecDeque;

use super::{station_action, Ack, StationAction};
use crate::bundle::BundleId;

/// The longest pause a `busy` reply's `retry_after_ms` can impose (one hour): a server's hint,
/// not a command to fall silent.
pub const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How many server addresses the transport can dial (tried in turn).
    pub servers: usize,
    /// Streams open at once on one connection.
    pub max_in_flight: usize,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// Seed of the jitter generator (stations use their own randomness; tests fix it).
    pub seed: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            servers: 1,
            max_in_flight: 4,
            backoff_base_ms: 200,
            backoff_cap_ms: 30_000,
            heartbeat_interval_ms: 300_000,
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// A bundle waiting to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub bundle_id: BundleId,
    pub sequence: u64,
}

/// What the transport must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Dial this server address (index into the configured list).
    Connect { server: usize },
    /// Open a stream on the current connection and upload this bundle.
    Send(Queued),
    /// Open a stream on the current connection and send a heartbeat.
    SendHeartbeat,
    /// The server holds the bundle durably: delete the local copy.
    Delete(Queued),
    /// The server will never accept it: move it aside with the reason.
    SetAside { bundle: Queued, reason: String },
}

/// What happened on the transport.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Connected,
    ConnectFailed {
        reason: String,
    },
    /// The connection ended; streams still open on it are lost.
    ConnectionLost {
        reason: String,
    },
    /// A decodable acknowledgement arrived on the stream of `bundle_id`.
    Acknowledged {
        bundle_id: BundleId,
        ack: Ack,
    },
    /// The stream of `bundle_id` failed without a usable acknowledgement (reset, timeout, garbage).
    StreamFailed {
        bundle_id: BundleId,
        reason: String,
    },
    HeartbeatAcknowledged,
    HeartbeatFailed {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Down { retry_at: u64 },
    Connecting,
    Up,
}

#[derive(Debug)]
pub struct UploadSession {
    cfg: SessionConfig,
    queue: VecDeque<Queued>,
    in_flight: Vec<Queued>,
    conn: Conn,
    server: usize,
    failures: u32,
    pause_until: u64,
    last_heartbeat: Option<u64>,
    heartbeat_in_flight: bool,
    out: VecDeque<Command>,
    rng: u64,
    last_error: Option<String>,
}

impl UploadSession {
    pub fn new(cfg: SessionConfig) -> Self {
        let rng = cfg.seed | 1;
        Self {
            cfg: SessionConfig {
                servers: cfg.servers.max(1),
                max_in_flight: cfg.max_in_flight.max(1),
                ..cfg
            },
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            conn: Conn::Down { retry_at: 0 },
            server: 0,
            failures: 0,
            pause_until: 0,
            last_heartbeat: None,
            heartbeat_in_flight: false,
            out: VecDeque::new(),
            rng,
            last_error: None,
        }
    }

    /// Adds a bundle to send (ignored if it is already queued or in flight).
    pub fn enqueue(&mut self, bundle: Queued) {
        let known = self
            .queue
            .iter()
            .chain(&self.in_flight)
            .any(|q| q.bundle_id == bundle.bundle_id);
        if !known {
            self.requeue(bundle);
        }
    }

    fn requeue(&mut self, bundle: Queued) {
        let at = self
            .queue
            .partition_point(|q| q.sequence <= bundle.sequence);
        self.queue.insert(at, bundle);
    }

    fn take_in_flight(&mut self, bundle_id: BundleId) -> Option<Queued> {
        let i = self
            .in_flight
            .iter()
            .position(|q| q.bundle_id == bundle_id)?;
        Some(self.in_flight.swap_remove(i))
    }

    fn heartbeat_due(&self, now: u64) -> bool {
        self.last_heartbeat
            .is_none_or(|t| now >= t.saturating_add(self.cfg.heartbeat_interval_ms))
    }

    /// Failures in a row (connects, lost connections, failed streams) since the last bundle the
    /// server took: the transport's signal to give up a pass.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub fn queued(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Nothing to send, nothing in flight, and the heartbeat is not due.
    pub fn is_done(&self, now: u64) -> bool {
        self.queue.is_empty()
            && self.in_flight.is_empty()
            && self.out.is_empty()
            && !self.heartbeat_in_flight
            && !self.heartbeat_due(now)
    }

    /// Full jitter between half and all of `base × 2^(n-1)`, capped.
    fn backoff(&mut self, n: u32) -> u64 {
        let cap = self
            .cfg
            .backoff_base_ms
            .saturating_mul(1u64 << n.saturating_sub(1).min(20))
            .min(self.cfg.backoff_cap_ms)
            .max(1);
        cap / 2 + self.random(cap - cap / 2 + 1)
    }

    /// xorshift64*: jitter only, never security.
    fn random(&mut self, below: u64) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) % below.max(1)
    }

    fn fail(&mut self, reason: String) {
        self.failures += 1;
        self.last_error = Some(reason);
    }

    pub fn handle(&mut self, now: u64, event: Event) {
        match event {
            Event::Connected => self.conn = Conn::Up,
            Event::ConnectFailed { reason } => {
                self.fail(reason);
                self.server = (self.server + 1) % self.cfg.servers;
                // Try every address once before waiting.
                let retry_at = if !(self.failures as usize).is_multiple_of(self.cfg.servers) {
                    now
                } else {
                    now.saturating_add(self.backoff(self.failures / self.cfg.servers as u32))
                };
                self.conn = Conn::Down { retry_at };
            }
            Event::ConnectionLost { reason } => {
                // Losing an idle connection (an idle timeout) is no failure; losing open streams is.
                if !self.in_flight.is_empty() {
                    self.fail(reason);
                }
                for q in std::mem::take(&mut self.in_flight) {
                    self.requeue(q);
                }
                self.heartbeat_in_flight = false;
                self.server = (self.server + 1) % self.cfg.servers;
                let retry_at = now.saturating_add(self.backoff(self.failures.max(1)));
                self.conn = Conn::Down { retry_at };
            }
            Event::Acknowledged { bundle_id, ack } => {
                let Some(bundle) = self.take_in_flight(bundle_id) else {
                    return; // a stale reply; the bundle was already settled or requeued
                };
                if ack.bundle_id.is_some_and(|id| id != bundle_id) {
                    self.fail(format!(
                        "acknowledgement names another bundle ({:?})",
                        ack.bundle_id
                    ));
                    self.requeue(bundle);
                    return;
                }
                match station_action(&ack) {
                    StationAction::Delete => {
                        self.failures = 0;
                        self.out.push_back(Command::Delete(bundle));
                    }
                    StationAction::RetryAfter(ms) => {
                        self.requeue(bundle);
                        // The server's hint, within reason: a reply cannot silence a station.
                        let ms = ms.min(MAX_RETRY_AFTER_MS);
                        let jitter = self.random(ms / 4 + 1);
                        self.pause_until = self.pause_until.max(now.saturating_add(ms + jitter));
                    }
                    StationAction::SetAside(reason) => {
                        self.out.push_back(Command::SetAside { bundle, reason });
                    }
                }
            }
            Event::StreamFailed { bundle_id, reason } => {
                if let Some(bundle) = self.take_in_flight(bundle_id) {
                    self.requeue(bundle);
                    self.fail(reason);
                    let delay = self.backoff(self.failures);
                    self.pause_until = self.pause_until.max(now.saturating_add(delay));
                }
            }
            Event::HeartbeatAcknowledged => {
                self.heartbeat_in_flight = false;
                self.last_heartbeat = Some(now);
            }
            Event::HeartbeatFailed { reason } => {
                self.heartbeat_in_flight = false;
                // Not retried before the next interval: a heartbeat is a report, not data.
                self.last_heartbeat = Some(now);
                self.last_error = Some(reason);
            }
        }
    }

    pub fn poll(&mut self, now: u64) -> Option<Command> {
        if let Some(cmd) = self.out.pop_front() {
            return Some(cmd);
        }
        match self.conn {
            Conn::Down { retry_at } => {
                let work = !self.queue.is_empty() || self.heartbeat_due(now);
                if now >= retry_at && work {
                    self.conn = Conn::Connecting;
                    return Some(Command::Connect {
                        server: self.server,
                    });
                }
                None
            }
            Conn::Connecting => None,
            Conn::Up => {
                if self.heartbeat_due(now) && !self.heartbeat_in_flight {
                    self.heartbeat_in_flight = true;
                    return Some(Command::SendHeartbeat);
                }
                if now < self.pause_until || self.in_flight.len() >= self.cfg.max_in_flight {
                    return None;
                }
                let next = self.queue.pop_front()?;
                self.in_flight.push(next);
                Some(Command::Send(next))
            }
        }
    }

    /// When `poll` may have something new without an event arriving first.
    pub fn poll_timeout(&self) -> Option<u64> {
        let heartbeat = self
            .last_heartbeat
            .map(|t| t.saturating_add(self.cfg.heartbeat_interval_ms));
        match self.conn {
            Conn::Down { retry_at } if !self.queue.is_empty() => Some(retry_at),
            Conn::Down { retry_at } => heartbeat.map(|h| h.max(retry_at)),
            Conn::Connecting => None,
            Conn::Up => {
                let pause =
                    (self.pause_until > 0 && !self.queue.is_empty()).then_some(self.pause_until);
                [heartbeat, pause].into_iter().flatten().min()
            }
        }
    }
}
