//! A server with real alerts for the web tests: two alcohol-ban persons whose stations upload
//! over QUIC, decoded and evaluated by the real pipeline; two officers with one person each on
//! their caseload; one account of every other role; a research token.

use std::collections::HashMap;

use nachtwacht::base::config::Config;
use nachtwacht::registry::accounts::{self, Role};
use nachtwacht::{evaluate, registry::caseload, research};
use nachtwacht_station::source::simulator::DrinkingEpisode;

use super::*;

#[derive(Clone)]
pub struct Creds {
    pub username: String,
    pub password: String,
    pub totp_secret: String,
}

impl Creds {
    pub fn code(&self) -> String {
        accounts::totp_code(&self.totp_secret, nachtwacht::base::time::now_ms()).unwrap()
    }
}

pub struct WebFixture {
    pub t: TestServer,
    pub base: String,
    /// By role name; the officers are `officer` (olga) and `officer2` (otto).
    pub accounts: HashMap<&'static str, Creds>,
    /// The alcohol alert of olga's person and of otto's person.
    pub own_alert: i64,
    pub other_alert: i64,
    pub research_token: String,
}

pub async fn web_fixture() -> WebFixture {
    let t = start_server(Config::default()).await;
    let drinking = || {
        vec![DrinkingEpisode {
            day: 1,
            hour: 20.0,
            peak_tac: 0.05,
        }]
    };
    for (name, serial) in [("home-1", "AM-0001"), ("home-2", "AM-0002")] {
        let (station, dir, _) = t.ankle_station(name, serial, 3, drinking());
        let report = nachtwacht_station::run_once(&station, &dir).await.unwrap();
        assert_eq!(report.acknowledged, 3, "{report:?}");
        nachtwacht::registry::enroll::link_station(&t.ctx, name, &format!("CASE-{name}"), "test")
            .unwrap();
    }
    t.server.decode_now().await;
    let (ctx, pseudonyms) = (
        t.ctx.clone(),
        nachtwacht::trust::pseudonym::Pseudonymiser::load(&t.ctx.dir).unwrap(),
    );
    tokio::task::spawn_blocking(move || evaluate::run(&ctx, &pseudonyms, &Default::default()))
        .await
        .unwrap()
        .unwrap();

    let now = nachtwacht::base::time::now_ms();
    let mut accounts = HashMap::new();
    for (key, username, role) in [
        ("administrator", "ada", Role::Administrator),
        ("officer", "olga", Role::Officer),
        ("officer2", "otto", Role::Officer),
        ("manager", "max", Role::Manager),
        ("researcher", "ria", Role::Researcher),
        ("auditor", "aud", Role::Auditor),
    ] {
        let new = accounts::create(&t.ctx.db, username, role, "test", now).unwrap();
        nachtwacht::registry::screening::screen_for_a_year(&t.ctx.db, username, now).unwrap();
        accounts.insert(
            key,
            Creds {
                username: username.into(),
                password: new.password,
                totp_secret: new.totp_secret,
            },
        );
    }
    caseload::assign(
        &t.ctx.db,
        "olga",
        "CASE-home-1",
        now - DAY_MS,
        None,
        "test",
        now,
    )
    .unwrap();
    caseload::assign(
        &t.ctx.db,
        "otto",
        "CASE-home-2",
        now - DAY_MS,
        None,
        "test",
        now,
    )
    .unwrap();
    let alert_of = |reference: &str| -> i64 {
        t.ctx
            .db
            .lock()
            .query_row(
                "SELECT a.id FROM alerts a JOIN persons p ON p.id = a.person_id
                  WHERE p.reference = ?1 AND a.kind = 'alcohol'",
                [reference],
                |r| r.get(0),
            )
            .unwrap()
    };
    let (own_alert, other_alert) = (alert_of("CASE-home-1"), alert_of("CASE-home-2"));
    research::create_project(&t.ctx, "p", research::Budget::new(1.0, 0.5), "test").unwrap();
    let research_token = research::issue_token(&t.ctx, "p", "ria", 1, "test").unwrap();
    WebFixture {
        base: format!("http://{}", t.server.http_addr()),
        t,
        accounts,
        own_alert,
        other_alert,
        research_token,
    }
}

/// A signed-in HTTP client: the session cookie and the CSRF token of its forms.
pub struct HttpSession {
    pub cookie: String,
    pub csrf: String,
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

/// Status, `Location` header and body of a response, error statuses included.
pub fn outcome(r: Result<ureq::Response, ureq::Error>) -> (u16, String, String) {
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let location = r.header("location").unwrap_or("").to_string();
    (r.status(), location, r.into_string().unwrap_or_default())
}

/// The CSRF token in a signed-in page's forms.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a csrf field on the page")
        .to_string()
}

/// The password a test user chooses at first sign-in.
pub fn own_password(issued: &str) -> String {
    format!("{issued}-own")
}

/// Signs in over HTTP; at an account's first sign-in also replaces the issued password with
/// [`own_password`], as the server demands.
pub fn login(base: &str, creds: &Creds) -> HttpSession {
    let r = agent().post(&format!("{base}/login")).send_form(&[
        ("username", &creds.username),
        ("password", &creds.password),
        ("code", &creds.code()),
    ]);
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            panic!(
                "login of {} failed: {code} {}",
                creds.username,
                r.into_string().unwrap()
            )
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r.status(), 303);
    let set_cookie = r
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("nw_session="))
        .expect("session cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    if r.header("location") == Some("/account/password") {
        // First sign-in: the password an administrator issued must be replaced first.
        let (_, _, page) = outcome(
            agent()
                .get(&format!("{base}/account/password"))
                .set("Cookie", &cookie)
                .call(),
        );
        let csrf = csrf_of(&page);
        let new = own_password(&creds.password);
        let (status, location, body) = outcome(
            agent()
                .post(&format!("{base}/account/password"))
                .set("Cookie", &cookie)
                .send_form(&[
                    ("csrf", csrf.as_str()),
                    ("current", &creds.password),
                    ("new", &new),
                    ("repeat", &new),
                ]),
        );
        assert_eq!(status, 303, "password change of {}: {body}", creds.username);
        assert_ne!(location, "/account/password");
    }
    let (_, _, page) = outcome(
        agent()
            .get(&format!("{base}/account"))
            .set("Cookie", &cookie)
            .call(),
    );
    let csrf = csrf_of(&page);
    HttpSession { cookie, csrf }
}
