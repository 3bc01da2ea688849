//! Runs the pipelines over the datasets: drinking, tamper, battery and device-fault events become
//! alerts in SQL, daily indicators become the research dataset (research pseudonyms only).
//!
//! Comes in: the raw Parquet datasets and the persons table. Goes out: `alerts` rows (one per event,
//! updated in place when late data extends an event) and `datasets/research/daily_indicators.parquet`
//! (rewritten atomically). Never writes an operational pseudonym into the research dataset.

use std::collections::HashMap;
use std::path::PathBuf;

use nachtwacht_pipelines::alcohol::{drinking_events, KIND_DRINKING};
use nachtwacht_pipelines::tamper::{self, ankle_tamper, battery_low, device_faults};
use nachtwacht_pipelines::{daily, stress, AlcoholRules, StressRules, TamperRules};
use nachtwacht_wire::Signal;
use polars::prelude::*;
use tracing::info;

use crate::dataset;
use crate::pseudonym::Pseudonymiser;
use crate::server::Context;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error(transparent)]
    Dataset(#[from] dataset::Error),
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct EvaluationReport {
    /// Drinking and interferent events.
    pub events: usize,
    /// Stress episodes (wristband programmes).
    pub stress_episodes: usize,
    /// Strap-open, possible-removal, obstruction, battery-low and device-fault events.
    pub device_events: usize,
    pub new_alerts: usize,
    pub person_days: usize,
}

/// Every rule set the pipelines use (defaults: the TOML files in `pipelines/`).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub alcohol: AlcoholRules,
    pub tamper: TamperRules,
    pub stress: StressRules,
}

/// How an event of one pipeline kind is stored as an alert.
struct AlertSpec {
    kind: &'static str,
    severity: &'static str,
    /// JSON: the rule and the parameters it fired with.
    rule: String,
}

fn scan(files: Vec<PathBuf>) -> Result<Option<LazyFrame>> {
    if files.is_empty() {
        return Ok(None);
    }
    let paths: Vec<PlPath> = files
        .iter()
        .map(|p| PlPath::new(&p.to_string_lossy()))
        .collect();
    Ok(Some(LazyFrame::scan_parquet_files(
        paths.into(),
        ScanArgsParquet::default(),
    )?))
}

/// A signal's catalogued files, valid samples only (`quality = 0`, see [`crate::validate`]).
fn signal(ctx: &Context, s: Signal) -> Result<Option<LazyFrame>> {
    Ok(signal_with_flags(ctx, s)?.map(|lf| lf.filter(col("quality").eq(lit(0u16)))))
}

/// A signal's catalogued files with every sample and its `quality` flags: for pipelines that
/// need to know where the invalid samples were (the EDA mask discards their neighbours too).
fn signal_with_flags(ctx: &Context, s: Signal) -> Result<Option<LazyFrame>> {
    scan(dataset::list_signal_files(&ctx.dir, &ctx.db, s)?)
}

/// `pid`, `rid`, `programme`, `region`, `age_band` for everyone enrolled.
fn persons(ctx: &Context, pseudonyms: &Pseudonymiser) -> Result<(DataFrame, HashMap<String, i64>)> {
    type Row = (i64, String, Option<String>, Option<i32>);
    let rows: Vec<Row> = {
        let conn = ctx.db.lock();
        let mut stmt =
            conn.prepare("SELECT id, programme, region, birth_year FROM persons ORDER BY id")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        rows
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
    Ok((df, by_pid))
}

/// One full evaluation. Blocking: run on a blocking thread.
pub fn run(ctx: &Context, pseudonyms: &Pseudonymiser, rules: &Rules) -> Result<EvaluationReport> {
    let (persons_df, person_of_pid) = persons(ctx, pseudonyms)?;
    let mut report = EvaluationReport::default();
    let mut parts = Vec::new();

    if let Some(ankle) = signal(ctx, Signal::Ankle)? {
        let events = drinking_events(ankle.clone(), &rules.alcohol).collect()?;
        report.events = events.height();
        report.new_alerts += store_alerts(ctx, &events, &person_of_pid, |k| {
            Some(alcohol_alert(k, &rules.alcohol))
        })?;
        let tampering = ankle_tamper(ankle.clone(), &rules.tamper).collect()?;
        report.device_events += tampering.height();
        report.new_alerts += store_alerts(ctx, &tampering, &person_of_pid, |k| {
            tamper_alert(k, &rules.tamper)
        })?;
        parts.push(daily::ankle_daily(
            ankle,
            events.lazy(),
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
        if let Some(lf) = signal(ctx, s)? {
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
        signal_with_flags(ctx, Signal::Eda)?,
        signal(ctx, Signal::Hr)?,
    ) {
        // Without motion data no window can be shown to be at rest, so none is judged.
        let acc = match signal(ctx, Signal::Acc)? {
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
    let combined = daily::combine(parts)?;
    let mut research = daily::for_research(combined, persons_df.lazy()).collect()?;
    report.person_days = research.height();
    write_research_daily(ctx, &mut research)?;
    info!(
        events = report.events,
        stress_episodes = report.stress_episodes,
        device_events = report.device_events,
        new_alerts = report.new_alerts,
        person_days = report.person_days,
        "pipelines evaluated"
    );
    Ok(report)
}

fn alcohol_alert(kind: &str, rules: &AlcoholRules) -> AlertSpec {
    let rule = serde_json::json!({
        "rule": "alcohol.drinking_event",
        "threshold_g_dl": rules.threshold_g_dl,
        "min_consecutive_readings": rules.min_consecutive_readings,
        "max_rise_per_hour": rules.max_rise_per_hour,
        "max_elimination_per_hour": rules.max_elimination_per_hour,
    })
    .to_string();
    if kind == KIND_DRINKING {
        AlertSpec {
            kind: "alcohol",
            severity: "high",
            rule,
        }
    } else {
        AlertSpec {
            kind: "interferent",
            severity: "review",
            rule,
        }
    }
}

fn tamper_alert(kind: &str, rules: &TamperRules) -> Option<AlertSpec> {
    let (kind, severity, rule) = match kind {
        tamper::KIND_STRAP_OPEN => (
            tamper::KIND_STRAP_OPEN,
            "high",
            serde_json::json!({"rule": "tamper.strap_open"}),
        ),
        tamper::KIND_REMOVAL => (
            tamper::KIND_REMOVAL,
            "high",
            serde_json::json!({
                "rule": "tamper.possible_removal",
                "removal_max_skin_temp_c": rules.removal_max_skin_temp_c,
                "ir_deviation_fraction": rules.ir_deviation_fraction,
                "ir_baseline_readings": rules.ir_baseline_readings,
            }),
        ),
        tamper::KIND_OBSTRUCTION => (
            tamper::KIND_OBSTRUCTION,
            "high",
            serde_json::json!({
                "rule": "tamper.obstruction",
                "obstruction_min_hours": rules.obstruction_min_hours,
                "ir_deviation_fraction": rules.ir_deviation_fraction,
                "ir_baseline_readings": rules.ir_baseline_readings,
            }),
        ),
        tamper::KIND_BATTERY_LOW => (
            tamper::KIND_BATTERY_LOW,
            "low",
            serde_json::json!({"rule": "device.battery_low", "battery_low_pct": rules.battery_low_pct}),
        ),
        tamper::KIND_DEVICE_FAULT => (
            tamper::KIND_DEVICE_FAULT,
            "medium",
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

fn write_research_daily(ctx: &Context, df: &mut DataFrame) -> Result<()> {
    let path = ctx.dir.research_daily();
    let parent = path.parent().expect("dataset in a directory");
    std::fs::create_dir_all(parent).map_err(|source| crate::spool::Error::Io {
        path: parent.display().to_string(),
        source,
    })?;
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(df)?;
    crate::spool::write_durably(&path, &buf)?;
    Ok(())
}

/// Inserts one alert per event; an event extended by late data updates its alert. `spec` maps an
/// event's `kind` to its alert (`None`: not an alert). Returns how many alerts are new.
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
    let now = crate::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let mut new = 0;
    for i in 0..events.height() {
        let (Some(p), Some(k), Some(s), Some(e)) =
            (pid.get(i), kind.get(i), start.get(i), end.get(i))
        else {
            continue;
        };
        let (Some(person_id), Some(alert)) = (person_of_pid.get(p), spec(k)) else {
            continue;
        };
        let peak = peak.as_ref().and_then(|c| c.get(i));
        let evidence = bundles.get(i).unwrap_or("");
        new += tx.execute(
            "INSERT OR IGNORE INTO alerts (person_id, kind, severity, start_ms, end_ms, peak_tac_g_dl, rule, evidence_bundles, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![person_id, alert.kind, alert.severity, s, e, peak, alert.rule, evidence, now],
        )?;
        tx.execute(
            "UPDATE alerts SET end_ms = ?4, peak_tac_g_dl = ?5, evidence_bundles = ?6
             WHERE person_id = ?1 AND kind = ?2 AND start_ms = ?3",
            rusqlite::params![person_id, alert.kind, s, e, peak, evidence],
        )?;
    }
    tx.commit()?;
    Ok(new)
}
