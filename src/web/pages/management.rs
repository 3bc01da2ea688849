//! The management page: monthly alert figures per programme and region, each a differentially
//! private release shown as bars with their 95 % noise interval. Releasing a month spends the
//! management project's budget once; looking again is free.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Datelike;

use crate::registry::accounts::Session;
use crate::research::management::{self, Release, FIGURES};
use crate::web::access::{FormFields, Signed};
use crate::web::i18n::Lang;
use crate::web::page::{csrf_field, esc, frame, time, Failure};
use crate::web::AppState;

const BAR_W: f64 = 34.0;
const H: f64 = 160.0;

/// A bar chart of one figure's groups, with the noise interval as whiskers, a scale, and each
/// value written out with its interval. A count of person-days is never negative: a noisy value
/// below zero is shown as 0 (post-processing, which costs no privacy), its interval as released.
fn bars(lang: Lang, release: &Release) -> String {
    use crate::alerts::chart::{decimals, tick_step};
    let half = release
        .answer
        .accuracy_95
        .first()
        .map(|a| a.accuracy)
        .unwrap_or(0.0);
    let groups = &release.answer.groups;
    let highest = groups
        .iter()
        .filter_map(|g| g.value)
        .map(|v| v.max(0.0) + half)
        .fold(1.0, f64::max);
    let step = tick_step(highest);
    let top = (highest / step).ceil() * step;
    const LEFT: f64 = 44.0;
    const BOTTOM: f64 = 10.0 + H;
    let w = LEFT + 10.0 + groups.len() as f64 * (BAR_W + 26.0);
    let y = |v: f64| BOTTOM - (v / top).clamp(0.0, 1.0) * (H - 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-size=\"10\" font-family=\"sans-serif\">\
         <line x1=\"{LEFT}\" y1=\"{BOTTOM}\" x2=\"{w}\" y2=\"{BOTTOM}\" stroke=\"#333\"/>\
         <line x1=\"{LEFT}\" y1=\"10\" x2=\"{LEFT}\" y2=\"{BOTTOM}\" stroke=\"#333\"/>",
        h = H + 90.0,
    );
    let places = decimals(step);
    for i in 0..=((top / step).round() as usize) {
        let v = step * i as f64;
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.places$}</text>",
            LEFT - 4.0,
            y(v) + 3.0
        );
    }
    for (i, g) in groups.iter().enumerate() {
        let x = LEFT + 10.0 + i as f64 * (BAR_W + 26.0);
        let label = g.keys.values().next().cloned().unwrap_or_default();
        if let Some(v) = g.value {
            let shown = v.max(0.0);
            s += &format!(
                "<rect x=\"{x:.1}\" y=\"{y0:.1}\" width=\"{BAR_W}\" height=\"{:.1}\" fill=\"#154273\"/>\
                 <line x1=\"{cx:.1}\" y1=\"{:.1}\" x2=\"{cx:.1}\" y2=\"{:.1}\" stroke=\"#c00\" stroke-width=\"2\"/>\
                 <text x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\" class=\"value\">{shown:.0} ± {half:.0}</text>",
                (BOTTOM - y(shown)).max(1.0),
                y(shown + half),
                y((shown - half).max(0.0)),
                y0 = y(shown),
                cx = x + BAR_W / 2.0,
                ty = y(shown + half) - 3.0,
            );
        }
        s += &format!(
            "<text transform=\"translate({:.1},{:.1}) rotate(35)\">{}</text>",
            x + 4.0,
            BOTTOM + 12.0,
            esc(group_label(lang, &label))
        );
    }
    s + "</svg>"
}

/// A group's name in the page's language: programmes and provinces by name.
fn group_label(lang: Lang, value: &str) -> &str {
    match value {
        "alcohol-ban" => lang.t("programme.alcohol-ban"),
        "aggression-training" => lang.t("programme.aggression-training"),
        "tbs-leave" => lang.t("programme.tbs-leave"),
        other => crate::web::page::region_label(lang, other),
    }
}

/// A figure's title in the page's language.
fn figure_title(lang: Lang, id: &str) -> &'static str {
    lang.t(match id {
        "alcohol-by-programme" => "mgmt.figure.alcohol-by-programme",
        "tamper-by-programme" => "mgmt.figure.tamper-by-programme",
        "communication-by-programme" => "mgmt.figure.communication-by-programme",
        "alcohol-by-region" => "mgmt.figure.alcohol-by-region",
        "tamper-by-region" => "mgmt.figure.tamper-by-region",
        "communication-by-region" => "mgmt.figure.communication-by-region",
        _ => "mgmt.figure.other",
    })
}

/// The twelve months before this one, newest first: what a manager may release (a month only
/// once it has ended).
fn recent_months() -> Vec<String> {
    let today = chrono::Utc::now().date_naive();
    let (mut y, mut m) = if today.month() == 1 {
        (today.year() - 1, 12)
    } else {
        (today.year(), today.month() - 1)
    };
    let mut out = vec![];
    for _ in 0..12 {
        out.push(format!("{y:04}-{m:02}"));
        if m == 1 {
            y -= 1;
            m = 12;
        } else {
            m -= 1;
        }
    }
    out
}

pub async fn page(State(state): State<AppState>, lang: Lang, Signed(session): Signed) -> Response {
    render(&state, lang, &session, None).await
}

/// The page, with a refused release said in place above the form.
async fn render(
    state: &AppState,
    lang: Lang,
    session: &Session,
    refused: Option<&str>,
) -> Response {
    let ctx = state.ctx.clone();
    let data = tokio::task::spawn_blocking(move || {
        Ok::<_, management::Error>((management::releases(&ctx)?, management::project(&ctx)?))
    })
    .await;
    let (releases, project) = match data {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return crate::web::page::fail(lang, e),
        Err(e) => return crate::web::page::fail(lang, e),
    };
    let mut b = match &project {
        None => format!(
            "<p class=\"error\">{}</p>",
            esc(&crate::web::page::refusal(
                lang,
                &crate::base::refusal::Refusal::NoManagementProject
            ))
        ),
        Some(p) => {
            let (left, _) = p.remaining().unwrap_or((0.0, 0.0));
            format!(
                "<p>{}: ε {:.3} / {:.3} (δ = {:e}); {} {:.3}</p>",
                lang.t("mgmt.budget"),
                p.epsilon_spent,
                p.epsilon_budget,
                p.delta,
                lang.t("mgmt.left"),
                left
            )
        }
    };
    let opts: String = recent_months()
        .iter()
        .map(|m| format!("<option>{m}</option>"))
        .collect();
    if let Some(message) = refused {
        b += &format!(
            "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
            esc(message)
        );
    }
    b += &format!(
        "<form method=\"post\" action=\"/management/release\" class=\"noprint\">{}<label>{} <select name=\"month\" id=\"month\">{opts}</select></label> <button id=\"release\">{}</button></form>\
         <p class=\"note\">{}</p>",
        csrf_field(session),
        lang.t("mgmt.month"),
        lang.t("mgmt.release"),
        lang.t("mgmt.explain"),
    );
    let mut month = String::new();
    for r in &releases {
        if r.month != month {
            month = r.month.clone();
            b += &format!("<h2>{}</h2>", esc(&month));
        }
        let title = FIGURES
            .iter()
            .find(|f| f.id == r.figure)
            .map(|f| figure_title(lang, f.id))
            .unwrap_or("?");
        b += &format!(
            "<figure class=\"figure\" id=\"{}-{}\"><figcaption><strong>{}</strong> · ε {:.3} · ±{:.1} (95 %) · {} {}</figcaption>{}</figure>",
            esc(&r.month),
            esc(&r.figure),
            esc(title),
            r.answer.epsilon_spent,
            r.answer.accuracy_95.first().map(|a| a.accuracy).unwrap_or(0.0),
            esc(&r.released_by),
            time(r.released_at_ms),
            bars(lang, r)
        );
    }
    frame(lang, Some(session), lang.t("management"), &b).into_response()
}

pub async fn release(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let month = form.get("month").to_string();
    let (ctx, who) = (state.ctx.clone(), session.account.username.clone());
    match tokio::task::spawn_blocking(move || management::release_month(&ctx, &month, &who)).await {
        Ok(Ok(_)) => Redirect::to("/management").into_response(),
        Ok(Err(e)) => match Failure::from(e) {
            Failure::Refused(r) => {
                let (status, message) = Failure::Refused(r).said(lang);
                let mut page = render(&state, lang, &session, Some(&message)).await;
                if page.status().is_success() {
                    *page.status_mut() = status;
                }
                page
            }
            other => crate::web::page::fail(lang, other),
        },
        Err(e) => crate::web::page::fail(lang, e),
    }
}
