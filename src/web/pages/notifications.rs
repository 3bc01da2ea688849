//! The notification settings on the account page: an officer's work address and the alert kinds
//! to be e-mailed about; a manager's address for escalations. A mistake is shown in place, in
//! the user's language, with what they typed kept.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::alerts::AlertKind;
use crate::notify::settings::{self, Settings};
use crate::registry::accounts::{Role, Session};
use crate::web::access::{FormFields, Signed};
use crate::web::i18n::Lang;
use crate::web::page::{blocking, csrf_field, esc, fail, frame, role_label, Failure};
use crate::web::pages::officer::kind_label;
use crate::web::AppState;

impl From<crate::notify::Error> for Failure {
    fn from(e: crate::notify::Error) -> Self {
        match e {
            crate::notify::Error::Refused(r) => r.into(),
            e => Failure::internal(e),
        }
    }
}

/// Whether the role gets mail at all: officers about new alerts, managers about escalations.
fn notified(role: Role) -> bool {
    matches!(role, Role::Officer | Role::Manager)
}

/// The account page: who is signed in, and their notification settings.
pub async fn account(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
) -> Response {
    let (db, id) = (state.ctx.db.clone(), session.account.id);
    match blocking(move || settings::of(&db.lock(), id)).await {
        Ok(s) => page(&state, lang, &session, &s, None).into_response(),
        Err(f) => fail(lang, f),
    }
}

fn page(
    state: &AppState,
    lang: Lang,
    session: &Session,
    settings: &Settings,
    error: Option<&'static str>,
) -> Html<String> {
    let mut body = format!(
        "<p>{}: <strong>{}</strong></p><p>{}: {}</p><p><a href=\"/account/password\">{}</a></p>",
        lang.t("username"),
        esc(&session.account.username),
        lang.t("role"),
        role_label(lang, session.account.role),
        lang.t("password.change"),
    );
    if notified(session.account.role) {
        body += &section(state, lang, session, settings, error);
    }
    frame(lang, Some(session), lang.t("account"), &body)
}

fn section(
    state: &AppState,
    lang: Lang,
    session: &Session,
    settings: &Settings,
    error: Option<&'static str>,
) -> String {
    let t = |k| lang.t(k);
    let configured = if state.ctx.config.notifications.smtp.is_some() {
        String::new()
    } else {
        format!("<p class=\"note\">{}</p>", t("notify.not_configured"))
    };
    let explain = if session.account.role == Role::Officer {
        t("notify.explain.officer")
    } else {
        t("notify.explain.manager")
    };
    let error = error
        .map(|k| {
            format!(
                "<p class=\"error\" id=\"notify-error\" role=\"alert\">{}</p>",
                t(k)
            )
        })
        .unwrap_or_default();
    let kinds = if session.account.role == Role::Officer {
        let boxes: String = AlertKind::ALL
            .iter()
            .map(|k| {
                let checked = if settings.kinds.contains(k) { " checked" } else { "" };
                format!(
                    "<label class=\"check\"><input type=\"checkbox\" name=\"kind.{}\"{checked}> {}</label>",
                    k.as_str(),
                    kind_label(lang, *k)
                )
            })
            .collect();
        format!(
            "<fieldset><legend>{}</legend>{boxes}</fieldset>",
            t("notify.kinds")
        )
    } else {
        String::new()
    };
    let manager = settings
        .manager
        .as_deref()
        .map(|m| format!("<p>{}: {}</p>", t("notify.manager"), esc(m)))
        .unwrap_or_default();
    format!(
        "<h2 id=\"notifications\">{}</h2><p>{explain}</p>{configured}{error}\
         <form method=\"post\" action=\"/account/notifications\">{}\
         <p><label>{}<br><input name=\"email\" id=\"email\" type=\"email\" autocomplete=\"email\" value=\"{}\"></label></p>\
         {kinds}<p><button id=\"save-notifications\">{}</button></p></form>{manager}",
        t("notify.title"),
        csrf_field(session),
        t("notify.email"),
        esc(settings.email.as_deref().unwrap_or("")),
        t("save"),
    )
}

/// Saves the signed-in account's own settings. Saving the same form twice leaves the same state.
pub async fn save(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let email = form.get("email").trim().to_string();
    let kinds: Vec<AlertKind> = if session.account.role == Role::Officer {
        AlertKind::ALL
            .into_iter()
            .filter(|k| !form.get(&format!("kind.{}", k.as_str())).is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let typed = Settings {
        email: Some(email.clone()).filter(|e| !e.is_empty()),
        kinds: kinds.clone(),
        manager: None,
    };
    let problem = if !email.is_empty() && !settings::valid_email(&email) {
        Some("notify.bad_email")
    } else if email.is_empty() && !kinds.is_empty() {
        Some("notify.email_needed")
    } else if !notified(session.account.role) {
        return fail(lang, Failure::NotFound);
    } else {
        None
    };
    if let Some(key) = problem {
        return (
            StatusCode::BAD_REQUEST,
            page(&state, lang, &session, &typed, Some(key)),
        )
            .into_response();
    }
    let (db, account) = (state.ctx.db.clone(), session.account.clone());
    let saved = blocking(move || {
        settings::save_own(
            &db,
            &account,
            typed.email.as_deref(),
            &kinds,
            crate::base::time::now_ms(),
        )
    })
    .await;
    match saved {
        Ok(()) => Redirect::to("/account#notifications").into_response(),
        Err(f) => fail(lang, f),
    }
}
