//! What a researcher may ask and what comes back: the query request, its aggregates, the answer,
//! and the validation that refuses a request before any data is read or budget charged.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// Only `daily-indicators` for now.
    pub dataset: String,
    pub aggregate: Aggregate,
    /// Privacy loss to spend on this answer (pure ε-DP), read to 15 significant digits.
    #[serde(deserialize_with = "read_number")]
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
    pub(super) fn range(&self) -> Option<(chrono::NaiveDate, chrono::NaiveDate)> {
        self.from.zip(self.to)
    }

    /// The keys the answer is grouped by: the requested ones, and a histogram's bin.
    pub(super) fn keys(&self) -> Vec<String> {
        let mut keys = self.group_by.clone();
        if matches!(self.aggregate, Aggregate::Histogram { .. }) {
            keys.push(BIN_KEY.to_string());
        }
        keys
    }

    /// How many groups one person can fall in: one combination of their attributes, times the
    /// periods of the range when grouped by period, times a histogram's bins.
    pub(super) fn groups_per_person(&self) -> u32 {
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
        #[serde(deserialize_with = "read_number")]
        lower: f64,
        #[serde(deserialize_with = "read_number")]
        upper: f64,
    },
    /// Sum of a column over person-days, values clipped to the declared bounds.
    Sum {
        column: String,
        #[serde(deserialize_with = "read_number")]
        lower: f64,
        #[serde(deserialize_with = "read_number")]
        upper: f64,
    },
    /// A quantile (0 < `quantile` < 1; 0.5 is the median) of a column over person-days, chosen
    /// among 101 evenly spaced candidates from `lower` to `upper` (exponential mechanism).
    Quantile {
        column: String,
        #[serde(deserialize_with = "read_number")]
        lower: f64,
        #[serde(deserialize_with = "read_number")]
        upper: f64,
        #[serde(deserialize_with = "read_number")]
        quantile: f64,
    },
    /// Person-days per bin of a column: bins between consecutive `edges` (2 to 51 increasing
    /// values inside the column's range; values outside fall in the outer bins).
    Histogram {
        column: String,
        #[serde(deserialize_with = "read_numbers")]
        edges: Vec<f64>,
    },
}

impl Aggregate {
    /// The column an aggregate reads and the bounds it declares (a histogram's outer edges).
    pub(super) fn bounded(&self) -> Option<(&str, f64, f64)> {
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

/// The smallest ε a query may ask for. Smaller values buy nothing (the noise would be far larger
/// than any count) and push the noise scale past what floating point represents.
pub const MIN_EPSILON: f64 = 1e-6;

/// Significant decimal digits a number of a request is read to. The JSON reader as built here
/// (serde_json without `float_roundtrip`, which would rebuild polars) reads some decimals of 16
/// or more digits one unit in the last place off ("0.11111111111111911" as 0.11111111111111913),
/// so a request would not read back from its own JSON (the audit record) as the values accepted
/// and charged. Rounded to 15 digits, the values it accepts read back exactly; no question a
/// researcher asks changes by one part in 10^15.
pub const SIGNIFICANT_DIGITS: usize = 15;

/// `x` rounded to [`SIGNIFICANT_DIGITS`]; magnitudes below 1e-15 (no bound, edge or ε anyone
/// means) become zero, which validation then judges.
pub fn round_significant(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    if x.abs() < 1e-15 {
        return 0.0;
    }
    format!("{x:.prec$e}", prec = SIGNIFICANT_DIGITS - 1)
        .parse()
        .unwrap_or(x)
}

fn read_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    f64::deserialize(d).map(round_significant)
}

fn read_numbers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Vec::<f64>::deserialize(d).map(|v| v.into_iter().map(round_significant).collect())
}

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

pub fn validate(
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
