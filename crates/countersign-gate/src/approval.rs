//! The approval flow around one call: ask the service, wait (reporting progress), and run
//! exactly what was approved, once.
//!
//! The gate submits the action under the agent's own API token (so the agent is the requester,
//! and nobody can approve their own call), with a fresh idempotency key so a retry after an
//! unknown outcome never makes a second request. Once approved, it checks the request the
//! service holds is the one it wrote and hashes to the approved digest, checks the grant's
//! signature by the service key, redeems the grant (single use), and only then calls the
//! upstream — with the approved parameters, byte for byte. It reports the outcome with a hash of
//! the result.

use std::future::Future;
use std::time::Duration;

use countersign_client::{Client, ClientError};
use countersign_core::api::ActionView;
use countersign_core::canonical::to_canonical_vec;
use countersign_core::{
    ActionRequest, ActionStatus, Digest, ExecutionOutcome, PublicKey, Timestamp, Verdict,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::journal::{Effect, Journal};

/// Why a call did not run.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// Denied, by the policy or an approver; the reason carries the approvers' comments.
    #[error("denied: {reason}")]
    Denied {
        /// The request.
        id: Uuid,
        /// Why, for the agent (and the model behind it) to adjust.
        reason: String,
    },
    /// Nobody decided in time.
    #[error("the request expired before enough approvers decided")]
    Expired {
        /// The request.
        id: Uuid,
    },
    /// The request was cancelled.
    #[error("the request was cancelled")]
    Cancelled {
        /// The request.
        id: Uuid,
    },
    /// What the service holds or granted is not what the gate asked for: nothing is run.
    #[error("refusing to run: {0}")]
    Tampered(String),
    /// The arguments to forward differ from the approved ones: nothing is run.
    #[error("the call's arguments differ from the approved ones; nothing was forwarded")]
    NotApproved,
    /// The service could not be asked, or refused the request.
    #[error("approval service: {0}")]
    Service(#[from] ClientError),
    /// The run could not be recorded in the gate's journal: nothing was run.
    #[error("approved, but not run: {0}")]
    Journal(String),
}

/// Where a waiting call stands, for progress notifications to the agent.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// The request.
    pub id: Uuid,
    /// Approvals so far.
    pub approvals: u32,
    /// Approvals needed.
    pub quorum: u32,
    /// When the request expires undecided.
    pub expires_at: Timestamp,
}

/// What running the approved call gave.
#[derive(Debug)]
pub struct Ran<T> {
    /// Whatever the caller wants back.
    pub value: T,
    /// Whether the upstream reported success.
    pub succeeded: bool,
    /// What the upstream returned, as bytes to hash for the outcome report.
    pub result: Vec<u8>,
    /// What the outcome report says instead of the result's hash (why it was not run, or
    /// failed).
    pub detail: Option<String>,
    /// A program's exit status.
    pub exit_code: Option<i32>,
}

impl<T> Ran<T> {
    /// The approved call was not run after all, because `why`.
    pub fn not_forwarded(value: T, why: &str) -> Self {
        Self {
            value,
            succeeded: false,
            result: Vec::new(),
            detail: Some(format!("not forwarded: {why}")),
            exit_code: None,
        }
    }
}

/// What the service approved, for the run.
#[derive(Clone, Debug)]
pub struct Approved {
    /// The approved parameters, byte for byte those of the request.
    pub parameters: Map<String, Value>,
    /// The redeemed grant.
    pub grant_id: Uuid,
    /// When the grant expires (credentials minted for the run expire with it).
    pub expires_at: Timestamp,
}

/// The approval service, as one agent (its API token) sees it.
#[derive(Clone)]
pub struct Approval {
    client: Client,
    service_key: PublicKey,
    /// Longest single long-poll.
    wait_seconds: u64,
    /// The agent's token (the journal keeps it to report a stopped run's outcome).
    token: std::sync::Arc<str>,
    /// Where runs in progress are recorded, when the gate keeps a journal.
    journal: Option<Journal>,
}

impl Approval {
    /// Connects to `service` as the agent with `agent_token`, fetching the service key that
    /// grants must be signed with.
    pub async fn connect(service: &str, agent_token: &str) -> Result<Self, ApprovalError> {
        let client = Client::new(service)?.with_token(agent_token.to_owned());
        let service_key = client.server_key().await?.public_key;
        Ok(Self {
            client,
            service_key,
            wait_seconds: 20,
            token: agent_token.into(),
            journal: None,
        })
    }

    /// Records each run in `journal` from just before its grant is redeemed until its outcome
    /// is reported.
    #[must_use]
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Withdraws request `id` at the service (the agent cancelled its call while it waited).
    pub async fn cancel(&self, id: Uuid) -> Result<(), ApprovalError> {
        self.client.cancel(id).await?;
        Ok(())
    }

    /// Asks for `request`, waits for the decision (calling `progress` while it waits) and,
    /// when approved, runs `execute` once with the approved parameters, then reports how it
    /// went.
    pub async fn run<T, F, Fut>(
        &self,
        request: &ActionRequest,
        effect: Effect,
        progress: impl Fn(&Progress),
        execute: F,
    ) -> Result<T, ApprovalError>
    where
        F: FnOnce(Approved) -> Fut,
        Fut: Future<Output = Ran<T>>,
    {
        let mut view = self.client.submit_with_retries(request, 5).await?;
        if view.action.request != *request {
            return Err(ApprovalError::Tampered(
                "the service recorded another request than the one the gate wrote".into(),
            ));
        }
        while view.status == ActionStatus::Pending {
            progress(&Progress {
                id: view.id,
                approvals: view.approvals,
                quorum: view.quorum,
                expires_at: view.action.expires_at,
            });
            view = match self.client.wait(view.id, self.wait_seconds).await {
                Ok(v) => v,
                // The service restarting or briefly unreachable: keep waiting for the same
                // request (waiting changes nothing).
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
        }
        let id = view.id;
        match view.status {
            ActionStatus::Approved => {}
            ActionStatus::Denied => {
                return Err(ApprovalError::Denied {
                    id,
                    reason: denial_reason(&view),
                });
            }
            ActionStatus::Expired => return Err(ApprovalError::Expired { id }),
            ActionStatus::Cancelled | ActionStatus::Pending => {
                return Err(ApprovalError::Cancelled { id });
            }
        }
        let parameters = self.approved_parameters(&view, request)?;
        let grant = view
            .grant
            .as_ref()
            .ok_or_else(|| ApprovalError::Tampered("approved without a grant".into()))?;
        // A run that cannot be journalled does not start: a stop mid-run would leave no trace.
        if let Some(journal) = &self.journal {
            journal
                .begin(id, &self.token, effect)
                .map_err(|e| ApprovalError::Journal(e.to_string()))?;
        }
        // Single use: once redeemed here, nobody (the agent included) can redeem it again.
        if let Err(e) = self.client.redeem(grant.grant.grant_id, view.digest).await {
            if let Some(journal) = &self.journal {
                journal.end(id);
            }
            return Err(e.into());
        }
        let ran = execute(Approved {
            parameters,
            grant_id: grant.grant.grant_id,
            expires_at: grant.grant.expires_at,
        })
        .await;
        let outcome = ExecutionOutcome {
            succeeded: ran.succeeded,
            exit_code: ran.exit_code,
            detail: match &ran.detail {
                Some(detail) => detail.clone(),
                None => format!("result sha256:{}", Digest::of(&ran.result).to_hex()),
            },
        };
        match self.client.report_outcome(id, &outcome).await {
            Ok(()) => {
                if let Some(journal) = &self.journal {
                    journal.end(id);
                }
            }
            // The journal entry stays: the next start reports the run (as failed, since its
            // result is not known to have been recorded).
            Err(e) => tracing::warn!(%id, error = %e, "the call ran; reporting its outcome failed"),
        }
        Ok(ran.value)
    }

    /// The parameters to run with: those of the request the service approved, after checking
    /// that it is the one the gate wrote, that it hashes to the approved digest and that the
    /// grant is the service's, valid now, for that digest.
    fn approved_parameters(
        &self,
        view: &ActionView,
        request: &ActionRequest,
    ) -> Result<Map<String, Value>, ApprovalError> {
        let digest = view
            .action
            .digest()
            .map_err(|e| ApprovalError::Tampered(format!("no canonical form: {e}")))?;
        if digest != view.digest || view.action.request != *request {
            return Err(ApprovalError::Tampered(
                "the approved request is not the one the gate wrote".into(),
            ));
        }
        let grant = view
            .grant
            .as_ref()
            .ok_or_else(|| ApprovalError::Tampered("approved without a grant".into()))?;
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        grant
            .check(&self.service_key, now, &digest)
            .map_err(|e| ApprovalError::Tampered(format!("grant: {e}")))?;
        Ok(view.action.request.parameters.0.clone())
    }
}

/// Refuses to forward `arguments` unless they are, canonically, the approved parameters.
pub fn forwardable(
    approved: &Map<String, Value>,
    arguments: &Map<String, Value>,
) -> Result<(), ApprovalError> {
    let same = match (to_canonical_vec(approved), to_canonical_vec(arguments)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(ApprovalError::NotApproved)
    }
}

/// Why a request was denied, in words the agent can act on: the approvers' comments, else the
/// policy's reason.
fn denial_reason(view: &ActionView) -> String {
    let comments: Vec<String> = view
        .decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Deny)
        .map(|d| {
            if d.comment.trim().is_empty() {
                format!("{} denied it", d.approver_id)
            } else {
                format!("{}: {}", d.approver_id, d.comment)
            }
        })
        .collect();
    if comments.is_empty() {
        view.action.policy.reason.clone()
    } else {
        comments.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_arguments_are_not_forwarded() {
        let approved = json!({"path": "/srv/app.yaml", "content": "replicas: 3\n"});
        let approved = approved.as_object().expect("object");
        // Key order does not matter; values do.
        let reordered = json!({"content": "replicas: 3\n", "path": "/srv/app.yaml"});
        assert!(forwardable(approved, reordered.as_object().expect("object")).is_ok());
        for changed in [
            json!({"path": "/srv/app.yaml", "content": "replicas: 30\n"}),
            json!({"path": "/etc/passwd", "content": "replicas: 3\n"}),
            json!({"path": "/srv/app.yaml", "content": "replicas: 3\n", "mode": "0777"}),
            json!({"path": "/srv/app.yaml"}),
        ] {
            assert!(matches!(
                forwardable(approved, changed.as_object().expect("object")),
                Err(ApprovalError::NotApproved)
            ));
        }
    }
}
