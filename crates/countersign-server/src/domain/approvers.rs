//! Approvers' keys and sessions: enrolling a key with a one-time code and a proof of possession
//! (with its TPM attestation when one is sent), and opening a session by signing a challenge
//! this service issued.

use countersign_core::api::{Challenge, Enrolled, KeySignedIn, OidcSignIn, SessionOpened};
use countersign_core::{
    Actor, Digest, EnrolmentRequest, EventKind, IdpEnrolmentRequest, IdpSignInRequest, KeyId,
    KeyKind, PublicKey, SessionRequest, Signature, Timestamp,
};
use countersign_store::{Approver, ApproverKey, Conflict, NewEvent, Session, StoreError};

use super::{DomainError, DomainResult, attestation};
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
    let key = NewKey {
        approver_id: &req.approver_id,
        key_kind: req.key_kind,
        label: &req.label,
        public_key: &req.public_key,
        attestation: req.attestation.as_deref(),
        enrolled_via: None,
        signed_in_at: None,
        payload: &payload,
        proof: &req.proof,
    };
    let code_hash = secrets::hash(&secrets::normalise_code(&req.code));
    store_key(state, &key, &code_hash).await
}

/// A key about to be enrolled, with the payload its proof signs.
struct NewKey<'a> {
    approver_id: &'a str,
    key_kind: KeyKind,
    label: &'a str,
    public_key: &'a PublicKey,
    attestation: Option<&'a str>,
    /// The provider that vouched for it, when it was not an administrator's code.
    enrolled_via: Option<&'a str>,
    /// When the person last signed in at that provider.
    signed_in_at: Option<Timestamp>,
    payload: &'a [u8],
    proof: &'a Signature,
}

/// Checks `key`'s proof of possession and attestation, then enrols it with the one-time code
/// hashed to `code_hash`.
async fn store_key(
    state: &AppState,
    new: &NewKey<'_>,
    code_hash: &Digest,
) -> DomainResult<Enrolled> {
    new.public_key.verify(new.payload, new.proof).map_err(|_| {
        DomainError::refused(
            "bad_proof",
            "the enrolment proof was not signed by this key",
        )
    })?;
    let evidence = attestation::check_enrolment(
        state,
        new.key_kind,
        new.public_key,
        new.attestation,
        new.payload,
    )?;
    let now = state.now();
    let key = ApproverKey {
        key_id: new.public_key.key_id(),
        approver_id: new.approver_id.to_owned(),
        kind: new.key_kind,
        public_key: new.public_key.clone(),
        label: new.label.to_owned(),
        attestation: new.attestation.map(str::to_owned),
        attested_by: evidence.attested_by.clone(),
        enrolled_via: new.enrolled_via.map(str::to_owned),
        signed_in_at: new.signed_in_at,
        enrolled_at: now,
        revoked_at: None,
    };
    let event = NewEvent::new(
        Actor::Approver(new.approver_id.to_owned()),
        EventKind::KeyEnrolled {
            approver_id: new.approver_id.to_owned(),
            key_id: key.key_id,
            key_kind: key.kind,
            public_key: key.public_key.clone(),
            attestation_key: evidence.attestation_key,
            attested_by: evidence.attested_by,
        },
    );
    state.store.enrol_key(code_hash, &key, event).await?;
    tracing::info!(approver = %new.approver_id, key = %key.key_id.short(), kind = ?key.kind, attested_by = ?key.attested_by, "key enrolled");
    Ok(Enrolled {
        approver_id: new.approver_id.to_owned(),
        key_id: key.key_id,
        attested_by: key.attested_by,
    })
}

/// What a sign-in with the organisation's OpenID Provider needs, with a fresh nonce.
pub async fn oidc_sign_in(state: &AppState) -> DomainResult<OidcSignIn> {
    let oidc = state.oidc.as_ref().ok_or_else(no_provider)?;
    let (metadata, _) = oidc
        .provider()
        .await
        .map_err(|e| DomainError::refused("identity_provider_unavailable", e.to_string()))?;
    let (nonce, expires_at) = crate::challenge::issue(
        &state.key,
        state
            .now()
            .add_seconds(i64::try_from(oidc.config.max_sign_in_age_seconds).unwrap_or(600)),
    );
    Ok(OidcSignIn {
        issuer: metadata.issuer.clone(),
        client_id: oidc.config.client_id.clone(),
        scope: oidc.config.scope.clone(),
        authorization_endpoint: metadata.authorization_endpoint.clone(),
        token_endpoint: metadata.token_endpoint.clone(),
        device_authorization_endpoint: metadata.device_authorization_endpoint.clone(),
        nonce,
        expires_at,
        max_age_seconds: oidc.config.max_sign_in_age_seconds,
    })
}

fn no_provider() -> DomainError {
    DomainError::refused(
        "identity_provider_not_configured",
        "this service has no OpenID Provider configured; enrol with an administrator's code",
    )
}

/// A sign-in the provider vouched for: who it names and when the person signed in.
struct SignedIn {
    who: countersign_identity::MappedIdentity,
    at: Timestamp,
}

/// Checks a sign-in's nonce (this service's, unexpired), then its ID token (the provider's,
/// for its client, carrying that nonce or, from a device sign-in that has none, issued after
/// the sign-in began), then `proof` over `payload` by `public_key`; then uses the nonce (and a
/// device sign-in's token) up, so one sign-in does one thing.
async fn verify_sign_in(
    state: &AppState,
    id_token: &str,
    nonce: &Digest,
    public_key: &PublicKey,
    payload: &[u8],
    proof: &Signature,
) -> DomainResult<SignedIn> {
    let oidc = state.oidc.as_ref().ok_or_else(no_provider)?;
    let invalid_nonce = || DomainError::Store(StoreError::Conflict(Conflict::ChallengeInvalid));
    let nonce_expires = crate::challenge::expiry(&state.key, nonce).ok_or_else(invalid_nonce)?;
    let now = state.now();
    if nonce_expires <= now {
        return Err(invalid_nonce());
    }
    public_key
        .verify(payload, proof)
        .map_err(|_| DomainError::refused("bad_proof", "the proof was not signed by this key"))?;
    let (_, verifier) = oidc
        .provider()
        .await
        .map_err(|e| DomainError::refused("identity_provider_unavailable", e.to_string()))?;
    let verified = verifier
        .verify(id_token, &oidc.expectations(&nonce.to_hex()))
        .await
        .map_err(|e| DomainError::Unauthenticated(format!("ID token {e}")))?;
    let who = oidc
        .config
        .mapping()
        .map(&verified)
        .map_err(|e| DomainError::refused("identity_unmapped", e.to_string()))?;
    if !verified.nonce_matched {
        // A device sign-in (RFC 8628 has no nonce): the token must have been issued after the
        // service gave out this sign-in's nonce, and the token itself is used up below.
        let issued = nonce_expires
            .add_seconds(-i64::try_from(oidc.config.max_sign_in_age_seconds).unwrap_or(600));
        if verified.issued_at.saturating_add(30) * 1000 < issued.as_millis() {
            return Err(DomainError::Unauthenticated(
                "ID token refused: it was issued before this sign-in began".into(),
            ));
        }
        state
            .store
            .use_challenge(&Digest::of(id_token.as_bytes()), nonce_expires, now)
            .await?;
    }
    state.store.use_challenge(nonce, nonce_expires, now).await?;
    // When the person signed in, by the provider's word, never later than now by ours.
    let said = verified.auth_time.unwrap_or(verified.issued_at);
    let at = Timestamp::from_millis(said.saturating_mul(1000))
        .ok()
        .filter(|t| *t < now)
        .unwrap_or(now);
    Ok(SignedIn { who, at })
}

/// Enrols the key of `req` for the person its ID token names ([`verify_sign_in`]; the key
/// signs the nonce). With provisioning on, the approver is created or updated from the token's
/// claims (its groups through the configured map), in the log as a change by `idp:<issuer>`.
pub async fn enrol_with_idp(state: &AppState, req: IdpEnrolmentRequest) -> DomainResult<Enrolled> {
    let oidc = state.oidc.as_ref().ok_or_else(no_provider)?;
    countersign_core::validate::text("label", &req.label, 128, false)?;
    let payload = IdpEnrolmentRequest::proof_payload(
        &req.nonce,
        req.key_kind,
        &req.label,
        &req.public_key,
        &state.config.origin,
    )
    .map_err(|e| DomainError::invalid("invalid_field", e.to_string()))?;
    let SignedIn { who, at } = verify_sign_in(
        state,
        &req.id_token,
        &req.nonce,
        &req.public_key,
        &payload,
        &req.proof,
    )
    .await?;
    let now = state.now();
    let idp = format!("idp:{}", oidc.config.issuer);
    let existing = state.store.approver(&who.id).await?;
    // A person the directory provisions has the groups the directory gives them, not the
    // token's; one it deactivated enrols nothing (the store checks that again as it enrols).
    let directory = state.store.directory_user_of(&who.id).await?;
    if directory.as_ref().is_some_and(|u| !u.active) {
        return Err(DomainError::Store(StoreError::Conflict(
            Conflict::Deprovisioned,
        )));
    }
    if directory.is_some() {
        // Provisioned by the directory: nothing to create or update.
    } else if oidc.config.provision {
        let approver = Approver {
            id: who.id.clone(),
            display_name: who
                .display_name
                .clone()
                .or_else(|| existing.as_ref().map(|a| a.display_name.clone()))
                .unwrap_or_else(|| who.id.clone()),
            groups: who.groups.iter().cloned().collect(),
        };
        if existing.as_ref() != Some(&approver) {
            crate::admin::put_approver(state.store.as_ref(), &idp, &approver, now)
                .await
                .map_err(|e| DomainError::refused("identity_unmapped", e.to_string()))?;
        }
    } else if existing.is_none() {
        return Err(DomainError::refused(
            "approver_not_provisioned",
            format!(
                "{} signed in, but is not an approver here; ask for them to be provisioned",
                who.id
            ),
        ));
    }
    // The store enrols keys against a one-time code; the provider's word stands in for an
    // administrator's, so the code is made and used at once.
    let (code, _) = crate::admin::issue_enrolment_code(
        state.store.as_ref(),
        &idp,
        &who.id,
        crate::admin::MIN_ENROLMENT_TTL_SECONDS,
        now,
    )
    .await
    .map_err(|e| DomainError::refused("identity_unmapped", e.to_string()))?;
    let key = NewKey {
        approver_id: &who.id,
        key_kind: req.key_kind,
        label: &req.label,
        public_key: &req.public_key,
        attestation: req.attestation.as_deref(),
        enrolled_via: Some(&oidc.config.issuer),
        signed_in_at: Some(at),
        payload: &payload,
        proof: &req.proof,
    };
    store_key(state, &key, &secrets::hash(&secrets::normalise_code(&code))).await
}

/// Records a fresh sign-in at the organisation's OpenID Provider behind an enrolled key, for
/// requests whose policy wants a recent one: the ID token must name the key's approver, and the
/// key must sign the sign-in's nonce ([`verify_sign_in`]).
pub async fn sign_in_key(state: &AppState, req: IdpSignInRequest) -> DomainResult<KeySignedIn> {
    let oidc = state.oidc.as_ref().ok_or_else(no_provider)?;
    // A nonce this service did not issue, or an expired one, costs no read.
    if crate::challenge::expiry(&state.key, &req.nonce).is_none_or(|until| until <= state.now()) {
        return Err(DomainError::Store(StoreError::Conflict(
            Conflict::ChallengeInvalid,
        )));
    }
    let key = state
        .store
        .key(&req.key_id)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| DomainError::Unauthenticated("unknown or revoked key".into()))?;
    let payload = IdpSignInRequest::proof_payload(&req.nonce, &req.key_id, &state.config.origin)
        .map_err(|e| DomainError::invalid("invalid_field", e.to_string()))?;
    let SignedIn { who, at } = verify_sign_in(
        state,
        &req.id_token,
        &req.nonce,
        &key.public_key,
        &payload,
        &req.proof,
    )
    .await?;
    if who.id != key.approver_id {
        return Err(DomainError::refused(
            "identity_mismatch",
            format!(
                "{} signed in, but this key is {}'s",
                who.id, key.approver_id
            ),
        ));
    }
    let now = state.now();
    let event = NewEvent::new(
        Actor::Approver(key.approver_id.clone()),
        EventKind::AdminChanged {
            operation: "key_signed_in".into(),
            subject: key.approver_id.clone(),
            detail: format!(
                "key {} vouched for by {}, signed in at {at}",
                key.key_id.short(),
                oidc.config.issuer
            ),
        },
    );
    state
        .store
        .record_sign_in(&key.key_id, &key.approver_id, at, event, now)
        .await?;
    state.log_grew();
    Ok(KeySignedIn {
        approver_id: key.approver_id,
        key_id: key.key_id,
        signed_in_at: at,
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
