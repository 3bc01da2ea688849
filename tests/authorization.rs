//! The authorisation matrix: every route of the web server × every role (and anonymous) against
//! the outcome written down here, independently of the server's own rule table. A route added to
//! the server without a line here fails the first assertion; a rule that admits the wrong role
//! fails the walk. Object-level access (another officer's alert) is checked after the matrix.

use std::collections::BTreeSet;

use crate::common::web::*;
use nachtwacht::web;

/// Who may use each route: `anyone`, `signed-in`, `token` (research bearer token), or a role.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("GET", "/", "anyone"),
    ("GET", "/healthz", "anyone"),
    ("GET", "/readyz", "anyone"),
    ("GET", "/login", "anyone"),
    ("POST", "/login", "anyone"),
    ("POST", "/logout", "signed-in"),
    ("GET", "/account", "signed-in"),
    ("GET", "/account/password", "signed-in"),
    ("POST", "/account/password", "signed-in"),
    ("POST", "/account/notifications", "signed-in"),
    ("GET", "/alerts", "officer"),
    ("GET", "/alerts/{id}", "officer"),
    ("POST", "/alerts/{id}/transition", "officer"),
    ("GET", "/alerts/{id}/report", "officer"),
    ("GET", "/alerts/{id}/report.pdf", "officer"),
    ("GET", "/alerts/{id}/dossier", "officer"),
    ("GET", "/alerts/export", "officer"),
    ("POST", "/alerts/{id}/hold", "officer"),
    ("POST", "/alerts/{id}/hold/release", "officer"),
    ("GET", "/stations", "officer"),
    ("GET", "/caseload", "officer"),
    ("GET", "/persons/{id}", "officer"),
    ("GET", "/admin", "administrator"),
    ("POST", "/admin/accounts", "administrator"),
    ("POST", "/admin/accounts/{id}/disable", "administrator"),
    ("POST", "/admin/accounts/{id}/role", "administrator"),
    ("POST", "/admin/accounts/{id}/manager", "administrator"),
    ("POST", "/admin/accounts/{id}/reset", "administrator"),
    ("POST", "/admin/accounts/{id}/screening", "administrator"),
    ("POST", "/admin/persons", "administrator"),
    ("POST", "/admin/persons/export", "administrator"),
    ("POST", "/admin/persons/close", "administrator"),
    ("POST", "/admin/persons/hold", "administrator"),
    ("POST", "/admin/holds/{id}/release", "administrator"),
    ("POST", "/admin/devices", "administrator"),
    ("POST", "/admin/devices/return", "administrator"),
    ("POST", "/admin/stations", "administrator"),
    ("POST", "/admin/stations/{name}/revoke", "administrator"),
    ("POST", "/admin/caseloads", "administrator"),
    ("POST", "/admin/caseloads/{id}/end", "administrator"),
    ("POST", "/admin/research/projects", "administrator"),
    ("POST", "/admin/research/tokens", "administrator"),
    (
        "POST",
        "/admin/research/tokens/{id}/revoke",
        "administrator",
    ),
    ("GET", "/audit", "auditor"),
    ("GET", "/audit/export", "auditor"),
    ("GET", "/audit/compliance", "auditor"),
    ("POST", "/audit/reviews", "auditor"),
    ("GET", "/management", "manager"),
    ("POST", "/management/release", "manager"),
    ("POST", "/api/v1/research/query", "token"),
    ("GET", "/api/v1/research/budget", "token"),
    ("GET", "/api/openapi.json", "anyone"),
];

const PRINCIPALS: &[&str] = &[
    "anonymous",
    "administrator",
    "officer",
    "manager",
    "researcher",
    "auditor",
];

#[derive(Debug, PartialEq, Clone, Copy)]
enum Outcome {
    /// The handler ran (whatever it then answered).
    Reached,
    /// Sent to sign in: a redirect to /login, or 401 for a form post.
    SignIn,
    Forbidden,
    /// The research API refused for want of a token.
    NoToken,
}

fn expected(rule: &str, principal: &str) -> Outcome {
    match (rule, principal) {
        ("anyone", _) => Outcome::Reached,
        ("token", _) => Outcome::NoToken,
        (_, "anonymous") => Outcome::SignIn,
        ("signed-in", _) => Outcome::Reached,
        (role, p) if role == p => Outcome::Reached,
        _ => Outcome::Forbidden,
    }
}

fn classify(path: &str, (status, location, body): &(u16, String, String)) -> Outcome {
    match status {
        // Signing out also ends at /login, by design.
        303 if location == "/login" && path != "/logout" => Outcome::SignIn,
        // "Sign in first" in Dutch, or the sign-in form keeping a typed workflow step.
        401 if body.contains("Meld u eerst aan.") || body.contains("action=\"/login\"") => {
            Outcome::SignIn
        }
        401 if path.starts_with("/api/") => Outcome::NoToken,
        403 => Outcome::Forbidden,
        _ => Outcome::Reached,
    }
}

/// A concrete URL for a route pattern. Ids of things that do not exist keep allowed form posts
/// harmless: the handler runs and refuses the input, nothing changes.
fn url(path: &str, own_alert: i64) -> String {
    if path.starts_with("/alerts/") {
        return path.replace("{id}", &own_alert.to_string());
    }
    path.replace("{id}", "999999")
        .replace("{name}", "no-such-station")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_times_every_role_has_the_expected_outcome() {
    let f = web_fixture().await;

    // 1. The matrix covers exactly the server's routes.
    let served: BTreeSet<(String, String)> = web::rules()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let listed: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        served.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes without a line in EXPECTED"
    );
    assert_eq!(
        listed.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "lines in EXPECTED for routes that do not exist"
    );

    // 2. Walk it. Blocking HTTP on a blocking thread; the server runs on the runtime.
    let base = f.base.clone();
    let own_alert = f.own_alert;
    let sessions: Vec<(&str, Option<HttpSession>)> = {
        let mut v = vec![];
        for p in PRINCIPALS {
            let creds = f.accounts.get(p);
            let base = base.clone();
            let session = match creds {
                None => None,
                Some(c) => {
                    let c = c.clone();
                    Some(
                        tokio::task::spawn_blocking(move || login(&base, &c))
                            .await
                            .unwrap(),
                    )
                }
            };
            v.push((*p, session));
        }
        v
    };
    let failures = tokio::task::spawn_blocking(move || {
        let mut failures = vec![];
        let mut checked = 0;
        for (principal, session) in &sessions {
            // /logout last: it ends the session.
            let mut routes: Vec<&(&str, &str, &str)> = EXPECTED.iter().collect();
            routes.sort_by_key(|(_, p, _)| *p == "/logout");
            for (method, path, rule) in routes {
                let target = format!("{base}{}", url(path, own_alert));
                let mut req = agent().request(method, &target);
                if let Some(s) = session {
                    req = req.set("Cookie", &s.cookie);
                }
                let response = if *method == "POST" {
                    let csrf = session.as_ref().map(|s| s.csrf.as_str()).unwrap_or("");
                    if path.starts_with("/api/") {
                        req.set("Content-Type", "application/json")
                            .send_string("{}")
                    } else {
                        req.send_form(&[("csrf", csrf)])
                    }
                } else {
                    req.call()
                };
                let got = classify(path, &outcome(response));
                let want = expected(rule, principal);
                checked += 1;
                if got != want {
                    failures.push(format!(
                        "{method} {path} as {principal}: got {got:?}, want {want:?}"
                    ));
                }
            }
        }
        assert_eq!(checked, EXPECTED.len() * PRINCIPALS.len());
        failures
    })
    .await
    .unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // 3. With a token the research API is reached; without one it is not (checked above).
    let (base, token) = (f.base.clone(), f.research_token.clone());
    let (status, _, body) = tokio::task::spawn_blocking(move || {
        outcome(
            agent()
                .get(&format!("{base}/api/v1/research/budget"))
                .set("Authorization", &format!("Bearer {token}"))
                .call(),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // 4. Refusals of the wrong role are in the audit log.
    assert!(f.t.count("SELECT count(*) FROM audit_log WHERE action = 'access.denied'") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_reaches_only_their_own_caseload_by_link_or_by_guessing() {
    let f = web_fixture().await;
    let olga = f.accounts["officer"].clone();
    let (base, own, other) = (f.base.clone(), f.own_alert, f.other_alert);
    let results = tokio::task::spawn_blocking(move || {
        let s = login(&base, &olga);
        let get = |path: String| {
            outcome(
                agent()
                    .get(&format!("{base}{path}"))
                    .set("Cookie", &s.cookie)
                    .call(),
            )
        };
        let list = get("/alerts".into());
        let own_page = get(format!("/alerts/{own}"));
        let other_page = get(format!("/alerts/{other}"));
        let other_report = get(format!("/alerts/{other}/report"));
        let missing = get("/alerts/987654".into());
        let stations = get("/stations".into());
        let transition = outcome(
            agent()
                .post(&format!("{base}/alerts/{other}/transition"))
                .set("Cookie", &s.cookie)
                .send_form(&[("csrf", &s.csrf), ("to", "in_process"), ("comment", "x")]),
        );
        // A form post with the session cookie but without its CSRF token is refused.
        let no_csrf = outcome(
            agent()
                .post(&format!("{base}/alerts/{own}/transition"))
                .set("Cookie", &s.cookie)
                .send_form(&[("to", "in_process"), ("comment", "x")]),
        );
        (
            stations,
            list,
            own_page,
            other_page,
            other_report,
            missing,
            transition,
            no_csrf,
        )
    })
    .await
    .unwrap();
    let (stations, list, own_page, other_page, other_report, missing, transition, no_csrf) =
        results;
    // The stations overview: own caseload's station only, with its last upload.
    assert_eq!(stations.0, 200);
    assert!(
        stations.2.contains("home-1") && !stations.2.contains("home-2"),
        "{}",
        stations.2
    );
    assert!(
        stations.2.contains(
            &nachtwacht::base::time::Zone::named("Europe/Amsterdam")
                .unwrap()
                .format(nachtwacht::base::time::now_ms(), "%Y-%m-%d ")
        ),
        "last contact/upload times shown in local time"
    );
    assert!(stations.2.contains("Europe/Amsterdam"), "the zone is named");
    assert_eq!(list.0, 200);
    assert!(list.2.contains("CASE-home-1"), "own person listed");
    assert!(
        !list.2.contains("CASE-home-2"),
        "other officer's person not listed"
    );
    assert_eq!(own_page.0, 200);
    assert!(own_page.2.contains("<svg"), "evidence chart rendered");
    // Another officer's alert looks exactly like one that does not exist.
    assert_eq!(other_page.0, 404);
    assert_eq!(other_report.0, 404);
    assert_eq!(missing.0, 404);
    assert_eq!(other_page.2, missing.2);
    // The error page speaks Dutch (the default) and offers a way back.
    assert!(
        missing.2.contains("<h1>Niet gevonden</h1>") && missing.2.contains("id=\"home\""),
        "{}",
        missing.2
    );
    assert!(!missing.2.contains("Not Found"), "{}", missing.2);
    assert_eq!(transition.0, 404);
    assert_eq!(no_csrf.0, 403);
    let status: String =
        f.t.ctx
            .db
            .lock()
            .query_row("SELECT status FROM alerts WHERE id = ?1", [other], |r| {
                r.get(0)
            })
            .unwrap();
    assert_eq!(status, "new", "the other officer's alert is untouched");
    assert_eq!(
        f.t.count(
            "SELECT count(*) FROM audit_log WHERE action = 'alert.refused' AND actor = 'olga'"
        ),
        4,
        "the other officer's alert twice, its workflow once, a missing alert once"
    );
    assert_eq!(
        f.t.count("SELECT count(*) FROM audit_log WHERE action = 'alert.view' AND actor = 'olga'"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_guessing_across_accounts_is_throttled_and_accounts_lock() {
    let f = web_fixture().await;
    let base = f.base.clone();
    let usernames: Vec<String> = ["officer", "officer2", "manager", "researcher", "auditor"]
        .iter()
        .map(|k| f.accounts[k].username.clone())
        .collect();
    let statuses = tokio::task::spawn_blocking(move || {
        let mut statuses = vec![];
        // 4 wrong passwords per account: no account reaches its lockout (5), but the address
        // reaches its limit (20) on the last of them.
        for round in 0..5 {
            for user in &usernames {
                if round == 4 && user != &usernames[0] {
                    continue;
                }
                let r = agent().post(&format!("{base}/login")).send_form(&[
                    ("username", user.as_str()),
                    ("password", "guess"),
                    ("code", "123456"),
                ]);
                statuses.push(outcome(r).0);
            }
        }
        statuses
    })
    .await
    .unwrap();
    assert_eq!(statuses.len(), 21);
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(
        statuses[20], 429,
        "the address is throttled after 20 failures"
    );
    // olga failed 4 times and was then throttled before reaching the account lock; nobody is
    // locked, yet every failure is in the audit log.
    assert_eq!(
        f.t.count("SELECT count(*) FROM accounts WHERE locked_until_ms IS NOT NULL"),
        0
    );
    assert_eq!(
        f.t.count("SELECT count(*) FROM audit_log WHERE action = 'login.failed'"),
        20
    );
}

/// Sixty wrong logins from one address at once: the address limit (20) holds under the race,
/// because a failure is reserved before the password is checked, and every refusal is audited.
/// Before the fix all sixty were checked (the limiter was read before and written after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_from_one_address_are_held_to_the_limit_and_every_refusal_is_audited() {
    let f = web_fixture().await;
    let base = f.base.clone();
    let statuses = tokio::task::spawn_blocking(move || {
        let threads: Vec<_> = (0..60)
            .map(|i| {
                let base = base.clone();
                std::thread::spawn(move || {
                    let r = agent().post(&format!("{base}/login")).send_form(&[
                        ("username", format!("nobody-{i}").as_str()),
                        ("password", "guess"),
                        ("code", "123456"),
                    ]);
                    outcome(r).0
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<u16>>()
    })
    .await
    .unwrap();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, throttled), (20, 40), "{statuses:?}");
    assert_eq!(
        f.t.count("SELECT count(*) FROM audit_log WHERE action = 'login.failed'"),
        20
    );
    assert_eq!(
        f.t.count("SELECT count(*) FROM audit_log WHERE action = 'login.throttled'"),
        40
    );
}

/// Host and Origin are compared with the site's scheme, host and port: an `https` origin on this
/// plain-HTTP server, another host in both headers, and a malformed alert id are refused, each
/// with an audit entry. Before, the origin check compared only the authority (`https://` passed on
/// plain HTTP), any Host was served, and these refusals went to stderr only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_another_site_and_malformed_ids_are_refused_and_audited() {
    let f = web_fixture().await;
    let (base, officer) = (f.base.clone(), f.accounts["officer"].clone());
    let authority = base.trim_start_matches("http://").to_string();
    let statuses = tokio::task::spawn_blocking(move || {
        let s = login(&base, &officer);
        let post_from = |origin: &str, host: &str| {
            outcome(
                agent()
                    .post(&format!("{base}/logout"))
                    .set("Cookie", &s.cookie)
                    .set("Origin", origin)
                    .set("Host", host)
                    .send_form(&[("csrf", &s.csrf)]),
            )
            .0
        };
        let wrong_scheme = post_from(&format!("https://{authority}"), &authority);
        let evil = post_from("http://evil.example", "evil.example");
        let malformed = outcome(
            agent()
                .get(&format!("{base}/alerts/{}", "9".repeat(40)))
                .set("Cookie", &s.cookie)
                .call(),
        )
        .0;
        let still_signed_in = outcome(
            agent()
                .get(&format!("{base}/alerts"))
                .set("Cookie", &s.cookie)
                .call(),
        )
        .0;
        (wrong_scheme, evil, malformed, still_signed_in)
    })
    .await
    .unwrap();
    assert_eq!(statuses, (403, 400, 404, 200));
    assert_eq!(
        f.t.count("SELECT count(*) FROM audit_log WHERE action = 'access.refused-origin'"),
        1
    );
    assert_eq!(
        f.t.count("SELECT count(*) FROM audit_log WHERE action = 'access.refused-host'"),
        1
    );
    assert_eq!(
        f.t.count(
            "SELECT count(*) FROM audit_log WHERE action = 'alert.refused' AND detail LIKE '%malformed%'"
        ),
        1
    );
}
