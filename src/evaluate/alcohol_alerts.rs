//! Alcohol episodes become alerts, and alerts follow their episodes as the readings change.
//!
//! The pipeline ([`nachtwacht_pipelines::alcohol`]) judges each episode on its whole shape and says
//! whether that shape is known (`final`), not yet known but alerted anyway (`provisional`), or not
//! yet known (`pending`, no alert). [`reconcile`] makes the stored alerts agree with the episodes
//! of one evaluation frame:
//!
//! * an episode that overlaps no alert becomes a new alert;
//! * an episode that overlaps an alert *is* that alert: if the new readings changed what the alert
//!   says (classification, severity, extent, peak, provisional or final, evidence), the alert is
//!   revised in place: its revision count goes up, the revision is stored with its reason and the
//!   content before and after, and the audit log records it;
//! * alerts that one episode now covers together are folded into the earliest (the others are
//!   withdrawn as merged), and an alert inside the frame that no episode supports any more is
//!   withdrawn. Withdrawn alerts keep their workflow and stay visible: an officer may already have
//!   acted on one, so nothing is ever deleted;
//! * a pending episode leaves the alerts it overlaps as they are.
//!
//! Because a final episode depends only on its readings, and the evaluator reads every episode
//! whole, the alerts after all data has arrived are the same however the data arrived.

use std::collections::{HashMap, HashSet};

use crate::base::db::Connection;
use nachtwacht_pipelines::alcohol::{EpisodeState, KIND_DRINKING};
use nachtwacht_pipelines::AlcoholRules;
use polars::prelude::*;

use super::Result;
use crate::alerts::store::{self, AlertContent, StoredAlert};
use crate::alerts::{AlertKind, RevisionReason, Severity};

/// One episode of the pipeline's output.
#[derive(Debug, Clone)]
pub struct Episode {
    pub pid: String,
    pub state: EpisodeState,
    pub content: AlertContent,
}

/// Rounded so the JSON does not carry the last bits of a division.
fn rounded(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
        .map(|v| (v * 10_000.0).round() / 10_000.0)
}

/// The episodes of the pipeline's output frame, as alerts would hold them.
pub fn episodes(df: &DataFrame, rules: &AlcoholRules) -> PolarsResult<Vec<Episode>> {
    let ms = |name: &str| -> PolarsResult<Int64Chunked> {
        Ok(df.column(name)?.cast(&DataType::Int64)?.i64()?.clone())
    };
    let pid = df.column("pid")?.str()?;
    let kind = df.column("kind")?.str()?;
    let state = df.column("state")?.str()?;
    let reason = df.column("reason")?.str()?;
    let (start, end) = (ms("start")?, ms("end")?);
    let (ev_from, ev_to) = (ms("evidence_from")?, ms("evidence_to")?);
    let peak = df.column("peak_tac_g_dl")?.f64()?;
    let readings = df.column("readings")?.u32()?;
    let rise = df.column("mean_rise_per_hour")?.f64()?;
    let fall = df.column("mean_fall_per_hour")?.f64()?;
    let bundles = df.column("bundle_ids")?.str()?;
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let (Some(p), Some(k), Some(st), Some(s), Some(e)) = (
            pid.get(i),
            kind.get(i),
            state.get(i).and_then(EpisodeState::parse),
            start.get(i),
            end.get(i),
        ) else {
            continue;
        };
        let provisional = st == EpisodeState::Provisional;
        let (kind, severity) = match (k == KIND_DRINKING, provisional) {
            (true, false) => (AlertKind::Alcohol, Severity::High),
            (true, true) => (AlertKind::Alcohol, Severity::Medium),
            (false, _) => (AlertKind::Interferent, Severity::Review),
        };
        let rule = serde_json::json!({
            "rule": "alcohol.episode",
            "threshold_g_dl": rules.threshold_g_dl,
            "min_consecutive_readings": rules.min_consecutive_readings,
            "max_rise_per_hour": rules.max_rise_per_hour,
            "max_elimination_per_hour": rules.max_elimination_per_hour,
            "noise_allowance_g_dl": rules.noise_allowance_g_dl,
            "noise_allowance_percent": rules.noise_allowance_percent,
            "ambient_exposure_g_dl": rules.ambient_exposure_g_dl,
            "max_reading_gap_minutes": rules.max_reading_gap_minutes,
            "pending_hours": rules.pending_hours,
            "reason": reason.get(i),
            "evidence_from_ms": ev_from.get(i),
            "evidence_to_ms": ev_to.get(i),
            "readings": readings.get(i),
            "mean_rise_per_hour": rounded(rise.get(i)),
            "mean_fall_per_hour": rounded(fall.get(i)),
        })
        .to_string();
        out.push(Episode {
            pid: p.to_string(),
            state: st,
            content: AlertContent {
                kind,
                severity,
                start_ms: s,
                end_ms: e,
                peak_tac_g_dl: peak.get(i),
                provisional,
                evidence_bundles: bundles.get(i).unwrap_or("").to_string(),
                rule,
            },
        });
    }
    Ok(out)
}

/// What one reconciliation changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub new: usize,
    pub revised: usize,
    pub withdrawn: usize,
    pub pending: usize,
}

/// Makes the alcohol alerts of the persons in `frame_start` agree with `episodes`, in one
/// transaction's connection. `frame_start` maps each pseudonym to its first reading in the
/// evaluated frame: alerts that start before it are outside what this evaluation saw and are
/// only revised when an episode overlaps them, never withdrawn.
pub fn reconcile(
    tx: &Connection,
    episodes: &[Episode],
    frame_start: &HashMap<String, i64>,
    person_of_pid: &HashMap<String, i64>,
    now_ms: i64,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut by_pid: HashMap<&str, Vec<&Episode>> = HashMap::new();
    for e in episodes {
        by_pid.entry(e.pid.as_str()).or_default().push(e);
    }
    let mut pids: Vec<&String> = frame_start.keys().collect();
    pids.sort();
    for pid in pids {
        let Some(&person_id) = person_of_pid.get(pid) else {
            continue;
        };
        let region_from = frame_start[pid];
        let stored = store::alcohol_alerts_from(tx, person_id, region_from)?;
        let mut claimed: HashSet<i64> = HashSet::new();
        let mut mine = by_pid.remove(pid.as_str()).unwrap_or_default();
        mine.sort_by_key(|e| e.content.start_ms);
        for ep in mine {
            let c = &ep.content;
            let overlapping: Vec<&StoredAlert> = stored
                .iter()
                .filter(|s| !claimed.contains(&s.id))
                .filter(|s| s.content.start_ms <= c.end_ms && s.content.end_ms >= c.start_ms)
                .collect();
            if ep.state == EpisodeState::Pending {
                // Shape not known yet: what is there stays as it is.
                outcome.pending += 1;
                claimed.extend(overlapping.iter().map(|s| s.id));
                continue;
            }
            // The alert this episode is: one with the same kind and start (the unique key),
            // else the earliest active one, else the earliest withdrawn one.
            let target = overlapping
                .iter()
                .find(|s| s.content.kind == c.kind && s.content.start_ms == c.start_ms)
                .or_else(|| overlapping.iter().find(|s| !s.withdrawn))
                .or_else(|| overlapping.first())
                .copied();
            let Some(target) = target else {
                store::insert(tx, person_id, c, now_ms)?;
                outcome.new += 1;
                continue;
            };
            claimed.insert(target.id);
            if target.withdrawn || !target.content.same_as(c) {
                let reason = if target.withdrawn {
                    RevisionReason::Reinstated
                } else if target.content.kind != c.kind {
                    RevisionReason::Reclassified
                } else if target.content.provisional && !c.provisional {
                    RevisionReason::Confirmed
                } else {
                    RevisionReason::Changed
                };
                store::revise(tx, target, c, reason, None, now_ms)?;
                outcome.revised += 1;
            }
            for other in overlapping
                .iter()
                .filter(|s| s.id != target.id && !s.withdrawn)
            {
                claimed.insert(other.id);
                let note = format!("merged into alert {}", target.id);
                store::revise(
                    tx,
                    other,
                    &other.content,
                    RevisionReason::Merged,
                    Some(&note),
                    now_ms,
                )?;
                outcome.withdrawn += 1;
            }
        }
        for s in stored.iter().filter(|s| {
            !claimed.contains(&s.id) && !s.withdrawn && s.content.start_ms >= region_from
        }) {
            store::revise(
                tx,
                s,
                &s.content,
                RevisionReason::Withdrawn,
                Some("the readings no longer show an event here"),
                now_ms,
            )?;
            outcome.withdrawn += 1;
        }
    }
    Ok(outcome)
}
