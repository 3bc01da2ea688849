//! Drinking events from ankle-monitor readings.
//!
//! A *run* is a stretch of consecutive readings of one person above the TAC threshold. A run whose
//! rise into it or fall out of it is faster than drinking can produce is an *interferent* (perfume,
//! hand gel), reported for human review whatever its length; otherwise a run of at least
//! `min_consecutive_readings` is a *drinking* event. Shorter slow runs are not events.
//!
//! In: `pid`, `ts`, `tac_g_dl`, `bundle_id` (the bundle each reading came in, for evidence).
//! Out: one row per event: `pid`, `kind` ("drinking" | "interferent"), `start`, `end`,
//! `peak_tac_g_dl`, `readings`, `max_rise_per_hour`, `max_fall_per_hour`, `bundle_ids`
//! (comma-separated, in order of first appearance).

use polars::prelude::*;

use crate::AlcoholRules;

pub const KIND_DRINKING: &str = "drinking";
pub const KIND_INTERFERENT: &str = "interferent";

const MS_PER_HOUR: f64 = 3_600_000.0;

pub fn drinking_events(readings: LazyFrame, rules: &AlcoholRules) -> LazyFrame {
    // Rows are sorted by person and time, so the neighbouring row is the same person's previous or
    // next reading whenever the `pid` matches. Shifts with that mask replace window expressions
    // (which polars refuses to carry into the aggregation below) and are cheaper.
    let neighbour = |c: &str, n: i64| {
        when(col("pid").eq(col("pid").shift(lit(n))))
            .then(col(c).shift(lit(n)))
            .otherwise(lit(NULL))
    };
    let hours_since_prev =
        (col("ts_ms") - neighbour("ts_ms", 1)).cast(DataType::Float64) / lit(MS_PER_HOUR);
    let rate =
        ((col("tac_g_dl") - neighbour("tac_g_dl", 1)) / hours_since_prev).alias("rate_per_hour");
    let starts_run = col("above").and(neighbour("above", 1).fill_null(lit(false)).not());

    let too_fast = col("max_rise_per_hour")
        .gt(lit(rules.max_rise_per_hour))
        .or(col("max_fall_per_hour").gt(lit(rules.max_elimination_per_hour)));

    readings
        .select([col("pid"), col("ts"), col("tac_g_dl"), col("bundle_id")])
        .sort(["pid", "ts"], SortMultipleOptions::default())
        .with_columns([
            col("ts").cast(DataType::Int64).alias("ts_ms"),
            col("tac_g_dl").gt(lit(rules.threshold_g_dl)).alias("above"),
        ])
        .with_columns([rate])
        .with_columns([
            neighbour("rate_per_hour", -1).alias("rate_to_next"),
            // Run numbers are global; together with `pid` they identify one person's run.
            starts_run
                .cast(DataType::UInt32)
                .cum_sum(false)
                .alias("run"),
        ])
        .filter(col("above"))
        .group_by([col("pid"), col("run")])
        .agg([
            col("ts").min().alias("start"),
            col("ts").max().alias("end"),
            col("tac_g_dl").max().alias("peak_tac_g_dl"),
            len().cast(DataType::UInt32).alias("readings"),
            col("rate_per_hour")
                .max()
                .fill_null(lit(0.0))
                .alias("max_rise_per_hour"),
            (lit(0.0) - col("rate_to_next").min())
                .fill_null(lit(0.0))
                .alias("max_fall_per_hour"),
            col("bundle_id")
                .unique_stable()
                .str()
                .join(",", true)
                .alias("bundle_ids"),
        ])
        .with_column(
            when(too_fast.clone())
                .then(lit(KIND_INTERFERENT))
                .otherwise(lit(KIND_DRINKING))
                .alias("kind"),
        )
        .filter(too_fast.or(col("readings").gt_eq(lit(rules.min_consecutive_readings))))
        .select([
            col("pid"),
            col("kind"),
            col("start"),
            col("end"),
            col("peak_tac_g_dl"),
            col("readings"),
            col("max_rise_per_hour"),
            col("max_fall_per_hour"),
            col("bundle_ids"),
        ])
        .sort(["pid", "start"], SortMultipleOptions::default())
}

#[cfg(test)]
mod tests;
