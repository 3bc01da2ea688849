//! Measured accuracy of the alert and stress pipelines against synthetic ground truth
//! (`nachtwacht_pipelines::synth`), with the floors the issue sets. The figures it prints are the
//! ones in docs/validation.md:
//!
//!     cargo test -p nachtwacht-pipelines --test validation -- --nocapture

use nachtwacht_pipelines::alcohol::{decided, drinking_events, KIND_DRINKING, KIND_INTERFERENT};
use nachtwacht_pipelines::synth::{Ankle, AnkleTruth, Noise, Rng, Span, TruthEvent, Wristband};
use nachtwacht_pipelines::tamper::{
    ankle_tamper, battery_low, device_faults, KIND_OBSTRUCTION, KIND_REMOVAL,
};
use nachtwacht_pipelines::{stress, AlcoholRules, StressRules, TamperRules};
use polars::prelude::*;

/// 2026-01-05 00:00 UTC.
const DAY0: i64 = 1_767_571_200_000;
const MINUTE_MS: i64 = 60_000;

/// (pid, kind, start ms, end ms) of every detected event.
fn detected(df: &DataFrame) -> Vec<(String, String, i64, i64)> {
    let pid = df.column("pid").unwrap().str().unwrap();
    let kind = df.column("kind").unwrap().str().unwrap();
    let start = df.column("start").unwrap().cast(&DataType::Int64).unwrap();
    let end = df.column("end").unwrap().cast(&DataType::Int64).unwrap();
    let (start, end) = (start.i64().unwrap(), end.i64().unwrap());
    (0..df.height())
        .map(|i| {
            (
                pid.get(i).unwrap().to_string(),
                kind.get(i).unwrap().to_string(),
                start.get(i).unwrap(),
                end.get(i).unwrap(),
            )
        })
        .collect()
}

fn overlaps(a: (i64, i64), b: (i64, i64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 {
        f64::NAN
    } else {
        n as f64 / d as f64
    }
}

/// Wilson score interval (95 %) of `hits` in `n`.
fn wilson(hits: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let (z, n, p) = (1.96f64, n as f64, hits as f64 / n as f64);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn with_ci(hits: usize, n: usize) -> String {
    let (lo, hi) = wilson(hits, n);
    format!("{:.3} [{lo:.2}, {hi:.2}] ({hits}/{n})", ratio(hits, n))
}

/// A truth event with its person.
#[derive(Debug, Clone)]
struct Truth {
    pid: String,
    event: TruthEvent,
}

impl Truth {
    fn span(&self) -> (i64, i64) {
        (self.event.start_ms, self.event.end_ms)
    }

    fn drinks(&self) -> Option<u32> {
        match self.event.truth {
            AnkleTruth::Drinking { drinks, .. } => Some(drinks),
            _ => None,
        }
    }

    fn is_exposure(&self) -> bool {
        matches!(
            self.event.truth,
            AnkleTruth::Interferent { .. } | AnkleTruth::Exposure { .. }
        )
    }
}

const DOSES: std::ops::RangeInclusive<u32> = 1..=8;
const DAYS: usize = 4;

/// 4-day ankle recordings at the given noise: per dose of 1–8 drinks, 40 people drinking once;
/// 40 people with two short exposures each (perfume, hand gel); 40 with one sustained exposure of
/// 1.5–3 hours; 15 with a 3-hour obstruction; 15 with a 2-hour removal.
fn ankle_population(noise: Noise) -> (Vec<Ankle>, Vec<Truth>) {
    let mut rng = Rng::new(2026);
    let mut plans: Vec<Vec<AnkleTruth>> = Vec::new();
    for drinks in DOSES {
        for _ in 0..40 {
            plans.push(vec![AnkleTruth::Drinking {
                first_reading: 8 + (rng.unit() * 140.0) as usize,
                drinks,
            }]);
        }
    }
    for _ in 0..40 {
        let a = 8 + (rng.unit() * 80.0) as usize;
        let b = a + 20 + (rng.unit() * 70.0) as usize;
        plans.push(vec![
            AnkleTruth::Interferent { reading: a },
            AnkleTruth::Interferent { reading: b },
        ]);
    }
    for _ in 0..40 {
        plans.push(vec![AnkleTruth::Exposure {
            first_reading: 8 + (rng.unit() * 160.0) as usize,
            readings: 3 + (rng.unit() * 4.0) as usize,
        }]);
    }
    for _ in 0..15 {
        plans.push(vec![AnkleTruth::Obstruction {
            first_reading: 8 + (rng.unit() * 170.0) as usize,
            readings: 6,
        }]);
    }
    for _ in 0..15 {
        plans.push(vec![AnkleTruth::Removal {
            first_reading: 8 + (rng.unit() * 170.0) as usize,
            readings: 4,
        }]);
    }
    let mut people = Vec::new();
    let mut truth = Vec::new();
    for (i, plan) in plans.into_iter().enumerate() {
        let a = Ankle {
            pid: format!("p{i:03}"),
            t0_ms: DAY0,
            readings: DAYS * 48,
            truth: plan,
            noise,
            seed: i as u64,
        };
        let (_, events) = a.simulate().unwrap();
        truth.extend(events.into_iter().map(|event| Truth {
            pid: a.pid.clone(),
            event,
        }));
        people.push(a);
    }
    (people, truth)
}

fn union(frames: Vec<LazyFrame>) -> LazyFrame {
    concat(frames, UnionArgs::default()).unwrap()
}

fn readings_of(people: &[Ankle]) -> LazyFrame {
    union(people.iter().map(|p| p.frame().unwrap()).collect())
}

/// The end of the recordings: every episode that ends in them is final.
fn end_ms() -> i64 {
    DAY0 + (DAYS as i64) * 48 * 30 * MINUTE_MS
}

/// Alerts (final and provisional episodes) of the alcohol rules, as (pid, kind, start, end).
fn alcohol_alerts(readings: LazyFrame, as_of_ms: i64) -> Vec<(String, String, i64, i64)> {
    let df = decided(drinking_events(readings, &AlcoholRules::default(), as_of_ms).unwrap())
        .collect()
        .unwrap();
    detected(&df)
}

/// The rule nachtwacht used before the shape rules, as a baseline in the same run: rise and fall
/// judged on each single 30-minute step, no noise allowance, no ambient channel, the edge of the
/// data treated as a fall to zero. Drinking episodes only, as (pid, kind, start, end).
fn single_step_baseline(readings: LazyFrame) -> Vec<(String, String, i64, i64)> {
    let rules = AlcoholRules::default();
    let same = |c: &str, n: i64| {
        when(col("pid").eq(col("pid").shift(lit(n))))
            .then(col(c).shift(lit(n)))
            .otherwise(lit(NULL))
    };
    let hours = (col("ts_ms") - same("ts_ms", 1)).cast(DataType::Float64) / lit(3_600_000.0);
    let too_fast = col("rise")
        .gt(lit(rules.max_rise_per_hour))
        .or(col("fall").gt(lit(rules.max_elimination_per_hour)));
    let df = readings
        .sort(["pid", "ts"], SortMultipleOptions::default())
        .with_columns([
            col("ts").cast(DataType::Int64).alias("ts_ms"),
            col("tac_g_dl").gt(lit(rules.threshold_g_dl)).alias("above"),
        ])
        .with_column(((col("tac_g_dl") - same("tac_g_dl", 1)) / hours).alias("rate"))
        .with_columns([
            same("rate", -1).alias("rate_next"),
            col("above")
                .and(same("above", 1).fill_null(lit(false)).not())
                .cast(DataType::UInt32)
                .cum_sum(false)
                .alias("run"),
        ])
        .filter(col("above"))
        .group_by([col("pid"), col("run")])
        .agg([
            col("ts").min().alias("start"),
            col("ts").max().alias("end"),
            len().alias("n"),
            col("rate").max().fill_null(lit(0.0)).alias("rise"),
            (lit(0.0) - col("rate_next").min())
                .fill_null(lit(0.0))
                .alias("fall"),
        ])
        .filter(
            too_fast
                .not()
                .and(col("n").gt_eq(lit(rules.min_consecutive_readings))),
        )
        .with_column(lit(KIND_DRINKING).alias("kind"))
        .collect()
        .unwrap();
    detected(&df)
}

/// What one noise level gives.
struct AlcoholScore {
    recall_strong: (usize, usize),
    precision: (usize, usize),
    exposures_as_drinking: usize,
    exposures: usize,
    exposures_flagged: usize,
    per_dose: Vec<(u32, f64, usize, usize)>,
    onset_h: Vec<f64>,
}

fn score_alcohol(found: &[(String, String, i64, i64)], truth: &[Truth]) -> AlcoholScore {
    let drinking: Vec<_> = found.iter().filter(|f| f.1 == KIND_DRINKING).collect();
    let hit = |t: &Truth, kind: &str| {
        found
            .iter()
            .any(|f| f.0 == t.pid && f.1 == kind && overlaps((f.2, f.3), t.span()))
    };
    let drinks: Vec<&Truth> = truth.iter().filter(|t| t.drinks().is_some()).collect();
    let strong: Vec<&&Truth> = drinks
        .iter()
        .filter(|t| t.event.peak_g_dl >= 0.04)
        .collect();
    let strong_hits = strong.iter().filter(|t| hit(t, KIND_DRINKING)).count();
    let matched = drinking
        .iter()
        .filter(|f| {
            drinks
                .iter()
                .any(|t| f.0 == t.pid && overlaps((f.2, f.3), t.span()))
        })
        .count();
    let exposures: Vec<&Truth> = truth.iter().filter(|t| t.is_exposure()).collect();
    let exposures_as_drinking = exposures.iter().filter(|t| hit(t, KIND_DRINKING)).count();
    let exposures_flagged = exposures
        .iter()
        .filter(|t| hit(t, KIND_INTERFERENT))
        .count();
    let per_dose = DOSES
        .map(|d| {
            let of: Vec<&&Truth> = drinks.iter().filter(|t| t.drinks() == Some(d)).collect();
            let mean_peak =
                of.iter().map(|t| t.event.peak_g_dl).sum::<f64>() / of.len().max(1) as f64;
            (
                d,
                mean_peak,
                of.iter().filter(|t| hit(t, KIND_DRINKING)).count(),
                of.len(),
            )
        })
        .collect();
    let mut onset_h: Vec<f64> = strong
        .iter()
        .filter_map(|t| {
            drinking
                .iter()
                .filter(|f| f.0 == t.pid && overlaps((f.2, f.3), t.span()))
                .map(|f| (f.2 - t.event.start_ms) as f64 / 3_600_000.0)
                .reduce(f64::min)
        })
        .collect();
    onset_h.sort_by(f64::total_cmp);
    AlcoholScore {
        recall_strong: (strong_hits, strong.len()),
        precision: (matched, drinking.len()),
        exposures_as_drinking,
        exposures: exposures.len(),
        exposures_flagged,
        per_dose,
        onset_h,
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn alcohol_rules_against_ground_truth_at_three_noise_levels() {
    println!("\nalcohol monitor: 4-day recordings, readings every 30 min, quantised to 0.001 g/dL");
    for (label, factor) in [("half", 0.5), ("estimated", 1.0), ("double", 2.0)] {
        let noise = Noise::ESTIMATED.scaled(factor);
        let (people, truth) = ankle_population(noise);
        let found = alcohol_alerts(readings_of(&people), end_ms() + 24 * 60 * MINUTE_MS);
        let s = score_alcohol(&found, &truth);
        let baseline = score_alcohol(&single_step_baseline(readings_of(&people)), &truth);
        println!(
            "\nnoise {label}: sd {:.4} g/dL + {:.0} % of TAC, AR(1) {:.1}; {} people",
            noise.sd_g_dl,
            noise.proportional * 100.0,
            noise.correlation,
            people.len()
        );
        println!(
            "{:<10} {:>10} {:>34}",
            "drinks", "mean peak", "recall [95 % CI]"
        );
        for (d, peak, hits, n) in &s.per_dose {
            println!("{d:<10} {peak:>10.3} {:>34}", with_ci(*hits, *n));
        }
        println!(
            "recall, true peak ≥ 0.04 g/dL: {}; single-step baseline {}",
            with_ci(s.recall_strong.0, s.recall_strong.1),
            with_ci(baseline.recall_strong.0, baseline.recall_strong.1)
        );
        println!(
            "precision of drinking alerts: {}",
            with_ci(s.precision.0, s.precision.1)
        );
        println!(
            "exposures ({}: short and sustained) alerted as drinking: {} (single-step baseline {}); \
             flagged for review: {}",
            s.exposures, s.exposures_as_drinking, baseline.exposures_as_drinking, s.exposures_flagged
        );
        println!(
            "onset delay (first drink to alert start), peak ≥ 0.04: median {:.1} h, p90 {:.1} h",
            quantile(&s.onset_h, 0.5),
            quantile(&s.onset_h, 0.9)
        );
        if factor == 1.0 {
            // Floors at the estimated noise.
            let recall = ratio(s.recall_strong.0, s.recall_strong.1);
            let precision = ratio(s.precision.0, s.precision.1);
            assert!(recall >= 0.95, "recall {recall}");
            assert!(precision >= 0.95, "precision {precision}");
            assert_eq!(s.exposures_as_drinking, 0);
        }
    }
}

/// Final verdicts do not depend on how the readings arrive: cut the same readings at random
/// moments (as uploads and late bundles would), evaluate each prefix as of its cut, and every
/// final episode of a prefix is exactly one of the whole recording's.
#[test]
fn alcohol_verdicts_are_the_same_however_the_readings_arrive() {
    let (people, _) = ankle_population(Noise::ESTIMATED);
    let all = readings_of(&people);
    let full = drinking_events(all.clone(), &AlcoholRules::default(), end_ms())
        .unwrap()
        .collect()
        .unwrap();
    let finals = |df: &DataFrame| {
        df.clone()
            .lazy()
            .filter(col("state").eq(lit("final")))
            .collect()
            .unwrap()
    };
    let full_final = finals(&full);
    // Each row as its values (nulls included), so a prefix's verdict is looked up, not compared
    // against every row of the whole recording's.
    let rows = |df: &DataFrame| -> Vec<String> {
        (0..df.height())
            .map(|i| format!("{:?}", df.get_row(i).unwrap().0))
            .collect()
    };
    let whole: std::collections::HashSet<String> = rows(&full_final).into_iter().collect();
    let mut rng = Rng::new(19);
    let (mut checked, mut provisional) = (0, 0);
    let cuts = 24;
    for _ in 0..cuts {
        let cut = DAY0 + (rng.unit() * (end_ms() - DAY0) as f64) as i64;
        let part = all
            .clone()
            .filter(col("ts").cast(DataType::Int64).lt(lit(cut)));
        let df = drinking_events(part, &AlcoholRules::default(), cut)
            .unwrap()
            .collect()
            .unwrap();
        provisional += df
            .column("state")
            .unwrap()
            .str()
            .unwrap()
            .into_no_null_iter()
            .filter(|s| *s == "provisional")
            .count();
        let part_final = finals(&df);
        for row in rows(&part_final) {
            assert!(
                whole.contains(&row),
                "cut at {cut}: {row} is not among the whole data's verdicts"
            );
            checked += 1;
        }
    }
    println!(
        "\nchunking: {cuts} random cuts; {checked} final episodes of the prefixes, each identical to \
         one of the {} of the whole recording; {provisional} provisional",
        full_final.height()
    );
    assert!(checked > full_final.height());
}

#[test]
fn tamper_rules_against_ground_truth() {
    let (people, truth) = ankle_population(Noise::ESTIMATED);
    let found = detected(
        &ankle_tamper(readings_of(&people), &TamperRules::default())
            .collect()
            .unwrap(),
    );
    for (kind, want) in [(KIND_OBSTRUCTION, "obstruction"), (KIND_REMOVAL, "removal")] {
        let of_kind: Vec<&Truth> = truth
            .iter()
            .filter(|t| {
                matches!(
                    (&t.event.truth, want),
                    (AnkleTruth::Obstruction { .. }, "obstruction")
                        | (AnkleTruth::Removal { .. }, "removal")
                )
            })
            .collect();
        let hits = of_kind
            .iter()
            .filter(|t| {
                found
                    .iter()
                    .any(|f| f.0 == t.pid && f.1 == kind && overlaps((f.2, f.3), t.span()))
            })
            .count();
        let dets: Vec<_> = found.iter().filter(|f| f.1 == kind).collect();
        let matched = dets
            .iter()
            .filter(|f| {
                of_kind
                    .iter()
                    .any(|t| f.0 == t.pid && overlaps((f.2, f.3), t.span()))
            })
            .count();
        println!(
            "{kind}: recall {}, precision {}",
            with_ci(hits, of_kind.len()),
            with_ci(matched, dets.len())
        );
        assert!(ratio(hits, of_kind.len()) >= 0.95 && ratio(matched, dets.len()) >= 0.95);
    }
}

#[test]
fn stress_episodes_against_ground_truth() {
    // 12 wearers, two afternoons (12–18 h UTC) each. Day 1 is calm (the baseline); on day 2 each
    // has one or two stress episodes at rest of 20–40 minutes and one exercise period of 30–45.
    let mut rng = Rng::new(11);
    let mut wearers = Vec::new();
    let mut stress_truth = Vec::new();
    let mut exercise_truth = Vec::new();
    let noon = DAY0 + 12 * 60 * MINUTE_MS;
    for i in 0..12 {
        let pid = format!("w{i:02}");
        let day2 = 1440.0;
        let mut stress = vec![Span::new(
            day2 + 40.0 + rng.uniform(0.0, 60.0),
            rng.uniform(20.0, 40.0),
        )];
        if i % 2 == 0 {
            stress.push(Span::new(
                day2 + 290.0 + rng.uniform(0.0, 20.0),
                rng.uniform(20.0, 40.0),
            ));
        }
        let exercise = vec![Span::new(
            day2 + 170.0 + rng.uniform(0.0, 40.0),
            rng.uniform(30.0, 45.0),
        )];
        for s in &stress {
            stress_truth.push((pid.clone(), s.bounds_ms(noon)));
        }
        for s in &exercise {
            exercise_truth.push((pid.clone(), s.bounds_ms(noon)));
        }
        wearers.push(Wristband {
            pid,
            t0_ms: noon,
            // Not worn overnight, nor for 15 minutes on day 2 (before the exercise).
            worn: vec![
                Span::new(0.0, 360.0),
                Span::new(day2, 150.0),
                Span::new(day2 + 165.0, 195.0),
            ],
            stress,
            exercise,
            // Electrode dropouts (0 µS, flagged by the decoder) for every wearer.
            dropouts: vec![
                Span::new(30.0, 0.05),
                Span::new(day2 + 20.0, 0.1),
                Span::new(day2 + 250.0, 0.05),
            ],
            acc_hz: 4.0,
            seed: 100 + i as u64,
        });
    }
    let frames: Vec<_> = wearers.iter().map(|w| w.frames().unwrap()).collect();
    let (_, episodes) = stress::evaluate(
        union(frames.iter().map(|f| f.eda.clone()).collect()),
        union(frames.iter().map(|f| f.hr.clone()).collect()),
        union(frames.iter().map(|f| f.acc.clone()).collect()),
        &StressRules::default(),
    )
    .unwrap();
    let found: Vec<(String, (i64, i64))> = detected(
        &episodes
            .lazy()
            .with_column(lit("stress").alias("kind"))
            .collect()
            .unwrap(),
    )
    .into_iter()
    .map(|(p, _, s, e)| (p, (s, e)))
    .collect();
    let hit = |a: &(String, (i64, i64)), b: &(String, (i64, i64))| a.0 == b.0 && overlaps(a.1, b.1);
    let truth_found = stress_truth
        .iter()
        .filter(|t| found.iter().any(|f| hit(f, t)))
        .count();
    let matched = found
        .iter()
        .filter(|f| stress_truth.iter().any(|t| hit(f, t)))
        .count();
    let during_exercise = found
        .iter()
        .filter(|f| exercise_truth.iter().any(|t| hit(f, t)))
        .count();
    let recall = ratio(truth_found, stress_truth.len());
    let precision = ratio(matched, found.len());
    println!(
        "\nstress episodes: {} wearers; recall {recall:.3} of {}, precision {precision:.3} of {}; \
         episodes overlapping exercise: {during_exercise} of {} exercise periods",
        wearers.len(),
        stress_truth.len(),
        found.len(),
        exercise_truth.len()
    );
    assert_eq!(during_exercise, 0, "exercise reported as stress");
    assert!(recall >= 0.9, "recall {recall}");
    assert!(precision >= 0.9, "precision {precision}");
}

#[test]
fn battery_and_device_fault_rules_against_ground_truth() {
    // 50 devices, 7 days of battery readings every 30 minutes: a discharge cycle that is
    // recharged in time, except on one random day per device where it runs down below 10 %
    // before charging. Device events: routine ones, and on every fifth device one fault.
    let mut rng = Rng::new(77);
    let (mut pid, mut ts, mut pct, mut bundle) = (vec![], vec![], vec![], vec![]);
    let (mut epid, mut ets, mut event, mut ebundle) = (vec![], vec![], vec![], vec![]);
    let mut low_truth = Vec::new();
    let mut fault_truth = Vec::new();
    let readings_per_day = 48;
    for d in 0..50 {
        let p = format!("d{d:02}");
        let flat_day = (rng.unit() * 7.0) as usize;
        for day in 0..7 {
            let mut low_span: Option<(i64, i64)> = None;
            for r in 0..readings_per_day {
                let t = DAY0 + (day * readings_per_day + r) as i64 * 1_800_000;
                // Charged to 100 % at midnight; 1.5 % per reading, 3 % on the flat day.
                let per = if day == flat_day { 3.0 } else { 1.5 };
                let level = (100.0 - per * r as f64).max(2.0) + rng.normal() * 0.3;
                if level < 15.0 {
                    low_span = Some((low_span.map_or(t, |s| s.0), t));
                }
                pid.push(p.clone());
                ts.push(t);
                pct.push(level);
                bundle.push(format!("{p}-{day}"));
            }
            if let Some(span) = low_span {
                low_truth.push((p.clone(), span));
            }
            for (hour, e) in [
                (1, "self-test-pass"),
                (9, "charging-start"),
                (10, "charging-stop"),
            ] {
                epid.push(p.clone());
                ets.push(DAY0 + day as i64 * 86_400_000 + hour * 3_600_000);
                event.push(e.to_string());
                ebundle.push(format!("{p}-{day}"));
            }
        }
        if d % 5 == 0 {
            let t = DAY0 + (rng.unit() * 6.0 * 86_400_000.0) as i64;
            epid.push(p.clone());
            ets.push(t);
            event.push(
                if d % 10 == 0 {
                    "self-test-fail"
                } else {
                    "firmware-fault"
                }
                .into(),
            );
            ebundle.push(format!("{p}-fault"));
            fault_truth.push((p.clone(), (t, t)));
        }
    }
    let utc = |lf: LazyFrame| {
        lf.with_column(col("ts").cast(DataType::Datetime(
            TimeUnit::Milliseconds,
            Some(TimeZone::UTC),
        )))
    };
    let battery = utc(
        df!("pid" => pid, "ts" => ts, "battery_pct" => pct, "bundle_id" => bundle)
            .unwrap()
            .lazy(),
    );
    let events = utc(
        df!("pid" => epid, "ts" => ets, "event" => event, "bundle_id" => ebundle)
            .unwrap()
            .lazy(),
    );
    let rules = TamperRules::default();
    let low = detected(&battery_low(battery, &rules).collect().unwrap());
    let faults = detected(&device_faults(events, &rules).collect().unwrap());
    let score = |found: &[(String, String, i64, i64)], truth: &[(String, (i64, i64))]| {
        let hit = |f: &(String, String, i64, i64), t: &(String, (i64, i64))| {
            f.0 == t.0 && overlaps((f.2, f.3), t.1)
        };
        let recall = ratio(
            truth
                .iter()
                .filter(|t| found.iter().any(|f| hit(f, t)))
                .count(),
            truth.len(),
        );
        let precision = ratio(
            found
                .iter()
                .filter(|f| truth.iter().any(|t| hit(f, t)))
                .count(),
            found.len(),
        );
        (precision, recall)
    };
    let (p_low, r_low) = score(&low, &low_truth);
    let (p_fault, r_fault) = score(&faults, &fault_truth);
    println!(
        "\nbattery-low: precision {p_low:.3}, recall {r_low:.3} of {}; device-fault: precision {p_fault:.3}, recall {r_fault:.3} of {}",
        low_truth.len(),
        fault_truth.len()
    );
    assert!(p_low >= 0.95 && r_low >= 0.95);
    assert_eq!((p_fault, r_fault), (1.0, 1.0));
}
