//! `/readyz`: whether this process can do its work now. Each check names what is wrong, so that
//! the JSON body tells the person on call where to look.

use serde::Serialize;

use crate::base::Context;

/// The answer of `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found, in words (the figure and its limit, or the error).
    pub detail: String,
}

/// Runs every check: the database answers, the data directory takes a durable write, the disk
/// is above the reserve, and decoding and the pipelines keep up.
pub fn check(ctx: &Context) -> Readiness {
    let now = crate::base::time::now_ms();
    let mut checks = Vec::new();
    let mut add = |name, result: Result<String, String>| {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        checks.push(Check { name, ok, detail });
    };
    let backlog = {
        let conn = ctx.db.lock();
        conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .map_err(|e| e.to_string())
            .and_then(|_| super::observe::backlog(&conn, now).map_err(|e| e.to_string()))
    };
    add(
        "database",
        backlog
            .as_ref()
            .map(|_| "answers".to_string())
            .map_err(|e| format!("does not answer: {e}")),
    );
    add(
        "storage",
        super::takes_durable_write(ctx.dir.root())
            .map(|_| "the data directory takes a durable write".to_string())
            .map_err(|e| format!("the data directory takes no durable write: {e}")),
    );
    let reserve = ctx.config.ingest.min_free_disk_bytes;
    add(
        "disk",
        match crate::base::fsio::available_bytes(ctx.dir.root()) {
            Ok(free) if free >= reserve => Ok(format!("{free} bytes free (reserve {reserve})")),
            Ok(free) => Err(format!("{free} bytes free, below the reserve of {reserve}")),
            Err(e) => Err(format!("free space unknown: {e}")),
        },
    );
    let ops = &ctx.config.operations;
    if let Ok(b) = &backlog {
        let within = |lag_ms: i64, max_s: u64, what: &str| {
            let lag_s = lag_ms / 1000;
            if lag_s as u64 <= max_s {
                Ok(format!("{what} {lag_s} s behind (limit {max_s} s)"))
            } else {
                Err(format!(
                    "{what} {lag_s} s behind, over the limit of {max_s} s"
                ))
            }
        };
        add(
            "decode",
            within(b.decode_lag_ms, ops.max_decode_lag_secs, "decoding is"),
        );
        add(
            "pipelines",
            within(
                b.pipeline_lag_ms,
                ops.max_pipeline_lag_secs,
                "the pipelines are",
            ),
        );
    }
    Readiness {
        ready: checks.iter().all(|c| c.ok),
        checks,
    }
}

/// The HTTP answer of `/readyz` (on the web and the metrics listener): 200 when every check
/// passes, 503 otherwise, the checks as JSON either way.
pub async fn respond(ctx: Context) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    match tokio::task::spawn_blocking(move || check(&ctx)).await {
        Ok(r) => {
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, axum::Json(r)).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
