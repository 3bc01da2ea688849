//! Daily indicators per person-day.
//!
//! Out (one row per `pid`, `day`): `wear_minutes` (Int64), `peak_tac_g_dl` (Float64, ankle monitor
//! only), `drinking_events` (Int64, events starting that day), `valid_eda_minutes` (Int64),
//! `mean_eda_us` and `mean_hr_bpm` (Float64, wristband only). A person-day without a device's
//! signals has nulls in that device's columns, never invented zeros.
//!
//! [`for_research`] swaps the operational pseudonym for the research pseudonym and adds the coarse
//! public attributes; it is the only shape of this data that reaches the research path.

use polars::prelude::*;

use crate::alcohol::KIND_DRINKING;
use crate::AlcoholRules;

/// Valid EDA range, µS (Kleckner et al. 2018).
const EDA_MIN_US: f64 = 0.05;
const EDA_MAX_US: f64 = 60.0;
const EDA_SAMPLES_PER_MINUTE: i64 = 4 * 60;

fn day() -> Expr {
    col("ts").dt().date().alias("day")
}

/// Ankle-monitor days: wear minutes, peak TAC and drinking events.
///
/// `readings`: `pid`, `ts`, `tac_g_dl`, `skin_temp_c`, `strap_closed`.
/// `events`: the output of [`crate::alcohol::drinking_events`].
pub fn ankle_daily(readings: LazyFrame, events: LazyFrame, rules: &AlcoholRules) -> LazyFrame {
    let worn = col("strap_closed").and(col("skin_temp_c").gt_eq(lit(rules.min_worn_skin_temp_c)));
    let per_day = readings
        .with_column(day())
        .group_by([col("pid"), col("day")])
        .agg([
            (worn.cast(DataType::Int64).sum() * lit(rules.minutes_per_reading as i64))
                .alias("wear_minutes"),
            col("tac_g_dl").max().alias("peak_tac_g_dl"),
        ]);
    let drinking_per_day = events
        .filter(col("kind").eq(lit(KIND_DRINKING)))
        .with_column(col("start").dt().date().alias("day"))
        .group_by([col("pid"), col("day")])
        .agg([len().cast(DataType::Int64).alias("drinking_events")]);
    per_day
        .join(
            drinking_per_day,
            [col("pid"), col("day")],
            [col("pid"), col("day")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("drinking_events").fill_null(lit(0i64)))
}

/// Wristband days: valid EDA minutes, mean EDA over valid samples, mean heart rate.
///
/// `eda`: `pid`, `ts`, `eda_us`. `hr`: `pid`, `ts`, `hr_bpm`.
pub fn wristband_daily(eda: LazyFrame, hr: LazyFrame) -> LazyFrame {
    let valid = col("eda_us")
        .gt_eq(lit(EDA_MIN_US))
        .and(col("eda_us").lt_eq(lit(EDA_MAX_US)));
    let eda_days = eda
        .with_columns([day(), valid.alias("valid")])
        .group_by([col("pid"), col("day")])
        .agg([
            (col("valid").cast(DataType::Int64).sum() / lit(EDA_SAMPLES_PER_MINUTE))
                .alias("valid_eda_minutes"),
            col("eda_us")
                .filter(col("valid"))
                .mean()
                .alias("mean_eda_us"),
        ]);
    let hr_days = hr
        .with_column(day())
        .group_by([col("pid"), col("day")])
        .agg([col("hr_bpm").mean().alias("mean_hr_bpm")]);
    eda_days.join(
        hr_days,
        [col("pid"), col("day")],
        [col("pid"), col("day")],
        JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
    )
}

/// One row per person-day with every indicator column, nulls where a device was absent.
pub fn combine(parts: Vec<LazyFrame>) -> PolarsResult<LazyFrame> {
    let indicators = [
        ("wear_minutes", DataType::Int64),
        ("peak_tac_g_dl", DataType::Float64),
        ("drinking_events", DataType::Int64),
        ("valid_eda_minutes", DataType::Int64),
        ("mean_eda_us", DataType::Float64),
        ("mean_hr_bpm", DataType::Float64),
    ];
    // An empty frame with the full schema makes the diagonal union carry every column, even when a
    // device kind has no data at all.
    let mut template = vec![
        Column::new_empty("pid".into(), &DataType::String),
        Column::new_empty("day".into(), &DataType::Date),
    ];
    template.extend(
        indicators
            .iter()
            .map(|(name, dt)| Column::new_empty((*name).into(), dt)),
    );
    let mut frames = vec![DataFrame::new(template)?.lazy()];
    frames.extend(parts);
    let union = concat_lf_diagonal(frames, UnionArgs::default())?;
    Ok(union
        .group_by([col("pid"), col("day")])
        .agg(
            indicators
                .iter()
                .map(|(name, _)| col(*name).max())
                .collect::<Vec<_>>(),
        )
        .sort(["pid", "day"], SortMultipleOptions::default()))
}

/// The age band research sees instead of a birth year (coarse on purpose; youths in treatment
/// are 12–17). `None` (unknown birth year) is "unknown".
pub fn age_band(age: Option<i32>) -> &'static str {
    match age {
        None => "unknown",
        Some(a) if a < 18 => "12-17",
        Some(a) if a < 25 => "18-24",
        Some(a) if a < 35 => "25-34",
        Some(a) if a < 50 => "35-49",
        Some(_) => "50+",
    }
}

/// Research shape: `rid` (research pseudonym), public coarse attributes (`programme`, `region`,
/// `age_band`), indicators. No `pid`.
///
/// `persons`: `pid`, `rid`, `programme`, `region`, `age_band`.
pub fn for_research(daily: LazyFrame, persons: LazyFrame) -> LazyFrame {
    daily
        .join(
            persons.select([
                col("pid"),
                col("rid"),
                col("programme"),
                col("region"),
                col("age_band"),
            ]),
            [col("pid")],
            [col("pid")],
            JoinArgs::new(JoinType::Inner),
        )
        .drop(cols(["pid"]))
        .sort(["rid", "day"], SortMultipleOptions::default())
}

#[cfg(test)]
mod tests;
