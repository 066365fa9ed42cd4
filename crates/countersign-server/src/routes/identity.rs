//! Approvers: enrolling a key with a one-time code, opening a session by signing a challenge,
//! and the inbox of requests they may decide. The steps are [`crate::domain::approvers`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use countersign_core::api::{
    ActionView, Challenge, Enrolled, ErrorBody, KeySignedIn, OidcSignIn, SessionOpened,
    TpmChallenge, TpmChallengeRequest,
};
use countersign_core::{EnrolmentRequest, IdpEnrolmentRequest, IdpSignInRequest, SessionRequest};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::ApproverSession;
use crate::domain::{approvers, attestation, requests};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(tpm_challenge))
        .routes(routes!(oidc_sign_in))
        .routes(routes!(enroll_with_idp))
        .routes(routes!(sign_in_key))
        .routes(routes!(challenge))
        .routes(routes!(open_session))
        .routes(routes!(pending))
        .routes(routes!(pending_reviews))
}

/// Enrol an approver's key with a one-time code and a proof of possession.
#[utoipa::path(post, path = "/v1/enroll", tag = "approvers", request_body = EnrolmentRequest,
    responses((status = 201, body = Enrolled), (status = 400, description = "Invalid field or malformed JSON", body = ErrorBody),
        (status = 403, description = "bad_proof, bad_attestation, endorsement_untrusted, attestation_not_configured", body = ErrorBody),
        (status = 409, description = "enrolment_code_invalid, key_exists", body = ErrorBody)))]
async fn enroll(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EnrolmentRequest>,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    let enrolled = approvers::enrol(&state, req).await?;
    Ok((StatusCode::CREATED, Json(enrolled)))
}

/// The first step of an attested TPM enrolment: the TPM's endorsement key certificate is
/// checked against the manufacturers' roots this service trusts, and a secret is sealed to that
/// key for the attestation key (TPM2_MakeCredential). The enrolment brings the secret back.
/// Nothing is stored.
#[utoipa::path(post, path = "/v1/enroll/tpm-challenge", tag = "approvers", request_body = TpmChallengeRequest,
    responses((status = 200, body = TpmChallenge),
        (status = 400, description = "attestation_invalid (not base64, too large, not a certificate, not a restricted P-256 signing key), or malformed JSON", body = ErrorBody),
        (status = 403, description = "attestation_not_configured (no [attestation] tpm_roots), endorsement_untrusted (the certificate does not chain to a trusted root, or is not valid now)", body = ErrorBody)))]
async fn tpm_challenge(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TpmChallengeRequest>,
) -> Result<Json<TpmChallenge>, ApiError> {
    Ok(Json(attestation::tpm_challenge(&state, &req)?))
}

/// How to sign in with the organisation's OpenID Provider, with a fresh single-use nonce.
/// Nothing is stored until an enrolment answers it.
#[utoipa::path(post, path = "/v1/identity/oidc/sign-in", tag = "approvers",
    responses((status = 200, body = OidcSignIn),
        (status = 403, description = "identity_provider_not_configured, identity_provider_unavailable (the provider could not be reached; existing sessions keep working)", body = ErrorBody)))]
async fn oidc_sign_in(State(state): State<AppState>) -> Result<Json<OidcSignIn>, ApiError> {
    Ok(Json(approvers::oidc_sign_in(&state).await?))
}

/// Enrol a key for the person a fresh ID token from the organisation's OpenID Provider names,
/// instead of an administrator's code.
#[utoipa::path(post, path = "/v1/enroll/idp", tag = "approvers", request_body = IdpEnrolmentRequest,
    responses((status = 201, body = Enrolled), (status = 400, description = "Invalid field or malformed JSON", body = ErrorBody),
        (status = 401, description = "The ID token is refused (signature, issuer, audience, expiry, nonce, authorised party, sign-in age)", body = ErrorBody),
        (status = 403, description = "bad_proof, bad_attestation, identity_unmapped, approver_not_provisioned, identity_provider_not_configured, identity_provider_unavailable", body = ErrorBody),
        (status = 409, description = "challenge_invalid (the nonce is unknown, expired or used), key_exists", body = ErrorBody)))]
async fn enroll_with_idp(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<IdpEnrolmentRequest>,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    let enrolled = approvers::enrol_with_idp(&state, req).await?;
    Ok((StatusCode::CREATED, Json(enrolled)))
}

/// Record a fresh sign-in at the organisation's OpenID Provider behind an enrolled key, for
/// requests whose policy asks for a recent one (`max_sign_in_age_seconds`).
#[utoipa::path(post, path = "/v1/identity/oidc/key-sign-in", tag = "approvers", request_body = IdpSignInRequest,
    responses((status = 200, body = KeySignedIn), (status = 400, description = "Invalid field or malformed JSON", body = ErrorBody),
        (status = 401, description = "Unknown or revoked key, or the ID token is refused (signature, issuer, audience, expiry, nonce, authorised party, sign-in age)", body = ErrorBody),
        (status = 403, description = "bad_proof, identity_mismatch (the sign-in names someone else), identity_unmapped, identity_provider_not_configured, identity_provider_unavailable", body = ErrorBody),
        (status = 409, description = "challenge_invalid (the nonce is unknown, expired or used)", body = ErrorBody)))]
async fn sign_in_key(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<IdpSignInRequest>,
) -> Result<Json<KeySignedIn>, ApiError> {
    Ok(Json(approvers::sign_in_key(&state, req).await?))
}

/// A fresh single-use challenge to sign. Nothing is stored until it is answered.
#[utoipa::path(post, path = "/v1/sessions/challenge", tag = "approvers", responses((status = 200, body = Challenge)))]
async fn challenge(State(state): State<AppState>) -> Result<Json<Challenge>, ApiError> {
    Ok(Json(approvers::challenge(&state)))
}

/// Open an approver session with a signed challenge.
#[utoipa::path(post, path = "/v1/sessions", tag = "approvers", request_body = SessionRequest,
    responses((status = 201, body = SessionOpened), (status = 400, description = "Invalid field or malformed JSON", body = ErrorBody),
        (status = 401, description = "Unknown or revoked key, or a bad signature", body = ErrorBody),
        (status = 409, description = "challenge_invalid", body = ErrorBody)))]
async fn open_session(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<(StatusCode, Json<SessionOpened>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(approvers::open_session(&state, &req).await?),
    ))
}

/// Pending requests this approver may decide and has not decided yet, oldest first, as
/// summaries (without diff, parameters and context: `GET /v1/actions/{id}/view` has them).
#[utoipa::path(get, path = "/v1/pending", tag = "approvers", security(("approver_session" = [])),
    responses((status = 200, body = [ActionView]), (status = 401, body = ErrorBody)))]
async fn pending(
    State(state): State<AppState>,
    ApproverSession(session): ApproverSession,
) -> Result<Json<Vec<ActionView>>, ApiError> {
    let approver = session_approver(&state, &session.approver_id).await?;
    Ok(Json(requests::inbox(&state, &approver).await?))
}

/// Break-glass requests this approver may review and has not reviewed yet, oldest first, as
/// summaries: granted without quorum, each stays here until its policy's reviewers have
/// reviewed it (`POST /v1/actions/{id}/reviews`).
#[utoipa::path(get, path = "/v1/pending-reviews", tag = "approvers", security(("approver_session" = [])),
    responses((status = 200, body = [ActionView]), (status = 401, body = ErrorBody)))]
async fn pending_reviews(
    State(state): State<AppState>,
    ApproverSession(session): ApproverSession,
) -> Result<Json<Vec<ActionView>>, ApiError> {
    let approver = session_approver(&state, &session.approver_id).await?;
    Ok(Json(
        crate::domain::reviews::awaiting(&state, &approver).await?,
    ))
}

/// The approver a session belongs to; a session outliving its approver is refused.
async fn session_approver(
    state: &AppState,
    approver_id: &str,
) -> Result<countersign_store::Approver, ApiError> {
    state
        .store
        .approver(approver_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("approver no longer exists"))
}
