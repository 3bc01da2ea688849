//! The operations listener, apart from the web UI (`[operations] metrics_listen`, localhost by
//! default): `/metrics` for Prometheus, `/healthz` (the process answers) and `/readyz` (it can do
//! its work; JSON naming what is wrong). It carries no personal data, so it has no sign-in;
//! keep it off networks that should not see the service's figures.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::base::Context;

pub fn router(ctx: Context) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ctx)
}

async fn metrics(State(ctx): State<Context>) -> axum::response::Response {
    match tokio::task::spawn_blocking(move || crate::ops::observe::scrape(&ctx)).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(ctx): State<Context>) -> axum::response::Response {
    crate::ops::readiness::respond(ctx).await
}
