//! Reading the request's cookies: shared by access control (the session) and the language choice,
//! which must not depend on each other.

use axum::http::header;

/// Reads one cookie from the request.
pub fn cookie<'a>(req: &'a axum::http::request::Parts, name: &str) -> Option<&'a str> {
    req.headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
