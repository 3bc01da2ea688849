//! The web UI in a real browser (headless Chromium through chromedriver): an officer signs in with
//! password and TOTP, sees an alert of their caseload with its evidence chart, fails to open
//! another officer's alert by URL, moves the alert through the workflow with comments and prints
//! the report; an auditor then finds all of it in the audit log, whose chain verifies.

use crate::common;

use crate::common::web::*;
use crate::common::webdriver::Browser;

fn sign_in(b: &Browser, base: &str, creds: &Creds) {
    b.goto(&format!("{base}/login"));
    b.type_into("input[name=username]", &creds.username);
    b.type_into("input[name=password]", &creds.password);
    b.type_into("input[name=code]", &creds.code());
    b.click("#login");
    // Every account here signs in for the first time: the password an administrator issued
    // must be replaced before anything else, and any other page leads back here.
    let url = b.wait_url("/account/password");
    assert!(url.ends_with("/account/password"), "{url}");
    b.goto(&format!("{base}/account"));
    assert!(b.current_url().ends_with("/account/password"));
    let new = own_password(&creds.password);
    b.type_into("input[name=current]", &creds.password);
    b.type_into("input[name=new]", &new);
    b.type_into("input[name=repeat]", &new);
    b.click("#change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_handles_an_alert_and_the_auditor_finds_every_step() {
    let f = web_fixture().await;
    let olga = f.accounts["officer"].clone();
    let aud = f.accounts["auditor"].clone();
    let (base, own, other) = (f.base.clone(), f.own_alert, f.other_alert);
    let ctx = f.t.ctx.clone();

    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let b = Browser::start();
        // Screenshots of the officer's day, shown in docs/web-ui.md.
        let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");

        // A wrong code is refused, in Dutch by default.
        b.goto(&format!("{base}/login"));
        b.type_into("input[name=username]", &olga.username);
        b.type_into("input[name=password]", &olga.password);
        b.type_into("input[name=code]", "000000");
        b.click("#login");
        let text = b.wait_for_text("verkeerde code");
        assert!(text.contains("verkeerde code"), "{text}");

        // Password and TOTP: the officer lands on their caseload, in Dutch, the person with
        // the open alert marked.
        sign_in(&b, &base, &olga);
        let url = b.wait_url("/caseload");
        assert!(url.ends_with("/caseload"), "{url}");
        let caseload = b.wait_for_text("CASE-home-1");
        assert!(
            caseload.contains("Mijn caseload") && caseload.contains("melding open"),
            "{caseload}"
        );
        assert!(!caseload.contains("CASE-home-2"), "{caseload}");
        b.screenshot(&shots.join("1-caseload.png"));

        // The person page: calendar, TAC curve, alerts.
        b.click("#caseload a");
        let person = b.wait_for_text("Nalevingskalender");
        assert!(person.contains("Enkelmonitor"), "{person}");
        assert!(b.source().contains("data-state=\"alert\""));
        b.screenshot(&shots.join("2-person.png"));

        // At a phone's width (360 px) nothing runs off the side: no horizontal scrolling of the
        // page, and the header's links (NL/EN included) stay inside the window.
        b.set_size(360, 800);
        b.wait_loaded();
        let overflow = b.eval(
            "return [document.documentElement.scrollWidth, window.innerWidth, \
             Math.max(...[...document.querySelectorAll('header a, header button')]\
               .map(e => e.getBoundingClientRect().right))]",
        );
        let (scroll, inner, header_right) = (
            overflow[0].as_f64().unwrap(),
            overflow[1].as_f64().unwrap(),
            overflow[2].as_f64().unwrap(),
        );
        assert!(
            scroll <= inner + 1.0,
            "page scrolls sideways at 360 px: {overflow}"
        );
        assert!(
            header_right <= inner + 1.0,
            "header runs off at 360 px: {overflow}"
        );
        b.screenshot(&shots.join("3-person-360px.png"));
        b.set_size(1200, 1000);

        b.goto(&format!("{base}/alerts"));
        let list = b.wait_for_text("CASE-home-1");
        assert!(
            list.contains("Meldingen") && list.contains("CASE-home-1"),
            "{list}"
        );
        assert!(
            !list.contains("CASE-home-2"),
            "another officer's person is listed"
        );

        // The alert with its evidence drawn by the server.
        b.screenshot(&shots.join("4-alerts.png"));
        b.click(&format!("a[href='/alerts/{own}']"));
        b.wait_url(&format!("/alerts/{own}"));
        b.screenshot(&shots.join("5-alert.png"));
        let detail = b.source();
        assert!(
            detail.contains("<svg") && detail.contains("polyline"),
            "no chart"
        );
        assert!(b.text().contains("nieuw"));

        // Another officer's alert by URL: not found, like an alert that does not exist.
        b.goto(&format!("{base}/alerts/{other}"));
        assert!(b.text().contains("niet in uw caseload"), "{}", b.text());

        // English on request, remembered.
        b.goto(&format!("{base}/alerts/{own}?lang=en"));
        assert!(b.text().contains("Evidence"), "{}", b.text());
        b.goto(&format!("{base}/alerts/{own}"));
        assert!(b.text().contains("Next step"), "language not remembered");

        // Workflow: a step without a comment is not accepted by the form.
        b.click("#save");
        assert!(b.current_url().ends_with(&format!("/alerts/{own}")));
        assert_eq!(b.wait_text_of("#status", "new"), "new");
        // new → in process → confirmed, each with a comment.
        b.type_into("#comment", "Called the client; reviewing the curve.");
        b.click("#save");
        assert_eq!(b.wait_text_of("#status", "in process"), "in process");
        b.click("#to option[value=confirmed]");
        b.type_into("#comment", "Client admitted drinking on Saturday.");
        b.click("#save");
        assert_eq!(b.wait_text_of("#status", "confirmed"), "confirmed");
        let text = b.text();
        assert!(
            text.contains("Client admitted drinking on Saturday."),
            "{text}"
        );

        // The printable report: criteria, interpretation, bundle ids.
        b.click("#report");
        b.wait_url("/report");
        let report = b.wait_for_text("Interpretation");
        b.screenshot(&shots.join("6-report.png"));
        for needle in [
            "Non-compliance report",
            "Case CASE-home-1",
            "Criteria used",
            "Transdermal alcohol threshold",
            "0,020 g/dL",
            "Consecutive readings above the threshold",
            "Interpretation",
            "SHA-256",
            "sealed in the audit log, entry",
            "Europe/Amsterdam",
        ] {
            assert!(
                report.contains(needle),
                "{needle} missing from the report: {report}"
            );
        }
        // Criteria in words, not the rule's JSON.
        assert!(!report.contains("threshold_g_dl"), "{report}");
        // The print button: the same report as a PDF written by the server, the case reference
        // and "page i of n" on every page.
        let downloads = tempfile::tempdir().unwrap();
        b.allow_downloads(downloads.path());
        b.click("#pdf");
        let file = downloads.path().join(format!("rapport-melding-{own}.pdf"));
        b.wait_download(&file);
        let pdf = std::fs::read(&file).unwrap();
        std::fs::write(shots.join("6-report.pdf"), &pdf).unwrap();
        let text = String::from_utf8_lossy(&pdf);
        assert!(pdf.starts_with(b"%PDF-"));
        let numbered = (1..20)
            .take_while(|i| text.contains(&format!("(Page {i} of ")))
            .count();
        assert!(numbered >= 1, "no page numbers");
        assert!(text.contains(&format!("(Page {numbered} of {numbered})")));
        let header =
            nachtwacht::web::pdf::win_ansi(&format!("Case CASE-home-1 \u{b7} Alert {own}"));
        let header = format!("<{}>", hex::encode(header));
        assert_eq!(
            text.to_lowercase().matches(&header).count(),
            numbered,
            "case reference on every page"
        );
        assert!(
            text.contains("(Transdermal alcohol threshold)"),
            "criteria in words"
        );
        // The court evidence dossier, downloaded from the alert's page: `dossier verify`
        // accepts it, readings and ciphertexts included.
        b.goto(&format!("{base}/alerts/{own}"));
        let downloads = tempfile::tempdir().unwrap();
        b.allow_downloads(downloads.path());
        b.click("#dossier");
        let file = downloads.path().join(format!("dossier-melding-{own}.tar"));
        b.wait_download(&file);
        let verified = std::process::Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
            .args(["dossier", "verify"])
            .arg(&file)
            .arg("--identity")
            .arg(ctx.dir.age_identity())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&verified.stdout);
        assert!(
            verified.status.success() && out.contains("VERIFIED"),
            "{out}"
        );
        assert!(out.contains("readings/ankle.csv: all"), "{out}");

        // E-mail about new alerts: a kind chosen without an address is refused in place (the
        // choice kept); with an address it is saved. A new alert then arrives at a real SMTP
        // server as a sentence and a link, and the link opens the alert.
        b.goto(&format!("{base}/account"));
        b.click("input[name='kind.alcohol']");
        b.click("#save-notifications");
        let refused = b.wait_for_text("Enter an e-mail address");
        assert!(refused.contains("E-mail about alerts"), "{refused}");
        assert!(
            b.source().contains("name=\"kind.alcohol\" checked"),
            "choice lost"
        );
        b.type_into("#email", "olga@reclassering.test");
        b.click("#save-notifications");
        b.wait_url("/account#notifications");
        assert!(b.source().contains("value=\"olga@reclassering.test\""));
        b.screenshot(&shots.join("7-notifications.png"));
        let sink = common::smtp::SmtpSink::start();
        let mut mailing = ctx.clone();
        mailing.config.notifications.smtp = Some(sink.configure(ctx.dir.root()));
        mailing.config.http.public_url = Some(base.clone());
        let fresh = raise_alcohol_alert(&ctx, "CASE-home-1");
        let sent = runtime
            .block_on(nachtwacht::notify::pass(
                &mailing,
                nachtwacht::base::time::now_ms(),
            ))
            .unwrap();
        assert!(sent.sent >= 1, "{sent:?}");
        let mail = sink.wait_for(1, std::time::Duration::from_secs(10));
        let message = mail
            .iter()
            .find(|m| m.raw.contains(&format!("/alerts/{fresh}")))
            .expect("the new alert's message");
        assert!(!message.raw.contains("CASE-home-1"), "{}", message.raw);
        let link = message
            .raw
            .lines()
            .find_map(|l| l.strip_prefix("Openen: "))
            .unwrap()
            .to_string();
        b.goto(&link);
        b.wait_url(&format!("/alerts/{fresh}"));
        assert!(b.text().contains("CASE-home-1"), "{}", b.text());

        // A legal hold on the alert ("in court proceedings"), shown on its page.
        b.goto(&format!("{base}/alerts/{own}"));
        b.type_into("#hold-reason", "Court hearing 12 March");
        b.click("#hold");
        let held = b.wait_for_text("Court hearing 12 March");
        assert!(held.contains("Legal holds"), "{held}");

        // The supervision ends: the person leaves the list, except under the "closed" filter.
        nachtwacht::lifecycle::supervision::close(
            &ctx,
            "CASE-home-1",
            nachtwacht::base::time::now_ms(),
            "test",
        )
        .unwrap();
        b.goto(&format!("{base}/alerts"));
        b.wait_for_text("Supervision");
        assert!(!b.text().contains("CASE-home-1"), "{}", b.text());
        b.click("#supervision option[value=closed]");
        b.click("form[action='/alerts'] button");
        let closed = b.wait_for_text("CASE-home-1");
        assert!(closed.contains("CASE-home-1"), "{closed}");

        b.click("header form button");
        let url = b.wait_url("/login");
        assert!(url.ends_with("/login"), "{url}");

        // The auditor finds the officer's steps, and the chain verifies.
        sign_in(&b, &base, &aud);
        let url = b.wait_url("/audit");
        assert!(url.ends_with("/audit"), "{url}");
        b.type_into("input[name=actor]", &olga.username);
        b.click("form[action='/audit'] button");
        let log = b.wait_for_text("alert.transition");
        for action in [
            "login",
            "alerts.list",
            "alert.view",
            "alert.refused",
            "alert.transition",
            "alert.report",
            "alert.dossier",
            "dossier.written",
            "hold.place",
        ] {
            assert!(log.contains(action), "{action} not in the audit log: {log}");
        }
        assert!(
            log.contains("Called the client"),
            "the comment is in the audit entry"
        );
        assert!(b.text().contains("intact"), "chain does not verify");
    })
    .await
    .unwrap();

    let steps = f.t.count(&format!(
        "SELECT count(*) FROM alert_events WHERE alert_id = {own}"
    ));
    assert_eq!(steps, 2);
    assert_eq!(
        f.t.count(&format!(
            "SELECT count(*) FROM legal_holds WHERE alert_id = {own} AND placed_by = 'olga'"
        )),
        1
    );
    let verdict = nachtwacht::trust::audit::verify(&f.t.ctx.db.lock()).unwrap();
    assert!(
        matches!(verdict, nachtwacht::trust::audit::Verdict::Intact { .. }),
        "{verdict:?}"
    );
}

/// A new alcohol alert for a person, stored as the pipelines store one; its id.
fn raise_alcohol_alert(ctx: &nachtwacht::base::Context, reference: &str) -> i64 {
    use nachtwacht::alerts::{AlertKind, Severity};
    let mut conn = ctx.db.lock();
    let tx = conn.transaction().unwrap();
    let person: i64 = tx
        .query_row(
            "SELECT id FROM persons WHERE reference = ?1",
            [reference],
            |r| r.get(0),
        )
        .unwrap();
    let start = nachtwacht::base::time::now_ms() - 3 * 3_600_000;
    let alert = nachtwacht::alerts::store::NewAlert {
        person_id: person,
        kind: AlertKind::Alcohol,
        severity: Severity::High,
        start_ms: start,
        end_ms: start + 3_600_000,
        peak_tac_g_dl: Some(0.05),
        rule: r#"{"threshold_g_dl":0.02}"#,
        evidence: "",
    };
    nachtwacht::alerts::store::record_once(&tx, &alert, nachtwacht::base::time::now_ms()).unwrap();
    let id = tx
        .query_row(
            "SELECT id FROM alerts WHERE person_id = ?1 AND kind = 'alcohol' AND start_ms = ?2",
            nachtwacht::params![person, start],
            |r| r.get(0),
        )
        .unwrap();
    tx.commit().unwrap();
    id
}

/// An alert that new evidence changes is revised, not replaced: the officer's list marks it
/// "herzien", and its page shows the revision with its reason next to the workflow that stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revised_alert_is_marked_herzien_with_its_history() {
    let f = web_fixture().await;
    let olga = f.accounts["officer"].clone();
    let (base, own) = (f.base.clone(), f.own_alert);
    // The same readings judged under a stricter rise limit: the drinking episode becomes an
    // interferent for review, and the stored alert is revised in place.
    let (ctx, pseudonyms) = (
        f.t.ctx.clone(),
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&f.t.ctx.dir).unwrap(),
    );
    let report = tokio::task::spawn_blocking(move || {
        let mut rules = nachtwacht::evaluate::Rules::default();
        rules.alcohol.max_rise_per_hour = 0.001;
        nachtwacht::evaluate::run(&ctx, &pseudonyms, &rules)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(report.revised_alerts >= 1, "{report:?}");

    tokio::task::spawn_blocking(move || {
        let b = Browser::start();
        sign_in(&b, &base, &olga);
        b.wait_url("/caseload");
        b.goto(&format!("{base}/alerts"));
        let list = b.wait_for_text("CASE-home-1");
        assert!(list.contains("herzien"), "{list}");
        // Severity in Dutch: the interferent is for review.
        assert!(list.contains("ter beoordeling"), "{list}");
        b.goto(&format!("{base}/alerts/{own}"));
        let page = b.wait_for_text("Herzieningen");
        assert!(
            page.contains("interferent") && page.contains("veranderen de beoordeling"),
            "{page}"
        );
        assert!(page.contains("TAC steeg sneller"), "{page}");
    })
    .await
    .unwrap();
}

/// An alert of a kind for a person, over `start..end`, stored as the pipelines store one; its id.
fn raise_alert(
    ctx: &nachtwacht::base::Context,
    reference: &str,
    kind: nachtwacht::alerts::AlertKind,
    (start_ms, end_ms): (i64, i64),
) -> i64 {
    let mut conn = ctx.db.lock();
    let tx = conn.transaction().unwrap();
    let person: i64 = tx
        .query_row(
            "SELECT id FROM persons WHERE reference = ?1",
            [reference],
            |r| r.get(0),
        )
        .unwrap();
    let alert = nachtwacht::alerts::store::NewAlert {
        person_id: person,
        kind,
        severity: nachtwacht::alerts::Severity::Medium,
        start_ms,
        end_ms,
        peak_tac_g_dl: None,
        rule: "{}",
        evidence: "",
    };
    nachtwacht::alerts::store::record_once(&tx, &alert, nachtwacht::base::time::now_ms()).unwrap();
    let id = tx
        .query_row(
            "SELECT id FROM alerts WHERE person_id = ?1 AND kind = ?2 AND start_ms = ?3",
            nachtwacht::params![person, kind.as_str(), start_ms],
            |r| r.get(0),
        )
        .unwrap();
    tx.commit().unwrap();
    id
}

/// A wristband wearer on olga's caseload whose station uploaded two days (one hour worn each)
/// over QUIC; the start of the first hour worn.
async fn wristband_person(f: &WebFixture) -> i64 {
    let t = &f.t;
    let (station, dir, _, start_ms) = t.wristband_station("wrist-1", "E4-0001", "CASE-wrist", 2);
    let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
    assert_eq!(report.acknowledged, 2, "{report:?}");
    nachtwacht::registry::enroll::link_station(&t.ctx, "wrist-1", "CASE-wrist", "test").unwrap();
    t.server.decode_now().await;
    let now = nachtwacht::base::time::now_ms();
    nachtwacht::registry::caseload::assign(
        &t.ctx.db,
        "olga",
        "CASE-wrist",
        now - 1000,
        None,
        "t",
        now,
    )
    .unwrap();
    // The simulator's wearing hour starts at 10:00 of each day.
    start_ms + 10 * 3_600_000
}

/// Dutch text of a translation key.
fn dutch(key: &str) -> &'static str {
    nachtwacht::web::i18n::TEXTS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, nl, _)| *nl)
        .unwrap_or_else(|| panic!("no text {key}"))
}

/// Point 10 of the officer's day: an alert of every kind opens in the browser with its evidence
/// (the TAC curve of an ankle monitor, the station-contact timeline of a communication alert,
/// the wristband's EDA, heart rate and movement), its kind in Dutch words and no raw code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_of_each_kind_opens_with_its_evidence() {
    use nachtwacht::alerts::AlertKind;
    let f = web_fixture().await;
    let olga = f.accounts["officer"].clone();
    let (base, own) = (f.base.clone(), f.own_alert);
    let wear_start = wristband_person(&f).await;
    let window: (i64, i64) =
        f.t.ctx
            .db
            .lock()
            .query_row(
                "SELECT start_ms, end_ms FROM alerts WHERE id = ?1",
                [own],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
    // Every kind on the ankle wearer (the alcohol alert is the fixture's own), and a device
    // fault of the wristband in its hour worn.
    let mut alerts: Vec<(AlertKind, i64, &str)> = vec![(AlertKind::Alcohol, own, "ankle")];
    for kind in AlertKind::ALL
        .into_iter()
        .filter(|k| *k != AlertKind::Alcohol)
    {
        alerts.push((
            kind,
            raise_alert(&f.t.ctx, "CASE-home-1", kind, window),
            "ankle",
        ));
    }
    let wrist_alert = raise_alert(
        &f.t.ctx,
        "CASE-wrist",
        AlertKind::DeviceFault,
        (wear_start + 20 * 60_000, wear_start + 25 * 60_000),
    );
    alerts.push((AlertKind::DeviceFault, wrist_alert, "wrist"));

    tokio::task::spawn_blocking(move || {
        let b = Browser::start();
        let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        sign_in(&b, &base, &olga);
        b.wait_url("/caseload");
        for (kind, id, device) in &alerts {
            b.goto(&format!("{base}/alerts/{id}"));
            b.wait_url(&format!("/alerts/{id}"));
            let (text, source) = (b.text(), b.source());
            let label = dutch(&format!("kind.{}", kind.as_str()));
            assert!(text.contains(label), "{kind:?}: no {label:?} in {text}");
            if kind.as_str().contains('-') {
                assert!(
                    !text.contains(kind.as_str()),
                    "{kind:?}: raw code in {text}"
                );
            }
            let communication = matches!(
                kind,
                AlertKind::CommunicationLost | AlertKind::CommunicationCritical
            );
            match *device {
                "wrist" => {
                    for chart in ["wrist-eda", "wrist-hr", "wrist-movement"] {
                        assert!(
                            source.contains(&format!("id=\"{chart}\"")),
                            "{kind:?}: no {chart} in the wristband alert"
                        );
                    }
                    assert!(text.contains(dutch("wrist.evidence")), "{text}");
                    b.screenshot(&shots.join("5c-alert-wristband.png"));
                }
                _ if communication => {
                    assert!(
                        source.contains("id=\"contact-timeline\""),
                        "{kind:?}: no contact timeline"
                    );
                    assert!(text.contains(dutch("contact.last_before")), "{text}");
                    // The station was heard from after the alert (its uploads came later,
                    // beyond the chart's window): the page says when, not "none yet".
                    assert!(!text.contains(dutch("contact.none_yet")), "{text}");
                    if *kind == AlertKind::CommunicationLost {
                        b.screenshot(&shots.join("5b-alert-communication.png"));
                    }
                }
                _ => assert!(
                    source.contains("polyline"),
                    "{kind:?}: no TAC curve around the alert"
                ),
            }
        }
        // The list counts them all, each kind offered in the filter in words.
        b.goto(&format!("{base}/alerts"));
        let list = b.wait_for_text("CASE-wrist");
        for kind in AlertKind::ALL {
            let label = dutch(&format!("kind.{}", kind.as_str()));
            assert!(list.contains(label), "{label} not in the list: {list}");
        }
    })
    .await
    .unwrap();
}
