//! Tamper, battery and device-fault events: the alerts besides drinking that an officer must hear
//! about (../shared/domain.md section 1). Thresholds: `pipelines/tamper.toml`.
//!
//! Every function returns one row per *event*, never per reading: a run of consecutive readings of
//! one person that meet the rule. Out: `pid`, `kind`, `start`, `end`, `readings` (UInt32),
//! `bundle_ids` (comma-separated, in order of first appearance: the evidence).
//!
//! * [`ankle_tamper`]: `strap-open` (strap circuit open), `possible-removal` (cold skin with an IR
//!   change), `obstruction` (IR changed while the strap is closed and the skin warm, for at least
//!   `obstruction_min_hours`). The IR baseline is the median of each person's first
//!   `ir_baseline_readings` readings.
//! * [`battery_low`]: runs of battery readings below `battery_low_pct`.
//! * [`device_faults`]: each fault event the device reported.

use polars::prelude::*;

use crate::TamperRules;

pub const KIND_STRAP_OPEN: &str = "strap-open";
pub const KIND_REMOVAL: &str = "possible-removal";
pub const KIND_OBSTRUCTION: &str = "obstruction";
pub const KIND_BATTERY_LOW: &str = "battery-low";
pub const KIND_DEVICE_FAULT: &str = "device-fault";

const MS_PER_HOUR: f64 = 3_600_000.0;

/// The output columns, in order.
fn event_columns() -> [Expr; 6] {
    [
        col("pid"),
        col("kind"),
        col("start"),
        col("end"),
        col("readings"),
        col("bundle_ids"),
    ]
}

/// Runs of consecutive rows (per `pid`, in `ts` order) where the Boolean column `condition` holds,
/// one row per run with `kind`. Rows must be sorted by `pid`, `ts`.
fn runs(sorted: LazyFrame, condition: &str, kind: &str) -> LazyFrame {
    let same_pid = col("pid").eq(col("pid").shift(lit(1)));
    let previous = when(same_pid)
        .then(col(condition).shift(lit(1)))
        .otherwise(lit(false))
        .fill_null(lit(false));
    sorted
        .with_column(
            // Run numbers are global; with `pid` they identify one person's run.
            col(condition)
                .and(previous.not())
                .cast(DataType::UInt32)
                .cum_sum(false)
                .alias("run"),
        )
        .filter(col(condition))
        .group_by([col("pid"), col("run")])
        .agg([
            col("ts").min().alias("start"),
            col("ts").max().alias("end"),
            len().cast(DataType::UInt32).alias("readings"),
            col("bundle_id")
                .unique_stable()
                .str()
                .join(",", true)
                .alias("bundle_ids"),
        ])
        .with_column(lit(kind).alias("kind"))
        .select(event_columns())
}

/// Strap-open, possible-removal and obstruction events from ankle readings.
///
/// In: `pid`, `ts`, `skin_temp_c`, `ir`, `strap_closed`, `bundle_id`.
pub fn ankle_tamper(readings: LazyFrame, rules: &TamperRules) -> LazyFrame {
    let baselines = ir_baselines(readings.clone(), rules);
    ankle_tamper_with_baselines(readings, baselines, rules)
}

/// Each person's IR baseline: the median of their first `ir_baseline_readings` readings (the
/// installation check). In: `pid`, `ts`, `ir` over the person's whole history. Out: `pid`,
/// `ir_baseline`.
pub fn ir_baselines(readings: LazyFrame, rules: &TamperRules) -> LazyFrame {
    readings
        .select([col("pid"), col("ts"), col("ir")])
        .sort(["pid", "ts"], SortMultipleOptions::default())
        .group_by([col("pid")])
        .agg([col("ir")
            .head(Some(rules.ir_baseline_readings as usize))
            .median()
            .alias("ir_baseline")])
}

/// [`ankle_tamper`] over some of a person's readings (a range of days being re-evaluated), with
/// baselines from [`ir_baselines`] over their whole history.
pub fn ankle_tamper_with_baselines(
    readings: LazyFrame,
    baseline: LazyFrame,
    rules: &TamperRules,
) -> LazyFrame {
    let sorted = readings
        .select([
            col("pid"),
            col("ts"),
            col("skin_temp_c"),
            col("ir"),
            col("strap_closed"),
            col("bundle_id"),
        ])
        .sort(["pid", "ts"], SortMultipleOptions::default());
    let changed = (col("ir") - col("ir_baseline"))
        .abs()
        .gt(col("ir_baseline").abs() * lit(rules.ir_deviation_fraction));
    let cold = col("skin_temp_c").lt(lit(rules.removal_max_skin_temp_c));
    let flagged = sorted
        .join(
            baseline,
            [col("pid")],
            [col("pid")],
            JoinArgs::new(JoinType::Left),
        )
        // The join keeps the left order in polars 0.52, but the run logic depends on it: say so.
        .sort(["pid", "ts"], SortMultipleOptions::default())
        .with_columns([
            col("strap_closed").not().alias("strap_open"),
            col("strap_closed")
                .and(cold.clone())
                .and(changed.clone())
                .alias("removal"),
            col("strap_closed")
                .and(cold.not())
                .and(changed)
                .alias("obstructed"),
        ]);
    let min_obstruction_ms = (rules.obstruction_min_hours * MS_PER_HOUR) as i64;
    let obstruction = runs(flagged.clone(), "obstructed", KIND_OBSTRUCTION).filter(
        (col("end").cast(DataType::Int64) - col("start").cast(DataType::Int64))
            .gt_eq(lit(min_obstruction_ms)),
    );
    concat(
        [
            runs(flagged.clone(), "strap_open", KIND_STRAP_OPEN),
            runs(flagged, "removal", KIND_REMOVAL),
            obstruction,
        ],
        UnionArgs::default(),
    )
    .expect("three frames of one schema")
    .sort(["pid", "start", "kind"], SortMultipleOptions::default())
}

/// Battery-low events. In: `pid`, `ts`, `battery_pct`, `bundle_id`.
pub fn battery_low(battery: LazyFrame, rules: &TamperRules) -> LazyFrame {
    let sorted = battery
        .select([col("pid"), col("ts"), col("battery_pct"), col("bundle_id")])
        .sort(["pid", "ts"], SortMultipleOptions::default())
        .with_column(
            col("battery_pct")
                .lt(lit(rules.battery_low_pct))
                .alias("low"),
        );
    runs(sorted, "low", KIND_BATTERY_LOW).sort(["pid", "start"], SortMultipleOptions::default())
}

/// Device-fault events, one per fault the device reported. In: `pid`, `ts`, `event`, `bundle_id`.
pub fn device_faults(events: LazyFrame, rules: &TamperRules) -> LazyFrame {
    let is_fault = rules.fault_events.iter().fold(lit(false), |any, e| {
        any.or(col("event").eq(lit(e.as_str())))
    });
    events
        .filter(is_fault)
        .select([
            col("pid"),
            lit(KIND_DEVICE_FAULT).alias("kind"),
            col("ts").alias("start"),
            col("ts").alias("end"),
            lit(1u32).cast(DataType::UInt32).alias("readings"),
            col("bundle_id").alias("bundle_ids"),
        ])
        .sort(["pid", "start"], SortMultipleOptions::default())
}

#[cfg(test)]
mod tests;
