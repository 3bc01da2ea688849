//! The officer's pages: alert list, alert detail with evidence and workflow, printable report,
//! stations. Caseload checks and audit entries happen in [`crate::alerts::casework`], never here.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use crate::alerts::casework::{self, AlertDetail, AlertFilter, AlertRow, Revision};
use crate::alerts::chart::TacChart;
use crate::alerts::RevisionReason;
use crate::alerts::{AlertKind, Severity, Status};
use crate::base::refusal::Refusal;
use crate::lifecycle::hold;
use crate::registry::accounts::Session;
use crate::web::access::{FormFields, Signed};
use crate::web::i18n::Lang;
use crate::web::page::{blocking, Failure};
use crate::web::page::{csrf_field, esc, frame, time, time_opt};
use crate::web::AppState;
use nachtwacht_pipelines::alcohol::InterferentReason;

pub(crate) use crate::web::page::status_label;

/// An alert kind in the page's language.
pub(crate) fn kind_label(lang: Lang, kind: crate::alerts::AlertKind) -> &'static str {
    use crate::alerts::AlertKind as K;
    lang.t(match kind {
        K::Alcohol => "kind.alcohol",
        K::Interferent => "kind.interferent",
        K::StrapOpen => "kind.strap-open",
        K::PossibleRemoval => "kind.possible-removal",
        K::Obstruction => "kind.obstruction",
        K::BatteryLow => "kind.battery-low",
        K::DeviceFault => "kind.device-fault",
        K::CommunicationLost => "kind.communication-lost",
        K::CommunicationCritical => "kind.communication-critical",
        K::DeviceDisconnected => "kind.device-disconnected",
        K::StationSpoolFull => "kind.station-spool-full",
        K::ClockDrift => "kind.clock-drift",
    })
}

/// A supervision programme in the page's language.
pub(crate) fn programme_label(
    lang: Lang,
    programme: crate::base::programme::Programme,
) -> &'static str {
    use crate::base::programme::Programme as P;
    lang.t(match programme {
        P::AlcoholBan => "programme.alcohol-ban",
        P::AggressionTraining => "programme.aggression-training",
        P::TbsLeave => "programme.tbs-leave",
    })
}

/// The alert's kind, with what the evidence now says about it: provisional (its episode had not
/// ended at the last reading), revised by new readings, or withdrawn.
pub(crate) fn kind_html(lang: Lang, a: &AlertRow) -> String {
    let badge = |class: &str, key: &'static str| {
        format!(" <span class=\"badge {class}\">{}</span>", lang.t(key))
    };
    let mut s = esc(kind_label(lang, a.kind));
    if a.withdrawn {
        s += &badge("withdrawn", "alert.withdrawn");
    } else {
        if a.provisional {
            s += &badge("provisional", "alert.provisional");
        }
        if a.revision > 0 {
            s += &badge("revised", "alert.revised");
        }
    }
    s
}

/// The severity in the page's language.
pub(crate) fn severity_label(lang: Lang, severity: Severity) -> &'static str {
    lang.t(match severity {
        Severity::High => "severity.high",
        Severity::Medium => "severity.medium",
        Severity::Warning => "severity.warning",
        Severity::Review => "severity.review",
        Severity::Low => "severity.low",
    })
}

fn revision_reason(lang: Lang, reason: Option<RevisionReason>) -> &'static str {
    match reason {
        Some(RevisionReason::Confirmed) => lang.t("revision.confirmed"),
        Some(RevisionReason::Reclassified) => lang.t("revision.reclassified"),
        Some(RevisionReason::Changed) => lang.t("revision.changed"),
        Some(RevisionReason::Merged) => lang.t("revision.merged"),
        Some(RevisionReason::Withdrawn) => lang.t("revision.withdrawn"),
        Some(RevisionReason::Reinstated) => lang.t("revision.reinstated"),
        None => "?",
    }
}

/// Why the rule judged the episode as it did, from the rule record stored with the alert.
fn assessment_html(lang: Lang, a: &AlertRow) -> String {
    let Ok(rule) = serde_json::from_str::<serde_json::Value>(&a.rule) else {
        return String::new();
    };
    if rule["rule"] != "alcohol.episode" {
        return String::new();
    }
    let rate = |k: &str| {
        rule[k]
            .as_f64()
            .map(|v| format!("{v:.3}"))
            .unwrap_or_else(|| lang.t("not_observed").to_string())
    };
    let mut s = match rule["reason"].as_str().and_then(InterferentReason::parse) {
        Some(reason) => {
            let key = match reason {
                InterferentReason::AmbientAlcohol => "reason.ambient-alcohol",
                InterferentReason::RiseTooFast => "reason.rise-too-fast",
                InterferentReason::FallTooFast => "reason.fall-too-fast",
            };
            let mut s = lang.t(key).to_string();
            if let (Some(from), Some(to)) = (
                rule["evidence_from_ms"].as_i64(),
                rule["evidence_to_ms"].as_i64(),
            ) {
                s += &format!(" ({} → {})", time(from), time(to));
            }
            s
        }
        None => lang.t("reason.drinking").to_string(),
    };
    s += &format!(
        ". {}: {} g/dL/h; {}: {} g/dL/h.",
        lang.t("mean_rise"),
        rate("mean_rise_per_hour"),
        lang.t("mean_fall"),
        rate("mean_fall_per_hour"),
    );
    if a.provisional {
        s += &format!(" {}", lang.t("alert.provisional.note"));
    }
    format!(
        "<tr><th>{}</th><td id=\"assessment\">{}</td></tr>",
        lang.t("assessment"),
        esc(&s)
    )
}

fn revisions_html(lang: Lang, revisions: &[Revision]) -> String {
    if revisions.is_empty() {
        return String::new();
    }
    let summary = |v: &serde_json::Value| {
        let peak = v["peak_tac_g_dl"]
            .as_f64()
            .map(|p| format!(", {} {p:.3}", lang.t("peak_tac")))
            .unwrap_or_default();
        let provisional = if v["provisional"].as_bool() == Some(true) {
            format!(" ({})", lang.t("alert.provisional"))
        } else {
            String::new()
        };
        format!(
            "{}{provisional}: {} – {}{peak}",
            v["kind"].as_str().unwrap_or("?"),
            time_opt(v["start_ms"].as_i64()),
            time_opt(v["end_ms"].as_i64()),
        )
    };
    let mut s = format!(
        "<h2>{}</h2><table id=\"revisions\"><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("revisions"),
        lang.t("time"),
        lang.t("revision.reason"),
        lang.t("revision.before"),
        lang.t("revision.after"),
    );
    for r in revisions {
        s += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.revision,
            time(r.at_ms),
            revision_reason(lang, r.reason),
            esc(&summary(&r.before)),
            esc(&summary(&r.after)),
        );
    }
    s + "</table>"
}

fn failure(lang: Lang, e: impl Into<Failure>) -> Response {
    crate::web::page::fail(lang, e)
}

/// An alert id from the path. A malformed one (`/alerts/abc`, an id past `i64`) is refused like
/// a missing alert: "not found", with an `alert.refused` audit entry naming what was asked for
/// (bounded), so URL probing is on the record whatever form it takes.
pub struct AlertId(pub i64);

impl axum::extract::FromRequestParts<AppState> for AlertId {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Ok(id) = raw.parse::<i64>() {
            return Ok(AlertId(id));
        }
        let lang = parts
            .extensions
            .get::<Lang>()
            .copied()
            .unwrap_or_else(|| Lang::of(parts));
        let actor = parts
            .extensions
            .get::<crate::registry::accounts::Session>()
            .map(|s| s.account.username.clone())
            .unwrap_or_else(|| "anonymous".into());
        let audited = crate::trust::audit::append(
            &state.ctx.db.lock(),
            crate::base::time::now_ms(),
            &actor,
            "alert.refused",
            &format!("alert:{}", crate::trust::audit::bounded(&raw)),
            &serde_json::json!({"attempted": parts.method.as_str(), "reason": "malformed alert id"})
                .to_string(),
        );
        Err(match audited {
            Ok(_) => crate::web::page::error(lang, StatusCode::NOT_FOUND, lang.t("not_found")),
            Err(e) => crate::web::page::fail(lang, e),
        })
    }
}

pub async fn alerts(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Query(filter): Query<AlertFilter>,
) -> Response {
    let (ctx, account, f) = (state.ctx.clone(), session.account.clone(), filter.clone());
    // A filter the rules refuse (a period that ends before it starts) is said above the form,
    // which keeps what was asked; the list stays empty.
    let (list, refused) =
        match blocking(move || casework::list(&ctx, &account, &f, crate::base::time::now_ms()))
            .await
        {
            Ok(r) => (r, None),
            Err(Failure::Refused(r)) => (
                casework::AlertList {
                    rows: vec![],
                    total: 0,
                    by_status: vec![],
                    page: 1,
                    pages: 1,
                    last_visit_ms: None,
                    new_since_last_visit: 0,
                    kinds: crate::alerts::AlertKind::ALL.to_vec(),
                },
                Some(r),
            ),
            Err(e) => return failure(lang, e),
        };
    let rows = &list.rows;
    let selected = |v: &Option<String>, x: &str| {
        if v.as_deref() == Some(x) {
            " selected"
        } else {
            ""
        }
    };
    let mut status_opts = format!("<option value=\"\">{}</option>", lang.t("any"));
    for s in Status::ALL {
        status_opts += &format!(
            "<option value=\"{}\"{}>{}</option>",
            s.as_str(),
            selected(&filter.status, s.as_str()),
            status_label(lang, s)
        );
    }
    let mut kind_opts = format!("<option value=\"\">{}</option>", lang.t("any"));
    // Only kinds the caseload has, plus the one filtered on (so the form shows what it asked).
    for k in crate::alerts::AlertKind::ALL
        .into_iter()
        .filter(|k| list.kinds.contains(k) || filter.kind.as_deref() == Some(k.as_str()))
    {
        kind_opts += &format!(
            "<option class=\"kind\" value=\"{}\"{}>{}</option>",
            k.as_str(),
            selected(&filter.kind, k.as_str()),
            kind_label(lang, k)
        );
    }
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
    let notice = refused
        .as_ref()
        .map(|r| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
                esc(&crate::web::page::refusal(lang, r))
            )
        })
        .unwrap_or_default();
    let mut body = format!(
        "{notice}<form method=\"get\" action=\"/alerts\" class=\"noprint\">\
         <label>{st} <select name=\"status\">{status_opts}</select></label>\
         <label>{ki} <select name=\"kind\">{kind_opts}</select></label>\
         <label>{fr} <input type=\"date\" name=\"from\" value=\"{from}\"></label>\
         <label>{to} <input type=\"date\" name=\"to\" value=\"{to_v}\"></label>\
         <label>{pe} <input name=\"person\" value=\"{person}\" size=\"12\"></label>\
         <label>{su} <select name=\"supervision\" id=\"supervision\"><option value=\"\">{running}</option>\
         <option value=\"closed\"{closed_sel}>{closed}</option></select></label>\
         <label>{so} <select name=\"sort\" id=\"sort\">{sort_opts}</select></label>\
         <button>{fi}</button></form>",
        so = lang.t("sort"),
        sort_opts = casework::SortKey::ALL
            .iter()
            .map(|k| format!(
                "<option value=\"{v}\"{sel}>{}</option>",
                lang.t(match k {
                    casework::SortKey::Start => "sort.start",
                    casework::SortKey::Severity => "sort.severity",
                    casework::SortKey::Person => "sort.person",
                    casework::SortKey::Status => "sort.status",
                }),
                v = k.as_str(),
                sel = selected(&filter.sort, k.as_str())
            ))
            .collect::<String>(),
        su = lang.t("supervision"),
        running = lang.t("supervision.running"),
        closed = lang.t("supervision.closed"),
        closed_sel = selected(&filter.supervision, "closed"),
        st = lang.t("status"),
        ki = lang.t("kind"),
        fr = lang.t("from"),
        to = lang.t("to"),
        pe = lang.t("person"),
        fi = lang.t("filter"),
        from = v(&filter.from),
        to_v = v(&filter.to),
        person = v(&filter.person),
    );
    // The same list with one field changed: the links of the counts and the pager.
    let with = |key: &str, value: &str| {
        let mut q: Vec<(String, String)> = [
            ("status", &filter.status),
            ("kind", &filter.kind),
            ("from", &filter.from),
            ("to", &filter.to),
            ("person", &filter.person),
            ("supervision", &filter.supervision),
            ("sort", &filter.sort),
        ]
        .into_iter()
        .filter(|(k, _)| *k != key)
        .filter_map(|(k, v)| {
            v.clone()
                .filter(|v| !v.is_empty())
                .map(|v| (k.to_string(), v))
        })
        .collect();
        if !value.is_empty() {
            q.push((key.to_string(), value.to_string()));
        }
        format!(
            "/alerts?{}",
            serde_urlencoded::to_string(&q).unwrap_or_default()
        )
    };
    let counts: Vec<String> = list
        .by_status
        .iter()
        .map(|(status, n)| {
            format!(
                "<a href=\"{}\">{}</a>: <span data-status=\"{}\">{n}</span>",
                esc(&with("status", status.as_str())),
                status_label(lang, *status),
                status.as_str()
            )
        })
        .collect();
    let export = with("page", "").replacen("/alerts?", "/alerts/export?", 1);
    body += &format!(
        "<p id=\"counts\" class=\"noprint\">{}: <strong id=\"total\">{}</strong>{} · {} · <a id=\"export\" href=\"{}\">{}</a></p>",
        lang.t("alerts.found"),
        list.total,
        match list.last_visit_ms {
            Some(visit) => format!(
                " · <span id=\"new-since\">{} {}: <strong>{}</strong></span>",
                lang.t("alerts.new_since"),
                time(visit),
                list.new_since_last_visit
            ),
            None => String::new(),
        },
        counts.join(" · "),
        esc(&export),
        lang.t("export.csv")
    );
    if rows.is_empty() {
        body += &format!("<p class=\"note\">{}</p>", lang.t("no_alerts"));
    } else {
        body += &format!(
            "<table id=\"alerts\"><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            lang.t("start"),
            lang.t("person"),
            lang.t("kind"),
            lang.t("severity"),
            lang.t("peak_tac"),
            lang.t("status")
        );
        for a in rows {
            let fresh = list
                .last_visit_ms
                .is_some_and(|visit| a.created_at_ms > visit);
            body += &format!(
                "<tr{}><td><a href=\"/alerts/{id}\">{id}</a>{}</td><td>{}</td><td><a href=\"/persons/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if fresh { " class=\"fresh\"" } else { "" },
                if fresh {
                    format!(" <span class=\"badge fresh\">{}</span>", lang.t("alert.fresh"))
                } else {
                    String::new()
                },
                time(a.start_ms),
                a.person_id,
                esc(&a.person_reference),
                kind_html(lang, a),
                severity_label(lang, a.severity),
                a.peak_tac_g_dl.map(|v| format!("{v:.3}")).unwrap_or_default(),
                status_label(lang, a.status),
                id = a.id
            );
        }
        body += "</table>";
        if list.pages > 1 {
            let mut pager = format!(
                "<p id=\"pager\" class=\"noprint\">{} {} / {}",
                lang.t("page"),
                list.page,
                list.pages
            );
            if list.page > 1 {
                pager += &format!(
                    " · <a id=\"previous\" href=\"{}\">{}</a>",
                    esc(&with("page", &(list.page - 1).to_string())),
                    lang.t("page.previous")
                );
            }
            if list.page < list.pages {
                pager += &format!(
                    " · <a id=\"next\" href=\"{}\">{}</a>",
                    esc(&with("page", &(list.page + 1).to_string())),
                    lang.t("page.next")
                );
            }
            body += &(pager + "</p>");
        }
    }
    let mut page = frame(lang, Some(&session), lang.t("alerts"), &body).into_response();
    if refused.is_some() {
        *page.status_mut() = StatusCode::BAD_REQUEST;
    }
    page
}

fn evidence_html(lang: Lang, d: &AlertDetail) -> String {
    let a = &d.alert;
    let window = 12 * crate::base::time::HOUR_MS;
    let (from_ms, to_ms) = (a.start_ms - window, a.end_ms + window);
    let z = crate::web::page::zone();
    let mut chart = String::new();
    if matches!(
        a.kind,
        AlertKind::CommunicationLost | AlertKind::CommunicationCritical
    ) {
        // The silence is the evidence: when the station was heard from, before and after.
        let (before, after) = d.contacts_around;
        chart +=
            &format!(
            "<h3>{}</h3><div id=\"contact-timeline\">{}</div><p class=\"note\">{}: {} · {}: {}</p>",
            lang.t("contact.timeline"),
            crate::alerts::chart::ContactChart {
                from_ms,
                to_ms,
                contacts: &d.station_contacts,
                alert: (a.start_ms, a.end_ms),
                zone: z,
                label: lang.t("contact"),
                time_title: lang.t("time"),
            }
            .svg(),
            lang.t("contact.last_before"),
            time_opt(before),
            lang.t("contact.first_after"),
            after.map(time).unwrap_or_else(|| lang.t("contact.none_yet").to_string()),
        );
    }
    if !d.tac.is_empty() {
        chart += &TacChart {
            from_ms,
            to_ms,
            readings: &d.tac,
            threshold_g_dl: d.threshold_g_dl,
            alert: (a.start_ms, a.end_ms),
            contacts: &d.station_contacts,
            labels: (lang.t("wear"), lang.t("contact")),
            zone: z,
            time_title: lang.t("time"),
            gap_labels: [
                lang.t("gap.not_worn"),
                lang.t("gap.no_contact"),
                lang.t("gap.not_uploaded"),
            ],
        }
        .svg();
    }
    if !d.wrist.is_empty() {
        chart += &format!("<h3>{}</h3>", lang.t("wrist.evidence"));
        for (id, title, unit, points) in [
            ("wrist-eda", lang.t("wrist.eda"), "µS", &d.wrist.eda_us),
            ("wrist-hr", lang.t("wrist.hr"), "bpm", &d.wrist.hr_bpm),
            (
                "wrist-movement",
                lang.t("wrist.movement"),
                "g",
                &d.wrist.movement_g,
            ),
        ] {
            if points.is_empty() {
                continue;
            }
            chart += &format!(
                "<div id=\"{id}\">{}</div>",
                crate::alerts::chart::LineChart {
                    title,
                    unit,
                    from_ms,
                    to_ms,
                    points,
                    alert: (a.start_ms, a.end_ms),
                    zone: z,
                    time_title: lang.t("time"),
                }
                .svg()
            );
        }
    }
    if chart.is_empty() {
        chart = format!("<p class=\"note\">{}</p>", lang.t("chart.no_data"));
    }
    format!(
        "<table><tr><th>{}</th><td><a href=\"/persons/{}\" id=\"person-link\">{}</a></td></tr><tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{} – {}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td id=\"status\">{}</td></tr>{}</table>\
         <h2>{}</h2><figure>{chart}{}</figure>{}",
        lang.t("person"),
        a.person_id,
        esc(&a.person_reference),
        lang.t("programme"),
        programme_label(lang, a.programme),
        lang.t("kind"),
        kind_html(lang, a),
        lang.t("start"),
        time(a.start_ms),
        time(a.end_ms),
        lang.t("peak_tac"),
        a.peak_tac_g_dl
            .map(|v| format!("{v:.3}"))
            .unwrap_or_else(|| "—".into()),
        lang.t("status"),
        status_label(lang, a.status),
        assessment_html(lang, a),
        lang.t("evidence"),
        if d.tac.is_empty() {
            String::new()
        } else {
            format!("<figcaption class=\"note\">{}</figcaption>", lang.t("chart.caption"))
        },
        revisions_html(lang, &d.revisions),
    )
}

fn history_html(lang: Lang, d: &AlertDetail) -> String {
    if d.steps.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "<h2>{}</h2><table id=\"history\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("history"),
        lang.t("time"),
        lang.t("actor"),
        lang.t("status"),
        lang.t("comment")
    );
    for step in &d.steps {
        s += &format!(
            "<tr><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td></tr>",
            time(step.at_ms),
            esc(&step.actor),
            status_label(lang, step.from_status),
            status_label(lang, step.to_status),
            esc(&step.comment)
        );
    }
    s + "</table>"
}

pub(crate) async fn load(
    state: &AppState,
    session: &crate::registry::accounts::Session,
    id: i64,
    purpose: &'static str,
) -> Result<AlertDetail, Failure> {
    let (ctx, account) = (state.ctx.clone(), session.account.clone());
    blocking(move || casework::detail(&ctx, &account, id, purpose, crate::base::time::now_ms()))
        .await
}

pub async fn alert(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    AlertId(id): AlertId,
) -> Response {
    alert_page(&state, lang, &session, id, None).await
}

/// A request the rules refused, shown in place: the message above its form, what was chosen
/// and typed kept.
struct Kept {
    message: String,
    form: KeptForm,
}

enum KeptForm {
    /// A workflow step: the chosen step and the comment.
    Workflow { to: String, comment: String },
    /// Placing or releasing a legal hold.
    Hold,
}

impl Kept {
    fn workflow(&self) -> Option<(&str, &str)> {
        match &self.form {
            KeptForm::Workflow { to, comment } => Some((to, comment)),
            KeptForm::Hold => None,
        }
    }
}

/// Answers a refused hold request with the alert page and the sentence above the hold form.
async fn hold_refused(
    state: &AppState,
    lang: Lang,
    session: &Session,
    id: i64,
    refused: Failure,
) -> Response {
    match refused {
        Failure::Refused(r) => {
            let kept = Kept {
                message: crate::web::page::refusal(lang, &r),
                form: KeptForm::Hold,
            };
            let mut page = alert_page(state, lang, session, id, Some(kept)).await;
            if page.status().is_success() {
                *page.status_mut() = StatusCode::BAD_REQUEST;
            }
            page
        }
        other => failure(lang, other),
    }
}

async fn alert_page(
    state: &AppState,
    lang: Lang,
    session: &Session,
    id: i64,
    kept: Option<Kept>,
) -> Response {
    let (state, session) = (state.clone(), session.clone());
    let d = match load(&state, &session, id, "view").await {
        Ok(d) => d,
        Err(e) => return failure(lang, e),
    };
    let (ctx, person) = (state.ctx.clone(), d.alert.person_id);
    let holds = match blocking(move || hold::in_force(&ctx.db.lock(), Some(person))).await {
        Ok(h) => h
            .into_iter()
            .filter(|h| h.alert_id == Some(id))
            .collect::<Vec<_>>(),
        Err(e) => return crate::web::page::fail(lang, e),
    };
    let mut body = evidence_html(lang, &d);
    body += &history_html(lang, &d);
    let next = d.alert.status.next();
    if !next.is_empty() {
        let opts: String = next
            .iter()
            .map(|s| {
                let selected = kept
                    .as_ref()
                    .and_then(Kept::workflow)
                    .is_some_and(|(to, _)| to == s.as_str());
                format!(
                    "<option value=\"{}\"{}>{}</option>",
                    s.as_str(),
                    if selected { " selected" } else { "" },
                    status_label(lang, *s)
                )
            })
            .collect();
        let error = kept
            .as_ref()
            .filter(|k| k.workflow().is_some())
            .map(|k| {
                format!(
                    "<p class=\"error\" id=\"workflow-error\" role=\"alert\">{} {}</p>",
                    lang.t("workflow.refused"),
                    esc(&k.message)
                )
            })
            .unwrap_or_default();
        body += &format!(
            "<h2 id=\"workflow\">{}</h2>{error}<form method=\"post\" action=\"/alerts/{id}/transition\" class=\"noprint\">{}\
             <p><label>{} <select name=\"to\" id=\"to\">{opts}</select></label></p>\
             <p><label>{}<br><textarea name=\"comment\" id=\"comment\" rows=\"3\" cols=\"60\" required>{}</textarea></label></p>\
             <p><button id=\"save\">{}</button></p></form>",
            lang.t("workflow"),
            csrf_field(&session),
            lang.t("next_step"),
            lang.t("comment"),
            kept.as_ref()
                .and_then(Kept::workflow)
                .map(|(_, comment)| esc(comment))
                .unwrap_or_default(),
            lang.t("save"),
        );
    }
    let hold_error = kept
        .as_ref()
        .filter(|k| matches!(k.form, KeptForm::Hold))
        .map(|k| k.message.as_str());
    body += &holds_html(lang, &session, id, &holds, hold_error);
    body += &format!(
        "<p class=\"noprint\"><a href=\"/alerts/{id}/report\" id=\"report\">{}</a> · \
         <a href=\"/alerts/{id}/dossier\" id=\"dossier\">{}</a> · <a href=\"/alerts\">{}</a></p>",
        lang.t("report"),
        lang.t("dossier"),
        lang.t("back")
    );
    frame(
        lang,
        Some(&session),
        &format!("{} {id}", lang.t("alert")),
        &body,
    )
    .into_response()
}

/// The legal holds on an alert, each with a release form, and a form to place one.
fn holds_html(
    lang: Lang,
    session: &Session,
    id: i64,
    holds: &[hold::Hold],
    error: Option<&str>,
) -> String {
    let csrf = csrf_field(session);
    let mut out = format!(
        "<h2>{}</h2><p class=\"note\">{}</p>",
        lang.t("holds"),
        lang.t("hold.note")
    );
    if let Some(message) = error {
        out += &format!(
            "<p class=\"error\" id=\"hold-error\" role=\"alert\">{}</p>",
            esc(message)
        );
    }
    if !holds.is_empty() {
        out += "<ul id=\"holds\">";
        for h in holds {
            out += &format!(
                "<li>{} · {} · {}<form class=\"inline noprint\" method=\"post\" action=\"/alerts/{id}/hold/release\">{csrf}\
                 <input type=\"hidden\" name=\"hold\" value=\"{}\"><input name=\"reason\" required placeholder=\"{}\">\
                 <button>{}</button></form></li>",
                esc(&h.reason),
                esc(&h.placed_by),
                time(h.placed_at_ms),
                h.id,
                lang.t("hold.reason"),
                lang.t("hold.release"),
            );
        }
        out += "</ul>";
    }
    out + &format!(
        "<form method=\"post\" action=\"/alerts/{id}/hold\" class=\"noprint\">{csrf}\
         <label>{} <input name=\"reason\" id=\"hold-reason\" required></label> \
         <label><select name=\"scope\" id=\"hold-scope\"><option value=\"alert\">{}</option>\
         <option value=\"person\">{}</option></select></label> <button id=\"hold\">{}</button></form>",
        lang.t("hold.reason"),
        lang.t("hold.scope.alert"),
        lang.t("hold.scope.person"),
        lang.t("hold.place"),
    )
}

/// Places a legal hold on an alert of the officer's caseload, or (`scope=person`) on everything
/// of the alert's person.
pub async fn hold_alert(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    AlertId(id): AlertId,
    form: FormFields,
) -> Response {
    let (ctx, account, reason) = (
        state.ctx.clone(),
        session.account.clone(),
        form.get("reason").to_string(),
    );
    let whole_person = form.get("scope") == "person";
    match blocking(move || {
        let target = if whole_person {
            hold::HoldTarget::PersonOfAlert(id)
        } else {
            hold::HoldTarget::Alert(id)
        };
        hold::place(
            &mut ctx.db.lock(),
            hold::HoldActor::Account(&account),
            target,
            &reason,
            crate::base::time::now_ms(),
        )
    })
    .await
    {
        Ok(_) => Redirect::to(&format!("/alerts/{id}")).into_response(),
        Err(e) => hold_refused(&state, lang, &session, id, e).await,
    }
}

/// Releases a legal hold on an alert of the officer's caseload.
pub async fn release_hold(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    AlertId(id): AlertId,
    form: FormFields,
) -> Response {
    let (ctx, account, reason) = (
        state.ctx.clone(),
        session.account.clone(),
        form.get("reason").to_string(),
    );
    let hold_id = match form.get("hold").trim().parse::<i64>() {
        Ok(h) => h,
        Err(_) => {
            let refused = Refusal::NotANumber {
                field: "hold",
                value: form.get("hold").to_string(),
            };
            return hold_refused(&state, lang, &session, id, refused.into()).await;
        }
    };
    match blocking(move || {
        hold::release(
            &mut ctx.db.lock(),
            hold::HoldActor::Account(&account),
            hold_id,
            &reason,
            crate::base::time::now_ms(),
        )
    })
    .await
    {
        Ok(()) => Redirect::to(&format!("/alerts/{id}")).into_response(),
        Err(e) => hold_refused(&state, lang, &session, id, e).await,
    }
}

pub async fn transition(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    AlertId(id): AlertId,
    form: FormFields,
) -> Response {
    let (ctx, account) = (state.ctx.clone(), session.account.clone());
    let (to, comment) = (form.get("to").to_string(), form.get("comment").to_string());
    match blocking(move || {
        casework::transition(
            &ctx,
            &account,
            id,
            &to,
            &comment,
            crate::base::time::now_ms(),
        )
    })
    .await
    {
        Ok(()) => Redirect::to(&format!("/alerts/{id}")).into_response(),
        Err(Failure::Refused(refusal)) => {
            let kept = Kept {
                message: crate::web::page::refusal(lang, &refusal),
                form: KeptForm::Workflow {
                    to: form.get("to").to_string(),
                    comment: form.get("comment").to_string(),
                },
            };
            let mut page = alert_page(&state, lang, &session, id, Some(kept)).await;
            if page.status().is_success() {
                *page.status_mut() = StatusCode::BAD_REQUEST;
            }
            page
        }
        Err(e) => failure(lang, e),
    }
}

/// The alert list as CSV (every matching alert, not one page), audited as `alerts.export`.
pub async fn export(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Query(filter): Query<AlertFilter>,
) -> Response {
    let (ctx, account) = (state.ctx.clone(), session.account.clone());
    match blocking(move || {
        casework::export_csv(&ctx, &account, &filter, crate::base::time::now_ms())
    })
    .await
    {
        Ok(csv) => {
            crate::web::page::download(csv.into_bytes(), "text/csv; charset=utf-8", "meldingen.csv")
        }
        Err(e) => failure(lang, e),
    }
}

/// The court evidence dossier of an alert, as a download (`accountability::dossier`).
pub async fn dossier(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    AlertId(id): AlertId,
) -> Response {
    let (ctx, officer) = (state.ctx.clone(), session.account.clone());
    let built = crate::web::page::blocking(move || {
        crate::accountability::dossier::build(
            &ctx,
            crate::alerts::casework::Reader::Officer(&officer),
            id,
            crate::base::time::now_ms(),
        )
    })
    .await;
    match built {
        Ok(d) => crate::web::page::download(
            d.archive,
            "application/x-tar",
            &format!("dossier-melding-{id}.tar"),
        ),
        Err(e) => failure(lang, e),
    }
}

pub async fn stations(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
) -> Response {
    let (ctx, account) = (state.ctx.clone(), session.account.clone());
    let rows =
        match blocking(move || casework::stations(&ctx, &account, crate::base::time::now_ms()))
            .await
        {
            Ok(r) => r,
            Err(e) => return failure(lang, e),
        };
    let body =
        if rows.is_empty() {
            format!("<p class=\"note\">{}</p>", lang.t("no_stations"))
        } else {
            let mut s = format!(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            lang.t("name"),
            lang.t("person"),
            lang.t("last_contact"),
            lang.t("last_upload"),
            lang.t("spool"),
            lang.t("clock_offset")
        );
            for r in &rows {
                s +=
                    &format!(
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.name),
                if r.revoked { format!(" ({})", lang.t("revoked")) } else { String::new() },
                esc(&r.person_reference),
                time_opt(r.last_contact_ms),
                time_opt(r.last_upload_ms),
                r.spool_pending_bundles.map(|v| v.to_string()).unwrap_or_else(|| "—".into()),
                r.clock_offset_ms.map(|v| v.to_string()).unwrap_or_else(|| "—".into()),
            );
            }
            s + "</table>"
        };
    frame(lang, Some(&session), lang.t("stations"), &body).into_response()
}
