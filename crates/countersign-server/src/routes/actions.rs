//! Agents submit requests, read them, wait for a decision and report how it went.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use countersign_core::api::{ActionView, DecisionView, ErrorBody};
use countersign_core::{
    Action, ActionRequest, ActionStatus, Actor, EventKind, ExecutionOutcome, Grant,
    PolicyEvaluation, PolicyOutcome, SignedGrant, Timestamp, Verdict,
};
use countersign_store::{ActionRecord, Conflict, NewAction, NewEvent};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Agent, ApproverSession};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

/// TTL of requests that policy decided alone (they are never pending, but carry an expiry).
const DECIDED_TTL_SECONDS: i64 = 300;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit))
        .routes(routes!(get_for_agent))
        .routes(routes!(get_for_approver))
        .routes(routes!(wait))
        .routes(routes!(outcome))
        .routes(routes!(cancel))
}

pub(crate) async fn view(
    state: &AppState,
    record: ActionRecord,
    with_grant: bool,
) -> Result<ActionView, ApiError> {
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
    let grant = if with_grant {
        state.store.grant_for_action(id).await?.map(|g| g.grant)
    } else {
        None
    };
    let outcome = state.store.outcome(id).await?;
    Ok(assemble(record, decisions, grant, outcome, with_grant))
}

/// The view of a request from its parts, without reading anything.
fn assemble(
    record: ActionRecord,
    decisions: Vec<DecisionView>,
    grant: Option<SignedGrant>,
    outcome: Option<ExecutionOutcome>,
    with_grant: bool,
) -> ActionView {
    let approvals = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Approve)
        .count() as u32;
    // The requester's side sees the code to tell approvers; approvers see only the choices.
    let needs_code = record.action.policy.outcome.needs_verification_code();
    let verification_code =
        (with_grant && needs_code).then(|| countersign_core::verification::code(&record.digest));
    let verification_choices = (!with_grant && needs_code)
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
        grant: if with_grant { grant } else { None },
        summary: false,
    }
}

/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 128;

/// The `Idempotency-Key` header: 1 to 128 visible ASCII characters, when given.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY
        && key.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// A submission repeated with its idempotency key: the request recorded the first time, if it
/// is the same request; a different request under a used key is refused.
async fn replay(
    state: &AppState,
    id: Uuid,
    request: &ActionRequest,
) -> Result<(StatusCode, Json<ActionView>), ApiError> {
    let record = state.store.action(id).await?;
    if &record.action.request != request {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        ));
    }
    Ok((StatusCode::OK, Json(view(state, record, true).await?)))
}

fn policy_input(requester: &str, request: &ActionRequest) -> serde_json::Value {
    serde_json::json!({"action": request, "requester": requester})
}

pub(crate) fn issue_grant(
    state: &AppState,
    record: &ActionRecord,
    now: Timestamp,
) -> Result<SignedGrant, ApiError> {
    let grant = Grant {
        grant_id: Uuid::now_v7(),
        request_id: record.action.id,
        request_digest: record.digest,
        not_before: now,
        expires_at: now.add_seconds(state.config.grant_ttl_seconds),
        single_use: true,
    };
    let payload = grant
        .signing_payload()
        .map_err(|e| ApiError::internal("grant encoding", e))?;
    let signature = state
        .key
        .sign(&payload)
        .map_err(|e| ApiError::internal("grant signature", e))?;
    Ok(SignedGrant { signature, grant })
}

/// Submit a request for one action; the policy decides at once.
#[utoipa::path(post, path = "/v1/actions", tag = "agents", request_body = ActionRequest,
    security(("agent_token" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 128 visible ASCII characters naming this submission; the same key returns the same request (200), never a second one")),
    responses((status = 201, description = "Stored; status pending, approved (grant included) or denied", body = ActionView),
        (status = 200, description = "Submitted before with this Idempotency-Key: the request recorded then", body = ActionView),
        (status = 409, description = "idempotency_key_reused: the key names a different request", body = ErrorBody),
        (status = 400, description = "Invalid field or malformed JSON", body = ErrorBody), (status = 401, description = "Missing, unknown or revoked agent token", body = ErrorBody),
        (status = 413, description = "Body over 10 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "storage_unavailable (nothing was written) or outcome_unknown (retry with the same Idempotency-Key)", body = ErrorBody)))]
async fn submit(
    State(state): State<AppState>,
    Agent(agent): Agent,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ActionRequest>,
) -> Result<(StatusCode, Json<ActionView>), ApiError> {
    request.validate()?;
    let key = idempotency_key(&headers)?.map(|k| countersign_store::idempotency_scope(&agent, &k));
    if let Some(key) = &key
        && let Some(id) = state.store.action_by_idempotency_key(key).await?
    {
        return replay(&state, id, &request).await;
    }
    let now = state.now();
    let policy: PolicyEvaluation = state.policy.evaluate(&policy_input(&agent, &request));
    let (status, quorum, ttl) = match &policy.outcome {
        PolicyOutcome::Allow {} => (ActionStatus::Approved, 0, DECIDED_TTL_SECONDS),
        PolicyOutcome::Deny {} => (ActionStatus::Denied, 0, DECIDED_TTL_SECONDS),
        PolicyOutcome::RequireApproval {
            quorum,
            ttl_seconds,
            ..
        } => (ActionStatus::Pending, *quorum, i64::from(*ttl_seconds)),
    };
    let action = Action {
        id: Uuid::now_v7(),
        requester: agent.clone(),
        request,
        created_at: now,
        expires_at: now.add_seconds(ttl),
        policy,
    };
    let digest = action.digest().map_err(|e| {
        ApiError::bad_request(
            "invalid_field",
            format!("request has no canonical form: {e}"),
        )
    })?;
    let record = ActionRecord {
        action,
        digest,
        status,
        quorum,
        updated_at: now,
    };
    let id = record.action.id;
    let mut events = vec![NewEvent::new(
        Actor::Agent(agent),
        EventKind::RequestCreated {
            action: Box::new(record.action.clone()),
            digest,
        },
    )];
    let mut grant = None;
    match status {
        ActionStatus::Approved => {
            let g = issue_grant(&state, &record, now)?;
            events.push(NewEvent::new(
                Actor::System,
                EventKind::Approved {
                    action_id: id,
                    reason: record.action.policy.reason.clone(),
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
        .create_action(
            &NewAction {
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
        (Err(countersign_store::StoreError::Conflict(Conflict::IdempotencyKeyUsed)), Some(key)) => {
            let id = state
                .store
                .action_by_idempotency_key(key)
                .await?
                .ok_or(ApiError::not_found("action"))?;
            return replay(&state, id, &record.action.request).await;
        }
        (Err(e), _) => return Err(e.into()),
    };
    state.publish(&appended);
    tracing::info!(%id, status = ?record.status, r#type = %record.action.request.action_type, "request submitted");
    // The reply is built from what was committed, not read back: a read failing after the
    // commit must not turn a stored request into an error the agent would retry.
    let view = assemble(record, Vec::new(), grant, None, true);
    Ok((StatusCode::CREATED, Json(view)))
}

pub(crate) async fn own_record(
    state: &AppState,
    agent: &str,
    id: Uuid,
) -> Result<ActionRecord, ApiError> {
    let record = state.store.action(id).await?;
    // Another agent's request is as good as absent.
    if record.action.requester != agent {
        return Err(ApiError::not_found("action"));
    }
    Ok(record)
}

/// One of the calling agent's requests.
#[utoipa::path(get, path = "/v1/actions/{id}", tag = "agents", params(("id" = Uuid, Path, description = "Request id")),
    security(("agent_token" = [])),
    responses((status = 200, body = ActionView), (status = 401, description = "Missing, unknown or revoked agent token", body = ErrorBody), (status = 404, description = "No such request of this agent", body = ErrorBody)))]
async fn get_for_agent(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<Uuid>,
) -> Result<Json<ActionView>, ApiError> {
    let record = own_record(&state, &agent, id).await?;
    Ok(Json(view(&state, record, true).await?))
}

/// A request as approvers see it.
#[utoipa::path(get, path = "/v1/actions/{id}/view", tag = "approvers", params(("id" = Uuid, Path, description = "Request id")),
    security(("approver_session" = [])),
    responses((status = 200, body = ActionView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_for_approver(
    State(state): State<AppState>,
    _session: ApproverSession,
    Path(id): Path<Uuid>,
) -> Result<Json<ActionView>, ApiError> {
    let record = state.store.action(id).await?;
    Ok(Json(view(&state, record, false).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    /// Seconds to wait at most (capped at 60).
    timeout: Option<u64>,
}

/// Long-poll until the request is decided or the timeout passes.
#[utoipa::path(get, path = "/v1/actions/{id}/wait", tag = "agents", params(("id" = Uuid, Path, description = "Request id"), WaitQuery),
    security(("agent_token" = [])),
    responses((status = 200, description = "The request, with its grant once approved", body = ActionView), (status = 401, description = "Missing, unknown or revoked agent token", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn wait(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<Uuid>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<ActionView>, ApiError> {
    let limit = Duration::from_secs(q.timeout.unwrap_or(30).min(state.config.max_wait_seconds));
    let deadline = tokio::time::Instant::now() + limit;
    let mut events = state.events.subscribe();
    loop {
        let record = own_record(&state, &agent, id).await?;
        if record.status.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(view(&state, record, true).await?));
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

/// Report how the approved action went (once, after redeeming the grant).
#[utoipa::path(post, path = "/v1/actions/{id}/outcome", tag = "agents", params(("id" = Uuid, Path, description = "Request id")),
    request_body = ExecutionOutcome, security(("agent_token" = [])),
    responses((status = 204, description = "Recorded"), (status = 400, description = "Invalid field or malformed JSON", body = ErrorBody), (status = 401, description = "Missing, unknown or revoked agent token", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "No redeemed grant, or already reported", body = ErrorBody)))]
async fn outcome(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<Uuid>,
    ApiJson(outcome): ApiJson<ExecutionOutcome>,
) -> Result<StatusCode, ApiError> {
    // Shown to reviewers like any agent text: bounded, and nothing that drives or hides.
    countersign_core::validate::optional_text("detail", &outcome.detail, 4096, true)?;
    own_record(&state, &agent, id).await?;
    let event = NewEvent::new(
        Actor::Agent(agent),
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
    Ok(StatusCode::NO_CONTENT)
}

/// Withdraw a pending request: the agent no longer needs it (the gate does this when its own
/// client cancels the call). Approvers' inboxes drop it; it can never be approved.
#[utoipa::path(post, path = "/v1/actions/{id}/cancel", tag = "agents", params(("id" = Uuid, Path, description = "Request id")),
    security(("agent_token" = [])),
    responses((status = 200, description = "Cancelled", body = ActionView), (status = 401, description = "Missing, unknown or revoked agent token", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "not_pending: already decided, expired or cancelled", body = ErrorBody)))]
async fn cancel(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<Uuid>,
) -> Result<Json<ActionView>, ApiError> {
    own_record(&state, &agent, id).await?;
    let event = NewEvent::new(
        Actor::Agent(agent),
        EventKind::Cancelled {
            action_id: id,
            reason: "withdrawn by the requester".into(),
        },
    );
    let appended = state.store.cancel_action(id, event, state.now()).await?;
    state.publish(&appended);
    let record = state.store.action(id).await?;
    Ok(Json(view(&state, record, true).await?))
}
