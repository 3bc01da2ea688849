//! Stress indicators from the wristband: EDA, heart rate and motion (../shared/domain.md section 3).
//! Thresholds: `pipelines/stress.toml`. Wristband programmes only: an alcohol-ban client's data never
//! reaches this module (purpose binding discards wristband signals at ingest).
//!
//! Four stages, each a LazyFrame in and out:
//!
//! 1. [`eda_features`]: the quality mask (decoder flags, valid range, and `invalid_margin_s` around
//!    every invalid sample), a low-passed EDA, its tonic level and phasic part, and SCR peaks.
//! 2. [`windows`]: per person and `window_minutes` window: valid EDA minutes, SCRs per valid minute,
//!    mean heart rate, mean motion; whether the window can be judged (enough valid EDA, at rest).
//! 3. [`aroused`]: each judged window against the person's own baseline (their judged windows of
//!    the previous `baseline_days` days in the same band of hours); aroused when both the SCR rate
//!    and the heart rate exceed median + factor × MAD. Motion above `rest_max_activity_g` means the
//!    window is not judged at all: exercise is not stress.
//! 4. [`episodes`]: aroused windows less than `merge_gap_minutes` apart merged into episodes of at
//!    least `min_episode_minutes`.

use polars::prelude::*;

use crate::StressRules;

const MS_PER_MINUTE: f64 = 60_000.0;

fn trailing(ms: i64, closed_window: ClosedWindow) -> RollingOptionsDynamicWindow {
    RollingOptionsDynamicWindow {
        window_size: Duration::parse(&format!("{ms}ms")),
        min_periods: 1,
        closed_window,
        fn_params: None,
    }
}

fn seconds_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

/// The same person's value `n` rows away (rows sorted by `pid`, `ts`), null across persons.
fn neighbour(c: &str, n: i64) -> Expr {
    when(col("pid").eq(col("pid").shift(lit(n))))
        .then(col(c).shift(lit(n)))
        .otherwise(lit(NULL))
}

/// Stage 1. In: `pid`, `ts` (Datetime ms), `eda_us`, `quality` (UInt16, the decoder's flags; 0 =
/// clean). Out, valid samples only, sorted by `pid`, `ts`: `pid`, `ts`, `eda_us`, `tonic_us`,
/// `phasic_us`, `scr` (Boolean: an SCR peaks here).
pub fn eda_features(eda: LazyFrame, rules: &StressRules) -> LazyFrame {
    let ts_ms = col("ts").cast(DataType::Int64);
    let clean = col("quality")
        .eq(lit(0u16).cast(DataType::UInt16))
        .and(col("eda_us").gt_eq(lit(rules.eda_min_us)))
        .and(col("eda_us").lt_eq(lit(rules.eda_max_us)))
        .and(col("eda_us").is_not_nan());
    let invalid_at = when(col("clean").not())
        .then(col("ts_ms"))
        .otherwise(lit(NULL).cast(DataType::Int64));
    let margin = lit(seconds_ms(rules.invalid_margin_s));
    // Time since the person's last invalid sample and until their next one.
    let near_invalid = (col("ts_ms")
        - invalid_at
            .clone()
            .fill_null_with_strategy(FillNullStrategy::Forward(None))
            .over([col("pid")]))
    .lt_eq(margin.clone())
    .fill_null(lit(false))
    .or((invalid_at
        .fill_null_with_strategy(FillNullStrategy::Backward(None))
        .over([col("pid")])
        - col("ts_ms"))
    .lt_eq(margin)
    .fill_null(lit(false)));

    let smooth = col("eda_us")
        .rolling_mean_by(
            col("ts"),
            trailing(seconds_ms(rules.smoothing_s), ClosedWindow::Both),
        )
        .over([col("pid")]);
    let tonic = col("smooth_us")
        .rolling_mean_by(
            col("ts"),
            trailing(seconds_ms(rules.tonic_window_s), ClosedWindow::Both),
        )
        .over([col("pid")]);
    let trough = col("smooth_us")
        .rolling_min_by(
            col("ts"),
            trailing(seconds_ms(rules.scr_max_rise_s), ClosedWindow::Both),
        )
        .over([col("pid")]);
    let is_peak = col("smooth_us")
        .gt(neighbour("smooth_us", 1))
        .and(col("smooth_us").gt_eq(neighbour("smooth_us", -1)))
        .fill_null(lit(false))
        .and((col("smooth_us") - col("trough_us")).gt_eq(lit(rules.scr_min_amplitude_us)))
        .and(col("phasic_us").gt(lit(0.0)));

    eda.select([col("pid"), col("ts"), col("eda_us"), col("quality")])
        .sort(["pid", "ts"], SortMultipleOptions::default())
        .with_columns([ts_ms.alias("ts_ms"), clean.alias("clean")])
        .with_column(near_invalid.alias("near_invalid"))
        .filter(col("clean").and(col("near_invalid").not()))
        .with_column(smooth.alias("smooth_us"))
        .with_columns([tonic.alias("tonic_us"), trough.alias("trough_us")])
        .with_column((col("smooth_us") - col("tonic_us")).alias("phasic_us"))
        .with_column(is_peak.alias("scr"))
        .select([
            col("pid"),
            col("ts"),
            col("eda_us"),
            col("tonic_us"),
            col("phasic_us"),
            col("scr"),
        ])
}

fn window_start(minutes: u32) -> Expr {
    col("ts")
        .dt()
        .truncate(lit(format!("{minutes}m")))
        .alias("window")
}

/// Stage 2. In: the output of [`eda_features`]; `hr`: `pid`, `ts`, `hr_bpm` (valid samples);
/// `acc`: `pid`, `ts`, `x_g`, `y_g`, `z_g` (valid samples). Out, one row per person and window with
/// EDA: `pid`, `window` (start), `valid_minutes`, `scrs` (UInt32), `mean_eda_us` (valid samples),
/// `scr_per_minute`, `mean_hr_bpm`,
/// `activity_g` (mean | |a| − 1 g |), `judged` (Boolean: enough valid EDA, heart rate and motion
/// known, at rest).
pub fn windows(
    features: LazyFrame,
    hr: LazyFrame,
    acc: LazyFrame,
    rules: &StressRules,
) -> LazyFrame {
    let samples_per_minute = rules.eda_rate_hz * 60.0;
    let expected = samples_per_minute * f64::from(rules.window_minutes);
    let eda = features
        .with_column(window_start(rules.window_minutes))
        .group_by([col("pid"), col("window")])
        .agg([
            (len().cast(DataType::Float64) / lit(samples_per_minute)).alias("valid_minutes"),
            col("scr")
                .cast(DataType::UInt32)
                .sum()
                .cast(DataType::UInt32)
                .alias("scrs"),
            col("eda_us").mean().alias("mean_eda_us"),
        ])
        .with_column(
            (col("scrs").cast(DataType::Float64) / col("valid_minutes")).alias("scr_per_minute"),
        );
    let hr = hr
        .with_column(window_start(rules.window_minutes))
        .group_by([col("pid"), col("window")])
        .agg([col("hr_bpm").mean().alias("mean_hr_bpm")]);
    let magnitude = (col("x_g").pow(2) + col("y_g").pow(2) + col("z_g").pow(2)).sqrt() - lit(1.0);
    let acc = acc
        .with_column(window_start(rules.window_minutes))
        .group_by([col("pid"), col("window")])
        .agg([magnitude.abs().mean().alias("activity_g")]);
    let keys = || [col("pid"), col("window")];
    let judged = (col("valid_minutes") * lit(samples_per_minute))
        .gt_eq(lit(expected * rules.min_valid_fraction))
        .and(col("mean_hr_bpm").is_not_null())
        .and(col("activity_g").lt_eq(lit(rules.rest_max_activity_g)))
        .fill_null(lit(false));
    eda.join(hr, keys(), keys(), JoinArgs::new(JoinType::Left))
        .join(acc, keys(), keys(), JoinArgs::new(JoinType::Left))
        .with_column(judged.alias("judged"))
        .sort(["pid", "window"], SortMultipleOptions::default())
}

/// Stage 3. In: the output of [`windows`]. Out: the same rows plus `baseline_windows` (UInt32),
/// `scr_threshold`, `hr_threshold` (null without a baseline) and `aroused` (Boolean).
pub fn aroused(windows: LazyFrame, rules: &StressRules) -> LazyFrame {
    let band = (col("window").dt().hour().cast(DataType::Int32)
        / lit(rules.hour_band_hours as i32))
    .alias("band");
    let days = trailing(
        i64::from(rules.baseline_days) * 24 * 3_600_000,
        // The window itself is not part of its own baseline.
        ClosedWindow::Left,
    );
    let by = || [col("pid"), col("band")];
    let quantile = |c: &str, q: f64| {
        col(c)
            .rolling_quantile_by(col("window"), QuantileMethod::Linear, q, days.clone())
            .over(by())
    };
    let threshold = |c: &str| {
        quantile(c, 0.5)
            + lit(rules.baseline_spread_factor) * (quantile(c, 0.75) - quantile(c, 0.25)) / lit(2.0)
    };
    let judged = windows
        .clone()
        .filter(col("judged"))
        .with_column(band)
        .sort(["pid", "band", "window"], SortMultipleOptions::default())
        .with_columns([
            col("window")
                .is_not_null()
                .cast(DataType::Float64)
                .rolling_sum_by(col("window"), days.clone())
                .over(by())
                .fill_null(lit(0.0))
                .cast(DataType::UInt32)
                .alias("baseline_windows"),
            threshold("scr_per_minute").alias("scr_threshold"),
            threshold("mean_hr_bpm").alias("hr_threshold"),
        ])
        .with_column(
            col("baseline_windows")
                .gt_eq(lit(rules.baseline_min_windows))
                .and(col("scr_per_minute").gt(col("scr_threshold")))
                .and(col("mean_hr_bpm").gt(col("hr_threshold")))
                .fill_null(lit(false))
                .alias("aroused"),
        )
        .select([
            col("pid"),
            col("window"),
            col("baseline_windows"),
            col("scr_threshold"),
            col("hr_threshold"),
            col("aroused"),
        ]);
    let keys = || [col("pid"), col("window")];
    windows
        .join(judged, keys(), keys(), JoinArgs::new(JoinType::Left))
        .with_columns([
            col("aroused").fill_null(lit(false)),
            col("baseline_windows").fill_null(lit(0u32).cast(DataType::UInt32)),
        ])
        .sort(["pid", "window"], SortMultipleOptions::default())
}

/// Stage 4. In: the output of [`aroused`]. Out, one row per episode: `pid`, `start`, `end` (the end
/// of its last window), `aroused_windows` (UInt32), `aroused_minutes` (Float64).
pub fn episodes(aroused: LazyFrame, rules: &StressRules) -> LazyFrame {
    let window_ms = i64::from(rules.window_minutes) * 60_000;
    let gap_ms = col("ts_ms") - (neighbour("ts_ms", 1) + lit(window_ms));
    let starts_episode = gap_ms
        .gt_eq(lit((rules.merge_gap_minutes * MS_PER_MINUTE) as i64))
        .fill_null(lit(true));
    aroused
        .filter(col("aroused"))
        .select([col("pid"), col("window")])
        .sort(["pid", "window"], SortMultipleOptions::default())
        .with_column(col("window").cast(DataType::Int64).alias("ts_ms"))
        .with_column(
            starts_episode
                .cast(DataType::UInt32)
                .cum_sum(false)
                .alias("episode"),
        )
        .group_by([col("pid"), col("episode")])
        .agg([
            col("window").min().alias("start"),
            col("window").max().alias("last"),
            len().cast(DataType::UInt32).alias("aroused_windows"),
        ])
        .with_column(
            (col("last") + lit(window_ms).cast(DataType::Duration(TimeUnit::Milliseconds)))
                .alias("end"),
        )
        .with_column(
            (col("aroused_windows").cast(DataType::Float64) * lit(f64::from(rules.window_minutes)))
                .alias("aroused_minutes"),
        )
        .filter(
            (col("end").cast(DataType::Int64) - col("start").cast(DataType::Int64))
                .gt_eq(lit((rules.min_episode_minutes * MS_PER_MINUTE) as i64)),
        )
        .select([
            col("pid"),
            col("start"),
            col("end"),
            col("aroused_windows"),
            col("aroused_minutes"),
        ])
        .sort(["pid", "start"], SortMultipleOptions::default())
}

/// Stages 1–4 together. In: as [`eda_features`] and [`windows`]. Out: (windows with `aroused`,
/// episodes).
///
/// Collects between stages: one plan of all four is deep enough to overflow a 2 MiB thread stack
/// in polars' optimiser (unoptimised builds), and the windows are needed twice anyway.
pub fn evaluate(
    eda: LazyFrame,
    hr: LazyFrame,
    acc: LazyFrame,
    rules: &StressRules,
) -> PolarsResult<(DataFrame, DataFrame)> {
    let features = eda_features(eda, rules).collect()?;
    let windows = windows(features.lazy(), hr, acc, rules).collect()?;
    let judged = aroused(windows.lazy(), rules).collect()?;
    let episodes = episodes(judged.clone().lazy(), rules).collect()?;
    Ok((judged, episodes))
}

#[cfg(test)]
mod tests;
