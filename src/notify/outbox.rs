//! The outbox: who is told what. Every decision is one SQL transaction; the unique key
//! `(account, alert, reason)` makes queuing idempotent, and a lease makes sending exclusive, so
//! any number of passes, in any number of processes on one database, send each message once.

use crate::base::db::{params, Connection};
use tracing::{error, warn};

use super::{Reason, Result};
use crate::base::db::Db;
use crate::trust::audit;

/// How long a claimed message is reserved for the process that claimed it. Longer than a batch
/// of sends can take (`mail::SEND_TIMEOUT` × [`BATCH`]), so a live sender never loses its claim;
/// a sender killed mid-batch leaves its messages to the next pass after this.
pub const LEASE_MS: i64 = 10 * 60_000;

/// Messages claimed at once.
pub const BATCH: usize = 20;

/// A message due to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub id: i64,
    pub account_id: i64,
    pub alert_id: i64,
    pub reason: Reason,
    /// Attempts made before this one.
    pub attempts: u32,
    pub to: String,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Retry,
    GaveUp,
}

/// Queues a message for every officer who has the person of an alert raised since the last pass
/// on their caseload, chose the alert's kind and has an address. Returns the messages queued.
pub fn queue_new_alerts(db: &Db, now_ms: i64) -> Result<usize> {
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let last: i64 = tx.query_row(
        "SELECT last_alert_id FROM notifier_state WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let newest: i64 = tx.query_row("SELECT coalesce(max(id), ?1) FROM alerts", [last], |r| {
        r.get(0)
    })?;
    if newest <= last {
        return Ok(0);
    }
    let queued = tx.execute(
        "INSERT OR IGNORE INTO notifications
             (account_id, alert_id, reason, created_at_ms, next_attempt_at_ms)
         SELECT o.id, a.id, ?4, ?3, ?3
           FROM alerts a
           JOIN caseloads c ON c.person_id = a.person_id
                           AND c.valid_from_ms <= ?3
                           AND (c.valid_to_ms IS NULL OR c.valid_to_ms > ?3)
           JOIN accounts o ON o.id = c.officer_id AND o.role = 'officer'
                          AND o.disabled_at_ms IS NULL AND o.email IS NOT NULL
           JOIN notification_kinds k ON k.account_id = o.id AND k.kind = a.kind
          WHERE a.id > ?1 AND a.id <= ?2",
        params![last, newest, now_ms, Reason::NewAlert],
    )?;
    tx.execute(
        "UPDATE notifier_state SET last_alert_id = ?1 WHERE id = 1",
        [newest],
    )?;
    tx.commit()?;
    Ok(queued)
}

/// Queues, once per alert and manager, an escalation for every critical alert raised at least
/// `after_ms` ago that no officer has opened and that is still new: to the manager of each
/// officer who has the person on their caseload. Alerts from before notifications existed are
/// not escalated.
pub fn queue_escalations(db: &Db, after_ms: i64, now_ms: i64) -> Result<usize> {
    let conn = db.lock();
    let queued = conn.execute(
        "INSERT OR IGNORE INTO notifications
             (account_id, alert_id, reason, created_at_ms, next_attempt_at_ms)
         SELECT DISTINCT m.id, a.id, ?3, ?1, ?1
           FROM alerts a
           JOIN caseloads c ON c.person_id = a.person_id
                           AND c.valid_from_ms <= ?1
                           AND (c.valid_to_ms IS NULL OR c.valid_to_ms > ?1)
           JOIN accounts o ON o.id = c.officer_id AND o.role = 'officer'
           JOIN accounts m ON m.id = o.manager_id AND m.role = 'manager'
                          AND m.disabled_at_ms IS NULL AND m.email IS NOT NULL
          WHERE a.severity = 'high' AND a.status = 'new' AND a.first_opened_at_ms IS NULL
            AND a.created_at_ms <= ?1 - ?2
            AND a.id > (SELECT first_alert_id FROM notifier_state WHERE id = 1)",
        params![now_ms, after_ms, Reason::Escalation],
    )?;
    Ok(queued)
}

/// Claims up to `limit` messages that are due, for [`LEASE_MS`]. Messages to an account that
/// has since been disabled or has no address any more are given up here.
pub fn claim_due(db: &Db, now_ms: i64, limit: usize) -> Result<Vec<Due>> {
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let orphaned = tx.execute(
        "UPDATE notifications SET gave_up_at_ms = ?1, lease_until_ms = NULL,
                last_error = 'the account is disabled or has no e-mail address'
          WHERE sent_at_ms IS NULL AND gave_up_at_ms IS NULL
            AND account_id IN (SELECT id FROM accounts
                                WHERE email IS NULL OR disabled_at_ms IS NOT NULL)",
        [now_ms],
    )?;
    if orphaned > 0 {
        warn!(
            messages = orphaned,
            "notifications given up: the account is disabled or has no address"
        );
    }
    let due: Vec<Due> = {
        let mut stmt = tx.prepare(
            "SELECT n.id, n.account_id, n.alert_id, n.reason, n.attempts, a.email
               FROM notifications n JOIN accounts a ON a.id = n.account_id
              WHERE n.sent_at_ms IS NULL AND n.gave_up_at_ms IS NULL
                AND n.next_attempt_at_ms <= ?1
                AND (n.lease_until_ms IS NULL OR n.lease_until_ms <= ?1)
              ORDER BY n.id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms, limit as i64], |r| {
            Ok(Due {
                id: r.get(0)?,
                account_id: r.get(1)?,
                alert_id: r.get(2)?,
                reason: r.get(3)?,
                attempts: r.get(4)?,
                to: r.get(5)?,
            })
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for d in &due {
        tx.execute(
            "UPDATE notifications SET lease_until_ms = ?2 WHERE id = ?1",
            params![d.id, now_ms + LEASE_MS],
        )?;
    }
    tx.commit()?;
    Ok(due)
}

/// Marks a message sent and audits it (object: the alert; no address in the entry).
pub fn record_sent(db: &Db, message: &Due, now_ms: i64) -> Result<()> {
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE notifications SET sent_at_ms = ?2, attempts = attempts + 1,
                lease_until_ms = NULL, last_error = NULL
          WHERE id = ?1",
        params![message.id, now_ms],
    )?;
    audit_message(&tx, message, "notification.sent", None, now_ms)?;
    tx.commit()?;
    Ok(())
}

/// Records a failed attempt: retried after a backoff that doubles from one minute up to an hour,
/// or given up (logged as an error and audited) after `max_attempts`.
pub fn record_failure(
    db: &Db,
    message: &Due,
    cause: &str,
    max_attempts: u32,
    now_ms: i64,
) -> Result<Outcome> {
    let attempts = message.attempts + 1;
    let text = cause.to_string();
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    crate::base::metrics::metrics().notification_failures.inc();
    let outcome = if attempts >= max_attempts {
        tx.execute(
            "UPDATE notifications SET attempts = ?2, gave_up_at_ms = ?3, lease_until_ms = NULL,
                    last_error = ?4
              WHERE id = ?1",
            params![message.id, attempts, now_ms, text],
        )?;
        audit_message(&tx, message, "notification.gave-up", Some(&text), now_ms)?;
        error!(notification = message.id, attempts, error = %text, "notification given up");
        Outcome::GaveUp
    } else {
        let backoff = retry_after_ms(attempts);
        tx.execute(
            "UPDATE notifications SET attempts = ?2, next_attempt_at_ms = ?3,
                    lease_until_ms = NULL, last_error = ?4
              WHERE id = ?1",
            params![message.id, attempts, now_ms + backoff, text],
        )?;
        warn!(notification = message.id, attempts, retry_in_s = backoff / 1000, error = %text,
              "notification not sent; will retry");
        Outcome::Retry
    };
    tx.commit()?;
    Ok(outcome)
}

/// The wait before the next attempt after `attempts` failures: 1, 2, 4, … minutes, at most 60.
pub fn retry_after_ms(attempts: u32) -> i64 {
    60_000 * (1i64 << attempts.saturating_sub(1).min(6)).min(60)
}

fn audit_message(
    conn: &Connection,
    message: &Due,
    action: &str,
    error: Option<&str>,
    now_ms: i64,
) -> Result<()> {
    audit::append(
        conn,
        now_ms,
        "system",
        action,
        &format!("alert:{}", message.alert_id),
        &serde_json::json!({
            "to_account": message.account_id,
            "reason": message.reason.as_str(),
            "error": error,
        })
        .to_string(),
    )?;
    Ok(())
}

/// The state of the outbox, for the operator (`nachtwacht notifications status`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Status {
    pub queued: i64,
    pub sent: i64,
    pub given_up: i64,
    /// The last error of each message still queued after a failure, newest first.
    pub failing: Vec<(i64, u32, String)>,
}

pub fn status(db: &Db) -> Result<Status> {
    let conn = db.lock();
    let (queued, sent, given_up) = conn.query_row(
        "SELECT count(*) FILTER (WHERE sent_at_ms IS NULL AND gave_up_at_ms IS NULL),
                count(*) FILTER (WHERE sent_at_ms IS NOT NULL),
                count(*) FILTER (WHERE gave_up_at_ms IS NOT NULL)
           FROM notifications",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut stmt = conn.prepare(
        "SELECT id, attempts, last_error FROM notifications
          WHERE sent_at_ms IS NULL AND last_error IS NOT NULL ORDER BY id DESC LIMIT 20",
    )?;
    let failing = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Status {
        queued,
        sent,
        given_up,
        failing,
    })
}
