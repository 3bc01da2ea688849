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

use opendp::domains::{AtomDomain, LazyFrameDomain, Margin, SeriesDomain};
use opendp::measures::MaxDivergence;
use opendp::metrics::{Bounds, FrameDistance, SymmetricIdDistance};
use opendp::polars::{dp_len, PrivacyNamespace};
use polars::prelude::*;
use rand::RngCore;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit;
use crate::server::Context;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing, unknown, expired or revoked research token")]
    Unauthorized,
    #[error("invalid query: {0}")]
    BadRequest(String),
    #[error("privacy budget exhausted: this query needs ε = {needed:.4}, the project has ε = {remaining:.4} left")]
    BudgetExhausted { needed: f64, remaining: f64 },
    #[error("no research data yet: the pipelines have not produced daily indicators")]
    NoData,
    #[error("differential privacy: {0}")]
    OpenDp(String),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<opendp::error::Error> for Error {
    fn from(e: opendp::error::Error) -> Self {
        Error::OpenDp(e.to_string())
    }
}

/// Columns of the daily-indicators dataset a mean may be asked of.
pub const NUMERIC_COLUMNS: &[&str] = &[
    "wear_minutes",
    "peak_tac_g_dl",
    "drinking_events",
    "tamper_events",
    "valid_eda_minutes",
    "mean_eda_us",
    "scr_per_minute",
    "minutes_aroused",
    "stress_episodes",
    "mean_hr_bpm",
];

pub const DATASET_DAILY: &str = "daily-indicators";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// Only `daily-indicators` for now.
    pub dataset: String,
    pub aggregate: Aggregate,
    /// Privacy loss to spend on this answer (pure ε-DP).
    pub epsilon: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Aggregate {
    /// Number of person-days (after contribution bounding).
    Count,
    /// Mean of a column over person-days, values clipped to the declared bounds.
    Mean {
        column: String,
        lower: f64,
        upper: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub dataset: String,
    pub aggregate: Aggregate,
    pub value: f64,
    /// Half-width of the 95% interval of the noise, per released statistic (for a mean: its sum and
    /// count). Covers the noise only, not bias from clipping or contribution bounding.
    pub accuracy_95: Vec<AccuracyEntry>,
    pub epsilon_spent: f64,
    pub budget_remaining: f64,
    pub privacy_unit: String,
    pub max_days_per_person: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyEntry {
    pub statistic: String,
    pub distribution: String,
    pub scale: f64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub epsilon_budget: f64,
    pub epsilon_spent: f64,
    pub max_epsilon_per_query: f64,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn create_project(
    ctx: &Context,
    name: &str,
    budget: f64,
    max_per_query: f64,
    actor: &str,
) -> Result<i64> {
    if !(budget.is_finite() && budget >= 0.0 && max_per_query.is_finite() && max_per_query > 0.0) {
        return Err(Error::BadRequest(
            "budget must be ≥ 0 and the per-query maximum > 0".into(),
        ));
    }
    let now = crate::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO research_projects (name, epsilon_budget, max_epsilon_per_query) VALUES (?1, ?2, ?3)",
        rusqlite::params![name, budget, max_per_query],
    )?;
    let id = tx.last_insert_rowid();
    audit::append(
        &tx,
        now,
        actor,
        "research.project.create",
        name,
        &serde_json::json!({"epsilon_budget": budget, "max_epsilon_per_query": max_per_query})
            .to_string(),
    )?;
    tx.commit()?;
    Ok(id)
}

/// A new bearer token for a project. Only its hash is stored; the token is shown once.
pub fn issue_token(ctx: &Context, project: &str, ttl_days: u32, actor: &str) -> Result<String> {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = format!("nwr_{}", hex::encode(raw));
    let now = crate::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let project_id: i64 = tx
        .query_row(
            "SELECT id FROM research_projects WHERE name = ?1",
            [project],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::BadRequest(format!("no research project {project:?}")))?;
    tx.execute(
        "INSERT INTO research_tokens (token_sha256, project_id, created_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![token_hash(&token), project_id, now, now + ttl_days as i64 * 86_400_000],
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "research.token.issue",
        project,
        &format!("{{\"ttl_days\":{ttl_days}}}"),
    )?;
    tx.commit()?;
    Ok(token)
}

/// The project a valid token belongs to.
pub fn authenticate(ctx: &Context, token: &str, now_ms: i64) -> Result<Project> {
    ctx.db
        .lock()
        .query_row(
            "SELECT p.id, p.name, p.epsilon_budget, p.epsilon_spent, p.max_epsilon_per_query
               FROM research_tokens t JOIN research_projects p ON p.id = t.project_id
              WHERE t.token_sha256 = ?1 AND t.revoked_at_ms IS NULL AND t.expires_at_ms > ?2",
            rusqlite::params![token_hash(token), now_ms],
            |r| {
                Ok(Project {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    epsilon_budget: r.get(2)?,
                    epsilon_spent: r.get(3)?,
                    max_epsilon_per_query: r.get(4)?,
                })
            },
        )
        .optional()?
        .ok_or(Error::Unauthorized)
}

fn validate(req: &QueryRequest, project: &Project) -> Result<()> {
    if req.dataset != DATASET_DAILY {
        return Err(Error::BadRequest(format!(
            "unknown dataset {:?} (available: {DATASET_DAILY})",
            req.dataset
        )));
    }
    if !(req.epsilon.is_finite() && req.epsilon > 0.0) {
        return Err(Error::BadRequest(
            "epsilon must be a positive number".into(),
        ));
    }
    if req.epsilon > project.max_epsilon_per_query {
        return Err(Error::BadRequest(format!(
            "epsilon {} exceeds this project's per-query maximum {}",
            req.epsilon, project.max_epsilon_per_query
        )));
    }
    if let Aggregate::Mean {
        column,
        lower,
        upper,
    } = &req.aggregate
    {
        if !NUMERIC_COLUMNS.contains(&column.as_str()) {
            return Err(Error::BadRequest(format!(
                "column {column:?} cannot be aggregated (allowed: {})",
                NUMERIC_COLUMNS.join(", ")
            )));
        }
        if !(lower.is_finite() && upper.is_finite() && lower < upper) {
            return Err(Error::BadRequest(
                "bounds must be finite with lower < upper".into(),
            ));
        }
    }
    Ok(())
}

/// The data in the exact shape the measurement's domain declares: `rid` and, for a mean, `value`.
fn prepared_data(ctx: &Context, aggregate: &Aggregate) -> Result<LazyFrame> {
    let path = ctx.dir.research_daily();
    if !path.exists() {
        return Err(Error::NoData);
    }
    let lf = LazyFrame::scan_parquet(
        PlPath::new(&path.to_string_lossy()),
        ScanArgsParquet::default(),
    )?;
    Ok(match aggregate {
        Aggregate::Count => lf.select([col("rid")]),
        // Person-days without this indicator (another device kind) do not count towards its mean.
        Aggregate::Mean { column, .. } => lf
            .select([
                col("rid"),
                col(column.as_str()).cast(DataType::Float64).alias("value"),
            ])
            .filter(col("value").is_not_null().and(col("value").is_not_nan())),
    })
}

type Meas = opendp::core::Measurement<
    LazyFrameDomain,
    FrameDistance<SymmetricIdDistance>,
    MaxDivergence,
    opendp::polars::OnceFrame,
>;

fn measurement(ctx: &Context, aggregate: &Aggregate, scale: f64) -> Result<Meas> {
    let max_days = ctx.config.research.max_days_per_person;
    let mut series = vec![SeriesDomain::new("rid", AtomDomain::<String>::default())];
    if matches!(aggregate, Aggregate::Mean { .. }) {
        series.push(SeriesDomain::new("value", AtomDomain::<f64>::new_non_nan()));
    }
    let domain = LazyFrameDomain::new(series)?
        .with_margin(Margin::select().with_max_length(ctx.config.research.max_rows))?;
    // Contribution bounding: at most `max_days` rows per person, recognised by OpenDP as truncation.
    let truncate = int_range(lit(0i64), len(), 1, DataType::Int64)
        .over([col("rid")])
        .lt(lit(max_days as i64));
    let template = DataFrame::empty().lazy().filter(truncate);
    let plan = match aggregate {
        Aggregate::Count => template.select([dp_len(None, false).alias("value")]),
        Aggregate::Mean { lower, upper, .. } => {
            template.select([col("value").dp().mean((lit(*lower), lit(*upper)), None)])
        }
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

fn one_person() -> Bounds {
    Bounds::from(1u32)
}

/// The measurement whose ε for one person is as close to `epsilon` as possible without exceeding it.
fn calibrated(ctx: &Context, aggregate: &Aggregate, epsilon: f64) -> Result<(Meas, f64)> {
    let at_unit = measurement(ctx, aggregate, 1.0)?.map(&one_person())?;
    // Laplace loss is inversely proportional to the scale; nudge up for rounding in the map.
    let mut scale = at_unit / epsilon;
    for _ in 0..50 {
        let m = measurement(ctx, aggregate, scale)?;
        let spent = m.map(&one_person())?;
        if spent <= epsilon {
            return Ok((m, spent));
        }
        scale *= 1.0 + 1e-6_f64.max((spent - epsilon) / epsilon);
    }
    Err(Error::OpenDp("could not calibrate the noise scale".into()))
}

/// Charges `epsilon` to the project and audits it, atomically; refuses to overspend.
fn charge(ctx: &Context, project: &Project, req: &QueryRequest, epsilon: f64) -> Result<f64> {
    let now = crate::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let updated = tx.execute(
        "UPDATE research_projects SET epsilon_spent = epsilon_spent + ?2
          WHERE id = ?1 AND epsilon_spent + ?2 <= epsilon_budget + 1e-12",
        rusqlite::params![project.id, epsilon],
    )?;
    let (budget, spent): (f64, f64) = tx.query_row(
        "SELECT epsilon_budget, epsilon_spent FROM research_projects WHERE id = ?1",
        [project.id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if updated == 0 {
        audit::append(
            &tx,
            now,
            &format!("research:{}", project.name),
            "research.refused",
            DATASET_DAILY,
            &serde_json::json!({"query": req, "epsilon": epsilon, "reason": "budget exhausted"})
                .to_string(),
        )?;
        tx.commit()?;
        return Err(Error::BudgetExhausted {
            needed: epsilon,
            remaining: (budget - spent).max(0.0),
        });
    }
    audit::append(
        &tx,
        now,
        &format!("research:{}", project.name),
        "research.release",
        DATASET_DAILY,
        &serde_json::json!({"query": req, "epsilon": epsilon}).to_string(),
    )?;
    tx.commit()?;
    Ok((budget - spent).max(0.0))
}

/// Answers one query for the project behind `token`. Blocking and not `Send`-friendly inside
/// (OpenDP measurements): call on a blocking thread.
pub fn query(ctx: &Context, token: &str, req: &QueryRequest) -> Result<Answer> {
    let project = authenticate(ctx, token, crate::now_ms())?;
    validate(req, &project)?;
    let data = prepared_data(ctx, &req.aggregate)?;
    let (meas, epsilon) = calibrated(ctx, &req.aggregate, req.epsilon)?;
    let summary = opendp::polars::accuracy::summarize_polars_measurement(meas.clone(), Some(0.05))?;
    let remaining = charge(ctx, &project, req, epsilon)?;
    let released = meas.invoke(&data)?.collect()?;
    let value = released
        .column("value")?
        .cast(&DataType::Float64)?
        .f64()?
        .get(0)
        .ok_or_else(|| Error::OpenDp("empty release".into()))?;
    Ok(Answer {
        dataset: req.dataset.clone(),
        aggregate: req.aggregate.clone(),
        value,
        accuracy_95: accuracy_entries(&summary)?,
        epsilon_spent: epsilon,
        budget_remaining: remaining,
        privacy_unit: "person".into(),
        max_days_per_person: ctx.config.research.max_days_per_person,
    })
}

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

/// The project's budget, for the token's holder.
pub fn budget(ctx: &Context, token: &str) -> Result<Project> {
    authenticate(ctx, token, crate::now_ms())
}
