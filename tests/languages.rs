//! Every page and every refusal of the web UI in both languages: each page is fetched in Dutch
//! and in English, and any visible text that reads the same in both must be data (a reference,
//! a name, a number, a date, a hash) or a table entry deliberately the same in both. A string
//! written into a page without the translation table reads the same in both, and fails here.
//! The walk covers every HTML page of the route table; a new page fails the test until it is
//! walked.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::web::*;

/// A signed-in or anonymous client in one language.
struct Reader<'a> {
    base: &'a str,
    session: Option<&'a HttpSession>,
}

impl Reader<'_> {
    fn cookie(&self, lang: &str) -> String {
        match self.session {
            Some(s) => format!("{}; nw_lang={lang}", s.cookie),
            None => format!("nw_lang={lang}"),
        }
    }

    fn get(&self, path: &str, lang: &str) -> (u16, String) {
        let (status, _, body) = outcome(
            agent()
                .get(&format!("{}{path}", self.base))
                .set("Cookie", &self.cookie(lang))
                .call(),
        );
        (status, body)
    }

    fn post(&self, path: &str, lang: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut form: Vec<(&str, &str)> = vec![];
        if let Some(s) = self.session {
            form.push(("csrf", s.csrf.as_str()));
        }
        form.extend_from_slice(fields);
        let (status, _, body) = outcome(
            agent()
                .post(&format!("{}{path}", self.base))
                .set("Cookie", &self.cookie(lang))
                .send_form(&form),
        );
        (status, body)
    }
}

/// The visible text of a page: text between tags and the texts of `placeholder`, `title`,
/// `aria-label` and `alt`; `<style>` and `<code>` (identifiers, hashes, log codes) left out.
fn visible_texts(html: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = html;
    let mut skip_until: Option<&str> = None;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        if skip_until.is_none() {
            add(&mut out, text);
        }
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let tag = &rest[open + 1..open + close];
        let name = tag
            .split(|c: char| c.is_whitespace() || c == '/')
            .find(|s| !s.is_empty())
            .unwrap_or("")
            .to_ascii_lowercase();
        match (skip_until, tag.starts_with('/')) {
            (Some(end), true) if tag[1..].eq_ignore_ascii_case(end) => skip_until = None,
            (None, false) if name == "style" || name == "code" || name == "script" => {
                skip_until = Some(match name.as_str() {
                    "style" => "style",
                    "code" => "code",
                    _ => "script",
                })
            }
            _ => {}
        }
        if skip_until.is_none() {
            for attr in ["placeholder=\"", "title=\"", "aria-label=\"", "alt=\""] {
                for value in tag.split(attr).skip(1) {
                    add(&mut out, value.split('"').next().unwrap_or(""));
                }
            }
        }
        rest = &rest[open + close + 1..];
    }
    add(&mut out, rest);
    out
}

/// The page's main part, for failure messages.
fn main_of(html: &str) -> &str {
    html.split("<main>").nth(1).unwrap_or(html)
}

fn add(out: &mut BTreeSet<String>, raw: &str) {
    let text = raw
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() {
        out.insert(text);
    }
}

/// Whether a text that reads the same in both languages is data or a deliberate equal: nothing
/// word-like is left once the fixture's names, codes, numbers, dates and the table's
/// same-in-both entries are taken out.
fn is_language_neutral(text: &str, same_in_both: &[&str]) -> bool {
    let mut t = format!(" {text} ");
    // Longest first, so "Budget ε" goes before "Budget".
    let mut equal: Vec<&str> = same_in_both.to_vec();
    equal.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in equal {
        t = t.replace(s, " ");
    }
    // Data of the fixture and of the system itself.
    for data in [
        "CASE-home-1",
        "CASE-home-2",
        "CASE-nobody",
        "CASE-new",
        "AM-0001",
        "AM-0002",
        "home-1",
        "home-2",
        "Europe/Amsterdam",
        "nachtwacht",
        "g/dL",
        "µS",
    ] {
        t = t.replace(data, " ");
    }
    let words: Vec<&str> = t
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| w.chars().count() >= 2)
        .collect();
    // Names of the fixture's accounts and the system's abbreviations are data too.
    const NAMES: &[&str] = &[
        "admin", "ada", "olga", "otto", "max", "ria", "aud", "nina", "NL", "EN", "CET", "CEST",
        "TAC", "CSV", "PDF", "JSON", "EDA", "ISO", "UTC", "SHA",
        // What the walk types into forms, kept in place.
        "klaar",
    ];
    words.iter().all(|w| NAMES.contains(w))
}

/// Routes that answer a file or JSON rather than a page, or the compliance report (an evidence
/// artefact in English that the CLI writes too and the dossier carries).
const NOT_PAGES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/alerts/export",
    "/alerts/{id}/report.pdf",
    "/alerts/{id}/dossier",
    "/audit/export",
    "/audit/compliance",
    "/api/v1/research/budget",
    "/api/openapi.json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_every_refusal_reads_in_both_languages() {
    let f = web_fixture().await;
    let base = f.base.clone();
    let same_in_both: Vec<&str> = nachtwacht::web::i18n::TEXTS
        .iter()
        .filter(|(_, nl, en)| nl == en)
        .map(|(_, nl, _)| *nl)
        .collect();
    let person: i64 =
        f.t.ctx
            .db
            .lock()
            .query_row(
                "SELECT id FROM persons WHERE reference = 'CASE-home-1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
    let sessions: BTreeMap<&str, HttpSession> = [
        "officer",
        "administrator",
        "auditor",
        "manager",
        "researcher",
    ]
    .into_iter()
    .map(|role| (role, login(&base, &f.accounts[role])))
    .chain([(
        // A session that has ended (expired, or signed out elsewhere).
        "expired",
        HttpSession {
            cookie: "nw_session=0000000000000000000000000000000000000000000000000000000000000000"
                .into(),
            csrf: "0".into(),
        },
    )])
    .collect();
    let reader = |role: Option<&str>| Reader {
        base: &base,
        session: role.map(|r| &sessions[r]),
    };
    let alert = f.own_alert;
    let month_now = chrono::Utc::now().format("%Y-%m").to_string();

    enum Ask<'a> {
        Get(&'a str),
        Post(&'a str, Vec<(&'a str, &'a str)>),
    }
    // (who, the route it stands for, what is asked, the status expected)
    let mut walk: Vec<(Option<&str>, &str, Ask, u16)> = vec![];
    let alert_path = format!("/alerts/{alert}");
    let report_path = format!("/alerts/{alert}/report");
    let person_path = format!("/persons/{person}");
    let person_backwards = format!("/persons/{person}?from=2026-10-05&to=2026-10-01");
    let person_not_a_date = format!("/persons/{person}?from=gisteren&to=2026-10-01");
    let transition = format!("/alerts/{alert}/transition");
    let hold = format!("/alerts/{alert}/hold");
    let release = format!("/alerts/{alert}/hold/release");
    let account_id = |name: &str| -> i64 {
        f.t.ctx
            .db
            .lock()
            .query_row("SELECT id FROM accounts WHERE username = ?1", [name], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let (ada, olga) = (account_id("ada"), account_id("olga"));
    let own_disable = format!("/admin/accounts/{ada}/disable");
    let own_role = format!("/admin/accounts/{ada}/role");
    let own_reset = format!("/admin/accounts/{ada}/reset");
    let olga_manager = format!("/admin/accounts/{olga}/manager");
    let olga_screening = format!("/admin/accounts/{olga}/screening");
    use Ask::*;
    walk.extend([
        // Anyone: the landing page, sign-in, a page that does not exist, and a page that needs a
        // session.
        (None, "/", Get("/"), 200),
        (None, "/login", Get("/login"), 200),
        (None, "", Get("/does-not-exist"), 404),
        (
            None,
            "/login",
            Post(
                "/login",
                vec![
                    ("username", "olga"),
                    ("password", "wrong"),
                    ("code", "000000"),
                ],
            ),
            401,
        ),
        // Every signed-in account: its settings and password pages, and their refusals.
        (Some("officer"), "/account", Get("/account"), 200),
        (
            Some("officer"),
            "/account/password",
            Get("/account/password"),
            200,
        ),
        (
            Some("officer"),
            "/account/notifications",
            Post(
                "/account/notifications",
                vec![("email", "geen-adres"), ("kind.alcohol", "on")],
            ),
            400,
        ),
        (
            Some("officer"),
            "/account/password",
            Post(
                "/account/password",
                vec![("current", "x"), ("new", "kort"), ("repeat", "kort")],
            ),
            400,
        ),
        // The officer: caseload, person, alerts, an alert, its report, stations; refusals of
        // each form in place; another role's page; something not theirs.
        (Some("officer"), "/caseload", Get("/caseload"), 200),
        (Some("officer"), "/persons/{id}", Get(&person_path), 200),
        (
            Some("officer"),
            "/persons/{id}",
            Get(&person_backwards),
            400,
        ),
        (
            Some("officer"),
            "/persons/{id}",
            Get(&person_not_a_date),
            400,
        ),
        (
            Some("officer"),
            "/persons/{id}",
            Get("/persons/999999"),
            404,
        ),
        (Some("officer"), "/alerts", Get("/alerts"), 200),
        (
            Some("officer"),
            "/alerts",
            Get("/alerts?from=2026-10-05&to=2026-10-01"),
            400,
        ),
        (Some("officer"), "/alerts", Get("/alerts?from=morgen"), 400),
        (Some("officer"), "/alerts", Get("/alerts?sort=lengte"), 400),
        (Some("officer"), "/alerts/{id}", Get(&alert_path), 200),
        (Some("officer"), "/alerts/{id}", Get("/alerts/999999"), 404),
        (
            Some("officer"),
            "/alerts/{id}/transition",
            Post(&transition, vec![("to", "in_process"), ("comment", "")]),
            400,
        ),
        (
            Some("officer"),
            "/alerts/{id}/transition",
            Post(&transition, vec![("to", "resolved"), ("comment", "klaar")]),
            400,
        ),
        (
            Some("officer"),
            "/alerts/{id}/hold",
            Post(&hold, vec![("reason", ""), ("scope", "alert")]),
            400,
        ),
        (
            Some("officer"),
            "/alerts/{id}/hold/release",
            Post(&release, vec![("hold", "x"), ("reason", "r")]),
            400,
        ),
        (
            Some("officer"),
            "/alerts/{id}/report",
            Get(&report_path),
            200,
        ),
        (
            Some("expired"),
            "/alerts/{id}/transition",
            Post(
                &transition,
                vec![("to", "in_process"), ("comment", "klaar")],
            ),
            401,
        ),
        (Some("officer"), "/stations", Get("/stations"), 200),
        (Some("officer"), "", Get("/admin"), 403),
        // The administrator: the overview and a refusal of every kind of form, in place.
        (Some("administrator"), "/admin", Get("/admin"), 200),
        (
            Some("administrator"),
            "/admin/accounts",
            Post(
                "/admin/accounts",
                vec![("username", "olga"), ("role", "officer")],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/accounts",
            Post(
                "/admin/accounts",
                vec![("username", "x y"), ("role", "koning")],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/accounts/{id}/disable",
            Post(&own_disable, vec![]),
            400,
        ),
        (
            Some("administrator"),
            "/admin/accounts/{id}/role",
            Post(&own_role, vec![("role", "officer")]),
            400,
        ),
        (
            Some("administrator"),
            "/admin/accounts/{id}/reset",
            Post(&own_reset, vec![]),
            400,
        ),
        (
            Some("administrator"),
            "/admin/accounts/{id}/manager",
            Post(&olga_manager, vec![("manager", "otto")]),
            400,
        ),
        (
            Some("administrator"),
            "/admin/accounts/{id}/screening",
            Post(
                &olga_screening,
                vec![
                    ("kind", "vog"),
                    ("screened_on", "2026-10-05"),
                    ("expires", "2026-10-01"),
                ],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/holds/{id}/release",
            Post("/admin/holds/999999/release", vec![("reason", "")]),
            400,
        ),
        (
            Some("administrator"),
            "/admin/persons",
            Post(
                "/admin/persons",
                vec![
                    ("reference", "CASE-home-1"),
                    ("programme", "alcohol-ban"),
                    ("region", ""),
                    ("birth_year", ""),
                    ("returning", ""),
                ],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/persons",
            Post(
                "/admin/persons",
                vec![
                    ("reference", "CASE-new"),
                    ("programme", "alcohol-ban"),
                    ("birth_year", "veertig"),
                ],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/persons/export",
            Post("/admin/persons/export", vec![("reference", "CASE-nobody")]),
            400,
        ),
        (
            Some("administrator"),
            "/admin/persons/close",
            Post(
                "/admin/persons/close",
                vec![("reference", "CASE-nobody"), ("at", "")],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/persons/hold",
            Post(
                "/admin/persons/hold",
                vec![("reference", "CASE-home-1"), ("reason", "")],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/devices",
            Post(
                "/admin/devices",
                vec![
                    ("serial", "AM-0009"),
                    ("kind", "ankle-monitor"),
                    ("person", "CASE-nobody"),
                    ("from", "2026-10-01"),
                ],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/devices/return",
            Post("/admin/devices/return", vec![("serial", "AM-0009")]),
            400,
        ),
        (
            Some("administrator"),
            "/admin/stations",
            Post("/admin/stations", vec![("name", "home-1"), ("person", "")]),
            400,
        ),
        (
            Some("administrator"),
            "/admin/stations/{name}/revoke",
            Post("/admin/stations/nowhere/revoke", vec![]),
            400,
        ),
        (
            Some("administrator"),
            "/admin/caseloads",
            Post(
                "/admin/caseloads",
                vec![
                    ("officer", "ada"),
                    ("person", "CASE-home-1"),
                    ("from", "2026-10-01"),
                ],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/caseloads/{id}/end",
            Post("/admin/caseloads/999999/end", vec![]),
            400,
        ),
        (
            Some("administrator"),
            "/admin/research/projects",
            Post(
                "/admin/research/projects",
                vec![
                    ("name", "p"),
                    ("epsilon", "1"),
                    ("delta", "1e-6"),
                    ("max_epsilon_per_query", "1"),
                ],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/research/projects",
            Post(
                "/admin/research/projects",
                vec![
                    ("name", "q"),
                    ("epsilon", "veel"),
                    ("delta", "1e-6"),
                    ("max_epsilon_per_query", "1"),
                ],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/research/tokens",
            Post(
                "/admin/research/tokens",
                vec![("project", "p"), ("holder", "olga"), ("ttl_days", "30")],
            ),
            400,
        ),
        (
            Some("administrator"),
            "/admin/research/tokens/{id}/revoke",
            Post("/admin/research/tokens/zz/revoke", vec![]),
            400,
        ),
        // The auditor: the log, and a refused review in place.
        (Some("auditor"), "/audit", Get("/audit"), 200),
        (
            Some("auditor"),
            "/audit/reviews",
            Post(
                "/audit/reviews",
                vec![
                    ("username", "olga"),
                    ("from", "2026-10-01"),
                    ("to", "2026-10-02"),
                    ("findings", ""),
                ],
            ),
            400,
        ),
        // The manager: the figures, and a month that has not ended.
        (Some("manager"), "/management", Get("/management"), 200),
        (
            Some("manager"),
            "/management/release",
            Post("/management/release", vec![("month", &month_now)]),
            400,
        ),
        // A researcher has no pages: refused in words.
        (Some("researcher"), "", Get("/alerts"), 403),
    ]);

    let mut untranslated: Vec<String> = vec![];
    let mut wrong_status: Vec<String> = vec![];
    let mut walked: BTreeSet<(String, String)> = BTreeSet::new();
    for (who, route, ask, expected) in &walk {
        let r = reader(*who);
        let (method, shown, nl, en) = match ask {
            Get(path) => {
                let (s_nl, nl) = r.get(path, "nl");
                let (s_en, en) = r.get(path, "en");
                if (s_nl, s_en) != (*expected, *expected) {
                    wrong_status.push(format!(
                        "GET {path}: {s_nl}/{s_en}, not {expected}: {}",
                        main_of(&nl)
                    ));
                }
                ("GET", path.to_string(), nl, en)
            }
            Post(path, fields) => {
                let (s_nl, nl) = r.post(path, "nl", fields);
                let (s_en, en) = r.post(path, "en", fields);
                if (s_nl, s_en) != (*expected, *expected) {
                    wrong_status.push(format!(
                        "POST {path}: {s_nl}/{s_en}, not {expected}: {}",
                        main_of(&nl)
                    ));
                }
                ("POST", path.to_string(), nl, en)
            }
        };
        if !nl.contains("<html lang=\"nl\"") || !en.contains("<html lang=\"en\"") {
            wrong_status.push(format!(
                "{method} {shown}: not a page in nl and en: {}",
                main_of(&nl)
            ));
        }
        // A refusal says why, in words, not only a status.
        if *expected >= 400 && !nl.contains("class=\"error\"") {
            wrong_status.push(format!("{method} {shown} shows no error: {}", main_of(&nl)));
        }
        let (nl_texts, en_texts) = (visible_texts(&nl), visible_texts(&en));
        for same in nl_texts.intersection(&en_texts) {
            if !is_language_neutral(same, &same_in_both) {
                let at = nl
                    .find(&format!(">{same}<"))
                    .or_else(|| nl.find(same.as_str()))
                    .unwrap_or(0);
                let context: String = nl[..at]
                    .chars()
                    .rev()
                    .take(80)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                untranslated.push(format!(
                    "{method} {shown} ({who:?}): {same:?} after …{context}"
                ));
            }
        }
        walked.insert((method.to_string(), route.to_string()));
    }
    assert!(wrong_status.is_empty(), "{}", wrong_status.join("\n\n"));
    assert!(
        untranslated.is_empty(),
        "text that reads the same in Dutch and English (not through the translation table):\n{}",
        untranslated.join("\n")
    );
    // Every page of the route table was walked (a new page must be added here).
    let missing: Vec<String> = nachtwacht::web::rules()
        .iter()
        .filter(|r| !NOT_PAGES.contains(&r.path) && r.path != "/logout")
        .filter(|r| !r.path.starts_with("/api/"))
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .filter(|k| !walked.contains(k))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(missing.is_empty(), "routes not walked: {missing:?}");
}

#[test]
fn the_text_reader_sees_what_a_reader_sees_and_only_that() {
    let html = "<html><head><style>p{color:red}</style></head><body><h1>Melding 12</h1>\
                <p>Status: <strong>nieuw</strong> <code>alert.view</code></p>\
                <input placeholder=\"Reden\"></body></html>";
    let texts = visible_texts(html);
    assert_eq!(
        texts,
        ["Melding 12", "Status:", "nieuw", "Reden"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert!(is_language_neutral("CASE-home-1 · 2026-10-01 20:00", &[]));
    assert!(is_language_neutral("olga", &[]));
    assert!(!is_language_neutral("Not Found", &[]));
    assert!(is_language_neutral("Project", &["Project"]));
}
