//! Approvers: enrolling a key with a one-time code, opening a session by signing a challenge,
//! and the inbox of requests they may decide.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use countersign_core::api::{ActionView, Challenge, Enrolled, ErrorBody, SessionOpened};
use countersign_core::{
    Actor, Digest, EnrolmentRequest, EventKind, KeyId, KeyKind, SessionRequest, Signature,
    TpmCertification,
};
use countersign_store::{ApproverKey, NewEvent, Session};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::ApproverSession;
use crate::domain::requests;
use crate::error::{ApiError, ApiJson};

use crate::secrets;
use crate::state::AppState;

const CHALLENGE_TTL_SECONDS: i64 = 120;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(challenge))
        .routes(routes!(open_session))
        .routes(routes!(pending))
}

/// Enrol an approver's key with a one-time code and a proof of possession.
#[utoipa::path(post, path = "/v1/enroll", tag = "approvers", request_body = EnrolmentRequest,
    responses((status = 201, body = Enrolled), (status = 400, description = "Invalid field or malformed JSON", body = ErrorBody),
        (status = 403, description = "bad_proof, bad_attestation", body = ErrorBody),
        (status = 409, description = "enrolment_code_invalid, key_exists", body = ErrorBody)))]
async fn enroll(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EnrolmentRequest>,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    countersign_core::identifier::check("approver_id", &req.approver_id)?;
    countersign_core::validate::text("label", &req.label, 128, false)?;
    let payload = EnrolmentRequest::proof_payload(
        &req.approver_id,
        req.key_kind,
        &req.label,
        &req.public_key,
        &state.config.origin,
    )
    .map_err(|e| ApiError::bad_request("invalid_field", e.to_string()))?;
    req.public_key.verify(&payload, &req.proof).map_err(|_| {
        ApiError::forbidden(
            "bad_proof",
            "the enrolment proof was not signed by this key",
        )
    })?;
    let attestation_key = match (&req.attestation, req.key_kind) {
        (None, _) => None,
        (Some(text), KeyKind::Tpm) => {
            let certification = TpmCertification::decode(text)
                .map_err(|e| ApiError::bad_request("attestation_invalid", e.to_string()))?;
            let ak = certification
                .verify(&req.public_key, &TpmCertification::nonce(&payload))
                .map_err(|e| ApiError::forbidden("bad_attestation", e.to_string()))?;
            Some(ak)
        }
        (Some(_), kind) => {
            return Err(ApiError::bad_request(
                "attestation_unsupported",
                format!("no attestation format is known for {} keys", kind.label()),
            ));
        }
    };
    let now = state.now();
    let key = ApproverKey {
        key_id: req.public_key.key_id(),
        approver_id: req.approver_id.clone(),
        kind: req.key_kind,
        public_key: req.public_key.clone(),
        label: req.label.clone(),
        attestation: req.attestation.clone(),
        enrolled_at: now,
        revoked_at: None,
    };
    let event = NewEvent::new(
        Actor::Approver(req.approver_id.clone()),
        EventKind::KeyEnrolled {
            approver_id: req.approver_id.clone(),
            key_id: key.key_id,
            key_kind: key.kind,
            public_key: key.public_key.clone(),
            attestation_key,
        },
    );
    let code_hash = secrets::hash(&secrets::normalise_code(&req.code));
    state.store.enrol_key(&code_hash, &key, event).await?;
    tracing::info!(approver = %req.approver_id, key = %key.key_id.short(), kind = ?key.kind, "key enrolled");
    Ok((
        StatusCode::CREATED,
        Json(Enrolled {
            approver_id: req.approver_id,
            key_id: key.key_id,
        }),
    ))
}

/// A fresh single-use challenge to sign. Nothing is stored until it is answered.
#[utoipa::path(post, path = "/v1/sessions/challenge", tag = "approvers", responses((status = 200, body = Challenge)))]
async fn challenge(State(state): State<AppState>) -> Result<Json<Challenge>, ApiError> {
    let (challenge, expires_at) =
        crate::challenge::issue(&state.key, state.now().add_seconds(CHALLENGE_TTL_SECONDS));
    Ok(Json(Challenge {
        challenge,
        expires_at,
        service: state.config.origin.clone(),
    }))
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
    let key = verify_challenge(&state, &req.challenge, &req.key_id, &req.signature).await?;
    let now = state.now();
    let token = secrets::token("css_");
    let expires_at = now.add_seconds(state.config.session_ttl_seconds);
    state
        .store
        .create_session(&Session {
            token_hash: secrets::hash(&token),
            approver_id: key.approver_id.clone(),
            key_id: key.key_id,
            expires_at,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionOpened {
            token,
            approver_id: key.approver_id,
            expires_at,
        }),
    ))
}

/// Checks a signed challenge — this service issued it and it has not expired, the key is
/// enrolled and active and signed the session payload for this service — then records it as
/// used, so it authenticates one session at most. Shared by REST sessions and the approver
/// stream.
pub(crate) async fn verify_challenge(
    state: &AppState,
    challenge: &Digest,
    key_id: &KeyId,
    signature: &Signature,
) -> Result<ApproverKey, ApiError> {
    let invalid = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "challenge_invalid",
            "challenge is invalid, used or expired",
        )
    };
    let expires_at = crate::challenge::expiry(&state.key, challenge).ok_or_else(invalid)?;
    let now = state.now();
    if expires_at <= now {
        return Err(invalid());
    }
    let key = state
        .store
        .key(key_id)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked key"))?;
    let payload = SessionRequest::payload(challenge, key_id, &state.config.origin)
        .map_err(|e| ApiError::bad_request("invalid_field", e.to_string()))?;
    key.public_key
        .verify(&payload, signature)
        .map_err(|_| ApiError::unauthorized("challenge signature does not verify"))?;
    state
        .store
        .use_challenge(challenge, expires_at, now)
        .await?;
    Ok(key)
}

/// Pending requests this approver may decide and has not decided yet, oldest first, as
/// summaries (without diff, parameters and context: `GET /v1/actions/{id}/view` has them).
#[utoipa::path(get, path = "/v1/pending", tag = "approvers", security(("approver_session" = [])),
    responses((status = 200, body = [ActionView]), (status = 401, body = ErrorBody)))]
async fn pending(
    State(state): State<AppState>,
    ApproverSession(session): ApproverSession,
) -> Result<Json<Vec<ActionView>>, ApiError> {
    let approver = state
        .store
        .approver(&session.approver_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("approver no longer exists"))?;
    Ok(Json(requests::inbox(&state, &approver).await?))
}
