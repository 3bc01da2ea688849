//! `nachtwacht bench research`: latency of typical DP queries over 1,000 persons × 365 days of
//! daily indicators, each beside the same aggregate computed without DP (a plain polars scan) in
//! the same run. Queries go through `research::query` exactly as the HTTP handler calls it (token,
//! validation, calibration, budget charge with its audit entry, release). Method and figures in
//! docs/benchmarks.md.

use std::time::Instant;

use nachtwacht::base::config::Config;
use nachtwacht::base::Context as ServerContext;
use nachtwacht::research::{self, Aggregate, QueryRequest, DATASET_DAILY};
use nachtwacht::{registry::enroll, server::init};
use nachtwacht_pipelines::synth::Rng;
use polars::prelude::*;

use super::measure::quantile;

#[derive(Debug, Clone, clap::Args)]
pub struct ResearchArgs {
    /// Also run every query with the state (the project, its ledger) in this empty PostgreSQL
    /// database, beside SQLite in the same run.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    #[arg(long, default_value_t = 1_000)]
    pub persons: usize,
    #[arg(long, default_value_t = 365)]
    pub days: u64,
    /// Repetitions of each query.
    #[arg(long, default_value_t = 20)]
    pub repeat: usize,
}

/// One state store under test: its data directory (holding the same research dataset as the
/// other's), the context open on it, and a research token of its bench project.
struct Store {
    name: &'static str,
    _tmp: tempfile::TempDir,
    ctx: ServerContext,
    token: String,
}

impl Store {
    fn new(database_url: Option<&str>, dataset: &mut DataFrame) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("data");
        // The bench measures speed on synthetic people: its project and the yearly per-person
        // budget are set high enough for every repeat (the defaults would refuse after ε = 10).
        let mut config = Config::default();
        config.research.person_epsilon_per_year = 1e9;
        if let Some(url) = database_url {
            config.database = nachtwacht::base::config::DatabaseConfig::postgres(url, None);
        }
        init::init(&root, &config, nachtwacht::base::time::now_ms())?;
        let ctx = ServerContext::open(&root)?;
        nachtwacht::evaluate::write_research_table(
            &ctx.blobs,
            nachtwacht::base::blobs::RESEARCH_DAILY,
            dataset,
        )?;
        research::create_project(&ctx, "bench", research::Budget::new(1e9, 10.0), "bench")?;
        nachtwacht::registry::screening::screened_researcher(
            &ctx.db,
            "bench",
            nachtwacht::base::time::now_ms(),
        )?;
        let token = research::issue_token(&ctx, "bench", "bench", 1, "bench")?;
        Ok(Self {
            name: database_url.map_or("sqlite", |_| "postgres"),
            _tmp: tmp,
            ctx,
            token,
        })
    }
}

/// Blocking; run it on a blocking thread. Given `--database-url`, every query runs on both
/// state stores in turn, in the same run, beside the plain scan.
pub fn run(args: ResearchArgs) -> anyhow::Result<()> {
    // The research dataset as evaluate writes it: rid, day, coarse attributes, indicators.
    let mut rng = Rng::new(5);
    let n = args.persons * args.days as usize;
    let d0 = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("a date");
    let (mut rid, mut day, mut programme, mut region, mut age) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut wear, mut tac, mut drinking, mut stress) = (vec![], vec![], vec![], vec![]);
    for p in 0..args.persons {
        let prog = nachtwacht::base::programme::Programme::ALL[p % 3].as_str();
        let reg = enroll::REGIONS[p % enroll::REGIONS.len()];
        let band = nachtwacht_pipelines::daily::AGE_BANDS[p % 5];
        for d in 0..args.days {
            rid.push(format!("r1-{p:06}"));
            day.push(d0 + chrono::Days::new(d));
            programme.push(prog);
            region.push(reg);
            age.push(band);
            wear.push(1300 + (rng.unit() * 140.0) as i64);
            let drank = rng.unit() < 0.08;
            tac.push(if drank { 0.02 + rng.unit() * 0.08 } else { 0.0 });
            drinking.push(i64::from(drank));
            stress.push((rng.unit() * 3.0) as i64);
        }
    }
    let mut df = df!(
        "rid" => rid, "day" => day, "programme" => programme, "region" => region,
        "age_band" => age, "wear_minutes" => wear, "peak_tac_g_dl" => tac,
        "drinking_events" => drinking, "stress_episodes" => stress,
    )?;
    let mut stores = vec![Store::new(None, &mut df)?];
    if let Some(url) = &args.database_url {
        stores.push(Store::new(Some(url), &mut df)?);
    }
    let path = stores[0]
        .ctx
        .dir
        .root()
        .join(nachtwacht::base::blobs::RESEARCH_DAILY);
    println!(
        "research dataset: {} persons × {} days = {n} person-days; state stores: {}",
        args.persons,
        args.days,
        stores.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    );

    let from = d0;
    let to = d0 + chrono::Days::new(args.days - 1);
    let request = |aggregate: Aggregate, group_by: &[&str], period: bool| QueryRequest {
        dataset: DATASET_DAILY.into(),
        aggregate,
        epsilon: 0.5,
        group_by: group_by.iter().map(|k| k.to_string()).collect(),
        dry_run: false,
        from: period.then_some(from),
        to: period.then_some(to),
        only: Default::default(),
    };
    // Leaked once so every baseline closure can copy the scan (a one-shot bench binary).
    let file: &'static PlPath = Box::leak(Box::new(PlPath::new(&path.to_string_lossy())));
    let scan = move || LazyFrame::scan_parquet(file.clone(), Default::default());
    type Plain = Box<dyn Fn() -> PolarsResult<DataFrame>>;
    let queries: Vec<(&str, QueryRequest, Plain)> = vec![
        (
            "count of person-days",
            request(Aggregate::Count, &[], false),
            Box::new(move || scan()?.select([len()]).collect()),
        ),
        (
            "mean wear minutes",
            request(
                Aggregate::Mean {
                    column: "wear_minutes".into(),
                    lower: 0.0,
                    upper: 1440.0,
                },
                &[],
                false,
            ),
            Box::new(move || scan()?.select([col("wear_minutes").mean()]).collect()),
        ),
        (
            "monthly drinking events by programme",
            request(
                Aggregate::Sum {
                    column: "drinking_events".into(),
                    lower: 0.0,
                    upper: 3.0,
                },
                &["month", "programme"],
                true,
            ),
            Box::new(move || {
                scan()?
                    .group_by([col("day").dt().strftime("%Y-%m"), col("programme")])
                    .agg([col("drinking_events").sum()])
                    .collect()
            }),
        ),
        (
            "weekly stress episodes by region",
            request(
                Aggregate::Sum {
                    column: "stress_episodes".into(),
                    lower: 0.0,
                    upper: 5.0,
                },
                &["week", "region"],
                true,
            ),
            Box::new(move || {
                scan()?
                    .group_by([col("day").dt().strftime("%G-W%V"), col("region")])
                    .agg([col("stress_episodes").sum()])
                    .collect()
            }),
        ),
        (
            "median peak TAC",
            request(
                Aggregate::Quantile {
                    column: "peak_tac_g_dl".into(),
                    lower: 0.0,
                    upper: 0.2,
                    quantile: 0.5,
                },
                &[],
                false,
            ),
            Box::new(move || scan()?.select([col("peak_tac_g_dl").median()]).collect()),
        ),
    ];

    print!("\n{:<40}", "query");
    for store in &stores {
        print!(
            " {:>13} {:>13}",
            format!("{} p50 s", store.name),
            format!("{} p95 s", store.name)
        );
    }
    println!(" {:>12} {:>12}", "plain p50 s", "p95 / plain");
    let mut worst = vec![0.0f64; stores.len()];
    for (name, req, plain) in &queries {
        let mut dp = vec![Vec::with_capacity(args.repeat); stores.len()];
        let mut base = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat {
            for (store, times) in stores.iter().zip(&mut dp) {
                let t = Instant::now();
                let answer = research::query(&store.ctx, &store.token, req)?;
                times.push(t.elapsed().as_secs_f64());
                anyhow::ensure!(
                    answer.value.is_some() || !answer.groups.is_empty(),
                    "{name} on {}: nothing released",
                    store.name
                );
            }
            let t = Instant::now();
            let out = plain()?;
            base.push(t.elapsed().as_secs_f64());
            anyhow::ensure!(out.height() > 0, "{name}: plain aggregate empty");
        }
        base.sort_by(f64::total_cmp);
        let b50 = quantile(&base, 0.5);
        print!("{name:<40}");
        let mut slowest = 0.0f64;
        for (times, worst) in dp.iter_mut().zip(&mut worst) {
            times.sort_by(f64::total_cmp);
            let (p50, p95) = (quantile(times, 0.5), quantile(times, 0.95));
            *worst = worst.max(p95);
            slowest = slowest.max(p95);
            print!(" {p50:>13.3} {p95:>13.3}");
        }
        println!(" {b50:>12.3} {:>11.1}×", slowest / b50);
    }
    println!();
    for (store, worst) in stores.iter().zip(worst) {
        println!(
            "worst p95 on {}: {worst:.3} s (target < 1 s: {})",
            store.name,
            if worst < 1.0 { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
