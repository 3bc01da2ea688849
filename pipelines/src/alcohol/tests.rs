use super::*;

const HALF_HOUR_MS: i64 = 1_800_000;
const T0: i64 = 1_700_006_400_000;

/// Readings every 30 minutes for one person, with the TAC values given and no ambient alcohol.
fn readings(pid: &str, tac: &[f64]) -> LazyFrame {
    with_ambient(pid, tac, &vec![0.0; tac.len()])
}

fn with_ambient(pid: &str, tac: &[f64], ambient: &[f64]) -> LazyFrame {
    let n = tac.len();
    let ts: Vec<i64> = (0..n as i64).map(|i| T0 + i * HALF_HOUR_MS).collect();
    let bundles: Vec<String> = (0..n).map(|i| format!("b{}", i / 4)).collect();
    df!(
        "pid" => vec![pid; n],
        "ts" => ts,
        "tac_g_dl" => tac,
        "ambient_g_dl" => ambient,
        "bundle_id" => bundles,
    )
    .unwrap()
    .lazy()
    .with_column(col("ts").cast(DataType::Datetime(
        TimeUnit::Milliseconds,
        Some(TimeZone::UTC),
    )))
}

/// Long after every test's readings: open episodes are judged as silent.
const LATER: i64 = T0 + 1_000 * HALF_HOUR_MS;

fn events(lf: LazyFrame) -> DataFrame {
    events_with(lf, &AlcoholRules::default(), T0)
}

fn events_with(lf: LazyFrame, rules: &AlcoholRules, as_of_ms: i64) -> DataFrame {
    drinking_events(lf, rules, as_of_ms)
        .unwrap()
        .collect()
        .unwrap()
}

fn strs(df: &DataFrame, c: &str) -> Vec<Option<String>> {
    df.column(c)
        .unwrap()
        .str()
        .unwrap()
        .into_iter()
        .map(|v| v.map(String::from))
        .collect()
}

fn kinds(df: &DataFrame) -> Vec<String> {
    df.column("kind")
        .unwrap()
        .str()
        .unwrap()
        .into_no_null_iter()
        .map(String::from)
        .collect()
}

#[test]
fn a_slow_rise_and_fall_above_threshold_is_one_drinking_event() {
    // Rise 0.01 per half hour (0.02/h), fall 0.005 per half hour (0.01/h).
    let tac = [
        0.0, 0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.045, 0.04, 0.035, 0.03, 0.025, 0.02, 0.015, 0.0,
        0.0,
    ];
    let df = events(readings("p1", &tac));
    assert_eq!(df.height(), 1, "{df}");
    assert_eq!(kinds(&df), vec![KIND_DRINKING]);
    let peak = df
        .column("peak_tac_g_dl")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!((peak - 0.05).abs() < 1e-12);
    // Readings above 0.02: 0.03 .. 0.025 = 8 readings.
    assert_eq!(
        df.column("readings").unwrap().u32().unwrap().get(0),
        Some(8)
    );
    let bundles = df
        .column("bundle_ids")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(bundles, "b1,b2");
}

#[test]
fn a_fast_spike_is_an_interferent_not_drinking() {
    // Jump from 0 to 0.08 in half an hour (0.16/h) and back: hand gel, not drinking.
    let df = events(readings("p1", &[0.0, 0.0, 0.08, 0.07, 0.0, 0.0]));
    assert_eq!(kinds(&df), vec![KIND_INTERFERENT]);
    assert_eq!(strs(&df, "reason"), vec![Some("rise-too-fast".into())]);
    assert_eq!(strs(&df, "state"), vec![Some("final".into())]);
    // The evidence is the pair of readings that shows it: 0.0 at 00:30 to 0.08 at 01:00.
    let from = df
        .column("evidence_from")
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap();
    let to = df
        .column("evidence_to")
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap();
    assert_eq!(from.i64().unwrap().get(0), Some(T0 + HALF_HOUR_MS));
    assert_eq!(to.i64().unwrap().get(0), Some(T0 + 2 * HALF_HOUR_MS));
}

#[test]
fn one_noisy_step_on_a_slow_elimination_does_not_make_drinking_an_interferent() {
    // Elimination at 0.015/h (0.0075 per half hour) with one reading 0.006 high and the next
    // 0.006 low: that single step falls 0.0195 in half an hour (0.039/h, above the 0.025/h limit),
    // but the curve as a whole falls at drinking's pace.
    let tac = [
        0.0,
        0.015,
        0.03,
        0.045,
        0.06,
        0.0525,
        0.045 + 0.006,
        0.0375 - 0.006,
        0.03,
        0.0225,
        0.015,
        0.0075,
        0.0,
    ];
    let df = events(readings("p1", &tac));
    assert_eq!(kinds(&df), vec![KIND_DRINKING], "{df}");
    let fall = df
        .column("mean_fall_per_hour")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!((fall - 0.015).abs() < 0.002, "mean fall {fall}");
}

#[test]
fn a_change_of_exactly_the_limit_is_within_it() {
    // No noise allowance: the limits alone. A fall of exactly 0.025 g/dL per hour, in half-hour
    // steps of 0.0125, is within the limit; 1 µg/dL more in one step is not.
    let rules = AlcoholRules {
        noise_allowance_g_dl: 0.0,
        noise_allowance_percent: 0,
        ..AlcoholRules::default()
    };
    let exact = [0.0, 0.02, 0.04, 0.0575, 0.045, 0.0325, 0.02, 0.0075];
    let df = events_with(readings("p1", &exact), &rules, T0);
    assert_eq!(kinds(&df), vec![KIND_DRINKING], "{df}");
    let mut over = exact;
    over[4] = 0.044999;
    let df = events_with(readings("p1", &over), &rules, T0);
    assert_eq!(kinds(&df), vec![KIND_INTERFERENT], "{df}");
    assert_eq!(strs(&df, "reason"), vec![Some("fall-too-fast".into())]);
}

#[test]
fn ambient_alcohol_during_an_episode_makes_it_an_exposure_not_drinking() {
    let tac = [0.0, 0.01, 0.022, 0.03, 0.035, 0.03, 0.025, 0.015];
    let mut ambient = [0.0005; 8];
    let df = events(with_ambient("p1", &tac, &ambient));
    assert_eq!(kinds(&df), vec![KIND_DRINKING]);
    ambient[3] = 0.01;
    let df = events(with_ambient("p1", &tac, &ambient));
    assert_eq!(kinds(&df), vec![KIND_INTERFERENT]);
    assert_eq!(strs(&df, "reason"), vec![Some("ambient-alcohol".into())]);
}

#[test]
fn an_episode_open_at_the_last_reading_is_pending_until_long_or_silent() {
    // Still rising at the last reading: the fall is unknown, so no verdict yet.
    let tac = [0.0, 0.01, 0.022, 0.03, 0.04];
    let last = T0 + 4 * HALF_HOUR_MS;
    let df = events_with(readings("p1", &tac), &AlcoholRules::default(), last);
    assert_eq!(strs(&df, "state"), vec![Some("pending".into())], "{df}");
    // Twelve hours without a reading: provisional.
    let df = events_with(
        readings("p1", &tac),
        &AlcoholRules::default(),
        last + 12 * 2 * HALF_HOUR_MS,
    );
    assert_eq!(strs(&df, "state"), vec![Some("provisional".into())], "{df}");
    // Above the threshold for twelve hours of readings: provisional while data still comes.
    let mut long = vec![0.0];
    long.extend(std::iter::repeat_n(0.05, 25));
    let last = T0 + 25 * HALF_HOUR_MS;
    let df = events_with(readings("p1", &long), &AlcoholRules::default(), last);
    assert_eq!(strs(&df, "state"), vec![Some("provisional".into())], "{df}");
    // The reading after it arrives: final.
    long.push(0.045);
    long.push(0.0);
    let df = events_with(readings("p1", &long), &AlcoholRules::default(), LATER);
    assert_eq!(strs(&df, "state"), vec![Some("final".into())], "{df}");
}

#[test]
fn a_final_episode_is_the_same_whatever_the_frame_around_it() {
    let tac = [
        0.0, 0.0, 0.01, 0.025, 0.04, 0.05, 0.045, 0.04, 0.035, 0.03, 0.025, 0.02, 0.01, 0.0, 0.0,
        0.0, 0.06, 0.0, 0.0,
    ];
    let full = events_with(readings("p1", &tac), &AlcoholRules::default(), LATER);
    // Frames that start before the episode's shape and end anywhere after it.
    for first in 0..2 {
        for last in 14..tac.len() {
            let part = readings("p1", &tac).slice(first as i64, (last - first) as u32);
            let df = events_with(part, &AlcoholRules::default(), LATER);
            let (a, b) = (df.slice(0, 1), full.slice(0, 1));
            for (x, y) in a.get_columns().iter().zip(b.get_columns()) {
                assert!(x.equals_missing(y), "{x:?} against {y:?}");
            }
            assert!(
                a.equals_missing(&b),
                "frame {first}..{last}: {df} against {full}"
            );
        }
    }
}

#[test]
fn a_gap_longer_than_allowed_ends_an_episode_and_hides_the_change_across_it() {
    // Readings above the threshold, then three hours without readings, then a drop to zero: the
    // drop across the gap is not observed, so it cannot make the episode an interferent.
    let n = 10;
    let ts: Vec<i64> = (0..n as i64)
        .map(|i| T0 + i * HALF_HOUR_MS + if i >= 8 { 6 * HALF_HOUR_MS } else { 0 })
        .collect();
    let tac = [0.0, 0.01, 0.025, 0.04, 0.05, 0.05, 0.05, 0.05, 0.0, 0.0];
    let lf = df!(
        "pid" => vec!["p1"; n],
        "ts" => ts,
        "tac_g_dl" => tac,
        "ambient_g_dl" => vec![0.0; n],
        "bundle_id" => vec!["b"; n],
    )
    .unwrap()
    .lazy()
    .with_column(col("ts").cast(DataType::Datetime(
        TimeUnit::Milliseconds,
        Some(TimeZone::UTC),
    )));
    let df = events_with(lf, &AlcoholRules::default(), LATER);
    assert_eq!(kinds(&df), vec![KIND_DRINKING], "{df}");
    assert_eq!(strs(&df, "state"), vec![Some("final".into())]);
    assert!(df
        .column("mean_fall_per_hour")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .is_none());
}

#[test]
fn too_few_readings_above_threshold_is_no_event() {
    let df = events(readings("p1", &[0.0, 0.015, 0.025, 0.03, 0.02, 0.01]));
    assert_eq!(df.height(), 0, "{df}");
}

#[test]
fn runs_are_per_person_and_readings_of_others_do_not_join_them() {
    let slow = [0.0, 0.01, 0.022, 0.03, 0.035, 0.03, 0.025, 0.015];
    let both = concat(
        [readings("p1", &slow), readings("p2", &slow)],
        UnionArgs::default(),
    )
    .unwrap();
    let df = events(both);
    assert_eq!(df.height(), 2, "{df}");
    let pids: Vec<&str> = df
        .column("pid")
        .unwrap()
        .str()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(pids, vec!["p1", "p2"]);
}
