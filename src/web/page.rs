//! The page frame every UI page shares, HTML escaping, and error pages.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::i18n::Lang;
use crate::base::time::Zone;
use crate::registry::accounts::{Role, Session};

pub use crate::base::html::esc;

/// The zone every page shows times in: the configuration's `[http] time_zone`, set once per
/// process when the first [`crate::web::AppState`] is made (one server, one zone).
static ZONE: std::sync::OnceLock<Zone> = std::sync::OnceLock::new();

pub fn set_zone(zone: Zone) {
    let _ = ZONE.set(zone);
}

/// The pages' time zone (Europe/Amsterdam until one is set).
pub fn zone() -> Zone {
    *ZONE.get_or_init(|| Zone::named("Europe/Amsterdam").unwrap_or(Zone::UTC))
}

/// `2026-11-23 15:05` in the pages' zone, which each page names once (see [`frame`]).
pub fn time(ms: i64) -> String {
    zone().format(ms, "%Y-%m-%d %H:%M")
}

/// The local calendar day of a `YYYY-MM-DD` filter field as `[start, end)` in ms.
pub fn local_day_bounds(day: chrono::NaiveDate) -> (i64, i64) {
    let z = zone();
    (
        z.day_start_ms(day),
        z.day_start_ms(day.succ_opt().unwrap_or(day)),
    )
}

pub fn time_opt(ms: Option<i64>) -> String {
    ms.map(time).unwrap_or_else(|| "—".into())
}

/// A role in the page's language.
pub fn role_label(lang: Lang, role: Role) -> &'static str {
    lang.t(match role {
        Role::Administrator => "role.administrator",
        Role::Officer => "role.officer",
        Role::Manager => "role.manager",
        Role::Researcher => "role.researcher",
        Role::Auditor => "role.auditor",
    })
}

/// The hidden CSRF field every form of a signed-in page carries.
pub fn csrf_field(session: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&session.csrf)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b}\
header{background:#154273;color:#fff;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center}\
header a{color:#fff}header form{margin:0}main{padding:1em;max-width:75em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
.error{color:#a00;font-weight:bold}.note{color:#555}.badge{font-size:.8em;padding:0 .4em;border-radius:.3em;border:1px solid #888}.badge.provisional{background:#fff3cd}.badge.revised{background:#dbeafe}.badge.withdrawn{background:#eee;text-decoration:line-through}.badge.fresh{background:#d1fae5}.once{background:#fff3cd;padding:.5em;border:1px solid #e0c060}\
form.inline{display:inline}fieldset{margin:.6em 0}label{margin-right:.8em}label.check{display:inline-block;white-space:nowrap}\
.wide{overflow-x:auto;max-width:100%}svg{max-width:100%;height:auto}\
.day.worn{background:#c8e6c9}.day.alert{background:#ffcdd2}.day.silent{background:#fff3cd}.day.no-device{background:#e0e0e0}\
.calendar td{text-align:center;min-width:3.2em}.state.alert-open{color:#a00;font-weight:bold}.state.device-problem{color:#8a5a00;font-weight:bold}.state.silent{color:#8a5a00}\
@media (max-width:40em){main{padding:.5em}label{display:block;margin:.3em 0}input,select,textarea{max-width:100%}}\
@media print{header,.noprint{display:none}main{max-width:none}}";

/// Wraps `body` in the page frame: navigation for the signed-in role, language switch.
pub fn frame(lang: Lang, session: Option<&Session>, title: &str, body: &str) -> Html<String> {
    let mut nav = String::new();
    if let Some(s) = session {
        let links: &[(&str, &str)] = match s.account.role {
            Role::Officer => &[
                ("/caseload", "caseload"),
                ("/alerts", "alerts"),
                ("/stations", "stations"),
            ],
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
            role_label(lang, s.account.role),
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
         <main><h1>{title}</h1>{body}<p class=\"note\" id=\"zone\">{times} {zone}</p></main></body></html>",
        code = lang.code(),
        title = esc(title),
        times = lang.t("times_in"),
        zone = zone().name(),
    ))
}

/// An error page with a status; the message is for people and never holds internal details.
pub fn error(lang: Lang, status: StatusCode, message: &str) -> Response {
    let title = match status.as_u16() {
        400 => lang.t("error.400"),
        401 => lang.t("error.401"),
        403 => lang.t("error.403"),
        404 => lang.t("error.404"),
        409 => lang.t("error.409"),
        413 => lang.t("error.413"),
        429 => lang.t("error.429"),
        500..=599 => lang.t("error.500"),
        _ => status.canonical_reason().unwrap_or("error"),
    };
    (
        status,
        frame(
            lang,
            None,
            title,
            &format!(
                "<p class=\"error\">{}</p><p class=\"noprint\"><a href=\"/\" id=\"home\">{}</a></p>",
                esc(message),
                lang.t("error.back")
            ),
        ),
    )
        .into_response()
}

/// A file to download: `bytes` with its content type, saved as `file_name`.
pub fn download(bytes: Vec<u8>, content_type: &'static str, file_name: &str) -> Response {
    use axum::http::{header, HeaderValue};
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// Why a page could not do what was asked. Every page answers its failures through this type,
/// so the same failure looks the same everywhere: the user's own mistake or a refusal is a 4xx
/// with its message; a failure of the server is logged with its cause and shown as a 500 without
/// details. Each module's error says which it is in its `From` impl below.
#[derive(Debug)]
pub enum Failure {
    /// The request cannot be honoured as made (bad input, a step the workflow does not allow, a
    /// budget spent): `status` is a 4xx, the message is for the user.
    Refused { status: StatusCode, message: String },
    /// Nothing this user may see here (missing, or not theirs: deliberately the same).
    NotFound,
    /// The user's staff screening is not in force (`registry::screening`): what it says, e.g.
    /// "VOG expired on 2026-11-30".
    NotScreened(String),
    /// A failure of the server; the text goes to the log only.
    Internal(String),
    /// An officer's request refused by the casework rules (400), said in the reader's language.
    Casework(casework::Refusal),
}

impl Failure {
    pub fn input(message: impl Into<String>) -> Self {
        Self::Refused {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

/// Answers a failure in the page's language.
pub fn fail(lang: Lang, failure: impl Into<Failure>) -> Response {
    match failure.into() {
        Failure::Refused { status, message } => error(lang, status, &message),
        Failure::NotFound => error(lang, StatusCode::NOT_FOUND, lang.t("not_found")),
        Failure::Casework(r) => error(lang, StatusCode::BAD_REQUEST, &refusal(lang, &r)),
        Failure::NotScreened(state) => error(
            lang,
            StatusCode::FORBIDDEN,
            &format!("{} ({state})", lang.t("screening.refused")),
        ),
        Failure::Internal(cause) => {
            tracing::error!(error = %cause, "web request failed");
            error(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                lang.t("error.internal"),
            )
        }
    }
}

/// A casework refusal in the reader's language.
pub fn refusal(lang: Lang, r: &casework::Refusal) -> String {
    use casework::Refusal as R;
    match r {
        R::CommentRequired => lang.t("refusal.comment_required").to_string(),
        R::CommentTooLong => lang.t("refusal.comment_too_long").to_string(),
        R::StepNotAllowed { from, to } => {
            let label = |code: &str| {
                crate::alerts::Status::parse(code)
                    .map(|s| status_label(lang, s).to_string())
                    .unwrap_or_else(|| code.to_string())
            };
            lang.t("refusal.step_not_allowed")
                .replace("{from}", &label(from))
                .replace("{to}", &label(to))
        }
        R::NotADate(value) => lang.t("refusal.not_a_date").replace("{value}", value),
        R::UnknownSort(value) => lang.t("refusal.unknown_sort").replace("{value}", value),
        R::PeriodBackwards => lang.t("refusal.period_backwards").to_string(),
        R::PeriodTooLong { max_days } => lang
            .t("refusal.period_too_long")
            .replace("{days}", &max_days.to_string()),
    }
}

/// A workflow status in words.
pub fn status_label(lang: Lang, status: crate::alerts::Status) -> &'static str {
    use crate::alerts::Status;
    lang.t(match status {
        Status::New => "status.new",
        Status::InProcess => "status.in_process",
        Status::Confirmed => "status.confirmed",
        Status::NotConfirmed => "status.not_confirmed",
        Status::Resolved => "status.resolved",
    })
}

/// Runs blocking work (SQL, polars) off the async runtime. A task that panicked or was cancelled
/// is an internal failure.
pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Failure>
where
    T: Send + 'static,
    E: Into<Failure> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(Into::into),
        Err(e) => Err(Failure::internal(e)),
    }
}

// Module errors as failures: which variants are the user's (4xx); the rest are internal.

use crate::alerts::casework;
use crate::registry::{accounts, caseload, enroll};
use crate::research::{self, management};

impl From<accounts::Error> for Failure {
    fn from(e: accounts::Error) -> Self {
        match e {
            e @ accounts::Error::Invalid(_) => Failure::input(e.to_string()),
            e => Failure::internal(e),
        }
    }
}

impl From<caseload::Error> for Failure {
    fn from(e: caseload::Error) -> Self {
        match e {
            e @ caseload::Error::Invalid(_) => Failure::input(e.to_string()),
            e => Failure::internal(e),
        }
    }
}

impl From<enroll::Error> for Failure {
    fn from(e: enroll::Error) -> Self {
        match e {
            e @ enroll::Error::Invalid(_) => Failure::input(e.to_string()),
            e => Failure::internal(e),
        }
    }
}

impl From<casework::Error> for Failure {
    fn from(e: casework::Error) -> Self {
        match e {
            casework::Error::NotFound => Failure::NotFound,
            casework::Error::Screening(e) => e.into(),
            casework::Error::Refused(r) => Failure::Casework(r),
            e => Failure::internal(e),
        }
    }
}

impl From<research::Error> for Failure {
    fn from(e: research::Error) -> Self {
        match e {
            e @ research::Error::BadRequest(_) => Failure::input(e.to_string()),
            e @ (research::Error::BudgetExhausted { .. }
            | research::Error::PersonBudgetExhausted { .. }
            | research::Error::NoData) => Failure::Refused {
                status: StatusCode::CONFLICT,
                message: e.to_string(),
            },
            e => Failure::internal(e),
        }
    }
}

impl From<management::Error> for Failure {
    fn from(e: management::Error) -> Self {
        match e {
            e @ (management::Error::NoProject | management::Error::Invalid(_)) => {
                Failure::input(e.to_string())
            }
            management::Error::Research(e) => e.into(),
            e => Failure::internal(e),
        }
    }
}

impl From<crate::registry::overview::Error> for Failure {
    fn from(e: crate::registry::overview::Error) -> Self {
        Failure::internal(e)
    }
}

impl From<crate::lifecycle::export::Error> for Failure {
    fn from(e: crate::lifecycle::export::Error) -> Self {
        match e {
            e @ crate::lifecycle::export::Error::UnknownPerson(_) => Failure::input(e.to_string()),
            e => Failure::internal(e),
        }
    }
}

impl From<crate::lifecycle::hold::Error> for Failure {
    fn from(e: crate::lifecycle::hold::Error) -> Self {
        use crate::lifecycle::hold::Error;
        match e {
            Error::NotFound => Failure::NotFound,
            Error::Screening(e) => e.into(),
            e @ Error::Invalid(_) => Failure::input(e.to_string()),
            e => Failure::internal(e),
        }
    }
}

impl From<crate::accountability::dossier::Error> for Failure {
    fn from(e: crate::accountability::dossier::Error) -> Self {
        match e {
            crate::accountability::dossier::Error::Casework(e) => e.into(),
            e => Failure::internal(e),
        }
    }
}

impl From<crate::registry::review::Error> for Failure {
    fn from(e: crate::registry::review::Error) -> Self {
        use crate::registry::review::Error;
        match e {
            e @ Error::Invalid(_) => Failure::input(e.to_string()),
            e => Failure::internal(e),
        }
    }
}

impl From<crate::registry::screening::Error> for Failure {
    fn from(e: crate::registry::screening::Error) -> Self {
        use crate::registry::screening::Error;
        match e {
            Error::NotScreened(state) => Failure::NotScreened(state),
            e @ Error::Invalid(_) => Failure::input(e.to_string()),
            e => Failure::internal(e),
        }
    }
}

impl From<crate::lifecycle::supervision::Error> for Failure {
    fn from(e: crate::lifecycle::supervision::Error) -> Self {
        match e {
            e @ crate::lifecycle::supervision::Error::Invalid(_) => Failure::input(e.to_string()),
            e => Failure::internal(e),
        }
    }
}

impl From<tokio::task::JoinError> for Failure {
    fn from(e: tokio::task::JoinError) -> Self {
        Failure::internal(e)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::internal(e)
    }
}

impl From<crate::trust::audit::Error> for Failure {
    fn from(e: crate::trust::audit::Error) -> Self {
        Failure::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(f: impl Into<Failure>) -> StatusCode {
        fail(Lang::Nl, f).status()
    }

    #[tokio::test]
    async fn a_users_mistake_is_a_4xx_and_a_server_failure_a_500_whatever_the_module() {
        assert_eq!(status_of(casework::Error::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(casework::Error::Refused(casework::Refusal::CommentRequired)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(casework::Error::Sqlite(rusqlite::Error::InvalidQuery)),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_of(accounts::Error::Invalid("short".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(research::Error::BudgetExhausted {
                needed: 1.0,
                remaining: 0.5
            }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(management::Error::Research(research::Error::BadRequest(
                "x".into()
            ))),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(rusqlite::Error::InvalidQuery),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // Work that panicked on its blocking thread is the server's failure, not the user's.
        let panicked = blocking(|| -> Result<(), casework::Error> { panic!("boom") }).await;
        assert!(matches!(panicked, Err(Failure::Internal(_))));
        assert_eq!(
            status_of(panicked.unwrap_err()),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
