//! The compliance report: one section per control of the national baseline (BIO) that nachtwacht
//! can show evidence for, each with that evidence and a verdict judged here, in code, from the
//! data directory alone. `nachtwacht compliance report [--check]` writes it (and fails when a
//! control fails, for monitoring); the auditor's page shows it. Producing it is audited.
//!
//! A control fails on a fact, never on an opinion: an account without MFA, a screening expired,
//! a review overdue, a chain that does not verify, a file others can read. What needs a human's
//! judgement (an officer who reads far more than the others) is listed as a finding for the
//! periodic review, without failing the control.

use std::collections::BTreeMap;

use crate::base::db::{Connection, OptionalExtension};

use crate::base::html::esc;
use crate::base::time::{date_of, date_time_of, DAY_MS};
use crate::base::Context;
use crate::lifecycle::{hold, policy, retention};
use crate::registry::accounts::Role;
use crate::registry::{review, screening};
use crate::trust::audit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error(transparent)]
    Screening(#[from] screening::Error),
    #[error(transparent)]
    Review(#[from] review::Error),
    #[error(transparent)]
    Retention(#[from] retention::Error),
    #[error(transparent)]
    Hold(#[from] hold::Error),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The controls the report judges, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ControlId {
    Accounts,
    Mfa,
    UnusedAccounts,
    Caseloads,
    PersonalDataAccess,
    Screening,
    AccessReviews,
    AuditChain,
    Keys,
    Revocations,
    PrivacyBudgets,
    Retention,
    ConfigurationChanges,
    Permissions,
    Software,
}

impl ControlId {
    pub const ALL: [ControlId; 15] = [
        Self::Accounts,
        Self::Mfa,
        Self::UnusedAccounts,
        Self::Caseloads,
        Self::PersonalDataAccess,
        Self::Screening,
        Self::AccessReviews,
        Self::AuditChain,
        Self::Keys,
        Self::Revocations,
        Self::PrivacyBudgets,
        Self::Retention,
        Self::ConfigurationChanges,
        Self::Permissions,
        Self::Software,
    ];

    /// The section's anchor in the HTML and its name on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accounts => "accounts",
            Self::Mfa => "mfa",
            Self::UnusedAccounts => "unused-accounts",
            Self::Caseloads => "caseloads",
            Self::PersonalDataAccess => "personal-data-access",
            Self::Screening => "screening",
            Self::AccessReviews => "access-reviews",
            Self::AuditChain => "audit-chain",
            Self::Keys => "keys",
            Self::Revocations => "revocations",
            Self::PrivacyBudgets => "privacy-budgets",
            Self::Retention => "retention",
            Self::ConfigurationChanges => "configuration-changes",
            Self::Permissions => "permissions",
            Self::Software => "software",
        }
    }

    /// Title (Dutch / English) and the BIO control it gives evidence for.
    pub const fn title(self) -> (&'static str, &'static str) {
        match self {
            Self::Accounts => (
                "Accounts en rollen / Accounts and roles",
                "BIO 9.2.1, 9.2.2",
            ),
            Self::Mfa => ("Tweefactorauthenticatie / MFA", "BIO 9.4.2"),
            Self::UnusedAccounts => ("Ongebruikte accounts / Unused accounts", "BIO 9.2.6"),
            Self::Caseloads => ("Caseloads / Caseload assignments", "BIO 9.1.2"),
            Self::PersonalDataAccess => (
                "Inzage persoonsgegevens / Personal-data access",
                "BIO 12.4.1",
            ),
            Self::Screening => ("Screening (VOG) / Staff screening", "BIO 7.1.1"),
            Self::AccessReviews => ("Periodieke toegangscontrole / Access reviews", "BIO 9.2.5"),
            Self::AuditChain => ("Auditlogboek / Audit chain", "BIO 12.4.2"),
            Self::Keys => (
                "Sleutels en certificaten / Keys and certificates",
                "BIO 10.1.2",
            ),
            Self::Revocations => ("Intrekkingen / Certificate revocations", "BIO 9.2.6"),
            Self::PrivacyBudgets => ("Privacybudgetten (DP) / Privacy budgets", "AVG art. 89"),
            Self::Retention => ("Bewaartermijnen / Retention", "AVG art. 5(1)(e)"),
            Self::ConfigurationChanges => (
                "Configuratiewijzigingen / Configuration changes",
                "BIO 12.1.2",
            ),
            Self::Permissions => ("Bestandsrechten / File permissions", "BIO 9.4.1"),
            Self::Software => (
                "Software en afhankelijkheden / Software and dependencies",
                "BIO 12.5.1",
            ),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A control's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
}

/// One section of the report.
#[derive(Debug, Clone)]
pub struct Control {
    pub id: ControlId,
    pub verdict: Verdict,
    /// One line: what was judged and how it came out.
    pub summary: String,
    /// The evidence, a table: header and rows.
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// Why it fails (one line per fact), or findings for the review when it passes.
    pub findings: Vec<String>,
}

impl Control {
    fn new(id: ControlId, columns: Vec<&'static str>) -> Self {
        Self {
            id,
            verdict: Verdict::Pass,
            summary: String::new(),
            columns,
            rows: vec![],
            findings: vec![],
        }
    }

    /// Records a fact that fails the control.
    fn fail(&mut self, fact: String) {
        self.verdict = Verdict::Fail;
        self.findings.push(fact);
    }
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    pub generated_at_ms: i64,
    pub data_dir: String,
    pub controls: Vec<Control>,
}

impl Report {
    pub fn failed(&self) -> Vec<ControlId> {
        self.controls
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .map(|c| c.id)
            .collect()
    }
}

/// Roles that open personal data, and so must hold a screening in force.
const SCREENED_ROLES: [Role; 4] = [
    Role::Administrator,
    Role::Officer,
    Role::Researcher,
    Role::Auditor,
];

/// Refusals an account can collect on its way to personal data.
const REFUSALS: &str = "'alert.refused','access.denied','screening.refused','hold.refused'";

struct AccountRow {
    id: i64,
    username: String,
    role: Role,
    created_at_ms: i64,
    disabled: bool,
    mfa: bool,
    last_sign_in_ms: Option<i64>,
}

fn accounts(conn: &Connection) -> Result<Vec<AccountRow>> {
    let mut stmt = conn.prepare(
        "SELECT a.id, a.username, a.role, a.created_at_ms, a.disabled_at_ms IS NOT NULL,
                a.totp_secret IS NOT NULL,
                (SELECT max(created_at_ms) FROM sessions s WHERE s.account_id = a.id)
           FROM accounts a ORDER BY a.username",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(AccountRow {
            id: r.get(0)?,
            username: r.get(1)?,
            role: r.get(2)?,
            created_at_ms: r.get(3)?,
            disabled: r.get(4)?,
            mfa: r.get(5)?,
            last_sign_in_ms: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Builds the report of `ctx`'s data directory at `now_ms`. `actor` is audited as having
/// produced it (`compliance.report`): it summarises every account's reads of personal data.
pub fn report(ctx: &Context, actor: &str, now_ms: i64) -> Result<Report> {
    let all = {
        let conn = ctx.db.lock();
        accounts(&conn)?
    };
    let mut controls = Vec::new();
    {
        let conn = ctx.db.lock();
        controls.push(accounts_control(&conn, &all)?);
        controls.push(mfa_control(&all));
        controls.push(unused_control(ctx, &all, now_ms));
        controls.push(caseload_control(&conn, now_ms)?);
        controls.push(access_control(&conn, &all)?);
        controls.push(screening_control(&conn, &all, now_ms)?);
        controls.push(review_control(ctx, &conn, &all, now_ms)?);
        controls.push(chain_control(ctx, &conn)?);
        controls.push(keys_control(ctx, &conn, now_ms)?);
        controls.push(revocation_control(&conn)?);
        controls.push(budget_control(ctx, &conn)?);
    }
    controls.push(retention_control(ctx, now_ms)?);
    {
        let conn = ctx.db.lock();
        controls.push(config_control(ctx, &conn)?);
    }
    controls.push(permissions_control(ctx)?);
    controls.push(software_control());
    let failed: Vec<&str> = controls
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.id.as_str())
        .collect();
    audit::append(
        &ctx.db.lock(),
        now_ms,
        actor,
        "compliance.report",
        "compliance",
        &serde_json::json!({"controls": controls.len(), "failed": failed}).to_string(),
    )?;
    Ok(Report {
        generated_at_ms: now_ms,
        data_dir: ctx.dir.root().display().to_string(),
        controls,
    })
}

fn state(a: &AccountRow) -> String {
    if a.disabled { "disabled" } else { "active" }.to_string()
}

fn accounts_control(conn: &Connection, all: &[AccountRow]) -> Result<Control> {
    let mut c = Control::new(
        ControlId::Accounts,
        vec!["account", "role", "state", "created", "last change", "by"],
    );
    let pruned: bool = conn.query_row("SELECT count(*) > 0 FROM audit_pruned", [], |r| r.get(0))?;
    for a in all {
        let object = format!("account:{}", a.username);
        let last: Option<(String, String, i64)> = conn
            .query_row(
                "SELECT action, actor, at_ms FROM audit_log
                  WHERE object = ?1 AND (action LIKE 'account.%' OR action = 'screening.record')
                    AND action <> 'account.password-refused'
                  ORDER BY seq DESC LIMIT 1",
                [&object],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let created: bool = conn.query_row(
            "SELECT count(*) > 0 FROM audit_log WHERE object = ?1 AND action = 'account.create'",
            [&object],
            |r| r.get(0),
        )?;
        if !created && !pruned {
            c.fail(format!(
                "account {} has no account.create entry in the audit log: it was not created through nachtwacht",
                a.username
            ));
        }
        let (change, by) = last
            .map(|(action, actor, at)| (format!("{action} {}", date_time_of(at)), actor))
            .unwrap_or_default();
        c.rows.push(vec![
            a.username.clone(),
            a.role.as_str().into(),
            state(a),
            date_of(a.created_at_ms),
            change,
            by,
        ]);
    }
    c.summary = format!(
        "{} accounts; every account created and changed through nachtwacht, audited",
        all.len()
    );
    Ok(c)
}

fn mfa_control(all: &[AccountRow]) -> Control {
    let mut c = Control::new(ControlId::Mfa, vec!["account", "role", "TOTP enrolled"]);
    for a in all.iter().filter(|a| !a.disabled) {
        if !a.mfa {
            c.fail(format!("active account {} has no TOTP secret", a.username));
        }
        c.rows.push(vec![
            a.username.clone(),
            a.role.as_str().into(),
            if a.mfa { "yes" } else { "NO" }.into(),
        ]);
    }
    c.summary = "every active account signs in with a password and a TOTP code".into();
    c
}

fn unused_control(ctx: &Context, all: &[AccountRow], now_ms: i64) -> Control {
    let days = ctx.config.accountability.unused_account_days as i64;
    let mut c = Control::new(
        ControlId::UnusedAccounts,
        vec!["account", "role", "last sign-in", "idle days"],
    );
    for a in all.iter().filter(|a| !a.disabled) {
        let since = a.last_sign_in_ms.unwrap_or(a.created_at_ms);
        let idle = (now_ms - since) / DAY_MS;
        if idle > days {
            c.fail(format!(
                "active account {} unused for {idle} days (limit {days}): disable it",
                a.username
            ));
        }
        c.rows.push(vec![
            a.username.clone(),
            a.role.as_str().into(),
            a.last_sign_in_ms
                .map(date_time_of)
                .unwrap_or_else(|| "never".into()),
            idle.to_string(),
        ]);
    }
    c.summary = format!("no active account unused for more than {days} days");
    c
}

fn caseload_control(conn: &Connection, now_ms: i64) -> Result<Control> {
    let mut c = Control::new(
        ControlId::Caseloads,
        vec!["officer", "person", "from", "until", "assigned by"],
    );
    let mut stmt = conn.prepare(
        "SELECT a.username, a.role, a.disabled_at_ms IS NOT NULL, p.reference, p.closed_at_ms IS NOT NULL,
                c.valid_from_ms, c.valid_to_ms, c.assigned_by
           FROM caseloads c JOIN accounts a ON a.id = c.officer_id JOIN persons p ON p.id = c.person_id
          WHERE c.valid_from_ms <= ?1 AND (c.valid_to_ms IS NULL OR c.valid_to_ms > ?1)
          ORDER BY a.username, p.reference",
    )?;
    let rows = stmt.query_map([now_ms], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Role>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, Option<String>>(3)?.unwrap_or_default(),
            r.get::<_, bool>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, Option<i64>>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut n = 0;
    for row in rows {
        let (officer, role, disabled, person, closed, from, to, by) = row?;
        n += 1;
        if disabled || role != Role::Officer {
            c.fail(format!(
                "{person} is assigned to {officer}, who is not an active officer"
            ));
        }
        if closed {
            c.fail(format!(
                "{person}'s supervision has ended but {officer}'s assignment runs on"
            ));
        }
        c.rows.push(vec![
            officer,
            person,
            date_of(from),
            to.map(date_of).unwrap_or_else(|| "—".into()),
            by,
        ]);
    }
    c.summary =
        format!("{n} assignments in force, each to an active officer for a running supervision");
    Ok(c)
}

fn access_control(conn: &Connection, all: &[AccountRow]) -> Result<Control> {
    let mut c = Control::new(
        ControlId::PersonalDataAccess,
        vec![
            "account",
            "role",
            "reads of personal data",
            "persons read",
            "refusals",
        ],
    );
    let reads = review::personal_data_reads_sql();
    // Reads per person id; each id's reference is looked up once, below.
    let mut reads_per_person: BTreeMap<i64, i64> = BTreeMap::new();
    let mut officer_reads = Vec::new();
    for a in all {
        let n: i64 = conn.query_row(
            &format!("SELECT count(*) FROM audit_log WHERE actor = ?1 AND action IN ({reads})"),
            [&a.username],
            |r| r.get(0),
        )?;
        let refusals: i64 = conn.query_row(
            &format!("SELECT count(*) FROM audit_log WHERE actor = ?1 AND action IN ({REFUSALS})"),
            [&a.username],
            |r| r.get(0),
        )?;
        // The persons an entry names: `person` (one) or `persons` (a list) in its detail.
        let persons: Vec<i64> = {
            let mut stmt = conn.prepare(&format!(
                "SELECT detail FROM audit_log WHERE actor = ?1 AND action IN ({reads})"
            ))?;
            let details = stmt.query_map([&a.username], |r| r.get::<_, String>(0))?;
            let mut persons = Vec::new();
            for detail in details {
                persons.extend(persons_named(&detail?));
            }
            persons
        };
        let distinct: std::collections::BTreeSet<i64> = persons.iter().copied().collect();
        for p in &persons {
            *reads_per_person.entry(*p).or_default() += 1;
        }
        if a.role == Role::Officer {
            officer_reads.push((a.username.clone(), n));
        }
        if refusals > 0 {
            c.findings.push(format!(
                "{} was refused {refusals} time(s): see the audit log",
                a.username
            ));
        }
        c.rows.push(vec![
            a.username.clone(),
            a.role.as_str().into(),
            n.to_string(),
            distinct.len().to_string(),
            refusals.to_string(),
        ]);
    }
    // An officer's read of a person who was not on their caseload at that moment: the one rule of
    // officer access broken. Casework makes it impossible; this shows it did not happen.
    let mut stmt = conn.prepare(
        "SELECT l.seq, l.actor, l.at_ms, l.detail, a.id
           FROM audit_log l JOIN accounts a ON a.username = l.actor AND a.role = 'officer'
          WHERE l.action IN ('alert.view','alert.report','alert.dossier')",
    )?;
    let officer_reads_of_persons = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?
        .filter_map(|row| match row {
            Ok((seq, officer, at, detail, id)) => {
                person_of(&detail).map(|person| Ok((seq, officer, at, person, id)))
            }
            Err(e) => Some(Err(e)),
        });
    for row in officer_reads_of_persons {
        let (seq, officer, at, person, officer_id) = row?;
        let allowed =
            crate::registry::caseload::may_see(conn, officer_id, person, at).map_err(|e| {
                Error::Io {
                    path: "caseloads".into(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
        if !allowed {
            c.fail(format!(
                "audit entry #{seq}: {officer} read person {person}, who was not on their caseload at {}",
                date_time_of(at)
            ));
        }
    }
    // Volume outliers, for the reviewer: an officer reading far more than the others.
    let mut counts: Vec<i64> = officer_reads.iter().map(|(_, n)| *n).collect();
    counts.sort();
    if let Some(median) = counts.get(counts.len() / 2).copied() {
        for (officer, n) in &officer_reads {
            if *n >= 20 && *n > 3 * median.max(1) {
                c.findings.push(format!("outlier: {officer} read personal data {n} times, more than 3× the officers' median ({median})"));
            }
        }
    }
    let mut per_person: BTreeMap<String, i64> = BTreeMap::new();
    for (p, n) in reads_per_person {
        let reference: Option<String> = conn
            .query_row("SELECT reference FROM persons WHERE id = ?1", [p], |r| {
                r.get(0)
            })
            .optional()?
            .flatten();
        *per_person
            .entry(reference.unwrap_or_else(|| format!("(erased person {p})")))
            .or_default() += n;
    }
    for (person, n) in &per_person {
        c.rows.push(vec![
            format!("person {person}"),
            String::new(),
            n.to_string(),
            String::new(),
            String::new(),
        ]);
    }
    c.summary =
        "every read of personal data is audited; no officer read a person outside their caseload"
            .into();
    Ok(c)
}

fn screening_control(conn: &Connection, all: &[AccountRow], now_ms: i64) -> Result<Control> {
    let mut c = Control::new(
        ControlId::Screening,
        vec![
            "account",
            "role",
            "kind",
            "screened on",
            "expires",
            "recorded by",
        ],
    );
    let latest = screening::latest_all(conn)?;
    for a in all
        .iter()
        .filter(|a| !a.disabled && SCREENED_ROLES.contains(&a.role))
    {
        let s = latest.get(&a.id);
        match s {
            Some(s) if s.in_force(now_ms) => {}
            Some(s) => c.fail(format!(
                "{}'s {} expired on {}",
                a.username,
                s.kind.as_str(),
                date_of(s.expires_at_ms)
            )),
            None => c.fail(format!(
                "{} ({}) has no screening recorded",
                a.username,
                a.role.as_str()
            )),
        }
        c.rows.push(match s {
            Some(s) => vec![
                a.username.clone(),
                a.role.as_str().into(),
                s.kind.as_str().into(),
                date_of(s.screened_on_ms),
                date_of(s.expires_at_ms),
                s.recorded_by.clone(),
            ],
            None => vec![
                a.username.clone(),
                a.role.as_str().into(),
                "—".into(),
                String::new(),
                String::new(),
                String::new(),
            ],
        });
    }
    let refused: i64 = conn.query_row(
        "SELECT count(*) FROM audit_log WHERE action = 'screening.refused'",
        [],
        |r| r.get(0),
    )?;
    if refused > 0 {
        c.findings.push(format!(
            "{refused} access(es) refused for lack of a screening in force"
        ));
    }
    c.summary = "every active account that opens personal data holds a screening in force".into();
    Ok(c)
}

fn review_control(
    ctx: &Context,
    conn: &Connection,
    all: &[AccountRow],
    now_ms: i64,
) -> Result<Control> {
    let days = ctx.config.accountability.review_period_days as i64;
    let mut c = Control::new(
        ControlId::AccessReviews,
        vec![
            "officer",
            "last reviewed",
            "by",
            "accesses reviewed",
            "findings",
        ],
    );
    let latest = review::latest_reviews(conn)?;
    for a in all
        .iter()
        .filter(|a| !a.disabled && a.role == Role::Officer)
    {
        let r = latest.iter().find(|r| r.username == a.username);
        let since = r.map_or(a.created_at_ms, |r| r.reviewed_at_ms);
        if now_ms - since > days * DAY_MS {
            c.fail(match r {
                Some(r) => format!(
                    "{} last reviewed {} (period {days} days)",
                    a.username,
                    date_of(r.reviewed_at_ms)
                ),
                None => format!(
                    "{} never reviewed, account older than {days} days",
                    a.username
                ),
            });
        }
        c.rows.push(match r {
            Some(r) => vec![
                a.username.clone(),
                date_of(r.reviewed_at_ms),
                r.reviewed_by.clone(),
                r.accesses_reviewed.to_string(),
                r.findings.clone(),
            ],
            None => vec![
                a.username.clone(),
                "never".into(),
                String::new(),
                String::new(),
                String::new(),
            ],
        });
    }
    c.summary = format!("every officer's accesses reviewed by an auditor within {days} days");
    Ok(c)
}

fn chain_control(ctx: &Context, conn: &Connection) -> Result<Control> {
    let mut c = Control::new(
        ControlId::AuditChain,
        vec!["entries", "head entry", "head hash", "latest checkpoint"],
    );
    let verdict = audit::verify_all(&ctx.dir, conn, None)?;
    let head: Option<(i64, String)> = audit::head(conn)?;
    let checkpoint = audit::checkpoint::all(&ctx.dir)?
        .pop()
        .map(|(_, cp)| {
            format!(
                "#{} {} ({})",
                cp.seq,
                cp.hash,
                date_time_of(cp.written_at_ms)
            )
        })
        .unwrap_or_else(|| "none yet".into());
    let entries = match verdict {
        audit::Verdict::Intact { entries } => entries.to_string(),
        audit::Verdict::Broken { at_seq, reason } => {
            c.fail(format!("the chain breaks at entry {at_seq}: {reason}"));
            "broken".into()
        }
    };
    let (seq, hash) = head.unwrap_or_default();
    c.rows
        .push(vec![entries, seq.to_string(), hash, checkpoint]);
    c.summary = "the hash chain, the alerts' seals and the signed checkpoints verify".into();
    Ok(c)
}

/// (not before, not after) of a PEM certificate, ms.
fn cert_validity(path: &std::path::Path) -> Result<(i64, i64)> {
    crate::trust::pki::validity_of(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })
}

fn file_age_days(path: &std::path::Path, now_ms: i64) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let ms = modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    Some((now_ms - ms) / DAY_MS)
}

fn keys_control(ctx: &Context, conn: &Connection, now_ms: i64) -> Result<Control> {
    let max_age = ctx.config.accountability.max_key_age_days as i64;
    let mut c = Control::new(
        ControlId::Keys,
        vec!["key", "created / valid from", "expires", "age (days)"],
    );
    for (name, path) in [
        ("CA certificate", ctx.dir.ca_cert()),
        ("server certificate", ctx.dir.server_cert()),
    ] {
        let (from, until) = cert_validity(&path)?;
        if until <= now_ms {
            c.fail(format!("the {name} expired on {}", date_of(until)));
        } else if until - now_ms < 30 * DAY_MS {
            c.findings.push(format!(
                "the {name} expires on {}: renew it",
                date_of(until)
            ));
        }
        c.rows.push(vec![
            name.into(),
            date_of(from),
            date_of(until),
            ((now_ms - from) / DAY_MS).to_string(),
        ]);
    }
    let age_keys: Vec<(String, i64)> = {
        let mut stmt = conn.prepare("SELECT recipient, created_at_ms FROM age_keys ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    if let Some((_, created)) = age_keys.last() {
        let age = (now_ms - created) / DAY_MS;
        if age > max_age {
            c.fail(format!("the current age key is {age} days old (rotate at least every {max_age}: nachtwacht keys rotate)"));
        }
    }
    for (i, (recipient, created)) in age_keys.iter().enumerate() {
        let current = if i + 1 == age_keys.len() {
            " (current)"
        } else {
            " (retired, still decrypts)"
        };
        c.rows.push(vec![
            format!(
                "age key {}…{current}",
                &recipient[..recipient.len().min(16)]
            ),
            date_of(*created),
            String::new(),
            ((now_ms - created) / DAY_MS).to_string(),
        ]);
    }
    for (name, path) in [
        ("pseudonym keys", ctx.dir.pseudonym_keys()),
        ("audit signing key", ctx.dir.audit_signing_key()),
    ] {
        let age = file_age_days(&path, now_ms);
        c.rows.push(vec![
            name.into(),
            String::new(),
            String::new(),
            age.map(|a| a.to_string())
                .unwrap_or_else(|| "missing".into()),
        ]);
    }
    let rotations: i64 = conn.query_row(
        "SELECT count(*) FROM audit_log WHERE action = 'keys.rotate'",
        [],
        |r| r.get(0),
    )?;
    c.summary = format!("certificates valid, current age key younger than {max_age} days; {rotations} rotation(s) audited");
    Ok(c)
}

fn revocation_control(conn: &Connection) -> Result<Control> {
    let mut c = Control::new(ControlId::Revocations, vec!["station", "revoked"]);
    let revoked: Vec<(String, i64)> = {
        let mut stmt = conn.prepare(
            "SELECT name, revoked_at_ms FROM stations WHERE revoked_at_ms IS NOT NULL ORDER BY revoked_at_ms",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let crl: Option<(i64, i64, i64)> = conn
        .query_row(
            "SELECT number, signed_at_ms, revoked_count FROM crls ORDER BY number DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (number, signed_at, count) = crl.unwrap_or((0, i64::MIN, 0));
    if (count as usize) < revoked.len() {
        c.fail(format!(
            "{} stations are revoked but the current CRL (number {number}) lists {count}",
            revoked.len()
        ));
    }
    for (name, at) in &revoked {
        if *at > signed_at {
            c.fail(format!(
                "station {name} was revoked after the current CRL was signed"
            ));
        }
        c.rows.push(vec![name.clone(), date_time_of(*at)]);
    }
    c.summary = format!(
        "{} revoked stations, all in the current CRL (number {number}{})",
        revoked.len(),
        crl.map(|(_, at, _)| format!(", signed {}", date_time_of(at)))
            .unwrap_or_default()
    );
    Ok(c)
}

fn budget_control(ctx: &Context, conn: &Connection) -> Result<Control> {
    let mut c = Control::new(
        ControlId::PrivacyBudgets,
        vec![
            "project / period",
            "budget ε",
            "δ",
            "spent ε",
            "left ε",
            "releases",
            "largest release ε",
        ],
    );
    let mut stmt = conn.prepare(
        "SELECT name, epsilon_budget, delta, epsilon_spent, epsilon_sum FROM research_projects ORDER BY name",
    )?;
    let projects = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, f64>(1)?,
            r.get::<_, f64>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, f64>(4)?,
        ))
    })?;
    for p in projects {
        let (name, budget, delta, spent, sum) = p?;
        let (mut releases, mut largest, mut released) = (0i64, None::<f64>, None::<f64>);
        let mut stmt = conn.prepare(
            "SELECT detail FROM audit_log WHERE action = 'research.release' AND actor = ?1",
        )?;
        for detail in stmt.query_map([format!("research:{name}")], |r| r.get::<_, String>(0))? {
            let Ok(detail) = serde_json::from_str::<serde_json::Value>(&detail?) else {
                continue;
            };
            releases += 1;
            if let Some(epsilon) = detail.get("epsilon").and_then(serde_json::Value::as_f64) {
                largest = Some(largest.map_or(epsilon, |l| l.max(epsilon)));
                released = Some(released.unwrap_or(0.0) + epsilon);
            }
        }
        if spent > budget + 1e-9 {
            c.fail(format!(
                "project {name} spent ε {spent:.4} of a budget of {budget:.4}"
            ));
        }
        if released.unwrap_or(0.0) > sum + 1e-9 {
            c.fail(format!(
                "project {name}'s ledger holds Σε {sum:.4} but its audited releases add up to {:.4}",
                released.unwrap_or(0.0)
            ));
        }
        c.rows.push(vec![
            name,
            format!("{budget:.4}"),
            format!("{delta:e}"),
            format!("{spent:.4}"),
            format!("{:.4}", (budget - spent).max(0.0)),
            releases.to_string(),
            largest.map(|l| format!("{l:.4}")).unwrap_or_default(),
        ]);
    }
    let cap = ctx.config.research.person_epsilon_per_year;
    let mut stmt =
        conn.prepare("SELECT period, epsilon_spent FROM privacy_loss_periods ORDER BY period")?;
    let periods = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?;
    for p in periods {
        let (period, spent) = p?;
        if spent > cap + 1e-9 {
            c.fail(format!(
                "the privacy loss per person in {period} is ε {spent:.4}, above the cap {cap}"
            ));
        }
        c.rows.push(vec![
            format!("per person, {period}"),
            format!("{cap:.4}"),
            format!("{:e}", ctx.config.research.person_delta_per_year),
            format!("{spent:.4}"),
            format!("{:.4}", (cap - spent).max(0.0)),
            String::new(),
            String::new(),
        ]);
    }
    c.summary = "no project beyond its (ε, δ) budget, every release in its ledger, no person beyond the yearly cap".into();
    Ok(c)
}

fn retention_control(ctx: &Context, now_ms: i64) -> Result<Control> {
    let mut c = Control::new(ControlId::Retention, vec!["what", "count"]);
    let path = ctx.dir.retention_policy();
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let policy = match policy::parse(&text) {
        Ok(p) => p,
        Err(problems) => {
            c.fail(format!(
                "retention.toml is not valid: {}",
                problems.join("; ")
            ));
            c.summary = "the retention policy could not be read".into();
            return Ok(c);
        }
    };
    let plan = retention::plan(ctx, &policy, now_ms)?;
    let unheld: Vec<&retention::PersonPlan> = plan
        .persons
        .iter()
        .filter(|p| !p.due.is_empty() && p.holds.is_empty())
        .collect();
    let held = plan.persons.iter().filter(|p| !p.holds.is_empty()).count();
    let past = unheld.len()
        + plan.evidence
        + plan.quarantine.len()
        + plan.exports.len()
        + plan.audit_entries;
    if past > 0 {
        c.fail(format!(
            "data past its retention: {} persons, {} evidence copies, {} quarantined bundles, {} case archives, {} audit entries (nachtwacht retention run)",
            unheld.len(), plan.evidence, plan.quarantine.len(), plan.exports.len(), plan.audit_entries
        ));
    }
    let conn = ctx.db.lock();
    let last_run: Option<i64> = conn
        .query_row(
            "SELECT max(at_ms) FROM audit_log WHERE action LIKE 'retention.%' AND action <> 'retention.changed'",
            [],
            |r| r.get(0),
        )?;
    let holds = hold::in_force(&conn, None)?;
    c.rows.push(vec![
        "last retention run".into(),
        last_run
            .map(date_time_of)
            .unwrap_or_else(|| "none recorded".into()),
    ]);
    c.rows
        .push(vec!["items past their retention".into(), past.to_string()]);
    c.rows
        .push(vec!["legal holds in force".into(), holds.len().to_string()]);
    c.rows.push(vec![
        "persons with due data kept by a hold".into(),
        held.to_string(),
    ]);
    c.rows
        .push(vec!["policy (SHA-256)".into(), policy.digest().to_string()]);
    c.summary = "nothing is kept past its retention except under a legal hold".into();
    Ok(c)
}

fn config_control(ctx: &Context, conn: &Connection) -> Result<Control> {
    let mut c = Control::new(
        ControlId::ConfigurationChanges,
        vec!["when", "who", "what", "object"],
    );
    let mut stmt = conn.prepare(
        "SELECT at_ms, actor, action, object FROM audit_log
          WHERE action IN ('rules.changed','retention.changed','keys.rotate','research.project.create')
          ORDER BY seq DESC LIMIT 200",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (at, actor, action, object) = row?;
        c.rows.push(vec![date_time_of(at), actor, action, object]);
    }
    // A file changed on disk but not yet loaded (recorded, with its old and new values): the
    // change is not in the audit log yet.
    let files = crate::evaluate::rules_files::RuleFile::ALL
        .iter()
        .map(|f| {
            (
                f.file_name().to_string(),
                ctx.dir.rules().join(f.file_name()),
            )
        })
        .chain([("retention.toml".to_string(), ctx.dir.retention_policy())]);
    for (name, path) in files {
        let Ok(on_disk) = std::fs::read_to_string(&path) else {
            continue;
        };
        let in_force: Option<String> = conn
            .query_row(
                "SELECT content FROM rules_in_force WHERE file = ?1",
                [&name],
                |r| r.get(0),
            )
            .optional()?;
        if in_force.is_some_and(|t| t != on_disk) {
            c.fail(format!("{name} was changed on disk and the change is not yet recorded (the server records it when it next loads the file)"));
        }
    }
    c.summary =
        "every change of rules, retention policy, keys and budgets is in the audit log".into();
    Ok(c)
}

fn permissions_control(ctx: &Context) -> Result<Control> {
    let mut c = Control::new(ControlId::Permissions, vec!["path", "mode"]);
    let checked = ctx.dir.check_private().map_err(|source| Error::Io {
        path: ctx.dir.root().display().to_string(),
        source,
    })?;
    if let Err(not_private) = checked {
        for (path, mode) in &not_private.examples {
            c.rows.push(vec![
                path.display().to_string(),
                format!("{:o}", mode & 0o777),
            ]);
        }
        c.fail(format!(
            "{} entries of the data directory grant access to group or others (fix: chmod -R go-rwx)",
            not_private.count
        ));
    }
    c.summary =
        "no key, database, dataset or other file of the data directory is readable by other users"
            .into();
    Ok(c)
}

/// `Cargo.lock` of this build: the dependency list, with versions.
const CARGO_LOCK: &str = include_str!("../../Cargo.lock");

fn software_control() -> Control {
    let mut c = Control::new(ControlId::Software, vec!["package", "version"]);
    let mut name = None;
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in CARGO_LOCK.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            versions
                .entry(n)
                .or_default()
                .push(v.trim_matches('"').to_string());
        }
    }
    c.rows
        .push(vec!["nachtwacht".into(), env!("CARGO_PKG_VERSION").into()]);
    for (n, vs) in &versions {
        c.rows.push(vec![n.clone(), vs.join(", ")]);
    }
    // The data path must compile one polars and one arrow (opendp pins polars).
    for critical in ["polars", "arrow", "rustls", "ring", "age"] {
        if versions.get(critical).is_some_and(|v| v.len() > 1) {
            c.fail(format!(
                "{critical} is compiled in several versions: {}",
                versions[critical].join(", ")
            ));
        }
    }
    c.summary = format!(
        "nachtwacht {} with {} locked dependencies",
        env!("CARGO_PKG_VERSION"),
        versions.len()
    );
    c
}

/// The report as one HTML page (printable, no script).
pub fn html(report: &Report) -> String {
    let failed = report.failed();
    let mut b = format!(
        "<!doctype html><html lang=\"nl\"><head><meta charset=\"utf-8\"><title>Nalevingsrapport / Compliance report</title>\
         <style>body{{font-family:sans-serif;max-width:60em;margin:1em auto}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:2px 6px;text-align:left}}.pass{{color:#060}}.fail{{color:#b00;font-weight:bold}}</style></head><body>\
         <h1>Nalevingsrapport / Compliance report</h1><p>{} · {} · nachtwacht {}</p>\
         <p id=\"overall\" class=\"{}\">{} / {} controls pass{}</p><ol>",
        esc(&report.data_dir),
        date_time_of(report.generated_at_ms),
        env!("CARGO_PKG_VERSION"),
        if failed.is_empty() { "pass" } else { "fail" },
        report.controls.len() - failed.len(),
        report.controls.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; FAILED: {}", failed.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "))
        }
    );
    for c in &report.controls {
        let (title, bio) = c.id.title();
        let (class, word) = match c.verdict {
            Verdict::Pass => ("pass", "PASS"),
            Verdict::Fail => ("fail", "FAIL"),
        };
        b += &format!(
            "<li><a href=\"#{id}\">{}</a> <span class=\"{class}\">{word}</span></li>",
            esc(title),
            id = c.id.as_str()
        );
        let _ = bio;
    }
    b += "</ol>";
    for c in &report.controls {
        let (title, bio) = c.id.title();
        let (class, word) = match c.verdict {
            Verdict::Pass => ("pass", "PASS"),
            Verdict::Fail => ("fail", "FAIL"),
        };
        b += &format!(
            "<section id=\"{id}\" data-verdict=\"{class}\"><h2>{} <span class=\"{class}\">{word}</span></h2><p>{} · {}</p>",
            esc(title),
            esc(bio),
            esc(&c.summary),
            id = c.id.as_str()
        );
        if !c.findings.is_empty() {
            b += "<ul>";
            for f in &c.findings {
                b += &format!(
                    "<li class=\"{}\">{}</li>",
                    if c.verdict == Verdict::Fail {
                        "fail"
                    } else {
                        ""
                    },
                    esc(f)
                );
            }
            b += "</ul>";
        }
        if !c.rows.is_empty() {
            b += "<table><tr>";
            for h in &c.columns {
                b += &format!("<th>{}</th>", esc(h));
            }
            b += "</tr>";
            for row in &c.rows {
                b += "<tr>";
                for cell in row {
                    b += &format!("<td>{}</td>", esc(cell));
                }
                b += "</tr>";
            }
            b += "</table>";
        }
        b += "</section>";
    }
    b += "</body></html>";
    b
}

/// The person an audit entry's detail names (`"person": 42`), if any.
fn person_of(detail: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(detail)
        .ok()?
        .get("person")?
        .as_i64()
}

/// Every person an audit entry's detail names: `person` (one) or `persons` (a list).
fn persons_named(detail: &str) -> Vec<i64> {
    let Ok(detail) = serde_json::from_str::<serde_json::Value>(detail) else {
        return Vec::new();
    };
    let one = detail.get("person").and_then(serde_json::Value::as_i64);
    let list = detail
        .get("persons")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_i64);
    one.into_iter().chain(list).collect()
}
