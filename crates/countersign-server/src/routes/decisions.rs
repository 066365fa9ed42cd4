//! Approvers' signed decisions.

use axum::Json;
use axum::extract::{Path, State};
use countersign_core::api::{DecisionResult, ErrorBody, ReviewResult};
use countersign_core::{SignedDecision, SignedReview};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(decide))
        .routes(routes!(review))
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

/// Records a signed review of a break-glass request (granted without quorum, it stays open
/// until its policy's reviewers have reviewed it). Like a decision, the signature is the
/// authentication.
#[utoipa::path(post, path = "/v1/actions/{id}/reviews", tag = "approvers", params(("id" = Uuid, Path, description = "Request id")),
    request_body = SignedReview,
    responses((status = 200, description = "recorded; complete once the reviews reach the policy's review quorum", body = ReviewResult),
        (status = 400, body = ErrorBody),
        (status = 403, description = "A rule refused it: review_not_expected, self_review, not_eligible, unknown_key, key_revoked, key_not_approvers, bad_signature, digest_mismatch, clock_skew", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "review_not_expected (complete), already_decided, nonce_reused", body = ErrorBody)))]
pub async fn review(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    ApiJson(signed): ApiJson<SignedReview>,
) -> Result<Json<ReviewResult>, ApiError> {
    Ok(Json(domain::reviews::apply(&state, id, signed).await?))
}
