//! Agents redeem grants: once, in time, for the approved digest.

use axum::Json;
use axum::extract::{Path, State};
use countersign_core::api::{ErrorBody, RedeemRequest, Redeemed};
use countersign_core::{Actor, EventKind};
use countersign_store::NewEvent;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Agent;
use crate::error::{ApiError, ApiJson};
use crate::routes::actions::own_record;
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
    // Only the agent that made the request may redeem its grant; another agent's grant is as
    // good as absent. Digest, window and single use are checked by the store, atomically.
    let action_id = state
        .store
        .grant_action(id)
        .await?
        .ok_or_else(|| ApiError::not_found("grant"))?;
    own_record(&state, &agent, action_id).await.map_err(|e| {
        if e.status == axum::http::StatusCode::NOT_FOUND {
            ApiError::not_found("grant")
        } else {
            e
        }
    })?;
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
