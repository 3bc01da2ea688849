//! Daily indicators per person-day.
//!
//! Out (one row per `pid`, `day`), nulls where a device was absent, never invented zeros:
//!
//! * ankle monitor: `wear_minutes` (Int64, strap closed on warm skin), `peak_tac_g_dl`,
//!   `drinking_events` and `tamper_events` (Int64, events starting that day);
//! * wristband: `wear_minutes` (minutes with heart rate), `valid_eda_minutes` (Int64, after the
//!   quality mask), `mean_eda_us`, `scr_per_minute` (SCRs per valid EDA minute), `minutes_aroused`
//!   (Int64), `stress_episodes` (Int64, episodes starting that day), `mean_hr_bpm`.
//!
//! A person on both devices (tbs-leave) gets the larger of the two wear times.
//!
//! [`for_research`] swaps the operational pseudonym for the research pseudonym and adds the coarse
//! public attributes; it is the only shape of this data that reaches the research path.

use polars::prelude::*;

use crate::alcohol::KIND_DRINKING;
use crate::tamper::{KIND_OBSTRUCTION, KIND_REMOVAL, KIND_STRAP_OPEN};
use crate::{AlcoholRules, StressRules};

fn day() -> Expr {
    col("ts").dt().date().alias("day")
}

fn keys() -> [Expr; 2] {
    [col("pid"), col("day")]
}

/// Events per person and the day they start: `events` needs `pid`, `kind`, `start`.
fn events_per_day(events: LazyFrame, kinds: &[&str], name: &str) -> LazyFrame {
    let wanted = kinds
        .iter()
        .map(|k| col("kind").eq(lit(*k)))
        .reduce(|a, b| a.or(b))
        .unwrap_or(lit(false));
    events
        .filter(wanted)
        .with_column(col("start").dt().date().alias("day"))
        .group_by(keys())
        .agg([len().cast(DataType::Int64).alias(name)])
}

/// Ankle-monitor days: wear minutes, peak TAC, drinking events and tamper events.
///
/// `readings`: `pid`, `ts`, `tac_g_dl`, `skin_temp_c`, `strap_closed`.
/// `events`: the decided episodes of [`crate::alcohol::drinking_events`] ([`crate::alcohol::decided`]); `tamper`: the output of
/// [`crate::tamper::ankle_tamper`] (strap-open, possible-removal and obstruction count).
pub fn ankle_daily(
    readings: LazyFrame,
    events: LazyFrame,
    tamper: LazyFrame,
    rules: &AlcoholRules,
) -> LazyFrame {
    let worn = col("strap_closed").and(col("skin_temp_c").gt_eq(lit(rules.min_worn_skin_temp_c)));
    let per_day = readings.with_column(day()).group_by(keys()).agg([
        (worn.cast(DataType::Int64).sum() * lit(rules.minutes_per_reading as i64))
            .alias("wear_minutes"),
        col("tac_g_dl").max().alias("peak_tac_g_dl"),
    ]);
    let left = || JoinArgs::new(JoinType::Left);
    per_day
        .join(
            events_per_day(events, &[KIND_DRINKING], "drinking_events"),
            keys(),
            keys(),
            left(),
        )
        .join(
            events_per_day(
                tamper,
                &[KIND_STRAP_OPEN, KIND_REMOVAL, KIND_OBSTRUCTION],
                "tamper_events",
            ),
            keys(),
            keys(),
            left(),
        )
        .with_columns([
            col("drinking_events").fill_null(lit(0i64)),
            col("tamper_events").fill_null(lit(0i64)),
        ])
}

/// Wristband days from the stress pipeline's output and the heart rate.
///
/// `windows`, `episodes`: the two outputs of [`crate::stress::evaluate`]. `hr`: `pid`, `ts`,
/// `hr_bpm` (valid samples).
pub fn wristband_daily(
    windows: LazyFrame,
    episodes: LazyFrame,
    hr: LazyFrame,
    rules: &StressRules,
) -> LazyFrame {
    let eda_days = windows
        .with_column(col("window").dt().date().alias("day"))
        .group_by(keys())
        .agg([
            col("valid_minutes")
                .sum()
                .floor()
                .cast(DataType::Int64)
                .alias("valid_eda_minutes"),
            ((col("mean_eda_us") * col("valid_minutes")).sum() / col("valid_minutes").sum())
                .alias("mean_eda_us"),
            (col("scrs").cast(DataType::Float64).sum() / col("valid_minutes").sum())
                .alias("scr_per_minute"),
            (col("aroused").cast(DataType::Int64).sum() * lit(i64::from(rules.window_minutes)))
                .alias("minutes_aroused"),
        ])
        .join(
            episodes
                .with_column(col("start").dt().date().alias("day"))
                .group_by(keys())
                .agg([len().cast(DataType::Int64).alias("stress_episodes")]),
            keys(),
            keys(),
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("stress_episodes").fill_null(lit(0i64)));
    let hr_days = hr.with_column(day()).group_by(keys()).agg([
        col("hr_bpm").mean().alias("mean_hr_bpm"),
        col("ts")
            .dt()
            .truncate(lit("1m"))
            .n_unique()
            .cast(DataType::Int64)
            .alias("wear_minutes"),
    ]);
    eda_days.join(
        hr_days,
        keys(),
        keys(),
        JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
    )
}

/// One row per person-day with every indicator column, nulls where a device was absent.
pub fn combine(parts: Vec<LazyFrame>) -> PolarsResult<LazyFrame> {
    let indicators = [
        ("wear_minutes", DataType::Int64),
        ("peak_tac_g_dl", DataType::Float64),
        ("drinking_events", DataType::Int64),
        ("tamper_events", DataType::Int64),
        ("valid_eda_minutes", DataType::Int64),
        ("mean_eda_us", DataType::Float64),
        ("scr_per_minute", DataType::Float64),
        ("minutes_aroused", DataType::Int64),
        ("stress_episodes", DataType::Int64),
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

/// Every value [`age_band`] returns: the public key set research may group by.
pub const AGE_BANDS: &[&str] = &["12-17", "18-24", "25-34", "35-49", "50+", "unknown"];

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
/// `persons`: `pid`, `rid`, `programme`, `region`, `age_band`. Any per-person-day frame with
/// `pid` and `day` takes this shape for research (the alert counts do too).
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
