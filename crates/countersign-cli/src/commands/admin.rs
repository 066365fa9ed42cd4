//! `countersign admin`: operations on a service, either on its store directly (the data
//! directory or `--database-url`; the service may be running) or over HTTP with an admin token
//! (`--server` and `--admin-token`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use countersign_client::Client;
use countersign_core::api::admin::{
    ApproverAdminView, ApproverUpdate, IssuedEnrolmentCode, IssuedToken, PolicyUpdate, TokenView,
};
use countersign_core::{Clock, Digest, KeyId};
use countersign_server::{Policy, ServiceKey, SystemClock, admin};
use countersign_store::{Approver, Store, TokenRole};
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
    /// Administer a running service over HTTP instead of its store (needs `--admin-token`).
    #[arg(long, env = "COUNTERSIGN_ADMIN_SERVER", requires = "admin_token")]
    pub server: Option<String>,
    /// Admin token (csadm_…) from `countersign admin admin-token`, for `--server`.
    #[arg(long, env = "COUNTERSIGN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Who is doing this, for the audit log (on the store directly; over HTTP the admin
    /// token's name is recorded).
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
    /// Issue an admin token for `--server` use (printed once; on the store only).
    AdminToken {
        /// The administrator's name, recorded with each change made with the token.
        name: String,
    },
    /// Issue a token for the organisation's directory to provision people and groups over
    /// SCIM at `/scim/v2` (printed once; on the store only).
    ScimToken {
        /// A name for the directory client, recorded with each change it makes (e.g. `okta`).
        name: String,
    },
    /// Revoke an API token (agent, admin or SCIM) by its id.
    #[command(alias = "revoke-agent-token")]
    RevokeToken {
        /// Token id (from `list-tokens`).
        token_id: Uuid,
    },
    /// List API tokens (ids only; tokens are never stored).
    #[command(alias = "list-agent-tokens")]
    ListTokens,
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
    /// Write a witness policy signed with the service key (on the store only), for mirrors to
    /// pin: a checkpoint then counts as verified only once THRESHOLD of these witnesses (their
    /// keys enrolled now) have cosigned it.
    WitnessPolicy {
        /// How many distinct witnesses must have cosigned.
        #[arg(long)]
        threshold: u32,
        /// A witness (an approver whose console cosigns); repeat for each.
        #[arg(long = "witness", required = true)]
        witnesses: Vec<String>,
        /// Where to write it.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Show, check or replace the policy.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// List notices queued for the outbound channels (docs/channels.md): the dead ones by
    /// default, with their last error; or send a dead one again (on the store only).
    Notices {
        /// Which: pending, delivered or dead.
        #[arg(long, default_value = "dead", value_parser = ["pending", "delivered", "dead"])]
        state: String,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Queue this dead notice (its id from the list) again, due now.
        #[arg(long)]
        retry: Option<i64>,
    },
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

/// Policy subcommands.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the policy in force (over HTTP): its hash on stderr, its source on stdout.
    Show,
    /// Check that a policy file loads and decides, without a service.
    Check {
        /// The Rego file.
        file: PathBuf,
    },
    /// Replace the policy of a running service (over HTTP); it takes effect at once.
    Set {
        /// The Rego file.
        file: PathBuf,
        /// Refuse unless the policy in force has this hash (from `policy show`).
        #[arg(long)]
        expect: Option<Digest>,
    },
}

/// Where the admin commands act.
enum Target {
    /// On the store, as `admin` (with the data directory for the service key).
    Store {
        store: Arc<dyn Store>,
        admin: String,
        data_dir: PathBuf,
    },
    /// Over HTTP with an admin token.
    Http(Client),
}

impl Target {
    async fn issue_agent_token(&self, agent_id: &str) -> anyhow::Result<IssuedToken> {
        Ok(match self {
            Target::Store { store, admin, .. } => {
                let (token_id, token) = admin::issue_token(
                    store.as_ref(),
                    admin,
                    TokenRole::Agent,
                    agent_id,
                    SystemClock.now(),
                )
                .await?;
                IssuedToken {
                    token_id,
                    subject: agent_id.to_owned(),
                    token,
                }
            }
            Target::Http(client) => client.admin_issue_agent_token(agent_id).await?,
        })
    }

    async fn revoke_token(&self, token_id: Uuid) -> anyhow::Result<()> {
        match self {
            Target::Store { store, admin, .. } => {
                admin::revoke_token(store.as_ref(), admin, token_id, SystemClock.now()).await?
            }
            Target::Http(client) => client.admin_revoke_token(token_id).await?,
        }
        Ok(())
    }

    async fn tokens(&self) -> anyhow::Result<Vec<TokenView>> {
        Ok(match self {
            Target::Store { store, .. } => store
                .api_tokens()
                .await?
                .into_iter()
                .map(admin::token_view)
                .collect(),
            Target::Http(client) => client.admin_tokens().await?,
        })
    }

    async fn put_approver(
        &self,
        id: &str,
        update: ApproverUpdate,
    ) -> anyhow::Result<ApproverAdminView> {
        Ok(match self {
            Target::Store { store, admin, .. } => {
                let approver = Approver {
                    id: id.to_owned(),
                    display_name: update.display_name.unwrap_or_else(|| id.to_owned()),
                    groups: update.groups,
                };
                admin::put_approver(store.as_ref(), admin, &approver, SystemClock.now()).await?;
                admin::approver_view(store.as_ref(), approver).await?
            }
            Target::Http(client) => client.admin_put_approver(id, &update).await?,
        })
    }

    async fn approvers(&self) -> anyhow::Result<Vec<ApproverAdminView>> {
        Ok(match self {
            Target::Store { store, .. } => admin::approver_views(store.as_ref()).await?,
            Target::Http(client) => client.admin_approvers().await?,
        })
    }

    async fn enrolment_code(
        &self,
        approver_id: &str,
        ttl: i64,
    ) -> anyhow::Result<IssuedEnrolmentCode> {
        Ok(match self {
            Target::Store { store, admin, .. } => {
                let (code, expires_at) = admin::issue_enrolment_code(
                    store.as_ref(),
                    admin,
                    approver_id,
                    ttl,
                    SystemClock.now(),
                )
                .await?;
                IssuedEnrolmentCode {
                    approver_id: approver_id.to_owned(),
                    code,
                    expires_at,
                }
            }
            Target::Http(client) => client.admin_enrolment_code(approver_id, Some(ttl)).await?,
        })
    }

    async fn revoke_key(&self, key_id: &KeyId, reason: &str) -> anyhow::Result<()> {
        match self {
            Target::Store { store, admin, .. } => {
                admin::revoke_key(store.as_ref(), admin, key_id, reason, SystemClock.now()).await?
            }
            Target::Http(client) => client.admin_revoke_key(key_id, reason).await?,
        }
        Ok(())
    }

    fn client(&self, what: &str) -> anyhow::Result<&Client> {
        match self {
            Target::Http(client) => Ok(client),
            Target::Store { .. } => bail!(
                "{what} works on a running service: give --server URL and --admin-token (the policy file itself is reloaded by the service when it changes)"
            ),
        }
    }
}

fn print_token(t: &TokenView) {
    let state = t
        .revoked_at
        .map_or_else(|| "active".to_owned(), |at| format!("revoked {at}"));
    let role = match t.role {
        countersign_core::api::admin::TokenRoleView::Agent => "agent",
        countersign_core::api::admin::TokenRoleView::Admin => "admin",
        countersign_core::api::admin::TokenRoleView::Scim => "scim",
    };
    println!(
        "{}  {role:<5}  {}  issued {}  {state}",
        t.token_id, t.subject, t.created_at
    );
}

fn print_approver(a: &ApproverAdminView) {
    println!(
        "{}  ({})  groups [{}]",
        a.id,
        a.display_name,
        a.groups.join(", ")
    );
    for k in &a.keys {
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

/// Runs an admin command.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match &args.command {
        AdminCommand::MigrateStore { from, to } => return super::migrate::run(from, to).await,
        AdminCommand::Policy {
            command: PolicyCommand::Check { file },
        } => {
            let policy = Policy::from_file(file)?;
            eprintln!("{} loads and decides", file.display());
            println!("{}", policy.hash());
            return Ok(());
        }
        _ => {}
    }
    let target = match (&args.server, &args.admin_token) {
        (Some(server), Some(token)) => {
            if matches!(args.command, AdminCommand::AdminToken { .. }) {
                bail!(
                    "admin tokens are issued only on the store (--data-dir or --database-url), never over HTTP"
                );
            }
            Target::Http(Client::new(server)?.with_token(token.clone()))
        }
        (Some(_), None) => bail!("--server needs --admin-token (or COUNTERSIGN_ADMIN_TOKEN)"),
        (None, _) => Target::Store {
            store: super::database::open(&args.data_dir, args.database_url.as_deref()).await?,
            admin: args.admin.clone(),
            data_dir: args.data_dir.clone(),
        },
    };
    match args.command {
        AdminCommand::AgentToken { agent_id } => {
            let issued = target.issue_agent_token(&agent_id).await?;
            eprintln!(
                "token {} for {agent_id} (shown once; store it as a secret):",
                issued.token_id
            );
            println!("{}", issued.token);
        }
        AdminCommand::AdminToken { name } => {
            let Target::Store { store, admin, .. } = &target else {
                bail!("admin tokens are issued only on the store");
            };
            let (id, token) = admin::issue_token(
                store.as_ref(),
                admin,
                TokenRole::Admin,
                &name,
                SystemClock.now(),
            )
            .await?;
            eprintln!("admin token {id} for {name} (shown once; store it as a secret):");
            println!("{token}");
        }
        AdminCommand::ScimToken { name } => {
            let Target::Store { store, admin, .. } = &target else {
                bail!("SCIM tokens are issued only on the store");
            };
            let (id, token) = admin::issue_token(
                store.as_ref(),
                admin,
                TokenRole::Scim,
                &name,
                SystemClock.now(),
            )
            .await?;
            eprintln!(
                "SCIM token {id} for {name} (shown once; give it to the directory's SCIM client):"
            );
            println!("{token}");
        }
        AdminCommand::RevokeToken { token_id } => {
            target.revoke_token(token_id).await?;
            eprintln!("revoked token {token_id}");
        }
        AdminCommand::ListTokens => {
            for t in target.tokens().await? {
                print_token(&t);
            }
        }
        AdminCommand::Approver { id, groups, name } => {
            let update = ApproverUpdate {
                display_name: name,
                groups,
            };
            let approver = target.put_approver(&id, update).await?;
            eprintln!(
                "approver {} in groups [{}]",
                approver.id,
                approver.groups.join(", ")
            );
        }
        AdminCommand::ListApprovers => {
            for a in target.approvers().await? {
                print_approver(&a);
            }
        }
        AdminCommand::EnrolmentCode { approver_id, ttl } => {
            let issued = target.enrolment_code(&approver_id, ttl).await?;
            eprintln!(
                "enrolment code for {approver_id}, valid until {} (shown once):",
                issued.expires_at
            );
            println!("{}", issued.code);
        }
        AdminCommand::RevokeKey { key_id, reason } => {
            target.revoke_key(&key_id, &reason).await?;
            eprintln!("revoked key {key_id}");
        }
        AdminCommand::ServerKey => {
            let (key_id, pem) = match &target {
                Target::Store { data_dir, .. } => {
                    let key = ServiceKey::load_or_create(data_dir)?;
                    (key.public().key_id(), key.public().to_pem())
                }
                Target::Http(client) => {
                    let view = client.server_key().await?;
                    (view.key_id, view.pem)
                }
            };
            eprintln!("service key id {key_id}");
            print!("{pem}");
        }
        AdminCommand::WitnessPolicy {
            threshold,
            witnesses,
            out,
        } => {
            let Target::Store {
                store, data_dir, ..
            } = &target
            else {
                bail!("a witness policy is signed with the service key: run this on the store");
            };
            let signed = witness_policy(store.as_ref(), data_dir, threshold, &witnesses).await?;
            let text = serde_json::to_string_pretty(&signed)?;
            std::fs::write(&out, text + "\n")
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "witness policy for {}: {} of {} ({} keys), written to {}",
                signed.policy.origin,
                signed.policy.threshold,
                signed.policy.names().join(", "),
                signed.policy.witnesses.len(),
                out.display()
            );
        }
        AdminCommand::Policy { command } => policy(&target, command).await?,
        AdminCommand::Notices {
            state,
            limit,
            retry,
        } => {
            let Target::Store { store, admin, .. } = &target else {
                bail!("the notice outbox is read on the store (--data-dir or --database-url)");
            };
            notices(store.as_ref(), admin, &state, limit, retry).await?;
        }
        AdminCommand::MigrateStore { .. } => unreachable!("handled before the store is opened"),
    }
    Ok(())
}

/// Lists the outbox's notices in `state`, or queues the dead notice `retry` again (recorded in
/// the audit log as an administrator's change).
async fn notices(
    store: &dyn Store,
    admin: &str,
    state: &str,
    limit: u32,
    retry: Option<i64>,
) -> anyhow::Result<()> {
    use countersign_store::OutboxState;
    if let Some(id) = retry {
        let dead = store.outbox_items(OutboxState::Dead, u32::MAX).await?;
        let Some(item) = dead.iter().find(|i| i.id == id) else {
            bail!("no dead notice {id} (list them with `admin notices`)");
        };
        let now = SystemClock.now();
        let event = countersign_store::NewEvent::new(
            countersign_core::Actor::Admin(admin.to_owned()),
            countersign_core::EventKind::AdminChanged {
                operation: "notice_requeued".into(),
                subject: item.channel.clone(),
                detail: format!("{} after {} attempts", item.message_id, item.attempts),
            },
        );
        store.append_events(vec![event], now).await?;
        store.retry_outbox(id, now).await?;
        eprintln!(
            "notice {id} ({} to {}) queued again",
            item.message_id, item.channel
        );
        return Ok(());
    }
    let state = OutboxState::parse(state).context("state is pending, delivered or dead")?;
    let items = store.outbox_items(state, limit).await?;
    if items.is_empty() {
        eprintln!("no {} notices", state.as_str());
    }
    for i in items {
        println!(
            "{}\t{}\t{}\t{}\tattempts {}\t{}\t{}",
            i.id,
            state.as_str(),
            i.channel,
            i.message_id,
            i.attempts,
            i.next_attempt_at,
            countersign_core::text::escape_for_display(
                i.last_error.as_deref().unwrap_or(""),
                false
            )
        );
    }
    Ok(())
}

/// A witness policy naming the active keys of `names`, for the log the store holds, signed with
/// the service key in `data_dir`.
async fn witness_policy(
    store: &dyn Store,
    data_dir: &std::path::Path,
    threshold: u32,
    names: &[String],
) -> anyhow::Result<countersign_core::witness_policy::SignedWitnessPolicy> {
    use countersign_core::witness_policy::{
        FORMAT, PolicyWitness, SignedWitnessPolicy, WitnessPolicy,
    };
    let (_, note) = store.latest_checkpoint().await?.context(
        "the service has signed no checkpoint yet: start it once, then write the policy",
    )?;
    let origin = countersign_core::SignedCheckpoint::parse_note(&note)?
        .checkpoint
        .origin;
    let mut witnesses = Vec::new();
    for name in names {
        let keys: Vec<_> = store
            .keys(Some(name))
            .await?
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .collect();
        if keys.is_empty() {
            bail!("{name} has no enrolled key to cosign with");
        }
        witnesses.extend(keys.into_iter().map(|k| PolicyWitness {
            name: name.clone(),
            key_id: k.key_id,
        }));
    }
    let policy = WitnessPolicy {
        format: FORMAT.into(),
        origin,
        threshold,
        witnesses,
        issued_at: SystemClock.now(),
    };
    policy.check().map_err(anyhow::Error::msg)?;
    let key = ServiceKey::load_or_create(data_dir)?;
    let signature = key
        .sign(&policy.signing_payload()?)
        .map_err(|_| anyhow::anyhow!("signing the witness policy failed"))?;
    Ok(SignedWitnessPolicy { policy, signature })
}

async fn policy(target: &Target, command: PolicyCommand) -> anyhow::Result<()> {
    let client = target.client("admin policy")?;
    match command {
        PolicyCommand::Show => {
            let view = client.admin_policy().await?;
            let from = view.path.as_deref().unwrap_or("the built-in policy");
            eprintln!("policy {} from {from}", view.hash);
            print!("{}", view.source);
        }
        PolicyCommand::Set { file, expect } => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let update = PolicyUpdate {
                source,
                expected_hash: expect,
            };
            let change = client.admin_set_policy(&update).await?;
            if change.changed {
                eprintln!(
                    "policy {} -> {} (in force now)",
                    change.previous_hash, change.hash
                );
            } else {
                eprintln!("policy {} already in force; nothing changed", change.hash);
            }
            println!("{}", change.hash);
        }
        PolicyCommand::Check { .. } => unreachable!("checked before a target is chosen"),
    }
    Ok(())
}
