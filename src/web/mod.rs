//! HTTP: the only module that knows HTTP.
//!
//! * the officers', administrators', auditors' web UI: server-rendered HTML, Dutch by default,
//!   English with `?lang=en` (remembered in a cookie);
//! * the research API under `/api/v1/research` (bearer tokens) and its OpenAPI document.
//!
//! **Access control lives in one table.** [`routes`] lists every route with the [`Access`] it
//! requires, and the router is built from that table only, so no route exists without a rule.
//! [`access::enforce`] runs before every handler: it finds the signed-in session, refuses the
//! wrong role, checks the CSRF token of every form a session posts, and records refusals in the
//! audit log. Handlers then check *which* objects the account may see (an officer's caseload,
//! `casework`), which no table can express.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::base::Context;
use crate::registry::accounts::Role;

mod access;
mod api;
mod cookies;
pub mod i18n;
mod origin;
mod page;
mod pages;
pub mod pdf;
mod signin;
pub mod tls;

pub use access::{Access, FormFields};
pub use api::research::{ApiDoc, BudgetAnswer, ErrorBody};
pub use origin::SiteOrigin;

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    /// Served over TLS: session cookies then carry `Secure`.
    pub tls: bool,
    /// The site requests must be addressed to (`Host`, and `Origin` on form posts).
    origin: Arc<SiteOrigin>,
    limiter: Arc<pages::login::Limiter>,
    /// Research requests per token per minute.
    research_rate: Arc<crate::research::TokenRate>,
    rules: Arc<Vec<Rule>>,
}

impl AppState {
    pub fn new(ctx: Context, tls: bool, origin: SiteOrigin) -> Self {
        page::set_zone(ctx.config.http.zone());
        Self {
            ctx,
            tls,
            origin: Arc::new(origin),
            limiter: Arc::new(pages::login::Limiter::default()),
            research_rate: Arc::new(crate::research::TokenRate::default()),
            rules: Arc::new(rules()),
        }
    }
}

/// One route and who may use it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

const OFFICER: Access = Access::Roles(&[Role::Officer]);
const ADMIN: Access = Access::Roles(&[Role::Administrator]);
const AUDITOR: Access = Access::Roles(&[Role::Auditor]);
const MANAGER: Access = Access::Roles(&[Role::Manager]);

/// Every route, its access rule and its handler. The router and the access check are both built
/// from this list; `tests/authorization.rs` checks every entry against every role.
fn routes() -> Vec<(Rule, MethodRouter<AppState>)> {
    use Access::*;
    let r = |method: Method, path, access| Rule {
        method,
        path,
        access,
    };
    vec![
        (r(Method::GET, "/", Anyone), get(pages::home::landing)),
        (r(Method::GET, "/healthz", Anyone), get(|| async { "ok" })),
        (r(Method::GET, "/readyz", Anyone), get(readyz)),
        (r(Method::GET, "/login", Anyone), get(pages::login::form)),
        (
            r(Method::POST, "/login", Anyone),
            post(pages::login::submit),
        ),
        (
            r(Method::POST, "/logout", SignedIn),
            post(pages::login::logout),
        ),
        (
            r(Method::GET, "/account", SignedIn),
            get(pages::notifications::account),
        ),
        (
            r(Method::POST, "/account/notifications", SignedIn),
            post(pages::notifications::save),
        ),
        (
            r(Method::GET, "/account/password", SignedIn),
            get(pages::login::password_form),
        ),
        (
            r(Method::POST, "/account/password", SignedIn),
            post(pages::login::change_password),
        ),
        // Officers: their caseload, its persons, alerts, evidence, workflow and stations.
        (
            r(Method::GET, "/caseload", OFFICER),
            get(pages::person::caseload),
        ),
        (
            r(Method::GET, "/persons/{id}", OFFICER),
            get(pages::person::page),
        ),
        (
            r(Method::GET, "/alerts", OFFICER),
            get(pages::officer::alerts),
        ),
        (
            r(Method::GET, "/alerts/export", OFFICER),
            get(pages::officer::export),
        ),
        (
            r(Method::GET, "/alerts/{id}", OFFICER),
            get(pages::officer::alert),
        ),
        (
            r(Method::POST, "/alerts/{id}/transition", OFFICER),
            post(pages::officer::transition),
        ),
        (
            r(Method::GET, "/alerts/{id}/report", OFFICER),
            get(pages::report::page),
        ),
        (
            r(Method::GET, "/alerts/{id}/report.pdf", OFFICER),
            get(pages::report::pdf),
        ),
        (
            r(Method::GET, "/alerts/{id}/dossier", OFFICER),
            get(pages::officer::dossier),
        ),
        (
            r(Method::POST, "/alerts/{id}/hold", OFFICER),
            post(pages::officer::hold_alert),
        ),
        (
            r(Method::POST, "/alerts/{id}/hold/release", OFFICER),
            post(pages::officer::release_hold),
        ),
        (
            r(Method::GET, "/stations", OFFICER),
            get(pages::officer::stations),
        ),
        // Administrators: accounts, persons, devices, stations, caseloads, research budgets.
        (r(Method::GET, "/admin", ADMIN), get(pages::admin::overview)),
        (
            r(Method::POST, "/admin/accounts", ADMIN),
            post(pages::admin::create_account),
        ),
        (
            r(Method::POST, "/admin/accounts/{id}/disable", ADMIN),
            post(pages::admin::disable_account),
        ),
        (
            r(Method::POST, "/admin/accounts/{id}/role", ADMIN),
            post(pages::admin::set_role),
        ),
        (
            r(Method::POST, "/admin/accounts/{id}/manager", ADMIN),
            post(pages::admin::set_manager),
        ),
        (
            r(Method::POST, "/admin/accounts/{id}/reset", ADMIN),
            post(pages::admin::reset_account),
        ),
        (
            r(Method::POST, "/admin/accounts/{id}/screening", ADMIN),
            post(pages::admin::record_screening),
        ),
        (
            r(Method::POST, "/admin/persons", ADMIN),
            post(pages::admin::add_person),
        ),
        (
            r(Method::POST, "/admin/persons/export", ADMIN),
            post(pages::admin::export_person),
        ),
        (
            r(Method::POST, "/admin/persons/close", ADMIN),
            post(pages::admin::close_person),
        ),
        (
            r(Method::POST, "/admin/persons/hold", ADMIN),
            post(pages::admin::hold_person),
        ),
        (
            r(Method::POST, "/admin/holds/{id}/release", ADMIN),
            post(pages::admin::release_hold),
        ),
        (
            r(Method::POST, "/admin/devices", ADMIN),
            post(pages::admin::assign_device),
        ),
        (
            r(Method::POST, "/admin/devices/return", ADMIN),
            post(pages::admin::return_device),
        ),
        (
            r(Method::POST, "/admin/stations", ADMIN),
            post(pages::admin::add_station),
        ),
        (
            r(Method::POST, "/admin/stations/{name}/revoke", ADMIN),
            post(pages::admin::revoke_station),
        ),
        (
            r(Method::POST, "/admin/caseloads", ADMIN),
            post(pages::admin::assign_caseload),
        ),
        (
            r(Method::POST, "/admin/caseloads/{id}/end", ADMIN),
            post(pages::admin::end_caseload),
        ),
        (
            r(Method::POST, "/admin/research/projects", ADMIN),
            post(pages::admin::create_project),
        ),
        (
            r(Method::POST, "/admin/research/tokens", ADMIN),
            post(pages::admin::issue_token),
        ),
        (
            r(Method::POST, "/admin/research/tokens/{id}/revoke", ADMIN),
            post(pages::admin::revoke_token),
        ),
        // Auditors: the audit log, its verification and exports.
        (
            r(Method::GET, "/audit", AUDITOR),
            get(pages::auditor::browse),
        ),
        (
            r(Method::GET, "/audit/export", AUDITOR),
            get(pages::auditor::export),
        ),
        (
            r(Method::GET, "/audit/compliance", AUDITOR),
            get(pages::auditor::compliance),
        ),
        (
            r(Method::POST, "/audit/reviews", AUDITOR),
            post(pages::auditor::record_review),
        ),
        // Managers: DP figures only.
        (
            r(Method::GET, "/management", MANAGER),
            get(pages::management::page),
        ),
        (
            r(Method::POST, "/management/release", MANAGER),
            post(pages::management::release),
        ),
        // Researchers: bearer tokens, checked by the research module itself.
        (
            r(Method::POST, "/api/v1/research/query", Token),
            post(api::research::research_query),
        ),
        (
            r(Method::GET, "/api/v1/research/budget", Token),
            get(api::research::research_budget),
        ),
        (
            r(Method::GET, "/api/openapi.json", Anyone),
            get(api::research::openapi),
        ),
    ]
}

/// The access rules of every route (what the authorisation-matrix test walks).
pub fn rules() -> Vec<Rule> {
    routes().into_iter().map(|(rule, _)| rule).collect()
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (rule, handler) in routes() {
        router = router.route(rule.path, handler);
    }
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::enforce,
        ))
        // No such page, or not by this method: the same page in the reader's language.
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::security_headers,
        ))
        .with_state(state)
}

/// `/readyz` on the web listener too, for a load balancer in front of it.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    crate::ops::readiness::respond(state.ctx.clone()).await
}

async fn not_found(lang: i18n::Lang) -> axum::response::Response {
    page::error(lang, axum::http::StatusCode::NOT_FOUND, lang.t("not_found"))
}

/// The client's address, for login rate limiting and the audit log.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Serves the web UI and API on `listener` until `shutdown` resolves.
pub async fn serve<L>(
    listener: L,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    for<'a> ClientAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
