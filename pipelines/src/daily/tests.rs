use super::*;
use crate::alcohol::drinking_events;

const T0: i64 = 1_700_006_400_000; // 2023-11-15 00:00 UTC
const HALF_HOUR_MS: i64 = 1_800_000;

fn utc(lf: LazyFrame) -> LazyFrame {
    lf.with_column(col("ts").cast(DataType::Datetime(
        TimeUnit::Milliseconds,
        Some(TimeZone::UTC),
    )))
}

fn ankle(pid: &str, tac: &[f64], strap: &[bool]) -> LazyFrame {
    let n = tac.len();
    utc(df!(
        "pid" => vec![pid; n],
        "ts" => (0..n as i64).map(|i| T0 + i * HALF_HOUR_MS).collect::<Vec<_>>(),
        "tac_g_dl" => tac,
        "skin_temp_c" => vec![33.0; n],
        "strap_closed" => strap,
        "bundle_id" => vec!["b"; n],
    )
    .unwrap()
    .lazy())
}

#[test]
fn ankle_day_counts_worn_minutes_peak_and_drinking_events() {
    let mut tac = vec![0.0; 48];
    for (i, v) in [0.01, 0.025, 0.035, 0.045, 0.04, 0.035, 0.03, 0.025, 0.018]
        .iter()
        .enumerate()
    {
        tac[20 + i] = *v;
    }
    let mut strap = vec![true; 48];
    strap[0] = false;
    strap[1] = false;
    let readings = ankle("p1", &tac, &strap);
    let rules = AlcoholRules::default();
    let events = drinking_events(readings.clone(), &rules);
    let df = ankle_daily(readings, events, &rules).collect().unwrap();
    assert_eq!(df.height(), 1);
    assert_eq!(
        df.column("wear_minutes").unwrap().i64().unwrap().get(0),
        Some(46 * 30)
    );
    assert_eq!(
        df.column("drinking_events").unwrap().i64().unwrap().get(0),
        Some(1)
    );
    let peak = df
        .column("peak_tac_g_dl")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!((peak - 0.045).abs() < 1e-12);
}

#[test]
fn wristband_day_masks_invalid_eda() {
    let n = 240 * 2; // two minutes at 4 Hz
    let eda: Vec<f64> = (0..n).map(|i| if i < 240 { 2.0 } else { 0.0 }).collect();
    let ts: Vec<i64> = (0..n as i64).map(|i| T0 + i * 250).collect();
    let eda = utc(df!("pid" => vec!["w1"; n], "ts" => ts, "eda_us" => eda)
        .unwrap()
        .lazy());
    let hr = utc(
        df!("pid" => vec!["w1"; 3], "ts" => [T0, T0 + 1000, T0 + 2000], "hr_bpm" => [60.0, 70.0, 80.0])
            .unwrap()
            .lazy(),
    );
    let df = wristband_daily(eda, hr).collect().unwrap();
    assert_eq!(df.height(), 1, "{df}");
    assert_eq!(
        df.column("valid_eda_minutes")
            .unwrap()
            .i64()
            .unwrap()
            .get(0),
        Some(1)
    );
    assert_eq!(
        df.column("mean_eda_us").unwrap().f64().unwrap().get(0),
        Some(2.0)
    );
    assert_eq!(
        df.column("mean_hr_bpm").unwrap().f64().unwrap().get(0),
        Some(70.0)
    );
}

#[test]
fn combined_days_keep_nulls_for_absent_devices_and_research_shape_drops_pid() {
    let readings = ankle("p1", &[0.0; 48], &[true; 48]);
    let rules = AlcoholRules::default();
    let events = drinking_events(readings.clone(), &rules);
    let daily = combine(vec![ankle_daily(readings, events, &rules)]).unwrap();
    let df = daily.clone().collect().unwrap();
    assert_eq!(df.height(), 1);
    assert_eq!(df.column("mean_hr_bpm").unwrap().null_count(), 1);

    let persons = df!(
        "pid" => ["p1"],
        "rid" => ["r-abc"],
        "programme" => ["alcohol-ban"],
        "region" => ["utrecht"],
        "age_band" => [age_band(Some(31))]
    )
    .unwrap()
    .lazy();
    let research = for_research(daily, persons).collect().unwrap();
    let names: Vec<&str> = research
        .get_column_names()
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert!(!names.contains(&"pid"), "{names:?}");
    assert!(names.contains(&"rid") && names.contains(&"programme"));
    assert_eq!(
        research.column("age_band").unwrap().str().unwrap().get(0),
        Some("25-34")
    );
    assert_eq!(
        research.column("region").unwrap().str().unwrap().get(0),
        Some("utrecht")
    );
}

#[test]
fn age_bands_are_coarse() {
    assert_eq!(age_band(None), "unknown");
    assert_eq!(age_band(Some(15)), "12-17");
    assert_eq!(age_band(Some(18)), "18-24");
    assert_eq!(age_band(Some(49)), "35-49");
    assert_eq!(age_band(Some(70)), "50+");
}
