//! `research`: projects with their privacy budgets, and the bearer tokens researchers query with.

use anyhow::Context as _;
use clap::Subcommand;
use nachtwacht::research;

use super::{DataDirArg, ACTOR_CLI};

#[derive(Subcommand)]
pub enum ResearchCommand {
    /// Create a research project with a total privacy budget.
    AddProject {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        name: String,
        /// The project's lifetime budget ε (at δ below).
        #[arg(long)]
        epsilon: f64,
        /// The δ of the (ε, δ) budget: the chance the ε guarantee fails. At most 0.001.
        #[arg(long, default_value_t = 1e-6)]
        delta: f64,
        #[arg(long, default_value_t = 1.0)]
        max_epsilon_per_query: f64,
    },
    /// Issue a bearer token for a project (shown once), held by one researcher account.
    Token {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        project: String,
        /// The researcher who holds the token (their staff screening is checked on each use).
        #[arg(long)]
        holder: String,
        #[arg(long, default_value_t = 90)]
        ttl_days: u32,
    },
    /// List research tokens (ids only; the tokens themselves are never stored).
    Tokens {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        project: Option<String>,
    },
    /// Revoke a research token by the id `research tokens` shows; takes effect on the next request.
    RevokeToken {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        id: String,
    },
}

pub fn run(command: ResearchCommand) -> anyhow::Result<()> {
    match command {
        ResearchCommand::AddProject {
            dir,
            name,
            epsilon,
            delta,
            max_epsilon_per_query,
        } => {
            let budget = research::Budget {
                epsilon,
                delta,
                max_epsilon_per_query,
            };
            research::create_project(&dir.open()?, &name, budget, ACTOR_CLI)
                .context("creating research project")?;
            println!("Research project {name} created with (ε, δ) = ({epsilon}, {delta})");
        }
        ResearchCommand::Token {
            dir,
            project,
            holder,
            ttl_days,
        } => {
            let token = research::issue_token(&dir.open()?, &project, &holder, ttl_days, ACTOR_CLI)
                .context("issuing token")?;
            println!("{token}");
            eprintln!("token id: {}", research::token_id(&token));
        }
        ResearchCommand::Tokens { dir, project } => {
            let tokens = research::list_tokens(&dir.open()?, project.as_deref())
                .context("listing tokens")?;
            let day = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default()
            };
            println!(
                "{:<14} {:<20} {:<16} {:<11} {:<11} revoked",
                "id", "project", "holder", "created", "expires"
            );
            for t in tokens {
                println!(
                    "{:<14} {:<20} {:<16} {:<11} {:<11} {}",
                    t.id,
                    t.project,
                    t.holder.as_deref().unwrap_or("-"),
                    day(t.created_at_ms),
                    day(t.expires_at_ms),
                    t.revoked_at_ms.map(day).unwrap_or_else(|| "-".into())
                );
            }
        }
        ResearchCommand::RevokeToken { dir, id } => {
            research::revoke_token(&dir.open()?, &id, ACTOR_CLI).context("revoking token")?;
            println!("Token {id} revoked");
        }
    }
    Ok(())
}
