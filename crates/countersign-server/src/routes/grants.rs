//! Agents redeem grants: once, in time, for the approved digest.

use axum::Json;
use axum::extract::{Path, State};
use countersign_core::api::{ErrorBody, RedeemRequest, Redeemed};
use countersign_core::{Actor, Digest, EventKind};
use countersign_store::NewEvent;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Agent;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(redeem))
}

/// Redeem a grant: once, inside its window, for the approved digest.
#[utoipa::path(post, path = "/v1/grants/{id}/redeem", tag = "agents", params(("id" = Uuid, Path, description = "Grant id")),
    request_body = RedeemRequest, security(("agent_token" = [])),
    responses((status = 200, body = Redeemed), (status = 400, description = "Invalid field or malformed JSON", body = ErrorBody), (status = 401, description = "Missing, unknown or revoked agent token", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "grant_redeemed, grant_not_valid_now, digest_mismatch", body = ErrorBody)))]
async fn redeem(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<RedeemRequest>,
) -> Result<Json<Redeemed>, ApiError> {
    let now = state.now();
    let event = |action_id| {
        NewEvent::new(
            Actor::Agent(agent.clone()),
            EventKind::GrantRedeemed {
                grant_id: id,
                action_id,
            },
        )
    };
    // The action id is needed for the event; look the grant up through the digest's request.
    let action_id = find_action(&state, &agent, id, &body.request_digest).await?;
    let (record, appended) = state
        .store
        .redeem_grant(id, &body.request_digest, event(action_id), now)
        .await?;
    state.publish(&appended);
    Ok(Json(Redeemed {
        grant: record.grant,
        redeemed_at: now,
    }))
}

/// The request a grant belongs to, if the calling agent made it.
async fn find_action(
    state: &AppState,
    agent: &str,
    grant_id: Uuid,
    digest: &Digest,
) -> Result<Uuid, ApiError> {
    let request_id = grant_request(state, grant_id).await?;
    let record = state.store.action(request_id).await?;
    if record.action.requester != agent {
        return Err(ApiError::not_found("grant"));
    }
    if &record.digest != digest {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "digest_mismatch",
            "grant does not match the request digest",
        ));
    }
    Ok(request_id)
}

async fn grant_request(state: &AppState, grant_id: Uuid) -> Result<Uuid, ApiError> {
    // Grant ids are UUIDv7 and unique; the store resolves them through the grants table.
    state
        .store
        .grant_action(grant_id)
        .await?
        .ok_or_else(|| ApiError::not_found("grant"))
}
