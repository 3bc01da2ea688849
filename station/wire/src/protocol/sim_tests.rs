//! Both ends of the protocol driven through a simulated link: the station's [`UploadSession`] and
//! the server's [`RequestReader`] plus a durable store, with loss, reordering, truncation, damage,
//! disconnects, server crashes, station crashes and `busy` answers, all from a seeded generator.
//!
//! Checked for every seed: a bundle is deleted at the station only when the server holds exactly
//! those bytes; every bundle is written to the server's store once; in the end every bundle is at
//! the server and no copy is left at the station.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::reader::RequestReader;
use super::session::{Command, Event, Queued, SessionConfig, UploadSession};
use super::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// How hostile the link and the server are.
#[derive(Clone, Copy)]
struct Faults {
    connect_fail: f64,
    reset: f64,
    truncate: f64,
    damage: f64,
    reply_lost: f64,
    busy: f64,
    disconnect: f64,
    server_crash: f64,
    station_crash: f64,
}

const HOSTILE: Faults = Faults {
    connect_fail: 0.2,
    reset: 0.08,
    truncate: 0.05,
    damage: 0.05,
    reply_lost: 0.1,
    busy: 0.05,
    disconnect: 0.02,
    server_crash: 0.01,
    station_crash: 0.005,
};

#[derive(Default, Debug)]
struct Tally {
    delivered_out_of_order: u64,
    duplicates_acked: u64,
    replies_lost_after_store: u64,
    truncated: u64,
    damaged: u64,
    resets: u64,
    disconnects: u64,
    server_crashes: u64,
    station_crashes: u64,
    busy: u64,
}

/// The server: what survives a crash (the store) and what does not (open streams).
#[derive(Default)]
struct Server {
    /// bundle id → (bytes, times written durably)
    store: HashMap<BundleId, (Vec<u8>, u32)>,
    down_until: u64,
}

impl Server {
    fn handle(&mut self, bytes: &[u8], finish: bool, busy: bool, now: i64) -> Option<Ack> {
        let mut reader = RequestReader::new(PROTOCOL_VERSION, 1 << 20);
        for chunk in bytes.chunks(17) {
            if let Err(e) = reader.feed(chunk) {
                let id = reader.head().and_then(|h| h.bundle_id());
                return Some(Ack::for_protocol_error(id, &e, now));
            }
        }
        if !finish {
            return None; // the stream was reset: no answer
        }
        let id = reader.head().and_then(|h| h.bundle_id());
        let request = match reader.finish() {
            Ok(r) => r,
            Err(e) => return Some(Ack::for_protocol_error(id, &e, now)),
        };
        let RequestHead::Upload(header) = request.head else {
            return Some(Ack::stored(None, now));
        };
        if let Some((stored, _)) = self.store.get(&header.bundle_id) {
            assert_eq!(request.body, *stored, "same id, different bytes");
            return Some(Ack::duplicate(header.bundle_id, now));
        }
        if busy {
            return Some(Ack::busy(
                Some(header.bundle_id),
                "spool high-water".into(),
                500,
                now,
            ));
        }
        // Durable first, acknowledgement second.
        let entry = self
            .store
            .entry(header.bundle_id)
            .or_insert((request.body.to_vec(), 0));
        entry.1 += 1;
        Some(Ack::stored(Some(header.bundle_id), now))
    }
}

struct Station {
    session: UploadSession,
    /// The station's spool: what it has not deleted yet.
    spool: BTreeMap<u64, (BundleId, Vec<u8>)>,
}

fn new_session(seed: u64, spool: &BTreeMap<u64, (BundleId, Vec<u8>)>) -> UploadSession {
    let mut s = UploadSession::new(SessionConfig {
        servers: 2,
        max_in_flight: 4,
        backoff_base_ms: 50,
        backoff_cap_ms: 5_000,
        heartbeat_interval_ms: 60_000,
        seed,
    });
    for (seq, (id, _)) in spool {
        s.enqueue(Queued {
            bundle_id: *id,
            sequence: *seq,
        });
    }
    s
}

/// Events in flight towards the station, tagged with the connection they belong to.
type Pending = BinaryHeap<Reverse<(u64, u64, u64, usize)>>;

fn simulate(seed: u64, bundles: usize, faults: Faults, tally: &mut Tally) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut server = Server::default();
    let mut spool = BTreeMap::new();
    let mut originals = HashMap::new();
    for seq in 1..=bundles as u64 {
        let id = BundleId((seed as u128 * 1_000 + seq as u128).to_le_bytes());
        let len = rng.range(1, 3000) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        originals.insert(id, bytes.clone());
        spool.insert(seq, (id, bytes));
    }
    let mut station = Station {
        session: new_session(seed, &spool),
        spool,
    };
    let mut events: Vec<Event> = Vec::new();
    let mut pending: Pending = BinaryHeap::new();
    let mut order = 0u64;
    let mut generation = 0u64;
    let mut connected = false;
    let mut last_sent_order: HashMap<BundleId, u64> = HashMap::new();
    let mut last_delivered_send = 0u64;
    let mut send_order = 0u64;
    let mut now = 0u64;
    let mut schedule =
        |pending: &mut Pending, events: &mut Vec<Event>, at: u64, gen: u64, e: Event| {
            events.push(e);
            order += 1;
            pending.push(Reverse((at, order, gen, events.len() - 1)));
        };

    for _ in 0..2_000_000 {
        // Deliver what is due; replies of a dead connection never arrive.
        while let Some(Reverse((at, _, gen, idx))) = pending.peek().copied() {
            if at > now {
                break;
            }
            pending.pop();
            if gen != generation {
                continue;
            }
            let event = events[idx].clone();
            match &event {
                Event::Connected => connected = true,
                Event::Acknowledged { bundle_id, .. } => {
                    let sent = last_sent_order.get(bundle_id).copied().unwrap_or(0);
                    if sent < last_delivered_send {
                        tally.delivered_out_of_order += 1;
                    }
                    last_delivered_send = last_delivered_send.max(sent);
                }
                _ => {}
            }
            station.session.handle(now, event);
        }

        while let Some(cmd) = station.session.poll(now) {
            match cmd {
                Command::Connect { .. } => {
                    generation += 1;
                    connected = false;
                    let delay = rng.range(1, 40);
                    let e = if now < server.down_until || rng.chance(faults.connect_fail) {
                        Event::ConnectFailed {
                            reason: "timed out".into(),
                        }
                    } else {
                        Event::Connected
                    };
                    schedule(&mut pending, &mut events, now + delay, generation, e);
                }
                Command::SendHeartbeat => {
                    schedule(
                        &mut pending,
                        &mut events,
                        now + rng.range(1, 50),
                        generation,
                        Event::HeartbeatAcknowledged,
                    );
                }
                Command::Send(q) => {
                    send_order += 1;
                    last_sent_order.insert(q.bundle_id, send_order);
                    let body = &station.spool[&q.sequence].1;
                    let header = UploadHeader::for_ciphertext(q.bundle_id, "s", q.sequence, body);
                    let mut bytes = encode_upload_head(&header);
                    bytes.extend_from_slice(body);
                    let delay = rng.range(1, 200);
                    let lost = |bundle_id| Event::StreamFailed {
                        bundle_id,
                        reason: "stream reset".into(),
                    };
                    let answer = if rng.chance(faults.reset) {
                        tally.resets += 1;
                        let cut = rng.range(0, bytes.len() as u64) as usize;
                        server.handle(&bytes[..cut], false, false, now as i64)
                    } else if rng.chance(faults.truncate) {
                        tally.truncated += 1;
                        let cut = rng.range(0, bytes.len() as u64 - 1) as usize;
                        server.handle(&bytes[..cut], true, false, now as i64)
                    } else if rng.chance(faults.damage) {
                        tally.damaged += 1;
                        // Within the body: QUIC's AEAD protects every byte in transit, the
                        // ciphertext digest is the end-to-end check on top (a header damaged
                        // outside QUIC would be indistinguishable from a sender's bug).
                        let head_len = (bytes.len() - body.len()) as u64;
                        let i = rng.range(head_len, bytes.len() as u64 - 1) as usize;
                        bytes[i] ^= 0x40;
                        server.handle(&bytes, true, false, now as i64)
                    } else {
                        let busy = rng.chance(faults.busy);
                        server.handle(&bytes, true, busy, now as i64)
                    };
                    let event = match answer {
                        None => lost(q.bundle_id),
                        Some(ack) => {
                            match ack.code {
                                AckCode::Duplicate => tally.duplicates_acked += 1,
                                AckCode::Busy => tally.busy += 1,
                                _ => {}
                            }
                            if rng.chance(faults.reply_lost) {
                                if ack.code == AckCode::Stored {
                                    tally.replies_lost_after_store += 1;
                                }
                                lost(q.bundle_id)
                            } else {
                                Event::Acknowledged {
                                    bundle_id: q.bundle_id,
                                    ack,
                                }
                            }
                        }
                    };
                    schedule(&mut pending, &mut events, now + delay, generation, event);
                }
                Command::Delete(q) => {
                    let (id, bytes) = station.spool.remove(&q.sequence).expect("deleted once");
                    assert_eq!(id, q.bundle_id);
                    let (stored, writes) = server
                        .store
                        .get(&id)
                        .unwrap_or_else(|| panic!("seed {seed}: {id} deleted but not stored"));
                    assert_eq!(stored, &bytes, "seed {seed}: server holds other bytes");
                    assert_eq!(*writes, 1, "seed {seed}: {id} written {writes} times");
                }
                Command::SetAside { bundle, reason } => {
                    panic!(
                        "seed {seed}: sound bundle {} set aside: {reason}",
                        bundle.bundle_id
                    )
                }
            }
        }

        if station.spool.is_empty() && station.session.is_done(now) {
            break;
        }

        // Faults that strike between events.
        if connected && rng.chance(faults.disconnect) {
            tally.disconnects += 1;
            generation += 1;
            connected = false;
            station.session.handle(
                now,
                Event::ConnectionLost {
                    reason: "idle timeout".into(),
                },
            );
        }
        if rng.chance(faults.server_crash) {
            tally.server_crashes += 1;
            generation += 1;
            server.down_until = now + rng.range(10, 2_000);
            if connected {
                connected = false;
                station.session.handle(
                    now,
                    Event::ConnectionLost {
                        reason: "connection reset".into(),
                    },
                );
            }
        }
        if rng.chance(faults.station_crash) {
            // Power cut at the station: only the spool survives.
            tally.station_crashes += 1;
            generation += 1;
            connected = false;
            station.session = new_session(rng.next(), &station.spool);
        }

        let next_event = pending.peek().map(|Reverse((at, ..))| *at);
        let next = [next_event, station.session.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + 1);
        now = next.max(now + 1);
    }

    assert!(
        station.spool.is_empty(),
        "seed {seed}: {} bundles never delivered",
        station.spool.len()
    );
    assert_eq!(
        server.store.len(),
        bundles,
        "seed {seed}: server holds other bundles"
    );
    for (id, (bytes, writes)) in &server.store {
        assert_eq!(Some(bytes), originals.get(id), "seed {seed}");
        assert_eq!(*writes, 1, "seed {seed}: {id} stored {writes} times");
    }
}

#[test]
fn every_bundle_arrives_exactly_once_through_a_hostile_link() {
    let mut tally = Tally::default();
    for seed in 1..=300 {
        simulate(seed, 40, HOSTILE, &mut tally);
    }
    // The faults really happened, so the assertions above were really exercised.
    assert!(tally.delivered_out_of_order > 100, "{tally:?}");
    assert!(tally.replies_lost_after_store > 100, "{tally:?}");
    assert!(tally.duplicates_acked > 100, "{tally:?}");
    assert!(
        tally.truncated > 100 && tally.damaged > 100 && tally.resets > 100,
        "{tally:?}"
    );
    assert!(
        tally.disconnects > 10 && tally.server_crashes > 10 && tally.station_crashes > 10,
        "{tally:?}"
    );
    assert!(tally.busy > 100, "{tally:?}");
}

#[test]
fn a_quiet_link_sends_in_sequence_order_without_waiting() {
    let mut s = UploadSession::new(SessionConfig {
        max_in_flight: 2,
        ..SessionConfig::default()
    });
    for seq in [3, 1, 2] {
        s.enqueue(Queued {
            bundle_id: BundleId([seq as u8; 16]),
            sequence: seq,
        });
    }
    assert_eq!(s.poll(0), Some(Command::Connect { server: 0 }));
    assert_eq!(s.poll(0), None);
    s.handle(5, Event::Connected);
    assert_eq!(s.poll(5), Some(Command::SendHeartbeat));
    let first = s.poll(5);
    let second = s.poll(5);
    assert_eq!(s.poll(5), None, "at most two streams in flight");
    let seqs: Vec<u64> = [first, second]
        .into_iter()
        .map(|c| match c {
            Some(Command::Send(q)) => q.sequence,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![1, 2]);
}

#[test]
fn failover_tries_every_address_before_backing_off() {
    let mut s = UploadSession::new(SessionConfig {
        servers: 3,
        backoff_base_ms: 1_000,
        ..SessionConfig::default()
    });
    s.enqueue(Queued {
        bundle_id: BundleId([1; 16]),
        sequence: 1,
    });
    let mut dialled = vec![];
    let mut now = 0;
    for _ in 0..3 {
        match s.poll(now) {
            Some(Command::Connect { server }) => dialled.push(server),
            other => panic!("{other:?}"),
        }
        s.handle(
            now,
            Event::ConnectFailed {
                reason: "refused".into(),
            },
        );
        now += 1;
    }
    assert_eq!(dialled, vec![0, 1, 2]);
    assert_eq!(s.poll(now), None, "all three failed: back off");
    let wake = s.poll_timeout().unwrap();
    assert!((now + 400..=now + 1_000).contains(&wake), "backoff {wake}");
    assert_eq!(s.poll(wake), Some(Command::Connect { server: 0 }));
}

#[test]
fn busy_pauses_and_a_mismatched_ack_never_deletes() {
    let mut s = UploadSession::new(SessionConfig::default());
    let a = Queued {
        bundle_id: BundleId([1; 16]),
        sequence: 1,
    };
    s.enqueue(a);
    s.poll(0);
    s.handle(0, Event::Connected);
    assert_eq!(s.poll(0), Some(Command::SendHeartbeat));
    s.handle(0, Event::HeartbeatAcknowledged);
    assert_eq!(s.poll(0), Some(Command::Send(a)));
    s.handle(
        10,
        Event::Acknowledged {
            bundle_id: a.bundle_id,
            ack: Ack::busy(Some(a.bundle_id), "high-water".into(), 2_000, 0),
        },
    );
    assert_eq!(s.poll(10), None);
    assert_eq!(s.poll(2_009), None, "paused for retry_after");
    assert_eq!(s.poll(2_600), Some(Command::Send(a)));
    s.handle(
        2_700,
        Event::Acknowledged {
            bundle_id: a.bundle_id,
            ack: Ack::stored(Some(BundleId([9; 16])), 0),
        },
    );
    assert_ne!(s.poll(2_700), Some(Command::Delete(a)));
    assert_eq!(s.queued(), 1, "requeued, not deleted");
}
