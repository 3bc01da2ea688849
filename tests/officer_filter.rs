//! Every alert kind the server stores can be selected in the officer's filter, and selecting it
//! shows exactly the alerts of that kind: store → filter → page, for each kind.

use crate::common::web::*;
use nachtwacht::alerts::AlertKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_kind_is_offered_stored_and_found_by_the_filter() {
    let f = web_fixture().await;
    let olga = f.accounts["officer"].clone();
    let base = f.base.clone();
    // One alert of every kind for olga's person, a day apart.
    let ids: Vec<(AlertKind, i64)> = {
        let conn = f.t.ctx.db.lock();
        let person: i64 = conn
            .query_row(
                "SELECT id FROM persons WHERE reference = 'CASE-home-1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        AlertKind::ALL
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let start = 1_000_000_000_000 + i as i64 * 86_400_000;
                let id: i64 = conn
                    .query_row(
                        "INSERT INTO alerts (person_id, kind, severity, start_ms, end_ms, rule,
                                             evidence_bundles, created_at_ms)
                         VALUES (?1, ?2, 'low', ?3, ?3, '{}', '', 0) RETURNING id",
                        nachtwacht::params![person, k.as_str(), start],
                        |r| r.get(0),
                    )
                    .unwrap();
                (*k, id)
            })
            .collect()
    };
    tokio::task::spawn_blocking(move || {
        let s = login(&base, &olga);
        let page = |query: &str| {
            outcome(
                agent()
                    .get(&format!("{base}/alerts{query}"))
                    .set("Cookie", &s.cookie)
                    .call(),
            )
            .2
        };
        let all = page("");
        for (kind, id) in &ids {
            assert!(
                all.contains(&format!(
                    "<option class=\"kind\" value=\"{}\">",
                    kind.as_str()
                )),
                "{kind:?} is not offered"
            );
            let filtered = page(&format!("?kind={}", kind.as_str()));
            assert!(
                filtered.contains(&format!("href=\"/alerts/{id}\"")),
                "{kind:?}: alert {id} not listed"
            );
            for (other, other_id) in &ids {
                if other != kind {
                    assert!(
                        !filtered.contains(&format!("href=\"/alerts/{other_id}\"")),
                        "{kind:?} lists {other:?}"
                    );
                }
            }
        }
        // A later visit says what is new since the one before (nothing was raised in between).
        let again = page("");
        assert!(again.contains("id=\"new-since\""), "no last visit shown");
        assert!(!again.contains("badge fresh"), "nothing is new");
        // The list as CSV: every matching alert, with the filter applied.
        let csv = page("/export?kind=strap-open");
        assert!(csv.starts_with("alert,start (Europe/Amsterdam),"), "{csv}");
        assert_eq!(csv.lines().count(), 2, "{csv}");
        assert!(csv.contains(",strap-open,"), "{csv}");
        assert!(all.contains("id=\"export\""), "the list links its export");
        // Kinds read as words in the page's language, not as codes.
        assert!(all.contains(">Band geopend<") && all.contains(">Geen contact met basisstation<"));
        assert!(page("?lang=en").contains(">Strap opened<"));
        // Nothing is offered that is never stored.
        let offered = all.matches("<option class=\"kind\"").count();
        assert_eq!(offered, AlertKind::ALL.len(), "{all}");
    })
    .await
    .unwrap();
}

/// A failure of the server itself (here: its pseudonym keys are unreadable) is an internal error
/// (500, cause in the log), not the officer's mistake (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_failure_on_an_alert_page_is_a_500_not_a_bad_request() {
    let f = web_fixture().await;
    let olga = f.accounts["officer"].clone();
    let (base, own) = (f.base.clone(), f.own_alert);
    let keys = f.t.ctx.dir.pseudonym_keys();
    tokio::task::spawn_blocking(move || {
        let s = login(&base, &olga);
        std::fs::rename(&keys, keys.with_extension("away")).unwrap();
        let (status, _, body) = outcome(
            agent()
                .get(&format!("{base}/alerts/{own}"))
                .set("Cookie", &s.cookie)
                .call(),
        );
        assert_eq!(status, 500, "{body}");
        assert!(
            !body.contains("pseudonym"),
            "the cause stays in the log: {body}"
        );
    })
    .await
    .unwrap();
}
