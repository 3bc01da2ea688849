use super::*;
use crate::synth::{Span, Wristband};

/// 2026-01-05 12:00 UTC: recordings below start at noon, in the 12–18 h band.
const T0: i64 = 1_767_614_400_000;

fn utc(lf: LazyFrame) -> LazyFrame {
    lf.with_column(col("ts").cast(DataType::Datetime(
        TimeUnit::Milliseconds,
        Some(TimeZone::UTC),
    )))
}

/// 4 Hz EDA: flat 2 µS plus responses `(onset s, amplitude µS)`, with the given quality flags.
fn eda(seconds: usize, responses: &[(f64, f64)], quality: &[(usize, u16)]) -> LazyFrame {
    let n = seconds * 4;
    let mut v = vec![2.0; n];
    for (onset, amplitude) in responses {
        for (i, x) in v.iter_mut().enumerate() {
            let tau = i as f64 / 4.0 - onset;
            if tau > 0.0 {
                *x += amplitude * 2.12 * ((-tau / 3.0).exp() - (-tau / 0.75).exp());
            }
        }
    }
    let mut q = vec![0u16; n];
    for (i, flag) in quality {
        q[*i] = *flag;
    }
    utc(df!(
        "pid" => vec!["p1"; n],
        "ts" => (0..n as i64).map(|i| T0 + i * 250).collect::<Vec<_>>(),
        "eda_us" => v,
        "quality" => q,
    )
    .unwrap()
    .lazy())
}

#[test]
fn samples_near_an_invalid_one_are_masked() {
    // One flagged sample at 30 s (index 120): it and every sample within 5 s go.
    let rules = StressRules::default();
    let out = eda_features(eda(60, &[], &[(120, 32)]), &rules)
        .collect()
        .unwrap();
    assert_eq!(out.height(), 240 - 41, "{out}");
    let ts = out.column("ts").unwrap().cast(&DataType::Int64).unwrap();
    let ts = ts.i64().unwrap();
    assert!(ts
        .into_no_null_iter()
        .all(|t| (t - (T0 + 30_000)).abs() > 5_000));
}

#[test]
fn responses_above_the_amplitude_floor_are_counted_once_each() {
    let rules = StressRules::default();
    let responses = [(20.0, 0.1), (40.0, 0.05), (60.0, 0.3), (80.0, 0.005)];
    let out = eda_features(eda(100, &responses, &[]), &rules)
        .collect()
        .unwrap();
    let scr = out.column("scr").unwrap().bool().unwrap();
    let ts = out.column("ts").unwrap().cast(&DataType::Int64).unwrap();
    let peaks: Vec<i64> = ts
        .i64()
        .unwrap()
        .into_no_null_iter()
        .zip(scr.into_no_null_iter())
        .filter(|(_, p)| *p)
        .map(|(t, _)| (t - T0) / 1000)
        .collect();
    // Three responses of 0.05 µS and more, each peaking 1.4 s after onset (plus the low-pass
    // filter's lag); the 0.005 µS ripple is below the floor.
    assert_eq!(peaks, vec![22, 42, 62], "{out}");
    // Phasic and tonic add up to the low-passed signal, and the tonic level stays near 2 µS.
    let tonic = out.column("tonic_us").unwrap().f64().unwrap();
    assert!(tonic.into_no_null_iter().all(|t| (1.99..2.2).contains(&t)));
}

fn aroused_at(minutes: &[i64]) -> LazyFrame {
    let n = minutes.len();
    utc(df!(
        "pid" => vec!["p1"; n],
        "ts" => minutes.iter().map(|m| T0 + m * 60_000).collect::<Vec<_>>(),
        "aroused" => vec![true; n],
    )
    .unwrap()
    .lazy())
    .rename(["ts"], ["window"], true)
}

#[test]
fn aroused_windows_close_together_merge_and_short_episodes_are_dropped() {
    let rules = StressRules::default();
    // 0–6 min, then 14–16 (8 min after: merged), then 40–42 alone (2 min: too short).
    let out = episodes(aroused_at(&[0, 2, 4, 14, 40]), &rules)
        .collect()
        .unwrap();
    assert_eq!(out.height(), 1, "{out}");
    let start = out.column("start").unwrap().cast(&DataType::Int64).unwrap();
    let end = out.column("end").unwrap().cast(&DataType::Int64).unwrap();
    assert_eq!(start.i64().unwrap().get(0), Some(T0));
    assert_eq!(end.i64().unwrap().get(0), Some(T0 + 16 * 60_000));
    assert_eq!(
        out.column("aroused_windows").unwrap().u32().unwrap().get(0),
        Some(4)
    );
    // A 10-minute gap is not "less than 10 minutes": two episodes of 10 minutes each.
    let out = episodes(aroused_at(&[0, 2, 4, 6, 8, 20, 22, 24, 26, 28]), &rules)
        .collect()
        .unwrap();
    assert_eq!(out.height(), 2, "{out}");
}

/// Two afternoons (12–18 h UTC) of one wearer; stress and exercise on the second.
fn two_afternoons(stress: Vec<Span>, exercise: Vec<Span>) -> Wristband {
    Wristband {
        pid: "p1".into(),
        t0_ms: T0,
        worn: vec![Span::new(0.0, 360.0), Span::new(1440.0, 360.0)],
        stress,
        exercise,
        dropouts: vec![Span::new(1500.0, 0.05), Span::new(1620.0, 0.1)],
        acc_hz: 4.0,
        seed: 7,
    }
}

fn episode_spans(w: &Wristband) -> Vec<(i64, i64)> {
    let f = w.frames().unwrap();
    let (_, out) = evaluate(f.eda, f.hr, f.acc, &StressRules::default()).unwrap();
    let start = out.column("start").unwrap().cast(&DataType::Int64).unwrap();
    let end = out.column("end").unwrap().cast(&DataType::Int64).unwrap();
    start
        .i64()
        .unwrap()
        .into_no_null_iter()
        .zip(end.i64().unwrap().into_no_null_iter())
        .map(|(s, e)| ((s - T0) / 60_000, (e - T0) / 60_000))
        .collect()
}

#[test]
fn stress_at_rest_is_an_episode_and_exercise_is_not() {
    // Day 2, 14:00–14:40 stress at rest; 16:00–16:40 exercise (more heart rate and sweat than
    // the stress, with motion).
    let w = two_afternoons(
        vec![Span::new(1440.0 + 120.0, 40.0)],
        vec![Span::new(1440.0 + 240.0, 40.0)],
    );
    let found = episode_spans(&w);
    assert_eq!(found.len(), 1, "{found:?}");
    let (s, e) = found[0];
    assert!(
        (1555..=1570).contains(&s) && (1590..=1610).contains(&e),
        "{found:?}"
    );
}

#[test]
fn a_calm_recording_has_no_episodes_and_a_first_day_has_no_baseline() {
    let w = two_afternoons(vec![], vec![]);
    assert_eq!(episode_spans(&w), vec![]);
    // Stress in the first 30 minutes of the first day: no baseline yet, so not called.
    let w = two_afternoons(vec![Span::new(5.0, 20.0)], vec![]);
    assert_eq!(episode_spans(&w), vec![]);
}
