//! The research path against a real data directory and SQLite ledger: grouped answers over public
//! keys only, dry runs, and the attacks the issue names (per-person keys, filters, huge ε, tiny
//! queries, leaky bounds, concurrent spending).

use super::*;
use crate::base::config::Config;

/// 40 people × 20 days: programme, region and age band by person, a few indicators.
fn context() -> (tempfile::TempDir, Context) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let mut config = Config::default();
    config.research.max_days_per_person = 20;
    crate::server::init::init(
        &root,
        &crate::base::db::testing::config(config),
        crate::base::time::now_ms(),
    )
    .unwrap();
    let ctx = Context::open(&root).unwrap();
    let (mut rid, mut day, mut programme, mut region, mut age, mut wear, mut drinking) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let d0 = chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    for p in 0..40 {
        for d in 0..20 {
            rid.push(format!("r1-{p:04}"));
            day.push(d0 + chrono::Days::new(d));
            programme.push(crate::base::programme::Programme::ALL[p % 2].as_str());
            region.push(crate::registry::enroll::REGIONS[p % 3]);
            age.push("25-34");
            wear.push(1200i64 + (p as i64 % 7) * 10);
            drinking.push(i64::from(p % 5 == 0 && d % 4 == 0));
        }
    }
    let mut df = df!(
        "rid" => rid,
        "day" => day,
        "programme" => programme,
        "region" => region,
        "age_band" => age,
        "wear_minutes" => wear,
        "drinking_events" => drinking,
    )
    .unwrap();
    crate::evaluate::write_research_table(&ctx.blobs, crate::base::blobs::RESEARCH_DAILY, &mut df)
        .unwrap();
    (tmp, ctx)
}

fn token(ctx: &Context, name: &str, budget: f64, per_query: f64) -> String {
    create_project(ctx, name, Budget::new(budget, per_query), "test").unwrap();
    crate::registry::screening::screened_researcher(&ctx.db, "ria", crate::base::time::now_ms())
        .unwrap();
    issue_token(ctx, name, "ria", 1, "test").unwrap()
}

fn request(aggregate: Aggregate, epsilon: f64, group_by: &[&str]) -> QueryRequest {
    QueryRequest {
        dataset: DATASET_DAILY.into(),
        aggregate,
        epsilon,
        group_by: group_by.iter().map(|k| k.to_string()).collect(),
        dry_run: false,
        from: None,
        to: None,
        only: Default::default(),
    }
}

fn spent(ctx: &Context, name: &str) -> f64 {
    ctx.db
        .lock()
        .query_row(
            "SELECT epsilon_spent FROM research_projects WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn grouped_answers_cover_every_public_group_and_nothing_else() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 5.0, 1.0);
    let req = request(
        Aggregate::Sum {
            column: "drinking_events".into(),
            lower: 0.0,
            upper: 2.0,
        },
        1.0,
        &["programme"],
    );
    let answer = query(&ctx, &t, &req).unwrap();
    assert_eq!(answer.value, None);
    let groups: Vec<&str> = answer
        .groups
        .iter()
        .map(|g| g.keys["programme"].as_str())
        .collect();
    // Every programme, including the one nobody in the data is enrolled in.
    let mut expected: Vec<&str> = crate::base::programme::Programme::ALL
        .iter()
        .map(|p| p.as_str())
        .collect();
    expected.sort_unstable();
    assert_eq!(groups, expected);
    assert!(answer
        .groups
        .iter()
        .all(|g| g.value.is_some_and(f64::is_finite)));
    assert!(answer.epsilon_spent > 0.0 && answer.epsilon_spent <= 1.0);
    assert!(!answer.accuracy_95.is_empty());

    // Two keys: the full cross product of public values.
    let req = request(Aggregate::Count, 1.0, &["programme", "region"]);
    let answer = query(&ctx, &t, &req).unwrap();
    assert_eq!(
        answer.groups.len(),
        crate::base::programme::Programme::ALL.len() * (crate::registry::enroll::REGIONS.len() + 1)
    );
}

#[test]
fn answers_by_month_cover_every_month_of_the_range() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 5.0, 1.0);
    let mut req = request(Aggregate::Count, 1.0, &["month", "programme"]);
    // Grouping by a period needs the range that makes its keys public.
    let err = query(&ctx, &t, &req).unwrap_err().to_string();
    assert!(err.contains("needs from and to"), "{err}");
    // The data covers 2026-10-01..20; the range three months, so three months are answered
    // (November and December with nobody in them), per programme.
    req.from = chrono::NaiveDate::from_ymd_opt(2026, 10, 1);
    req.to = chrono::NaiveDate::from_ymd_opt(2026, 12, 31);
    let answer = query(&ctx, &t, &req).unwrap();
    let months: std::collections::BTreeSet<&str> = answer
        .groups
        .iter()
        .map(|g| g.keys["month"].as_str())
        .collect();
    assert_eq!(
        months.into_iter().collect::<Vec<_>>(),
        vec!["2026-10", "2026-11", "2026-12"]
    );
    assert_eq!(
        answer.groups.len(),
        3 * crate::base::programme::Programme::ALL.len()
    );
    // Weeks: ISO week keys over the range.
    let mut weekly = request(Aggregate::Count, 1.0, &["week"]);
    weekly.from = chrono::NaiveDate::from_ymd_opt(2026, 10, 1);
    weekly.to = chrono::NaiveDate::from_ymd_opt(2026, 10, 14);
    let answer = query(&ctx, &t, &weekly).unwrap();
    let weeks: Vec<&str> = answer
        .groups
        .iter()
        .map(|g| g.keys["week"].as_str())
        .collect();
    assert_eq!(weeks, vec!["2026-W40", "2026-W41", "2026-W42"]);
    // Both periods at once, or a backwards range: refused.
    weekly.group_by = vec!["week".into(), "month".into()];
    assert!(query(&ctx, &t, &weekly).is_err());
    weekly.group_by = vec!["week".into()];
    weekly.to = chrono::NaiveDate::from_ymd_opt(2026, 9, 1);
    assert!(query(&ctx, &t, &weekly).is_err());
}

#[test]
fn a_dry_run_estimates_accuracy_without_spending_or_releasing() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 1.0, 1.0);
    let mut req = request(
        Aggregate::Mean {
            column: "wear_minutes".into(),
            lower: 0.0,
            upper: 1440.0,
        },
        0.5,
        &[],
    );
    req.dry_run = true;
    let estimate = query(&ctx, &t, &req).unwrap();
    assert!(estimate.dry_run && estimate.value.is_none() && estimate.groups.is_empty());
    assert!(estimate.accuracy_95.iter().all(|a| a.accuracy > 0.0));
    assert_eq!(estimate.epsilon_spent, 0.0);
    assert_eq!(spent(&ctx, "p"), 0.0);
    // The same query for real spends what the estimate named and has the same accuracy.
    req.dry_run = false;
    let real = query(&ctx, &t, &req).unwrap();
    assert_eq!(real.accuracy_95, estimate.accuracy_95);
    assert!(real.value.is_some());
    let audited = |action: &str| -> i64 {
        ctx.db
            .lock()
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action = ?1",
                [action],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(
        (audited("research.dry-run"), audited("research.release")),
        (1, 1)
    );
}

#[test]
fn per_person_paths_are_refused_with_a_clear_error() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 10.0, 1.0);
    let refused = |req: QueryRequest| match query(&ctx, &t, &req) {
        Err(Error::BadRequest(why)) => why,
        other => panic!("not refused: {other:?}"),
    };
    // Grouping by the pseudonym, or by any key that is not a public person attribute.
    for key in ["rid", "pid", "day", "wear_minutes"] {
        let why = refused(request(Aggregate::Count, 0.1, &[key]));
        assert!(why.contains("only by public keys"), "{why}");
    }
    // One huge ε (over the project's per-query maximum) and a non-number.
    assert!(refused(request(Aggregate::Count, 1e6, &[])).contains("per-query maximum"));
    assert!(refused(request(Aggregate::Count, f64::NAN, &[])).contains("at least"));
    // Bounds outside what a day can hold (chosen to make one value dominate).
    let why = refused(request(
        Aggregate::Mean {
            column: "wear_minutes".into(),
            lower: 0.0,
            upper: 1e9,
        },
        0.1,
        &[],
    ));
    assert!(why.contains("must lie within"), "{why}");
    // A column that is not an indicator.
    let why = refused(request(
        Aggregate::Sum {
            column: "rid".into(),
            lower: 0.0,
            upper: 1.0,
        },
        0.1,
        &[],
    ));
    assert!(why.contains("cannot be aggregated"), "{why}");
    // A filter (e.g. to one pseudonym) is not part of the API at all.
    let with_filter = serde_json::json!({
        "dataset": DATASET_DAILY, "aggregate": {"kind": "count"}, "epsilon": 0.1,
        "filter": {"rid": "r1-0001"}
    });
    let err = serde_json::from_value::<QueryRequest>(with_filter).unwrap_err();
    assert!(err.to_string().contains("unknown field `filter`"), "{err}");
    assert_eq!(spent(&ctx, "p"), 0.0, "refusals spend nothing");
}

#[test]
fn many_tiny_queries_run_out_of_budget() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 0.2, 0.2);
    let req = request(Aggregate::Count, 0.05, &[]);
    let mut answered = 0;
    let refusal = loop {
        match query(&ctx, &t, &req) {
            Ok(_) => answered += 1,
            Err(e) => break e,
        }
        assert!(answered <= 4, "more answers than the budget allows");
    };
    assert_eq!(answered, 4);
    assert!(
        matches!(refusal, Error::BudgetExhausted { .. }),
        "{refusal}"
    );
    assert!(spent(&ctx, "p") <= 0.2 + 1e-9);
}

#[test]
fn concurrent_queries_never_overspend() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 0.5, 0.5);
    let results: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (ctx, t) = (&ctx, &t);
                scope.spawn(move || query(ctx, t, &request(Aggregate::Count, 0.1, &[])).is_ok())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let answered = results.iter().filter(|ok| **ok).count();
    assert_eq!(answered, 5, "{results:?}");
    assert!(spent(&ctx, "p") <= 0.5 + 1e-9, "{}", spent(&ctx, "p"));
}

#[test]
fn a_revoked_token_is_refused_at_once_and_the_revocation_is_audited() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 1.0, 1.0);
    let other = issue_token(&ctx, "p", "ria", 1, "test").unwrap();
    assert!(budget(&ctx, &TokenRate::default(), Some(&t)).is_ok());
    let listed = list_tokens(&ctx, Some("p")).unwrap();
    assert_eq!(listed.len(), 2);
    let id = token_id(&t);
    assert!(listed
        .iter()
        .any(|i| i.id == id && i.revoked_at_ms.is_none()));
    // Listing shows ids (a prefix of the stored hash), never the tokens.
    assert!(listed
        .iter()
        .all(|i| i.id.len() == TOKEN_ID_LEN && !t.contains(&i.id) && !other.contains(&i.id)));

    revoke_token(&ctx, &id, "admin").unwrap();
    assert!(matches!(
        budget(&ctx, &TokenRate::default(), Some(&t)),
        Err(Error::Unauthorized)
    ));
    assert!(matches!(
        query(&ctx, &t, &request(Aggregate::Count, 0.1, &[])),
        Err(Error::Unauthorized)
    ));
    // The project's other token still works; revoking twice or a bad id is an error.
    assert!(budget(&ctx, &TokenRate::default(), Some(&other)).is_ok());
    assert!(revoke_token(&ctx, &id, "admin").is_err());
    assert!(revoke_token(&ctx, "zz", "admin").is_err());
    let audited: i64 = ctx
        .db
        .lock()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'research.token.revoke' AND actor = 'admin'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 1);
}

#[test]
fn quantiles_and_histograms_are_released_over_public_candidates_and_bins() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 10.0, 2.0);
    // Wear minutes are 1200..=1260 in the fixture: the median lies there.
    let median = query(
        &ctx,
        &t,
        &request(
            Aggregate::Quantile {
                column: "wear_minutes".into(),
                lower: 0.0,
                upper: 1440.0,
                quantile: 0.5,
            },
            2.0,
            &[],
        ),
    )
    .unwrap()
    .value
    .unwrap();
    assert!((1100.0..=1300.0).contains(&median), "median {median}");

    // A histogram has every bin, empty or not, and can be grouped further.
    let answer = query(
        &ctx,
        &t,
        &request(
            Aggregate::Histogram {
                column: "drinking_events".into(),
                edges: vec![0.0, 1.0, 2.0, 5.0],
            },
            1.0,
            &["programme"],
        ),
    )
    .unwrap();
    let bins: std::collections::BTreeSet<&str> = answer
        .groups
        .iter()
        .map(|g| g.keys["bin"].as_str())
        .collect();
    assert_eq!(
        bins.into_iter().collect::<Vec<_>>(),
        vec!["[0, 1)", "[1, 2)", "[2, 5]"]
    );
    assert_eq!(
        answer.groups.len(),
        3 * crate::base::programme::Programme::ALL.len()
    );
    assert_eq!(answer.group_by, vec!["programme", "bin"]);

    // Bad edges and quantiles are refused.
    for bad in [
        Aggregate::Histogram {
            column: "drinking_events".into(),
            edges: vec![2.0, 1.0],
        },
        Aggregate::Histogram {
            column: "drinking_events".into(),
            edges: vec![0.0, 100.0],
        },
        Aggregate::Quantile {
            column: "wear_minutes".into(),
            lower: 0.0,
            upper: 1440.0,
            quantile: 1.0,
        },
    ] {
        assert!(matches!(
            query(&ctx, &t, &request(bad, 0.1, &[])),
            Err(Error::BadRequest(_))
        ));
    }
}

#[test]
fn answers_can_be_restricted_to_public_attribute_values() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 5.0, 1.0);
    let mut req = request(Aggregate::Count, 1.0, &["programme", "region"]);
    req.only
        .insert("programme".into(), vec!["alcohol-ban".into()]);
    let answer = query(&ctx, &t, &req).unwrap();
    assert!(answer
        .groups
        .iter()
        .all(|g| g.keys["programme"] == "alcohol-ban"));
    assert_eq!(
        answer.groups.len(),
        crate::registry::enroll::REGIONS.len() + 1
    );
    // Ungrouped, the restriction filters the data: half the people (400 of 800 person-days) are
    // on alcohol-ban. Noise at ε = 1 with 20 days per person: a few dozen.
    let mut half = request(Aggregate::Count, 1.0, &[]);
    half.only = req.only.clone();
    let n = query(&ctx, &t, &half).unwrap().value.unwrap();
    assert!((250.0..550.0).contains(&n), "{n}");
    // Only public attributes, and only their public values: never a pseudonym.
    let mut bad = request(Aggregate::Count, 0.1, &[]);
    bad.only.insert("rid".into(), vec!["r1-0001".into()]);
    assert!(matches!(query(&ctx, &t, &bad), Err(Error::BadRequest(_))));
    let mut bad = request(Aggregate::Count, 0.1, &[]);
    bad.only.insert("region".into(), vec!["atlantis".into()]);
    assert!(matches!(query(&ctx, &t, &bad), Err(Error::BadRequest(_))));
}

#[test]
fn zcdp_accounting_lets_many_small_queries_past_their_plain_sum_but_never_past_the_budget() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 1.0, 1.0);
    // The ledger as 300 releases of ε = 0.005 leave it: Σ ε = 1.5 is over the budget, but
    // ρ = 300 × 0.005² / 2 converts to well under ε = 1 at δ = 1e-6.
    let mut after_300 = Spent::default();
    for _ in 0..300 {
        after_300 = after_300.plus(0.005).unwrap();
    }
    let loss = after_300.epsilon_at(1e-6).unwrap();
    assert!(after_300.epsilon_sum > 1.0 && loss < 0.6, "{loss}");
    ctx.db
        .lock()
        .execute(
            "UPDATE research_projects SET epsilon_sum = ?1, rho_spent = ?2, epsilon_spent = ?3",
            crate::params![after_300.epsilon_sum, after_300.rho, loss],
        )
        .unwrap();

    // Basic composition alone would refuse this; the (ε, δ) loss still fits, so it is answered.
    let answer = query(&ctx, &t, &request(Aggregate::Count, 0.005, &[])).unwrap();
    assert!(answer.epsilon_spent > 0.0 && answer.epsilon_spent <= 0.005);
    assert_eq!(answer.delta_spent, 0.0);
    assert_eq!(answer.project_delta, 1e-6);
    assert!(answer.project_epsilon > loss && answer.project_epsilon < 1.0);
    assert!((answer.budget_remaining - (1.0 - answer.project_epsilon)).abs() < 1e-9);
    assert!(answer.largest_next_epsilon > 0.0);

    // Asking for more than the largest next ε is refused, and that figure is in the error.
    let project = budget(&ctx, &TokenRate::default(), Some(&t)).unwrap();
    let (_, next) = project.remaining().unwrap();
    assert!(next < 1.0 - answer.project_epsilon + 1e-9, "{next}");
    let refusal = query(&ctx, &t, &request(Aggregate::Count, next * 1.05, &[])).unwrap_err();
    assert!(
        matches!(refusal, Error::BudgetExhausted { .. }),
        "{refusal}"
    );
    let fits = query(&ctx, &t, &request(Aggregate::Count, next * 0.99, &[])).unwrap();
    assert!(
        fits.project_epsilon <= 1.0 + 1e-9,
        "{}",
        fits.project_epsilon
    );
    assert!(spent(&ctx, "p") <= 1.0 + 1e-9);
}

fn audit_count(ctx: &Context, action: &str) -> i64 {
    ctx.db
        .lock()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = ?1",
            [action],
            |r| r.get(0),
        )
        .unwrap()
}

/// What an attacker sent the research API, each refused with a 400-class error and audited:
/// before, ε = 5e-324 and subnormal bounds failed inside OpenDP (500), a dry run multiplied out
/// any number of public groups (1.84 M: 12.8 s and 1.9 GB), and refusals left no audit entry.
#[test]
fn hostile_requests_are_refused_as_bad_requests_and_audited() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 10.0, 1.0);
    let refused = |req: QueryRequest| match query(&ctx, &t, &req) {
        Err(Error::BadRequest(why)) => why,
        other => panic!("not refused as a bad request: {other:?}"),
    };
    let before = audit_count(&ctx, "research.refused");
    assert!(refused(request(Aggregate::Count, 5e-324, &[])).contains("at least"));
    let subnormal = refused(request(
        Aggregate::Mean {
            column: "peak_tac_g_dl".into(),
            lower: 5e-324,
            upper: 1e-323,
        },
        0.1,
        &[],
    ));
    assert!(subnormal.contains("normal numbers"), "{subnormal}");
    // Three years by week, 50 bins, every region, age band and programme: far past the cap,
    // refused even as a free dry run.
    let mut huge = request(
        Aggregate::Histogram {
            column: "wear_minutes".into(),
            edges: (0..=50).map(|i| i as f64 * 28.8).collect(),
        },
        0.1,
        &["week", "region", "age_band", "programme"],
    );
    huge.from = chrono::NaiveDate::from_ymd_opt(2024, 1, 1);
    huge.to = chrono::NaiveDate::from_ymd_opt(2026, 12, 1);
    huge.dry_run = true;
    let started = std::time::Instant::now();
    let why = refused(huge);
    assert!(why.contains("groups"), "{why}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let mut repeated = request(Aggregate::Count, 0.1, &["programme"]);
    repeated
        .only
        .insert("programme".into(), vec!["alcohol-ban".into(); 3]);
    assert!(refused(repeated).contains("named twice"));
    assert_eq!(audit_count(&ctx, "research.refused"), before + 4);
    assert_eq!(spent(&ctx, "p"), 0.0);
}

/// Numbers are read to 15 significant digits, so an accepted request reads back from its own JSON
/// as the values accepted and charged. Before, the JSON reader took the ε
/// "0.11111111111111911111…" for 0.11111111111111911 but its own "0.11111111111111911" for
/// 0.11111111111111913 (found by fuzzing `research_query`).
#[test]
fn request_numbers_read_back_from_their_own_json() {
    let body =
        br#"{"dataset": "alert-counts", "aggregate": {"kind": "sum", "column": "alcohol_alerts",
        "lower": 0, "upper": 48}, "epsilon": 0.11111111111111911111111111111111111111114}"#;
    let req: QueryRequest = serde_json::from_slice(body).unwrap();
    assert_eq!(req.epsilon, 0.111_111_111_111_119);
    let again: QueryRequest = serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).unwrap();
    assert_eq!(again, req);
    // Edges a notebook computes keep their meaning: 13 × 28.8 is 374.40000000000003.
    let edges = format!(
        r#"{{"dataset": "daily-indicators", "aggregate": {{"kind": "histogram",
            "column": "wear_minutes", "edges": [0, {}]}}, "epsilon": 0.1}}"#,
        13.0 * 28.8
    );
    let req: QueryRequest = serde_json::from_str(&edges).unwrap();
    assert_eq!(
        req.aggregate,
        Aggregate::Histogram {
            column: "wear_minutes".into(),
            edges: vec![0.0, 374.4]
        }
    );
}

/// The API's entry point checks the token before it parses the body, counts every request against
/// the token's rate, and audits both refusals.
#[test]
fn tokens_are_checked_before_the_body_and_held_to_their_rate() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 10.0, 1.0);
    let rate = TokenRate::default();
    let garbage = b"{ not json";
    assert!(matches!(
        query_json(&ctx, &rate, Some("not-a-token"), garbage),
        Err(Error::Unauthorized)
    ));
    assert!(matches!(
        query_json(&ctx, &rate, None, garbage),
        Err(Error::Unauthorized)
    ));
    assert_eq!(audit_count(&ctx, "research.refused-token"), 2);
    assert!(matches!(
        query_json(&ctx, &rate, Some(&t), garbage),
        Err(Error::BadRequest(_))
    ));

    let mut limited = ctx.clone();
    limited.config.research.requests_per_minute_per_token = 3;
    let body = serde_json::to_vec(&request(Aggregate::Count, 0.01, &[])).unwrap();
    let fresh = TokenRate::default();
    let outcomes: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| query_json(&limited, &fresh, Some(&t), &body)))
            .collect();
        handles
            .into_iter()
            .map(|h| matches!(h.join().unwrap(), Err(Error::RateLimited(3))))
            .collect()
    });
    assert_eq!(outcomes.iter().filter(|l| **l).count(), 3, "{outcomes:?}");
    assert!(matches!(
        budget(&limited, &fresh, Some(&t)),
        Err(Error::RateLimited(3))
    ));
}

/// Many projects cannot together spend more on one person than the yearly per-person cap, even
/// when their queries race: every release is charged to both ledgers in one transaction. Before,
/// each project had only its own budget (19 projects spent ε ≈ 300 on the same people).
#[test]
fn projects_together_stay_within_the_yearly_budget_per_person() {
    let (_tmp, ctx) = context();
    let mut ctx = ctx;
    ctx.config.research.person_epsilon_per_year = 1.0;
    let tokens: Vec<String> = (0..4)
        .map(|i| token(&ctx, &format!("p{i}"), 1.0, 0.5))
        .collect();
    let outcomes: Vec<Result<Answer>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (ctx, t) = (&ctx, &tokens[i % 4]);
                scope.spawn(move || query(ctx, t, &request(Aggregate::Count, 0.3, &[])))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let answered = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(answered, 3, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Ok(_) | Err(Error::PersonBudgetExhausted { .. }))));
    let losses = person_losses(&ctx).unwrap();
    assert_eq!(losses.len(), 1);
    assert!(losses[0].epsilon_spent <= 1.0 + 1e-9, "{losses:?}");
    assert!((losses[0].epsilon_sum - 0.9).abs() < 1e-6, "{losses:?}");
    assert_eq!(audit_count(&ctx, "research.refused"), 5);
}

/// Revoking a token from another process (the CLI opens its own connection) while that token's
/// queries run hard succeeds at once, and the token is refused from then on. Before every
/// transaction began IMMEDIATE, the CLI's read-then-write failed with "database is locked" in 18
/// of 20 tries.
#[test]
fn a_token_is_revoked_from_another_connection_while_it_is_used_hard() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 1000.0, 1.0);
    let mut busy = ctx.clone();
    busy.config.research.requests_per_minute_per_token = 100_000;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rate = TokenRate::default();
    let body = serde_json::to_vec(&request(Aggregate::Count, 0.001, &[])).unwrap();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let mut answered = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match query_json(&busy, &rate, Some(&t), &body) {
                            Ok(_) => answered += 1,
                            Err(Error::Unauthorized) => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    answered
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(500));
        // What `nachtwacht research revoke-token` does: its own connection to the database.
        let cli = Context::open(ctx.dir.root()).unwrap();
        let started = std::time::Instant::now();
        let revoked = revoke_token(&cli, &token_id(&t), "cli");
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        revoked.unwrap();
        let answered: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert!(answered > 0);
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    });
    assert!(matches!(
        query(&ctx, &t, &request(Aggregate::Count, 0.01, &[])),
        Err(Error::Unauthorized)
    ));
}

#[test]
fn a_token_of_a_researcher_without_a_screening_in_force_is_refused_with_the_reason_and_audited() {
    let (_tmp, ctx) = context();
    let t = token(&ctx, "p", 1.0, 1.0);
    assert!(query(&ctx, &t, &request(Aggregate::Count, 0.1, &[])).is_ok());
    let now = crate::base::time::now_ms();
    let day = crate::base::time::DAY_MS;
    crate::registry::screening::record(
        &ctx.db,
        "ria",
        crate::registry::screening::ScreeningKind::Vog,
        now - 400 * day,
        now - day,
        "admin",
        now,
    )
    .unwrap();
    let spent_before = spent(&ctx, "p");
    let err = query(&ctx, &t, &request(Aggregate::Count, 0.1, &[])).unwrap_err();
    assert!(
        matches!(&err, Error::NotScreened(s) if s.contains("VOG expired")),
        "{err}"
    );
    assert!(matches!(
        budget(&ctx, &TokenRate::default(), Some(&t)),
        Err(Error::NotScreened(_))
    ));
    assert_eq!(spent(&ctx, "p"), spent_before, "nothing is charged");
    let refused: i64 = ctx
        .db
        .lock()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'screening.refused' AND actor = 'ria'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refused, 2);
    // A new screening reopens the token.
    crate::registry::screening::screen_for_a_year(&ctx.db, "ria", now + 1).unwrap();
    assert!(query(&ctx, &t, &request(Aggregate::Count, 0.1, &[])).is_ok());
}

mod ledger_properties {
    //! Property: under any sequence of charges to two projects (small, large, over budget, not a
    //! number, negative), each project's remaining budget never rises and never goes below zero,
    //! a refused charge changes nothing, and the per-person yearly loss never exceeds its cap.

    use super::*;
    use proptest::prelude::*;

    fn epsilon() -> impl Strategy<Value = f64> {
        prop_oneof![
            6 => 0.001f64..1.5,
            1 => 1.5f64..20.0,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => -2.0f64..0.0,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]

        #[test]
        fn remaining_budget_never_rises_and_never_goes_below_zero(
            charges in proptest::collection::vec((any::<bool>(), epsilon()), 1..16),
        ) {
            let (_tmp, ctx) = crate::server::init::temporary();
            for name in ["a", "b"] {
                create_project(&ctx, name, Budget::new(6.0, 20.0), "test").unwrap();
            }
            let project = |name: &str| project_named(&ctx, name).unwrap().unwrap();
            let person_loss = || {
                person_losses(&ctx).unwrap().first().map_or(0.0, |p| p.epsilon_spent)
            };
            let cap = ctx.config.research.person_epsilon_per_year;
            let mut remaining = [project("a").remaining().unwrap().0, project("b").remaining().unwrap().0];
            for (second, epsilon) in charges {
                let (i, name) = if second { (1, "b") } else { (0, "a") };
                let before = project(name);
                let person_before = person_loss();
                let req = request(Aggregate::Count, epsilon, &[]);
                let charged = ledger::charge(&ctx, &before, &req, epsilon, "ria", None);
                let after = project(name);
                let left = after.remaining().unwrap().0;
                prop_assert!(left >= 0.0, "remaining {left} below zero");
                prop_assert!(left <= remaining[i] + 1e-12, "remaining rose from {} to {left}", remaining[i]);
                prop_assert!(after.epsilon_spent <= after.epsilon_budget + 1e-9);
                prop_assert!(person_loss() <= cap + 1e-9, "person loss over its cap");
                prop_assert!(person_loss() >= person_before);
                match charged {
                    Ok(p) => {
                        prop_assert!(epsilon.is_finite() && epsilon > 0.0);
                        prop_assert_eq!(p.epsilon_spent, after.epsilon_spent);
                    }
                    Err(_) => {
                        prop_assert_eq!(after.epsilon_spent, before.epsilon_spent, "a refusal charged");
                        prop_assert_eq!(after.rho_spent, before.rho_spent);
                        prop_assert_eq!(person_loss(), person_before);
                    }
                }
                remaining[i] = left;
            }
        }
    }
}
