//! Each account's notification settings: the address mail goes to, the alert kinds an officer
//! wants to hear about, and the manager an officer reports to (who receives escalations).

use crate::base::db::{params, Connection, OptionalExtension};

use super::Result;
use crate::alerts::AlertKind;
use crate::base::db::Db;
use crate::registry::accounts::{Account, Role};
use crate::trust::audit;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settings {
    pub email: Option<String>,
    pub kinds: Vec<AlertKind>,
    /// The username of the officer's manager.
    pub manager: Option<String>,
}

pub fn of(conn: &Connection, account_id: i64) -> Result<Settings> {
    let (email, manager) = conn
        .query_row(
            "SELECT a.email, m.username FROM accounts a
               LEFT JOIN accounts m ON m.id = a.manager_id WHERE a.id = ?1",
            [account_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((None, None));
    let mut stmt = conn.prepare("SELECT kind FROM notification_kinds WHERE account_id = ?1")?;
    let stored: Vec<String> = stmt
        .query_map([account_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let kinds = AlertKind::ALL
        .into_iter()
        .filter(|k| stored.iter().any(|s| s == k.as_str()))
        .collect();
    Ok(Settings {
        email,
        kinds,
        manager,
    })
}

/// A work address: one `@`, no spaces, at most 254 characters, and one lettre accepts.
pub fn valid_email(email: &str) -> bool {
    email.len() <= 254
        && email.matches('@').count() == 1
        && !email.chars().any(char::is_whitespace)
        && email.parse::<lettre::Address>().is_ok()
}

/// Saves an account's own choice: its address (`None` clears it: no mail) and, for officers, the
/// alert kinds to be told about. Saving the same choice twice changes nothing. Audited as
/// `account.notifications` (whether an address is set, not the address).
pub fn save_own(
    db: &Db,
    account: &Account,
    email: Option<&str>,
    kinds: &[AlertKind],
    now_ms: i64,
) -> Result<()> {
    let email = email.map(str::trim).filter(|e| !e.is_empty());
    if let Some(e) = email {
        if !valid_email(e) {
            return Err(crate::base::refusal::Refusal::NotAnEmail(e.to_string()).into());
        }
    }
    if account.role != Role::Officer && !kinds.is_empty() {
        return Err(crate::base::refusal::Refusal::NotifyOfficersOnly.into());
    }
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE accounts SET email = ?2 WHERE id = ?1",
        params![account.id, email],
    )?;
    tx.execute(
        "DELETE FROM notification_kinds WHERE account_id = ?1",
        [account.id],
    )?;
    for kind in kinds {
        tx.execute(
            "INSERT OR IGNORE INTO notification_kinds (account_id, kind) VALUES (?1, ?2)",
            params![account.id, kind.as_str()],
        )?;
    }
    audit::append(
        &tx,
        now_ms,
        &account.username,
        "account.notifications",
        &format!("account:{}", account.id),
        &serde_json::json!({
            "email_set": email.is_some(),
            "kinds": kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        })
        .to_string(),
    )?;
    tx.commit()?;
    Ok(())
}

/// Sets (or with `None` clears) the manager an officer reports to. Audited as `account.manager`.
pub fn set_manager(
    db: &Db,
    officer: &str,
    manager: Option<&str>,
    actor: &str,
    now_ms: i64,
) -> Result<()> {
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let role_of = |name: &str| -> Result<Option<(i64, String)>> {
        Ok(tx
            .query_row(
                "SELECT id, role FROM accounts WHERE username = ?1 AND disabled_at_ms IS NULL",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    };
    let officer_id = match role_of(officer)? {
        Some((id, role)) if role == Role::Officer.as_str() => id,
        _ => {
            return Err(
                crate::base::refusal::Refusal::NotAnActiveOfficer(officer.to_string()).into(),
            )
        }
    };
    let manager_id = match manager {
        None => None,
        Some(m) => match role_of(m)? {
            Some((id, role)) if role == Role::Manager.as_str() => Some(id),
            _ => {
                return Err(crate::base::refusal::Refusal::NotAnActiveManager(m.to_string()).into())
            }
        },
    };
    tx.execute(
        "UPDATE accounts SET manager_id = ?2 WHERE id = ?1",
        params![officer_id, manager_id],
    )?;
    audit::append(
        &tx,
        now_ms,
        actor,
        "account.manager",
        &format!("account:{officer_id}"),
        &serde_json::json!({ "manager": manager }).to_string(),
    )?;
    tx.commit()?;
    Ok(())
}

/// Active managers, for the administrator's form.
pub fn managers(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT username FROM accounts
          WHERE role = 'manager' AND disabled_at_ms IS NULL ORDER BY username",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Each officer's manager (by the officer's account id), for the administrator's page.
pub fn manager_of_officers(conn: &Connection) -> Result<std::collections::HashMap<i64, String>> {
    let mut stmt = conn.prepare(
        "SELECT o.id, m.username FROM accounts o JOIN accounts m ON m.id = o.manager_id
          WHERE o.role = 'officer'",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
