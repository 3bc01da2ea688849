//! Property: whatever persons, holds and closing times, a retention run never deletes held data.
//! A person held as a whole keeps their identity and every alert; an alert held on its own is
//! kept while the rest of its person goes when due.

#![cfg(test)]

use proptest::prelude::*;

use super::hold::{self, HoldActor, HoldTarget};
use super::policy;
use crate::base::Context;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy)]
enum Held {
    Nothing,
    Person,
    /// The person's first alert only.
    FirstAlert,
    /// A hold placed and released again: it keeps nothing.
    Released,
}

fn held() -> impl Strategy<Value = Held> {
    prop_oneof![
        Just(Held::Nothing),
        Just(Held::Person),
        Just(Held::FirstAlert),
        Just(Held::Released),
    ]
}

fn alert(ctx: &Context, person: i64, n: i64) -> i64 {
    let conn = ctx.db.lock();
    conn.execute(
        "INSERT INTO alerts (person_id, kind, severity, start_ms, end_ms, rule, evidence_bundles, created_at_ms)
         VALUES (?1, 'alcohol', 'high', ?2, ?2 + 1, '{}', '', 0)",
        crate::params![person, n],
    )
    .unwrap();
    conn.last_insert_rowid()
}

fn alerts_of(ctx: &Context, person: i64) -> Vec<i64> {
    let conn = ctx.db.lock();
    let mut stmt = conn
        .prepare("SELECT id FROM alerts WHERE person_id = ?1 ORDER BY id")
        .unwrap();
    let rows = stmt.query_map([person], |r| r.get(0)).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn retention_never_deletes_held_data(
        persons in proptest::collection::vec((held(), 0i64..400), 1..5),
        alerts_keep_days in 0u32..200,
    ) {
        let (_tmp, ctx) = crate::server::init::temporary();
        let now = crate::base::time::now_ms();
        let policy = policy::parse(&policy::DEFAULT_POLICY.replace(
            "[alerts]\nkeep_days = 1825",
            &format!("[alerts]\nkeep_days = {alerts_keep_days}"),
        ))
        .unwrap();
        let mut people = Vec::new();
        for (i, (held, closed_days_ago)) in persons.iter().enumerate() {
            let reference = format!("CASE-{i}");
            let programme = crate::base::programme::Programme::AlcoholBan;
            let p = crate::registry::enroll::add_person(&ctx, &reference, programme, "t").unwrap();
            let alerts = [alert(&ctx, p, 1), alert(&ctx, p, 2)];
            ctx.db
                .lock()
                .execute(
                    "UPDATE persons SET closed_at_ms = ?2 WHERE id = ?1",
                    crate::params![p, now - closed_days_ago * DAY_MS],
                )
                .unwrap();
            let target = match held {
                Held::Nothing => None,
                Held::Person | Held::Released => Some(HoldTarget::Person(p)),
                Held::FirstAlert => Some(HoldTarget::Alert(alerts[0])),
            };
            if let Some(target) = target {
                let id = hold::place(&mut ctx.db.lock(), HoldActor::Operator("op"), target, "zitting", now)
                    .unwrap();
                if matches!(held, Held::Released) {
                    hold::release(&mut ctx.db.lock(), HoldActor::Operator("op"), id, "klaar", now)
                        .unwrap();
                }
            }
            people.push((p, *held, *closed_days_ago, alerts));
        }
        super::retention::run(&ctx, &policy, now, false, "test", &|_, _, _| {}).unwrap();
        for (p, held, closed_days_ago, alerts) in people {
            let left = alerts_of(&ctx, p);
            let erased: Option<i64> = ctx
                .db
                .lock()
                .query_row("SELECT erased_at_ms FROM persons WHERE id = ?1", [p], |r| r.get(0))
                .unwrap();
            let due = closed_days_ago >= i64::from(alerts_keep_days);
            match held {
                Held::Person => {
                    prop_assert_eq!(&left, &alerts.to_vec(), "a held person's alerts went");
                    prop_assert!(erased.is_none(), "a held person was erased");
                }
                Held::FirstAlert => {
                    prop_assert!(left.contains(&alerts[0]), "a held alert went");
                    prop_assert!(erased.is_none(), "the person of a held alert was erased");
                    if due {
                        prop_assert!(!left.contains(&alerts[1]), "an unheld alert was kept past its time");
                    }
                }
                Held::Nothing | Held::Released => {
                    // Not held: the alerts go exactly when due.
                    prop_assert_eq!(left.is_empty(), due, "alerts of an unheld person");
                }
            }
        }
    }
}
