//! Agents submit requests, read them, wait for a decision and report how it went; approvers
//! view them. Each handler extracts, calls [`crate::domain::requests`], and answers.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use countersign_core::api::{ActionView, ErrorBody};
use countersign_core::{ActionRequest, ExecutionOutcome};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Agent, ApproverSession, AuthenticatedAgent};
use crate::domain::requests::{self, Submitted};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit))
        .routes(routes!(get_for_agent))
        .routes(routes!(get_for_approver))
        .routes(routes!(wait))
        .routes(routes!(outcome))
        .routes(routes!(cancel))
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
    AuthenticatedAgent(agent, how): AuthenticatedAgent,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ActionRequest>,
) -> Result<(StatusCode, Json<ActionView>), ApiError> {
    let key = idempotency_key(&headers)?;
    Ok(
        match requests::submit(&state, &agent, how, request, key.as_deref()).await? {
            Submitted::Created(view) => (StatusCode::CREATED, Json(view)),
            Submitted::Repeated(view) => (StatusCode::OK, Json(view)),
        },
    )
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
    let record = requests::own(&state, &agent, id).await?;
    Ok(Json(requests::view(&state, record, true).await?))
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
    let record = state.store.request(id).await?;
    Ok(Json(requests::view(&state, record, false).await?))
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
    Ok(Json(requests::wait(&state, &agent, id, limit).await?))
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
    requests::report_outcome(&state, &agent, id, outcome).await?;
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
    Ok(Json(requests::cancel(&state, &agent, id).await?))
}
