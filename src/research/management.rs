//! Figures for reclassering management: monthly rates of drinking, tamper and communication
//! alerts per programme and per region, released through the same differential-privacy path as
//! research ([`research::answer_for`]), charged to their own research project ([`PROJECT`]).
//!
//! A month's figures are released once, when a manager asks, and kept (`management_releases`):
//! looking at them again costs no privacy budget, and everyone sees the same noisy numbers.
//! Only an officer's own caseload bypasses DP, in the officer UI; nothing here is per person.

use crate::base::db::OptionalExtension;
use chrono::{Datelike, NaiveDate};

use crate::base::Context;
use crate::research::{self, Aggregate, Answer, QueryRequest, DATASET_ALERTS};

/// The research project whose budget pays for management figures. An administrator creates it
/// (admin page or `nachtwacht research add-project --name management …`).
pub const PROJECT: &str = "management";

/// One released figure: an alert-counts column summed over person-days (each day clipped to
/// 0–1, so: person-days with such an alert), grouped by one public key.
pub struct Figure {
    pub id: &'static str,
    pub column: &'static str,
    pub group_by: &'static str,
}

pub const FIGURES: &[Figure] = &[
    Figure {
        id: "alcohol-by-programme",
        column: "alcohol_alerts",
        group_by: "programme",
    },
    Figure {
        id: "tamper-by-programme",
        column: "tamper_alerts",
        group_by: "programme",
    },
    Figure {
        id: "communication-by-programme",
        column: "communication_alerts",
        group_by: "programme",
    },
    Figure {
        id: "alcohol-by-region",
        column: "alcohol_alerts",
        group_by: "region",
    },
    Figure {
        id: "tamper-by-region",
        column: "tamper_alerts",
        group_by: "region",
    },
    Figure {
        id: "communication-by-region",
        column: "communication_alerts",
        group_by: "region",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no management project: an administrator creates research project {PROJECT:?} with its budget")]
    NoProject,
    #[error("another release of management figures did not finish within two minutes")]
    Busy,
    #[error("stored answer of {0}")]
    StoredAnswer(String),
    #[error(transparent)]
    Refused(#[from] crate::base::refusal::Refusal),
    #[error(transparent)]
    Research(#[from] research::Error),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A released figure of one month.
#[derive(Debug, Clone)]
pub struct Release {
    /// `2026-10`
    pub month: String,
    pub figure: String,
    pub answer: Answer,
    pub released_at_ms: i64,
    pub released_by: String,
}

fn month_bounds(month: &str) -> Result<(NaiveDate, NaiveDate)> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .map_err(|_| Error::Refused(crate::base::refusal::Refusal::NotAMonth(month.to_string())))?;
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .expect("valid month");
    Ok((first, next.pred_opt().expect("a day before")))
}

/// Releases every figure of `month` not released yet, each at the project's per-query maximum ε.
/// Returns how many were released now. Stops at the first refusal (e.g. budget exhausted), keeping
/// what was already released.
pub fn release_month(ctx: &Context, month: &str, manager: &str) -> Result<usize> {
    let (from, to) = month_bounds(month)?;
    let last_day = to;
    // A month is released once, and then frozen: released before it ends, its figures would
    // miss the rest of the month for good.
    let today = chrono::Utc::now().date_naive();
    if last_day >= today {
        return Err(Error::Refused(
            crate::base::refusal::Refusal::MonthNotEnded(month.to_string()),
        ));
    }
    let project = research::project_named(ctx, PROJECT)?.ok_or(Error::NoProject)?;
    let releasing = one_release_at_a_time(ctx)?;
    let mut released = 0;
    for figure in FIGURES {
        let done = ctx
            .db
            .lock()
            .query_row(
                "SELECT 1 FROM management_releases WHERE month = ?1 AND figure = ?2",
                [month, figure.id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if done {
            continue;
        }
        let req = QueryRequest {
            dataset: DATASET_ALERTS.into(),
            aggregate: Aggregate::Sum {
                column: figure.column.into(),
                lower: 0.0,
                upper: 1.0,
            },
            epsilon: project.max_epsilon_per_query,
            group_by: vec![figure.group_by.into()],
            dry_run: false,
            from: Some(from),
            to: Some(to),
            only: Default::default(),
        };
        // The project's ledger moves with every release: re-read it for the next one.
        let current = research::project_named(ctx, PROJECT)?.ok_or(Error::NoProject)?;
        let answer =
            research::answer_fenced(ctx, &current, &req, manager, Some(releasing.lease()))?;
        ctx.db.lock().execute(
            "INSERT INTO management_releases (month, figure, answer, released_at_ms, released_by)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            crate::params![
                month,
                figure.id,
                serde_json::to_string(&answer).expect("answer serialises"),
                crate::base::time::now_ms(),
                manager
            ],
        )?;
        released += 1;
    }
    Ok(released)
}

/// How long a release holds its lease between renewals' reach: a process that dies mid-release
/// frees it after this (at once when it died on the same machine).
const RELEASE_LEASE_TTL_MS: i64 = 60_000;

/// The longest a release waits for another one, on this process or another, to finish.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// One release at a time across every process on the database: two managers pressing the
/// button together, on one node or two, must not both pay for the same figure (the table's key
/// would refuse the second copy, but only after its budget was spent). Threads of one process
/// share its lease, so a process-wide mutex orders them first; the lease orders processes, and
/// each charge is fenced by it.
fn one_release_at_a_time(ctx: &Context) -> Result<ReleaseTurn> {
    use crate::base::lease::{holder_name, Lease, Renewing, Work};
    static RELEASING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let in_process = RELEASING.lock().unwrap_or_else(|p| p.into_inner());
    let start = std::time::Instant::now();
    loop {
        let now = crate::base::time::now_ms();
        if let Some(lease) = Lease::try_acquire(
            &ctx.db,
            Work::ManagementRelease,
            holder_name(),
            RELEASE_LEASE_TTL_MS,
            now,
        )? {
            return Ok(ReleaseTurn {
                lease: Renewing::start(lease),
                _in_process: in_process,
            });
        }
        if start.elapsed() > RELEASE_WAIT {
            return Err(Error::Busy);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// This process's turn to release: the lease (renewed while held) and the in-process lock.
struct ReleaseTurn {
    lease: crate::base::lease::Renewing,
    _in_process: std::sync::MutexGuard<'static, ()>,
}

impl ReleaseTurn {
    fn lease(&self) -> &crate::base::lease::Lease {
        self.lease.lease()
    }
}

/// Every released figure, newest month first.
pub fn releases(ctx: &Context) -> Result<Vec<Release>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(
        "SELECT month, figure, answer, released_at_ms, released_by FROM management_releases
          ORDER BY month DESC, figure",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = vec![];
    for row in rows {
        let (month, figure, answer, released_at_ms, released_by) = row?;
        let answer: Answer = serde_json::from_str(&answer)
            .map_err(|e| Error::StoredAnswer(format!("{month} {figure}: {e}")))?;
        out.push(Release {
            month,
            figure,
            answer,
            released_at_ms,
            released_by,
        });
    }
    Ok(out)
}

/// The management project's budget, if it exists.
pub fn project(ctx: &Context) -> Result<Option<research::Project>> {
    Ok(research::project_named(ctx, PROJECT)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before the fix the current month could be released on its second day, freezing figures
    /// that missed the rest of it.
    #[test]
    fn a_month_is_released_only_after_it_has_ended() {
        let (_dir, ctx) = crate::server::init::temporary();
        let this_month = chrono::Utc::now().format("%Y-%m").to_string();
        let err = release_month(&ctx, &this_month, "max").unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Refused(crate::base::refusal::Refusal::MonthNotEnded(_))
            ),
            "{err}"
        );
    }

    #[test]
    fn months_have_their_first_and_last_day() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            month_bounds("2026-02").unwrap(),
            (d("2026-02-01"), d("2026-02-28"))
        );
        assert_eq!(
            month_bounds("2026-12").unwrap(),
            (d("2026-12-01"), d("2026-12-31"))
        );
        assert!(month_bounds("2026-13").is_err());
        assert!(month_bounds("x").is_err());
    }
}
