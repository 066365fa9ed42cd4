//! `countersign admin`: operations on a data directory (the service may be running).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use countersign_core::{Clock, KeyId};
use countersign_server::{ServiceKey, SystemClock, admin};
use countersign_store::{Approver, Store};
use uuid::Uuid;

/// Options of `admin`.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Data directory of the service.
    #[arg(
        long,
        env = "COUNTERSIGN_DATA_DIR",
        default_value = "./countersign-data"
    )]
    pub data_dir: PathBuf,
    /// The shared PostgreSQL database of a replicated service (instead of the data
    /// directory's SQLite file).
    #[arg(long, env = "COUNTERSIGN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Who is doing this, for the audit log.
    #[arg(long, env = "USER", default_value = "admin")]
    pub admin: String,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Admin subcommands.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Issue an API token for an agent (printed once).
    AgentToken {
        /// Agent identity, e.g. `agent:deploy-bot`.
        agent_id: String,
    },
    /// Revoke an agent token by its id.
    RevokeAgentToken {
        /// Token id (from `list-agent-tokens`).
        token_id: Uuid,
    },
    /// List agent tokens (ids only; tokens are never stored).
    ListAgentTokens,
    /// Create or update an approver.
    Approver {
        /// Approver identity, e.g. an email address.
        id: String,
        /// Group membership (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// List approvers and their keys.
    ListApprovers,
    /// Issue a one-time enrolment code for an approver's key (printed once).
    EnrolmentCode {
        /// Approver identity.
        approver_id: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: i64,
    },
    /// Revoke an approver key.
    RevokeKey {
        /// Key id (64 hex characters).
        key_id: KeyId,
        /// Why, for the audit log.
        #[arg(long, default_value = "revoked by admin")]
        reason: String,
    },
    /// Print the service's public key (PEM) and its id.
    ServerKey,
    /// Move an embedded deployment to PostgreSQL: every table, audit log included, into an
    /// empty database; then check both logs have the same root and match the last checkpoint.
    MigrateStore {
        /// The SQLite store: `sqlite:DATA_DIR` or `sqlite:FILE.db`.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: `postgres://…` (empty).
        #[arg(long)]
        to: String,
    },
}

/// Runs an admin command.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::MigrateStore { from, to } = &args.command {
        return super::migrate::run(from, to).await;
    }
    let store: Arc<dyn Store> =
        super::database::open(&args.data_dir, args.database_url.as_deref()).await?;
    let now = SystemClock.now();
    let s = store.as_ref();
    match args.command {
        AdminCommand::AgentToken { agent_id } => {
            let (id, token) = admin::issue_agent_token(s, &args.admin, &agent_id, now).await?;
            eprintln!("token {id} for {agent_id} (shown once; store it as a secret):");
            println!("{token}");
        }
        AdminCommand::RevokeAgentToken { token_id } => {
            admin::revoke_agent_token(s, &args.admin, token_id, now).await?;
            eprintln!("revoked token {token_id}");
        }
        AdminCommand::ListAgentTokens => {
            for t in s.agent_tokens().await? {
                let state = t
                    .revoked_at
                    .map_or_else(|| "active".to_owned(), |at| format!("revoked {at}"));
                println!(
                    "{}  {}  issued {}  {state}",
                    t.token_id, t.agent_id, t.created_at
                );
            }
        }
        AdminCommand::Approver { id, groups, name } => {
            let approver = Approver {
                display_name: name.unwrap_or_else(|| id.clone()),
                id,
                groups,
            };
            admin::put_approver(s, &args.admin, &approver, now).await?;
            eprintln!(
                "approver {} in groups [{}]",
                approver.id,
                approver.groups.join(", ")
            );
        }
        AdminCommand::ListApprovers => {
            for a in s.approvers().await? {
                println!(
                    "{}  ({})  groups [{}]",
                    a.id,
                    a.display_name,
                    a.groups.join(", ")
                );
                for k in s.keys(Some(&a.id)).await? {
                    let state = k
                        .revoked_at
                        .map_or_else(|| "active".to_owned(), |at| format!("revoked {at}"));
                    println!(
                        "    key {}  {}  [{}]  {state}",
                        k.key_id,
                        k.label,
                        k.kind.label()
                    );
                }
            }
        }
        AdminCommand::EnrolmentCode { approver_id, ttl } => {
            let (code, expires) =
                admin::issue_enrolment_code(s, &args.admin, &approver_id, ttl, now).await?;
            eprintln!("enrolment code for {approver_id}, valid until {expires} (shown once):");
            println!("{code}");
        }
        AdminCommand::RevokeKey { key_id, reason } => {
            admin::revoke_key(s, &args.admin, &key_id, &reason, now).await?;
            eprintln!("revoked key {key_id}");
        }
        AdminCommand::ServerKey => {
            let key = ServiceKey::load_or_create(&args.data_dir)?;
            eprintln!("service key id {}", key.public().key_id());
            print!("{}", key.public().to_pem());
        }
        AdminCommand::MigrateStore { .. } => unreachable!("handled before the store is opened"),
    }
    Ok(())
}
