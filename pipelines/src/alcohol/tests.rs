use super::*;

const HALF_HOUR_MS: i64 = 1_800_000;
const T0: i64 = 1_700_006_400_000;

/// Readings every 30 minutes for one person, with the TAC values given.
fn readings(pid: &str, tac: &[f64]) -> LazyFrame {
    let n = tac.len();
    let ts: Vec<i64> = (0..n as i64).map(|i| T0 + i * HALF_HOUR_MS).collect();
    let bundles: Vec<String> = (0..n).map(|i| format!("b{}", i / 4)).collect();
    df!(
        "pid" => vec![pid; n],
        "ts" => ts,
        "tac_g_dl" => tac,
        "bundle_id" => bundles,
    )
    .unwrap()
    .lazy()
    .with_column(col("ts").cast(DataType::Datetime(
        TimeUnit::Milliseconds,
        Some(TimeZone::UTC),
    )))
}

fn events(lf: LazyFrame) -> DataFrame {
    drinking_events(lf, &AlcoholRules::default())
        .collect()
        .unwrap()
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
