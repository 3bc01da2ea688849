//! The administrator's and auditor's pages over HTTP: an administrator creates an officer, a
//! person with its caseload assignment, a research project and a token (shown once), and revokes
//! the token; the new officer can sign in and sees that person; the auditor's JSON export holds
//! every change, and its hash chain checks out when recomputed here, outside nachtwacht.

use crate::common::web::*;
use sha2::{Digest, Sha256};

fn post(base: &str, s: &HttpSession, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
    let mut form = vec![("csrf", s.csrf.as_str())];
    form.extend_from_slice(fields);
    outcome(
        agent()
            .post(&format!("{base}{path}"))
            .set("Cookie", &s.cookie)
            .send_form(&form),
    )
}

fn between<'a>(html: &'a str, start: &str) -> &'a str {
    html.split(start)
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_manages_accounts_caseloads_and_research_and_the_auditor_verifies_it() {
    let f = web_fixture().await;
    let (ada, aud) = (
        f.accounts["administrator"].clone(),
        f.accounts["auditor"].clone(),
    );
    let base = f.base.clone();
    let db = f.t.ctx.db.clone();
    let (own, other) = (f.own_alert, f.other_alert);
    let export = tokio::task::spawn_blocking(move || {
        let admin = login(&base, &ada);

        // A new officer: password and TOTP secret shown once.
        let (status, _, page) = post(
            &base,
            &admin,
            "/admin/accounts",
            &[("username", "nina"), ("role", "officer")],
        );
        assert_eq!(status, 200, "{page}");
        let nina = Creds {
            username: "nina".into(),
            password: between(&page, "id=\"password\">").to_string(),
            totp_secret: between(&page, "id=\"totp\">").to_string(),
        };
        assert_eq!(nina.password.len(), 24, "{page}");

        // A person, on nina's caseload from today.
        let (status, location, page) = post(
            &base,
            &admin,
            "/admin/persons",
            &[
                ("reference", "CASE-77"),
                ("programme", "alcohol-ban"),
                ("region", "utrecht"),
                ("birth_year", "1990"),
            ],
        );
        assert_eq!((status, location.as_str()), (303, "/admin"), "{page}");
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let (status, _, page) = post(
            &base,
            &admin,
            "/admin/caseloads",
            &[
                ("officer", "nina"),
                ("person", "CASE-77"),
                ("from", &today),
                ("to", ""),
            ],
        );
        assert_eq!(status, 303, "{page}");
        // Bad input gets a clear error and changes nothing.
        let (status, _, page) = post(
            &base,
            &admin,
            "/admin/caseloads",
            &[("officer", "ada"), ("person", "CASE-77"), ("from", &today)],
        );
        // ... shown in place, in Dutch: the sentence under the caseloads' heading, on the
        // overview, with what was typed kept in the form.
        assert_eq!(status, 400);
        assert!(
            page.contains("‘ada’ is geen actieve reclasseringswerker."),
            "{page}"
        );
        let before_table = page.split("id=\"caseloads\"").next().unwrap_or_default();
        let caseloads_heading = before_table.rsplit("<h2>").next().unwrap_or_default();
        assert!(
            caseloads_heading.contains("id=\"form-error\""),
            "the sentence stands under the caseloads' heading: {page}"
        );
        assert_eq!(page.matches("id=\"form-error\"").count(), 1, "{page}");
        assert!(page.contains("name=\"officer\" required value=\"ada\""), "{page}");
        assert!(page.contains("id=\"accounts\""), "the whole overview: {page}");

        // A base station for the person: its configuration (certificate, key, servers) comes back
        // as a download, once; then a device assigned to the person and paired with it.
        let (status, _, station_toml) = post(
            &base,
            &admin,
            "/admin/stations",
            &[("name", "home-77"), ("person", "CASE-77")],
        );
        assert_eq!(status, 200, "{station_toml}");
        assert!(station_toml.contains("BEGIN CERTIFICATE") && station_toml.contains("home-77"));
        let (status, _, page) = post(
            &base,
            &admin,
            "/admin/devices",
            &[
                ("serial", "AM-0077"),
                ("kind", "ankle-monitor"),
                ("person", "CASE-77"),
                ("station", "home-77"),
                ("from", &today),
            ],
        );
        assert_eq!(status, 303, "{page}");
        // The person's subject access export, as the button beside the person downloads it; an
        // unknown reference is the administrator's mistake.
        let (status, _, archive) = post(
            &base,
            &admin,
            "/admin/persons/export",
            &[("reference", "CASE-77")],
        );
        assert_eq!(status, 200, "{archive}");
        for held in [
            "README.txt",
            "person.csv",
            "CASE-77",
            "AM-0077",
            "home-77",
            "SHA256SUMS",
        ] {
            assert!(archive.contains(held), "{held} in the export");
        }
        let (status, _, page) = post(
            &base,
            &admin,
            "/admin/persons/export",
            &[("reference", "CASE-nobody")],
        );
        assert_eq!(status, 400, "{page}");
        assert!(
            page.contains("Er is geen persoon met kenmerk ‘CASE-nobody’."),
            "{page}"
        );
        // The device is listed as worn, and is handed in: once.
        let devices = |admin: &HttpSession| {
            let (_, _, overview) = outcome(
                agent()
                    .get(&format!("{base}/admin"))
                    .set("Cookie", &admin.cookie)
                    .call(),
            );
            overview
                .split("id=\"devices\"")
                .nth(1)
                .and_then(|s| s.split("</table>").next())
                .unwrap_or_default()
                .to_string()
        };
        assert!(devices(&admin).contains("AM-0077"), "{}", devices(&admin));
        let (status, _, page) = post(
            &base,
            &admin,
            "/admin/devices/return",
            &[("serial", "AM-0077")],
        );
        assert_eq!(status, 303, "{page}");
        assert!(!devices(&admin).contains("AM-0077"));
        let (status, _, page) = post(
            &base,
            &admin,
            "/admin/devices/return",
            &[("serial", "AM-0077")],
        );
        assert_eq!(status, 400);
        assert!(
            page.contains("Apparaat ‘AM-0077’ is op dit moment aan niemand toegewezen."),
            "{page}"
        );
        let (status, _, _) = post(&base, &admin, "/admin/stations/home-77/revoke", &[]);
        assert_eq!(status, 303);

        // A research project and a token for it, then its revocation.
        let (status, _, page) = post(
            &base,
            &admin,
            "/admin/research/projects",
            &[
                ("name", "wodc-2027"),
                ("epsilon", "2"),
                ("delta", "1e-7"),
                ("max_epsilon_per_query", "0.5"),
            ],
        );
        assert_eq!(status, 303, "{page}");
        let (status, _, page) = post(
            &base,
            &admin,
            "/admin/research/tokens",
            &[("project", "wodc-2027"), ("holder", "ria"), ("ttl_days", "30")],
        );
        assert_eq!(status, 200, "{page}");
        let token = between(&page, "id=\"token\">").to_string();
        assert!(token.starts_with("nwr_"), "{page}");
        let budget = |token: &str| {
            outcome(
                agent()
                    .get(&format!("{base}/api/v1/research/budget"))
                    .set("Authorization", &format!("Bearer {token}"))
                    .call(),
            )
        };
        let (status, _, body) = budget(&token);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"delta\":1e-7"), "{body}");
        let id = hex::encode(Sha256::digest(token.as_bytes()))[..12].to_string();
        let (status, _, _) = post(
            &base,
            &admin,
            &format!("/admin/research/tokens/{id}/revoke"),
            &[],
        );
        assert_eq!(status, 303);
        assert_eq!(budget(&token).0, 401, "a revoked token is refused at once");

        // The overview lists what was made.
        let (_, _, overview) = outcome(
            agent()
                .get(&format!("{base}/admin"))
                .set("Cookie", &admin.cookie)
                .call(),
        );
        for needle in ["nina", "CASE-77", "wodc-2027", &id] {
            assert!(overview.contains(needle), "{needle} not on /admin");
        }

        // The new officer signs in; without a staff screening her alert list stays closed, with
        // the reason; once the administrator records her VOG she sees the person's (empty) list.
        let s = login(&base, &nina);
        let alerts = || {
            outcome(
                agent()
                    .get(&format!("{base}/alerts"))
                    .set("Cookie", &s.cookie)
                    .call(),
            )
        };
        let (status, _, page) = alerts();
        assert_eq!(status, 403, "{page}");
        assert!(page.contains("screening") && page.contains("none recorded"), "{page}");
        let nina_id: i64 = db
            .lock()
            .query_row("SELECT id FROM accounts WHERE username = 'nina'", [], |r| {
                r.get(0)
            })
            .unwrap();
        let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
        let next_year = (chrono::Utc::now() + chrono::Duration::days(365)).format("%Y-%m-%d").to_string();
        let (status, _, page) = post(
            &base,
            &admin,
            &format!("/admin/accounts/{nina_id}/screening"),
            &[("kind", "vog"), ("screened_on", &yesterday), ("expires", &next_year)],
        );
        assert_eq!(status, 303, "{page}");
        let (status, _, page) = alerts();
        assert_eq!(status, 200, "{page}");

        // nina lost her phone: new credentials (shown once) end her session; then she moves
        // to the auditors, which ends her officer access.
        let (status, _, page) = post(
            &base,
            &admin,
            &format!("/admin/accounts/{nina_id}/reset"),
            &[],
        );
        assert_eq!(status, 200, "{page}");
        let nina = Creds {
            username: "nina".into(),
            password: between(&page, "id=\"password\">").to_string(),
            totp_secret: between(&page, "id=\"totp\">").to_string(),
        };
        let (status, location, _) = outcome(
            agent()
                .get(&format!("{base}/alerts"))
                .set("Cookie", &s.cookie)
                .call(),
        );
        assert_eq!(
            (status, location.as_str()),
            (303, "/login"),
            "the old session ended"
        );
        let (status, _, page) = post(
            &base,
            &admin,
            &format!("/admin/accounts/{nina_id}/role"),
            &[("role", "auditor")],
        );
        assert_eq!(status, 303, "{page}");
        let s = login(&base, &nina);
        let get = |path: &str| {
            outcome(
                agent()
                    .get(&format!("{base}{path}"))
                    .set("Cookie", &s.cookie)
                    .call(),
            )
            .0
        };
        assert_eq!((get("/alerts"), get("/audit")), (403, 200));

        // The auditor records the periodic review of olga's accesses and opens the compliance
        // report.
        let auditor = login(&base, &aud);
        let (status, _, page) = post(
            &base,
            &auditor,
            "/audit/reviews",
            &[("username", "olga"), ("from", &yesterday), ("to", &today), ("findings", "geen bevindingen")],
        );
        assert_eq!(status, 303, "{page}");
        let (status, _, page) = outcome(
            agent()
                .get(&format!("{base}/audit"))
                .set("Cookie", &auditor.cookie)
                .call(),
        );
        assert_eq!(status, 200);
        assert!(page.contains("geen bevindingen"), "the review is listed: {page}");
        assert!(page.contains("<code id=\"head\">"), "the chain's head is shown: {page}");
        // Entries read as sentences, and the log filters by person.
        assert!(page.contains("ada maakte account nina aan"), "{page}");
        let (status, _, about) = outcome(
            agent()
                .get(&format!("{base}/audit?person=CASE-home-1"))
                .set("Cookie", &auditor.cookie)
                .call(),
        );
        assert_eq!(status, 200);
        assert!(about.contains(&format!(">alert:{own}<")), "{about}");
        assert!(!about.contains(&format!(">alert:{other}<")), "another person's alert");
        assert!(!about.contains(">account:nina<"), "entries about no person");
        let (status, _, report) = outcome(
            agent()
                .get(&format!("{base}/audit/compliance"))
                .set("Cookie", &auditor.cookie)
                .call(),
        );
        assert_eq!(status, 200, "{report}");
        assert!(report.contains("<section id=\"access-reviews\""), "{report}");

        // The auditor's JSON export.
        let (status, _, json) = outcome(
            agent()
                .get(&format!("{base}/audit/export?format=json"))
                .set("Cookie", &auditor.cookie)
                .call(),
        );
        assert_eq!(status, 200);
        let (status, _, csv) = outcome(
            agent()
                .get(&format!("{base}/audit/export?format=csv&actor=ada"))
                .set("Cookie", &auditor.cookie)
                .call(),
        );
        assert_eq!(status, 200);
        assert!(csv.starts_with(
            "seq,at_ms,actor,action,object,detail,prev_hash,hash,salt,object_digest,detail_digest,erased_by\n"
        ));
        assert!(
            csv.lines()
                .skip(1)
                .all(|l| l.split(',').nth(2) == Some("ada")),
            "{csv}"
        );
        json
    })
    .await
    .unwrap();

    let entries: Vec<serde_json::Value> = serde_json::from_str(&export).unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "station.revoke",
        "screening.record",
        "review.record",
        "compliance.report",
        "account.create",
        "account.reset",
        "account.role",
        "caseload.assign",
        "device.assign",
        "device.return",
        "research.project.create",
        "research.token.revoke",
        "admin.view",
        "login",
    ] {
        assert!(
            actions.contains(&action),
            "{action} not exported: {actions:?}"
        );
    }
    // Recompute the chain from the export alone (docs/data-lifecycle.md, "The audit chain"):
    // SHA-256 over a version tag, the previous hash and the length-prefixed fields, where object
    // and detail enter as SHA-256 digests salted with the entry's salt.
    let length_prefixed = |h: &mut Sha256, field: &str| {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    };
    let digest = |salt: &str, field: &str| {
        let mut h = Sha256::new();
        h.update(b"nachtwacht audit field\0");
        length_prefixed(&mut h, salt);
        length_prefixed(&mut h, field);
        hex::encode(h.finalize())
    };
    let mut prev = "0".repeat(64);
    for e in &entries {
        assert_eq!(e["prev_hash"].as_str().unwrap(), prev);
        let salt = e["salt"].as_str().unwrap();
        assert!(!salt.is_empty(), "entries are written erasable");
        let mut h = Sha256::new();
        h.update(b"nachtwacht audit v2\0");
        h.update(prev.as_bytes());
        for field in [
            e["seq"].as_i64().unwrap().to_string(),
            e["at_ms"].as_i64().unwrap().to_string(),
            e["actor"].as_str().unwrap().to_string(),
            e["action"].as_str().unwrap().to_string(),
            digest(salt, e["object"].as_str().unwrap()),
            digest(salt, e["detail"].as_str().unwrap()),
        ] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        let hash = hex::encode(h.finalize());
        assert_eq!(e["hash"].as_str().unwrap(), hash, "entry {}", e["seq"]);
        prev = hash;
    }
}
