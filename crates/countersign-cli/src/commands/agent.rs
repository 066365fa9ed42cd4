//! The agent side: `request` (submit, wait, print) and `run` (submit, wait, redeem, run the
//! command only if granted, report its exit status).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use countersign_client::Client;
use countersign_core::api::ActionView;
use countersign_core::canonical::StrictObject;
use countersign_core::{ActionRequest, ActionStatus, ActionType, Diff, ExecutionOutcome, Tag};
use serde_json::Value;

/// Exit status when the request was denied.
pub const EXIT_DENIED: i32 = 3;
/// Exit status when it expired or was cancelled.
pub const EXIT_EXPIRED: i32 = 4;
/// Exit status when it was still pending when we stopped waiting.
pub const EXIT_PENDING: i32 = 5;

/// What to ask for, and where.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// Service URL.
    #[arg(
        long,
        env = "COUNTERSIGN_SERVER",
        default_value = "http://127.0.0.1:8750"
    )]
    pub server: String,
    /// Agent API token. Prefer COUNTERSIGN_TOKEN or --token-file: a flag's value is visible
    /// to every user of the machine in `ps`.
    #[arg(
        long,
        env = "COUNTERSIGN_TOKEN",
        hide_env_values = true,
        required_unless_present = "token_file"
    )]
    pub token: Option<String>,
    /// Read the agent token from this file (`-`: standard input).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Dotted action type, e.g. `db.export`.
    #[arg(long = "type")]
    pub action_type: String,
    /// What it touches.
    #[arg(long)]
    pub resource: String,
    /// Where.
    #[arg(long, default_value = "prod")]
    pub environment: String,
    /// Why.
    #[arg(long)]
    pub justification: String,
    /// A parameter, `key=value` (value parsed as JSON when it is JSON). Repeatable.
    #[arg(long = "param", value_parser = parse_pair)]
    pub params: Vec<(String, Value)>,
    /// A context entry, `key=value`. Repeatable.
    #[arg(long = "context", value_parser = parse_pair)]
    pub context: Vec<(String, Value)>,
    /// A tag. Repeatable.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// The human this agent acts for.
    #[arg(long)]
    pub on_behalf_of: Option<String>,
    /// An emergency: ask for break-glass (granted at once only where the policy allows it
    /// for this agent, marked everywhere, and reviewed afterwards).
    #[arg(long)]
    pub break_glass: bool,
    /// A unified diff file to show approvers.
    #[arg(long)]
    pub diff: Option<PathBuf>,
    /// Syntax of the diff (json, yaml, sql, hcl, ...).
    #[arg(long)]
    pub diff_language: Option<String>,
    /// How long to wait for a decision, in seconds.
    #[arg(long, default_value_t = 900)]
    pub wait: u64,
}

fn parse_pair(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {s:?}"))?;
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

impl RequestArgs {
    fn to_request(&self) -> anyhow::Result<ActionRequest> {
        let diff = match &self.diff {
            Some(path) => Some(Diff::Unified {
                text: std::fs::read_to_string(path)
                    .with_context(|| format!("reading diff {}", path.display()))?,
                language: self.diff_language.clone(),
            }),
            None => None,
        };
        let request = ActionRequest {
            action_type: ActionType::new(&self.action_type)?,
            resource: self.resource.clone(),
            environment: self.environment.clone(),
            parameters: StrictObject(self.params.iter().cloned().collect()),
            justification: self.justification.clone(),
            context: StrictObject(self.context.iter().cloned().collect()),
            diff,
            tags: self.tags.iter().map(Tag::new).collect::<Result<_, _>>()?,
            on_behalf_of: self.on_behalf_of.clone(),
            break_glass: self.break_glass,
        };
        request.validate()?;
        Ok(request)
    }
}

/// Submits and waits until decided or `wait` seconds passed.
async fn submit_and_wait(args: &RequestArgs) -> anyhow::Result<(Client, ActionView)> {
    let token = crate::secret::resolve(
        args.token.clone(),
        args.token_file.as_deref(),
        "agent token",
    )?;
    let client = Client::new(&args.server)?.with_token(token);
    let request = args.to_request()?;
    // One idempotency key for this submission: retries after an unknown outcome cannot create
    // a second request.
    let mut view = client.submit_with_retries(&request, 5).await?;
    eprintln!(
        "request {} submitted: {} — {}",
        view.id,
        status_word(view.status),
        view.action.policy.reason
    );
    if let Some(code) = &view.verification_code {
        // The approver must pick this code: tell it to them through another channel (chat,
        // phone), which is what makes their approval a confirmation.
        eprintln!("verification code: {code} — tell it to your approver");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.wait);
    while view.status == ActionStatus::Pending && tokio::time::Instant::now() < deadline {
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .as_secs()
            .clamp(1, 60);
        view = client.wait(view.id, left).await?;
    }
    Ok((client, view))
}

fn status_word(s: ActionStatus) -> &'static str {
    match s {
        ActionStatus::Pending => "waiting for approval",
        ActionStatus::Approved => "approved",
        ActionStatus::Denied => "denied",
        ActionStatus::Expired => "expired",
        ActionStatus::Cancelled => "cancelled",
    }
}

fn exit_code(s: ActionStatus) -> i32 {
    match s {
        ActionStatus::Approved => 0,
        ActionStatus::Denied => EXIT_DENIED,
        ActionStatus::Expired | ActionStatus::Cancelled => EXIT_EXPIRED,
        ActionStatus::Pending => EXIT_PENDING,
    }
}

/// `countersign request`: prints the final state (with the grant) as JSON; the exit status
/// says approved (0), denied (3), expired (4) or still pending (5).
pub async fn request(args: RequestArgs) -> anyhow::Result<i32> {
    let (_, view) = submit_and_wait(&args).await?;
    println!("{}", serde_json::to_string_pretty(&view)?);
    eprintln!("request {}: {}", view.id, status_word(view.status));
    Ok(exit_code(view.status))
}

/// Options of `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// The command to run once granted.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `countersign run … -- CMD ARGS`.
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let (client, view) = submit_and_wait(&args.request).await?;
    if view.status != ActionStatus::Approved {
        eprintln!(
            "request {}: {}; not running {:?}",
            view.id,
            status_word(view.status),
            args.command[0]
        );
        return Ok(exit_code(view.status));
    }
    let Some(grant) = &view.grant else {
        bail!("request {} is approved but carries no grant", view.id);
    };
    // Redeem before acting: a grant someone else used, or one for other bytes, stops us here.
    client
        .redeem(grant.grant.grant_id, view.digest)
        .await
        .context("redeeming the grant")?;
    eprintln!(
        "grant {} redeemed; running {:?}",
        grant.grant.grant_id, args.command
    );
    let status = tokio::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .status()
        .await;
    let (outcome, code) = match status {
        Ok(s) => (
            ExecutionOutcome {
                succeeded: s.success(),
                exit_code: s.code(),
                detail: String::new(),
            },
            s.code().unwrap_or(1),
        ),
        Err(e) => (
            ExecutionOutcome {
                succeeded: false,
                exit_code: None,
                detail: format!("could not start: {e}"),
            },
            127,
        ),
    };
    client
        .report_outcome(view.id, &outcome)
        .await
        .context("reporting the outcome")?;
    eprintln!(
        "outcome reported: {}",
        if outcome.succeeded {
            "succeeded"
        } else {
            "failed"
        }
    );
    Ok(code)
}
