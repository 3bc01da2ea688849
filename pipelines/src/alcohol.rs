//! Drinking events from ankle-monitor readings.
//!
//! An *episode* is a stretch of one person's readings above the TAC threshold with no gap longer
//! than `max_reading_gap_minutes` between them. Its *shape* is those readings plus the reading just
//! before and just after it (when they are neighbours, not across a gap). An episode is judged on
//! its shape as a whole:
//!
//! * **Ambient alcohol.** If the ambient-air channel reads at least `ambient_exposure_g_dl` at any
//!   reading of the shape, the sensor may be reading the air: an *interferent* (exposure).
//! * **Rise and fall over every span.** Between every two readings of the shape, TAC may rise at
//!   most `max_rise_per_hour` and fall at most `max_elimination_per_hour` times the time between
//!   them, plus an allowance for measurement noise (`noise_allowance_g_dl` plus
//!   `noise_allowance_percent` of the higher reading). A change beyond that is faster than drinking
//!   can produce: an *interferent*. Judging every span, with the allowance, means one noisy reading
//!   on a long elimination curve does not turn a drinking episode into an interferent, while a
//!   spike (a jump far beyond the allowance within half an hour) is still one.
//! * Otherwise an episode of at least `min_consecutive_readings` readings is *drinking*; a shorter
//!   one is no event.
//!
//! All of it runs in whole µg/dL and milliseconds ([`AlcoholRules::limits`]), so a change of
//! exactly the limit is within it.
//!
//! **State.** An episode still above the threshold at the person's last reading has no known end:
//! it is *pending* and must not raise an alert yet. Once it has lasted `pending_hours`, or no
//! reading has come for `pending_hours` before `as_of_ms`, it is *provisional* (alerted, marked as
//! such); otherwise it is *final*. A final episode depends only on its own shape, so it comes out
//! the same however the readings are cut into frames, as long as the frame holds the whole shape
//! (see `opens_frame`).
//!
//! In: `pid`, `ts`, `tac_g_dl`, `ambient_g_dl`, `bundle_id` (the bundle each reading came in).
//! Out: one row per episode that is an event or pending: `pid`, `kind` ("drinking" |
//! "interferent"), `state` ("final" | "provisional" | "pending"), `reason` (null for drinking;
//! "ambient-alcohol" | "rise-too-fast" | "fall-too-fast"), `start`, `end`, `peak_tac_g_dl`,
//! `readings`, `mean_rise_per_hour` and `mean_fall_per_hour` (peak against the reading before and
//! after; null when not observed), `evidence_from` and `evidence_to` (the two readings that show
//! the reason; null for drinking), `opens_frame` (the episode starts at the person's first reading
//! in the frame: its rise may lie before the frame), `bundle_ids` (comma-separated, in order).

use polars::prelude::*;

use crate::AlcoholRules;

pub const KIND_DRINKING: &str = "drinking";
pub const KIND_INTERFERENT: &str = "interferent";

/// What is known about an episode's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EpisodeState {
    /// The reading after the episode is in: the shape is known.
    Final,
    /// Still open at the last reading, but long or silent enough to be alerted as provisional.
    Provisional,
    /// Still open at the last reading: no alert yet.
    Pending,
}

impl EpisodeState {
    pub const ALL: [EpisodeState; 3] = [Self::Final, Self::Provisional, Self::Pending];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Final => "final",
            Self::Provisional => "provisional",
            Self::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Why an episode is an interferent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InterferentReason {
    AmbientAlcohol,
    RiseTooFast,
    FallTooFast,
}

impl InterferentReason {
    pub const ALL: [InterferentReason; 3] =
        [Self::AmbientAlcohol, Self::RiseTooFast, Self::FallTooFast];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AmbientAlcohol => "ambient-alcohol",
            Self::RiseTooFast => "rise-too-fast",
            Self::FallTooFast => "fall-too-fast",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

const MS_PER_HOUR: i64 = 3_600_000;
const UG_PER_G: f64 = crate::rules::UG_PER_G;

/// The same person's value of `c` in the row `n` before (negative: after); null across persons.
/// Rows are sorted by person and time. Shifts with that mask replace window expressions (which
/// polars refuses to carry into aggregations) and are cheaper.
fn neighbour(c: &str, n: i64) -> Expr {
    when(col("pid").eq(col("pid").shift(lit(n))))
        .then(col(c).shift(lit(n)))
        .otherwise(lit(NULL))
}

fn ug(c: &str) -> Expr {
    (col(c) * lit(UG_PER_G))
        .round(0, RoundMode::HalfToEven)
        .cast(DataType::Int64)
}

/// The episodes in `readings` as of `as_of_ms` (see the module documentation). The prepared
/// readings are collected once here: the episode plan reads them five times, and one shared
/// in-memory frame keeps that plan shallow and each read cheap.
pub fn drinking_events(
    readings: LazyFrame,
    rules: &AlcoholRules,
    as_of_ms: i64,
) -> PolarsResult<LazyFrame> {
    let l = rules.limits();
    let base = readings
        .select([
            col("pid"),
            col("ts"),
            col("tac_g_dl"),
            col("ambient_g_dl"),
            col("bundle_id"),
        ])
        .sort(["pid", "ts"], SortMultipleOptions::default())
        .with_columns([
            col("ts").cast(DataType::Int64).alias("ts_ms"),
            ug("tac_g_dl").alias("tac_ug"),
            ug("ambient_g_dl").fill_null(lit(0i64)).alias("amb_ug"),
        ])
        .with_columns([
            col("tac_ug").gt(lit(l.threshold_ug)).alias("above"),
            neighbour("ts_ms", 1).alias("prev_ts"),
            neighbour("ts_ms", -1).alias("next_ts"),
        ])
        .with_columns([
            (col("ts_ms") - col("prev_ts"))
                .lt_eq(lit(l.max_reading_gap_ms))
                .fill_null(lit(false))
                .alias("joined_prev"),
            (col("next_ts") - col("ts_ms"))
                .lt_eq(lit(l.max_reading_gap_ms))
                .fill_null(lit(false))
                .alias("joined_next"),
            neighbour("above", 1)
                .fill_null(lit(false))
                .alias("prev_above"),
            neighbour("above", -1)
                .fill_null(lit(false))
                .alias("next_above"),
        ])
        .with_column(
            // Run numbers are global; with `pid` they identify one person's episode.
            col("above")
                .and(col("joined_prev").and(col("prev_above")).not())
                .cast(DataType::UInt32)
                .cum_sum(false)
                .alias("run"),
        )
        .with_column(neighbour("run", -1).alias("next_run"))
        .collect()?
        .lazy();

    let shape_cols = |run: Expr| {
        [
            col("pid"),
            run.alias("run"),
            col("ts_ms"),
            col("tac_ug"),
            col("amb_ug"),
        ]
    };
    // The reading just after an episode belongs to that episode's run number (the count only
    // grows where a run starts); the reading just before belongs to the next row's run.
    let after = base
        .clone()
        .filter(
            col("above")
                .not()
                .and(col("prev_above"))
                .and(col("joined_prev")),
        )
        .select(shape_cols(col("run")));
    let before = base
        .clone()
        .filter(
            col("above")
                .not()
                .and(col("next_above"))
                .and(col("joined_next")),
        )
        .select(shape_cols(col("next_run")));
    let inside = base.clone().filter(col("above"));
    let shape = concat(
        [
            inside.clone().select(shape_cols(col("run"))),
            before.clone(),
            after.clone(),
        ],
        UnionArgs::default(),
    )
    .expect("same schema");

    let spans = span_verdicts(shape.clone(), &l);
    let ambient = shape
        .group_by([col("pid"), col("run")])
        .agg([col("amb_ug").max().alias("ambient_max_ug")]);
    let edge = |lf: LazyFrame, name: &str| {
        lf.select([
            col("pid"),
            col("run"),
            col("ts_ms").alias(format!("{name}_ts").as_str()),
            col("tac_ug").alias(format!("{name}_ug").as_str()),
        ])
    };

    let episodes = inside.group_by([col("pid"), col("run")]).agg([
        col("ts").min().alias("start"),
        col("ts").max().alias("end"),
        col("ts_ms").min().alias("start_ms"),
        col("ts_ms").max().alias("end_ms"),
        col("tac_ug").max().alias("peak_ug"),
        // The peak as measured (not recomputed from µg/dL, which could differ in the last bit).
        col("tac_g_dl")
            .get(col("tac_ug").arg_max())
            .alias("peak_tac_g_dl"),
        col("ts_ms").get(col("tac_ug").arg_max()).alias("peak_ts"),
        len().cast(DataType::UInt32).alias("readings"),
        col("prev_ts").first().is_null().alias("opens_frame"),
        col("next_ts").last().is_null().alias("open_at_end"),
        col("bundle_id")
            .unique_stable()
            .str()
            .join(",", true)
            .alias("bundle_ids"),
    ]);
    let on = [col("pid"), col("run")];
    let left = || JoinArgs::new(JoinType::Left);
    let joined = episodes
        .join(spans, on.clone(), on.clone(), left())
        .join(ambient, on.clone(), on.clone(), left())
        .join(edge(before, "before"), on.clone(), on.clone(), left())
        .join(edge(after, "after"), on.clone(), on, left());

    let per_hour = |num: Expr, den: Expr| {
        (num.cast(DataType::Float64) / lit(UG_PER_G))
            / (den.cast(DataType::Float64) / lit(MS_PER_HOUR as f64))
    };
    let ambient_hit = col("ambient_max_ug")
        .gt_eq(lit(l.ambient_exposure_ug))
        .fill_null(lit(false));
    let rise_fast = col("rise_excess").gt(lit(0i64)).fill_null(lit(false));
    let fall_fast = col("fall_excess").gt(lit(0i64)).fill_null(lit(false));
    let reason = when(ambient_hit.clone())
        .then(lit(InterferentReason::AmbientAlcohol.as_str()))
        .when(rise_fast.clone())
        .then(lit(InterferentReason::RiseTooFast.as_str()))
        .when(fall_fast.clone())
        .then(lit(InterferentReason::FallTooFast.as_str()))
        .otherwise(lit(NULL).cast(DataType::String));
    let evidence = |rise: Expr, fall: Expr| {
        when(ambient_hit.clone())
            .then(lit(NULL).cast(DataType::Int64))
            .when(rise_fast.clone())
            .then(rise)
            .when(fall_fast.clone())
            .then(fall)
            .otherwise(lit(NULL).cast(DataType::Int64))
    };
    let utc = DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC));
    let qualifies = col("kind")
        .eq(lit(KIND_INTERFERENT))
        .or(col("readings").gt_eq(lit(l.min_consecutive_readings)));
    let long_or_silent = (col("end_ms") - col("start_ms"))
        .gt_eq(lit(l.pending_ms))
        .or((lit(as_of_ms) - col("end_ms")).gt_eq(lit(l.pending_ms)));
    let state = when(col("open_at_end").not())
        .then(lit(EpisodeState::Final.as_str()))
        .when(long_or_silent.and(qualifies.clone()))
        .then(lit(EpisodeState::Provisional.as_str()))
        .otherwise(lit(EpisodeState::Pending.as_str()));

    Ok(joined
        .with_column(reason.alias("reason"))
        .with_columns([
            when(col("reason").is_null())
                .then(lit(KIND_DRINKING))
                .otherwise(lit(KIND_INTERFERENT))
                .alias("kind"),
            evidence(col("rise_from"), col("fall_from"))
                .cast(utc.clone())
                .alias("evidence_from"),
            evidence(col("rise_to"), col("fall_to"))
                .cast(utc)
                .alias("evidence_to"),
            per_hour(
                col("peak_ug") - col("before_ug"),
                col("peak_ts") - col("before_ts"),
            )
            .alias("mean_rise_per_hour"),
            per_hour(
                col("peak_ug") - col("after_ug"),
                col("after_ts") - col("peak_ts"),
            )
            .alias("mean_fall_per_hour"),
        ])
        .with_column(state.alias("state"))
        .filter(qualifies.or(col("state").eq(lit(EpisodeState::Pending.as_str()))))
        .select([
            col("pid"),
            col("kind"),
            col("state"),
            col("reason"),
            col("start"),
            col("end"),
            col("peak_tac_g_dl"),
            col("readings"),
            col("mean_rise_per_hour"),
            col("mean_fall_per_hour"),
            col("evidence_from"),
            col("evidence_to"),
            col("opens_frame"),
            col("bundle_ids"),
        ])
        .sort(["pid", "start"], SortMultipleOptions::default()))
}

/// The episodes of [`drinking_events`] that have a verdict (final or provisional): what counts as
/// an event, for alerts and the daily indicators alike.
pub fn decided(events: LazyFrame) -> LazyFrame {
    events.filter(col("state").neq(lit(EpisodeState::Pending.as_str())))
}

/// For each episode (`pid`, `run`), the rise and the fall that most exceed their limits over any
/// two readings of its shape: `rise_excess` and `fall_excess` (positive: too fast; in µg/dL·ms per
/// hour, exact integers) with the readings that show it (`rise_from`/`rise_to`,
/// `fall_from`/`fall_to`, epoch ms). An episode of one reading and no neighbours has none.
fn span_verdicts(shape: LazyFrame, l: &crate::rules::AlcoholLimits) -> LazyFrame {
    let later = shape.clone().select([
        col("pid"),
        col("run"),
        col("ts_ms").alias("ts_j"),
        col("tac_ug").alias("tac_j"),
    ]);
    let hour = lit(MS_PER_HOUR);
    let dt = col("ts_j") - col("ts_ms");
    // Noise allowance for this pair: fixed part plus a share of the higher reading (floor).
    let higher = when(col("tac_j").gt(col("tac_ug")))
        .then(col("tac_j"))
        .otherwise(col("tac_ug"));
    let allowance = lit(l.noise_allowance_ug)
        + (higher * lit(l.noise_allowance_percent)).floor_div(lit(100i64));
    // Too fast when change·h > limit·dt + allowance·h, all in integers.
    let rise_excess = (col("tac_j") - col("tac_ug")) * hour.clone()
        - lit(l.max_rise_ug_per_hour) * dt.clone()
        - allowance.clone() * hour.clone();
    let fall_excess = (col("tac_ug") - col("tac_j")) * hour.clone()
        - lit(l.max_fall_ug_per_hour) * dt
        - allowance * hour;
    let worst = |excess: &str, c: &str| col(c).get(col(excess).arg_max());
    shape
        .join(
            later,
            [col("pid"), col("run")],
            [col("pid"), col("run")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col("ts_j").gt(col("ts_ms")))
        .with_columns([
            rise_excess.alias("rise_excess"),
            fall_excess.alias("fall_excess"),
        ])
        .group_by([col("pid"), col("run")])
        .agg([
            col("rise_excess").max(),
            col("fall_excess").max(),
            worst("rise_excess", "ts_ms").alias("rise_from"),
            worst("rise_excess", "ts_j").alias("rise_to"),
            worst("fall_excess", "ts_ms").alias("fall_from"),
            worst("fall_excess", "ts_j").alias("fall_to"),
        ])
}

#[cfg(test)]
mod tests;
