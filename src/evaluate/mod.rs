//! Runs the pipelines over the datasets: drinking, tamper, battery and device-fault events become
//! alerts (stored through [`crate::alerts::store`]), daily indicators become the research dataset
//! (research pseudonyms only).
//!
//! Comes in: the raw Parquet datasets and the persons table. Goes out: alerts (one per event,
//! widened when late data extends an event; alcohol alerts revised as their episodes change) and
//! the research tables (`research_tables`: daily indicators and alert counts, rewritten
//! atomically). Never writes an operational pseudonym into the research dataset.

mod research_tables;
pub use research_tables::write_research_table;
use research_tables::{merge_research_days, write_research_alert_counts, write_research_daily};

use std::collections::HashMap;
use std::path::PathBuf;

use crate::base::db::OptionalExtension;
use nachtwacht_pipelines::alcohol::drinking_events;
use nachtwacht_pipelines::tamper::{
    self, ankle_tamper_with_baselines, battery_low, device_faults, ir_baselines,
};
use nachtwacht_pipelines::{daily, stress, AlcoholRules, StressRules, TamperRules};
use nachtwacht_wire::Signal;
use polars::prelude::*;
use tracing::info;

use crate::alerts::store::NewAlert;
use crate::alerts::{self, AlertKind, Severity};
use crate::base::Context;
use crate::dataset;
use crate::trust::pseudonym::Pseudonymiser;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error(transparent)]
    Dataset(#[from] dataset::Error),
    #[error(transparent)]
    File(#[from] crate::base::fsio::Error),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] crate::trust::audit::Error),
    #[error(transparent)]
    Alerts(#[from] crate::alerts::store::Error),
    /// The pipelines lease is another process's now: the watermark was left to it.
    #[error("the pipelines lease passed to another process; the watermark was left to it")]
    LeaseLost,
    #[error("evaluation lock {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub mod alcohol_alerts;
pub mod communication;
pub mod rules_files;

/// UTC days `from..to` (`to` exclusive): what one evaluation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days {
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
}

impl Days {
    /// Midnight UTC starting `from`, and ending the range (`to`), in epoch ms.
    fn bounds_ms(&self) -> (i64, i64) {
        (
            crate::base::time::midnight_ms(self.from),
            crate::base::time::midnight_ms(self.to),
        )
    }

    /// These days, starting `days` earlier: the context a rule needs (an event that began the
    /// evening before, a baseline of the previous week).
    fn with_lookback(&self, days: u32) -> Days {
        Days {
            from: self.from - chrono::Days::new(u64::from(days)),
            to: self.to,
        }
    }

    pub fn len(&self) -> i64 {
        (self.to - self.from).num_days()
    }

    pub fn is_empty(&self) -> bool {
        self.len() <= 0
    }

    /// Consecutive ranges of at most `n` days covering these.
    pub fn chunks(&self, n: u32) -> Vec<Days> {
        let mut out = Vec::new();
        let mut from = self.from;
        while from < self.to {
            let to = (from + chrono::Days::new(u64::from(n.max(1)))).min(self.to);
            out.push(Days { from, to });
            from = to;
        }
        out
    }
}

impl std::fmt::Display for Days {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.from, self.to)
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct EvaluationReport {
    /// Drinking and interferent events.
    pub events: usize,
    /// Stress episodes (wristband programmes).
    pub stress_episodes: usize,
    /// Strap-open, possible-removal, obstruction, battery-low and device-fault events.
    pub device_events: usize,
    pub new_alerts: usize,
    /// Alcohol alerts revised or withdrawn because the readings changed what they show.
    pub revised_alerts: usize,
    pub withdrawn_alerts: usize,
    /// Alcohol episodes still open at the last reading: no verdict, no alert yet.
    pub pending_episodes: usize,
    pub person_days: usize,
}

/// Every rule set the pipelines use (defaults: the TOML files in `pipelines/`; in force: the
/// operator's copies in the data directory, see [`crate::evaluate::rules_files`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub alcohol: AlcoholRules,
    pub tamper: TamperRules,
    pub stress: StressRules,
}

/// How an event of one pipeline kind is stored as an alert.
struct AlertSpec {
    kind: AlertKind,
    severity: Severity,
    /// JSON: the rule and the parameters it fired with.
    rule: String,
}

fn scan(files: Vec<PathBuf>) -> Result<Option<LazyFrame>> {
    Ok(dataset::scan_readings(&files)?)
}

/// What one evaluation reads: all catalogued data, or some days of it.
#[derive(Clone, Copy)]
struct Reader<'a> {
    readers: &'a dataset::Readers,
    days: Option<Days>,
}

impl Reader<'_> {
    /// A signal's samples in range, valid ones only (`quality = 0`, see [`crate::decode::validate`]).
    fn signal(&self, s: Signal) -> Result<Option<LazyFrame>> {
        Ok(self
            .signal_with_flags(s)?
            .map(|lf| lf.filter(col("quality").eq(lit(0u16)))))
    }

    /// A signal's samples in range with their `quality` flags: for pipelines that need to know
    /// where the invalid samples were (the EDA mask discards their neighbours too).
    fn signal_with_flags(&self, s: Signal) -> Result<Option<LazyFrame>> {
        let Some(days) = self.days else {
            return scan(self.readers.signal_files(s)?);
        };
        let files =
            self.readers
                .signal_files_between(s, &days.from.to_string(), &days.to.to_string())?;
        let ts = col("ts").cast(DataType::Int64);
        let (start_ms, end_ms) = days.bounds_ms();
        Ok(scan(files)?
            .map(|lf| lf.filter(ts.clone().gt_eq(lit(start_ms)).and(ts.lt(lit(end_ms))))))
    }
}

/// The persons an evaluation derives data for.
struct Persons {
    /// `pid`, `rid`, `programme`, `region`, `age_band` of everyone enrolled whose erasure has not
    /// begun.
    df: DataFrame,
    by_pid: HashMap<String, i64>,
    /// Research pseudonyms of persons whose erasure has begun (`crate::lifecycle::retention`):
    /// nothing is derived for them again (their readings may be gone, and deriving from what is
    /// left would withdraw or re-create alerts), and their research rows stay as they were until
    /// the research class of the retention policy erases them.
    frozen_rids: Vec<String>,
}

/// The persons enrolled, see [`Persons`].
fn persons(ctx: &Context, pseudonyms: &Pseudonymiser) -> Result<Persons> {
    let frozen_rids: Vec<String> = {
        let conn = ctx.db.lock();
        let mut stmt = conn.prepare(
            "SELECT id FROM persons WHERE erasure_started_at_ms IS NOT NULL ORDER BY id",
        )?;
        let ids = stmt
            .query_map([], |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ids.into_iter().map(|id| pseudonyms.research(id)).collect()
    };
    type Row = (i64, String, Option<String>, Option<i32>);
    let rows: Vec<Row> = {
        let conn = ctx.db.lock();
        let mut stmt = conn.prepare(
            "SELECT id, programme, region, birth_year FROM persons
              WHERE erasure_started_at_ms IS NULL ORDER BY id",
        )?;

        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<Vec<_>, _>>()?
    };
    let this_year: i32 = chrono::Utc::now()
        .format("%Y")
        .to_string()
        .parse()
        .expect("a year");
    let regions: Vec<String> = rows
        .iter()
        .map(|r| r.2.clone().unwrap_or_else(|| "unknown".into()))
        .collect();
    let age_bands: Vec<&str> = rows
        .iter()
        .map(|r| daily::age_band(r.3.map(|y| this_year - y)))
        .collect();
    let rows: Vec<(i64, String)> = rows.into_iter().map(|r| (r.0, r.1)).collect();
    let pids: Vec<String> = rows
        .iter()
        .map(|(id, _)| pseudonyms.operational(*id))
        .collect();
    let rids: Vec<String> = rows
        .iter()
        .map(|(id, _)| pseudonyms.research(*id))
        .collect();
    let programmes: Vec<&str> = rows.iter().map(|(_, p)| p.as_str()).collect();
    let by_pid = pids
        .iter()
        .cloned()
        .zip(rows.iter().map(|(id, _)| *id))
        .collect();
    let df = df!(
        "pid" => pids,
        "rid" => rids,
        "programme" => programmes,
        "region" => regions,
        "age_band" => age_bands
    )?;
    Ok(Persons {
        df,
        by_pid,
        frozen_rids,
    })
}

/// Exclusive right to change what evaluation writes (alerts, the research datasets) in this data
/// directory, across processes. Held by every evaluation, and by the retention run while it
/// erases. Released when dropped (or when the process dies).
pub struct EvaluationLock {
    _file: std::fs::File,
}

impl EvaluationLock {
    /// Blocks until the lock is free.
    pub fn acquire(ctx: &Context) -> Result<Self> {
        let lock_path = ctx.dir.evaluation_lock();
        let lock_error = |source| Error::Lock {
            path: lock_path.display().to_string(),
            source,
        };
        if let Some(parent) = lock_path.parent() {
            std::fs::create_dir_all(parent).map_err(lock_error)?;
        }
        let file = crate::base::datadir::lock_file(&lock_path, libc::LOCK_EX)
            .map_err(lock_error)?
            .expect("a blocking flock either locks or fails");
        Ok(Self { _file: file })
    }
}

/// One evaluation of all data. Blocking: run on a blocking thread.
pub fn run(ctx: &Context, pseudonyms: &Pseudonymiser, rules: &Rules) -> Result<EvaluationReport> {
    run_days(ctx, pseudonyms, rules, None)
}

/// Days of context an evaluation reads before the days it evaluates: a drinking curve that began
/// the evening before, and the stress baseline's previous week.
fn lookback_days(rules: &Rules) -> u32 {
    rules.stress.baseline_days + 1
}

/// Evaluates `days` (all data when `None`): alerts for every event found (an event already
/// alerted is updated, never duplicated, see [`store_alerts`]), and the daily indicators of those
/// days, which replace the same days in the research dataset. Blocking.
pub fn run_days(
    ctx: &Context,
    pseudonyms: &Pseudonymiser,
    rules: &Rules,
    days: Option<Days>,
) -> Result<EvaluationReport> {
    // One evaluation at a time per data directory, across processes (the scheduler of a node and
    // a backfill from the CLI): each reads the alerts and the research dataset, changes them and
    // writes them back, so two at once would lose one's work (and race on the same files).
    let _evaluating = EvaluationLock::acquire(ctx)?;
    // Files listed below stay readable until this evaluation is done, even if compaction merges
    // them meanwhile.
    let readers = dataset::Readers::of(ctx)?;
    let Persons {
        df: persons_df,
        by_pid: person_of_pid,
        frozen_rids,
    } = persons(ctx, pseudonyms)?;
    let mut report = EvaluationReport::default();
    let mut parts = Vec::new();
    let read = Reader {
        readers: &readers,
        days: days.map(|d| d.with_lookback(lookback_days(rules))),
    };
    let history = Reader {
        readers: &readers,
        days: None,
    };

    if let Some(ankle) = read.signal(Signal::Ankle)? {
        let events = alcohol_episodes(ctx, &readers, rules, days, &person_of_pid, &mut report)?;
        // IR baselines come from each person's first readings ever, whatever the range.
        let baselines = ir_baselines(
            history
                .signal(Signal::Ankle)?
                .expect("ankle data in range implies ankle data"),
            &rules.tamper,
        );
        let tampering =
            ankle_tamper_with_baselines(ankle.clone(), baselines, &rules.tamper).collect()?;
        report.device_events += tampering.height();
        report.new_alerts += store_alerts(ctx, &tampering, &person_of_pid, |k| {
            tamper_alert(k, &rules.tamper)
        })?;
        parts.push(daily::ankle_daily(
            ankle,
            nachtwacht_pipelines::alcohol::decided(events.lazy()),
            tampering.lazy(),
            &rules.alcohol,
        ));
    }
    for (s, pipeline) in [
        (
            Signal::Battery,
            battery_low as fn(LazyFrame, &TamperRules) -> LazyFrame,
        ),
        (Signal::Event, device_faults),
    ] {
        if let Some(lf) = read.signal(s)? {
            let events = pipeline(lf, &rules.tamper).collect()?;
            report.device_events += events.height();
            report.new_alerts += store_alerts(ctx, &events, &person_of_pid, |k| {
                tamper_alert(k, &rules.tamper)
            })?;
        }
    }
    // Stress is computed from wristband signals, which only wristband programmes may collect
    // (purpose binding at ingest): an alcohol-ban client has no EDA to compute it from.
    if let (Some(eda), Some(hr)) = (
        read.signal_with_flags(Signal::Eda)?,
        read.signal(Signal::Hr)?,
    ) {
        // Without motion data no window can be shown to be at rest, so none is judged.
        let acc = match read.signal(Signal::Acc)? {
            Some(acc) => acc,
            None => DataFrame::new(vec![
                Column::new_empty("pid".into(), &DataType::String),
                Column::new_empty(
                    "ts".into(),
                    &DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC)),
                ),
                Column::new_empty("x_g".into(), &DataType::Float64),
                Column::new_empty("y_g".into(), &DataType::Float64),
                Column::new_empty("z_g".into(), &DataType::Float64),
            ])?
            .lazy(),
        };
        let (windows, episodes) = stress::evaluate(eda, hr.clone(), acc, &rules.stress)?;
        report.stress_episodes = episodes.height();
        parts.push(daily::wristband_daily(
            windows.lazy(),
            episodes.lazy(),
            hr,
            &rules.stress,
        ));
    }
    let mut combined = daily::combine(parts)?;
    if let Some(days) = days {
        // The lookback was context only: its days keep the indicators they already have.
        combined = combined.filter(
            col("day")
                .gt_eq(lit(days.from))
                .and(col("day").lt(lit(days.to))),
        );
    }
    let research = daily::for_research(combined, persons_df.clone().lazy()).collect()?;
    report.person_days = research.height();
    let mut merged = merge_research_days(&readers, research, days, &frozen_rids)?;
    write_research_daily(ctx, &mut merged)?;
    write_research_alert_counts(ctx, &readers, &persons_df, &person_of_pid, &frozen_rids)?;
    info!(
        events = report.events,
        stress_episodes = report.stress_episodes,
        device_events = report.device_events,
        new_alerts = report.new_alerts,
        revised_alerts = report.revised_alerts,
        withdrawn_alerts = report.withdrawn_alerts,
        pending_episodes = report.pending_episodes,
        person_days = report.person_days,
        "pipelines evaluated"
    );
    Ok(report)
}

/// A day after any data: "to the end" for a frame (catalog days compare as `YYYY-MM-DD` text).
const END_OF_DATA: chrono::NaiveDate = match chrono::NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(d) => d,
    None => panic!("a valid date"),
};

/// Days an alcohol evaluation reaches further back each time it finds an episode cut by the start
/// of what it read.
const ALCOHOL_EXTEND_DAYS: u64 = 7;

/// Judges the alcohol episodes that touch `days` (all data when `None`) and makes the alcohol
/// alerts agree with them ([`alcohol_alerts::reconcile`]). Returns the episodes (for the daily
/// indicators).
///
/// Every episode is read whole, whatever `days` is: the frame runs from the lookback to the end of
/// the data (an episode may continue past the evaluated days), and reaches further back while an
/// episode starts at the frame's first reading and older data exists. So the verdicts, and the
/// alerts, do not depend on how the days were cut into evaluations.
fn alcohol_episodes(
    ctx: &Context,
    readers: &dataset::Readers,
    rules: &Rules,
    days: Option<Days>,
    person_of_pid: &HashMap<String, i64>,
    report: &mut EvaluationReport,
) -> Result<DataFrame> {
    let as_of = crate::base::time::now_ms();
    let first_day: Option<String> = ctx.db.lock().query_row(
        "SELECT min(day) FROM dataset_files WHERE signal = ?1",
        [Signal::Ankle.name()],
        |r| r.get(0),
    )?;
    let first_day = first_day.and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
    let mut from = days.map(|d| d.with_lookback(lookback_days(rules)).from);
    let (frame, events) = loop {
        let reader = Reader {
            readers,
            days: from.map(|from| Days {
                from,
                to: END_OF_DATA,
            }),
        };
        let Some(frame) = reader.signal(Signal::Ankle)? else {
            return Ok(DataFrame::empty());
        };
        let events = drinking_events(frame.clone(), &rules.alcohol, as_of)?.collect()?;
        let cut = events
            .column("opens_frame")?
            .bool()?
            .into_iter()
            .any(|v| v == Some(true));
        match from {
            Some(f) if cut && first_day.is_some_and(|first| first < f) => {
                from = Some(f - chrono::Days::new(ALCOHOL_EXTEND_DAYS));
            }
            _ => break (frame, events),
        }
    };
    let starts = frame
        .group_by([col("pid")])
        .agg([col("ts").cast(DataType::Int64).min().alias("first_ms")])
        .collect()?;
    let frame_start: HashMap<String, i64> = starts
        .column("pid")?
        .str()?
        .into_iter()
        .zip(starts.column("first_ms")?.i64()?)
        .filter_map(|(p, t)| Some((p?.to_string(), t?)))
        .collect();
    let episodes = alcohol_alerts::episodes(&events, &rules.alcohol)?;
    let outcome = {
        let mut conn = ctx.db.lock();
        let tx = conn.transaction()?;
        let outcome = alcohol_alerts::reconcile(
            &tx,
            &episodes,
            &frame_start,
            person_of_pid,
            crate::base::time::now_ms(),
        )?;
        tx.commit()?;
        outcome
    };
    report.events = episodes.len() - outcome.pending;
    report.new_alerts += outcome.new;
    report.revised_alerts += outcome.revised;
    report.withdrawn_alerts += outcome.withdrawn;
    report.pending_episodes += outcome.pending;
    Ok(events)
}

fn tamper_alert(kind: &str, rules: &TamperRules) -> Option<AlertSpec> {
    let (kind, severity, rule) = match kind {
        tamper::KIND_STRAP_OPEN => (
            AlertKind::StrapOpen,
            Severity::High,
            serde_json::json!({"rule": "tamper.strap_open"}),
        ),
        tamper::KIND_REMOVAL => (
            AlertKind::PossibleRemoval,
            Severity::High,
            serde_json::json!({
                "rule": "tamper.possible_removal",
                "removal_max_skin_temp_c": rules.removal_max_skin_temp_c,
                "ir_deviation_fraction": rules.ir_deviation_fraction,
                "ir_baseline_readings": rules.ir_baseline_readings,
            }),
        ),
        tamper::KIND_OBSTRUCTION => (
            AlertKind::Obstruction,
            Severity::High,
            serde_json::json!({
                "rule": "tamper.obstruction",
                "obstruction_min_hours": rules.obstruction_min_hours,
                "ir_deviation_fraction": rules.ir_deviation_fraction,
                "ir_baseline_readings": rules.ir_baseline_readings,
            }),
        ),
        tamper::KIND_BATTERY_LOW => (
            AlertKind::BatteryLow,
            Severity::Low,
            serde_json::json!({"rule": "device.battery_low", "battery_low_pct": rules.battery_low_pct}),
        ),
        tamper::KIND_DEVICE_FAULT => (
            AlertKind::DeviceFault,
            Severity::Medium,
            serde_json::json!({"rule": "device.fault", "fault_events": rules.fault_events}),
        ),
        _ => return None,
    };
    Some(AlertSpec {
        kind,
        severity,
        rule: rule.to_string(),
    })
}

/// How far back (ms) of the watermark an incremental run looks for new files: a file whose
/// catalogue row was committed while the previous run read the watermark can carry a slightly
/// older `written_at_ms`. Re-evaluating a day twice is harmless; missing one is not.
const WATERMARK_MARGIN_MS: i64 = 60_000;

/// What one incremental evaluation did.
#[derive(Debug)]
pub struct Incremental {
    /// The days evaluated (`None`: all data, the first run).
    pub days: Option<Days>,
    /// The watermark committed: the newest dataset file evaluated (`written_at_ms`).
    pub watermark: i64,
    pub report: EvaluationReport,
}

/// The scheduler's evaluation: only the days that received data since the last run (all data on
/// the first run). `None` when nothing is new. A station that was offline for days and then
/// uploads makes those days new, and they are evaluated with their lookback context.
///
/// With a `fence` (the pipelines lease of the node running it), the watermark is committed only
/// while the lease is still this process's: a node that stalled past its lease and woke up leaves
/// the watermark to the node that took over. (Alerts need no fence: the table's key on person,
/// kind and start raises each once, whoever evaluates.)
pub fn run_incremental(
    ctx: &Context,
    pseudonyms: &Pseudonymiser,
    rules: &Rules,
    fence: Option<&crate::base::lease::Lease>,
) -> Result<Option<Incremental>> {
    let (watermark, newest, days) = {
        let conn = ctx.db.lock();
        let watermark: Option<i64> = conn
            .query_row(
                "SELECT files_until_ms FROM pipeline_watermarks WHERE name = 'evaluate'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let since = watermark.map_or(i64::MIN, |w| w - WATERMARK_MARGIN_MS);
        type Row = (Option<String>, Option<String>, Option<i64>);
        let (first, last, newest): Row = conn.query_row(
            "SELECT min(day), max(day), max(written_at_ms) FROM dataset_files
              WHERE written_at_ms > ?1",
            [since],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let parse = |d: Option<String>| {
            d.and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
        };
        let days = parse(first).zip(parse(last)).map(|(from, last)| Days {
            from,
            to: last + chrono::Days::new(1),
        });
        (watermark, newest, days)
    };
    let Some(newest) = newest else {
        return Ok(None);
    };
    if watermark.is_some_and(|w| newest <= w) {
        return Ok(None);
    }
    // First run: everything. Later: the days of the files written since.
    let days = if watermark.is_some() { days } else { None };
    let report = run_days(ctx, pseudonyms, rules, days)?;
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    if let Some(lease) = fence {
        if !lease.held_in(&tx)? {
            return Err(Error::LeaseLost);
        }
    }
    tx.execute(
        "INSERT INTO pipeline_watermarks (name, files_until_ms, updated_at_ms) VALUES ('evaluate', ?1, ?2)
         ON CONFLICT(name) DO UPDATE SET files_until_ms = max(pipeline_watermarks.files_until_ms, excluded.files_until_ms),
                                         updated_at_ms = excluded.updated_at_ms",
        crate::params![newest, crate::base::time::now_ms()],
    )?;
    tx.commit()?;
    Ok(Some(Incremental {
        days,
        watermark: newest,
        report,
    }))
}

/// Re-evaluates `days` in chunks of `chunk_days`, calling `progress(done, total, chunk)` after
/// each: `nachtwacht pipeline run --from --to`.
pub fn backfill(
    ctx: &Context,
    pseudonyms: &Pseudonymiser,
    rules: &Rules,
    days: Days,
    chunk_days: u32,
    mut progress: impl FnMut(usize, usize, Days),
) -> Result<EvaluationReport> {
    let chunks = days.chunks(chunk_days);
    let mut total = EvaluationReport::default();
    for (i, chunk) in chunks.iter().enumerate() {
        let r = run_days(ctx, pseudonyms, rules, Some(*chunk))?;
        total.events += r.events;
        total.stress_episodes += r.stress_episodes;
        total.device_events += r.device_events;
        total.new_alerts += r.new_alerts;
        total.revised_alerts += r.revised_alerts;
        total.withdrawn_alerts += r.withdrawn_alerts;
        total.pending_episodes = r.pending_episodes;
        total.person_days += r.person_days;
        progress(i + 1, chunks.len(), *chunk);
    }
    Ok(total)
}

/// Stores one alert per event ([`alerts::store::record_event`]: an overlapping alert of the same
/// person and kind grows instead). `spec` maps an event's `kind` to its alert (`None`: not an
/// alert). Returns how many alerts are new.
fn store_alerts(
    ctx: &Context,
    events: &DataFrame,
    person_of_pid: &HashMap<String, i64>,
    spec: impl Fn(&str) -> Option<AlertSpec>,
) -> Result<usize> {
    if events.height() == 0 {
        return Ok(0);
    }
    let pid = events.column("pid")?.str()?;
    let kind = events.column("kind")?.str()?;
    let start = events.column("start")?.cast(&DataType::Int64)?;
    let start = start.i64()?;
    let end = events.column("end")?.cast(&DataType::Int64)?;
    let end = end.i64()?;
    let peak = match events.column("peak_tac_g_dl") {
        Ok(c) => Some(c.f64()?.clone()),
        Err(_) => None,
    };
    let bundles = events.column("bundle_ids")?.str()?;
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let mut new = 0;
    for i in 0..events.height() {
        let (Some(p), Some(k), Some(s), Some(e)) =
            (pid.get(i), kind.get(i), start.get(i), end.get(i))
        else {
            continue;
        };
        let (Some(&person_id), Some(spec)) = (person_of_pid.get(p), spec(k)) else {
            continue;
        };
        let alert = NewAlert {
            person_id,
            kind: spec.kind,
            severity: spec.severity,
            start_ms: s,
            end_ms: e,
            peak_tac_g_dl: peak.as_ref().and_then(|c| c.get(i)),
            rule: &spec.rule,
            evidence: bundles.get(i).unwrap_or(""),
        };
        if alerts::store::record_event(&tx, &alert, now)? {
            new += 1;
        }
    }
    tx.commit()?;
    Ok(new)
}
