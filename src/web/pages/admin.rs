//! The administrator's pages: accounts and roles, persons and programmes, devices, stations,
//! caseloads, research projects, budgets and tokens. Every change goes through the same library
//! function the CLI uses, which writes the audit entry; viewing the overview is audited too (it
//! lists persons' case references).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use crate::base::programme::Programme;
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

/// Runs a change on a blocking thread and answers with the overview, or a page showing what
/// was created once (passwords, tokens), or an error.
async fn change<F>(state: &AppState, lang: Lang, session: &Session, f: F) -> Response
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
        Ok(Err(failure)) => fail(lang, failure),
        Err(e) => fail(lang, Failure::internal(e)),
    }
}

fn day(day: &str) -> Result<chrono::NaiveDate, Failure> {
    chrono::NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
        .map_err(|_| Failure::input(format!("not a date (YYYY-MM-DD): {day:?}")))
}

fn day_ms(text: &str) -> Result<i64, Failure> {
    day(text).map(crate::base::time::midnight_ms)
}

fn number<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, Failure> {
    value
        .trim()
        .parse()
        .map_err(|_| Failure::input(format!("{field}: not a number: {value:?}")))
}

pub async fn overview(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
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
    let csrf = csrf_field(&session);
    let t = |k| lang.t(k);
    let mut b = String::new();

    // Accounts.
    b += &format!("<h2>{}</h2><table id=\"accounts\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>", t("accounts"), t("username"), t("role"), t("created"), t("state"), t("screening"));
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
                    format!("<option{sel}>{}</option>", r.as_str())
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
                s.kind.as_str().to_uppercase(),
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
            .map(|k| format!("<option>{}</option>", k.as_str()))
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
                "<option value=\"{}\">{}</option>",
                r.as_str(),
                crate::web::page::role_label(lang, *r)
            )
        })
        .collect();
    b += &format!(
        "</table><form method=\"post\" action=\"/admin/accounts\">{csrf}<label>{} <input name=\"username\" required></label>\
         <label>{} <select name=\"role\">{role_opts}</select></label><button>{}</button></form>",
        t("username"), t("role"), t("create")
    );

    // Persons: each with the state of their supervision, the subject access export, ending the
    // supervision, and legal holds.
    b += &format!(
        "<h2>{}</h2><table id=\"persons\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
        t("persons"),
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
            esc(p.programme.as_str()),
            esc(p.region.as_deref().unwrap_or("—")),
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
        .map(|p| format!("<option>{}</option>", p.as_str()))
        .collect();
    let region_opts: String = enroll::REGIONS
        .iter()
        .map(|r| format!("<option>{r}</option>"))
        .collect();
    b += &format!(
        "</table><form method=\"post\" action=\"/admin/persons\">{csrf}<label>{} <input name=\"reference\" required></label>\
         <label>{} <select name=\"programme\">{programme_opts}</select></label>\
         <label>{} <select name=\"region\"><option value=\"\">—</option>{region_opts}</select></label>\
         <label>{} <input name=\"birth_year\" size=\"5\"></label>\
         <label>{} <input name=\"returning\" size=\"12\"></label><button>{}</button></form>",
        t("reference"), t("programme"), t("region"), t("birth_year"), t("person.returning"), t("create")
    );

    // Devices: those worn now, each can be returned (its assignment ends now); then a new one.
    b += &format!(
        "<h2>{}</h2><table id=\"devices\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
        t("devices"),
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
            esc(kind),
            esc(person),
            time(*from),
            esc(serial),
            t("return_now")
        );
    }
    b += &format!(
        "</table><form method=\"post\" action=\"/admin/devices\">{csrf}<label>{} <input name=\"serial\" required></label>\
         <label>{} <select name=\"kind\"><option value=\"ankle-monitor\">ankle-monitor</option><option value=\"wristband\">wristband</option></select></label>\
         <label>{} <input name=\"person\" required></label><label>{} <input name=\"station\"></label><label>{} <input type=\"date\" name=\"from\" required></label><button>{}</button></form>",
        t("serial"), t("kind"), t("person"), t("stations"), t("from"), t("assign")
    );

    // Stations.
    b += &format!("<h2>{}</h2><table id=\"stations\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>", t("stations"), t("name"), t("person"), t("created"), t("last_contact"));
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
        "</table><form method=\"post\" action=\"/admin/stations\">{csrf}<label>{} <input name=\"name\" required></label>\
         <label>{} <input name=\"person\"></label><button>{}</button></form>",
        t("name"), t("person"), t("enrol_station")
    );

    // Caseloads.
    b += &format!("<h2>{}</h2><table id=\"caseloads\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>", t("caseloads"), t("officer"), t("person"), t("from"), t("end"));
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
        "</table><form method=\"post\" action=\"/admin/caseloads\">{csrf}<label>{} <input name=\"officer\" required></label>\
         <label>{} <input name=\"person\" required></label><label>{} <input type=\"date\" name=\"from\" required></label>\
         <label>{} <input type=\"date\" name=\"to\"></label><button>{}</button></form>",
        t("officer"), t("person"), t("from"), t("to"), t("assign")
    );

    // Research projects and tokens.
    b += &format!("<h2>{}</h2><table id=\"projects\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>", t("research"), t("project"), t("budget"), t("delta"), t("spent"), t("max_per_query"));
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
        "</table><form method=\"post\" action=\"/admin/research/projects\">{csrf}<label>{} <input name=\"name\" required></label>\
         <label>{} <input name=\"epsilon\" size=\"5\" required></label><label>{} <input name=\"delta\" size=\"7\" value=\"1e-6\"></label>\
         <label>{} <input name=\"max_epsilon_per_query\" size=\"5\" value=\"1\"></label><button>{}</button></form>",
        t("project"), t("budget"), t("delta"), t("max_per_query"), t("create")
    );
    b += &format!("<h3>{}</h3><table id=\"tokens\"><tr><th>id</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>", t("tokens"), t("project"), t("holder"), t("created"), t("end"));
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
        "</table><form method=\"post\" action=\"/admin/research/tokens\">{csrf}<label>{} <input name=\"project\" required></label>\
         <label>{} <input name=\"holder\" required></label>\
         <label>{} <input name=\"ttl_days\" size=\"4\" value=\"90\"></label><button>{}</button></form>",
        t("project"), t("holder"), t("days_valid"), t("create")
    );
    frame(lang, Some(&session), t("admin"), &b).into_response()
}

/// A new password and TOTP secret, for the page that shows them once.
fn credentials_html(new: &accounts::NewAccount) -> String {
    format!(
        "<p>password: <code id=\"password\">{}</code></p>\
         <p>TOTP: <code id=\"totp\">{}</code></p><p><code>{}</code></p>",
        esc(&new.password),
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
    change(&state, lang, &session, move |ctx, actor| {
        let role =
            Role::parse(&role).ok_or_else(|| Failure::input(format!("unknown role {role:?}")))?;
        let new = accounts::create(&ctx.db, &username, role, actor, crate::base::time::now_ms())?;
        Ok(Some(format!(
            "<p>{}: <code>{}</code></p>{}",
            crate::web::page::role_label(lang, role),
            esc(&username),
            credentials_html(&new)
        )))
    })
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
    change(&state, lang, &session, move |ctx, actor| {
        let kind = screening::ScreeningKind::parse(&kind)
            .ok_or_else(|| Failure::input(format!("unknown screening kind {kind:?}")))?;
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
    })
    .await
}

pub async fn disable_account(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<i64>,
) -> Response {
    let own = session.account.id;
    change(&state, lang, &session, move |ctx, actor| {
        if id == own {
            return Err(Failure::input("you cannot disable your own account"));
        }
        accounts::disable(&ctx.db, id, actor, crate::base::time::now_ms())?;
        Ok(None)
    })
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
    change(&state, lang, &session, move |ctx, actor| {
        if id == own {
            return Err(Failure::input("you cannot change your own role"));
        }
        let role =
            Role::parse(&role).ok_or_else(|| Failure::input(format!("unknown role {role:?}")))?;
        accounts::set_role(&ctx.db, id, role, actor, crate::base::time::now_ms())?;
        Ok(None)
    })
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
    change(&state, lang, &session, move |ctx, actor| {
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
    })
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
    change(&state, lang, &session, move |ctx, actor| {
        if id == own {
            return Err(Failure::input(
                "reset your own account from another administrator's",
            ));
        }
        let new = accounts::reset_credentials(&ctx.db, id, actor, crate::base::time::now_ms())?;
        Ok(Some(credentials_html(&new)))
    })
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
    change(&state, lang, &session, move |ctx, actor| {
        let programme = Programme::parse(&programme)
            .ok_or_else(|| Failure::input(format!("unknown programme {programme:?}")))?;
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
    })
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
    change(&state, lang, &session, move |ctx, actor| {
        let kind = nachtwacht_wire::DeviceKind::parse(&kind)
            .ok_or_else(|| Failure::input(format!("unknown device kind {kind:?}")))?;
        let person_id = enroll::person_id(&ctx.db.lock(), &person)?
            .ok_or_else(|| Failure::input(format!("no person {person:?}")))?;
        enroll::assign_device(ctx, &serial, kind, person_id, day_ms(&from)?, actor)?;
        // Pairing tells ingest which station may upload this device's data.
        if !station.is_empty() {
            enroll::pair_device(ctx, &serial, &station, day_ms(&from)?, actor)?;
        }
        Ok(None)
    })
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
    change(&state, lang, &session, move |ctx, actor| {
        enroll::end_assignment(ctx, &serial, crate::base::time::now_ms(), actor)?;
        Ok(None)
    })
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
        let config = enroll::add_station(&ctx, &name, &actor)?;
        if !person.is_empty() {
            enroll::link_station(&ctx, &name, &person, &actor)?;
        }
        Ok(config.to_toml())
    })
    .await;
    match result {
        Ok(Ok(toml)) => download(toml.into_bytes(), "application/toml", "station.toml"),
        Ok(Err(failure)) => fail(lang, failure),
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
        Err(failure) => fail(lang, failure),
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
    change(&state, lang, &session, move |ctx, actor| {
        let at_ms = if at.is_empty() {
            crate::base::time::now_ms()
        } else {
            day_ms(&at)?
        };
        crate::lifecycle::supervision::close(ctx, &reference, at_ms, actor)?;
        Ok(None)
    })
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
    change(&state, lang, &session, move |ctx, _| {
        let person = enroll::person_id(&ctx.db.lock(), &reference)
            .map_err(Failure::internal)?
            .ok_or_else(|| Failure::input(format!("no person with reference {reference:?}")))?;
        hold::place(
            &mut ctx.db.lock(),
            hold::HoldActor::Account(&account),
            hold::HoldTarget::Person(person),
            &reason,
            crate::base::time::now_ms(),
        )?;
        Ok(None)
    })
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
    change(&state, lang, &session, move |ctx, _| {
        hold::release(
            &mut ctx.db.lock(),
            hold::HoldActor::Account(&account),
            id,
            &reason,
            crate::base::time::now_ms(),
        )?;
        Ok(None)
    })
    .await
}

pub async fn revoke_station(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(name): Path<String>,
) -> Response {
    change(&state, lang, &session, move |ctx, actor| {
        enroll::revoke_station(ctx, &name, actor)?;
        Ok(None)
    })
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
    change(&state, lang, &session, move |ctx, actor| {
        let to = Some(to.trim())
            .filter(|t| !t.is_empty())
            .map(day)
            .transpose()?;
        let now = crate::base::time::now_ms();
        let (from_ms, to_ms) =
            caseload::day_bounds(Some(day(&from)?), to, ctx.config.http.zone(), now);
        caseload::assign(&ctx.db, &officer, &person, from_ms, to_ms, actor, now)?;
        Ok(None)
    })
    .await
}

pub async fn end_caseload(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<i64>,
) -> Response {
    change(&state, lang, &session, move |ctx, actor| {
        caseload::end(&ctx.db, id, actor, crate::base::time::now_ms())?;
        Ok(None)
    })
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
    change(&state, lang, &session, move |ctx, actor| {
        let budget = research::Budget {
            epsilon: number("epsilon", &eps)?,
            delta: number("delta", &delta)?,
            max_epsilon_per_query: number("max_epsilon_per_query", &max)?,
        };
        research::create_project(ctx, &name, budget, actor)?;
        Ok(None)
    })
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
    change(&state, lang, &session, move |ctx, actor| {
        let token =
            research::issue_token(ctx, &project, &holder, number("ttl_days", &ttl)?, actor)?;
        Ok(Some(format!(
            "<p>{}: <code>{}</code></p><p>token: <code id=\"token\">{}</code></p>",
            "project",
            esc(&project),
            esc(&token)
        )))
    })
    .await
}

pub async fn revoke_token(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Response {
    change(&state, lang, &session, move |ctx, actor| {
        research::revoke_token(ctx, &id, actor)?;
        Ok(None)
    })
    .await
}
