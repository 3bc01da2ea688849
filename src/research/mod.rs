//! The research path: differentially private aggregates over the daily indicators, charged to a
//! per-project privacy budget. The only module that calls OpenDP and releases numbers.
//!
//! Privacy unit: one person (all of their days). The plan is built here from a fixed template —
//! never from a researcher's expression — and always includes contribution bounding: each research
//! pseudonym keeps at most `max_days_per_person` rows before aggregation, so one person changes the
//! data by a bounded amount and OpenDP calibrates noise to that (identifier-level metric
//! `SymmetricIdDistance` on `rid`).
//!
//! Order of a release: authenticate the token → validate the request → build the measurement and
//! compute its ε exactly → charge ε to the project in one SQL statement that refuses to overspend,
//! and write the audit entry in the same transaction → run the measurement → answer. A query that
//! fails after charging keeps its charge: spending is never refunded on the strength of a result.

mod request;
pub use request::validate;
pub use request::{AccuracyEntry, Aggregate, Answer, GroupValue, QueryRequest, MIN_EPSILON};

mod ledger;
use ledger::charge;
pub use ledger::{person_losses, PeriodLoss};

mod projects;
use projects::token_hash;
pub use projects::{
    authenticate, create_project, issue_token, list_tokens, project_named, projects, revoke_token,
    token_id, Budget, Project, TokenInfo, TOKEN_ID_LEN,
};

use crate::base::db::OptionalExtension;
use opendp::domains::{AtomDomain, LazyFrameDomain, Margin, SeriesDomain};
use opendp::measures::MaxDivergence;
use opendp::metrics::{Bounds, FrameDistance, SymmetricIdDistance};
use opendp::polars::{dp_len, PrivacyNamespace};
use polars::prelude::*;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base::Context;
use crate::trust::audit;

mod accounting;
pub mod management;
mod opendp_section;
pub use accounting::{largest_next_epsilon, Spent};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing, unknown, expired or revoked research token")]
    Unauthorized,
    #[error("invalid query: {0}")]
    BadRequest(String),
    /// An administrator's request about projects and tokens refused.
    #[error(transparent)]
    Refused(#[from] crate::base::refusal::Refusal),
    #[error("privacy budget exhausted: this query asks for ε = {needed:.4}; the largest ε the project's budget still allows for one query is {remaining:.4}")]
    BudgetExhausted { needed: f64, remaining: f64 },
    #[error("no research data yet: the pipelines have not produced daily indicators")]
    NoData,
    #[error("too many requests: at most {0} per minute per token")]
    RateLimited(u32),
    #[error("the privacy budget per person for {period} is exhausted across all projects: this query asks for ε = {needed:.4}; at most {remaining:.4} is left this year")]
    PersonBudgetExhausted {
        period: String,
        needed: f64,
        remaining: f64,
    },
    #[error("differential privacy: {0}")]
    OpenDp(String),
    /// The lease the release was made under is another process's now: nothing was charged.
    #[error("another process took over this release; nothing was charged")]
    LeaseLost,
    /// The token's holder has no staff screening in force.
    #[error("the researcher's staff screening ({0}) is not in force: the token is refused until an administrator records a new screening")]
    NotScreened(String),
    #[error("staff screening: {0}")]
    Screening(String),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error("research dataset: {0}")]
    Dataset(#[from] crate::dataset::Error),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<opendp::error::Error> for Error {
    fn from(e: opendp::error::Error) -> Self {
        Error::OpenDp(e.to_string())
    }
}

/// Columns of the daily-indicators dataset a sum or mean may be asked of, with the public range
/// of each per person-day. Declared bounds must lie inside it: bounds are public parameters, and
/// a range chosen around one person's value says nothing DP does not already protect, but bounds
/// outside what a day can hold only waste budget on noise (and hint at a misunderstanding).
pub const DAILY_COLUMNS: &[(&str, f64, f64)] = &[
    ("wear_minutes", 0.0, 1440.0),
    ("peak_tac_g_dl", 0.0, 0.5),
    ("drinking_events", 0.0, 48.0),
    ("tamper_events", 0.0, 48.0),
    ("valid_eda_minutes", 0.0, 1440.0),
    ("mean_eda_us", 0.0, 60.0),
    ("scr_per_minute", 0.0, 60.0),
    ("minutes_aroused", 0.0, 1440.0),
    ("stress_episodes", 0.0, 72.0),
    ("mean_hr_bpm", 0.0, 240.0),
];

/// Columns of the alert-counts dataset (one row per person-day with at least one alert), with
/// their public ranges: alerts starting that day, by group of kinds.
pub const ALERT_COLUMNS: &[(&str, f64, f64)] = &[
    ("alcohol_alerts", 0.0, 48.0),
    ("interferent_alerts", 0.0, 48.0),
    ("tamper_alerts", 0.0, 48.0),
    ("device_alerts", 0.0, 48.0),
    ("communication_alerts", 0.0, 48.0),
];

/// The alert-counts dataset: for rates of drinking, tamper and communication alerts.
pub const DATASET_ALERTS: &str = "alert-counts";

/// A dataset a query may name: where its file is, and its columns with their public ranges.
struct Dataset {
    /// Its key in the store (see [`crate::base::blobs`]).
    key: &'static str,
    columns: &'static [(&'static str, f64, f64)],
}

fn dataset(name: &str) -> Option<Dataset> {
    match name {
        DATASET_DAILY => Some(Dataset {
            key: crate::base::blobs::RESEARCH_DAILY,
            columns: DAILY_COLUMNS,
        }),
        DATASET_ALERTS => Some(Dataset {
            key: crate::base::blobs::RESEARCH_ALERT_COUNTS,
            columns: ALERT_COLUMNS,
        }),
        _ => None,
    }
}

/// Keys an answer may be grouped by, each with a public set of values. Every group of that set is
/// released, with noise, whether or not anyone is in it: the presence of a group says nothing
/// about anyone.
///
/// * Person attributes (`programme`, `region`, `age_band`): coarse and constant per person.
/// * Periods (`week` as ISO `2026-W05`, `month` as `2026-01`): the values are every period of the
///   request's `from`..=`to`, which a period grouping must name.
pub const GROUP_KEYS: &[&str] = &["programme", "region", "age_band", "week", "month"];

/// Group keys that are person attributes: the only keys `only` may restrict.
pub const PERSON_KEYS: &[&str] = &["programme", "region", "age_band"];

/// Group keys that are periods of the day rather than person attributes.
const PERIOD_KEYS: &[&str] = &["week", "month"];

/// The implicit group key of a histogram: the bin a value falls in.
const BIN_KEY: &str = "bin";

/// Most bins a histogram may have.
const MAX_BINS: usize = 50;

/// Labels of the bins between `edges`: `[a, b)`, the last one closed.
fn bin_labels(edges: &[f64]) -> Vec<String> {
    let n = edges.len().saturating_sub(1);
    (0..n)
        .map(|i| {
            let close = if i + 1 == n { "]" } else { ")" };
            format!("[{}, {}{close}", edges[i], edges[i + 1])
        })
        .collect()
}

/// The bin label of `value` (clipped into the outer bins), as a polars expression.
fn bin_of(value: Expr, edges: &[f64]) -> Expr {
    let labels = bin_labels(edges);
    let mut expr = lit(labels[labels.len() - 1].clone());
    for i in (0..labels.len() - 1).rev() {
        expr = when(value.clone().lt(lit(edges[i + 1])))
            .then(lit(labels[i].clone()))
            .otherwise(expr);
    }
    expr
}

/// Longest `from`..=`to` a query may name: three years.
const MAX_RANGE_DAYS: i64 = 3 * 366;

fn period_of(key: &str, day: chrono::NaiveDate) -> String {
    match key {
        "week" => day.format("%G-W%V").to_string(),
        _ => day.format("%Y-%m").to_string(),
    }
}

/// The public values of a group key (see [`GROUP_KEYS`]); periods over `range`.
fn public_values(key: &str, req: &QueryRequest) -> Vec<String> {
    let all = all_public_values(key, req);
    match req.only.get(key) {
        Some(only) => all.into_iter().filter(|v| only.contains(v)).collect(),
        None => all,
    }
}

/// Every public value of a group key, before the request's `only`.
fn all_public_values(key: &str, req: &QueryRequest) -> Vec<String> {
    match key {
        BIN_KEY => match &req.aggregate {
            Aggregate::Histogram { edges, .. } => bin_labels(edges),
            _ => vec![],
        },
        "week" | "month" => {
            let Some((from, to)) = req.range() else {
                return vec![];
            };
            let mut values: Vec<String> = from
                .iter_days()
                .take_while(|d| *d <= to)
                .map(|d| period_of(key, d))
                .collect();
            values.dedup();
            values
        }
        "programme" => crate::base::programme::Programme::ALL
            .map(|p| p.as_str().to_string())
            .to_vec(),
        "region" => crate::registry::enroll::REGIONS
            .iter()
            .copied()
            .chain(["unknown"])
            .map(String::from)
            .collect(),
        "age_band" => nachtwacht_pipelines::daily::AGE_BANDS
            .iter()
            .map(|b| b.to_string())
            .collect(),
        _ => vec![],
    }
}

pub const DATASET_DAILY: &str = "daily-indicators";

/// The data in the exact shape the measurement's domain declares: `rid` and, for a mean, `value`.
/// Scanned from `readers`' copy, so keep them until the frame is collected.
fn prepared_data(readers: &crate::dataset::Readers, req: &QueryRequest) -> Result<LazyFrame> {
    let aggregate = &req.aggregate;
    let key = dataset(&req.dataset).expect("validated").key;
    let Some(path) = readers.research_table(key)? else {
        return Err(Error::NoData);
    };
    let mut lf = LazyFrame::scan_parquet(
        PlPath::new(&path.to_string_lossy()),
        ScanArgsParquet::default(),
    )?;
    // A filter on a public key with a fixed predicate: neighbouring datasets stay neighbours.
    if let Some((from, to)) = req.range() {
        lf = lf.filter(col("day").gt_eq(lit(from)).and(col("day").lt_eq(lit(to))));
    }
    for (key, values) in &req.only {
        let values = Series::new("".into(), values.clone());
        lf = lf.filter(col(key.as_str()).is_in(lit(values).implode(), false));
    }
    lf = lf.with_columns([
        col("day").dt().strftime("%G-W%V").alias("week"),
        col("day").dt().strftime("%Y-%m").alias("month"),
    ]);
    let mut columns = vec![col("rid")];
    columns.extend(req.group_by.iter().map(|k| col(k.as_str())));
    Ok(match aggregate {
        Aggregate::Count => lf.select(columns),
        // A histogram counts person-days per bin: the bin is a group key, not a value.
        Aggregate::Histogram { column, edges } => {
            let value = col(column.as_str()).cast(DataType::Float64);
            columns.push(bin_of(value.clone(), edges).alias(BIN_KEY));
            lf.filter(value.clone().is_not_null().and(value.is_not_nan()))
                .select(columns)
        }
        // Person-days without this indicator (another device kind) do not count towards it.
        _ => {
            let (column, _, _) = aggregate
                .bounded()
                .expect("sum, mean, quantile read a column");
            columns.push(col(column).cast(DataType::Float64).alias("value"));
            lf.select(columns)
                .filter(col("value").is_not_null().and(col("value").is_not_nan()))
        }
    })
}

type Meas = opendp::core::Measurement<
    LazyFrameDomain,
    FrameDistance<SymmetricIdDistance>,
    MaxDivergence,
    opendp::polars::OnceFrame,
>;

fn measurement(ctx: &Context, req: &QueryRequest, scale: f64) -> Result<Meas> {
    let (aggregate, group_by) = (&req.aggregate, &req.keys());
    let max_days = ctx.config.research.max_days_per_person;
    let max_rows = ctx.config.research.max_rows;
    let mut series = vec![SeriesDomain::new("rid", AtomDomain::<String>::default())];
    for key in group_by {
        series.push(SeriesDomain::new(
            key.as_str(),
            AtomDomain::<String>::default(),
        ));
    }
    if matches!(
        aggregate,
        Aggregate::Mean { .. } | Aggregate::Sum { .. } | Aggregate::Quantile { .. }
    ) {
        series.push(SeriesDomain::new("value", AtomDomain::<f64>::new_non_nan()));
    }
    let mut domain =
        LazyFrameDomain::new(series)?.with_margin(Margin::select().with_max_length(max_rows))?;
    let by: Vec<Expr> = group_by.iter().map(|k| col(k.as_str())).collect();
    if !by.is_empty() {
        domain = domain.with_margin(Margin::by(by.clone()).with_max_length(max_rows))?;
    }
    // Contribution bounding: at most `max_days` rows per person, recognised by OpenDP as truncation.
    let truncate = int_range(lit(0i64), len(), 1, DataType::Int64)
        .over([col("rid")])
        .lt(lit(max_days as i64));
    let template = DataFrame::empty().lazy().filter(truncate);
    let statistic = match aggregate {
        Aggregate::Count | Aggregate::Histogram { .. } => dp_len(None, false).alias("value"),
        Aggregate::Quantile {
            lower,
            upper,
            quantile,
            ..
        } => {
            let candidates: Vec<f64> = (0..=100)
                .map(|i| lower + (upper - lower) * f64::from(i) / 100.0)
                .collect();
            col("value")
                .fill_null(lit(*lower))
                .dp()
                .quantile(*quantile, Series::new("".into(), candidates), None)
                .alias("value")
        }
        Aggregate::Mean { lower, upper, .. } => col("value")
            .dp()
            .mean((lit(*lower), lit(*upper)), None)
            .alias("value"),
        Aggregate::Sum { lower, upper, .. } => col("value")
            .dp()
            .sum((lit(*lower), lit(*upper)), None)
            .alias("value"),
    };
    let plan = if by.is_empty() {
        template.select([statistic])
    } else {
        // A person's attributes are constant, so they fall in one group per period; the dense
        // rank makes OpenDP see that bound (rank < n + 1: at most n + 1 groups, a safe
        // over-estimate of n).
        let group_of = if by.len() == 1 {
            by[0].clone()
        } else {
            as_struct(by.clone())
        };
        let one_group = group_of
            .rank(
                RankOptions {
                    method: RankMethod::Dense,
                    descending: false,
                },
                None,
            )
            .over([col("rid")])
            .lt(lit(req.groups_per_person() + 1));
        template
            .filter(one_group)
            .group_by(by.clone())
            .agg([statistic])
            // Every public group, present in the data or not.
            .join(
                public_groups(req)?.lazy(),
                by.clone(),
                by,
                JoinType::Right.into(),
            )
    };
    Ok(opendp::measurements::make_private_lazyframe(
        domain,
        FrameDistance(SymmetricIdDistance {
            identifier: col("rid"),
        }),
        MaxDivergence,
        plan,
        Some(scale),
        None,
    )?)
}

/// Every combination of the public values of the request's keys (see [`public_values`]).
fn public_groups(req: &QueryRequest) -> Result<DataFrame> {
    let group_by = &req.keys();
    let mut rows: Vec<Vec<String>> = vec![vec![]];
    for key in group_by {
        rows = rows
            .into_iter()
            .flat_map(|row| {
                public_values(key, req).into_iter().map(move |v| {
                    let mut r = row.clone();
                    r.push(v);
                    r
                })
            })
            .collect();
    }
    let columns = group_by
        .iter()
        .enumerate()
        .map(|(i, key)| {
            Column::new(
                key.as_str().into(),
                rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>(),
            )
        })
        .collect();
    Ok(DataFrame::new(columns)?)
}

fn one_person() -> Bounds {
    Bounds::from(1u32)
}

/// The measurement whose ε for one person is as close to `epsilon` as possible without exceeding it.
fn calibrated(ctx: &Context, req: &QueryRequest, epsilon: f64) -> Result<(Meas, f64)> {
    let at_unit = measurement(ctx, req, 1.0)?.map(&one_person())?;
    // Laplace loss is inversely proportional to the scale; nudge up for rounding in the map.
    let mut scale = at_unit / epsilon;
    for _ in 0..50 {
        let m = measurement(ctx, req, scale)?;
        let spent = m.map(&one_person())?;
        if spent <= epsilon {
            return Ok((m, spent));
        }
        scale *= 1.0 + 1e-6_f64.max((spent - epsilon) / epsilon);
    }
    Err(Error::OpenDp("could not calibrate the noise scale".into()))
}

/// Answers one query for the project behind `token`. Blocking and not `Send`-friendly inside
/// (OpenDP measurements): call on a blocking thread.
pub fn query(ctx: &Context, token: &str, req: &QueryRequest) -> Result<Answer> {
    let project = authenticate_audited(ctx, Some(token), "query")?;
    answer_for(ctx, &project, req, &format!("research:{}", project.name))
}

/// A request as the API receives it: the token is checked (and the request counted against its
/// rate) before the body is even parsed; every refusal is audited.
pub fn query_json(
    ctx: &Context,
    rate: &TokenRate,
    token: Option<&str>,
    body: &[u8],
) -> Result<Answer> {
    let project = authenticate_audited(ctx, token, "query")?;
    let actor = format!("research:{}", project.name);
    rate_check(ctx, rate, token.unwrap_or_default(), &actor)?;
    let req: QueryRequest = match serde_json::from_slice(body) {
        Ok(req) => req,
        Err(e) => {
            let e = Error::BadRequest(format!("request body: {e}"));
            audit_refusal(ctx, &actor, "request", &e.to_string(), None)?;
            return Err(e);
        }
    };
    answer_for(ctx, &project, &req, &actor)
}

/// The project behind `token`, or an audited refusal (`research.refused-token`).
fn authenticate_audited(ctx: &Context, token: Option<&str>, attempted: &str) -> Result<Project> {
    let found = match token {
        Some(t) => authenticate(ctx, t, crate::base::time::now_ms()),
        None => Err(Error::Unauthorized),
    };
    if let Err(Error::Unauthorized) = &found {
        audit::append(
            &ctx.db.lock(),
            crate::base::time::now_ms(),
            "anonymous",
            "research.refused-token",
            &format!(
                "token:{}",
                token.map(token_id).unwrap_or_else(|| "none".into())
            ),
            &serde_json::json!({ "attempted": attempted }).to_string(),
        )?;
    }
    found
}

/// Records a refused research request: its reason and, when it parsed, the request.
fn audit_refusal(
    ctx: &Context,
    actor: &str,
    object: &str,
    reason: &str,
    req: Option<&QueryRequest>,
) -> Result<()> {
    audit::append(
        &ctx.db.lock(),
        crate::base::time::now_ms(),
        actor,
        "research.refused",
        object,
        &serde_json::json!({ "reason": audit::bounded(reason), "query": req }).to_string(),
    )?;
    Ok(())
}

/// Requests per token in the last minute (in this process): the research API's rate limit.
#[derive(Default)]
pub struct TokenRate {
    recent: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<i64>>>,
}

impl TokenRate {
    /// Counts one request of `token` at `now_ms` unless it already made `per_minute` in the last
    /// minute. Reserves before the request is served, so parallel requests cannot overrun it.
    fn admit(&self, token: &str, per_minute: u32, now_ms: i64) -> bool {
        let mut map = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, q| q.back().is_some_and(|t| now_ms - t < 60_000));
        }
        let q = map.entry(token_hash(token)).or_default();
        while q.front().is_some_and(|t| now_ms - t >= 60_000) {
            q.pop_front();
        }
        if q.len() >= per_minute as usize {
            return false;
        }
        q.push_back(now_ms);
        true
    }
}

fn rate_check(ctx: &Context, rate: &TokenRate, token: &str, actor: &str) -> Result<()> {
    let per_minute = ctx.config.research.requests_per_minute_per_token;
    if rate.admit(token, per_minute, crate::base::time::now_ms()) {
        return Ok(());
    }
    let e = Error::RateLimited(per_minute);
    audit_refusal(ctx, actor, "request", &e.to_string(), None)?;
    Err(e)
}

/// Answers one query for `project`, charged to it and audited as `actor`. The one path from
/// data to a released number: the research API and the management dashboard both come here.
pub fn answer_for(
    ctx: &Context,
    project: &Project,
    req: &QueryRequest,
    actor: &str,
) -> Result<Answer> {
    answer_fenced(ctx, project, req, actor, None)
}

/// [`answer_for`], charged only while `fence` is still this process's lease: work that one
/// process of several does at a time (the management release) spends nothing once another
/// process has taken it over.
pub fn answer_fenced(
    ctx: &Context,
    project: &Project,
    req: &QueryRequest,
    actor: &str,
    fence: Option<&crate::base::lease::Lease>,
) -> Result<Answer> {
    opendp_section::run(|| answer_in_section(ctx, project, req, actor, fence))
}

/// [`answer_fenced`]'s work, inside an [`opendp_section`].
fn answer_in_section(
    ctx: &Context,
    project: &Project,
    req: &QueryRequest,
    actor: &str,
    fence: Option<&crate::base::lease::Lease>,
) -> Result<Answer> {
    if let Err(e) = validate(req, project, &ctx.config.research) {
        audit_refusal(ctx, actor, &req.dataset, &e.to_string(), Some(req))?;
        return Err(e);
    }
    let (meas, epsilon) = calibrated(ctx, req, req.epsilon)?;
    let summary = opendp::polars::accuracy::summarize_polars_measurement(meas.clone(), Some(0.05))?;
    let mut answer = Answer {
        dataset: req.dataset.clone(),
        aggregate: req.aggregate.clone(),
        value: None,
        group_by: req.keys(),
        groups: vec![],
        dry_run: req.dry_run,
        accuracy_95: accuracy_entries(&summary)?,
        accuracy_note: ACCURACY_NOTE.into(),
        epsilon_spent: 0.0,
        delta_spent: 0.0,
        project_epsilon: project.epsilon_spent,
        project_delta: project.delta,
        budget_remaining: 0.0,
        largest_next_epsilon: 0.0,
        privacy_unit: "person".into(),
        max_days_per_person: ctx.config.research.max_days_per_person,
    };
    if req.dry_run {
        (answer.budget_remaining, answer.largest_next_epsilon) = project.remaining()?;
        // Nothing is read or released, so nothing is spent; the estimate is still audited.
        audit::append(
            &ctx.db.lock(),
            crate::base::time::now_ms(),
            actor,
            "research.dry-run",
            &req.dataset,
            &serde_json::json!({"query": req, "epsilon": epsilon}).to_string(),
        )?;
        return Ok(answer);
    }
    let readers = crate::dataset::Readers::of(ctx)?;
    let data = prepared_data(&readers, req)?;
    let charged = charge(ctx, project, req, epsilon, actor, fence)?;
    answer.epsilon_spent = epsilon;
    answer.project_epsilon = charged.epsilon_spent;
    (answer.budget_remaining, answer.largest_next_epsilon) = charged.remaining()?;
    let released = meas.invoke(&data)?.collect()?;
    let values: Vec<Option<f64>> = released
        .column("value")?
        .cast(&DataType::Float64)?
        .f64()?
        .into_iter()
        .collect();
    let keys_of_answer = req.keys();
    if keys_of_answer.is_empty() {
        answer.value = Some(
            values
                .first()
                .copied()
                .flatten()
                .ok_or_else(|| Error::OpenDp("empty release".into()))?,
        );
    } else {
        let keys: Vec<Vec<Option<String>>> = keys_of_answer
            .iter()
            .map(|k| -> Result<_> {
                Ok(released
                    .column(k.as_str())?
                    .str()?
                    .into_iter()
                    .map(|v| v.map(String::from))
                    .collect())
            })
            .collect::<Result<_>>()?;
        let mut groups: Vec<GroupValue> = values
            .iter()
            .enumerate()
            .map(|(i, value)| GroupValue {
                keys: keys_of_answer
                    .iter()
                    .zip(&keys)
                    .map(|(k, col)| (k.clone(), col[i].clone().unwrap_or_default()))
                    .collect(),
                value: *value,
            })
            .collect();
        groups.sort_by(|a, b| a.keys.cmp(&b.keys));
        answer.groups = groups;
    }
    Ok(answer)
}

/// What every answer says about the limits of `accuracy_95`.
pub const ACCURACY_NOTE: &str = "accuracy_95 is the half-width of the 95% interval of the noise \
     added to each released statistic, nothing more. It does not cover: values clipped to the \
     declared bounds; days beyond max_days_per_person dropped per person; counts, which are \
     released clamped at zero (a true count near zero comes out biased upwards, and its interval \
     is then one-sided); and for a mean, the ratio of a noisy sum to a noisy count, whose error \
     grows as the count shrinks: a group whose noisy count is zero has no meaningful mean and may \
     be released as null.";

fn accuracy_entries(summary: &DataFrame) -> Result<Vec<AccuracyEntry>> {
    let text = |name: &str| -> Result<Vec<String>> {
        Ok(summary
            .column(name)?
            .cast(&DataType::String)?
            .str()?
            .into_iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let num = |name: &str| -> Result<Vec<f64>> {
        Ok(summary
            .column(name)?
            .cast(&DataType::Float64)?
            .f64()?
            .into_iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    };
    let (aggregate, distribution, scale, accuracy) = (
        text("aggregate")?,
        text("distribution")?,
        num("scale")?,
        num("accuracy")?,
    );
    Ok((0..summary.height())
        .map(|i| AccuracyEntry {
            statistic: aggregate[i].clone(),
            distribution: distribution[i].clone(),
            scale: scale[i],
            accuracy: accuracy[i],
        })
        .collect())
}

/// The project's budget, for the token's holder (counted against the token's rate).
pub fn budget(ctx: &Context, rate: &TokenRate, token: Option<&str>) -> Result<Project> {
    let project = authenticate_audited(ctx, token, "budget")?;
    rate_check(
        ctx,
        rate,
        token.unwrap_or_default(),
        &format!("research:{}", project.name),
    )?;
    Ok(project)
}

#[cfg(test)]
mod tests;
