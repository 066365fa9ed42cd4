//! Agents redeem grants: once, in time, for the approved digest.

use axum::Json;
use axum::extract::{Path, State};
use countersign_core::api::{ErrorBody, RedeemRequest, Redeemed};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Agent;
use crate::domain;
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
    Ok(Json(
        domain::grants::redeem(&state, &agent, id, &body.request_digest).await?,
    ))
}
