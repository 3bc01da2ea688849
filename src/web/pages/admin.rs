//! The administrator's pages: accounts and roles, persons and programmes, devices, stations,
//! caseloads, research projects, budgets and tokens. Every change goes through the same library
//! function the CLI uses, which writes the audit entry; viewing the overview is audited too (it
//! lists persons' case references).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use crate::base::programme::Programme;
use crate::base::refusal::Refusal;
use crate::base::Context;
use crate::lifecycle::hold;
use crate::registry::accounts::{self, Role, Session};
use crate::registry::screening;
use crate::registry::{caseload, enroll, overview};
use crate::research;
use crate::web::access::{FormFields, Signed};
use crate::web::i18n::Lang;
use crate::web::page::{blocking, csrf_field, download, esc, fail, frame, time, time_opt, Failure};
use crate::web::AppState;

/// The parts of the overview, each with its forms: a refused change is shown under its heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Accounts,
    Persons,
    Devices,
    Stations,
    Caseloads,
    Research,
}

/// A change the rules refused, shown in place: the overview again, the sentence under the
/// section's heading, and what was typed into the section's new-item form kept.
struct Refused {
    section: Section,
    message: String,
    fields: std::collections::HashMap<String, String>,
}

impl Refused {
    /// The sentence, if it belongs to this section.
    fn notice(refused: Option<&Refused>, section: Section) -> String {
        match refused {
            Some(r) if r.section == section => format!(
                "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
                esc(&r.message)
            ),
            _ => String::new(),
        }
    }

    /// ` value="…"` for an input of this section's form: what was typed, else `default`.
    fn value(refused: Option<&Refused>, section: Section, name: &str, default: &str) -> String {
        let kept = refused
            .filter(|r| r.section == section)
            .and_then(|r| r.fields.get(name));
        match kept.map(String::as_str).unwrap_or(default) {
            "" => String::new(),
            v => format!(" value=\"{}\"", esc(v)),
        }
    }

    /// ` selected` when this option was the one chosen in the refused form.
    fn selected(
        refused: Option<&Refused>,
        section: Section,
        name: &str,
        option: &str,
    ) -> &'static str {
        let kept = refused
            .filter(|r| r.section == section)
            .and_then(|r| r.fields.get(name));
        if kept.map(String::as_str) == Some(option) {
            " selected"
        } else {
            ""
        }
    }
}

/// Answers a failed change: a refusal in place on the overview, anything else as an error page.
async fn answer_failure(
    state: &AppState,
    lang: Lang,
    session: &Session,
    section: Section,
    form: FormFields,
    failure: Failure,
) -> Response {
    match failure {
        Failure::Refused(r) => {
            let status = Failure::Refused(r.clone()).said(lang).0;
            let refused = Refused {
                section,
                message: crate::web::page::refusal(lang, &r),
                fields: form.0,
            };
            let mut page = render(state, lang, session, Some(&refused)).await;
            if page.status().is_success() {
                *page.status_mut() = status;
            }
            page
        }
        other => fail(lang, other),
    }
}

/// Runs a change on a blocking thread and answers with the overview, or a page showing what
/// was created once (passwords, tokens); a refusal is shown in place ([`Refused`]).
async fn change<F>(
    state: &AppState,
    lang: Lang,
    session: &Session,
    (section, form): (Section, FormFields),
    f: F,
) -> Response
where
    F: FnOnce(&Context, &str) -> Result<Option<String>, Failure> + Send + 'static,
{
    let (ctx, actor) = (state.ctx.clone(), session.account.username.clone());
    match tokio::task::spawn_blocking(move || f(&ctx, &actor)).await {
        Ok(Ok(None)) => Redirect::to("/admin").into_response(),
        Ok(Ok(Some(shown_once))) => frame(
            lang,
            Some(session),
            lang.t("done"),
            &format!(
                "<div class=\"once\" id=\"once\">{shown_once}</div><p>{}</p><p><a href=\"/admin\">{}</a></p>",
                lang.t("shown_once"),
                lang.t("back")
            ),
        )
        .into_response(),
        Ok(Err(failure)) => answer_failure(state, lang, session, section, form, failure).await,
        Err(e) => fail(lang, Failure::internal(e)),
    }
}

/// A kind of staff screening in words.
fn screening_label(lang: Lang, kind: screening::ScreeningKind) -> &'static str {
    lang.t(match kind {
        screening::ScreeningKind::Vog => "screening.vog",
        screening::ScreeningKind::SecurityClearance => "screening.security-clearance",
    })
}

/// A value not among a select box's options (a hand-made request).
fn choice(field: &'static str, value: &str) -> Failure {
    Refusal::UnknownChoice {
        field,
        value: value.to_string(),
    }
    .into()
}

fn day(day: &str) -> Result<chrono::NaiveDate, Failure> {
    crate::web::page::form_day(day).map_err(Failure::from)
}

fn day_ms(text: &str) -> Result<i64, Failure> {
    day(text).map(crate::base::time::midnight_ms)
}

fn number<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, Failure> {
    value.trim().parse().map_err(|_| {
        Refusal::NotANumber {
            field,
            value: value.to_string(),
        }
        .into()
    })
}

pub async fn overview(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
) -> Response {
    render(&state, lang, &session, None).await
}

/// The overview, with a refused change in place when there is one.
async fn render(
    state: &AppState,
    lang: Lang,
    session: &Session,
    refused: Option<&Refused>,
) -> Response {
    let (ctx, actor) = (state.ctx.clone(), session.account.username.clone());
    let data = tokio::task::spawn_blocking(move || -> Result<_, Failure> {
        let accounts = accounts::list(&ctx.db)?;
        let caseloads = caseload::list(&ctx.db)?;
        let projects = research::projects(&ctx)?;
        let tokens = research::list_tokens(&ctx, None)?;
        let registry = overview::overview(&ctx.db, &actor, crate::base::time::now_ms())?;
        let holds = hold::in_force(&ctx.db.lock(), None)?;
        let screenings = screening::latest_all(&ctx.db.lock())?;
        let teams = {
            let conn = ctx.db.lock();
            (
                crate::notify::settings::managers(&conn)?,
                crate::notify::settings::manager_of_officers(&conn)?,
            )
        };
        Ok((
            accounts, caseloads, projects, tokens, registry, holds, screenings, teams,
        ))
    })
    .await;
    let (
        accounts,
        caseloads,
        projects,
        tokens,
        registry,
        holds,
        screenings,
        (managers, manager_of),
    ) = match data {
        Ok(Ok(d)) => d,
        Ok(Err(failure)) => return fail(lang, failure),
        Err(e) => return fail(lang, Failure::internal(e)),
    };
    let csrf = csrf_field(session);
    let notice = |section| Refused::notice(refused, section);
    let value = |section, name, default| Refused::value(refused, section, name, default);
    let selected = |section, name, option| Refused::selected(refused, section, name, option);
    let t = |k| lang.t(k);
    let mut b = String::new();

    // Accounts.
    b += &format!("<h2>{}</h2>{}<table id=\"accounts\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>", t("accounts"), notice(Section::Accounts), t("username"), t("role"), t("created"), t("state"), t("screening"));
    for a in &accounts {
        let state_text = match (a.disabled_at_ms, a.locked_until_ms) {
            (Some(_), _) => t("disabled").to_string(),
            (None, Some(until)) if until > crate::base::time::now_ms() => {
                format!("{} {}", t("locked"), time(until))
            }
            _ => t("active").to_string(),
        };
        let action = if a.disabled_at_ms.is_none() && a.username != session.account.username {
            let roles: String = Role::ALL
                .iter()
                .map(|r| {
                    let sel = if *r == a.role { " selected" } else { "" };
                    format!(
                        "<option value=\"{}\"{sel}>{}</option>",
                        r.as_str(),
                        crate::web::page::role_label(lang, *r)
                    )
                })
                .collect();
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/admin/accounts/{id}/role\">{csrf}<select name=\"role\">{roles}</select><button>{}</button></form> \
                 <form class=\"inline\" method=\"post\" action=\"/admin/accounts/{id}/reset\">{csrf}<button>{}</button></form> \
                 <form class=\"inline\" method=\"post\" action=\"/admin/accounts/{id}/disable\">{csrf}<button>{}</button></form>",
                t("save"),
                t("reset"),
                t("disable"),
                id = a.id
            )
        } else {
            String::new()
        };
        // An officer's team manager receives escalations of critical alerts left unopened.
        let team = if a.role == Role::Officer && a.disabled_at_ms.is_none() {
            let current = manager_of.get(&a.id);
            let options: String = managers
                .iter()
                .map(|m| {
                    let sel = if Some(m) == current { " selected" } else { "" };
                    format!("<option value=\"{0}\"{sel}>{0}</option>", esc(m))
                })
                .collect();
            format!(
                " <form class=\"inline\" method=\"post\" action=\"/admin/accounts/{id}/manager\">{csrf}\
                 <label>{} <select name=\"manager\"><option value=\"\">{}</option>{options}</select></label>\
                 <button>{}</button></form>",
                t("manager.team"),
                t("manager.none"),
                t("save"),
                id = a.id
            )
        } else {
            String::new()
        };
        let action = action + &team;
        let now = crate::base::time::now_ms();
        let screening_text = match screenings.get(&a.id) {
            Some(s) if s.in_force(now) => format!(
                "{} {} {}",
                screening_label(lang, s.kind),
                t("until"),
                crate::base::time::date_of(s.expires_at_ms)
            ),
            Some(s) => format!(
                "<strong class=\"error\">{} {}</strong>",
                t("screening.expired"),
                crate::base::time::date_of(s.expires_at_ms)
            ),
            None => format!("<strong class=\"error\">{}</strong>", t("screening.none")),
        };
        let kinds: String = screening::ScreeningKind::ALL
            .iter()
            .map(|k| {
                format!(
                    "<option value=\"{}\">{}</option>",
                    k.as_str(),
                    screening_label(lang, *k)
                )
            })
            .collect();
        let screening_form = if a.disabled_at_ms.is_none() {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/admin/accounts/{id}/screening\">{csrf}\
                 <select name=\"kind\">{kinds}</select>\
                 <label>{} <input name=\"screened_on\" type=\"date\" required></label>\
                 <label>{} <input name=\"expires\" type=\"date\" required></label><button>{}</button></form>",
                t("screened_on"),
                t("expires"),
                t("record"),
                id = a.id
            )
        } else {
            String::new()
        };
        b += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{state_text}</td><td>{screening_text} {screening_form}</td><td>{action}</td></tr>",
            esc(&a.username),
            crate::web::page::role_label(lang, a.role),
            time(a.created_at_ms)
        );
    }
    let role_opts: String = Role::ALL
        .iter()
        .map(|r| {
            format!(
                "<option value=\"{}\"{}>{}</option>",
                r.as_str(),
                selected(Section::Accounts, "role", r.as_str()),
                crate::web::page::role_label(lang, *r)
            )
        })
        .collect();
    b += &format!(
        "</table><form method=\"post\" action=\"/admin/accounts\">{csrf}<label>{} <input name=\"username\" required{}></label>\
         <label>{} <select name=\"role\">{role_opts}</select></label><button>{}</button></form>",
        t("username"), value(Section::Accounts, "username", ""), t("role"), t("create")
    );

    // Persons: each with the state of their supervision, the subject access export, ending the
    // supervision, and legal holds.
    b += &format!(
        "<h2>{}</h2>{}<table id=\"persons\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
        t("persons"),
        notice(Section::Persons),
        t("reference"),
        t("programme"),
        t("region"),
        t("birth_year"),
        t("supervision"),
    );
    for p in &registry.persons {
        let reference = esc(&p.reference);
        let state_cell = match p.closed_at_ms {
            Some(at) => format!("{} {}", t("supervision.ended_on"), time(at)),
            None => format!(
                "<form class=\"inline\" method=\"post\" action=\"/admin/persons/close\">{csrf}\
                 <input type=\"hidden\" name=\"reference\" value=\"{reference}\"><input type=\"date\" name=\"at\">\
                 <button>{}</button></form>",
                t("person.close")
            ),
        };
        let mut held = String::new();
        for h in holds.iter().filter(|h| h.person_id == p.id) {
            let what = h
                .alert_id
                .map(|a| format!(" ({} {a})", t("alert")))
                .unwrap_or_default();
            held += &format!(
                "<div class=\"hold\">{}{what}: {} · {} <form class=\"inline\" method=\"post\" action=\"/admin/holds/{}/release\">{csrf}\
                 <input name=\"reason\" required placeholder=\"{}\"><button>{}</button></form></div>",
                t("holds"),
                esc(&h.reason),
                esc(&h.placed_by),
                h.id,
                t("hold.reason"),
                t("hold.release"),
            );
        }
        b += &format!(
            "<tr><td>{reference}</td><td>{}</td><td>{}</td><td>{}</td><td>{state_cell}</td><td>\
             <form class=\"inline\" method=\"post\" action=\"/admin/persons/export\">{csrf}<input type=\"hidden\" name=\"reference\" value=\"{reference}\"><button>{}</button></form> \
             <form class=\"inline\" method=\"post\" action=\"/admin/persons/hold\">{csrf}<input type=\"hidden\" name=\"reference\" value=\"{reference}\">\
             <input name=\"reason\" required placeholder=\"{}\"><button>{}</button></form>{held}</td></tr>",
            crate::web::pages::officer::programme_label(lang, p.programme),
            esc(p.region.as_deref().map_or("—", |r| crate::web::page::region_label(lang, r))),
            p.birth_year
                .map(|y| y.to_string())
                .unwrap_or_else(|| "—".into()),
            t("person.export"),
            t("hold.reason"),
            t("hold.place"),
        );
    }
    let programme_opts: String = Programme::ALL
        .iter()
        .map(|p| {
            format!(
                "<option value=\"{}\"{}>{}</option>",
                p.as_str(),
                selected(Section::Persons, "programme", p.as_str()),
                crate::web::pages::officer::programme_label(lang, *p)
            )
        })
        .collect();
    let region_opts: String = enroll::REGIONS
        .iter()
        .map(|r| {
            format!(
                "<option value=\"{r}\"{}>{}</option>",
                selected(Section::Persons, "region", r),
                crate::web::page::region_label(lang, r)
            )
        })
        .collect();
    b += &format!(
        "</table><form method=\"post\" action=\"/admin/persons\">{csrf}<label>{} <input name=\"reference\" required{}></label>\
         <label>{} <select name=\"programme\">{programme_opts}</select></label>\
         <label>{} <select name=\"region\"><option value=\"\">—</option>{region_opts}</select></label>\
         <label>{} <input name=\"birth_year\" size=\"5\"{}></label>\
         <label>{} <input name=\"returning\" size=\"12\"{}></label><button>{}</button></form>",
        t("reference"), value(Section::Persons, "reference", ""), t("programme"), t("region"),
        t("birth_year"), value(Section::Persons, "birth_year", ""),
        t("person.returning"), value(Section::Persons, "returning", ""), t("create")
    );

    // Devices: those worn now, each can be returned (its assignment ends now); then a new one.
    b += &format!(
        "<h2>{}</h2>{}<table id=\"devices\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
        t("devices"),
        notice(Section::Devices),
        t("serial"),
        t("kind"),
        t("person"),
        t("from")
    );
    for d in &registry.devices {
        let (serial, kind, person, from) = (&d.serial, d.kind.as_str(), &d.person, &d.since_ms);
        b += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form class=\"inline\" method=\"post\" action=\"/admin/devices/return\">{csrf}<input type=\"hidden\" name=\"serial\" value=\"{}\"><button>{}</button></form></td></tr>",
            esc(serial),
            crate::web::page::device_label(lang, kind),
            esc(person),
            time(*from),
            esc(serial),
            t("return_now")
        );
    }
    let device_opts: String = nachtwacht_wire::DeviceKind::ALL
        .iter()
        .map(|k| {
            format!(
                "<option value=\"{0}\"{1}>{2}</option>",
                k.as_str(),
                selected(Section::Devices, "kind", k.as_str()),
                crate::web::page::device_label(lang, k.as_str())
            )
        })
        .collect();
    b += &format!(
        "</table><form method=\"post\" action=\"/admin/devices\">{csrf}<label>{} <input name=\"serial\" required{}></label>\
         <label>{} <select name=\"kind\">{device_opts}</select></label>\
         <label>{} <input name=\"person\" required{}></label><label>{} <input name=\"station\"{}></label><label>{} <input type=\"date\" name=\"from\" required{}></label><button>{}</button></form>",
        t("serial"), value(Section::Devices, "serial", ""), t("kind"),
        t("person"), value(Section::Devices, "person", ""),
        t("stations"), value(Section::Devices, "station", ""),
        t("from"), value(Section::Devices, "from", ""), t("assign")
    );

    // Stations.
    b += &format!("<h2>{}</h2>{}<table id=\"stations\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>", t("stations"), notice(Section::Stations), t("name"), t("person"), t("created"), t("last_contact"));
    for s in &registry.stations {
        let (name, person, enrolled, revoked, contact) = (
            &s.name,
            &s.person,
            &s.enrolled_at_ms,
            &s.revoked_at_ms,
            &s.last_contact_ms,
        );
        let action = if revoked.is_none() {
            format!("<form class=\"inline\" method=\"post\" action=\"/admin/stations/{}/revoke\">{csrf}<button>{}</button></form>", esc(name), t("revoke"))
        } else {
            format!("{} {}", t("revoked"), time_opt(*revoked))
        };
        b += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            esc(name),
            esc(person.as_deref().unwrap_or("—")),
            time(*enrolled),
            time_opt(*contact)
        );
    }
    b += &format!(
        "</table><form method=\"post\" action=\"/admin/stations\">{csrf}<label>{} <input name=\"name\" required{}></label>\
         <label>{} <input name=\"person\"{}></label><button>{}</button></form>",
        t("name"), value(Section::Stations, "name", ""),
        t("person"), value(Section::Stations, "person", ""), t("enrol_station")
    );

    // Caseloads.
    b += &format!("<h2>{}</h2>{}<table id=\"caseloads\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>", t("caseloads"), notice(Section::Caseloads), t("officer"), t("person"), t("from"), t("end"));
    let now = crate::base::time::now_ms();
    for c in &caseloads {
        let current = c.valid_from_ms <= now && c.valid_to_ms.is_none_or(|to| to > now);
        let action = if current {
            format!("<form class=\"inline\" method=\"post\" action=\"/admin/caseloads/{}/end\">{csrf}<button>{}</button></form>", c.id, t("end_now"))
        } else {
            String::new()
        };
        b += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            esc(&c.officer),
            esc(&c.person_reference),
            time(c.valid_from_ms),
            time_opt(c.valid_to_ms)
        );
    }
    b += &format!(
        "</table><form method=\"post\" action=\"/admin/caseloads\">{csrf}<label>{} <input name=\"officer\" required{}></label>\
         <label>{} <input name=\"person\" required{}></label><label>{} <input type=\"date\" name=\"from\" required{}></label>\
         <label>{} <input type=\"date\" name=\"to\"{}></label><button>{}</button></form>",
        t("officer"), value(Section::Caseloads, "officer", ""),
        t("person"), value(Section::Caseloads, "person", ""),
        t("from"), value(Section::Caseloads, "from", ""),
        t("to"), value(Section::Caseloads, "to", ""), t("assign")
    );

    // Research projects and tokens.
    b += &format!("<h2>{}</h2>{}<table id=\"projects\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>", t("research"), notice(Section::Research), t("project"), t("budget"), t("delta"), t("spent"), t("max_per_query"));
    for p in &projects {
        b += &format!(
            "<tr><td>{}</td><td>{}</td><td>{:e}</td><td>{:.4}</td><td>{}</td></tr>",
            esc(&p.name),
            p.epsilon_budget,
            p.delta,
            p.epsilon_spent,
            p.max_epsilon_per_query
        );
    }
    b += &format!(
        "</table><form method=\"post\" action=\"/admin/research/projects\">{csrf}<label>{} <input name=\"name\" required{}></label>\
         <label>{} <input name=\"epsilon\" size=\"5\" required{}></label><label>{} <input name=\"delta\" size=\"7\"{}></label>\
         <label>{} <input name=\"max_epsilon_per_query\" size=\"5\"{}></label><button>{}</button></form>",
        t("project"), value(Section::Research, "name", ""),
        t("budget"), value(Section::Research, "epsilon", ""),
        t("delta"), value(Section::Research, "delta", "1e-6"),
        t("max_per_query"), value(Section::Research, "max_epsilon_per_query", "1"), t("create")
    );
    b += &format!("<h3>{}</h3><table id=\"tokens\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>", t("tokens"), t("token.id"), t("project"), t("holder"), t("created"), t("end"));
    for tok in &tokens {
        let action = if tok.revoked_at_ms.is_none() {
            format!("<form class=\"inline\" method=\"post\" action=\"/admin/research/tokens/{}/revoke\">{csrf}<button>{}</button></form>", esc(&tok.id), t("revoke"))
        } else {
            format!("{} {}", t("revoked"), time_opt(tok.revoked_at_ms))
        };
        b += &format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            esc(&tok.id),
            esc(&tok.project),
            esc(tok.holder.as_deref().unwrap_or("-")),
            time(tok.created_at_ms),
            time(tok.expires_at_ms)
        );
    }
    b += &format!(
        "</table><form method=\"post\" action=\"/admin/research/tokens\">{csrf}<label>{} <input name=\"project\" required{}></label>\
         <label>{} <input name=\"holder\" required{}></label>\
         <label>{} <input name=\"ttl_days\" size=\"4\"{}></label><button>{}</button></form>",
        t("project"), value(Section::Research, "project", ""),
        t("holder"), value(Section::Research, "holder", ""),
        t("days_valid"), value(Section::Research, "ttl_days", "90"), t("create")
    );
    frame(lang, Some(session), t("admin"), &b).into_response()
}

/// A new password and TOTP secret, for the page that shows them once.
fn credentials_html(lang: Lang, new: &accounts::NewAccount) -> String {
    format!(
        "<p>{}: <code id=\"password\">{}</code></p>\
         <p>{}: <code id=\"totp\">{}</code></p><p><code>{}</code></p>",
        lang.t("password"),
        esc(&new.password),
        lang.t("totp.secret"),
        esc(&new.totp_secret),
        esc(&new.otpauth_uri)
    )
}

pub async fn create_account(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let (username, role) = (
        form.get("username").trim().to_string(),
        form.get("role").to_string(),
    );
    change(
        &state,
        lang,
        &session,
        (Section::Accounts, form),
        move |ctx, actor| {
            let role = Role::parse(&role).ok_or_else(|| choice("role", &role))?;
            let new =
                accounts::create(&ctx.db, &username, role, actor, crate::base::time::now_ms())?;
            Ok(Some(format!(
                "<p>{}: <code>{}</code></p>{}",
                crate::web::page::role_label(lang, role),
                esc(&username),
                credentials_html(lang, &new)
            )))
        },
    )
    .await
}

pub async fn record_screening(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<i64>,
    form: FormFields,
) -> Response {
    let (kind, on, until) = (
        form.get("kind").to_string(),
        form.get("screened_on").to_string(),
        form.get("expires").to_string(),
    );
    change(
        &state,
        lang,
        &session,
        (Section::Accounts, form),
        move |ctx, actor| {
            let kind =
                screening::ScreeningKind::parse(&kind).ok_or_else(|| choice("screening", &kind))?;
            let username = accounts::list(&ctx.db)?
                .into_iter()
                .find(|a| a.id == id)
                .map(|a| a.username)
                .ok_or(Failure::NotFound)?;
            let now = crate::base::time::now_ms();
            screening::record(
                &ctx.db,
                &username,
                kind,
                day_ms(&on)?,
                day_ms(&until)?,
                actor,
                now,
            )?;
            Ok(None)
        },
    )
    .await
}

pub async fn disable_account(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<i64>,
) -> Response {
    let own = session.account.id;
    change(
        &state,
        lang,
        &session,
        (Section::Accounts, FormFields(Default::default())),
        move |ctx, actor| {
            if id == own {
                return Err(Refusal::CannotDisableSelf.into());
            }
            accounts::disable(&ctx.db, id, actor, crate::base::time::now_ms())?;
            Ok(None)
        },
    )
    .await
}

pub async fn set_role(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<i64>,
    form: FormFields,
) -> Response {
    let (own, role) = (session.account.id, form.get("role").to_string());
    change(
        &state,
        lang,
        &session,
        (Section::Accounts, form),
        move |ctx, actor| {
            if id == own {
                return Err(Refusal::CannotChangeOwnRole.into());
            }
            let role = Role::parse(&role).ok_or_else(|| choice("role", &role))?;
            accounts::set_role(&ctx.db, id, role, actor, crate::base::time::now_ms())?;
            Ok(None)
        },
    )
    .await
}

/// Sets the team manager of an officer (who receives escalations); empty clears it.
pub async fn set_manager(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<i64>,
    form: FormFields,
) -> Response {
    let manager = form.get("manager").trim().to_string();
    change(
        &state,
        lang,
        &session,
        (Section::Accounts, form),
        move |ctx, actor| {
            let officer = accounts::list(&ctx.db)?
                .into_iter()
                .find(|a| a.id == id)
                .ok_or(Failure::NotFound)?;
            crate::notify::settings::set_manager(
                &ctx.db,
                &officer.username,
                Some(manager.as_str()).filter(|m| !m.is_empty()),
                actor,
                crate::base::time::now_ms(),
            )?;
            Ok(None)
        },
    )
    .await
}

/// New password and TOTP secret for a user who lost theirs, shown once.
pub async fn reset_account(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<i64>,
) -> Response {
    let own = session.account.id;
    change(
        &state,
        lang,
        &session,
        (Section::Accounts, FormFields(Default::default())),
        move |ctx, actor| {
            if id == own {
                return Err(Refusal::CannotResetSelf.into());
            }
            let new = accounts::reset_credentials(&ctx.db, id, actor, crate::base::time::now_ms())?;
            Ok(Some(credentials_html(lang, &new)))
        },
    )
    .await
}

pub async fn add_person(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let (reference, programme) = (
        form.get("reference").trim().to_string(),
        form.get("programme").to_string(),
    );
    let (region, birth) = (
        form.get("region").to_string(),
        form.get("birth_year").to_string(),
    );
    let returning = form.get("returning").trim().to_string();
    change(
        &state,
        lang,
        &session,
        (Section::Persons, form),
        move |ctx, actor| {
            let programme =
                Programme::parse(&programme).ok_or_else(|| choice("programme", &programme))?;
            // A person supervised before keeps their identity (one research pseudonym).
            let id = if returning.is_empty() {
                enroll::add_person(ctx, &reference, programme, actor)?
            } else {
                enroll::start_episode(ctx, &returning, &reference, programme, actor)?
            };
            let birth: Option<i32> = if birth.trim().is_empty() {
                None
            } else {
                Some(number("birth_year", &birth)?)
            };
            let region = Some(region.as_str()).filter(|r| !r.is_empty());
            if region.is_some() || birth.is_some() {
                enroll::set_research_attributes(ctx, id, region, birth, actor)?;
            }
            Ok(None)
        },
    )
    .await
}

pub async fn assign_device(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let (serial, kind) = (
        form.get("serial").trim().to_string(),
        form.get("kind").to_string(),
    );
    let (person, from) = (
        form.get("person").trim().to_string(),
        form.get("from").to_string(),
    );
    let station = form.get("station").trim().to_string();
    change(
        &state,
        lang,
        &session,
        (Section::Devices, form),
        move |ctx, actor| {
            let kind =
                nachtwacht_wire::DeviceKind::parse(&kind).ok_or_else(|| choice("kind", &kind))?;
            let person_id = enroll::person_id(&ctx.db.lock(), &person)?
                .ok_or_else(|| Refusal::NoPerson(person.clone()))?;
            enroll::assign_device(ctx, &serial, kind, person_id, day_ms(&from)?, actor)?;
            // Pairing tells ingest which station may upload this device's data.
            if !station.is_empty() {
                enroll::pair_device(ctx, &serial, &station, day_ms(&from)?, actor)?;
            }
            Ok(None)
        },
    )
    .await
}

/// Ends a device's current assignment now: handed in, or supervision over
/// ([`enroll::end_assignment`]).
pub async fn return_device(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let serial = form.get("serial").trim().to_string();
    change(
        &state,
        lang,
        &session,
        (Section::Devices, form),
        move |ctx, actor| {
            enroll::end_assignment(ctx, &serial, crate::base::time::now_ms(), actor)?;
            Ok(None)
        },
    )
    .await
}

/// Enrols a station and hands its configuration (certificate, key, server addresses) to the
/// administrator as a download, once.
pub async fn add_station(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let (name, person) = (
        form.get("name").trim().to_string(),
        form.get("person").trim().to_string(),
    );
    let (ctx, actor) = (state.ctx.clone(), session.account.username.clone());
    let result = tokio::task::spawn_blocking(move || -> Result<String, Failure> {
        // The person is checked first: a station enrolled whose configuration never reached the
        // administrator would have to be revoked again.
        if !person.is_empty() && enroll::person_id(&ctx.db.lock(), &person)?.is_none() {
            return Err(Refusal::NoPerson(person).into());
        }
        let config = enroll::add_station(&ctx, &name, &actor)?;
        if !person.is_empty() {
            enroll::link_station(&ctx, &name, &person, &actor)?;
        }
        Ok(config.to_toml())
    })
    .await;
    match result {
        Ok(Ok(toml)) => download(toml.into_bytes(), "application/toml", "station.toml"),
        Ok(Err(failure)) => {
            answer_failure(&state, lang, &session, Section::Stations, form, failure).await
        }
        Err(e) => fail(lang, Failure::internal(e)),
    }
}

/// Everything held about a person (GDPR art. 15) as a download: the archive of
/// [`crate::lifecycle::export`], built in memory. Audited by the export itself.
pub async fn export_person(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let reference = form.get("reference").trim().to_string();
    let (ctx, actor) = (state.ctx.clone(), session.account.username.clone());
    let result = blocking(move || {
        crate::lifecycle::export::export_person_bytes(
            &ctx,
            &reference,
            &actor,
            crate::base::time::now_ms(),
        )
        .map(|(archive, _)| archive)
    })
    .await;
    match result {
        Ok(archive) => download(archive, "application/x-tar", "inzage.tar"),
        Err(failure) => {
            answer_failure(&state, lang, &session, Section::Persons, form, failure).await
        }
    }
}

/// Ends a person's supervision, at the start of the given day or now.
pub async fn close_person(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let (reference, at) = (
        form.get("reference").trim().to_string(),
        form.get("at").trim().to_string(),
    );
    change(
        &state,
        lang,
        &session,
        (Section::Persons, form),
        move |ctx, actor| {
            let at_ms = if at.is_empty() {
                crate::base::time::now_ms()
            } else {
                day_ms(&at)?
            };
            crate::lifecycle::supervision::close(ctx, &reference, at_ms, actor)?;
            Ok(None)
        },
    )
    .await
}

/// Places a legal hold on everything of a person.
pub async fn hold_person(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let (reference, reason) = (
        form.get("reference").trim().to_string(),
        form.get("reason").to_string(),
    );
    let account = session.account.clone();
    change(
        &state,
        lang,
        &session,
        (Section::Persons, form),
        move |ctx, _| {
            let person = enroll::person_id(&ctx.db.lock(), &reference)
                .map_err(Failure::internal)?
                .ok_or_else(|| Refusal::NoPerson(reference.clone()))?;
            hold::place(
                &mut ctx.db.lock(),
                hold::HoldActor::Account(&account),
                hold::HoldTarget::Person(person),
                &reason,
                crate::base::time::now_ms(),
            )?;
            Ok(None)
        },
    )
    .await
}

pub async fn release_hold(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<i64>,
    form: FormFields,
) -> Response {
    let reason = form.get("reason").to_string();
    let account = session.account.clone();
    change(
        &state,
        lang,
        &session,
        (Section::Persons, form),
        move |ctx, _| {
            hold::release(
                &mut ctx.db.lock(),
                hold::HoldActor::Account(&account),
                id,
                &reason,
                crate::base::time::now_ms(),
            )?;
            Ok(None)
        },
    )
    .await
}

pub async fn revoke_station(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(name): Path<String>,
) -> Response {
    change(
        &state,
        lang,
        &session,
        (Section::Stations, FormFields(Default::default())),
        move |ctx, actor| {
            enroll::revoke_station(ctx, &name, actor)?;
            Ok(None)
        },
    )
    .await
}

pub async fn assign_caseload(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let (officer, person) = (
        form.get("officer").trim().to_string(),
        form.get("person").trim().to_string(),
    );
    let (from, to) = (form.get("from").to_string(), form.get("to").to_string());
    change(
        &state,
        lang,
        &session,
        (Section::Caseloads, form),
        move |ctx, actor| {
            let to = Some(to.trim())
                .filter(|t| !t.is_empty())
                .map(day)
                .transpose()?;
            let now = crate::base::time::now_ms();
            let (from_ms, to_ms) =
                caseload::day_bounds(Some(day(&from)?), to, ctx.config.http.zone(), now);
            caseload::assign(&ctx.db, &officer, &person, from_ms, to_ms, actor, now)?;
            Ok(None)
        },
    )
    .await
}

pub async fn end_caseload(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<i64>,
) -> Response {
    change(
        &state,
        lang,
        &session,
        (Section::Caseloads, FormFields(Default::default())),
        move |ctx, actor| {
            caseload::end(&ctx.db, id, actor, crate::base::time::now_ms())?;
            Ok(None)
        },
    )
    .await
}

pub async fn create_project(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let name = form.get("name").trim().to_string();
    let (eps, delta, max) = (
        form.get("epsilon").to_string(),
        form.get("delta").to_string(),
        form.get("max_epsilon_per_query").to_string(),
    );
    change(
        &state,
        lang,
        &session,
        (Section::Research, form),
        move |ctx, actor| {
            let budget = research::Budget {
                epsilon: number("epsilon", &eps)?,
                delta: number("delta", &delta)?,
                max_epsilon_per_query: number("max_epsilon_per_query", &max)?,
            };
            research::create_project(ctx, &name, budget, actor)?;
            Ok(None)
        },
    )
    .await
}

pub async fn issue_token(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    form: FormFields,
) -> Response {
    let (project, holder, ttl) = (
        form.get("project").trim().to_string(),
        form.get("holder").trim().to_string(),
        form.get("ttl_days").to_string(),
    );
    change(
        &state,
        lang,
        &session,
        (Section::Research, form),
        move |ctx, actor| {
            let token =
                research::issue_token(ctx, &project, &holder, number("ttl_days", &ttl)?, actor)?;
            Ok(Some(format!(
                "<p>{}: <code>{}</code></p><p>{}: <code id=\"token\">{}</code></p>",
                lang.t("project"),
                esc(&project),
                lang.t("token"),
                esc(&token)
            )))
        },
    )
    .await
}

pub async fn revoke_token(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Response {
    change(
        &state,
        lang,
        &session,
        (Section::Research, FormFields(Default::default())),
        move |ctx, actor| {
            research::revoke_token(ctx, &id, actor)?;
            Ok(None)
        },
    )
    .await
}
