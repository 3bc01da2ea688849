//! HTTP: the only module that knows HTTP. For now a landing page (Dutch by default, English with
//! `?lang=en`), a health check, and the research API under `/api/v1/research`.
//!
//! Errors go through [`AppError`]: the client gets a status and a clear message; internal details
//! are logged, never sent.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tracing::error;

use crate::research::{self, QueryRequest};
use crate::server::Context;

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/research/query", post(research_query))
        .route("/api/v1/research/budget", get(research_budget))
        .with_state(state)
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
            E::BadRequest(_) => (StatusCode::BAD_REQUEST, self.0.to_string()),
            E::BudgetExhausted { .. } => (StatusCode::FORBIDDEN, self.0.to_string()),
            E::NoData => (StatusCode::CONFLICT, self.0.to_string()),
            other => {
                error!(error = %other, "research request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log".to_string(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

fn bearer(headers: &HeaderMap) -> Result<String, AppError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .ok_or(AppError(research::Error::Unauthorized))
}

async fn research_query(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<QueryRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<research::Answer>, AppError> {
    let token = bearer(&headers)?;
    let Json(req) = body.map_err(|e| AppError(research::Error::BadRequest(e.body_text())))?;
    let ctx = state.ctx.clone();
    // OpenDP measurements are neither Send nor cheap: build and run them on a blocking thread.
    let answer = tokio::task::spawn_blocking(move || research::query(&ctx, &token, &req))
        .await
        .map_err(|e| AppError(research::Error::OpenDp(format!("query task failed: {e}"))))??;
    Ok(Json(answer))
}

async fn research_budget(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    let token = bearer(&headers)?;
    let p = research::budget(&state.ctx, &token)?;
    Ok(Json(serde_json::json!({
        "project": p.name,
        "epsilon_budget": p.epsilon_budget,
        "epsilon_spent": p.epsilon_spent,
        "epsilon_remaining": (p.epsilon_budget - p.epsilon_spent).max(0.0),
        "max_epsilon_per_query": p.max_epsilon_per_query,
    })))
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

async fn landing(Query(q): Query<LangQuery>) -> Html<String> {
    let en = q.lang.as_deref() == Some("en");
    let (lang, title, body) = if en {
        ("en", "nachtwacht is running", "Wearable telemetry for the justice chain. Researchers: use the API under /api/v1/research with your project token.")
    } else {
        ("nl", "nachtwacht draait", "Telemetrie van wearables voor de justitieketen. Onderzoekers: gebruik de API onder /api/v1/research met het token van uw project.")
    };
    Html(format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>nachtwacht</title></head>\
         <body><h1>{title}</h1><p>{body}</p><p><a href=\"/?lang=nl\">Nederlands</a> · <a href=\"/?lang=en\">English</a></p></body></html>"
    ))
}
