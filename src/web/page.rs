//! The page frame every UI page shares, HTML escaping, and error pages.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::i18n::Lang;
use crate::registry::accounts::{Role, Session};

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-11-23 14:05 UTC`.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

pub fn time_opt(ms: Option<i64>) -> String {
    ms.map(time).unwrap_or_else(|| "—".into())
}

/// The hidden CSRF field every form of a signed-in page carries.
pub fn csrf_field(session: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&session.csrf)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b}\
header{background:#154273;color:#fff;padding:.6em 1em;display:flex;gap:1.2em;align-items:center}\
header a{color:#fff}header form{margin:0}main{padding:1em;max-width:75em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
.error{color:#a00;font-weight:bold}.note{color:#555}.badge{font-size:.8em;padding:0 .4em;border-radius:.3em;border:1px solid #888}.badge.provisional{background:#fff3cd}.badge.revised{background:#dbeafe}.badge.withdrawn{background:#eee;text-decoration:line-through}.once{background:#fff3cd;padding:.5em;border:1px solid #e0c060}\
form.inline{display:inline}fieldset{margin:.6em 0}label{margin-right:.8em}\
@media print{header,.noprint{display:none}main{max-width:none}}";

/// Wraps `body` in the page frame: navigation for the signed-in role, language switch.
pub fn frame(lang: Lang, session: Option<&Session>, title: &str, body: &str) -> Html<String> {
    let mut nav = String::new();
    if let Some(s) = session {
        let links: &[(&str, &str)] = match s.account.role {
            Role::Officer => &[("/alerts", "alerts"), ("/stations", "stations")],
            Role::Administrator => &[("/admin", "admin")],
            Role::Auditor => &[("/audit", "audit")],
            Role::Manager => &[("/management", "management")],
            Role::Researcher => &[],
        };
        for (href, key) in links {
            nav.push_str(&format!("<a href=\"{href}\">{}</a>", lang.t(key)));
        }
        nav.push_str(&format!(
            "<a href=\"/account\">{}</a><a href=\"/account/password\">{}</a><span>{} ({})</span>\
             <form method=\"post\" action=\"/logout\">{}<button>{}</button></form>",
            lang.t("account"),
            lang.t("password.change"),
            esc(&s.account.username),
            s.account.role.as_str(),
            csrf_field(s),
            lang.t("logout")
        ));
    } else {
        nav.push_str(&format!("<a href=\"/login\">{}</a>", lang.t("login")));
    }
    Html(format!(
        "<!doctype html><html lang=\"{code}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title} · nachtwacht</title>\
         <style>{STYLE}</style></head><body><header><strong>nachtwacht</strong>{nav}\
         <span class=\"noprint\"><a href=\"?lang=nl\">NL</a> · <a href=\"?lang=en\">EN</a></span></header>\
         <main><h1>{title}</h1>{body}</main></body></html>",
        code = lang.code(),
        title = esc(title),
    ))
}

/// An error page with a status; the message is for people and never holds internal details.
pub fn error(lang: Lang, status: StatusCode, message: &str) -> Response {
    (
        status,
        frame(
            lang,
            None,
            status.canonical_reason().unwrap_or("error"),
            &format!("<p class=\"error\">{}</p>", esc(message)),
        ),
    )
        .into_response()
}

/// Logs an internal error and answers 500 without details.
pub fn internal(lang: Lang, err: impl std::fmt::Display) -> Response {
    tracing::error!(error = %err, "web request failed");
    error(
        lang,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the server log",
    )
}
