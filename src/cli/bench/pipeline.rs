//! `nachtwacht bench pipeline`: the indicator pipelines on data the size the issue names, each
//! beside a plain polars scan and group-by of the same Parquet files in the same run.
//!
//! 1. One wristband-day (EDA 4 Hz, heart rate 1 Hz, 3-axis ACC 32 Hz, plus BVP 64 Hz and skin
//!    temperature 4 Hz that the stress indicators do not read): scan → stress pipeline → daily
//!    indicators.
//! 2. Ankle readings of 10,000 person-days (48 a day): scan → drinking events, tamper events,
//!    daily indicators.
//!
//! Synthetic data from `nachtwacht_pipelines::synth`, written as Parquet first (not timed). CPU
//! time is the whole process's (polars runs on all cores), so CPU-seconds are the per-core cost.
//! Method and figures in docs/benchmarks.md.

use anyhow::Context;
use nachtwacht_pipelines::alcohol::drinking_events;
use nachtwacht_pipelines::synth::{Ankle, AnkleTruth, Noise, Rng, Span, Wristband};
use nachtwacht_pipelines::tamper::ankle_tamper;
use nachtwacht_pipelines::{daily, stress, AlcoholRules, StressRules, TamperRules};
use polars::prelude::*;

use super::measure::timed;

#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// Ankle-monitor people; each has `--ankle-days` days.
    #[arg(long, default_value_t = 1_000)]
    pub ankle_people: usize,
    #[arg(long, default_value_t = 10)]
    pub ankle_days: usize,
}

/// 2026-01-05 00:00 UTC.
const DAY0: i64 = 1_767_571_200_000;

fn write(df: &mut DataFrame, path: &std::path::Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    ParquetWriter::new(file).finish(df)?;
    Ok(())
}

fn scan(path: &std::path::Path) -> anyhow::Result<LazyFrame> {
    Ok(LazyFrame::scan_parquet(
        PlPath::new(&path.to_string_lossy()),
        Default::default(),
    )?)
}

/// The file as the server's evaluator reads it (`dataset::scan_readings`: each (pid, ts) once), so
/// the pipelines' figures include that cost; the baseline keeps the plain scan.
fn read_as_served(path: &std::path::Path) -> anyhow::Result<LazyFrame> {
    nachtwacht::dataset::scan_readings(&[path.to_path_buf()])?.context("no file")
}

/// A plain scan and group-by of the same file: per person and `every`, the mean of each value
/// column. The reference the pipelines are measured against.
fn plain_group_by(path: &std::path::Path, every: &str) -> anyhow::Result<usize> {
    let lf = scan(path)?;
    let schema = lf.clone().collect_schema()?;
    let values: Vec<Expr> = schema
        .iter_names()
        .filter(|n| !["pid", "ts", "quality", "bundle_id"].contains(&n.as_str()))
        .filter(|n| schema.get(n).is_some_and(|t| t.is_primitive_numeric()))
        .map(|n| col(n.clone()).mean())
        .collect();
    let out = lf
        .with_column(col("ts").dt().truncate(lit(every)).alias("bucket"))
        .group_by([col("pid"), col("bucket")])
        .agg(values)
        .collect()?;
    Ok(out.height())
}

struct Stage {
    name: &'static str,
    wall: f64,
    cpu: f64,
}

fn print(stages: &[Stage], samples: f64) {
    println!(
        "{:<58} {:>8} {:>8} {:>12}",
        "stage", "wall s", "CPU s", "M samples/s"
    );
    for s in stages {
        println!(
            "{:<58} {:>8.3} {:>8.3} {:>12.1}",
            s.name,
            s.wall,
            s.cpu,
            samples / s.wall / 1e6
        );
    }
}

/// Blocking; run it on a blocking thread.
pub fn run(args: PipelineArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;

    // 1. One wristband-day at the E4's rates, with two stress episodes and an hour of exercise.
    let day = Wristband {
        pid: "w-bench".into(),
        t0_ms: DAY0,
        worn: vec![Span::new(0.0, 1440.0)],
        stress: vec![Span::new(600.0, 30.0), Span::new(1000.0, 40.0)],
        exercise: vec![Span::new(800.0, 60.0)],
        dropouts: vec![Span::new(300.0, 0.1)],
        acc_hz: 32.0,
        seed: 1,
    };
    let frames = day.frames()?;
    let (eda_p, hr_p, acc_p, bvp_p, temp_p) = (
        tmp.path().join("eda.parquet"),
        tmp.path().join("hr.parquet"),
        tmp.path().join("acc.parquet"),
        tmp.path().join("bvp.parquet"),
        tmp.path().join("temp.parquet"),
    );
    write(&mut frames.eda.clone().collect()?, &eda_p)?;
    write(&mut frames.hr.clone().collect()?, &hr_p)?;
    write(&mut frames.acc.clone().collect()?, &acc_p)?;
    // The signals a wristband-day also holds, for the day's sample count.
    let mut rng = Rng::new(9);
    let bvp_n = 64 * 86_400;
    write(
        &mut df!(
            "pid" => vec!["w-bench"; bvp_n],
            "ts" => (0..bvp_n as i64).map(|i| DAY0 + i * 1000 / 64).collect::<Vec<_>>(),
            "bvp" => (0..bvp_n).map(|_| rng.normal()).collect::<Vec<_>>(),
        )?,
        &bvp_p,
    )?;
    let temp_n = 4 * 86_400;
    write(
        &mut df!(
            "pid" => vec!["w-bench"; temp_n],
            "ts" => (0..temp_n as i64).map(|i| DAY0 + i * 250).collect::<Vec<_>>(),
            "temp_c" => vec![33.0; temp_n],
        )?,
        &temp_p,
    )?;
    let day_samples = frames.samples + bvp_n + temp_n;
    println!(
        "wristband-day: {:.2} M samples ({:.2} M read by the stress indicators: EDA, HR, ACC x/y/z)",
        day_samples as f64 / 1e6,
        frames.samples as f64 / 1e6
    );

    let rules = StressRules::default();
    let (rows, plain_wall, plain_cpu) = timed(|| {
        let mut rows = 0;
        for p in [&eda_p, &hr_p, &acc_p] {
            rows += plain_group_by(p, "2m")?;
        }
        Ok(rows)
    })?;
    anyhow::ensure!(rows > 0, "plain group-by found nothing");
    let ((episodes, days), wall, cpu) = timed(|| {
        let (windows, episodes) = stress::evaluate(
            read_as_served(&eda_p)?,
            read_as_served(&hr_p)?,
            read_as_served(&acc_p)?,
            &rules,
        )?;
        let n = episodes.height();
        let indicators = daily::wristband_daily(
            windows.lazy(),
            episodes.lazy(),
            read_as_served(&hr_p)?,
            &rules,
        )
        .collect()?;
        Ok((n, indicators.height()))
    })?;
    anyhow::ensure!(days == 1, "one person-day expected, got {days}");
    println!();
    print(
        &[
            Stage {
                name: "plain scan + 2-min group-by of EDA, HR, ACC (baseline)",
                wall: plain_wall,
                cpu: plain_cpu,
            },
            Stage {
                name: "stress pipeline + daily indicators",
                wall,
                cpu,
            },
        ],
        frames.samples as f64,
    );
    println!(
        "wristband-day: {cpu:.2} CPU-s (target < 2 per core: {}), {:.1}× the plain group-by's CPU; {episodes} stress episodes found (2 injected)",
        if cpu < 2.0 { "met" } else { "NOT met" },
        cpu / plain_cpu
    );

    // 2. Ankle readings of many person-days, with drinking, interferents and tampering.
    let mut rng = Rng::new(3);
    let people: Vec<Ankle> = (0..args.ankle_people)
        .map(|i| {
            let readings = args.ankle_days * 48;
            let at = |rng: &mut Rng| (rng.unit() * (readings.saturating_sub(20)) as f64) as usize;
            let truth = match i % 4 {
                0 => vec![AnkleTruth::Drinking {
                    first_reading: at(&mut rng),
                    drinks: 1 + (i % 6) as u32,
                }],
                1 => vec![AnkleTruth::Interferent {
                    reading: at(&mut rng),
                }],
                2 => vec![AnkleTruth::Removal {
                    first_reading: at(&mut rng),
                    readings: 4,
                }],
                _ => vec![],
            };
            Ankle {
                pid: format!("p{i:05}"),
                t0_ms: DAY0,
                readings,
                truth,
                noise: Noise::ESTIMATED,
                seed: i as u64,
            }
        })
        .collect();
    let frames = people
        .iter()
        .map(|p| p.frame())
        .collect::<PolarsResult<Vec<_>>>()?;
    let ankle_p = tmp.path().join("ankle.parquet");
    write(
        &mut concat(frames, UnionArgs::default())?.collect()?,
        &ankle_p,
    )?;
    let person_days = args.ankle_people * args.ankle_days;
    let readings = person_days * 48;
    println!(
        "\nankle: {person_days} person-days, {:.2} M readings",
        readings as f64 / 1e6
    );
    let (_, plain_wall, plain_cpu) = timed(|| plain_group_by(&ankle_p, "1d"))?;
    let (alerts, wall, cpu) = timed(|| {
        let alcohol = AlcoholRules::default();
        let events = drinking_events(read_as_served(&ankle_p)?, &alcohol, i64::MAX)?.collect()?;
        let tamper = ankle_tamper(read_as_served(&ankle_p)?, &TamperRules::default()).collect()?;
        let n = events.height() + tamper.height();
        let days = daily::ankle_daily(
            read_as_served(&ankle_p)?,
            nachtwacht_pipelines::alcohol::decided(events.lazy()),
            tamper.lazy(),
            &alcohol,
        )
        .collect()?;
        anyhow::ensure!(
            days.height() == person_days,
            "{} person-days",
            days.height()
        );
        Ok(n)
    })?;
    println!();
    print(
        &[
            Stage {
                name: "plain scan + daily group-by (baseline)",
                wall: plain_wall,
                cpu: plain_cpu,
            },
            Stage {
                name: "alcohol + tamper rules + daily indicators",
                wall,
                cpu,
            },
        ],
        readings as f64,
    );
    println!(
        "ankle: {wall:.3} s wall for {person_days} person-days (target < 1 s: {}), {:.1}× the plain group-by; {alerts} events",
        if wall < 1.0 { "met" } else { "NOT met" },
        wall / plain_wall
    );
    Ok(())
}
