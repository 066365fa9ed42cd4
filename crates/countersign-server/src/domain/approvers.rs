//! Approvers' keys and sessions: enrolling a key with a one-time code and a proof of possession
//! (with its TPM attestation when one is sent), and opening a session by signing a challenge
//! this service issued.

use countersign_core::api::{Challenge, Enrolled, SessionOpened};
use countersign_core::{
    Actor, Digest, EnrolmentRequest, EventKind, KeyId, KeyKind, SessionRequest, Signature,
    TpmCertification,
};
use countersign_store::{ApproverKey, Conflict, NewEvent, Session, StoreError};

use super::{DomainError, DomainResult};
use crate::secrets;
use crate::state::AppState;

/// How long a challenge may be answered.
const CHALLENGE_TTL_SECONDS: i64 = 120;

/// Enrols the key of `req` for its approver, once its one-time code, proof of possession and
/// attestation (if any) check out.
pub async fn enrol(state: &AppState, req: EnrolmentRequest) -> DomainResult<Enrolled> {
    countersign_core::identifier::check("approver_id", &req.approver_id)?;
    countersign_core::validate::text("label", &req.label, 128, false)?;
    let payload = EnrolmentRequest::proof_payload(
        &req.approver_id,
        req.key_kind,
        &req.label,
        &req.public_key,
        &state.config.origin,
    )
    .map_err(|e| DomainError::invalid("invalid_field", e.to_string()))?;
    req.public_key.verify(&payload, &req.proof).map_err(|_| {
        DomainError::refused(
            "bad_proof",
            "the enrolment proof was not signed by this key",
        )
    })?;
    let attestation_key = match (&req.attestation, req.key_kind) {
        (None, _) => None,
        (Some(text), KeyKind::Tpm) => {
            let certification = TpmCertification::decode(text)
                .map_err(|e| DomainError::invalid("attestation_invalid", e.to_string()))?;
            let ak = certification
                .verify(&req.public_key, &TpmCertification::nonce(&payload))
                .map_err(|e| DomainError::refused("bad_attestation", e.to_string()))?;
            Some(ak)
        }
        (Some(_), kind) => {
            return Err(DomainError::invalid(
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
    Ok(Enrolled {
        approver_id: req.approver_id,
        key_id: key.key_id,
    })
}

/// A fresh single-use challenge to sign. Nothing is stored until it is answered.
pub fn challenge(state: &AppState) -> Challenge {
    let (challenge, expires_at) =
        crate::challenge::issue(&state.key, state.now().add_seconds(CHALLENGE_TTL_SECONDS));
    Challenge {
        challenge,
        expires_at,
        service: state.config.origin.clone(),
    }
}

/// Opens a session for the key that signed `req`'s challenge.
pub async fn open_session(state: &AppState, req: &SessionRequest) -> DomainResult<SessionOpened> {
    let key = verify_challenge(state, &req.challenge, &req.key_id, &req.signature).await?;
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
    Ok(SessionOpened {
        token,
        approver_id: key.approver_id,
        expires_at,
    })
}

/// Checks a signed challenge — this service issued it and it has not expired, the key is
/// enrolled and active and signed the session payload for this service — then records it as
/// used, so it authenticates one session at most. Shared by REST sessions and the approver
/// stream.
pub async fn verify_challenge(
    state: &AppState,
    challenge: &Digest,
    key_id: &KeyId,
    signature: &Signature,
) -> DomainResult<ApproverKey> {
    let invalid = || DomainError::Store(StoreError::Conflict(Conflict::ChallengeInvalid));
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
        .ok_or_else(|| DomainError::Unauthenticated("unknown or revoked key".into()))?;
    let payload = SessionRequest::payload(challenge, key_id, &state.config.origin)
        .map_err(|e| DomainError::invalid("invalid_field", e.to_string()))?;
    key.public_key
        .verify(&payload, signature)
        .map_err(|_| DomainError::Unauthenticated("challenge signature does not verify".into()))?;
    state
        .store
        .use_challenge(challenge, expires_at, now)
        .await?;
    Ok(key)
}
