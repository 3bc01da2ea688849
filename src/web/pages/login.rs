//! Sign-in with password and TOTP code, sign-out, and the account page.
//!
//! Two brakes on guessing: the account locks after repeated failures (`accounts`), and each
//! client address may fail only [`Limiter::MAX_FAILURES`] times per [`Limiter::WINDOW_MS`] across
//! all usernames, so one address cannot try a password against many accounts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use crate::registry::accounts::{self, Role};
use crate::web::access::{clear_session_cookie, session_cookie, FormFields, Signed};
use crate::web::i18n::Lang;
use crate::web::page::{csrf_field, esc, frame};
use crate::web::{AppState, ClientAddr};

/// Failed logins per client address in a sliding window.
#[derive(Default)]
pub struct Limiter {
    failures: Mutex<HashMap<IpAddr, Vec<i64>>>,
}

impl Limiter {
    pub const MAX_FAILURES: usize = 20;
    pub const WINDOW_MS: i64 = 10 * 60 * 1000;

    /// Reserves one failure for `ip` before its password is checked, or refuses when the address
    /// has used up its window. Reserving first is what bounds parallel attempts: checking first
    /// and recording after let 60 parallel failures through a limit of 20. A login that succeeds
    /// gives its reservation back ([`Limiter::release`]).
    fn reserve(&self, ip: IpAddr, now_ms: i64) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the map: forget addresses with nothing recent.
        if map.len() > 10_000 {
            map.retain(|_, l| l.iter().any(|t| now_ms - t < Self::WINDOW_MS));
        }
        let list = map.entry(ip).or_default();
        list.retain(|t| now_ms - t < Self::WINDOW_MS);
        if list.len() >= Self::MAX_FAILURES {
            return false;
        }
        list.push(now_ms);
        true
    }

    /// Gives back a reservation made at `now_ms`: the login succeeded.
    fn release(&self, ip: IpAddr, now_ms: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&ip) {
            if let Some(i) = list.iter().rposition(|t| *t == now_ms) {
                list.swap_remove(i);
            }
        }
    }
}

/// The client's IP address (0.0.0.0 when the server runs without connection info).
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<ClientAddr>>()
                .map(|c| c.0 .0.ip())
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        ))
    }
}

pub(crate) use crate::web::signin::{login_page, login_page_keeping, resume_page, Resume};

pub async fn form(lang: Lang) -> Html<String> {
    login_page(lang, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    code: String,
    #[serde(flatten)]
    resume: Resume,
}

/// Where each role starts after signing in.
fn home(role: Role) -> &'static str {
    match role {
        Role::Officer => "/caseload",
        Role::Administrator => "/admin",
        Role::Auditor => "/audit",
        Role::Manager => "/management",
        Role::Researcher => "/account",
    }
}

pub async fn submit(
    State(state): State<AppState>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    Form(form): Form<LoginForm>,
) -> Response {
    let now = crate::base::time::now_ms();
    if !state.limiter.reserve(ip, now) {
        // Refused without looking at the password; the refusal is audited all the same.
        let db = state.ctx.db.clone();
        let username = form.username;
        let audited = tokio::task::spawn_blocking(move || {
            crate::trust::audit::append(
                &db.lock(),
                now,
                "anonymous",
                "login.throttled",
                &format!("client:{ip}"),
                &serde_json::json!({ "username": crate::trust::audit::bounded(username.trim()) })
                    .to_string(),
            )
        })
        .await;
        if let Err(e) = audited
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            return crate::web::page::fail(lang, crate::web::page::Failure::internal(e));
        }
        return (
            StatusCode::TOO_MANY_REQUESTS,
            login_page(lang, Some(lang.t("login.throttled"))),
        )
            .into_response();
    }
    let db = state.ctx.db.clone();
    let result = tokio::task::spawn_blocking(move || {
        accounts::login(
            &db,
            form.username.trim(),
            &form.password,
            &form.code,
            &ip.to_string(),
            now,
        )
    })
    .await;
    match result {
        Ok(Ok(session)) => {
            state.limiter.release(ip, now);
            let to = if session.account.must_change_password {
                "/account/password"
            } else {
                home(session.account.role)
            };
            let kept = form.resume.alert_id().filter(|_| {
                session.account.role == Role::Officer && !session.account.must_change_password
            });
            let mut response = match kept {
                Some(id) => resume_page(lang, &session, &form.resume, id).into_response(),
                None => Redirect::to(to).into_response(),
            };
            response.headers_mut().append(
                header::SET_COOKIE,
                session_cookie(&session.token, state.tls),
            );
            response
        }
        Ok(Err(e @ (accounts::Error::BadCredentials | accounts::Error::Locked))) => {
            let key = if matches!(e, accounts::Error::Locked) {
                "login.locked"
            } else {
                "login.failed"
            };
            // A kept step survives a mistyped password too.
            let resume = Some(&form.resume).filter(|r| r.alert_id().is_some());
            (
                StatusCode::UNAUTHORIZED,
                login_page_keeping(lang, Some(lang.t(key)), resume),
            )
                .into_response()
        }
        Ok(Err(e)) => crate::web::page::fail(lang, e),
        Err(e) => crate::web::page::fail(lang, e),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
) -> Response {
    if let Err(e) = accounts::logout(&state.ctx.db, &session, crate::base::time::now_ms()) {
        return crate::web::page::fail(lang, e);
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie());
    response
}

fn password_page(lang: Lang, session: &accounts::Session, message: Option<&str>) -> Html<String> {
    let note = if session.account.must_change_password {
        format!("<p>{}</p>", lang.t("password.must_change"))
    } else {
        String::new()
    };
    let msg = message
        .map(|m| format!("<p class=\"error\">{}</p>", esc(m)))
        .unwrap_or_default();
    frame(
        lang,
        Some(session),
        lang.t("password.change"),
        &format!(
            "{note}{msg}<form method=\"post\" action=\"/account/password\">{}\
             <p><label>{}<br><input name=\"current\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
             <p><label>{}<br><input name=\"new\" type=\"password\" autocomplete=\"new-password\" minlength=\"{min}\" required></label></p>\
             <p><label>{}<br><input name=\"repeat\" type=\"password\" autocomplete=\"new-password\" minlength=\"{min}\" required></label></p>\
             <p><button id=\"change\">{}</button></p></form>",
            csrf_field(session),
            lang.t("password.current"),
            lang.t("password.new"),
            lang.t("password.repeat"),
            lang.t("save"),
            min = accounts::MIN_PASSWORD_LEN,
        ),
    )
}

pub async fn password_form(lang: Lang, Signed(session): Signed) -> Html<String> {
    password_page(lang, &session, None)
}

pub async fn change_password(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let (current, new) = (form.get("current").to_string(), form.get("new").to_string());
    if new != form.get("repeat") {
        return (
            StatusCode::BAD_REQUEST,
            password_page(lang, &session, Some(lang.t("password.mismatch"))),
        )
            .into_response();
    }
    let (db, s) = (state.ctx.db.clone(), session.clone());
    let result = tokio::task::spawn_blocking(move || {
        accounts::change_password(&db, &s, &current, &new, crate::base::time::now_ms())
    })
    .await;
    match result {
        Ok(Ok(())) => Redirect::to(home(session.account.role)).into_response(),
        Ok(Err(accounts::Error::BadCredentials)) => (
            StatusCode::BAD_REQUEST,
            password_page(lang, &session, Some(lang.t("password.wrong"))),
        )
            .into_response(),
        Ok(Err(accounts::Error::Refused(r))) => (
            StatusCode::BAD_REQUEST,
            password_page(lang, &session, Some(&crate::web::page::refusal(lang, &r))),
        )
            .into_response(),
        Ok(Err(e)) => crate::web::page::fail(lang, e),
        Err(e) => crate::web::page::fail(lang, e),
    }
}
