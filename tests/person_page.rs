//! The officer's caseload overview and person page over real uploads (QUIC, decode, evaluation):
//! what they show, that they show only the officer's own persons, that every view and refusal is
//! audited, and a wristband person's evidence. Also: a workflow comment typed while the session
//! expired survives signing in again.

use crate::common;

use crate::common::web::*;
use crate::common::*;
use nachtwacht::base::config::Config;
use nachtwacht::registry::{accounts, caseload};

fn person_id(f: &WebFixture, reference: &str) -> i64 {
    f.t.ctx
        .db
        .lock()
        .query_row(
            "SELECT id FROM persons WHERE reference = ?1",
            [reference],
            |r| r.get(0),
        )
        .unwrap()
}

fn audit_count(f: &WebFixture, action: &str, object: &str) -> i64 {
    f.t.ctx
        .db
        .lock()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = ?1 AND object = ?2",
            [action, object],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caseload_and_the_person_page_show_only_own_persons_and_are_audited() {
    let f = web_fixture().await;
    let (own, other) = (person_id(&f, "CASE-home-1"), person_id(&f, "CASE-home-2"));
    // The operator's threshold, not the default, is the line on the person's curve.
    let rules = f.t.ctx.dir.rules().join("alcohol.toml");
    let text = std::fs::read_to_string(&rules).expect("rules/alcohol.toml written at init");
    let changed: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("threshold_g_dl") {
                "threshold_g_dl = 0.035".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(changed, text, "no threshold_g_dl line in {text}");
    std::fs::write(&rules, changed).unwrap();
    let olga = f.accounts["officer"].clone();
    let base = f.base.clone();
    let own_alert = f.own_alert;
    let pages = tokio::task::spawn_blocking(move || {
        let s = login(&base, &olga);
        let get = |path: &str| {
            let (status, _, body) = outcome(
                agent()
                    .get(&format!("{base}{path}"))
                    .set("Cookie", &s.cookie)
                    .call(),
            );
            (status, body)
        };
        (
            get("/caseload"),
            get(&format!("/persons/{own}")),
            get(&format!("/persons/{own}?lang=en")),
            get(&format!("/persons/{other}")),
            get("/persons/abc"),
            get(&format!("/persons/{own}?from=2026-01-10&to=2026-01-01")),
            get(&format!("/alerts/{own_alert}")).1,
            get(&format!("/alerts/{own_alert}/report")).1,
        )
    })
    .await
    .unwrap();
    let (caseload, page, english, others, malformed, backwards, alert_page, report) = pages;

    // The overview: her person with the open alcohol alert, not otto's.
    assert_eq!(caseload.0, 200);
    assert!(caseload.1.contains(&format!("href=\"/persons/{own}\"")));
    assert!(!caseload.1.contains(&format!("href=\"/persons/{other}\"")));
    assert!(
        caseload.1.contains("data-state=\"alert-open\"") && caseload.1.contains("melding open"),
        "the open alert makes the person urgent: {}",
        caseload.1
    );
    assert!(caseload.1.contains("Alcoholverbod"), "programme in Dutch");

    // The person page: devices, station, eight weeks of calendar, the TAC curve, the alert.
    assert_eq!(page.0, 200, "{}", page.1);
    let p = &page.1;
    assert!(p.contains("Enkelmonitor <code>AM-0001</code>"), "device");
    assert!(p.contains("home-1"), "station");
    assert_eq!(p.matches("data-day=\"").count(), 56, "8 weeks of days");
    assert!(p.contains("data-state=\"alert\""), "the day of the alert");
    assert!(p.contains("data-state=\"worn\""), "days worn");
    assert!(
        p.contains("data-state=\"no-device\""),
        "days before the monitor"
    );
    assert!(
        p.contains("id=\"tac\"") && p.contains("<polyline"),
        "TAC curve"
    );
    assert!(p.contains(">0.035 g/dL<"), "the operator's threshold");
    assert!(
        p.contains(&format!("href=\"/alerts/{own_alert}\"")),
        "alert"
    );
    assert!(p.contains("Nalevingskalender") && p.contains("Europe/Amsterdam"));
    assert!(english.1.contains("Compliance calendar") && english.1.contains("Ankle monitor"));

    // Dutch throughout: no internal code of a role, programme, device, status or kind is shown
    // as text on the Dutch pages (codes in attributes are fine).
    for (name, html) in [
        ("caseload", &caseload.1),
        ("person", &page.1),
        ("alert", &alert_page),
        ("report", &report),
    ] {
        let text = visible_text(html);
        for code in [
            "alcohol-ban",
            "ankle-monitor",
            "wristband",
            "in_process",
            "officer",
            "alcohol ",
            "communication-lost",
            "Not Found",
            "new",
            "threshold_g_dl",
            "alcohol.episode",
            "min_consecutive_readings",
            "Criteria",
        ] {
            assert!(
                !text.contains(code),
                "{name}: {code:?} shown untranslated in: {text}"
            );
        }
    }

    // The report: criteria in Dutch words, local time, the integrity line.
    for needle in [
        "Drempel transdermaal alcohol",
        "Opeenvolgende metingen boven de drempel",
        "Europe/Amsterdam",
        "verzegeld in het auditlogboek",
        "Afdrukken (PDF)",
    ] {
        assert!(
            report.contains(needle),
            "{needle} not in the report: {report}"
        );
    }

    // Another officer's person and a malformed id: not found, like nothing there.
    assert_eq!(others.0, 404);
    assert!(!others.1.contains("CASE-home-2"));
    assert_eq!(malformed.0, 404);
    // A period that ends before it starts is said above the period form, in Dutch, with what
    // was typed kept; the page shows the default period meanwhile (a view, audited).
    assert_eq!(backwards.0, 400);
    assert!(
        backwards.1.contains("id=\"form-error\"")
            && backwards
                .1
                .contains("De periode eindigt voordat hij begint.")
            && backwards.1.contains("name=\"from\" value=\"2026-01-10\""),
        "{}",
        backwards.1
    );

    // Every view and every refusal is on the record.
    assert!(audit_count(&f, "caseload.view", "caseload") >= 1);
    assert_eq!(audit_count(&f, "person.view", &format!("person:{own}")), 3);
    assert_eq!(
        audit_count(&f, "person.refused", &format!("person:{other}")),
        1
    );
    assert_eq!(audit_count(&f, "person.refused", "person:-1"), 1);

    // The alert page links to the person.
    assert!(alert_page.contains(&format!("href=\"/persons/{own}\" id=\"person-link\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wristband_person_shows_daily_indicators_and_evidence_per_minute() {
    let t = start_server(Config::default()).await;
    let (station, dir, person, start_ms) =
        t.wristband_station("wrist-1", "E4-0001", "CASE-wrist", 2);
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert_eq!(report.acknowledged, 2, "{report:?}");
    nachtwacht::registry::enroll::link_station(&t.ctx, "wrist-1", "CASE-wrist", "test").unwrap();
    t.server.decode_now().await;

    let now = nachtwacht::base::time::now_ms();
    let officer = accounts::create(&t.ctx.db, "wim", accounts::Role::Officer, "t", now).unwrap();
    nachtwacht::registry::screening::screen_for_a_year(&t.ctx.db, "wim", now).unwrap();
    caseload::assign(&t.ctx.db, "wim", "CASE-wrist", now - 1000, None, "t", now).unwrap();
    let account = accounts::Account {
        id: officer.id,
        username: "wim".into(),
        role: accounts::Role::Officer,
        must_change_password: false,
    };
    // A device alert during the first day's wearing hour, to see its evidence.
    let alert_start = start_ms + 10 * 3_600_000 + 20 * 60_000;
    let alert = {
        let conn = t.ctx.db.lock();
        conn.query_row(
            "INSERT INTO alerts (person_id, kind, severity, start_ms, end_ms, rule,
                                 evidence_bundles, created_at_ms)
             VALUES (?1, 'device-fault', 'warning', ?2, ?2, '{}', '', ?2) RETURNING id",
            nachtwacht::params![person, alert_start],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    let ctx = t.ctx.clone();
    let (page, detail) = tokio::task::spawn_blocking(move || {
        let page = nachtwacht::alerts::person::page(&ctx, &account, person, None, now).unwrap();
        let detail =
            nachtwacht::alerts::casework::detail(&ctx, &account, alert, "view", now).unwrap();
        (page, detail)
    })
    .await
    .unwrap();
    // Two days worn for one hour each: the calendar says worn, the indicators are plausible.
    assert_eq!(page.wrist_days.len(), 2, "{:?}", page.wrist_days);
    for d in &page.wrist_days {
        assert!((55..=61).contains(&d.worn_minutes), "one hour worn: {d:?}");
        let hr = d.mean_hr_bpm.expect("heart rate");
        assert!((40.0..160.0).contains(&hr), "{d:?}");
        assert!(d.mean_eda_us.expect("eda") > 0.0, "{d:?}");
    }
    let worn = page
        .calendar
        .iter()
        .filter(|d| d.1 == nachtwacht::alerts::person::DayState::Worn)
        .count();
    assert!(worn >= 1, "{:?}", page.calendar);
    assert!(page.tac.is_empty(), "no ankle monitor, no TAC");
    // The alert's evidence: one mean per minute of EDA, heart rate and movement over the hour.
    let w = &detail.wrist;
    for (name, series) in [
        ("hr", &w.hr_bpm),
        ("eda", &w.eda_us),
        ("movement", &w.movement_g),
    ] {
        assert!(
            (55..=61).contains(&series.len()),
            "{name}: {} minutes",
            series.len()
        );
        assert!(
            series.windows(2).all(|p| p[1].0 - p[0].0 >= 60_000),
            "{name} per minute"
        );
    }
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_typed_while_the_session_expired_is_kept_through_signing_in() {
    let f = web_fixture().await;
    let olga = f.accounts["officer"].clone();
    let base = f.base.clone();
    let alert = f.own_alert;
    let db = f.t.ctx.db.clone();
    let comment = "Gesprek gevoerd op 2 december; <b>uitleg</b> volgt";
    let (expired, resumed, saved) = tokio::task::spawn_blocking(move || {
        let s = login(&base, &olga);
        // The session ends while the comment is typed (as an idle timeout would end it).
        db.lock()
            .execute("UPDATE sessions SET ended_at_ms = 1", [])
            .unwrap();
        let expired = outcome(
            agent()
                .post(&format!("{base}/alerts/{alert}/transition"))
                .set("Cookie", &s.cookie)
                .send_form(&[
                    ("csrf", s.csrf.as_str()),
                    ("to", "in_process"),
                    ("comment", comment),
                ]),
        );
        // Sign in again from that page: its hidden fields carry the step.
        let field = |page: &str, name: &str| -> String {
            let v = page
                .split(&format!("name=\"{name}\" value=\""))
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or_else(|| panic!("{name} missing: {page}"))
                .to_string();
            v.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&")
        };
        let creds = common::web::Creds {
            password: own_password(&olga.password),
            ..olga.clone()
        };
        // A TOTP code signs in once: wait for the next one.
        let used = creds.code();
        while creds.code() == used {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let r = agent().post(&format!("{base}/login")).send_form(&[
            ("username", creds.username.as_str()),
            ("password", creds.password.as_str()),
            ("code", creds.code().as_str()),
            ("resume_path", &field(&expired.2, "resume_path")),
            ("resume_to", &field(&expired.2, "resume_to")),
            ("resume_comment", &field(&expired.2, "resume_comment")),
        ]);
        let r = r.unwrap();
        let cookie = r
            .all("set-cookie")
            .into_iter()
            .find(|c| c.starts_with("nw_session="))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let resumed = (r.status(), r.into_string().unwrap());
        // Save the kept step with the new session's form.
        let saved = outcome(
            agent()
                .post(&format!("{base}/alerts/{alert}/transition"))
                .set("Cookie", &cookie)
                .send_form(&[
                    ("csrf", &field(&resumed.1, "csrf")),
                    ("to", &field(&resumed.1, "to")),
                    ("comment", comment),
                ]),
        );
        (expired, resumed, saved)
    })
    .await
    .unwrap();
    assert_eq!(expired.0, 401);
    assert!(
        expired.2.contains("uw opmerking is bewaard"),
        "{}",
        expired.2
    );
    assert_eq!(resumed.0, 200);
    assert!(
        resumed
            .1
            .contains("Gesprek gevoerd op 2 december; &lt;b&gt;uitleg&lt;/b&gt; volgt</textarea>"),
        "the comment is offered again, escaped: {}",
        resumed.1
    );
    assert_eq!(saved.0, 303, "{}", saved.2);
    let stored: String =
        f.t.ctx
            .db
            .lock()
            .query_row(
                "SELECT comment FROM alert_events WHERE alert_id = ?1",
                [alert],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(stored, comment);
}

/// The text of a page without tags, styles or attributes.
fn visible_text(html: &str) -> String {
    let body = html.split("</style>").nth(1).unwrap_or(html);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_workflow_step_is_said_in_place_in_the_officers_language_with_the_comment_kept() {
    let f = web_fixture().await;
    let olga = f.accounts["officer"].clone();
    let base = f.base.clone();
    let alert = f.own_alert;
    let pages = tokio::task::spawn_blocking(move || {
        let s = login(&base, &olga);
        let post = |lang: &str, to: &str, comment: &str| {
            outcome(
                agent()
                    .post(&format!("{base}/alerts/{alert}/transition{lang}"))
                    .set("Cookie", &s.cookie)
                    .send_form(&[("csrf", s.csrf.as_str()), ("to", to), ("comment", comment)]),
            )
        };
        (
            // Only spaces: no comment.
            post("", "in_process", "   "),
            // A step the workflow does not allow from "new", with a comment worth keeping.
            post("", "resolved", "Afgesloten na <gesprek>"),
            post("?lang=en", "resolved", "Closed after the call"),
        )
    })
    .await
    .unwrap();
    let (empty, skipped, english) = pages;
    assert_eq!(empty.0, 400);
    assert!(empty.2.contains("id=\"workflow-error\""), "{}", empty.2);
    assert!(empty.2.contains("Bij elke stap hoort een toelichting."));
    // The alert page itself, not an error page: the evidence is still there.
    assert!(empty.2.contains("CASE-home-1") && empty.2.contains("<svg"));
    assert_eq!(skipped.0, 400);
    assert!(
        skipped
            .2
            .contains("Een melding met status ‘nieuw’ kan niet naar ‘afgehandeld’."),
        "{}",
        visible_text(&skipped.2)
    );
    assert!(
        skipped
            .2
            .contains(">Afgesloten na &lt;gesprek&gt;</textarea>"),
        "comment kept, escaped"
    );
    assert!(
        skipped.2.contains("<option value=\"resolved\" selected>")
            || !skipped.2.contains("value=\"resolved\"")
    );
    assert_eq!(english.0, 400);
    assert!(
        english.2.contains("The step was not saved.") && english.2.contains("cannot become"),
        "{}",
        visible_text(&english.2)
    );
    assert!(english.2.contains(">Closed after the call</textarea>"));
    // Nothing was stored.
    assert_eq!(
        f.t.count(&format!(
            "SELECT count(*) FROM alert_events WHERE alert_id = {alert}"
        )),
        0
    );
}
