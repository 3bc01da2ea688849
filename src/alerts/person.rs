//! One person of an officer's caseload as the officer follows them: the caseload overview (every
//! person with their state today, most urgent first) and the person page (devices and station, a
//! compliance calendar, the TAC curve or the wristband's daily indicators over a chosen period,
//! alerts, station contact).
//!
//! Like [`super::casework`], every function takes the officer, checks the screening and the
//! caseload itself, and writes its audit entry (`caseload.view`, `person.view`, or
//! `person.refused`) in the transaction that reads. A person outside the caseload is "not found",
//! exactly like one that does not exist. Days are the officer's local days (`[http] time_zone`).

use crate::base::db::OptionalExtension;
use chrono::NaiveDate;
use polars::prelude::*;

use super::casework::{self, AlertRow, Error, Result};
use super::Status;
use crate::base::programme::Programme;
use crate::base::time::Zone;
use crate::base::Context;
use crate::registry::accounts::Account;
use crate::registry::caseload;
use crate::trust::audit;
use nachtwacht_wire::Signal;

/// Weeks the compliance calendar shows.
pub const CALENDAR_WEEKS: i64 = 8;
/// The longest period the curve or the daily indicators cover at once.
pub const MAX_PERIOD_DAYS: i64 = 56;
/// The period shown when the officer chose none: the last two weeks.
pub const DEFAULT_PERIOD_DAYS: i64 = 14;
/// A station not heard from for this long counts as silent today.
pub const SILENT_AFTER_MS: i64 = 24 * crate::base::time::HOUR_MS;

/// What a day of the compliance calendar was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayState {
    /// No device was assigned to the person that day.
    NoDevice,
    /// An alert (not withdrawn) started that day.
    Alert,
    /// A device was assigned but no worn reading arrived for the day (not worn, no contact, or
    /// not uploaded yet).
    Silent,
    /// Worn readings and no alert.
    Worn,
}

impl DayState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoDevice => "no-device",
            Self::Alert => "alert",
            Self::Silent => "silent",
            Self::Worn => "worn",
        }
    }
}

/// A person's state today on the caseload overview, in order of urgency (most urgent first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TodayState {
    /// An alert waits for the officer (new or in process).
    AlertOpen,
    /// A device alert (battery, fault, strap, disconnected, spool, clock) is open, or no device
    /// is assigned.
    DeviceProblem,
    /// The station has not been heard from for [`SILENT_AFTER_MS`].
    Silent,
    Ok,
}

impl TodayState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AlertOpen => "alert-open",
            Self::DeviceProblem => "device-problem",
            Self::Silent => "silent",
            Self::Ok => "ok",
        }
    }
}

/// One line of the caseload overview.
#[derive(Debug, Clone)]
pub struct CaseloadRow {
    pub person_id: i64,
    pub reference: String,
    pub programme: Programme,
    pub state: TodayState,
    /// Alerts that are new or in process.
    pub open_alerts: i64,
    pub last_contact_ms: Option<i64>,
}

/// A device assignment of the person.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub serial: String,
    pub kind: String,
    pub from_ms: i64,
    pub to_ms: Option<i64>,
}

/// A base station of the person.
#[derive(Debug, Clone)]
pub struct StationSummary {
    pub name: String,
    pub last_contact_ms: Option<i64>,
    pub revoked: bool,
}

/// The wristband's indicators of one local day.
#[derive(Debug, Clone, PartialEq)]
pub struct WristDay {
    pub day: NaiveDate,
    /// Minutes with at least one heart-rate sample (the wristband worn and recording).
    pub worn_minutes: i64,
    pub mean_hr_bpm: Option<f64>,
    pub mean_eda_us: Option<f64>,
}

/// Everything the person page shows.
#[derive(Debug, Clone)]
pub struct PersonPage {
    pub person_id: i64,
    pub reference: String,
    pub programme: Programme,
    pub devices: Vec<DeviceRow>,
    pub stations: Vec<StationSummary>,
    /// The last [`CALENDAR_WEEKS`] weeks, oldest first, ending today.
    pub calendar: Vec<(NaiveDate, DayState)>,
    /// The chosen period, local days, both inclusive.
    pub period: (NaiveDate, NaiveDate),
    /// Ankle readings over the period (ts, TAC g/dL, worn); empty without an ankle monitor.
    pub tac: Vec<(i64, f64, bool)>,
    pub threshold_g_dl: f64,
    /// Wristband days over the period; empty without a wristband.
    pub wrist_days: Vec<WristDay>,
    /// Every alert of the person, newest first.
    pub alerts: Vec<AlertRow>,
    /// Station contacts (uploads and heartbeats) over the period.
    pub contacts: Vec<i64>,
}

/// The officer's persons with their state today, most urgent first (then by reference).
/// Audited as `caseload.view`.
pub fn overview(ctx: &Context, officer: &Account, now_ms: i64) -> Result<Vec<CaseloadRow>> {
    casework::require_screening(ctx, officer, "caseload.view", now_ms)?;
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let persons = caseload::persons_of(&tx, officer.id, now_ms)?;
    let mut rows = {
        let mut stmt = tx.prepare(
            "SELECT p.id, p.reference, p.programme,
                    (SELECT count(*) FROM alerts a WHERE a.person_id = p.id
                        AND a.status IN ('new','in_process') AND a.withdrawn_at_ms IS NULL),
                    (SELECT count(*) FROM alerts a WHERE a.person_id = p.id
                        AND a.status IN ('new','in_process') AND a.withdrawn_at_ms IS NULL
                        AND a.kind NOT IN ('alcohol','interferent','communication-lost','communication-critical')),
                    (SELECT max(s.last_contact_ms) FROM stations s WHERE s.person_id = p.id),
                    (SELECT count(*) FROM assignments d WHERE d.person_id = p.id
                        AND d.valid_from_ms <= ?2 AND (d.valid_to_ms IS NULL OR d.valid_to_ms > ?2))
               FROM persons p
              WHERE p.id IN (SELECT CAST(value AS INTEGER) FROM json_each(?1)) AND p.closed_at_ms IS NULL",
        )?;
        let rows = stmt.query_map(
            crate::params![serde_json::to_string(&persons).expect("ids"), now_ms],
            |r| {
                let open: i64 = r.get(3)?;
                let device_alerts: i64 = r.get(4)?;
                let last_contact_ms: Option<i64> = r.get(5)?;
                let devices: i64 = r.get(6)?;
                let state = if open > device_alerts {
                    TodayState::AlertOpen
                } else if device_alerts > 0 || devices == 0 {
                    TodayState::DeviceProblem
                } else if last_contact_ms.is_none_or(|t| now_ms - t > SILENT_AFTER_MS) {
                    TodayState::Silent
                } else {
                    TodayState::Ok
                };
                Ok(CaseloadRow {
                    person_id: r.get(0)?,
                    reference: r.get(1)?,
                    programme: r.get(2)?,
                    state,
                    open_alerts: open,
                    last_contact_ms,
                })
            },
        )?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    rows.sort_by(|a, b| (a.state, &a.reference).cmp(&(b.state, &b.reference)));
    audit::append(
        &tx,
        now_ms,
        &officer.username,
        "caseload.view",
        "caseload",
        &serde_json::json!({"persons": persons}).to_string(),
    )?;
    tx.commit()?;
    Ok(rows)
}

/// The person page of `person_id` over `period` (local days, inclusive; the last
/// [`DEFAULT_PERIOD_DAYS`] days when `None`, at most [`MAX_PERIOD_DAYS`]). Audited as
/// `person.view`; a person outside the caseload as `person.refused` and [`Error::NotFound`].
pub fn page(
    ctx: &Context,
    officer: &Account,
    person_id: i64,
    period: Option<(NaiveDate, NaiveDate)>,
    now_ms: i64,
) -> Result<PersonPage> {
    casework::require_screening(ctx, officer, "person.view", now_ms)?;
    let zone = ctx.config.http.zone();
    let today = zone.date_of(now_ms);
    let period = match period {
        Some((from, to)) if from > to => {
            return Err(Error::Refused(casework::Refusal::PeriodBackwards))
        }
        Some((from, to)) if (to - from).num_days() >= MAX_PERIOD_DAYS => {
            return Err(Error::Refused(casework::Refusal::PeriodTooLong {
                max_days: MAX_PERIOD_DAYS as u32,
            }))
        }
        Some(p) => p,
        None => (
            today - chrono::Days::new(DEFAULT_PERIOD_DAYS as u64 - 1),
            today,
        ),
    };
    let calendar_from = today - chrono::Days::new((CALENDAR_WEEKS * 7 - 1) as u64);
    let (period_from_ms, period_to_ms) = (
        zone.day_start_ms(period.0),
        zone.day_start_ms(period.1.succ_opt().unwrap_or(period.1)) - 1,
    );
    let calendar_from_ms = zone.day_start_ms(calendar_from);

    let (reference, programme, devices, stations, alerts, contacts) = {
        let mut conn = ctx.db.lock();
        let tx = conn.transaction()?;
        let person: Option<(String, Programme)> = tx
            .query_row(
                "SELECT reference, programme FROM persons WHERE id = ?1",
                [person_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let visible = match person {
            Some(_) => caseload::may_see(&tx, officer.id, person_id, now_ms)?,
            None => false,
        };
        let Some((reference, programme)) = person.filter(|_| visible) else {
            audit::append(
                &tx,
                now_ms,
                &officer.username,
                "person.refused",
                &format!("person:{person_id}"),
                &serde_json::json!({"attempted": "person.view"}).to_string(),
            )?;
            tx.commit()?;
            return Err(Error::NotFound);
        };
        let devices = {
            let mut stmt = tx.prepare(
                "SELECT a.device_serial, d.kind, a.valid_from_ms, a.valid_to_ms
                   FROM assignments a JOIN devices d ON d.serial = a.device_serial
                  WHERE a.person_id = ?1 ORDER BY a.valid_from_ms",
            )?;
            let rows = stmt.query_map([person_id], |r| {
                Ok(DeviceRow {
                    serial: r.get(0)?,
                    kind: r.get(1)?,
                    from_ms: r.get(2)?,
                    to_ms: r.get(3)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let stations = {
            let mut stmt = tx.prepare(
                "SELECT name, last_contact_ms, revoked_at_ms IS NOT NULL FROM stations
                  WHERE person_id = ?1 ORDER BY name",
            )?;
            let rows = stmt.query_map([person_id], |r| {
                Ok(StationSummary {
                    name: r.get(0)?,
                    last_contact_ms: r.get(1)?,
                    revoked: r.get(2)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let alerts = casework::alerts_of_person(&tx, person_id)?;
        let contacts = casework::station_contacts(
            &tx,
            person_id,
            period_from_ms.min(calendar_from_ms),
            period_to_ms.max(now_ms),
        )?;
        audit::append(
            &tx,
            now_ms,
            &officer.username,
            "person.view",
            &format!("person:{person_id}"),
            &serde_json::json!({
                "person": person_id,
                "period": [period.0.to_string(), period.1.to_string()],
            })
            .to_string(),
        )?;
        tx.commit()?;
        (reference, programme, devices, stations, alerts, contacts)
    };

    let pid = crate::trust::pseudonym::Pseudonymiser::load(&ctx.dir)?.operational(person_id);
    let has = |kind: &str| devices.iter().any(|d| d.kind == kind);
    // The calendar and the period are read together: one scan over the union of both.
    let read_from = period_from_ms.min(calendar_from_ms);
    let read_to = period_to_ms.max(now_ms);
    let ankle = if has("ankle-monitor") {
        casework::tac_between(ctx, &pid, read_from, read_to)?
    } else {
        vec![]
    };
    let wrist = if has("wristband") {
        wrist_days(ctx, &pid, zone, read_from, read_to)?
    } else {
        vec![]
    };

    let mut worn_days = std::collections::BTreeSet::new();
    worn_days.extend(ankle.iter().filter(|r| r.2).map(|r| zone.date_of(r.0)));
    worn_days.extend(wrist.iter().filter(|d| d.worn_minutes > 0).map(|d| d.day));
    let alert_days: std::collections::BTreeSet<NaiveDate> = alerts
        .iter()
        .filter(|a| !a.withdrawn)
        .map(|a| zone.date_of(a.start_ms))
        .collect();
    let calendar = calendar_from
        .iter_days()
        .take_while(|d| *d <= today)
        .map(|day| {
            let (start, end) = (
                zone.day_start_ms(day),
                zone.day_start_ms(day.succ_opt().unwrap_or(day)),
            );
            let assigned = devices
                .iter()
                .any(|d| d.from_ms < end && d.to_ms.is_none_or(|to| to > start));
            let state = if !assigned {
                DayState::NoDevice
            } else if alert_days.contains(&day) {
                DayState::Alert
            } else if worn_days.contains(&day) {
                DayState::Worn
            } else {
                DayState::Silent
            };
            (day, state)
        })
        .collect();
    let in_period = |ts: i64| (period_from_ms..=period_to_ms).contains(&ts);
    Ok(PersonPage {
        person_id,
        reference,
        programme,
        devices,
        stations,
        calendar,
        period,
        tac: ankle.into_iter().filter(|r| in_period(r.0)).collect(),
        threshold_g_dl: alcohol_threshold(ctx),
        wrist_days: wrist
            .into_iter()
            .filter(|d| (period.0..=period.1).contains(&d.day))
            .collect(),
        alerts,
        contacts: contacts.into_iter().filter(|t| in_period(*t)).collect(),
    })
}

/// The TAC threshold in force: the operator's `rules/alcohol.toml`, or the default when the file is
/// absent or does not parse (the evaluation refuses such a file and reports it; a page only draws
/// the line).
fn alcohol_threshold(ctx: &Context) -> f64 {
    use nachtwacht_pipelines::rules::AlcoholRules;
    std::fs::read_to_string(ctx.dir.rules().join("alcohol.toml"))
        .ok()
        .and_then(|text| AlcoholRules::parse(&text, "rules/alcohol.toml").ok())
        .unwrap_or_default()
        .threshold_g_dl
}

/// Whether an alert still waits for the officer.
pub fn is_open(a: &AlertRow) -> bool {
    !a.withdrawn && matches!(a.status, Status::New | Status::InProcess)
}

/// The wristband's indicators per local day of `zone` from the raw heart rate and EDA between
/// `from_ms` and `to_ms`. Samples are first reduced per hour in polars (whole-hour zone offsets
/// put every hour inside one local day), then summed per local day here.
fn wrist_days(
    ctx: &Context,
    pid: &str,
    zone: Zone,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<WristDay>> {
    #[derive(Default)]
    struct Acc {
        minutes: i64,
        hr: (f64, i64),
        eda: (f64, i64),
    }
    let mut days: std::collections::BTreeMap<NaiveDate, Acc> = Default::default();
    let hour = col("ts")
        .floor_div(lit(crate::base::time::HOUR_MS))
        .alias("hour");
    let readers = crate::dataset::Readers::of(ctx)?;
    for (signal, value) in [(Signal::Hr, "hr_bpm"), (Signal::Eda, "eda_us")] {
        let Some(frame) = casework::person_readings(&readers, signal, pid, from_ms, to_ms)? else {
            continue;
        };
        let df = frame
            .filter(col("quality").cast(DataType::UInt32).eq(lit(0u32)))
            .group_by([hour.clone()])
            .agg([
                col(value).sum().alias("sum"),
                col(value).count().cast(DataType::Int64).alias("n"),
                col("ts")
                    .floor_div(lit(60_000i64))
                    .n_unique()
                    .cast(DataType::Int64)
                    .alias("minutes"),
            ])
            .collect()?;
        let hours = df.column("hour")?.i64()?.clone();
        let sums = df.column("sum")?.f64()?.clone();
        let counts = df.column("n")?.i64()?.clone();
        let minutes = df.column("minutes")?.i64()?.clone();
        for i in 0..df.height() {
            let (Some(h), Some(sum), Some(n)) = (hours.get(i), sums.get(i), counts.get(i)) else {
                continue;
            };
            let day = days
                .entry(zone.date_of(h * crate::base::time::HOUR_MS))
                .or_default();
            match signal {
                Signal::Hr => {
                    day.hr.0 += sum;
                    day.hr.1 += n;
                    day.minutes += minutes.get(i).unwrap_or(0);
                }
                _ => {
                    day.eda.0 += sum;
                    day.eda.1 += n;
                }
            }
        }
    }
    let mean = |(sum, n): (f64, i64)| (n > 0).then(|| sum / n as f64);
    Ok(days
        .into_iter()
        .map(|(day, a)| WristDay {
            day,
            worn_minutes: a.minutes,
            mean_hr_bpm: mean(a.hr),
            mean_eda_us: mean(a.eda),
        })
        .collect())
}
