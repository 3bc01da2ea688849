//! E-mail notifications: an officer who chose to be told of new alerts of some kinds gets a
//! message when one is raised for a person on their caseload, and a critical alert that nobody
//! opened in time is escalated to the manager of each officer responsible for the person.
//!
//! A message carries no personal data: no name, no case reference, no value, only a sentence and
//! a link to the alert's page (which asks the reader to sign in and checks their caseload). The
//! work is split the way the rest of the server is: [`outbox`] decides, in SQL transactions,
//! *who is told what* (one row per message, de-duplicated by a unique key, claimed with a lease so
//! that several processes on one database send each message once); [`mail`] composes and sends
//! over SMTP with TLS; [`settings`] holds each account's address, chosen kinds and manager.
//! [`pass`] runs one round of all three; `serve` runs it every `notifications.interval_secs`.

pub mod mail;
pub mod outbox;
pub mod settings;

use tracing::{info, warn};

use crate::base::Context;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] crate::base::refusal::Refusal),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] crate::trust::audit::Error),
    #[error("mail configuration: {0}")]
    Config(String),
    #[error("notification task failed: {0}")]
    Task(String),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A new alert of a kind the officer chose, for a person on their caseload.
    NewAlert,
    /// A critical alert nobody opened within `notifications.escalate_after_minutes`.
    Escalation,
}

impl Reason {
    pub const ALL: [Reason; 2] = [Self::NewAlert, Self::Escalation];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NewAlert => "new-alert",
            Self::Escalation => "escalation",
        }
    }
}

crate::closed_set_text!(Reason);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Messages queued for new alerts.
    pub queued: usize,
    /// Messages queued to managers for unopened critical alerts.
    pub escalated: usize,
    pub sent: usize,
    /// Attempts that failed (each is retried later, until `max_attempts`).
    pub failed: usize,
    /// Messages given up after `max_attempts`.
    pub gave_up: usize,
}

/// One round: queue messages for alerts raised since the last round and for critical alerts left
/// unopened, then send what is due. Without `[notifications.smtp]` messages stay queued (and are
/// sent once a mail server is configured). Database work runs on blocking threads.
pub async fn pass(ctx: &Context, now_ms: i64) -> Result<Pass> {
    let config = ctx.config.notifications.clone();
    let c = ctx.clone();
    let (queued, escalated) = blocking(move || {
        let queued = outbox::queue_new_alerts(&c.db, now_ms)?;
        let after_ms = i64::from(config.escalate_after_minutes) * 60_000;
        let escalated = outbox::queue_escalations(&c.db, after_ms, now_ms)?;
        Ok((queued, escalated))
    })
    .await?;
    let mut report = Pass {
        queued,
        escalated,
        ..Pass::default()
    };
    let Some(smtp) = ctx.config.notifications.smtp.clone() else {
        return Ok(report);
    };
    let mailer = mail::Mailer::new(&ctx.dir, &smtp, link_base(ctx))?;
    let c = ctx.clone();
    let due = blocking(move || outbox::claim_due(&c.db, now_ms, 50)).await?;
    for message in due {
        let outcome = mailer.send(&message).await;
        let c = ctx.clone();
        let max_attempts = ctx.config.notifications.max_attempts;
        let recorded = blocking(move || match outcome {
            Ok(()) => outbox::record_sent(&c.db, &message, crate::base::time::now_ms())
                .map(|()| outbox::Outcome::Sent),
            Err(e) => outbox::record_failure(
                &c.db,
                &message,
                &e.to_string(),
                max_attempts,
                crate::base::time::now_ms(),
            ),
        })
        .await?;
        match recorded {
            outbox::Outcome::Sent => report.sent += 1,
            outbox::Outcome::Retry => report.failed += 1,
            outbox::Outcome::GaveUp => report.gave_up += 1,
        }
    }
    if report != Pass::default() {
        info!(
            queued = report.queued,
            escalated = report.escalated,
            sent = report.sent,
            failed = report.failed,
            gave_up = report.gave_up,
            "notifications"
        );
    }
    Ok(report)
}

/// Where links in messages point: `http.public_url`, else the listen address.
fn link_base(ctx: &Context) -> String {
    let http = &ctx.config.http;
    if let Some(url) = &http.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let scheme = if http.tls { "https" } else { "http" };
    if http.listen.ip().is_loopback() {
        format!("{scheme}://localhost:{}", http.listen.port())
    } else {
        format!("{scheme}://{}", http.listen)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "notification task failed");
            Err(Error::Task(e.to_string()))
        }
    }
}
