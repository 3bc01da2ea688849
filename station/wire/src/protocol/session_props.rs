//! Property: whatever the order of transport events and server replies, the station's session
//! deletes a bundle only after a reply for that bundle's stream that names it (or nothing) and
//! says `stored` or `duplicate`, settles each bundle at most once, and loses none.

#![cfg(test)]

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::session::{Command, Event, Queued, SessionConfig, UploadSession};
use super::*;

#[derive(Debug, Clone)]
enum Step {
    Enqueue {
        id: u8,
        sequence: u8,
    },
    Advance(u64),
    Connected,
    ConnectFailed,
    ConnectionLost,
    /// A reply on the stream of the `pick`-th bundle in flight (or of bundle `pick`, stale).
    Reply {
        pick: u8,
        code: AckCode,
        names: Names,
        retry_after_ms: Option<u64>,
    },
    StreamFailed {
        pick: u8,
    },
    Heartbeat {
        ok: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum Names {
    ItsBundle,
    Nothing,
    Another,
}

fn step() -> impl Strategy<Value = Step> {
    let code = prop_oneof![
        Just(AckCode::Stored),
        Just(AckCode::Duplicate),
        Just(AckCode::Rejected),
        Just(AckCode::Busy),
    ];
    let names = prop_oneof![
        4 => Just(Names::ItsBundle),
        1 => Just(Names::Nothing),
        1 => Just(Names::Another),
    ];
    prop_oneof![
        3 => (0u8..12, any::<u8>()).prop_map(|(id, sequence)| Step::Enqueue { id, sequence }),
        2 => prop_oneof![0u64..5_000, any::<u64>()].prop_map(Step::Advance),
        2 => Just(Step::Connected),
        1 => Just(Step::ConnectFailed),
        1 => Just(Step::ConnectionLost),
        5 => (any::<u8>(), code, names, proptest::option::of(any::<u64>())).prop_map(
            |(pick, code, names, retry_after_ms)| Step::Reply { pick, code, names, retry_after_ms }
        ),
        1 => any::<u8>().prop_map(|pick| Step::StreamFailed { pick }),
        1 => any::<bool>().prop_map(|ok| Step::Heartbeat { ok }),
    ]
}

fn id(n: u8) -> BundleId {
    BundleId([n; 16])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_bundle_is_deleted_only_after_the_server_said_it_holds_it(
        max_in_flight in 1usize..5,
        servers in 1usize..4,
        steps in proptest::collection::vec(step(), 0..120),
    ) {
        let mut session = UploadSession::new(SessionConfig {
            servers,
            max_in_flight,
            backoff_base_ms: 100,
            backoff_cap_ms: 10_000,
            heartbeat_interval_ms: 60_000,
            seed: 7,
        });
        let mut now = 0u64;
        let mut enqueued = BTreeSet::new();
        let mut in_flight: Vec<BundleId> = Vec::new();
        // Bundles whose stream got a reply that says the server holds them.
        let mut held = BTreeSet::new();
        let mut settled = BTreeSet::new();
        for step in steps {
            match step {
                Step::Enqueue { id: n, sequence } => {
                    if !settled.contains(&id(n)) {
                        enqueued.insert(id(n));
                        session.enqueue(Queued { bundle_id: id(n), sequence: u64::from(sequence) });
                    }
                }
                Step::Advance(ms) => now = now.saturating_add(ms),
                Step::Connected => session.handle(now, Event::Connected),
                Step::ConnectFailed => {
                    session.handle(now, Event::ConnectFailed { reason: "refused".into() })
                }
                Step::ConnectionLost => {
                    in_flight.clear();
                    session.handle(now, Event::ConnectionLost { reason: "lost".into() });
                }
                Step::Reply { pick, code, names, retry_after_ms } => {
                    let bundle_id = match in_flight.as_slice() {
                        [] => id(pick % 12),
                        sent => sent[usize::from(pick) % sent.len()],
                    };
                    let named = match names {
                        Names::ItsBundle => Some(bundle_id),
                        Names::Nothing => None,
                        Names::Another => Some(id(bundle_id.0[0].wrapping_add(1))),
                    };
                    let says_held = matches!(code, AckCode::Stored | AckCode::Duplicate)
                        && !matches!(names, Names::Another);
                    if let Some(at) = in_flight.iter().position(|b| *b == bundle_id) {
                        in_flight.remove(at);
                        if says_held {
                            held.insert(bundle_id);
                        }
                    }
                    let ack = Ack {
                        bundle_id: named,
                        code,
                        reason: Some("because".into()),
                        retry_after_ms,
                        server_time_ms: now as i64,
                        recipient: None,
                        certificate: None,
                    };
                    session.handle(now, Event::Acknowledged { bundle_id, ack });
                }
                Step::StreamFailed { pick } => {
                    let bundle_id = match in_flight.as_slice() {
                        [] => id(pick % 12),
                        sent => sent[usize::from(pick) % sent.len()],
                    };
                    in_flight.retain(|b| *b != bundle_id);
                    session.handle(now, Event::StreamFailed { bundle_id, reason: "reset".into() });
                }
                Step::Heartbeat { ok: true } => session.handle(now, Event::HeartbeatAcknowledged),
                Step::Heartbeat { ok: false } => {
                    session.handle(now, Event::HeartbeatFailed { reason: "timeout".into() })
                }
            }
            while let Some(command) = session.poll(now) {
                match command {
                    Command::Send(q) => {
                        prop_assert!(!settled.contains(&q.bundle_id), "a settled bundle was sent");
                        in_flight.push(q.bundle_id);
                        prop_assert!(in_flight.len() <= max_in_flight);
                    }
                    Command::Delete(q) => {
                        prop_assert!(
                            held.remove(&q.bundle_id),
                            "{} deleted without a reply saying the server holds it", q.bundle_id
                        );
                        prop_assert!(settled.insert(q.bundle_id), "deleted twice");
                    }
                    Command::SetAside { bundle, .. } => {
                        prop_assert!(settled.insert(bundle.bundle_id), "settled twice");
                    }
                    Command::Connect { .. } | Command::SendHeartbeat => {}
                }
            }
            // Every bundle is queued, in flight, or settled: none is lost.
            prop_assert_eq!(session.queued() + settled.len(), enqueued.len());
        }
    }
}

/// A `busy` reply asking for an endless pause (found by the property above as an overflow) pauses
/// the station for at most [`super::session::MAX_RETRY_AFTER_MS`].
#[test]
fn a_retry_hint_cannot_silence_the_station() {
    let mut session = UploadSession::new(SessionConfig::default());
    session.enqueue(Queued {
        bundle_id: id(1),
        sequence: 1,
    });
    let now = 1_790_000_000_000;
    assert_eq!(session.poll(now), Some(Command::Connect { server: 0 }));
    session.handle(now, Event::Connected);
    assert_eq!(session.poll(now), Some(Command::SendHeartbeat));
    assert!(matches!(session.poll(now), Some(Command::Send(_))));
    let ack = Ack::busy(Some(id(1)), "busy".into(), u64::MAX, 0);
    session.handle(
        now,
        Event::Acknowledged {
            bundle_id: id(1),
            ack,
        },
    );
    let resume = now + super::session::MAX_RETRY_AFTER_MS * 5 / 4 + 1;
    assert_eq!(session.poll(now + 1_000), None);
    assert!(matches!(session.poll(resume), Some(Command::Send(_))));
}
