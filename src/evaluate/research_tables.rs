//! The research stage's input tables, written by the evaluator: daily indicators per research
//! pseudonym and day, and alert counts per person-day by group of kinds. Rows of re-evaluated days
//! are replaced, not added.

use super::*;

/// The research dataset with the rows of `days` (all days when `None`) replaced by `fresh`. Rows
/// of `frozen` research pseudonyms (persons whose erasure has begun) are kept as they are.
pub(super) fn merge_research_days(
    readers: &dataset::Readers,
    fresh: DataFrame,
    days: Option<Days>,
    frozen: &[String],
) -> Result<DataFrame> {
    let Some(path) = readers.research_table(crate::base::blobs::RESEARCH_DAILY)? else {
        return Ok(fresh);
    };
    let outside = match days {
        Some(days) => col("day")
            .lt(lit(days.from))
            .or(col("day").gt_eq(lit(days.to))),
        None => lit(false),
    };
    let kept = LazyFrame::scan_parquet(PlPath::new(&path.to_string_lossy()), Default::default())?
        .filter(outside.or(is_frozen(frozen)));
    Ok(
        concat_lf_diagonal([kept, fresh.lazy()], UnionArgs::default())?
            .sort(["rid", "day"], SortMultipleOptions::default())
            .collect()?,
    )
}

/// Alert kinds by the group the research dataset counts them in.
const ALERT_GROUPS: &[(&str, &[&str])] = &[
    ("alcohol_alerts", &["alcohol"]),
    ("interferent_alerts", &["interferent"]),
    (
        "tamper_alerts",
        &[
            tamper::KIND_STRAP_OPEN,
            tamper::KIND_REMOVAL,
            tamper::KIND_OBSTRUCTION,
        ],
    ),
    (
        "device_alerts",
        &[
            tamper::KIND_BATTERY_LOW,
            tamper::KIND_DEVICE_FAULT,
            crate::alerts::AlertKind::DeviceDisconnected.as_str(),
            crate::alerts::AlertKind::StationSpoolFull.as_str(),
            crate::alerts::AlertKind::ClockDrift.as_str(),
        ],
    ),
    (
        "communication_alerts",
        &[
            crate::alerts::AlertKind::CommunicationLost.as_str(),
            crate::alerts::AlertKind::CommunicationCritical.as_str(),
        ],
    ),
];

/// `datasets/research/alert_counts.parquet`, rewritten whole from the alerts table (small): one
/// row per person and UTC day on which alerts started, with counts per group of kinds, under the
/// research pseudonym with the coarse attributes. Communication alerts come from housekeeping,
/// so they appear here from the next evaluation on.
/// Whether a row's `rid` is one of `frozen`.
fn is_frozen(frozen: &[String]) -> Expr {
    col("rid").is_in(
        lit(Series::new("frozen".into(), frozen.to_vec())).implode(),
        false,
    )
}

pub(super) fn write_research_alert_counts(
    ctx: &Context,
    readers: &dataset::Readers,
    persons_df: &DataFrame,
    person_of_pid: &HashMap<String, i64>,
    frozen: &[String],
) -> Result<()> {
    let pid_of: HashMap<i64, &str> = person_of_pid
        .iter()
        .map(|(pid, id)| (*id, pid.as_str()))
        .collect();
    let rows: Vec<(i64, String, String)> = {
        let conn = ctx.db.lock();
        let mut stmt = conn.prepare(
            // Withdrawn alerts are not events any more; they stay only as a record.
            "SELECT person_id, start_ms, kind FROM alerts
              WHERE withdrawn_at_ms IS NULL ORDER BY person_id, start_ms",
        )?;
        // The UTC day of the start, as SQLite's date(…, 'unixepoch') gave it.
        stmt.query_map([], |r| {
            let start_ms: i64 = r.get(1)?;
            let day = chrono::DateTime::from_timestamp_millis(start_ms)
                .map(|t| t.date_naive().to_string())
                .unwrap_or_default();
            Ok((r.get(0)?, day, r.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    let mut pids = Vec::new();
    let mut days = Vec::new();
    let mut counts: Vec<Vec<i64>> = vec![Vec::new(); ALERT_GROUPS.len()];
    for (person, day, kind) in rows {
        let Some(pid) = pid_of.get(&person) else {
            continue;
        };
        if pids.last() != Some(pid) || days.last() != Some(&day) {
            pids.push(*pid);
            days.push(day);
            counts.iter_mut().for_each(|c| c.push(0));
        }
        for (i, (_, kinds)) in ALERT_GROUPS.iter().enumerate() {
            if kinds.contains(&kind.as_str()) {
                *counts[i].last_mut().expect("a row was pushed") += 1;
            }
        }
    }
    let mut columns = vec![
        Column::new("pid".into(), pids),
        Column::new("day".into(), days).cast(&DataType::Date)?,
    ];
    for ((name, _), c) in ALERT_GROUPS.iter().zip(counts) {
        columns.push(Column::new((*name).into(), c));
    }
    let fresh = daily::for_research(DataFrame::new(columns)?.lazy(), persons_df.clone().lazy());
    let kept = if frozen.is_empty() {
        None
    } else {
        readers.research_table(crate::base::blobs::RESEARCH_ALERT_COUNTS)?
    };
    let mut out = if let Some(path) = kept {
        // Persons whose erasure has begun keep the counts they had (see `merge_research_days`).
        let kept =
            LazyFrame::scan_parquet(PlPath::new(&path.to_string_lossy()), Default::default())?
                .filter(is_frozen(frozen));
        concat_lf_diagonal([kept, fresh], UnionArgs::default())?
            .sort(["rid", "day"], SortMultipleOptions::default())
            .collect()?
    } else {
        fresh.collect()?
    };
    write_research_table(
        &ctx.blobs,
        crate::base::blobs::RESEARCH_ALERT_COUNTS,
        &mut out,
    )
}

pub(super) fn write_research_daily(ctx: &Context, df: &mut DataFrame) -> Result<()> {
    write_research_table(&ctx.blobs, crate::base::blobs::RESEARCH_DAILY, df)
}

/// Writes a research table ([`crate::base::blobs::RESEARCH_DAILY`] or
/// [`crate::base::blobs::RESEARCH_ALERT_COUNTS`]) whole and durably: a local file (temp file,
/// fsync, rename, fsync directory) or one PUT.
pub fn write_research_table(
    blobs: &crate::base::blobs::Blobs,
    key: &str,
    df: &mut DataFrame,
) -> Result<()> {
    let key = crate::base::blobs::Key::dataset(key)
        .ok_or_else(|| dataset::Error::NotADataset(key.to_string()))?;
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(df)?;
    blobs.put(&key, &buf).map_err(dataset::Error::from)?;
    Ok(())
}
