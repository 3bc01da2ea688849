use super::*;
use crate::alcohol::drinking_events;
use crate::stress;
use crate::tamper::ankle_tamper;
use crate::TamperRules;

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
        "ambient_g_dl" => vec![0.0; n],
        "skin_temp_c" => vec![33.0; n],
        "ir" => vec![1.0; n],
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
    let events = crate::alcohol::decided(
        drinking_events(readings.clone(), &rules, T0 + 48 * HALF_HOUR_MS).unwrap(),
    );
    let tamper = ankle_tamper(readings.clone(), &TamperRules::default());
    let df = ankle_daily(readings, events, tamper, &rules)
        .collect()
        .unwrap();
    assert_eq!(df.height(), 1);
    // The strap was open for the first two readings: one strap-open event.
    assert_eq!(
        df.column("tamper_events").unwrap().i64().unwrap().get(0),
        Some(1)
    );
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
fn wristband_day_counts_valid_minutes_scrs_and_episodes() {
    use crate::synth::{Span, Wristband};
    // Two afternoons; on the second, 40 minutes of stress at rest and the first minute of EDA
    // lost to a dropout (flagged by the decoder).
    let noon = T0 + 12 * 3_600_000;
    let w = Wristband {
        pid: "w1".into(),
        t0_ms: noon,
        worn: vec![Span::new(0.0, 360.0), Span::new(1440.0, 360.0)],
        stress: vec![Span::new(1440.0 + 120.0, 40.0)],
        exercise: vec![],
        dropouts: vec![Span::new(1440.0, 1.0)],
        acc_hz: 4.0,
        seed: 3,
    };
    let f = w.frames().unwrap();
    let rules = StressRules::default();
    let (windows, episodes) = stress::evaluate(f.eda, f.hr.clone(), f.acc, &rules).unwrap();
    let df = wristband_daily(windows.lazy(), episodes.lazy(), f.hr, &rules)
        .sort(["day"], SortMultipleOptions::default())
        .collect()
        .unwrap();
    assert_eq!(df.height(), 2, "{df}");
    let int = |c: &str| -> Vec<Option<i64>> {
        df.column(c).unwrap().i64().unwrap().into_iter().collect()
    };
    assert_eq!(int("stress_episodes"), vec![Some(0), Some(1)], "{df}");
    assert_eq!(int("wear_minutes"), vec![Some(360), Some(360)]);
    // Day 2 loses the dropout minute plus 5 s either side.
    let valid = int("valid_eda_minutes");
    assert_eq!(valid[0], Some(360));
    assert_eq!(valid[1], Some(358), "{df}");
    let aroused = int("minutes_aroused");
    assert_eq!(aroused[0], Some(0));
    assert!((30..=44).contains(&aroused[1].unwrap()), "{df}");
    let scr: Vec<f64> = df
        .column("scr_per_minute")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert!(scr[0] > 0.5 && scr[1] > scr[0], "{df}");
}

#[test]
fn combined_days_keep_nulls_for_absent_devices_and_research_shape_drops_pid() {
    let readings = ankle("p1", &[0.0; 48], &[true; 48]);
    let rules = AlcoholRules::default();
    let events = crate::alcohol::decided(
        drinking_events(readings.clone(), &rules, T0 + 48 * HALF_HOUR_MS).unwrap(),
    );
    let tamper = ankle_tamper(readings.clone(), &TamperRules::default());
    let daily = combine(vec![ankle_daily(readings, events, tamper, &rules)]).unwrap();
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
