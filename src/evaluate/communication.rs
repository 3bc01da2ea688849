//! Communication alerts from station contact and heartbeats: a station that has gone silent, a
//! wearable that is not connected, a full station spool, a station clock that is off.
//!
//! [`assess`] is pure (one station's latest state and `now` in, alerts out); [`run`] reads the state
//! from SQL and stores the alerts for the person whose home the station is in. Alerts are keyed by
//! (person, kind, start), so re-running raises nothing twice.

use serde::Deserialize;

use crate::alerts::store::NewAlert;
use crate::alerts::{AlertKind, Severity};
use crate::base::config::CommunicationConfig;
use crate::base::Context;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] crate::trust::audit::Error),
    #[error(transparent)]
    Alerts(#[from] crate::alerts::store::Error),
}

/// What the server knows about one station.
#[derive(Debug, Clone, PartialEq)]
pub struct StationState {
    pub last_contact_ms: Option<i64>,
    pub enrolled_at_ms: i64,
    pub heartbeat: Option<LastHeartbeat>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LastHeartbeat {
    pub received_at_ms: i64,
    pub clock_offset_ms: Option<i64>,
    pub spool_full: bool,
    pub disconnected_devices: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommAlert {
    pub kind: AlertKind,
    /// High for critical silence, warning for the rest.
    pub severity: Severity,
    pub start_ms: i64,
    pub rule: String,
}

pub fn assess(state: &StationState, now_ms: i64, cfg: &CommunicationConfig) -> Vec<CommAlert> {
    let mut out = Vec::new();
    let silence_ms = cfg.silence_minutes as i64 * 60_000;
    let since = state.last_contact_ms.unwrap_or(state.enrolled_at_ms);
    if now_ms - since > silence_ms {
        out.push(CommAlert {
            kind: AlertKind::CommunicationLost,
            severity: Severity::Warning,
            start_ms: since,
            rule: serde_json::json!({
                "rule": "communication.lost",
                "silence_minutes": cfg.silence_minutes,
            })
            .to_string(),
        });
    }
    // A separate alert, not an upgrade of the first: the officer sees when it became critical,
    // and both are keyed by the silence's start, so neither is raised twice.
    if now_ms - since > cfg.critical_silence_hours as i64 * crate::base::time::HOUR_MS {
        out.push(CommAlert {
            kind: AlertKind::CommunicationCritical,
            severity: Severity::High,
            start_ms: since,
            rule: serde_json::json!({
                "rule": "communication.critical",
                "critical_silence_hours": cfg.critical_silence_hours,
            })
            .to_string(),
        });
    }
    if let Some(hb) = &state.heartbeat {
        if !hb.disconnected_devices.is_empty() {
            out.push(CommAlert {
                kind: AlertKind::DeviceDisconnected,
                severity: Severity::Warning,
                start_ms: hb.received_at_ms,
                rule: serde_json::json!({
                    "rule": "communication.device_disconnected",
                    "devices": hb.disconnected_devices,
                })
                .to_string(),
            });
        }
        if hb.spool_full {
            out.push(CommAlert {
                kind: AlertKind::StationSpoolFull,
                severity: Severity::Warning,
                start_ms: hb.received_at_ms,
                rule: serde_json::json!({"rule": "communication.spool_full"}).to_string(),
            });
        }
        if let Some(offset) = hb.clock_offset_ms {
            if offset.unsigned_abs() > u64::from(cfg.max_clock_offset_secs) * 1_000 {
                out.push(CommAlert {
                    kind: AlertKind::ClockDrift,
                    severity: Severity::Warning,
                    start_ms: hb.received_at_ms,
                    rule: serde_json::json!({
                        "rule": "communication.clock_drift",
                        "clock_offset_secs": offset / 1_000,
                        "max_clock_offset_secs": cfg.max_clock_offset_secs,
                    })
                    .to_string(),
                });
            }
        }
    }
    out
}

#[derive(Deserialize)]
struct Device {
    serial: String,
    connected: bool,
}

/// Assesses every station linked to a person and stores new alerts. Returns how many were new.
pub fn run(ctx: &Context, now_ms: i64) -> Result<usize, Error> {
    let mut conn = ctx.db.lock();
    let stations: Vec<(i64, i64, StationState)> = {
        let mut stmt = conn.prepare(
            "SELECT s.id, s.person_id, s.last_contact_ms, s.enrolled_at_ms,
                    h.received_at_ms, h.clock_offset_ms, h.spool_full, h.devices
               FROM stations s
               LEFT JOIN station_heartbeats h ON h.id =
                    (SELECT MAX(id) FROM station_heartbeats WHERE station_id = s.id)
              WHERE s.person_id IS NOT NULL AND s.revoked_at_ms IS NULL",
        )?;
        let rows = stmt.query_map([], |r| {
            let heartbeat = match r.get::<_, Option<i64>>(4)? {
                None => None,
                Some(received_at_ms) => {
                    let devices: Vec<Device> =
                        serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default();
                    Some(LastHeartbeat {
                        received_at_ms,
                        clock_offset_ms: r.get(5)?,
                        spool_full: r.get(6)?,
                        disconnected_devices: devices
                            .into_iter()
                            .filter(|d| !d.connected)
                            .map(|d| d.serial)
                            .collect(),
                    })
                }
            };
            Ok((
                r.get(0)?,
                r.get(1)?,
                StationState {
                    last_contact_ms: r.get(2)?,
                    enrolled_at_ms: r.get(3)?,
                    heartbeat,
                },
            ))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let tx = conn.transaction()?;
    let mut new = 0;
    for (station_id, person_id, state) in stations {
        for alert in assess(&state, now_ms, &ctx.config.communication) {
            let evidence = format!("[\"station:{station_id}\"]");
            let stored = crate::alerts::store::record_once(
                &tx,
                &NewAlert {
                    person_id,
                    kind: alert.kind,
                    severity: alert.severity,
                    start_ms: alert.start_ms,
                    end_ms: now_ms,
                    peak_tac_g_dl: None,
                    rule: &alert.rule,
                    evidence: &evidence,
                },
                now_ms,
            )?;
            new += usize::from(stored);
        }
    }
    tx.commit()?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::time::{bounded_clock_offset_ms, MAX_CLOCK_OFFSET_MS};

    const MIN: i64 = 60_000;

    fn cfg() -> CommunicationConfig {
        CommunicationConfig {
            silence_minutes: 60,
            critical_silence_hours: 48,
            max_clock_offset_secs: 300,
        }
    }

    #[test]
    fn silence_is_measured_from_the_last_contact_or_enrolment() {
        let quiet = StationState {
            last_contact_ms: Some(10 * MIN),
            enrolled_at_ms: 0,
            heartbeat: None,
        };
        assert!(assess(&quiet, 70 * MIN, &cfg()).is_empty());
        let alerts = assess(&quiet, 71 * MIN, &cfg());
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].kind, alerts[0].start_ms),
            (AlertKind::CommunicationLost, 10 * MIN)
        );
        let never = StationState {
            last_contact_ms: None,
            ..quiet
        };
        assert_eq!(assess(&never, 61 * MIN, &cfg())[0].start_ms, 0);
    }

    #[test]
    fn silence_beyond_48_hours_is_also_critical() {
        let quiet = StationState {
            last_contact_ms: Some(0),
            enrolled_at_ms: 0,
            heartbeat: None,
        };
        let kinds = |now| {
            assess(&quiet, now, &cfg())
                .into_iter()
                .map(|a| (a.kind, a.severity.as_str()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(48 * 60 * MIN),
            vec![(AlertKind::CommunicationLost, "warning")]
        );
        assert_eq!(
            kinds(48 * 60 * MIN + 1),
            vec![
                (AlertKind::CommunicationLost, "warning"),
                (AlertKind::CommunicationCritical, "high")
            ]
        );
    }

    #[test]
    fn heartbeats_raise_device_spool_and_clock_alerts() {
        let state = StationState {
            last_contact_ms: Some(100 * MIN),
            enrolled_at_ms: 0,
            heartbeat: Some(LastHeartbeat {
                received_at_ms: 100 * MIN,
                clock_offset_ms: Some(-301_000),
                spool_full: true,
                disconnected_devices: vec!["WB-1".into()],
            }),
        };
        let kinds: Vec<AlertKind> = assess(&state, 101 * MIN, &cfg())
            .iter()
            .map(|a| a.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                AlertKind::DeviceDisconnected,
                AlertKind::StationSpoolFull,
                AlertKind::ClockDrift
            ]
        );
        let healthy = StationState {
            heartbeat: Some(LastHeartbeat {
                received_at_ms: 100 * MIN,
                clock_offset_ms: Some(299_000),
                spool_full: false,
                disconnected_devices: vec![],
            }),
            ..state
        };
        assert!(assess(&healthy, 101 * MIN, &cfg()).is_empty());
        // The most extreme offsets a heartbeat can carry raise the alert and overflow nothing.
        for offset in [i64::MIN, i64::MAX] {
            let extreme = StationState {
                heartbeat: Some(LastHeartbeat {
                    received_at_ms: 100 * MIN,
                    clock_offset_ms: Some(offset),
                    spool_full: false,
                    disconnected_devices: vec![],
                }),
                ..healthy.clone()
            };
            let kinds: Vec<AlertKind> = assess(&extreme, 101 * MIN, &cfg())
                .iter()
                .map(|a| a.kind)
                .collect();
            assert_eq!(kinds, vec![AlertKind::ClockDrift], "offset {offset}");
        }
        assert_eq!(bounded_clock_offset_ms(i64::MIN), -MAX_CLOCK_OFFSET_MS);
    }
}
