//! The auditor's pages: browse the audit log with filters, see whether the hash chain verifies,
//! export entries with their hashes (CSV or JSON) so the chain can be checked outside nachtwacht.
//! Looking at the log is itself logged.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::registry::accounts::Session;
use crate::trust::audit::{self, Entry, Verdict};
use crate::web::access::Signed;
use crate::web::i18n::Lang;
use crate::web::page::{esc, frame, time};
use crate::web::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct AuditFilter {
    actor: Option<String>,
    /// A case reference: entries about that person or their alerts.
    person: Option<String>,
    action: Option<String>,
    /// `YYYY-MM-DD`, inclusive.
    from: Option<String>,
    to: Option<String>,
    /// `csv` or `json` (export only).
    format: Option<String>,
}

impl AuditFilter {
    fn matches(&self, e: &Entry) -> bool {
        // Days are local days, as the page shows times.
        let day = |ms: i64| crate::web::page::zone().date_of(ms).to_string();
        let set = |o: &Option<String>| {
            o.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        set(&self.actor).is_none_or(|a| e.actor == a)
            && set(&self.action).is_none_or(|a| e.action.starts_with(&a))
            && set(&self.from).is_none_or(|f| day(e.at_ms) >= f)
            && set(&self.to).is_none_or(|t| day(e.at_ms) <= t)
    }

    fn json(&self) -> String {
        serde_json::json!({"actor": self.actor, "person_reference": self.person, "action": self.action,
                           "from": self.from, "to": self.to})
        .to_string()
    }
}

/// Reads the matching entries and the chain verdict, and records the read.
fn read(
    state: &AppState,
    who: &str,
    what: &str,
    filter: &AuditFilter,
) -> Result<(Vec<Entry>, Verdict), audit::Error> {
    let conn = state.ctx.db.lock();
    let verdict = audit::verify_all(&state.ctx.dir, &conn, None)?;
    // A person filter: the person and their alerts (an unknown reference matches nothing).
    let person = match filter
        .person
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(reference) => {
            let id = crate::registry::enroll::person_id(&conn, reference)?;
            let alerts = match id {
                Some(id) => crate::alerts::store::ids_of_person(&conn, id)?,
                None => vec![],
            };
            Some((id, alerts))
        }
    };
    let entries: Vec<Entry> = audit::entries(&conn)?
        .into_iter()
        .filter(|e| filter.matches(e))
        .filter(|e| match &person {
            None => true,
            Some((Some(id), alerts)) => e.is_about_person(*id, alerts),
            Some((None, _)) => false,
        })
        .collect();
    audit::append(
        &conn,
        crate::base::time::now_ms(),
        who,
        what,
        "audit_log",
        &filter.json(),
    )?;
    Ok((entries, verdict))
}

pub async fn browse(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Query(filter): Query<AuditFilter>,
) -> Response {
    page(&state, lang, &session, &filter, None)
}

/// A review the rules refused, shown in place: in the row of the officer it was about, with
/// what was typed kept.
struct RefusedReview {
    message: String,
    fields: std::collections::HashMap<String, String>,
}

fn page(
    state: &AppState,
    lang: Lang,
    session: &Session,
    filter: &AuditFilter,
    refused: Option<&RefusedReview>,
) -> Response {
    let (entries, verdict) = match read(state, &session.account.username, "audit.view", filter) {
        Ok(r) => r,
        Err(e) => return crate::web::page::fail(lang, e),
    };
    // The head as it stands now: what an auditor records outside nachtwacht.
    let head = match audit::head(&state.ctx.db.lock()) {
        Ok(h) => h,
        Err(e) => return crate::web::page::fail(lang, e),
    };
    let head = head
        .map(|(seq, hash)| {
            format!(
                "; {}: <code id=\"head\">{seq}:{}</code>",
                lang.t("head"),
                esc(&hash)
            )
        })
        .unwrap_or_default();
    let chain = match &verdict {
        Verdict::Intact { entries } => format!(
            "<strong id=\"chain\">{}</strong> ({entries} {}{head})",
            lang.t("chain.intact"),
            lang.t("entries")
        ),
        Verdict::Broken { at_seq, reason } => format!(
            "<strong id=\"chain\" class=\"error\">{}</strong>: #{at_seq} {}",
            lang.t("chain.broken"),
            esc(reason)
        ),
    };
    // The head as last anchored outside the database: what the auditor records elsewhere.
    let checkpoint = match audit::checkpoint::all(&state.ctx.dir) {
        Ok(all) => all
            .last()
            .map(|(_, c)| {
                format!(
                    "<p>{}: <code id=\"checkpoint\">{}:{}</code></p>",
                    lang.t("checkpoint"),
                    c.seq,
                    esc(&c.hash)
                )
            })
            .unwrap_or_default(),
        Err(e) => return crate::web::page::fail(lang, e),
    };
    // Privacy loss per person across all projects, per year, beside its cap.
    let losses = match crate::research::person_losses(&state.ctx) {
        Ok(l) => l,
        Err(e) => return crate::web::page::fail(lang, e),
    };
    let ledger = if losses.is_empty() {
        String::new()
    } else {
        let rows: String = losses
            .iter()
            .map(|l| {
                format!(
                    "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
                    esc(&l.period),
                    l.epsilon_spent,
                    l.cap,
                    l.delta
                )
            })
            .collect();
        format!(
            "<h2>{}</h2><table id=\"person-budget\"><tr><th>{}</th><th>ε</th><th>{}</th><th>δ</th></tr>{rows}</table>",
            lang.t("person_budget"),
            lang.t("period"),
            lang.t("cap"),
        )
    };
    let reviews = match reviews_html(state, lang, session, refused) {
        Ok(r) => r,
        Err(e) => return crate::web::page::fail(lang, e),
    };
    let chain = format!(
        "{chain}</p>{checkpoint}<p><a id=\"compliance\" href=\"/audit/compliance\">{}</a></p>{ledger}{reviews}<p>",
        lang.t("compliance.report")
    );
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
    let query = format!(
        "actor={}&person={}&action={}&from={}&to={}",
        v(&filter.actor),
        v(&filter.person),
        v(&filter.action),
        v(&filter.from),
        v(&filter.to)
    );
    let mut b = format!(
        "<p>{}: {chain}</p><form method=\"get\" action=\"/audit\" class=\"noprint\">\
         <label>{} <input name=\"actor\" value=\"{}\"></label><label>{} <input name=\"person\" value=\"{}\"></label>\
         <label>{} <input name=\"action\" value=\"{}\"></label>\
         <label>{} <input type=\"date\" name=\"from\" value=\"{}\"></label><label>{} <input type=\"date\" name=\"to\" value=\"{}\"></label>\
         <button>{}</button></form><p>{}: <a href=\"/audit/export?format=csv&amp;{query}\">CSV</a> · \
         <a href=\"/audit/export?format=json&amp;{query}\">JSON</a></p>",
        lang.t("chain"),
        lang.t("actor"), v(&filter.actor), lang.t("person"), v(&filter.person),
        lang.t("action"), v(&filter.action),
        lang.t("from"), v(&filter.from), lang.t("to"), v(&filter.to),
        lang.t("filter"), lang.t("export"),
    );
    b += &format!(
        "<table id=\"audit\"><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("time"), lang.t("audit.what"), lang.t("actor"), lang.t("action"), lang.t("object"), lang.t("detail")
    );
    // Newest first; the page shows the latest 1,000 matches, the export has them all.
    for e in entries.iter().rev().take(1000) {
        b += &format!(
            "<tr><td>{}</td><td>{}</td><td class=\"sentence\">{}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            e.seq, time(e.at_ms), esc(&sentence(lang, e)), esc(&e.actor), esc(&e.action), esc(&e.object), esc(&e.detail)
        );
    }
    b += "</table>";
    frame(lang, Some(session), lang.t("audit"), &b).into_response()
}

/// An entry as a sentence: who did what to whom ("olga bekeek melding 12").
fn sentence(lang: Lang, e: &Entry) -> String {
    let key = match e.action.as_str() {
        "login" => "audit.s.login",
        "login.failed" | "login.locked" | "login.refused-locked" | "login.refused-disabled" => {
            "audit.s.login-failed"
        }
        "logout" => "audit.s.logout",
        "alerts.list" => "audit.s.alerts-list",
        "alerts.export" => "audit.s.alerts-export",
        "alert.view" => "audit.s.alert-view",
        "alert.report" => "audit.s.alert-report",
        "alert.dossier" | "dossier.written" => "audit.s.alert-dossier",
        "alert.transition" => "audit.s.alert-transition",
        "alert.refused" => "audit.s.alert-refused",
        "alert.sealed" => "audit.s.alert-sealed",
        "stations.view" => "audit.s.stations-view",
        "admin.view" => "audit.s.admin-view",
        "account.create" => "audit.s.account-create",
        "account.role" => "audit.s.account-role",
        "account.disable" => "audit.s.account-disable",
        "caseload.assign" => "audit.s.caseload-assign",
        "screening.record" => "audit.s.screening-record",
        "screening.refused" => "audit.s.screening-refused",
        "review.record" => "audit.s.review-record",
        "person.export" => "audit.s.person-export",
        "hold.place" => "audit.s.hold-place",
        "audit.view" | "audit.export" => "audit.s.audit-view",
        "research.release" => "audit.s.research-release",
        "backup.made" => "audit.s.backup-made",
        "station.renew" => "audit.s.station-renew",
        "station.certificate" => "audit.s.station-certificate",
        "keys.server-cert" => "audit.s.keys-server-cert",
        "access.denied" => "audit.s.access-denied",
        "account.manager" => "audit.s.account-manager",
        "account.notifications" => "audit.s.account-notifications",
        "account.password" => "audit.s.account-password",
        "account.password-refused" => "audit.s.account-password-refused",
        "account.reset" => "audit.s.account-reset",
        "alert.revised" => "audit.s.alert-revised",
        "alert.withdrawn" => "audit.s.alert-withdrawn",
        "caseload.end" => "audit.s.caseload-end",
        "caseload.view" => "audit.s.caseload-view",
        "compliance.report" => "audit.s.compliance-report",
        "device.assign" => "audit.s.device-assign",
        "device.pair" => "audit.s.device-pair",
        "device.return" => "audit.s.device-return",
        "evidence.prune" => "audit.s.evidence-prune",
        "hold.refused" => "audit.s.hold-refused",
        "hold.release" => "audit.s.hold-release",
        "ingest.refuse" => "audit.s.ingest-refuse",
        "keys.rotate" => "audit.s.keys-rotate",
        "login.throttled" => "audit.s.login-throttled",
        "person.add" => "audit.s.person-add",
        "person.archive" => "audit.s.person-archive",
        "person.attributes" => "audit.s.person-attributes",
        "person.close" => "audit.s.person-close",
        "person.episode" => "audit.s.person-episode",
        "person.refused" => "audit.s.person-refused",
        "person.view" => "audit.s.person-view",
        "quarantine.list" => "audit.s.quarantine-list",
        "quarantine.put" => "audit.s.quarantine-put",
        "quarantine.retry" => "audit.s.quarantine-retry",
        "quarantine.show" => "audit.s.quarantine-show",
        "research.dry-run" => "audit.s.research-dry-run",
        "research.project.create" => "audit.s.research-project-create",
        "research.refused" => "audit.s.research-refused",
        "research.refused-token" => "audit.s.research-refused-token",
        "research.token.issue" => "audit.s.research-token-issue",
        "research.token.revoke" => "audit.s.research-token-revoke",
        "retention.changed" => "audit.s.retention-changed",
        "rules.changed" => "audit.s.rules-changed",
        "station.add" => "audit.s.station-add",
        "station.link" => "audit.s.station-link",
        "station.revoke" => "audit.s.station-revoke",
        "bundles.stored" => "audit.s.bundles-stored",
        "bundles.decoded" => "audit.s.bundles-decoded",
        "init" => "audit.s.init",
        _ => "audit.s.other",
    };
    // The object in words: "alert:12" is "melding 12", "account:olga" is "olga".
    let object = match e.object.split_once(':') {
        Some(("alert", n)) => format!("{} {n}", lang.t("alert").to_lowercase()),
        Some(("person", n)) => format!("{} {n}", lang.t("person").to_lowercase()),
        Some(("account", name)) => name.to_string(),
        _ => e.object.clone(),
    };
    lang.t(key)
        .replace("{actor}", &e.actor)
        .replace("{object}", &object)
        .replace("{action}", &e.action)
}

/// The periodic access review: per officer, when they were last reviewed and what they opened
/// since, with the form that records a review.
fn reviews_html(
    state: &AppState,
    lang: Lang,
    session: &Session,
    refused: Option<&RefusedReview>,
) -> Result<String, crate::web::page::Failure> {
    use crate::registry::{accounts, review};
    let now = crate::base::time::now_ms();
    let officers: Vec<_> = accounts::list(&state.ctx.db)?
        .into_iter()
        .filter(|a| a.role == accounts::Role::Officer && a.disabled_at_ms.is_none())
        .collect();
    let conn = state.ctx.db.lock();
    let latest = review::latest_reviews(&conn).map_err(crate::web::page::Failure::internal)?;
    let csrf = crate::web::page::csrf_field(session);
    let mut b = format!(
        "<h2>{}</h2><table id=\"reviews\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
        lang.t("reviews"),
        lang.t("officer"),
        lang.t("review.last"),
        lang.t("review.findings"),
        lang.t("review.accesses_since"),
    );
    for o in &officers {
        let last = latest.iter().find(|r| r.username == o.username);
        let since = last.map_or(o.created_at_ms, |r| r.period_to_ms);
        let accesses = review::accesses_in(&conn, &o.username, since, now + 1)
            .map_err(crate::web::page::Failure::internal)?;
        let mut from = crate::web::page::zone().date_of(since).to_string();
        let mut to = crate::web::page::zone().date_of(now).to_string();
        let (mut findings, mut notice) = (String::new(), String::new());
        if let Some(r) = refused.filter(|r| r.fields.get("username") == Some(&o.username)) {
            let kept = |k: &str| r.fields.get(k).cloned().unwrap_or_default();
            (from, to, findings) = (kept("from"), kept("to"), kept("findings"));
            notice = format!(
                "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
                esc(&r.message)
            );
        }
        b += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{accesses}</td><td>\
             <form class=\"inline\" method=\"post\" action=\"/audit/reviews\">{csrf}\
             <input type=\"hidden\" name=\"username\" value=\"{}\">\
             <label>{} <input type=\"date\" name=\"from\" value=\"{}\" required></label>\
             <label>{} <input type=\"date\" name=\"to\" value=\"{}\" required></label>\
             <label>{} <input name=\"findings\" value=\"{}\" required></label><button>{}</button></form>{notice}</td></tr>",
            esc(&o.username),
            last.map(|r| time(r.reviewed_at_ms)).unwrap_or_else(|| "—".into()),
            last.map(|r| esc(&r.findings)).unwrap_or_default(),
            esc(&o.username),
            lang.t("from"),
            esc(&from),
            lang.t("to"),
            esc(&to),
            lang.t("review.findings"),
            esc(&findings),
            lang.t("record"),
        );
    }
    b += "</table>";
    Ok(b)
}

/// Records an access review of one officer over whole days `from`..=`to`.
pub async fn record_review(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: crate::web::access::FormFields,
) -> axum::response::Response {
    let (username, from, to, findings) = (
        form.get("username").to_string(),
        form.get("from").to_string(),
        form.get("to").to_string(),
        form.get("findings").to_string(),
    );
    let (ctx, reviewer) = (state.ctx.clone(), session.account.username.clone());
    let result = crate::web::page::blocking(move || -> Result<(), crate::web::page::Failure> {
        let day = |d: &str| {
            crate::web::page::form_day(d)
                .map(crate::web::page::local_day_bounds)
                .map_err(crate::web::page::Failure::from)
        };
        let (from_ms, to_ms) = (day(&from)?.0, day(&to)?.1);
        let now = crate::base::time::now_ms();
        crate::registry::review::record(
            &ctx.db, &username, from_ms, to_ms, &findings, &reviewer, now,
        )?;
        Ok(())
    })
    .await;
    match result {
        Ok(()) => axum::response::Redirect::to("/audit").into_response(),
        Err(crate::web::page::Failure::Refused(r)) => {
            let refused = RefusedReview {
                message: crate::web::page::refusal(lang, &r),
                fields: form.0,
            };
            let mut page = page(
                &state,
                lang,
                &session,
                &AuditFilter::default(),
                Some(&refused),
            );
            if page.status().is_success() {
                *page.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            }
            page
        }
        Err(f) => crate::web::page::fail(lang, f),
    }
}

/// The compliance report (`accountability::compliance`), as its own printable page.
pub async fn compliance(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
) -> Response {
    let (ctx, actor) = (state.ctx.clone(), session.account.username.clone());
    let built = crate::web::page::blocking(move || {
        crate::accountability::compliance::report(&ctx, &actor, crate::base::time::now_ms())
            .map_err(crate::web::page::Failure::internal)
    })
    .await;
    match built {
        Ok(report) => {
            let mut response = crate::accountability::compliance::html(&report).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Err(f) => crate::web::page::fail(lang, f),
    }
}

pub async fn export(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Query(filter): Query<AuditFilter>,
) -> Response {
    let (entries, _) = match read(&state, &session.account.username, "audit.export", &filter) {
        Ok(r) => r,
        Err(e) => return crate::web::page::fail(lang, e),
    };
    let json = filter.format.as_deref() == Some("json");
    let (body, content_type, file) = if json {
        (audit::to_json(&entries), "application/json", "audit.json")
    } else {
        (
            audit::to_csv(&entries),
            "text/csv; charset=utf-8",
            "audit.csv",
        )
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
