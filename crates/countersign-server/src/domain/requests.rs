//! Requests: submitted by an agent and decided by the policy at once (allowed with a grant,
//! denied, or pending for approvers); read, waited for, cancelled and reported on by that agent;
//! viewed by approvers.

use std::time::Duration;

use countersign_core::api::{ActionView, DecisionView};
use countersign_core::audit::AgentAuthentication;
use countersign_core::{
    Action, ActionRequest, ActionStatus, Actor, EventKind, ExecutionOutcome, PolicyEvaluation,
    PolicyOutcome, SignedGrant, Verdict,
};
use countersign_store::{Conflict, NewEvent, NewRequest, RequestRecord, StoreError};
use uuid::Uuid;

use super::{DomainError, DomainResult, grants};
use crate::state::AppState;

/// TTL of requests that policy decided alone (they are never pending, but carry an expiry).
const DECIDED_TTL_SECONDS: i64 = 300;

/// A submission's result.
pub enum Submitted {
    /// A new request was recorded.
    Created(ActionView),
    /// The idempotency key named this request already: the one recorded then.
    Repeated(ActionView),
}

/// The view of `record` with its decisions and outcome; `for_requester` adds its grant and the
/// verification code the requester tells approvers (approvers see only the choices).
pub async fn view(
    state: &AppState,
    record: RequestRecord,
    for_requester: bool,
) -> DomainResult<ActionView> {
    let id = record.action.id;
    let decisions: Vec<DecisionView> = state
        .store
        .decisions(id)
        .await?
        .into_iter()
        .map(|d| DecisionView {
            approver_id: d.decision.decision.approver_id,
            verdict: d.decision.decision.verdict,
            decided_at: d.decision.decision.decided_at,
            key_id: d.decision.decision.key_id,
            key_kind: d.key_kind,
            comment: d.decision.decision.comment,
        })
        .collect();
    let grant = if for_requester {
        state.store.grant_for_request(id).await?.map(|g| g.grant)
    } else {
        None
    };
    let outcome = state.store.outcome(id).await?;
    Ok(assemble(record, decisions, grant, outcome, for_requester))
}

/// The view of a request from its parts, without reading anything.
fn assemble(
    record: RequestRecord,
    decisions: Vec<DecisionView>,
    grant: Option<SignedGrant>,
    outcome: Option<ExecutionOutcome>,
    for_requester: bool,
) -> ActionView {
    let approvals = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Approve)
        .count() as u32;
    let needs_code = record.action.policy.outcome.needs_verification_code();
    let verification_code =
        (for_requester && needs_code).then(|| countersign_core::verification::code(&record.digest));
    let verification_choices = (!for_requester && needs_code)
        .then(|| countersign_core::verification::choices(&record.digest));
    ActionView {
        id: record.action.id,
        status: record.status,
        verification_code,
        verification_choices,
        digest: record.digest,
        quorum: record.quorum,
        approvals,
        outcome,
        action: record.action,
        decisions,
        grant: if for_requester { grant } else { None },
        summary: false,
    }
}

/// The approver's inbox: pending, unexpired, eligible, not yet decided by them, oldest first.
pub async fn inbox(
    state: &AppState,
    approver: &countersign_store::Approver,
) -> DomainResult<Vec<ActionView>> {
    let now = state.now();
    let mut out = Vec::new();
    // Every pending request: a cap here would silently hide requests from the inbox (and from
    // stream snapshots). The pending set is bounded by submission rate × approval window.
    for record in state
        .store
        .requests_by_status(ActionStatus::Pending, u32::MAX)
        .await?
    {
        if record.action.expires_at <= now || super::rules::eligible(approver, &record).is_err() {
            continue;
        }
        let view = view(state, record, false).await?;
        if view.decided_by(&approver.id) {
            continue;
        }
        // Bounded whatever the agent sent: the full request is fetched when it is opened.
        out.push(view.summarized());
    }
    Ok(out)
}

/// A submission repeated with its idempotency key: the request recorded the first time, if it
/// is the same request; a different request under a used key is refused.
async fn replay(state: &AppState, id: Uuid, request: &ActionRequest) -> DomainResult<Submitted> {
    let record = state.store.request(id).await?;
    if &record.action.request != request {
        return Err(DomainError::IdempotencyKeyReused);
    }
    Ok(Submitted::Repeated(view(state, record, true).await?))
}

fn policy_input(requester: &str, request: &ActionRequest) -> serde_json::Value {
    serde_json::json!({"action": request, "requester": requester})
}

/// Records `request` from `agent`, decided by the policy at once; with `idempotency_key` (the
/// agent's, already checked for shape) a repeat returns the request recorded the first time.
pub async fn submit(
    state: &AppState,
    agent: &str,
    authenticated_by: AgentAuthentication,
    request: ActionRequest,
    idempotency_key: Option<&str>,
) -> DomainResult<Submitted> {
    request.validate()?;
    let key = idempotency_key.map(|k| countersign_store::idempotency_scope(agent, k));
    if let Some(key) = &key
        && let Some(id) = state.store.request_by_idempotency_key(key).await?
    {
        return replay(state, id, &request).await;
    }
    let now = state.now();
    let mut policy: PolicyEvaluation = state.policy.evaluate(&policy_input(agent, &request));
    // Break-glass is granted only to a request that asked for it: a policy answering it for
    // any other is a mistake, and fails closed.
    if matches!(policy.outcome, PolicyOutcome::BreakGlass { .. }) && !request.break_glass {
        tracing::warn!("policy answered break_glass for a request that did not ask; denied");
        policy = PolicyEvaluation {
            outcome: PolicyOutcome::Deny {},
            reason: "the policy answered break-glass for a request that did not ask for it".into(),
            ..policy
        };
    }
    let (status, quorum, ttl) = match &policy.outcome {
        PolicyOutcome::Allow {} | PolicyOutcome::BreakGlass { .. } => {
            (ActionStatus::Approved, 0, DECIDED_TTL_SECONDS)
        }
        PolicyOutcome::Deny {} => (ActionStatus::Denied, 0, DECIDED_TTL_SECONDS),
        PolicyOutcome::RequireApproval {
            quorum,
            ttl_seconds,
            ..
        } => (ActionStatus::Pending, *quorum, i64::from(*ttl_seconds)),
    };
    let action = Action {
        id: Uuid::now_v7(),
        requester: agent.to_owned(),
        request,
        created_at: now,
        expires_at: now.add_seconds(ttl),
        policy,
    };
    let digest = action.digest().map_err(|e| {
        DomainError::invalid(
            "invalid_field",
            format!("request has no canonical form: {e}"),
        )
    })?;
    let record = RequestRecord {
        action,
        digest,
        status,
        quorum,
        updated_at: now,
        steps_taken: 0,
    };
    let id = record.action.id;
    let mut events = vec![NewEvent::new(
        Actor::Agent(agent.to_owned()),
        EventKind::RequestCreated {
            action: Box::new(record.action.clone()),
            digest,
            authenticated_by: Some(authenticated_by),
        },
    )];
    let mut grant = None;
    match status {
        ActionStatus::Approved => {
            let g = grants::issue(state, &record, now)?;
            events.push(NewEvent::new(
                Actor::System,
                EventKind::Approved {
                    action_id: id,
                    reason: match record.action.policy.outcome {
                        PolicyOutcome::BreakGlass { .. } => {
                            format!("break-glass: {}", record.action.policy.reason)
                        }
                        _ => record.action.policy.reason.clone(),
                    },
                },
            ));
            events.push(NewEvent::new(
                Actor::System,
                EventKind::GrantIssued { grant: g.clone() },
            ));
            grant = Some(g);
        }
        ActionStatus::Denied => {
            events.push(NewEvent::new(
                Actor::System,
                EventKind::Denied {
                    action_id: id,
                    reason: record.action.policy.reason.clone(),
                },
            ));
        }
        _ => {}
    }
    let created = state
        .store
        .create_request(
            &NewRequest {
                record: record.clone(),
                grant: grant.clone(),
                idempotency_key: key.clone(),
            },
            events,
            now,
        )
        .await;
    let appended = match (created, &key) {
        (Ok(appended), _) => appended,
        // The same key, submitted concurrently, won the race: answer as a repeat would.
        (Err(StoreError::Conflict(Conflict::IdempotencyKeyUsed)), Some(key)) => {
            let id = state
                .store
                .request_by_idempotency_key(key)
                .await?
                .ok_or(DomainError::NotFound("action"))?;
            return replay(state, id, &record.action.request).await;
        }
        (Err(e), _) => return Err(e.into()),
    };
    state.publish(&appended);
    tracing::info!(%id, status = ?record.status, r#type = %record.action.request.action_type, "request submitted");
    // The reply is built from what was committed, not read back: a read failing after the
    // commit must not turn a stored request into an error the agent would retry.
    Ok(Submitted::Created(assemble(
        record,
        Vec::new(),
        grant,
        None,
        true,
    )))
}

/// Request `id` if `agent` made it; another agent's request is as good as absent.
pub async fn own(state: &AppState, agent: &str, id: Uuid) -> DomainResult<RequestRecord> {
    let record = state.store.request(id).await?;
    if record.action.requester != agent {
        return Err(DomainError::NotFound("action"));
    }
    Ok(record)
}

/// Waits up to `limit` for `agent`'s request `id` to be decided; the request as it then is.
pub async fn wait(
    state: &AppState,
    agent: &str,
    id: Uuid,
    limit: Duration,
) -> DomainResult<ActionView> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut events = state.events.subscribe();
    loop {
        let record = own(state, agent, id).await?;
        if record.status.is_final() || tokio::time::Instant::now() >= deadline {
            return view(state, record, true).await;
        }
        // Wake on any event for this request; poll at least every second so changes made by
        // other replicas or the expiry job are seen too.
        let tick = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(e) if e.event.action_id() == Some(id) => break,
                    Ok(_) => continue,
                    Err(_) => break,
                },
                () = tokio::time::sleep_until(tick) => break,
            }
        }
    }
}

/// Records how `agent`'s approved request `id` went: once, after its grant was redeemed.
pub async fn report_outcome(
    state: &AppState,
    agent: &str,
    id: Uuid,
    outcome: ExecutionOutcome,
) -> DomainResult<()> {
    // Shown to reviewers like any agent text: bounded, and nothing that drives or hides.
    countersign_core::validate::optional_text("detail", &outcome.detail, 4096, true)?;
    own(state, agent, id).await?;
    let event = NewEvent::new(
        Actor::Agent(agent.to_owned()),
        EventKind::ExecutionReported {
            action_id: id,
            outcome: outcome.clone(),
        },
    );
    let appended = state
        .store
        .report_outcome(id, &outcome, event, state.now())
        .await?;
    state.publish(&appended);
    Ok(())
}

/// Withdraws `agent`'s pending request `id`: approvers' inboxes drop it and it can never be
/// approved. The request as it then is.
pub async fn cancel(state: &AppState, agent: &str, id: Uuid) -> DomainResult<ActionView> {
    own(state, agent, id).await?;
    let event = NewEvent::new(
        Actor::Agent(agent.to_owned()),
        EventKind::Cancelled {
            action_id: id,
            reason: "withdrawn by the requester".into(),
        },
    );
    let appended = state.store.cancel_request(id, event, state.now()).await?;
    state.publish(&appended);
    let record = state.store.request(id).await?;
    view(state, record, true).await
}
