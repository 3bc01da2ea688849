//! The page frame every UI page shares, HTML escaping, and error pages.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::i18n::Lang;
use crate::base::refusal::Refusal;
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
    frame_with(lang, session, true, title, body)
}

/// The frame; `sign_in_link` is false on error pages, which do not know whether the reader is
/// signed in (a signed-in reader must not be asked to sign in) and link back home instead.
fn frame_with(
    lang: Lang,
    session: Option<&Session>,
    sign_in_link: bool,
    title: &str,
    body: &str,
) -> Html<String> {
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
    } else if sign_in_link {
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
        _ => lang.t("error.other"),
    };
    (
        status,
        frame_with(
            lang,
            None,
            status == StatusCode::UNAUTHORIZED,
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
    /// budget spent): a 4xx, said in the reader's language ([`refusal`]).
    Refused(Refusal),
    /// Nothing this user may see here (missing, or not theirs: deliberately the same).
    NotFound,
    /// The user's staff screening is not in force (`registry::screening`): what it says, e.g.
    /// "VOG expired on 2026-11-30".
    NotScreened(String),
    /// A failure of the server; the text goes to the log only.
    Internal(String),
}

impl Failure {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// The status and the sentence of a failure the user can act on, in their language; `None`
    /// for a failure of the server (logged here, shown without details).
    pub fn said(self, lang: Lang) -> (StatusCode, String) {
        match self {
            Failure::Refused(r) if r.is_conflict() => (StatusCode::CONFLICT, refusal(lang, &r)),
            Failure::Refused(r) => (StatusCode::BAD_REQUEST, refusal(lang, &r)),
            Failure::NotFound => (StatusCode::NOT_FOUND, lang.t("not_found").to_string()),
            Failure::NotScreened(state) => (
                StatusCode::FORBIDDEN,
                format!("{} ({state})", lang.t("screening.refused")),
            ),
            Failure::Internal(cause) => {
                tracing::error!(error = %cause, "web request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    lang.t("error.internal").to_string(),
                )
            }
        }
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

/// Answers a failure in the page's language, on an error page.
pub fn fail(lang: Lang, failure: impl Into<Failure>) -> Response {
    let (status, message) = failure.into().said(lang);
    error(lang, status, &message)
}

/// A refusal in the reader's language. The match has no wildcard: a new refusal does not
/// compile until it is said in both languages.
pub fn refusal(lang: Lang, r: &Refusal) -> String {
    use Refusal as R;
    let t = |key| lang.t(key).to_string();
    let with = |key, value: &str| lang.t(key).replace("{value}", value);
    let date = |ms: i64| zone().format(ms, "%Y-%m-%d");
    match r {
        R::CommentRequired => t("refusal.comment_required"),
        R::CommentTooLong => t("refusal.comment_too_long"),
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
        R::UnknownSort(v) => with("refusal.unknown_sort", v),
        R::PeriodBackwards => t("refusal.period_backwards"),
        R::PeriodTooLong { max_days } => with("refusal.period_too_long", &max_days.to_string()),
        R::NotADate(v) => with("refusal.not_a_date", v),
        R::NotAMonth(v) => with("refusal.not_a_month", v),
        R::NotANumber { field, value } => lang
            .t("refusal.not_a_number")
            .replace("{field}", &field_label(lang, field))
            .replace("{value}", value),
        R::UnknownChoice { field, value } => lang
            .t("refusal.unknown_choice")
            .replace("{field}", &field_label(lang, field))
            .replace("{value}", value),
        R::UsernameInvalid => t("refusal.username_invalid"),
        R::UsernameTaken(v) => with("refusal.username_taken", v),
        R::NoAccount(v) => with("refusal.no_account", v),
        R::NotAnActiveOfficer(v) => with("refusal.not_an_active_officer", v),
        R::NotAnActiveManager(v) => with("refusal.not_an_active_manager", v),
        R::PasswordTooShort { min } => with("refusal.password_too_short", &min.to_string()),
        R::PasswordUnchanged => t("refusal.password_unchanged"),
        R::CannotDisableSelf => t("refusal.cannot_disable_self"),
        R::CannotChangeOwnRole => t("refusal.cannot_change_own_role"),
        R::CannotResetSelf => t("refusal.cannot_reset_self"),
        R::NotAnEmail(v) => with("refusal.not_an_email", v),
        R::NotifyOfficersOnly => t("refusal.notify_officers_only"),
        R::ScreeningExpiresFirst => t("refusal.screening_expires_first"),
        R::ScreeningInFuture => t("refusal.screening_in_future"),
        R::ReviewPeriodInvalid => t("refusal.review_period_invalid"),
        R::FindingsRequired => t("refusal.findings_required"),
        R::CannotReviewSelf => t("refusal.cannot_review_self"),
        R::NoPerson(v) => with("refusal.no_person", v),
        R::ReferenceTaken(v) => with("refusal.reference_taken", v),
        R::PersonBeingErased(v) => with("refusal.person_being_erased", v),
        R::SupervisionNotEnded(v) => with("refusal.supervision_not_ended", v),
        R::SupervisionEnded { reference, at_ms } => lang
            .t("refusal.supervision_ended")
            .replace("{value}", reference)
            .replace("{date}", &date(*at_ms)),
        R::SupervisionEndsBeforeStart {
            reference,
            started_ms,
        } => lang
            .t("refusal.supervision_ends_before_start")
            .replace("{value}", reference)
            .replace("{date}", &date(*started_ms)),
        R::UnknownRegion(v) => with("refusal.unknown_region", v),
        R::ImplausibleBirthYear(y) => with("refusal.implausible_birth_year", &y.to_string()),
        R::DeviceNotAssigned(v) => with("refusal.device_not_assigned", v),
        R::AssignmentEndsBeforeStart { serial, from_ms } => lang
            .t("refusal.assignment_ends_before_start")
            .replace("{value}", serial)
            .replace("{date}", &date(*from_ms)),
        R::UnknownDevice(v) => with("refusal.unknown_device", v),
        R::StationNameInvalid(v) => with("refusal.station_name_invalid", v),
        R::StationEnrolled(v) => with("refusal.station_enrolled", v),
        R::NoActiveStation(v) => with("refusal.no_active_station", v),
        R::NoStation(v) => with("refusal.no_station", v),
        R::AssignmentNotCurrent(id) => with("refusal.assignment_not_current", &id.to_string()),
        R::HoldReasonRequired => t("refusal.hold_reason_required"),
        R::ReleaseReasonRequired => t("refusal.release_reason_required"),
        R::ProjectBudgetInvalid => t("refusal.project_budget_invalid"),
        R::DeltaInvalid => t("refusal.delta_invalid"),
        R::NoProject(v) => with("refusal.no_project", v),
        R::ProjectExists(v) => with("refusal.project_exists", v),
        R::NoActiveResearcher(v) => with("refusal.no_active_researcher", v),
        R::TokenIdInvalid => t("refusal.token_id_invalid"),
        R::TokenIdAmbiguous(n) => with("refusal.token_id_ambiguous", &n.to_string()),
        R::MonthNotEnded(v) => with("refusal.month_not_ended", v),
        R::NoManagementProject => t("refusal.no_management_project"),
        R::BudgetExhausted { needed, remaining } => lang
            .t("refusal.budget_exhausted")
            .replace("{needed}", &format!("{needed:.3}"))
            .replace("{remaining}", &format!("{remaining:.3}")),
        R::PersonBudgetExhausted { needed, remaining } => lang
            .t("refusal.person_budget_exhausted")
            .replace("{needed}", &format!("{needed:.3}"))
            .replace("{remaining}", &format!("{remaining:.3}")),
        R::NoData => t("refusal.no_data"),
    }
}

/// The label of a form field named in a refusal.
fn field_label(lang: Lang, field: &str) -> String {
    lang.t(match field {
        "epsilon" => "budget",
        "delta" => "delta",
        "max_epsilon_per_query" => "max_per_query",
        "ttl_days" => "days_valid",
        "birth_year" => "birth_year",
        "role" => "role",
        "kind" => "kind",
        "programme" => "programme",
        "screening" => "screening",
        "hold" => "holds",
        _ => "field",
    })
    .to_string()
}

/// A day typed in a form (`YYYY-MM-DD`).
pub fn form_day(text: &str) -> Result<chrono::NaiveDate, Refusal> {
    chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| Refusal::NotADate(text.to_string()))
}

/// A device kind (its wire code) in words.
pub fn device_label(lang: Lang, kind: &str) -> &'static str {
    match kind {
        "ankle-monitor" => lang.t("device.ankle-monitor"),
        "wristband" => lang.t("device.wristband"),
        _ => lang.t("device.unknown"),
    }
}

/// A province (its code in `enroll::REGIONS`) by its name; an unknown code as it is.
pub fn region_label(lang: Lang, code: &str) -> &str {
    let key = match code {
        "drenthe" => "region.drenthe",
        "flevoland" => "region.flevoland",
        "friesland" => "region.friesland",
        "gelderland" => "region.gelderland",
        "groningen" => "region.groningen",
        "limburg" => "region.limburg",
        "noord-brabant" => "region.noord-brabant",
        "noord-holland" => "region.noord-holland",
        "overijssel" => "region.overijssel",
        "utrecht" => "region.utrecht",
        "zeeland" => "region.zeeland",
        "zuid-holland" => "region.zuid-holland",
        _ => return code,
    };
    lang.t(key)
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
            accounts::Error::Refused(r) => r.into(),
            e => Failure::internal(e),
        }
    }
}

impl From<caseload::Error> for Failure {
    fn from(e: caseload::Error) -> Self {
        match e {
            caseload::Error::Refused(r) => r.into(),
            e => Failure::internal(e),
        }
    }
}

impl From<enroll::Error> for Failure {
    fn from(e: enroll::Error) -> Self {
        match e {
            enroll::Error::Refused(r) => r.into(),
            e => Failure::internal(e),
        }
    }
}

impl From<casework::Error> for Failure {
    fn from(e: casework::Error) -> Self {
        match e {
            casework::Error::NotFound => Failure::NotFound,
            casework::Error::Screening(e) => e.into(),
            casework::Error::Refused(r) => r.into(),
            e => Failure::internal(e),
        }
    }
}

impl From<research::Error> for Failure {
    fn from(e: research::Error) -> Self {
        match e {
            // The pages build their queries themselves: a malformed one is the server's fault.
            research::Error::BudgetExhausted { needed, remaining } => {
                Refusal::BudgetExhausted { needed, remaining }.into()
            }
            research::Error::PersonBudgetExhausted {
                needed, remaining, ..
            } => Refusal::PersonBudgetExhausted { needed, remaining }.into(),
            research::Error::NoData => Refusal::NoData.into(),
            research::Error::Refused(r) => r.into(),
            e => Failure::internal(e),
        }
    }
}

impl From<management::Error> for Failure {
    fn from(e: management::Error) -> Self {
        match e {
            management::Error::NoProject => Refusal::NoManagementProject.into(),
            management::Error::Refused(r) => r.into(),
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
            crate::lifecycle::export::Error::UnknownPerson(p) => Refusal::NoPerson(p).into(),
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
            Error::Refused(r) => r.into(),
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
            Error::Refused(r) => r.into(),
            e => Failure::internal(e),
        }
    }
}

impl From<crate::registry::screening::Error> for Failure {
    fn from(e: crate::registry::screening::Error) -> Self {
        use crate::registry::screening::Error;
        match e {
            Error::NotScreened(state) => Failure::NotScreened(state),
            Error::Refused(r) => r.into(),
            e => Failure::internal(e),
        }
    }
}

impl From<crate::lifecycle::supervision::Error> for Failure {
    fn from(e: crate::lifecycle::supervision::Error) -> Self {
        match e {
            crate::lifecycle::supervision::Error::Refused(r) => r.into(),
            e => Failure::internal(e),
        }
    }
}

impl From<tokio::task::JoinError> for Failure {
    fn from(e: tokio::task::JoinError) -> Self {
        Failure::internal(e)
    }
}

impl From<crate::base::db::Error> for Failure {
    fn from(e: crate::base::db::Error) -> Self {
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

    #[test]
    fn every_refusal_is_said_in_both_languages() {
        for r in Refusal::examples() {
            let (nl, en) = (refusal(Lang::Nl, &r), refusal(Lang::En, &r));
            for said in [&nl, &en] {
                assert!(
                    !said.contains('{') && !said.contains("refusal."),
                    "{r:?}: {said}"
                );
            }
            assert_ne!(nl, en, "{r:?} is not translated");
        }
        // `examples` holds one of each: a variant added to `Refusal` must be added there too.
        let kinds: std::collections::HashSet<_> = Refusal::examples()
            .iter()
            .map(std::mem::discriminant)
            .collect();
        assert_eq!(kinds.len(), Refusal::examples().len());
    }

    #[tokio::test]
    async fn a_users_mistake_is_a_4xx_and_a_server_failure_a_500_whatever_the_module() {
        assert_eq!(status_of(casework::Error::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(casework::Error::Refused(Refusal::CommentRequired)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(casework::Error::Db(crate::base::db::Error::NoRows)),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_of(accounts::Error::Refused(Refusal::UsernameInvalid)),
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
            status_of(management::Error::Research(research::Error::Refused(
                Refusal::ProjectBudgetInvalid
            ))),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(crate::base::db::Error::NoRows),
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
