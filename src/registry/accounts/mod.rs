//! Web accounts: argon2id passwords, a mandatory TOTP second factor (RFC 6238), lockout after
//! repeated failures, and server-side sessions with a CSRF token each.
//!
//! Nothing here knows HTTP: `web` turns cookies and forms into calls of [`login`], [`session`] and
//! [`logout`]. Every login, failure, lockout and account change is written to the audit log.
//!
//! Sessions are random 256-bit tokens; only their SHA-256 is stored, so a copy of the database
//! does not let anyone take over a session. A session ends after [`SESSION_IDLE_MS`] without a
//! request, or [`SESSION_ABSOLUTE_MS`] after login, whichever comes first.

mod credentials;
pub use credentials::{base32_decode, base32_encode, hash_password, totp_code};
use credentials::{
    constant_time_eq, dummy_hash, password_matches, random_hex, sha256_hex, totp_step_of,
};

use crate::base::db::{Connection, OptionalExtension};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::base::db::Db;
use crate::trust::audit;

/// A session ends after this long without a request (BIO: lock idle sessions; 15 minutes).
pub const SESSION_IDLE_MS: i64 = 15 * 60 * 1000;
/// A session ends this long after login, however active.
pub const SESSION_ABSOLUTE_MS: i64 = 8 * 60 * 60 * 1000;
/// Consecutive failed logins after which an account is locked ...
pub const LOCKOUT_AFTER_FAILURES: i64 = 5;
/// ... for this long.
pub const LOCKOUT_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Deliberately vague: the user is not told which of name, password or code was wrong.
    #[error("unknown user, wrong password or wrong code")]
    BadCredentials,
    #[error("account locked after {LOCKOUT_AFTER_FAILURES} failed logins; try again later")]
    Locked,
    #[error(transparent)]
    Refused(#[from] crate::base::refusal::Refusal),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("database: {0}")]
    Db(#[from] crate::base::db::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The roles of issue 7. Each web route names the roles it admits (`web::routes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Administrator,
    Officer,
    /// Reclassering management: DP aggregates only.
    Manager,
    Researcher,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Administrator,
        Role::Officer,
        Role::Manager,
        Role::Researcher,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Officer => "officer",
            Role::Manager => "manager",
            Role::Researcher => "researcher",
            Role::Auditor => "auditor",
        }
    }
}

/// A signed-in account, as the web layer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// The password is still the one an administrator saw: the user must choose their own before
    /// anything else (the web layer allows only the password page until then).
    pub must_change_password: bool,
}

/// What an administrator hands to a new user, once: the initial password and the TOTP secret
/// (also as an `otpauth://` URI for authenticator apps). Neither is shown again, and the user
/// must replace the password at first sign-in.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub id: i64,
    pub password: String,
    pub totp_secret: String,
    pub otpauth_uri: String,
}

/// A live session: the cookie value (shown once, at login) and its CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
    pub account: Account,
}

// ---- TOTP (RFC 6238 over RFC 4226 HOTP, HMAC-SHA-1, 6 digits) ----

// ---- accounts ----

/// A random initial password (96 bits, stored only as its argon2id hash) and TOTP secret
/// (160 bits): what a new account, or one whose user lost theirs, is given.
struct Fresh {
    password: String,
    hash: String,
    totp_secret: String,
}

impl Fresh {
    fn generate() -> Result<Self> {
        let password = random_hex(12);
        let mut secret = [0u8; 20];
        rand::thread_rng().fill_bytes(&mut secret);
        Ok(Self {
            hash: hash_password(&password)?,
            password,
            totp_secret: base32_encode(&secret),
        })
    }

    /// What the administrator hands over, with the `otpauth://` URI authenticator apps read.
    fn handed_out(self, id: i64, username: &str) -> NewAccount {
        NewAccount {
            id,
            otpauth_uri: format!(
                "otpauth://totp/nachtwacht:{username}?secret={}&issuer=nachtwacht&digits=6&period=30",
                self.totp_secret
            ),
            password: self.password,
            totp_secret: self.totp_secret,
        }
    }
}

/// Creates an account with a random initial password and TOTP secret, both returned once.
pub fn create(db: &Db, username: &str, role: Role, actor: &str, now_ms: i64) -> Result<NewAccount> {
    let valid = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        return Err(crate::base::refusal::Refusal::UsernameInvalid.into());
    }
    let fresh = Fresh::generate()?;
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let taken: bool = tx
        .query_row(
            "SELECT 1 FROM accounts WHERE username = ?1",
            [username],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if taken {
        return Err(crate::base::refusal::Refusal::UsernameTaken(username.to_string()).into());
    }
    let id: i64 = tx.query_row(
        "INSERT INTO accounts (username, role, password_hash, must_change_password, created_at_ms, totp_secret)
         VALUES (?1, ?2, ?3, 1, ?4, ?5)
         RETURNING id",
        crate::params![username, role.as_str(), fresh.hash, now_ms, fresh.totp_secret],
        |r| r.get(0),
    )?;
    audit::append(
        &tx,
        now_ms,
        actor,
        "account.create",
        &format!("account:{username}"),
        &serde_json::json!({"role": role.as_str()}).to_string(),
    )?;
    tx.commit()?;
    Ok(fresh.handed_out(id, username))
}

/// Disables an account and ends its sessions at once.
pub fn disable(db: &Db, account_id: i64, actor: &str, now_ms: i64) -> Result<()> {
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let username: String = tx
        .query_row(
            "SELECT username FROM accounts WHERE id = ?1",
            [account_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| {
            Error::Refused(crate::base::refusal::Refusal::NoAccount(
                account_id.to_string(),
            ))
        })?;
    tx.execute(
        "UPDATE accounts SET disabled_at_ms = ?2 WHERE id = ?1 AND disabled_at_ms IS NULL",
        crate::params![account_id, now_ms],
    )?;
    end_sessions(&tx, account_id, now_ms)?;
    audit::append(
        &tx,
        now_ms,
        actor,
        "account.disable",
        &format!("account:{username}"),
        "{}",
    )?;
    tx.commit()?;
    Ok(())
}

/// Gives an account another role; its sessions end, so the new role applies from the next
/// sign-in. An officer's caseload assignments stay but grant nothing to another role.
pub fn set_role(db: &Db, account_id: i64, role: Role, actor: &str, now_ms: i64) -> Result<()> {
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let (username, old): (String, String) = tx
        .query_row(
            "SELECT username, role FROM accounts WHERE id = ?1",
            [account_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| {
            Error::Refused(crate::base::refusal::Refusal::NoAccount(
                account_id.to_string(),
            ))
        })?;
    tx.execute(
        "UPDATE accounts SET role = ?2 WHERE id = ?1",
        crate::params![account_id, role.as_str()],
    )?;
    end_sessions(&tx, account_id, now_ms)?;
    audit::append(
        &tx,
        now_ms,
        actor,
        "account.role",
        &format!("account:{username}"),
        &serde_json::json!({"from": old, "to": role.as_str()}).to_string(),
    )?;
    tx.commit()?;
    Ok(())
}

/// New credentials for an account whose user lost their password or authenticator: a new
/// random password (to be replaced at the next sign-in) and a new TOTP secret, returned once.
/// The old ones stop working and the account's sessions end; a lockout is lifted.
pub fn reset_credentials(db: &Db, account_id: i64, actor: &str, now_ms: i64) -> Result<NewAccount> {
    let fresh = Fresh::generate()?;
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    let username: String = tx
        .query_row(
            "SELECT username FROM accounts WHERE id = ?1",
            [account_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| {
            Error::Refused(crate::base::refusal::Refusal::NoAccount(
                account_id.to_string(),
            ))
        })?;
    tx.execute(
        "UPDATE accounts SET password_hash = ?2, totp_secret = ?3, totp_last_step = NULL,
                must_change_password = 1, failed_logins = 0, locked_until_ms = NULL
          WHERE id = ?1",
        crate::params![account_id, fresh.hash, fresh.totp_secret],
    )?;
    end_sessions(&tx, account_id, now_ms)?;
    audit::append(
        &tx,
        now_ms,
        actor,
        "account.reset",
        &format!("account:{username}"),
        "{}",
    )?;
    tx.commit()?;
    Ok(fresh.handed_out(account_id, &username))
}

fn end_sessions(conn: &Connection, account_id: i64, now_ms: i64) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET ended_at_ms = ?2 WHERE account_id = ?1 AND ended_at_ms IS NULL",
        crate::params![account_id, now_ms],
    )?;
    Ok(())
}

crate::closed_set_text!(Role);

/// One row of the administrator's account list.
#[derive(Debug, Clone)]
pub struct AccountInfo {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub created_at_ms: i64,
    pub locked_until_ms: Option<i64>,
    pub disabled_at_ms: Option<i64>,
}

/// The id of the account `username`, if there is one.
pub fn id_of(conn: &Connection, username: &str) -> crate::base::db::Result<Option<i64>> {
    conn.query_row(
        "SELECT id FROM accounts WHERE username = ?1",
        [username],
        |r| r.get(0),
    )
    .optional()
}

pub fn list(db: &Db) -> Result<Vec<AccountInfo>> {
    let conn = db.lock();
    let mut stmt = conn.prepare(
        "SELECT id, username, role, created_at_ms, locked_until_ms, disabled_at_ms
           FROM accounts ORDER BY username",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(AccountInfo {
            id: r.get(0)?,
            username: r.get(1)?,
            role: r.get(2)?,
            created_at_ms: r.get(3)?,
            locked_until_ms: r.get(4)?,
            disabled_at_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

struct Stored {
    id: i64,
    role: Role,
    password_hash: String,
    totp_secret: Option<String>,
    totp_last_step: Option<i64>,
    failed_logins: i64,
    locked_until_ms: Option<i64>,
    disabled: bool,
    must_change_password: bool,
}

fn stored(conn: &Connection, username: &str) -> Result<Option<Stored>> {
    Ok(conn
        .query_row(
            "SELECT id, role, password_hash, totp_secret, totp_last_step, failed_logins,
                    locked_until_ms, disabled_at_ms IS NOT NULL, must_change_password
               FROM accounts WHERE username = ?1",
            [username],
            |r| {
                Ok(Stored {
                    id: r.get(0)?,
                    role: r.get(1)?,
                    password_hash: r.get(2)?,
                    totp_secret: r.get(3)?,
                    totp_last_step: r.get(4)?,
                    failed_logins: r.get(5)?,
                    locked_until_ms: r.get(6)?,
                    disabled: r.get(7)?,
                    must_change_password: r.get(8)?,
                })
            },
        )
        .optional()?)
}

/// Checks password and TOTP code; on success opens a session. Every outcome is audited.
///
/// The password hash is verified outside the database lock (argon2id takes tens of
/// milliseconds by design), and even for an unknown user, so timing does not reveal which
/// usernames exist.
pub fn login(
    db: &Db,
    username: &str,
    password: &str,
    code: &str,
    client: &str,
    now_ms: i64,
) -> Result<Session> {
    let account = stored(&db.lock(), username)?;
    let hash = account
        .as_ref()
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(dummy_hash);
    let password_ok = password_matches(password, &hash);
    let object = format!("account:{username}");
    let detail = serde_json::json!({"client": client}).to_string();

    let mut conn = db.lock();
    let tx = conn.transaction()?;
    // The password was checked outside the lock (argon2 takes tens of milliseconds). Everything
    // that parallel logins change (failures, lockout, the last TOTP step) is read again here,
    // inside the transaction that holds the write lock, so each login sees the one before it: a
    // code is usable once, and every failure counts.
    let checked_hash = account.map(|a| a.password_hash);
    let account = stored(&tx, username)?;
    let password_ok = password_ok
        && account
            .as_ref()
            .is_some_and(|a| Some(&a.password_hash) == checked_hash.as_ref());
    let Some(account) = account else {
        audit::append(&tx, now_ms, "anonymous", "login.failed", &object, &detail)?;
        tx.commit()?;
        crate::base::metrics::metrics().login_failures.inc();
        return Err(Error::BadCredentials);
    };
    if account.disabled {
        audit::append(
            &tx,
            now_ms,
            username,
            "login.refused-disabled",
            &object,
            &detail,
        )?;
        tx.commit()?;
        crate::base::metrics::metrics().login_failures.inc();
        return Err(Error::BadCredentials);
    }
    if account.locked_until_ms.is_some_and(|until| until > now_ms) {
        audit::append(
            &tx,
            now_ms,
            username,
            "login.refused-locked",
            &object,
            &detail,
        )?;
        tx.commit()?;
        crate::base::metrics::metrics().login_failures.inc();
        return Err(Error::Locked);
    }
    let step = account
        .totp_secret
        .as_deref()
        .and_then(base32_decode)
        .and_then(|secret| totp_step_of(&secret, code, now_ms))
        // A code is good once: a step at or before the last accepted one is a replay.
        .filter(|step| account.totp_last_step.is_none_or(|last| *step > last));
    let (true, Some(step)) = (password_ok, step) else {
        let failures = account.failed_logins + 1;
        let locks = failures >= LOCKOUT_AFTER_FAILURES;
        tx.execute(
            "UPDATE accounts SET failed_logins = ?2, locked_until_ms = ?3 WHERE id = ?1",
            crate::params![
                account.id,
                if locks { 0 } else { failures },
                locks.then_some(now_ms + LOCKOUT_MS)
            ],
        )?;
        let action = if locks {
            "login.locked"
        } else {
            "login.failed"
        };
        audit::append(&tx, now_ms, username, action, &object, &detail)?;
        tx.commit()?;
        let m = crate::base::metrics::metrics();
        m.login_failures.inc();
        if locks {
            m.lockouts.inc();
        }
        return Err(if locks {
            Error::Locked
        } else {
            Error::BadCredentials
        });
    };
    let role = account.role;
    let (token, csrf) = (random_hex(32), random_hex(32));
    tx.execute(
        "UPDATE accounts SET failed_logins = 0, locked_until_ms = NULL, totp_last_step = ?2 WHERE id = ?1",
        crate::params![account.id, step],
    )?;
    tx.execute(
        "INSERT INTO sessions (token_sha256, account_id, csrf_token, created_at_ms, last_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        crate::params![sha256_hex(&token), account.id, csrf, now_ms],
    )?;
    audit::append(&tx, now_ms, username, "login", &object, &detail)?;
    tx.commit()?;
    Ok(Session {
        token,
        csrf,
        account: Account {
            id: account.id,
            username: username.to_string(),
            role,
            must_change_password: account.must_change_password,
        },
    })
}

/// The session behind a cookie value, if it is live; marks it seen. Expired sessions are ended.
pub fn session(db: &Db, token: &str, now_ms: i64) -> Result<Option<Session>> {
    let conn = db.lock();
    let found = conn
        .query_row(
            "SELECT s.csrf_token, s.created_at_ms, s.last_seen_ms, a.id, a.username, a.role,
                    a.must_change_password
               FROM sessions s JOIN accounts a ON a.id = s.account_id
              WHERE s.token_sha256 = ?1 AND s.ended_at_ms IS NULL AND a.disabled_at_ms IS NULL",
            [sha256_hex(token)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, bool>(6)?,
                ))
            },
        )
        .optional()?;
    let Some((csrf, created, last_seen, id, username, role, must_change_password)) = found else {
        return Ok(None);
    };
    if now_ms - last_seen > SESSION_IDLE_MS || now_ms - created > SESSION_ABSOLUTE_MS {
        conn.execute(
            "UPDATE sessions SET ended_at_ms = ?2 WHERE token_sha256 = ?1",
            crate::params![sha256_hex(token), now_ms],
        )?;
        return Ok(None);
    }
    // Touch at most every 10 s: one write per page view would serialise every request.
    if now_ms - last_seen > 10_000 {
        conn.execute(
            "UPDATE sessions SET last_seen_ms = ?2 WHERE token_sha256 = ?1",
            crate::params![sha256_hex(token), now_ms],
        )?;
    }
    let Some(role) = Role::parse(&role) else {
        return Ok(None);
    };
    Ok(Some(Session {
        token: token.to_string(),
        csrf,
        account: Account {
            id,
            username,
            role,
            must_change_password,
        },
    }))
}

pub fn logout(db: &Db, session: &Session, now_ms: i64) -> Result<()> {
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE sessions SET ended_at_ms = ?2 WHERE token_sha256 = ?1 AND ended_at_ms IS NULL",
        crate::params![sha256_hex(&session.token), now_ms],
    )?;
    let who = &session.account.username;
    audit::append(&tx, now_ms, who, "logout", &format!("account:{who}"), "{}")?;
    tx.commit()?;
    Ok(())
}

/// The shortest password a user may choose. Long passphrases beat composition rules (NIST
/// SP 800-63B); the second factor is mandatory anyway.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Replaces an account's password after checking the current one. Clears the must-change flag
/// and ends the account's other sessions (someone who knew the old password is signed out).
pub fn change_password(
    db: &Db,
    session: &Session,
    current: &str,
    new: &str,
    now_ms: i64,
) -> Result<()> {
    if new.chars().count() < MIN_PASSWORD_LEN {
        return Err(crate::base::refusal::Refusal::PasswordTooShort {
            min: MIN_PASSWORD_LEN,
        }
        .into());
    }
    if new == current {
        return Err(crate::base::refusal::Refusal::PasswordUnchanged.into());
    }
    let who = &session.account.username;
    let stored_hash: String = db.lock().query_row(
        "SELECT password_hash FROM accounts WHERE id = ?1",
        [session.account.id],
        |r| r.get(0),
    )?;
    if !password_matches(current, &stored_hash) {
        audit::append(
            &db.lock(),
            now_ms,
            who,
            "account.password-refused",
            &format!("account:{who}"),
            "{}",
        )?;
        return Err(Error::BadCredentials);
    }
    let hash = hash_password(new)?;
    let mut conn = db.lock();
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE accounts SET password_hash = ?2, must_change_password = 0 WHERE id = ?1",
        crate::params![session.account.id, hash],
    )?;
    tx.execute(
        "UPDATE sessions SET ended_at_ms = ?3
          WHERE account_id = ?1 AND token_sha256 != ?2 AND ended_at_ms IS NULL",
        crate::params![session.account.id, sha256_hex(&session.token), now_ms],
    )?;
    audit::append(
        &tx,
        now_ms,
        who,
        "account.password",
        &format!("account:{who}"),
        "{}",
    )?;
    tx.commit()?;
    Ok(())
}

/// Whether a submitted CSRF token is the session's (compared in constant time).
pub fn csrf_ok(session: &Session, submitted: &str) -> bool {
    constant_time_eq(session.csrf.as_bytes(), submitted.as_bytes())
}

#[cfg(test)]
mod tests;
