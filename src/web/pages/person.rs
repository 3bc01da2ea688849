//! The officer's caseload overview and person page. Caseload checks and audit entries happen in
//! [`crate::alerts::person`], never here.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use crate::alerts::chart::{DailyChart, TacChart};
use crate::alerts::person::{self, DayState, PersonPage, TodayState};
use crate::web::access::Signed;
use crate::web::i18n::Lang;
use crate::web::page::{blocking, esc, fail, frame, time, time_opt, zone, Failure};
use crate::web::pages::officer::{kind_html, programme_label, severity_label, status_label};
use crate::web::AppState;

fn today_label(lang: Lang, state: TodayState) -> &'static str {
    lang.t(match state {
        TodayState::AlertOpen => "today.alert-open",
        TodayState::DeviceProblem => "today.device-problem",
        TodayState::Silent => "today.silent",
        TodayState::Ok => "today.ok",
    })
}

fn day_label(lang: Lang, state: DayState) -> &'static str {
    lang.t(match state {
        DayState::NoDevice => "day.no-device",
        DayState::Alert => "day.alert",
        DayState::Silent => "day.silent",
        DayState::Worn => "day.worn",
    })
}

use crate::web::page::device_label;

/// `/caseload`: the officer's persons with their state today, most urgent first.
pub async fn caseload(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
) -> Response {
    let (ctx, account) = (state.ctx.clone(), session.account.clone());
    let rows = match blocking(move || person::overview(&ctx, &account, crate::base::time::now_ms()))
        .await
    {
        Ok(r) => r,
        Err(e) => return fail(lang, e),
    };
    let body = if rows.is_empty() {
        format!("<p class=\"note\">{}</p>", lang.t("caseload.empty"))
    } else {
        let mut s = format!(
            "<div class=\"wide\"><table id=\"caseload\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            lang.t("person"),
            lang.t("programme"),
            lang.t("today"),
            lang.t("alerts.open"),
            lang.t("last_contact"),
        );
        for r in &rows {
            s += &format!(
                "<tr data-state=\"{}\"><td><a href=\"/persons/{}\">{}</a></td><td>{}</td>\
                 <td><span class=\"state {}\">{}</span></td><td>{}</td><td>{}</td></tr>",
                r.state.as_str(),
                r.person_id,
                esc(&r.reference),
                programme_label(lang, r.programme),
                r.state.as_str(),
                today_label(lang, r.state),
                r.open_alerts,
                time_opt(r.last_contact_ms),
            );
        }
        s + "</table></div>"
    };
    frame(lang, Some(&session), lang.t("caseload"), &body).into_response()
}

/// The period of the person page: `from` and `to`, local `YYYY-MM-DD`, both inclusive.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Period {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Period {
    fn parse(&self) -> Result<Option<(chrono::NaiveDate, chrono::NaiveDate)>, Failure> {
        let day = |s: &str| crate::web::page::form_day(s).map_err(Failure::from);
        match (self.from.as_deref(), self.to.as_deref()) {
            (Some(f), Some(t)) if !f.is_empty() && !t.is_empty() => Ok(Some((day(f)?, day(t)?))),
            _ => Ok(None),
        }
    }
}

/// `/persons/{id}`: one person of the caseload.
pub async fn page(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(raw): Path<String>,
    Query(period): Query<Period>,
) -> Response {
    // A malformed id is a person that is not there (and the refusal is audited like one).
    let id = raw.parse::<i64>().unwrap_or(-1);
    // A period the rules refuse is said above the period form, which keeps what was typed; the
    // page shows the default period meanwhile.
    let (chosen, mut refused) = match period.parse() {
        Ok(p) => (p, None),
        Err(Failure::Refused(r)) => (None, Some(r)),
        Err(e) => return fail(lang, e),
    };
    let load = |chosen| {
        let (ctx, account) = (state.ctx.clone(), session.account.clone());
        blocking(move || person::page(&ctx, &account, id, chosen, crate::base::time::now_ms()))
    };
    let p = match load(chosen).await {
        Ok(p) => p,
        Err(Failure::Refused(r)) if refused.is_none() => {
            refused = Some(r);
            match load(None).await {
                Ok(p) => p,
                Err(e) => return fail(lang, e),
            }
        }
        Err(e) => return fail(lang, e),
    };
    let kept = refused.map(|r| KeptPeriod {
        message: crate::web::page::refusal(lang, &r),
        from: period.from.clone().unwrap_or_default(),
        to: period.to.clone().unwrap_or_default(),
    });
    let body = person_html(lang, &p, kept.as_ref());
    let mut page = frame(
        lang,
        Some(&session),
        &format!("{} {}", lang.t("person"), p.reference),
        &body,
    )
    .into_response();
    if kept.is_some() {
        *page.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    page
}

/// A refused period: the sentence and what was typed.
struct KeptPeriod {
    message: String,
    from: String,
    to: String,
}

fn person_html(lang: Lang, p: &PersonPage, kept: Option<&KeptPeriod>) -> String {
    let mut s = format!(
        "<table id=\"person\"><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr>",
        lang.t("person"),
        esc(&p.reference),
        lang.t("programme"),
        programme_label(lang, p.programme),
    );
    let devices: Vec<String> = p
        .devices
        .iter()
        .map(|d| {
            format!(
                "{} <code>{}</code> ({} – {})",
                device_label(lang, &d.kind),
                esc(&d.serial),
                time(d.from_ms),
                d.to_ms.map(time).unwrap_or_default()
            )
        })
        .collect();
    s += &format!(
        "<tr><th>{}</th><td id=\"devices\">{}</td></tr>",
        lang.t("devices"),
        if devices.is_empty() {
            lang.t("none").to_string()
        } else {
            devices.join("<br>")
        }
    );
    let stations: Vec<String> = p
        .stations
        .iter()
        .map(|st| {
            format!(
                "{}{} · {}: {}",
                esc(&st.name),
                if st.revoked {
                    format!(" ({})", lang.t("revoked"))
                } else {
                    String::new()
                },
                lang.t("last_contact"),
                time_opt(st.last_contact_ms)
            )
        })
        .collect();
    s += &format!(
        "<tr><th>{}</th><td id=\"station\">{}</td></tr></table>",
        lang.t("stations"),
        if stations.is_empty() {
            lang.t("none").to_string()
        } else {
            stations.join("<br>")
        }
    );
    s += &calendar_html(lang, p);
    s += &period_html(lang, p, kept);
    s += &alerts_html(lang, p);
    s
}

/// Eight weeks, one row per week (Monday first), each day coloured by its state.
fn calendar_html(lang: Lang, p: &PersonPage) -> String {
    use chrono::Datelike;
    let mut s = format!(
        "<h2>{}</h2><div class=\"wide\"><table id=\"calendar\" class=\"calendar\"><tr><th></th>",
        lang.t("calendar")
    );
    for key in [
        "weekday.mon",
        "weekday.tue",
        "weekday.wed",
        "weekday.thu",
        "weekday.fri",
        "weekday.sat",
        "weekday.sun",
    ] {
        s += &format!("<th>{}</th>", lang.t(key));
    }
    s += "</tr>";
    let Some(first) = p.calendar.first().map(|d| d.0) else {
        return s + "</table></div>";
    };
    let lead = first.weekday().num_days_from_monday() as usize;
    let mut cells: Vec<String> = vec!["<td></td>".into(); lead];
    for (day, state) in &p.calendar {
        cells.push(format!(
            "<td class=\"day {c}\" data-day=\"{day}\" data-state=\"{c}\" title=\"{label}\">{d}<br><small>{label}</small></td>",
            c = state.as_str(),
            d = day.format("%d-%m"),
            label = day_label(lang, *state),
        ));
    }
    let monday = first - chrono::Days::new(lead as u64);
    for (i, week) in cells.chunks(7).enumerate() {
        let number = (monday + chrono::Days::new(7 * i as u64)).iso_week().week();
        s += &format!(
            "<tr><th>{} {number}</th>{}</tr>",
            lang.t("week"),
            week.concat()
        );
    }
    s += "</table></div>";
    let legend: Vec<String> = [
        DayState::Worn,
        DayState::Alert,
        DayState::Silent,
        DayState::NoDevice,
    ]
    .iter()
    .map(|st| {
        format!(
            "<span class=\"day {}\">&nbsp;&nbsp;&nbsp;</span> {}",
            st.as_str(),
            day_label(lang, *st)
        )
    })
    .collect();
    s + &format!("<p class=\"note\">{}</p>", legend.join(" · "))
}

/// The chosen period: the TAC curve (ankle monitor) and the wristband's daily indicators.
fn period_html(lang: Lang, p: &PersonPage, kept: Option<&KeptPeriod>) -> String {
    let (from, to) = p.period;
    let (notice, typed_from, typed_to) = match kept {
        Some(k) => (
            format!(
                "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
                esc(&k.message)
            ),
            esc(&k.from),
            esc(&k.to),
        ),
        None => (String::new(), from.to_string(), to.to_string()),
    };
    let mut s = format!(
        "<h2>{}</h2>{notice}<form method=\"get\" action=\"/persons/{}\" class=\"noprint\">\
         <label>{} <input type=\"date\" name=\"from\" value=\"{typed_from}\"></label>\
         <label>{} <input type=\"date\" name=\"to\" value=\"{typed_to}\"></label>\
         <button>{}</button> <span class=\"note\">{}</span></form>",
        lang.t("period"),
        p.person_id,
        lang.t("from"),
        lang.t("to"),
        lang.t("show"),
        lang.t("period.max"),
    );
    let z = zone();
    let span = (
        z.day_start_ms(from),
        z.day_start_ms(to.succ_opt().unwrap_or(to)),
    );
    let ankle = p.devices.iter().any(|d| d.kind == "ankle-monitor");
    let wrist = p.devices.iter().any(|d| d.kind == "wristband");
    if ankle {
        s += &format!("<h3>{}</h3>", lang.t("tac.curve"));
        s += &if p.tac.is_empty() {
            format!("<p class=\"note\">{}</p>", lang.t("chart.no_data"))
        } else {
            format!(
                "<figure id=\"tac\">{}</figure>",
                TacChart {
                    from_ms: span.0,
                    to_ms: span.1,
                    readings: &p.tac,
                    threshold_g_dl: p.threshold_g_dl,
                    alert: (span.0, span.0),
                    contacts: &p.contacts,
                    labels: (lang.t("wear"), lang.t("contact")),
                    zone: z,
                    time_title: lang.t("time"),
                    gap_labels: [
                        lang.t("gap.not_worn"),
                        lang.t("gap.no_contact"),
                        lang.t("gap.not_uploaded"),
                    ],
                }
                .svg()
            )
        };
    }
    if wrist {
        s += &format!("<h3>{}</h3>", lang.t("wrist.daily"));
        if p.wrist_days.is_empty() {
            s += &format!("<p class=\"note\">{}</p>", lang.t("chart.no_data"));
        } else {
            let series =
                |f: &dyn Fn(&person::WristDay) -> Option<f64>| -> Vec<(chrono::NaiveDate, f64)> {
                    p.wrist_days
                        .iter()
                        .filter_map(|d| f(d).map(|v| (d.day, v)))
                        .collect()
                };
            for (id, title, unit, values) in [
                (
                    "wrist-hr",
                    lang.t("wrist.hr"),
                    "bpm",
                    series(&|d| d.mean_hr_bpm),
                ),
                (
                    "wrist-eda",
                    lang.t("wrist.eda"),
                    "µS",
                    series(&|d| d.mean_eda_us),
                ),
                (
                    "wrist-worn",
                    lang.t("wrist.worn"),
                    "h",
                    series(&|d| Some(d.worn_minutes as f64 / 60.0)),
                ),
            ] {
                s += &format!(
                    "<figure id=\"{id}\">{}</figure>",
                    DailyChart {
                        title,
                        unit,
                        from,
                        to,
                        values: &values,
                    }
                    .svg()
                );
            }
            s += "<div class=\"wide\"><table id=\"wrist-days\"><tr>";
            for key in ["day", "wrist.worn", "wrist.hr", "wrist.eda"] {
                s += &format!("<th>{}</th>", lang.t(key));
            }
            s += "</tr>";
            for d in &p.wrist_days {
                s += &format!(
                    "<tr><td>{}</td><td>{:.1} h</td><td>{}</td><td>{}</td></tr>",
                    d.day,
                    d.worn_minutes as f64 / 60.0,
                    d.mean_hr_bpm
                        .map(|v| format!("{v:.0} bpm"))
                        .unwrap_or_else(|| "—".into()),
                    d.mean_eda_us
                        .map(|v| format!("{v:.2} µS"))
                        .unwrap_or_else(|| "—".into()),
                );
            }
            s += "</table></div>";
        }
    }
    if !ankle && !wrist {
        s += &format!("<p class=\"note\">{}</p>", lang.t("chart.no_data"));
    }
    s += &format!(
        "<p class=\"note\" id=\"contacts\">{}: {}</p>",
        lang.t("contacts.in_period"),
        p.contacts.len()
    );
    s
}

fn alerts_html(lang: Lang, p: &PersonPage) -> String {
    let mut s = format!("<h2>{}</h2>", lang.t("alerts"));
    if p.alerts.is_empty() {
        return s + &format!("<p class=\"note\">{}</p>", lang.t("no_alerts"));
    }
    s += &format!(
        "<div class=\"wide\"><table id=\"person-alerts\"><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("start"),
        lang.t("kind"),
        lang.t("severity"),
        lang.t("status"),
    );
    for a in &p.alerts {
        s += &format!(
            "<tr{}><td><a href=\"/alerts/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if person::is_open(a) { " class=\"open\"" } else { "" },
            time(a.start_ms),
            kind_html(lang, a),
            severity_label(lang, a.severity),
            status_label(lang, a.status),
            id = a.id,
        );
    }
    s + "</table></div>"
}
