//! Approvers' signed decisions.

use axum::Json;
use axum::extract::{Path, State};
use countersign_core::SignedDecision;
use countersign_core::api::{DecisionResult, ErrorBody};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(decide))
}

/// Records a signed decision. The signature is the authentication: no session is needed, and
/// a session alone cannot decide anything.
#[utoipa::path(post, path = "/v1/actions/{id}/decisions", tag = "approvers", params(("id" = Uuid, Path, description = "Request id")),
    request_body = SignedDecision,
    responses((status = 200, description = "counted, approved or denied", body = DecisionResult),
        (status = 400, body = ErrorBody),
        (status = 403, description = "A rule refused it: self_approval, not_eligible, unknown_key, key_revoked, key_not_approvers, bad_signature, digest_mismatch, hardware_key_required, attested_key_required, idp_enrolment_required, clock_skew", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "not_pending, expired, already_decided, nonce_reused", body = ErrorBody)))]
pub async fn decide(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    ApiJson(signed): ApiJson<SignedDecision>,
) -> Result<Json<DecisionResult>, ApiError> {
    Ok(Json(domain::decisions::apply(&state, id, signed).await?))
}
