//! The access check every request passes before its handler, and the headers every response gets.

use std::collections::HashMap;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

pub use super::cookies::cookie;
use super::i18n::Lang;
use super::{page, AppState, ClientAddr};
use crate::registry::accounts::{self, Role, Session};
use crate::trust::audit;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    /// Everyone, signed in or not.
    Anyone,
    /// Any signed-in account.
    SignedIn,
    /// Signed-in accounts with one of these roles.
    Roles(&'static [Role]),
    /// A research bearer token, checked by the handler (no session, no cookies).
    Token,
}

pub const SESSION_COOKIE: &str = "nw_session";
const LANG_COOKIE: &str = "nw_lang";
/// The largest form a session may post (the CSRF check reads the whole body).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A form posted by a session, already read (and CSRF-checked) by [`enforce`].
#[derive(Debug, Clone, Default)]
pub struct FormFields(pub HashMap<String, String>);

impl FormFields {
    /// The fields of a URL-encoded form body. A body that is not one gives no fields (the CSRF
    /// check then refuses it); a field given twice keeps its last value.
    pub fn parse(body: &[u8]) -> Self {
        Self(
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }
}

pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let now = crate::base::time::now_ms();
    let path = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = if parts.method == Method::HEAD {
        Method::GET
    } else {
        parts.method.clone()
    };
    let lang = Lang::of(&parts);
    parts.extensions.insert(lang);
    let Some(rule) = state
        .rules
        .iter()
        .find(|r| r.method == method && r.path == path)
    else {
        // Fail closed: a route the table does not know is refused (it cannot happen while the
        // router is built from the table, and tests/authorization.rs checks that).
        return page::error(lang, StatusCode::FORBIDDEN, lang.t("error.no_rule"));
    };

    // Every request must be addressed to this server by name (no DNS rebinding), and a form post
    // that carries an Origin (every browser's does) must come from this site: same scheme, host
    // and port.
    let header_text = |name| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let host = header_text(header::HOST).unwrap_or_default();
    if !state.origin.host_ok(&host) {
        return refuse(
            &state,
            &parts,
            now,
            "anonymous",
            Refusal::UnknownHost,
            serde_json::json!({ "host": audit::bounded(&host) }),
            page::error(lang, StatusCode::BAD_REQUEST, lang.t("error.unknown_host")),
        );
    }
    if parts.method == Method::POST {
        if let Some(origin) = header_text(header::ORIGIN) {
            if !state.origin.origin_ok(&origin) {
                return refuse(
                    &state,
                    &parts,
                    now,
                    "anonymous",
                    Refusal::CrossOrigin,
                    serde_json::json!({ "origin": audit::bounded(&origin) }),
                    page::error(lang, StatusCode::FORBIDDEN, lang.t("error.cross_origin")),
                );
            }
        }
    }

    let session = match cookie(&parts, SESSION_COOKIE) {
        Some(token) => match accounts::session(&state.ctx.db, token, now) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                return page::error(
                    lang,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    lang.t("error.internal"),
                );
            }
        },
        None => None,
    };

    let allowed = match (rule.access, &session) {
        (Access::Anyone | Access::Token, _) => true,
        (_, None) => {
            if parts.method == Method::GET {
                return Redirect::to("/login").into_response();
            }
            // A workflow step posted after the session expired: ask to sign in again and keep
            // what was typed (crate::web::pages::login::Resume).
            if path == "/alerts/{id}/transition" {
                if let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await {
                    let FormFields(fields) = FormFields::parse(&bytes);
                    if let Some(resume) =
                        crate::web::signin::Resume::of_post(parts.uri.path(), &fields)
                    {
                        return (
                            StatusCode::UNAUTHORIZED,
                            crate::web::signin::login_page_keeping(
                                lang,
                                Some(lang.t("session.expired")),
                                Some(&resume),
                            ),
                        )
                            .into_response();
                    }
                }
            }
            return page::error(lang, StatusCode::UNAUTHORIZED, lang.t("login.first"));
        }
        (Access::SignedIn, Some(_)) => true,
        (Access::Roles(roles), Some(s)) => roles.contains(&s.account.role),
    };
    if !allowed {
        let s = session.as_ref().expect("checked above");
        let client = parts
            .extensions
            .get::<ConnectInfo<ClientAddr>>()
            .map(|c| c.0 .0.ip().to_string())
            .unwrap_or_default();
        if let Err(e) = audit::append(
            &state.ctx.db.lock(),
            now,
            &s.account.username,
            "access.denied",
            &format!("{} {}", parts.method, parts.uri.path()),
            &serde_json::json!({"role": s.account.role.as_str(), "client": client}).to_string(),
        ) {
            tracing::error!(error = %e, "audit append failed");
            return page::error(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                lang.t("error.internal"),
            );
        }
        return page::error(lang, StatusCode::FORBIDDEN, lang.t("forbidden"));
    }

    // Until a user has replaced the password an administrator handed them, the password page
    // and signing out are all they can reach.
    if let Some(s) = &session {
        let exempt = matches!(rule.access, Access::Anyone | Access::Token)
            || path == "/account/password"
            || path == "/logout";
        if s.account.must_change_password && !exempt {
            return if parts.method == Method::GET {
                Redirect::to("/account/password").into_response()
            } else {
                page::error(lang, StatusCode::FORBIDDEN, lang.t("password.must_change"))
            };
        }
    }

    // A session's form post must carry the session's CSRF token. SameSite=Strict cookies
    // already keep other sites' forms from carrying the session; this is the second lock.
    let body = match (&session, parts.method == Method::POST, rule.access) {
        (Some(s), true, Access::SignedIn | Access::Roles(_)) => {
            let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
                return refuse(
                    &state,
                    &parts,
                    now,
                    &s.account.username,
                    Refusal::FormTooLarge,
                    serde_json::json!({ "limit_bytes": MAX_FORM_BYTES }),
                    page::error(
                        lang,
                        StatusCode::PAYLOAD_TOO_LARGE,
                        lang.t("error.form_too_large"),
                    ),
                );
            };
            let FormFields(fields) = FormFields::parse(&bytes);
            let submitted = fields.get("csrf").map(String::as_str).unwrap_or("");
            if !accounts::csrf_ok(s, submitted) {
                return refuse(
                    &state,
                    &parts,
                    now,
                    &s.account.username,
                    Refusal::Csrf,
                    serde_json::json!({}),
                    page::error(lang, StatusCode::FORBIDDEN, lang.t("csrf")),
                );
            }
            parts.extensions.insert(FormFields(fields));
            Body::from(bytes)
        }
        _ => body,
    };
    let signed_in = session.is_some();
    if let Some(s) = session {
        parts.extensions.insert(s);
    }
    let remember = Lang::requested(&parts);
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if signed_in {
        // Personal data must not linger in shared caches or the browser's back-forward cache.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(lang) = remember {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={}; Path=/; SameSite=Strict; Max-Age=31536000",
            lang.code()
        )) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// Why [`enforce`] refused a request before its handler ran; the audit action says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownHost,
    CrossOrigin,
    Csrf,
    FormTooLarge,
}

impl Refusal {
    fn action(self) -> &'static str {
        match self {
            Refusal::UnknownHost => "access.refused-host",
            Refusal::CrossOrigin => "access.refused-origin",
            Refusal::Csrf => "access.refused-csrf",
            Refusal::FormTooLarge => "access.refused-form-size",
        }
    }
}

/// Audits a refusal (bounded fields, see [`audit::append`]) and returns `response`, or a 500 when
/// the refusal cannot be recorded: nothing is refused off the record.
fn refuse(
    state: &AppState,
    parts: &axum::http::request::Parts,
    now: i64,
    actor: &str,
    why: Refusal,
    mut detail: serde_json::Value,
    response: Response,
) -> Response {
    let client = parts
        .extensions
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0 .0.ip().to_string())
        .unwrap_or_default();
    detail["client"] = client.into();
    tracing::warn!(action = why.action(), path = %parts.uri.path(), "request refused");
    if let Err(e) = audit::append(
        &state.ctx.db.lock(),
        now,
        actor,
        why.action(),
        &format!("{} {}", parts.method, parts.uri.path()),
        &detail.to_string(),
    ) {
        tracing::error!(error = %e, "audit append failed");
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
    }
    response
}

/// Headers for every response: no framing, no sniffing, no referrers to other sites, no scripts,
/// no `<base>`; over TLS, HSTS (browsers then never try plain HTTP for this host).
pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    if state.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it, browsers send `Origin: null` on form posts, which the origin
    // check then (rightly) refuses. `same-origin` sends nothing to other sites.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The session cookie for a new login.
pub fn session_cookie(token: &str, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("hex token is a valid header value")
}

pub fn clear_session_cookie() -> HeaderValue {
    HeaderValue::from_static("nw_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The signed-in session, put there by [`enforce`] for routes that need one.
pub struct Signed(pub Session);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Signed {
    type Rejection = StatusCode;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .map(Signed)
            .ok_or(StatusCode::UNAUTHORIZED)
    }
}

/// The session if someone is signed in (for pages anyone may see).
pub struct MaybeSigned(pub Option<Session>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for MaybeSigned {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(MaybeSigned(parts.extensions.get::<Session>().cloned()))
    }
}

/// The posted form, read by [`enforce`].
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for FormFields {
    type Rejection = StatusCode;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<FormFields>()
            .cloned()
            .unwrap_or_default())
    }
}
