//! The research API under `/api/v1/research` (bearer tokens, JSON) and its OpenAPI document at
//! `/api/openapi.json`, derived from the handlers and types below by `utoipa`.
//!
//! Errors go through [`AppError`]: the client gets a status and a clear message; internal details
//! are logged, never sent.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tracing::error;
use utoipa::OpenApi;

use crate::research::{self, QueryRequest};
use crate::web::AppState;

/// The API's OpenAPI 3.1 document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "nachtwacht",
        description = "Research API: differentially private aggregates over daily indicators, \
                       privacy unit = person. See docs/research-api.md."
    ),
    paths(research_query, research_budget),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

/// Research tokens are sent as `Authorization: Bearer <token>`.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "research_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Every error the API returns: a status and this body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
}

/// A project's privacy budget, as (ε, δ).
#[derive(Serialize, utoipa::ToSchema)]
pub struct BudgetAnswer {
    pub project: String,
    /// The project may lose at most (`epsilon_budget`, `delta`) over its life.
    pub epsilon_budget: f64,
    pub delta: f64,
    /// The (ε, δ) loss of all releases so far: the better of basic composition and zCDP.
    pub epsilon_spent: f64,
    pub epsilon_remaining: f64,
    /// The largest ε one more query may ask for (at most `max_epsilon_per_query` is accepted).
    pub largest_next_epsilon: f64,
    pub max_epsilon_per_query: f64,
    /// The ledger's totals: Σ ε of all releases, and Σ ρ (zCDP).
    pub epsilon_sum: f64,
    pub rho_spent: f64,
}

#[derive(Debug)]
pub struct AppError(research::Error);

impl From<research::Error> for AppError {
    fn from(e: research::Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        use research::Error as E;
        let (status, message) = match &self.0 {
            E::Unauthorized => (StatusCode::UNAUTHORIZED, self.0.to_string()),
            E::BadRequest(_) | E::Refused(_) => (StatusCode::BAD_REQUEST, self.0.to_string()),
            E::BudgetExhausted { .. } | E::PersonBudgetExhausted { .. } => {
                (StatusCode::FORBIDDEN, self.0.to_string())
            }
            E::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, self.0.to_string()),
            E::NotScreened(_) => (StatusCode::FORBIDDEN, self.0.to_string()),
            E::NoData => (StatusCode::CONFLICT, self.0.to_string()),
            other => {
                error!(error = %other, "research request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log".to_string(),
                )
            }
        };
        (status, Json(ErrorBody { error: message })).into_response()
    }
}

/// The bearer token, if the request carries one.
fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
}

/// Research work (SQL, OpenDP) on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> research::Result<T> + Send + 'static,
) -> Result<T, AppError> {
    Ok(tokio::task::spawn_blocking(f).await.map_err(|e| {
        AppError(research::Error::OpenDp(format!(
            "research task failed: {e}"
        )))
    })??)
}

/// One differentially private answer, charged to the token's project (or a dry run's estimate).
#[utoipa::path(
    post,
    path = "/api/v1/research/query",
    request_body = QueryRequest,
    responses(
        (status = 200, description = "The released answer, its accuracy and the budget left", body = research::Answer),
        (status = 400, description = "Invalid or refused query (per-person keys, bounds, ε)", body = ErrorBody),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody),
        (status = 403, description = "Privacy budget exhausted: the project's, or this year's per-person budget across all projects", body = ErrorBody),
        (status = 409, description = "No research data yet", body = ErrorBody),
        (status = 429, description = "Too many requests for this token (see research.requests_per_minute_per_token)", body = ErrorBody),
    ),
    security(("research_token" = []))
)]
pub async fn research_query(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<research::Answer>, AppError> {
    // The body is parsed only after the token is checked (in `query_json`): an unauthenticated
    // client costs a hash lookup, not a JSON parse.
    let token = bearer(&headers);
    let (ctx, rate) = (state.ctx.clone(), state.research_rate.clone());
    // OpenDP measurements are neither Send nor cheap: build and run them on a blocking thread.
    let answer =
        blocking(move || research::query_json(&ctx, &rate, token.as_deref(), &body)).await?;
    Ok(Json(answer))
}

/// The token's project: its budget, what is spent and the per-query maximum.
#[utoipa::path(
    get,
    path = "/api/v1/research/budget",
    responses(
        (status = 200, description = "The project's budget", body = BudgetAnswer),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody),
        (status = 429, description = "Too many requests for this token", body = ErrorBody),
    ),
    security(("research_token" = []))
)]
pub async fn research_budget(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<BudgetAnswer>, AppError> {
    let token = bearer(&headers);
    let (ctx, rate) = (state.ctx.clone(), state.research_rate.clone());
    let p = blocking(move || research::budget(&ctx, &rate, token.as_deref())).await?;
    let (epsilon_remaining, largest_next_epsilon) = p.remaining()?;
    Ok(Json(BudgetAnswer {
        project: p.name,
        epsilon_budget: p.epsilon_budget,
        delta: p.delta,
        epsilon_spent: p.epsilon_spent,
        epsilon_remaining,
        largest_next_epsilon,
        max_epsilon_per_query: p.max_epsilon_per_query,
        epsilon_sum: p.epsilon_sum,
        rho_spent: p.rho_spent,
    }))
}
