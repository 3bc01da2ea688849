//! E-mail notifications against a real SMTP server (aiosmtpd, STARTTLS and AUTH required):
//! officers are told of new alerts of the kinds they chose for their own caseload, once, however
//! many passes run at once over however many connections; the message holds no personal data;
//! an unopened critical alert reaches the officer's manager and an opened one does not; a send
//! that fails is retried and, after `max_attempts`, given up and audited; `serve` does all of
//! this on its own.

use crate::common;

use std::path::Path;
use std::time::Duration;

use crate::common::smtp::SmtpSink;
use nachtwacht::alerts::store::{record_once, NewAlert};
use nachtwacht::alerts::{AlertKind, Severity};
use nachtwacht::base::config::Config;
use nachtwacht::base::programme::Programme;
use nachtwacht::base::time::{now_ms, DAY_MS};
use nachtwacht::base::Context;
use nachtwacht::notify::{self, settings};
use nachtwacht::registry::accounts::{self, Account, Role};
use nachtwacht::registry::{caseload, enroll, screening};

const MINUTE: i64 = 60_000;

struct Office {
    _tmp: tempfile::TempDir,
    ctx: Context,
    olga: Account,
    case1: i64,
    case2: i64,
}

fn account(ctx: &Context, name: &str, role: Role, now: i64) -> Account {
    let id = accounts::create(&ctx.db, name, role, "admin", now)
        .unwrap()
        .id;
    Account {
        id,
        username: name.into(),
        role,
        must_change_password: false,
    }
}

/// Olga and Piet (officers), Max (Olga's manager); CASE-1 on Olga's caseload, CASE-2 on Piet's.
/// Olga wants mail about alcohol and lost contact, Piet about alcohol; Piet has no manager.
fn office(config: Config, sink: &SmtpSink) -> Office {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    nachtwacht::server::init::init(&root, &common::with_test_database(config.clone()), now_ms())
        .unwrap();
    let mut ctx = Context::open(&root).unwrap();
    ctx.config.notifications.smtp = Some(sink.configure(&root));
    let now = now_ms();
    let olga = account(&ctx, "olga", Role::Officer, now);
    let piet = account(&ctx, "piet", Role::Officer, now);
    let max = account(&ctx, "max", Role::Manager, now);
    screening::screen_for_a_year(&ctx.db, "olga", now).unwrap();
    let kinds = [AlertKind::Alcohol, AlertKind::CommunicationLost];
    settings::save_own(&ctx.db, &olga, Some("olga@reclassering.test"), &kinds, now).unwrap();
    // Saving the same choice twice (a double submit) changes nothing.
    settings::save_own(&ctx.db, &olga, Some("olga@reclassering.test"), &kinds, now).unwrap();
    let alcohol = [AlertKind::Alcohol];
    settings::save_own(
        &ctx.db,
        &piet,
        Some("piet@reclassering.test"),
        &alcohol,
        now,
    )
    .unwrap();
    settings::save_own(&ctx.db, &max, Some("max@reclassering.test"), &[], now).unwrap();
    settings::set_manager(&ctx.db, "olga", Some("max"), "admin", now).unwrap();
    // Only officers choose kinds; only managers manage.
    assert!(settings::save_own(&ctx.db, &max, None, &alcohol, now).is_err());
    assert!(settings::set_manager(&ctx.db, "olga", Some("piet"), "admin", now).is_err());
    let mut ids = Vec::new();
    for (reference, officer) in [("CASE-1", "olga"), ("CASE-2", "piet")] {
        ids.push(enroll::add_person(&ctx, reference, Programme::AlcoholBan, "admin").unwrap());
        caseload::assign(
            &ctx.db,
            officer,
            reference,
            now - DAY_MS,
            None,
            "admin",
            now,
        )
        .unwrap();
    }
    Office {
        _tmp: tmp,
        ctx,
        olga,
        case1: ids[0],
        case2: ids[1],
    }
}

/// Raises an alert `age_ms` ago (as the pipelines do: through the store, sealed).
fn raise(
    ctx: &Context,
    person: i64,
    kind: AlertKind,
    severity: Severity,
    start: i64,
    age_ms: i64,
) -> i64 {
    let mut conn = ctx.db.lock();
    let tx = conn.transaction().unwrap();
    let alert = NewAlert {
        person_id: person,
        kind,
        severity,
        start_ms: start,
        end_ms: start + 30 * MINUTE,
        peak_tac_g_dl: Some(0.0734),
        rule: r#"{"threshold_g_dl":0.02}"#,
        evidence: "bundle-0001",
    };
    assert!(record_once(&tx, &alert, now_ms() - age_ms).unwrap());
    let id = tx
        .query_row(
            "SELECT id FROM alerts WHERE person_id = ?1 AND kind = ?2 AND start_ms = ?3",
            nachtwacht::params![person, kind.as_str(), start],
            |r| r.get(0),
        )
        .unwrap();
    tx.commit().unwrap();
    id
}

fn count(ctx: &Context, sql: &str) -> i64 {
    ctx.db.lock().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn assert_no_personal_data(raw: &str) {
    for forbidden in [
        "CASE-1",
        "CASE-2",
        "0.0734",
        "0.07",
        "bundle-0001",
        "olga",
        "piet",
        "Alcohol",
        "alcohol",
    ] {
        // The recipient's own address is in the To header; nothing else may name anyone.
        let body_and_subject: String = raw
            .lines()
            .filter(|l| !l.starts_with("To:"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !body_and_subject.contains(forbidden),
            "{forbidden:?} in a message:\n{raw}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_alerts_reach_their_officers_once_and_unopened_critical_ones_their_manager() {
    let sink = SmtpSink::start();
    let o = office(Config::default(), &sink);
    let ctx = &o.ctx;
    let day = now_ms() - 2 * DAY_MS;
    let drinking = raise(
        ctx,
        o.case1,
        AlertKind::Alcohol,
        Severity::High,
        day,
        60 * MINUTE,
    );
    let battery = raise(
        ctx,
        o.case1,
        AlertKind::BatteryLow,
        Severity::Low,
        day,
        60 * MINUTE,
    );
    let other = raise(
        ctx,
        o.case2,
        AlertKind::Alcohol,
        Severity::High,
        day,
        60 * MINUTE,
    );
    // Opened by Olga: she is told of it, her manager is not.
    let opened = raise(
        ctx,
        o.case1,
        AlertKind::Alcohol,
        Severity::High,
        day + DAY_MS,
        60 * MINUTE,
    );
    nachtwacht::alerts::casework::detail(ctx, &o.olga, opened, "view", now_ms()).unwrap();
    // Raised just now: not yet escalated.
    let fresh = raise(
        ctx,
        o.case1,
        AlertKind::Alcohol,
        Severity::High,
        day + 2 * DAY_MS,
        0,
    );

    // Four passes at once, over two connections to the database (as two processes would).
    let second = Context {
        db: nachtwacht::base::db::Db::open(&ctx.dir.database()).unwrap(),
        ..ctx.clone()
    };
    let now = now_ms();
    let (a, b, c, d) = tokio::join!(
        notify::pass(ctx, now),
        notify::pass(&second, now),
        notify::pass(ctx, now),
        notify::pass(&second, now)
    );
    let passes = [a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()];
    assert_eq!(
        passes.iter().map(|p| p.sent).sum::<usize>(),
        5,
        "{passes:?}"
    );
    assert_eq!(
        passes.iter().map(|p| p.failed + p.gave_up).sum::<usize>(),
        0
    );
    // A later pass finds nothing more to do.
    let again = notify::pass(ctx, now_ms()).await.unwrap();
    assert_eq!((again.queued, again.escalated, again.sent), (0, 0, 0));

    let messages = sink.wait_for(5, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let messages_now = sink.messages();
    assert_eq!(
        messages_now.len(),
        5,
        "each message once: {messages_now:#?}"
    );
    let to = |who: &str| -> Vec<&common::smtp::Received> {
        messages.iter().filter(|m| m.to() == [who]).collect()
    };
    let link = |id: i64| format!("http://localhost:8080/alerts/{id}\r\n");
    // Olga: the two alcohol alerts and the fresh one; not the battery (she did not choose it).
    let olga = to("olga@reclassering.test");
    assert_eq!(olga.len(), 3, "{olga:#?}");
    for id in [drinking, opened, fresh] {
        assert!(olga.iter().any(|m| m.raw.contains(&link(id))), "alert {id}");
    }
    assert!(!messages.iter().any(|m| m.raw.contains(&link(battery))));
    assert!(olga[0]
        .raw
        .contains("Subject: nachtwacht: nieuwe melding / new alert"));
    assert!(olga[0]
        .raw
        .contains("Er is een nieuwe melding in nachtwacht."));
    // Piet: his own person's alert only.
    let piet = to("piet@reclassering.test");
    assert_eq!(piet.len(), 1);
    assert!(piet[0].raw.contains(&link(other)));
    // Max: the unopened critical alert of his officer, once; not the opened one, not the fresh
    // one, not Piet's (Piet has no manager).
    let max = to("max@reclassering.test");
    assert_eq!(max.len(), 1, "{max:#?}");
    assert!(max[0].raw.contains(&link(drinking)));
    assert!(max[0].raw.contains("kritieke melding"));
    for m in &messages {
        assert_eq!(m.envelope["tls"], true, "sent over TLS");
        assert_eq!(m.envelope["authenticated"], true);
        assert_eq!(m.envelope["from"], "nachtwacht@reclassering.test");
        assert_no_personal_data(&m.raw);
    }
    // Every message sent is audited against its alert, without the address.
    assert_eq!(
        count(
            ctx,
            "SELECT count(*) FROM audit_log WHERE action = 'notification.sent'"
        ),
        5
    );
    assert_eq!(
        count(
            ctx,
            "SELECT count(*) FROM audit_log WHERE detail LIKE '%@reclassering%'"
        ),
        0
    );
    assert_eq!(
        count(
            ctx,
            "SELECT count(*) FROM audit_log WHERE action = 'account.notifications'"
        ),
        4
    );
    assert!(matches!(
        nachtwacht::trust::audit::verify(&ctx.db.lock()).unwrap(),
        nachtwacht::trust::audit::Verdict::Intact { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_is_retried_and_after_max_attempts_given_up() {
    let sink = SmtpSink::start();
    let mut config = Config::default();
    config.notifications.max_attempts = 3;
    let o = office(config, &sink);
    let port = sink.port;
    drop(sink); // the mail server is down
    let ctx = &o.ctx;
    let day = now_ms() - DAY_MS;
    let alert = raise(ctx, o.case2, AlertKind::Alcohol, Severity::Medium, day, 0);

    let t0 = now_ms();
    let first = notify::pass(ctx, t0).await.unwrap();
    assert_eq!(
        (first.queued, first.sent, first.failed),
        (1, 0, 1),
        "{first:?}"
    );
    let (attempts, next, error): (u32, i64, String) = ctx
        .db
        .lock()
        .query_row(
            "SELECT attempts, next_attempt_at_ms, last_error FROM notifications WHERE alert_id = ?1",
            [alert],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(attempts, 1);
    assert!(next >= t0 + notify::outbox::retry_after_ms(1), "backs off");
    assert!(!error.is_empty());
    // Not due yet: nothing is tried.
    let early = notify::pass(ctx, t0 + 1_000).await.unwrap();
    assert_eq!(early.failed + early.sent, 0);

    // The server is back (on the same port): the retry goes through.
    let sink = SmtpSink::start_on(port);
    sink.configure(ctx.dir.root());
    let later = notify::pass(ctx, next).await.unwrap();
    assert_eq!(later.sent, 1, "{later:?}");
    let m = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(m[0].to(), ["piet@reclassering.test"]);
    assert!(m[0].raw.contains(&format!("/alerts/{alert}")));
    drop(sink);

    // Down again, for another alert: two failures more make three, and the message is given up.
    let other = raise(
        ctx,
        o.case2,
        AlertKind::Alcohol,
        Severity::Medium,
        day + DAY_MS / 2,
        0,
    );
    let mut at = now_ms();
    let mut gave_up = 0;
    for _ in 0..3 {
        let p = notify::pass(ctx, at).await.unwrap();
        gave_up += p.gave_up;
        at += notify::outbox::retry_after_ms(3) + 1;
    }
    assert_eq!(gave_up, 1);
    assert_eq!(
        count(ctx, &format!(
            "SELECT count(*) FROM audit_log WHERE action = 'notification.gave-up' AND object = 'alert:{other}'"
        )),
        1
    );
    let status = notify::outbox::status(&ctx.db).unwrap();
    assert_eq!((status.sent, status.given_up, status.queued), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sends_notifications_on_its_own() {
    let sink = SmtpSink::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let mut config = Config::default();
    config.notifications.interval_secs = 1;
    nachtwacht::server::init::init(&root, &common::with_test_database(config.clone()), now_ms())
        .unwrap();
    // The operator adds the mail server to the configuration.
    config.notifications.smtp = Some(sink.configure(Path::new(&root)));
    std::fs::write(root.join("nachtwacht.toml"), config.to_toml()).unwrap();
    let server = common::start_in(tmp).await;
    let ctx = &server.ctx;
    let now = now_ms();
    let olga = account(ctx, "olga", Role::Officer, now);
    settings::save_own(
        &ctx.db,
        &olga,
        Some("olga@reclassering.test"),
        &[AlertKind::Alcohol],
        now,
    )
    .unwrap();
    let person = enroll::add_person(ctx, "CASE-9", Programme::AlcoholBan, "admin").unwrap();
    caseload::assign(&ctx.db, "olga", "CASE-9", now - DAY_MS, None, "admin", now).unwrap();
    let alert = raise(
        ctx,
        person,
        AlertKind::Alcohol,
        Severity::High,
        now - DAY_MS,
        0,
    );
    let m = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(m[0].to(), ["olga@reclassering.test"]);
    assert!(m[0].raw.contains(&format!("/alerts/{alert}")));
    assert_no_personal_data(&m[0].raw);
    server.server.shutdown().await;
}
