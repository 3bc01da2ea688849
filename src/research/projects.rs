//! Research projects, their (ε, δ) budgets and their bearer tokens: creating, listing, revoking,
//! and authenticating a token to its project. Every change is audited.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    /// The (ε, δ) budget: `epsilon_budget` at `delta`.
    pub epsilon_budget: f64,
    pub delta: f64,
    /// The (ε, δ) loss so far, at `delta`.
    pub epsilon_spent: f64,
    pub max_epsilon_per_query: f64,
    /// The ledger's two totals, Σ ε and Σ ρ.
    pub epsilon_sum: f64,
    pub rho_spent: f64,
}

impl Project {
    pub(super) fn ledger(&self) -> Spent {
        Spent {
            epsilon_sum: self.epsilon_sum,
            rho: self.rho_spent,
        }
    }

    /// ε still unspent, and the largest ε one more query may ask for.
    pub fn remaining(&self) -> Result<(f64, f64)> {
        Ok((
            (self.epsilon_budget - self.epsilon_spent).max(0.0),
            largest_next_epsilon(self.ledger(), self.epsilon_budget, self.delta)?,
        ))
    }
}

/// The privacy budget an administrator gives a research project.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Total (ε, δ) the project may spend over its life.
    pub epsilon: f64,
    pub delta: f64,
    /// The largest ε one query may ask for.
    pub max_epsilon_per_query: f64,
}

impl Budget {
    /// A budget at the default δ = 10⁻⁶ (well below 1 / the number of persons ever monitored).
    pub fn new(epsilon: f64, max_epsilon_per_query: f64) -> Self {
        Self {
            epsilon,
            delta: 1e-6,
            max_epsilon_per_query,
        }
    }
}

pub(super) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn create_project(ctx: &Context, name: &str, budget: Budget, actor: &str) -> Result<i64> {
    let Budget {
        epsilon: budget,
        delta,
        max_epsilon_per_query: max_per_query,
    } = budget;
    if !(budget.is_finite() && budget >= 0.0 && max_per_query.is_finite() && max_per_query > 0.0) {
        return Err(crate::base::refusal::Refusal::ProjectBudgetInvalid.into());
    }
    if !(delta > 0.0 && delta <= 1e-3) {
        return Err(crate::base::refusal::Refusal::DeltaInvalid.into());
    }
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    // The name is unique by constraint too; asked first so the refusal can say why.
    let exists = tx
        .query_row(
            "SELECT 1 FROM research_projects WHERE name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if exists {
        return Err(crate::base::refusal::Refusal::ProjectExists(name.to_string()).into());
    }
    let id: i64 = tx.query_row(
        "INSERT INTO research_projects (name, epsilon_budget, max_epsilon_per_query, delta)
         VALUES (?1, ?2, ?3, ?4)
         RETURNING id",
        crate::params![name, budget, max_per_query, delta],
        |r| r.get(0),
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "research.project.create",
        name,
        &serde_json::json!({"epsilon_budget": budget, "delta": delta, "max_epsilon_per_query": max_per_query})
            .to_string(),
    )?;
    tx.commit()?;
    Ok(id)
}

/// A new bearer token for a project, held by the researcher `holder` (an active account with the
/// researcher role; each use checks that their screening is in force). Only its hash is stored;
/// the token is shown once.
pub fn issue_token(
    ctx: &Context,
    project: &str,
    holder: &str,
    ttl_days: u32,
    actor: &str,
) -> Result<String> {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = format!("nwr_{}", hex::encode(raw));
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let project_id: i64 = tx
        .query_row(
            "SELECT id FROM research_projects WHERE name = ?1",
            [project],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| {
            Error::Refused(crate::base::refusal::Refusal::NoProject(
                project.to_string(),
            ))
        })?;
    let holder_id: i64 = tx
        .query_row(
            "SELECT id FROM accounts
              WHERE username = ?1 AND role = 'researcher' AND disabled_at_ms IS NULL",
            [holder],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| {
            Error::Refused(crate::base::refusal::Refusal::NoActiveResearcher(
                holder.to_string(),
            ))
        })?;
    tx.execute(
        "INSERT INTO research_tokens (token_sha256, project_id, created_at_ms, expires_at_ms, account_id)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        crate::params![token_hash(&token), project_id, now, now + ttl_days as i64 * crate::base::time::DAY_MS, holder_id],
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "research.token.issue",
        project,
        &serde_json::json!({"ttl_days": ttl_days, "holder": holder}).to_string(),
    )?;
    tx.commit()?;
    Ok(token)
}

/// A token as an administrator sees it: never the token itself, only an id (the first
/// [`TOKEN_ID_LEN`] hex digits of its SHA-256, which is all the server stores).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub project: String,
    /// The researcher holding it (none for a token from before holders were recorded).
    pub holder: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Hex digits of a token's SHA-256 that name it.
pub const TOKEN_ID_LEN: usize = 12;

/// The id under which [`list_tokens`] shows a token.
pub fn token_id(token: &str) -> String {
    token_hash(token)[..TOKEN_ID_LEN].to_string()
}

/// Every token of `project` (all projects when `None`), newest first.
pub fn list_tokens(ctx: &Context, project: Option<&str>) -> Result<Vec<TokenInfo>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(
        "SELECT substr(t.token_sha256, 1, ?2), p.name, a.username, t.created_at_ms,
                t.expires_at_ms, t.revoked_at_ms
           FROM research_tokens t JOIN research_projects p ON p.id = t.project_id
           LEFT JOIN accounts a ON a.id = t.account_id
          WHERE ?1 IS NULL OR p.name = ?1
          ORDER BY t.created_at_ms DESC",
    )?;
    let tokens = stmt
        .query_map(crate::params![project, TOKEN_ID_LEN as i64], |r| {
            Ok(TokenInfo {
                id: r.get(0)?,
                project: r.get(1)?,
                holder: r.get(2)?,
                created_at_ms: r.get(3)?,
                expires_at_ms: r.get(4)?,
                revoked_at_ms: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tokens)
}

/// Revokes the token with this id (see [`TokenInfo`]) at once: its next request is refused.
/// Audited. Refuses an id that names no token, or more than one.
pub fn revoke_token(ctx: &Context, id: &str, actor: &str) -> Result<()> {
    if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(crate::base::refusal::Refusal::TokenIdInvalid.into());
    }
    let now = crate::base::time::now_ms();
    let mut conn = ctx.db.lock();
    let tx = conn.transaction()?;
    let matches: Vec<(String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT t.token_sha256, p.name FROM research_tokens t
               JOIN research_projects p ON p.id = t.project_id
              WHERE substr(t.token_sha256, 1, ?2) = lower(?1) AND t.revoked_at_ms IS NULL",
        )?;

        stmt.query_map(crate::params![id, TOKEN_ID_LEN as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    let [(hash, project)] = matches.as_slice() else {
        return Err(crate::base::refusal::Refusal::TokenIdAmbiguous(matches.len()).into());
    };
    tx.execute(
        "UPDATE research_tokens SET revoked_at_ms = ?2 WHERE token_sha256 = ?1",
        crate::params![hash, now],
    )?;
    audit::append(
        &tx,
        now,
        actor,
        "research.token.revoke",
        project,
        &serde_json::json!({"token_id": id}).to_string(),
    )?;
    tx.commit()?;
    Ok(())
}

pub(super) const PROJECT_COLUMNS: &str =
    "p.id, p.name, p.epsilon_budget, p.delta, p.epsilon_spent, \
     p.max_epsilon_per_query, p.epsilon_sum, p.rho_spent";

pub(super) fn project_row(r: &crate::base::db::Row) -> crate::base::db::Result<Project> {
    Ok(Project {
        id: r.get(0)?,
        name: r.get(1)?,
        epsilon_budget: r.get(2)?,
        delta: r.get(3)?,
        epsilon_spent: r.get(4)?,
        max_epsilon_per_query: r.get(5)?,
        epsilon_sum: r.get(6)?,
        rho_spent: r.get(7)?,
    })
}

/// Every research project, by name (for administrators).
pub fn projects(ctx: &Context) -> Result<Vec<Project>> {
    let conn = ctx.db.lock();
    let mut stmt = conn.prepare(&format!(
        "SELECT {PROJECT_COLUMNS} FROM research_projects p ORDER BY p.name"
    ))?;
    let rows = stmt.query_map([], project_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The project a valid token belongs to. The token's holder must be an active researcher whose
/// staff screening is in force (a refusal for screening is audited by `screening::require`).
pub fn authenticate(ctx: &Context, token: &str, now_ms: i64) -> Result<Project> {
    let conn = ctx.db.lock();
    let found = conn
        .query_row(
            &format!(
                "SELECT {PROJECT_COLUMNS}, a.id, a.username
                   FROM research_tokens t JOIN research_projects p ON p.id = t.project_id
                   JOIN accounts a ON a.id = t.account_id
                  WHERE t.token_sha256 = ?1 AND t.revoked_at_ms IS NULL AND t.expires_at_ms > ?2
                    AND a.role = 'researcher' AND a.disabled_at_ms IS NULL"
            ),
            crate::params![token_hash(token), now_ms],
            |r| Ok((project_row(r)?, r.get::<_, i64>(8)?, r.get::<_, String>(9)?)),
        )
        .optional()?;
    let Some((project, holder_id, holder)) = found else {
        return Err(Error::Unauthorized);
    };
    crate::registry::screening::require(&conn, holder_id, &holder, "research", now_ms).map_err(
        |e| match e {
            crate::registry::screening::Error::NotScreened(state) => Error::NotScreened(state),
            other => Error::Screening(other.to_string()),
        },
    )?;
    Ok(project)
}

/// A project by name (for the management dashboard, which has no token: its managers sign in).
pub fn project_named(ctx: &Context, name: &str) -> Result<Option<Project>> {
    Ok(ctx
        .db
        .lock()
        .query_row(
            &format!("SELECT {PROJECT_COLUMNS} FROM research_projects p WHERE p.name = ?1"),
            [name],
            project_row,
        )
        .optional()?)
}
