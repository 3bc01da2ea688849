//! Management figures (issue 6 point 8): a manager releases a month's alert figures through the
//! DP path, charged to the management project's own budget; the page shows them as bars with
//! their intervals; looking again or releasing the same month again spends nothing.

use crate::common::web::*;
use chrono::Datelike;
use nachtwacht::{research, research::management};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_is_released_once_through_dp_and_shown_with_intervals() {
    let f = web_fixture().await;
    research::create_project(
        &f.t.ctx,
        management::PROJECT,
        research::Budget::new(10.0, 0.5),
        "test",
    )
    .unwrap();
    // Last month: a month is released only once it has ended.
    let first_of_this_month = chrono::Utc::now().date_naive().with_day(1).unwrap();
    let month = first_of_this_month
        .pred_opt()
        .unwrap()
        .format("%Y-%m")
        .to_string();
    let max = f.accounts["manager"].clone();
    let base = f.base.clone();
    let m = month.clone();
    let (first, page, again) = tokio::task::spawn_blocking(move || {
        let s = login(&base, &max);
        let release = || {
            outcome(
                agent()
                    .post(&format!("{base}/management/release"))
                    .set("Cookie", &s.cookie)
                    .send_form(&[("csrf", &s.csrf), ("month", &m)]),
            )
        };
        let first = release();
        let page = outcome(
            agent()
                .get(&format!("{base}/management"))
                .set("Cookie", &s.cookie)
                .call(),
        );
        let again = release();
        (first, page, again)
    })
    .await
    .unwrap();
    assert_eq!(
        (first.0, first.1.as_str()),
        (303, "/management"),
        "{}",
        first.2
    );
    assert_eq!(again.0, 303);
    assert_eq!(page.0, 200);
    let html = page.2;
    for figure in management::FIGURES {
        assert!(
            html.contains(&format!("id=\"{month}-{}\"", figure.id)),
            "{} missing",
            figure.id
        );
    }
    assert_eq!(html.matches("<svg").count(), management::FIGURES.len());
    assert!(html.contains("stroke=\"#c00\""), "interval whiskers drawn");
    assert!(
        html.contains("Alcoholverbod"),
        "programme groups labelled in Dutch"
    );
    assert!(
        html.contains("Persoonsdagen met een alcoholmelding"),
        "figures named in Dutch"
    );
    // Every value is written out with its interval, never below zero.
    let values: Vec<&str> = html
        .split("class=\"value\">")
        .skip(1)
        .map(|v| v.split('<').next().unwrap())
        .collect();
    assert!(!values.is_empty(), "{html}");
    assert!(
        values
            .iter()
            .all(|v| v.contains(" ± ") && !v.starts_with('-')),
        "{values:?}"
    );

    // Six releases, each at most the per-query ε; the second request released nothing.
    let project = research::project_named(&f.t.ctx, management::PROJECT)
        .unwrap()
        .unwrap();
    assert!(
        project.epsilon_sum > 6.0 * 0.49 && project.epsilon_sum <= 6.0 * 0.5 + 1e-9,
        "{}",
        project.epsilon_sum
    );
    assert_eq!(
        f.t.count(
            "SELECT count(*) FROM audit_log WHERE action = 'research.release' AND actor = 'max'"
        ),
        6
    );
    assert_eq!(f.t.count("SELECT count(*) FROM management_releases"), 6);
    // The released numbers are group aggregates only: no person reference or pseudonym.
    let stored: Vec<String> =
        f.t.ctx
            .db
            .lock()
            .prepare("SELECT answer FROM management_releases")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    for answer in stored {
        assert!(
            !answer.contains("CASE-") && !answer.contains("\"p1-") && !answer.contains("\"r1-")
        );
    }
}
