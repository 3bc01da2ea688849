//! Charging a release: the project's (ε, δ) ledger and the per-person ledger of the calendar year,
//! both in one transaction with the release's audit record, so that no answer leaves uncharged.

use super::projects::{project_row, PROJECT_COLUMNS};
use super::*;

/// The accounting period of the per-person budget: the UTC calendar year of `now_ms`.
fn person_period(now_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|t| t.format("%Y").to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The per-person ledger of `period`. A period without a row yet (the first release of a year,
/// or a database from before this ledger) starts from the releases the audit log holds for that
/// year, so nothing released earlier escapes it.
fn person_ledger(conn: &crate::base::db::Connection, period: &str, now_ms: i64) -> Result<Spent> {
    let row: Option<(f64, f64)> = conn
        .query_row(
            "SELECT epsilon_sum, rho FROM privacy_loss_periods WHERE period = ?1",
            [period],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((epsilon_sum, rho)) = row {
        return Ok(Spent { epsilon_sum, rho });
    }
    let year_start = chrono::DateTime::from_timestamp_millis(now_ms)
        .and_then(|t| chrono::NaiveDate::from_ymd_opt(chrono::Datelike::year(&t), 1, 1))
        .map(crate::base::time::midnight_ms)
        .unwrap_or(0);
    let mut stmt = conn.prepare(
        "SELECT detail FROM audit_log WHERE action = 'research.release' AND at_ms >= ?1",
    )?;
    let details = stmt
        .query_map([year_start], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut ledger = Spent::default();
    for d in details {
        if let Some(e) = serde_json::from_str::<serde_json::Value>(&d)
            .ok()
            .and_then(|v| v["epsilon"].as_f64())
        {
            ledger = ledger.plus(e)?;
        }
    }
    Ok(ledger)
}

/// One year's privacy loss per person across all projects, for the auditor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodLoss {
    pub period: String,
    /// The loss at `delta` (the better of basic composition and zCDP).
    pub epsilon_spent: f64,
    pub epsilon_sum: f64,
    pub cap: f64,
    pub delta: f64,
}

/// Every period's per-person ledger, newest first.
pub fn person_losses(ctx: &Context) -> Result<Vec<PeriodLoss>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(
        "SELECT period, epsilon_spent, epsilon_sum FROM privacy_loss_periods ORDER BY period DESC",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(PeriodLoss {
                period: r.get(0)?,
                epsilon_spent: r.get(1)?,
                epsilon_sum: r.get(2)?,
                cap: ctx.config.research.person_epsilon_per_year,
                delta: ctx.config.research.person_delta_per_year,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Charges `epsilon` to the project and audits it, atomically; refuses to overspend. Returns
/// the project as it stands after the charge.
///
/// The ledger is read and written inside one writer's transaction (SQLite's `BEGIN IMMEDIATE`,
/// PostgreSQL's transaction-scoped advisory lock): it holds the database's write lock before
/// reading, so no other connection, of this process or another, can charge the project or the
/// per-person ledger between the check and the update.
pub(super) fn charge(
    ctx: &Context,
    project: &Project,
    req: &QueryRequest,
    epsilon: f64,
    actor: &str,
    fence: Option<&crate::base::lease::Lease>,
) -> Result<Project> {
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    if let Some(lease) = fence {
        if !lease.held_in(&tx)? {
            return Err(Error::LeaseLost);
        }
    }
    let current = tx.query_row(
        &format!("SELECT {PROJECT_COLUMNS} FROM research_projects p WHERE p.id = ?1"),
        [project.id],
        project_row,
    )?;
    let after = current.ledger().plus(epsilon)?;
    let loss = after.epsilon_at(current.delta)?;
    // The ledger of everyone's loss across all projects this year: checked and charged in the
    // same transaction as the project's.
    let period = person_period(now);
    let (person_cap, person_delta) = (
        ctx.config.research.person_epsilon_per_year,
        ctx.config.research.person_delta_per_year,
    );
    let person_before = person_ledger(&tx, &period, now)?;
    let person_after = person_before.plus(epsilon)?;
    let person_loss = person_after.epsilon_at(person_delta)?;
    if person_loss > person_cap + 1e-12 {
        audit::append(
            &tx,
            now,
            actor,
            "research.refused",
            &req.dataset,
            &serde_json::json!({"query": req, "epsilon": epsilon, "reason": "person budget exhausted",
                "period": period, "person_epsilon": person_before.epsilon_at(person_delta)?,
                "person_epsilon_cap": person_cap})
                .to_string(),
        )?;
        tx.commit()?;
        return Err(Error::PersonBudgetExhausted {
            period,
            needed: epsilon,
            remaining: largest_next_epsilon(person_before, person_cap, person_delta)?,
        });
    }
    if loss > current.epsilon_budget + 1e-12 {
        audit::append(
            &tx,
            now,
            actor,
            "research.refused",
            &req.dataset,
            &serde_json::json!({"query": req, "epsilon": epsilon, "reason": "budget exhausted"})
                .to_string(),
        )?;
        tx.commit()?;
        return Err(Error::BudgetExhausted {
            needed: epsilon,
            remaining: largest_next_epsilon(
                current.ledger(),
                current.epsilon_budget,
                current.delta,
            )?,
        });
    }
    tx.execute(
        "UPDATE research_projects SET epsilon_spent = ?2, epsilon_sum = ?3, rho_spent = ?4
          WHERE id = ?1",
        crate::params![project.id, loss, after.epsilon_sum, after.rho],
    )?;
    tx.execute(
        "INSERT INTO privacy_loss_periods (period, epsilon_sum, rho, epsilon_spent) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (period) DO UPDATE SET epsilon_sum = ?2, rho = ?3, epsilon_spent = ?4",
        crate::params![period, person_after.epsilon_sum, person_after.rho, person_loss],
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "research.release",
        &req.dataset,
        &serde_json::json!({
            "query": req, "epsilon": epsilon, "rho": after.rho - current.rho_spent,
            "project_epsilon": loss, "project_delta": current.delta,
            "period": period, "person_epsilon": person_loss, "person_delta": person_delta,
        })
        .to_string(),
    )?;
    tx.commit()?;
    crate::base::metrics::metrics()
        .research_releases
        .get_or_create(&crate::base::metrics::label(
            "project",
            current.name.clone(),
        ))
        .inc();
    Ok(Project {
        epsilon_spent: loss,
        epsilon_sum: after.epsilon_sum,
        rho_spent: after.rho,
        ..current
    })
}
