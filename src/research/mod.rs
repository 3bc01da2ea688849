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

use crate::base::Context;
use crate::trust::audit;

mod accounting;
pub mod management;
pub use accounting::{largest_next_epsilon, Spent};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing, unknown, expired or revoked research token")]
    Unauthorized,
    #[error("invalid query: {0}")]
    BadRequest(String),
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
    path: fn(&crate::base::datadir::DataDir) -> std::path::PathBuf,
    columns: &'static [(&'static str, f64, f64)],
}

fn dataset(name: &str) -> Option<Dataset> {
    match name {
        DATASET_DAILY => Some(Dataset {
            path: crate::base::datadir::DataDir::research_daily,
            columns: DAILY_COLUMNS,
        }),
        DATASET_ALERTS => Some(Dataset {
            path: crate::base::datadir::DataDir::research_alert_counts,
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
const PERSON_KEYS: &[&str] = &["programme", "region", "age_band"];

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
        "programme" => crate::base::db::PROGRAMMES
            .iter()
            .map(|(p, _)| p.to_string())
            .collect(),
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// Only `daily-indicators` for now.
    pub dataset: String,
    pub aggregate: Aggregate,
    /// Privacy loss to spend on this answer (pure ε-DP).
    pub epsilon: f64,
    /// Public person attributes to group by (see [`GROUP_KEYS`]); none for one overall answer.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Estimate the accuracy this ε buys, without spending anything or touching the data.
    #[serde(default)]
    pub dry_run: bool,
    /// Only person-days from this day (inclusive). Required with a `week` or `month` grouping.
    #[serde(default)]
    pub from: Option<chrono::NaiveDate>,
    /// Only person-days up to this day (inclusive).
    #[serde(default)]
    pub to: Option<chrono::NaiveDate>,
    /// Only people with these public attribute values, e.g. `{"programme": ["alcohol-ban"]}`.
    /// Keys are person attributes (`programme`, `region`, `age_band`); values come from their
    /// public sets. A grouped answer then covers only these values.
    #[serde(default)]
    pub only: std::collections::BTreeMap<String, Vec<String>>,
}

impl QueryRequest {
    /// The requested days, when both ends are given.
    fn range(&self) -> Option<(chrono::NaiveDate, chrono::NaiveDate)> {
        self.from.zip(self.to)
    }

    /// The keys the answer is grouped by: the requested ones, and a histogram's bin.
    fn keys(&self) -> Vec<String> {
        let mut keys = self.group_by.clone();
        if matches!(self.aggregate, Aggregate::Histogram { .. }) {
            keys.push(BIN_KEY.to_string());
        }
        keys
    }

    /// How many groups one person can fall in: one combination of their attributes, times the
    /// periods of the range when grouped by period, times a histogram's bins.
    fn groups_per_person(&self) -> u32 {
        self.keys()
            .iter()
            .filter(|k| PERIOD_KEYS.contains(&k.as_str()) || k.as_str() == BIN_KEY)
            .map(|k| public_values(k, self).len() as u32)
            .product::<u32>()
            .max(1)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Sum of a column over person-days, values clipped to the declared bounds.
    Sum {
        column: String,
        lower: f64,
        upper: f64,
    },
    /// A quantile (0 < `quantile` < 1; 0.5 is the median) of a column over person-days, chosen
    /// among 101 evenly spaced candidates from `lower` to `upper` (exponential mechanism).
    Quantile {
        column: String,
        lower: f64,
        upper: f64,
        quantile: f64,
    },
    /// Person-days per bin of a column: bins between consecutive `edges` (2 to 51 increasing
    /// values inside the column's range; values outside fall in the outer bins).
    Histogram { column: String, edges: Vec<f64> },
}

impl Aggregate {
    /// The column an aggregate reads and the bounds it declares (a histogram's outer edges).
    fn bounded(&self) -> Option<(&str, f64, f64)> {
        match self {
            Aggregate::Count => None,
            Aggregate::Histogram { column, edges } => Some((
                column,
                edges.first().copied().unwrap_or(f64::NAN),
                edges.last().copied().unwrap_or(f64::NAN),
            )),
            Aggregate::Quantile {
                column,
                lower,
                upper,
                ..
            } => Some((column, *lower, *upper)),
            Aggregate::Mean {
                column,
                lower,
                upper,
            }
            | Aggregate::Sum {
                column,
                lower,
                upper,
            } => Some((column, *lower, *upper)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Answer {
    pub dataset: String,
    pub aggregate: Aggregate,
    /// The released value of an ungrouped query; `null` on a dry run or when grouped.
    pub value: Option<f64>,
    pub group_by: Vec<String>,
    /// A grouped query's released values: one per public group, in key order (empty otherwise).
    pub groups: Vec<GroupValue>,
    /// True when nothing was released or spent: `accuracy_95` is what `epsilon` would buy.
    pub dry_run: bool,
    /// Half-width of the 95% interval of the noise, per released statistic (for a mean: its sum and
    /// count). Covers the noise only, not bias from clipping or contribution bounding.
    pub accuracy_95: Vec<AccuracyEntry>,
    /// What `accuracy_95` does not cover, in words, with every answer (see [`ACCURACY_NOTE`]).
    pub accuracy_note: String,
    /// The privacy loss of this release, as (ε, δ): every release is pure ε-DP (Laplace and
    /// exponential mechanisms), so its δ is 0.
    pub epsilon_spent: f64,
    pub delta_spent: f64,
    /// The project's loss over all its releases so far, as (ε, δ) at the project's δ: the better of
    /// basic composition and zCDP (see docs/research-api.md, "Accounting").
    pub project_epsilon: f64,
    pub project_delta: f64,
    /// The project's ε budget minus `project_epsilon`.
    pub budget_remaining: f64,
    /// The largest ε the project's next query may ask for and still fit the budget (zCDP makes
    /// this larger than `budget_remaining` once many small queries have run).
    pub largest_next_epsilon: f64,
    pub privacy_unit: String,
    pub max_days_per_person: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupValue {
    /// Group key → value, e.g. `{"programme": "alcohol-ban"}`.
    pub keys: std::collections::BTreeMap<String, String>,
    pub value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The (ε, δ) budget: `epsilon_budget` at `delta`.
    pub epsilon_budget: f64,
    pub delta: f64,
    /// The (ε, δ) loss so far, at `delta`.
    pub epsilon_spent: f64,
    pub max_epsilon_per_query: f64,
    /// The ledger's two totals, Σ ε and Σ ρ.
    pub epsilon_sum: f64,
    pub rho_spent: f64,
}

impl Project {
    fn ledger(&self) -> Spent {
        Spent {
            epsilon_sum: self.epsilon_sum,
            rho: self.rho_spent,
        }
    }

    /// ε still unspent, and the largest ε one more query may ask for.
    pub fn remaining(&self) -> Result<(f64, f64)> {
        Ok((
            (self.epsilon_budget - self.epsilon_spent).max(0.0),
            largest_next_epsilon(self.ledger(), self.epsilon_budget, self.delta)?,
        ))
    }
}

/// The privacy budget an administrator gives a research project.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Total (ε, δ) the project may spend over its life.
    pub epsilon: f64,
    pub delta: f64,
    /// The largest ε one query may ask for.
    pub max_epsilon_per_query: f64,
}

impl Budget {
    /// A budget at the default δ = 10⁻⁶ (well below 1 / the number of persons ever monitored).
    pub fn new(epsilon: f64, max_epsilon_per_query: f64) -> Self {
        Self {
            epsilon,
            delta: 1e-6,
            max_epsilon_per_query,
        }
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn create_project(ctx: &Context, name: &str, budget: Budget, actor: &str) -> Result<i64> {
    let Budget {
        epsilon: budget,
        delta,
        max_epsilon_per_query: max_per_query,
    } = budget;
    if !(budget.is_finite() && budget >= 0.0 && max_per_query.is_finite() && max_per_query > 0.0) {
        return Err(Error::BadRequest(
            "budget must be ≥ 0 and the per-query maximum > 0".into(),
        ));
    }
    if !(delta > 0.0 && delta <= 1e-3) {
        return Err(Error::BadRequest(
            "δ must be in (0, 0.001]: it is the probability that the ε guarantee fails".into(),
        ));
    }
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO research_projects (name, epsilon_budget, max_epsilon_per_query, delta)
         VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![name, budget, max_per_query, delta],
    )?;
    let id = tx.last_insert_rowid();
    audit::append(
        &tx,
        now,
        actor,
        "research.project.create",
        name,
        &serde_json::json!({"epsilon_budget": budget, "delta": delta, "max_epsilon_per_query": max_per_query})
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
    let now = crate::base::time::now_ms();
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
        rusqlite::params![token_hash(&token), project_id, now, now + ttl_days as i64 * crate::base::time::DAY_MS],
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

/// A token as an administrator sees it: never the token itself, only an id (the first
/// [`TOKEN_ID_LEN`] hex digits of its SHA-256, which is all the server stores).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub project: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Hex digits of a token's SHA-256 that name it.
pub const TOKEN_ID_LEN: usize = 12;

/// The id under which [`list_tokens`] shows a token.
pub fn token_id(token: &str) -> String {
    token_hash(token)[..TOKEN_ID_LEN].to_string()
}

/// Every token of `project` (all projects when `None`), newest first.
pub fn list_tokens(ctx: &Context, project: Option<&str>) -> Result<Vec<TokenInfo>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(
        "SELECT substr(t.token_sha256, 1, ?2), p.name, t.created_at_ms, t.expires_at_ms, t.revoked_at_ms
           FROM research_tokens t JOIN research_projects p ON p.id = t.project_id
          WHERE ?1 IS NULL OR p.name = ?1
          ORDER BY t.created_at_ms DESC",
    )?;
    let tokens = stmt
        .query_map(rusqlite::params![project, TOKEN_ID_LEN as i64], |r| {
            Ok(TokenInfo {
                id: r.get(0)?,
                project: r.get(1)?,
                created_at_ms: r.get(2)?,
                expires_at_ms: r.get(3)?,
                revoked_at_ms: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tokens)
}

/// Revokes the token with this id (see [`TokenInfo`]) at once: its next request is refused.
/// Audited. Refuses an id that names no token, or more than one.
pub fn revoke_token(ctx: &Context, id: &str, actor: &str) -> Result<()> {
    if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::BadRequest(format!(
            "a token id is {TOKEN_ID_LEN} hex digits, as `research tokens` lists them"
        )));
    }
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let matches: Vec<(String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT t.token_sha256, p.name FROM research_tokens t
               JOIN research_projects p ON p.id = t.project_id
              WHERE substr(t.token_sha256, 1, ?2) = lower(?1) AND t.revoked_at_ms IS NULL",
        )?;
        let rows = stmt
            .query_map(rusqlite::params![id, TOKEN_ID_LEN as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows
    };
    let [(hash, project)] = matches.as_slice() else {
        return Err(Error::BadRequest(format!(
            "{} active tokens have id {id}",
            matches.len()
        )));
    };
    tx.execute(
        "UPDATE research_tokens SET revoked_at_ms = ?2 WHERE token_sha256 = ?1",
        rusqlite::params![hash, now],
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "research.token.revoke",
        project,
        &serde_json::json!({"token_id": id}).to_string(),
    )?;
    tx.commit()?;
    Ok(())
}

const PROJECT_COLUMNS: &str = "p.id, p.name, p.epsilon_budget, p.delta, p.epsilon_spent, \
     p.max_epsilon_per_query, p.epsilon_sum, p.rho_spent";

fn project_row(r: &rusqlite::Row) -> rusqlite::Result<Project> {
    Ok(Project {
        id: r.get(0)?,
        name: r.get(1)?,
        epsilon_budget: r.get(2)?,
        delta: r.get(3)?,
        epsilon_spent: r.get(4)?,
        max_epsilon_per_query: r.get(5)?,
        epsilon_sum: r.get(6)?,
        rho_spent: r.get(7)?,
    })
}

/// Every research project, by name (for administrators).
pub fn projects(ctx: &Context) -> Result<Vec<Project>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(&format!(
        "SELECT {PROJECT_COLUMNS} FROM research_projects p ORDER BY p.name"
    ))?;
    let rows = stmt.query_map([], project_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The project a valid token belongs to.
pub fn authenticate(ctx: &Context, token: &str, now_ms: i64) -> Result<Project> {
    ctx.db
        .lock()
        .query_row(
            &format!(
                "SELECT {PROJECT_COLUMNS}
                   FROM research_tokens t JOIN research_projects p ON p.id = t.project_id
                  WHERE t.token_sha256 = ?1 AND t.revoked_at_ms IS NULL AND t.expires_at_ms > ?2"
            ),
            rusqlite::params![token_hash(token), now_ms],
            project_row,
        )
        .optional()?
        .ok_or(Error::Unauthorized)
}

/// The smallest ε a query may ask for. Smaller values buy nothing (the noise would be far larger
/// than any count) and push the noise scale past what floating point represents.
pub const MIN_EPSILON: f64 = 1e-6;

/// The smallest width a declared range (bounds, histogram bins) may have, relative to the
/// column's public range: narrower ones are no meaningful question and make OpenDP's
/// arithmetic underflow (subnormal bounds).
const MIN_RELATIVE_WIDTH: f64 = 1e-9;

/// How many groups an answer has: the product of its keys' public value sets (saturating).
fn group_count(req: &QueryRequest) -> u64 {
    req.keys()
        .iter()
        .map(|k| public_values(k, req).len() as u64)
        .fold(1u64, u64::saturating_mul)
}

fn validate(
    req: &QueryRequest,
    project: &Project,
    config: &crate::base::config::ResearchConfig,
) -> Result<()> {
    let Some(Dataset { columns, .. }) = dataset(&req.dataset) else {
        return Err(Error::BadRequest(format!(
            "unknown dataset {:?} (available: {DATASET_DAILY}, {DATASET_ALERTS})",
            req.dataset
        )));
    };
    if !(req.epsilon.is_finite() && req.epsilon >= MIN_EPSILON) {
        return Err(Error::BadRequest(format!(
            "epsilon must be a number of at least {MIN_EPSILON}"
        )));
    }
    if req.epsilon > project.max_epsilon_per_query {
        return Err(Error::BadRequest(format!(
            "epsilon {} exceeds this project's per-query maximum {}",
            req.epsilon, project.max_epsilon_per_query
        )));
    }
    if let Some((column, lower, upper)) = req.aggregate.bounded() {
        let Some((_, lo, hi)) = columns.iter().find(|(c, _, _)| *c == column) else {
            return Err(Error::BadRequest(format!(
                "column {column:?} of {} cannot be aggregated (allowed: {})",
                req.dataset,
                columns
                    .iter()
                    .map(|(c, _, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if !(lower.is_finite() && upper.is_finite() && lower < upper) {
            return Err(Error::BadRequest(
                "bounds must be finite with lower < upper".into(),
            ));
        }
        if lower < *lo || upper > *hi {
            return Err(Error::BadRequest(format!(
                "bounds [{lower}, {upper}] for {column} must lie within its range [{lo}, {hi}]"
            )));
        }
        let min_width = (hi - lo) * MIN_RELATIVE_WIDTH;
        let too_narrow = match &req.aggregate {
            Aggregate::Histogram { edges, .. } => edges.windows(2).any(|w| w[1] - w[0] < min_width),
            _ => upper - lower < min_width,
        };
        let subnormal = [lower, upper].iter().any(|v| *v != 0.0 && !v.is_normal());
        if too_narrow || subnormal {
            return Err(Error::BadRequest(format!(
                "bounds and bins of {column} must be normal numbers at least {min_width} apart"
            )));
        }
    }
    if let Aggregate::Histogram { edges, .. } = &req.aggregate {
        if !(2..=MAX_BINS + 1).contains(&edges.len()) || edges.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::BadRequest(format!(
                "histogram edges must be 2 to {} strictly increasing numbers",
                MAX_BINS + 1
            )));
        }
    }
    if let Aggregate::Quantile { quantile, .. } = &req.aggregate {
        if !(*quantile > 0.0 && *quantile < 1.0) {
            return Err(Error::BadRequest(format!(
                "quantile {quantile} must lie strictly between 0 and 1"
            )));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for key in &req.group_by {
        if !GROUP_KEYS.contains(&key.as_str()) {
            return Err(Error::BadRequest(format!(
                "cannot group by {key:?}: only by public keys ({}); \
                 pseudonyms and per-person keys never leave through this API",
                GROUP_KEYS.join(", ")
            )));
        }
        if !seen.insert(key) {
            return Err(Error::BadRequest(format!("{key:?} is grouped by twice")));
        }
    }
    for (key, values) in &req.only {
        if !PERSON_KEYS.contains(&key.as_str()) {
            return Err(Error::BadRequest(format!(
                "cannot restrict by {key:?}: only by person attributes ({})",
                PERSON_KEYS.join(", ")
            )));
        }
        let known = all_public_values(key, req);
        if values.is_empty() || values.iter().any(|v| !known.contains(v)) {
            return Err(Error::BadRequest(format!(
                "{key} must be restricted to some of: {}",
                known.join(", ")
            )));
        }
    }
    for (key, values) in &req.only {
        let distinct: std::collections::BTreeSet<&String> = values.iter().collect();
        if distinct.len() != values.len() {
            return Err(Error::BadRequest(format!("{key}: a value is named twice")));
        }
    }
    let periods = req
        .group_by
        .iter()
        .filter(|k| PERIOD_KEYS.contains(&k.as_str()))
        .count();
    if periods > 1 {
        return Err(Error::BadRequest(
            "group by one period (week or month), not both".into(),
        ));
    }
    match (req.from, req.to) {
        (Some(from), Some(to)) => {
            if from > to {
                return Err(Error::BadRequest(format!("from {from} is after to {to}")));
            }
            if (to - from).num_days() >= MAX_RANGE_DAYS {
                return Err(Error::BadRequest(format!(
                    "from..to spans more than {MAX_RANGE_DAYS} days"
                )));
            }
        }
        (None, None) if periods > 0 => {
            return Err(Error::BadRequest(
                "grouping by week or month needs from and to (the periods are the public keys)"
                    .into(),
            ))
        }
        (None, None) => {}
        _ => {
            return Err(Error::BadRequest(
                "give both from and to, or neither".into(),
            ))
        }
    }
    let groups = group_count(req);
    if groups > u64::from(config.max_groups_per_query) {
        return Err(Error::BadRequest(format!(
            "the answer would have {groups} groups; at most {} are allowed (group by fewer keys, \
             restrict with `only`, or a shorter range)",
            config.max_groups_per_query
        )));
    }
    Ok(())
}

/// The data in the exact shape the measurement's domain declares: `rid` and, for a mean, `value`.
fn prepared_data(ctx: &Context, req: &QueryRequest) -> Result<LazyFrame> {
    let aggregate = &req.aggregate;
    let path = (dataset(&req.dataset).expect("validated").path)(&ctx.dir);
    if !path.exists() {
        return Err(Error::NoData);
    }
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

/// The accounting period of the per-person budget: the UTC calendar year of `now_ms`.
fn person_period(now_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|t| t.format("%Y").to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The per-person ledger of `period`. A period without a row yet (the first release of a year,
/// or a database from before this ledger) starts from the releases the audit log holds for that
/// year, so nothing released earlier escapes it.
fn person_ledger(conn: &rusqlite::Connection, period: &str, now_ms: i64) -> Result<Spent> {
    let row: Option<(f64, f64)> = conn
        .query_row(
            "SELECT epsilon_sum, rho FROM privacy_loss_periods WHERE period = ?1",
            [period],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((epsilon_sum, rho)) = row {
        return Ok(Spent { epsilon_sum, rho });
    }
    let year_start = chrono::DateTime::from_timestamp_millis(now_ms)
        .and_then(|t| chrono::NaiveDate::from_ymd_opt(chrono::Datelike::year(&t), 1, 1))
        .map(crate::base::time::midnight_ms)
        .unwrap_or(0);
    let mut stmt = conn.prepare(
        "SELECT detail FROM audit_log WHERE action = 'research.release' AND at_ms >= ?1",
    )?;
    let details = stmt
        .query_map([year_start], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut ledger = Spent::default();
    for d in details {
        if let Some(e) = serde_json::from_str::<serde_json::Value>(&d)
            .ok()
            .and_then(|v| v["epsilon"].as_f64())
        {
            ledger = ledger.plus(e)?;
        }
    }
    Ok(ledger)
}

/// One year's privacy loss per person across all projects, for the auditor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodLoss {
    pub period: String,
    /// The loss at `delta` (the better of basic composition and zCDP).
    pub epsilon_spent: f64,
    pub epsilon_sum: f64,
    pub cap: f64,
    pub delta: f64,
}

/// Every period's per-person ledger, newest first.
pub fn person_losses(ctx: &Context) -> Result<Vec<PeriodLoss>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(
        "SELECT period, epsilon_spent, epsilon_sum FROM privacy_loss_periods ORDER BY period DESC",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(PeriodLoss {
                period: r.get(0)?,
                epsilon_spent: r.get(1)?,
                epsilon_sum: r.get(2)?,
                cap: ctx.config.research.person_epsilon_per_year,
                delta: ctx.config.research.person_delta_per_year,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Charges `epsilon` to the project and audits it, atomically; refuses to overspend. Returns
/// the project as it stands after the charge.
///
/// The ledger is read and written inside one `BEGIN IMMEDIATE` transaction: it takes SQLite's
/// write lock before reading, so no other connection (another process included) can charge the
/// same project between the check and the update.
fn charge(
    ctx: &Context,
    project: &Project,
    req: &QueryRequest,
    epsilon: f64,
    actor: &str,
) -> Result<Project> {
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current = tx.query_row(
        &format!("SELECT {PROJECT_COLUMNS} FROM research_projects p WHERE p.id = ?1"),
        [project.id],
        project_row,
    )?;
    let after = current.ledger().plus(epsilon)?;
    let loss = after.epsilon_at(current.delta)?;
    // The ledger of everyone's loss across all projects this year: checked and charged in the
    // same transaction as the project's.
    let period = person_period(now);
    let (person_cap, person_delta) = (
        ctx.config.research.person_epsilon_per_year,
        ctx.config.research.person_delta_per_year,
    );
    let person_before = person_ledger(&tx, &period, now)?;
    let person_after = person_before.plus(epsilon)?;
    let person_loss = person_after.epsilon_at(person_delta)?;
    if person_loss > person_cap + 1e-12 {
        audit::append(
            &tx,
            now,
            actor,
            "research.refused",
            &req.dataset,
            &serde_json::json!({"query": req, "epsilon": epsilon, "reason": "person budget exhausted",
                "period": period, "person_epsilon": person_before.epsilon_at(person_delta)?,
                "person_epsilon_cap": person_cap})
                .to_string(),
        )?;
        tx.commit()?;
        return Err(Error::PersonBudgetExhausted {
            period,
            needed: epsilon,
            remaining: largest_next_epsilon(person_before, person_cap, person_delta)?,
        });
    }
    if loss > current.epsilon_budget + 1e-12 {
        audit::append(
            &tx,
            now,
            actor,
            "research.refused",
            &req.dataset,
            &serde_json::json!({"query": req, "epsilon": epsilon, "reason": "budget exhausted"})
                .to_string(),
        )?;
        tx.commit()?;
        return Err(Error::BudgetExhausted {
            needed: epsilon,
            remaining: largest_next_epsilon(
                current.ledger(),
                current.epsilon_budget,
                current.delta,
            )?,
        });
    }
    tx.execute(
        "UPDATE research_projects SET epsilon_spent = ?2, epsilon_sum = ?3, rho_spent = ?4
          WHERE id = ?1",
        rusqlite::params![project.id, loss, after.epsilon_sum, after.rho],
    )?;
    tx.execute(
        "INSERT INTO privacy_loss_periods (period, epsilon_sum, rho, epsilon_spent) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (period) DO UPDATE SET epsilon_sum = ?2, rho = ?3, epsilon_spent = ?4",
        rusqlite::params![period, person_after.epsilon_sum, person_after.rho, person_loss],
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "research.release",
        &req.dataset,
        &serde_json::json!({
            "query": req, "epsilon": epsilon, "rho": after.rho - current.rho_spent,
            "project_epsilon": loss, "project_delta": current.delta,
            "period": period, "person_epsilon": person_loss, "person_delta": person_delta,
        })
        .to_string(),
    )?;
    tx.commit()?;
    Ok(Project {
        epsilon_spent: loss,
        epsilon_sum: after.epsilon_sum,
        rho_spent: after.rho,
        ..current
    })
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

/// A project by name (for the management dashboard, which has no token: its managers sign in).
pub fn project_named(ctx: &Context, name: &str) -> Result<Option<Project>> {
    Ok(ctx
        .db
        .lock()
        .query_row(
            &format!("SELECT {PROJECT_COLUMNS} FROM research_projects p WHERE p.name = ?1"),
            [name],
            project_row,
        )
        .optional()?)
}

/// Answers one query for `project`, charged to it and audited as `actor`. The one path from
/// data to a released number: the research API and the management dashboard both come here.
pub fn answer_for(
    ctx: &Context,
    project: &Project,
    req: &QueryRequest,
    actor: &str,
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
    let data = prepared_data(ctx, req)?;
    let charged = charge(ctx, project, req, epsilon, actor)?;
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
