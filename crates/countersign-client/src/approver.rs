//! What an approver's program does besides calling the API: open a session by signing a
//! challenge, and sign a decision over the digest it computed itself from what it shows.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use countersign_core::api::{ActionView, Enrolled, TpmChallengeRequest};
use countersign_core::{
    Decision, EnrolmentRequest, KeyId, KeyKind, Nonce, PublicKey, SessionRequest, Signature,
    SignedDecision, Timestamp, TpmCertification, TpmEndorsementProof, Verdict,
};
use rand_core::RngCore as _;

use crate::{Client, ClientError};

/// Why a decision could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ApproverError {
    /// The API failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The key refused to sign.
    #[error("signing failed: {0}")]
    Sign(String),
    /// What the service sent does not hash to the digest it claims: never sign it.
    #[error("the request's content does not match its digest; refusing to sign")]
    DigestMismatch,
    /// Encoding failed.
    #[error("{0}")]
    Encoding(String),
}

/// Signs a payload; the error is shown to the person.
pub type SignFn<'a> = Box<dyn Fn(&[u8]) -> Result<Signature, String> + Send + Sync + 'a>;
/// Attests the key bound to a nonce, when the device can.
pub type AttestFn<'a> = Box<dyn Fn(&[u8]) -> Result<Option<String>, String> + Send + Sync + 'a>;

/// Recovers a credential's secret from its blob and encrypted seed (TPM2_ActivateCredential).
pub type ActivateFn<'a> = Box<dyn Fn(&[u8], &[u8]) -> Result<Vec<u8>, String> + Send + Sync + 'a>;

/// What ties a TPM's attestation key to its manufacturer: the endorsement key certificate,
/// the attestation key's public area, and the TPM recovering a secret sealed to both.
pub struct EndorsementKey<'a> {
    /// The EK certificate (DER).
    pub ek_certificate: Vec<u8>,
    /// The attestation key's TPMT_PUBLIC (marshalled).
    pub attestation_key_public: Vec<u8>,
    /// Recovers a credential's secret.
    pub activate: ActivateFn<'a>,
}

/// The key being enrolled: what it is, and how it signs and (where the device can) attests.
pub struct EnrolmentKey<'a> {
    /// Where the private key lives.
    pub kind: KeyKind,
    /// Label shown to admins.
    pub label: String,
    /// The public key.
    pub public_key: PublicKey,
    /// Signs a payload.
    pub sign: SignFn<'a>,
    /// Device attestation bound to a nonce, when the device gives one.
    pub attest: AttestFn<'a>,
    /// The device's endorsement, when it has a manufacturer's certificate.
    pub endorsement: Option<EndorsementKey<'a>>,
}

/// The device's attestation bound to the enrolment proof `payload`; for a TPM with an
/// endorsement certificate, with the proof that its attestation key is that TPM's, when the
/// service checks endorsements (a service that trusts no manufacturer gets the attestation
/// without it; a TPM whose certificate the service refuses fails the enrolment, with why).
async fn attestation(
    client: &Client,
    key: &EnrolmentKey<'_>,
    payload: &[u8],
) -> Result<Option<String>, ApproverError> {
    let Some(attestation) =
        (key.attest)(&TpmCertification::nonce(payload)).map_err(ApproverError::Sign)?
    else {
        return Ok(None);
    };
    let Some(endorsement) = &key.endorsement else {
        return Ok(Some(attestation));
    };
    let request = TpmChallengeRequest {
        ek_certificate: B64.encode(&endorsement.ek_certificate),
        attestation_key_public: B64.encode(&endorsement.attestation_key_public),
    };
    let challenge = match client.tpm_challenge(&request).await {
        Ok(challenge) => challenge,
        Err(ClientError::Api { code, .. }) if code == "attestation_not_configured" => {
            return Ok(Some(attestation));
        }
        Err(e) => return Err(e.into()),
    };
    let decode = |what: &str, b64: &str| {
        B64.decode(b64)
            .map_err(|e| ApproverError::Encoding(format!("the service's {what}: {e}")))
    };
    let secret = (endorsement.activate)(
        &decode("credential blob", &challenge.credential_blob)?,
        &decode("encrypted secret", &challenge.encrypted_secret)?,
    )
    .map_err(ApproverError::Sign)?;
    let mut certification = TpmCertification::decode(&attestation)
        .map_err(|e| ApproverError::Encoding(e.to_string()))?;
    certification.endorsement = Some(TpmEndorsementProof {
        ek_certificate: request.ek_certificate,
        attestation_key_public: request.attestation_key_public,
        challenge_expires_at: challenge.expires_at,
        secret: B64.encode(secret),
    });
    Ok(Some(certification.encode()))
}

/// Enrols a key for `approver_id` with a one-time `code`, proving possession of the private
/// key by signing the enrolment payload (bound to this service), and sending the device's
/// attestation bound to that payload when it has one.
pub async fn enroll(
    client: &Client,
    approver_id: &str,
    code: String,
    key: EnrolmentKey<'_>,
) -> Result<Enrolled, ApproverError> {
    let service = client.server_key().await?.name;
    let payload = EnrolmentRequest::proof_payload(
        approver_id,
        key.kind,
        &key.label,
        &key.public_key,
        &service,
    )
    .map_err(|e| ApproverError::Encoding(e.to_string()))?;
    let proof = (key.sign)(&payload).map_err(ApproverError::Sign)?;
    let attestation = attestation(client, &key, &payload).await?;
    let request = EnrolmentRequest {
        approver_id: approver_id.to_owned(),
        code,
        key_kind: key.kind,
        label: key.label,
        public_key: key.public_key,
        attestation,
        proof,
    };
    Ok(client.enroll(&request).await?)
}

/// Enrols `key` for the person `id_token` names: the ID token of the sign-in the service gave
/// `nonce` for, which the key signs with its proof of possession.
pub async fn enroll_with_id_token(
    client: &Client,
    id_token: String,
    nonce: countersign_core::Digest,
    key: EnrolmentKey<'_>,
) -> Result<Enrolled, ApproverError> {
    let service = client.server_key().await?.name;
    let payload = countersign_core::IdpEnrolmentRequest::proof_payload(
        &nonce,
        key.kind,
        &key.label,
        &key.public_key,
        &service,
    )
    .map_err(|e| ApproverError::Encoding(e.to_string()))?;
    let proof = (key.sign)(&payload).map_err(ApproverError::Sign)?;
    let attestation = attestation(client, &key, &payload).await?;
    let request = countersign_core::IdpEnrolmentRequest {
        id_token,
        nonce,
        key_kind: key.kind,
        label: key.label,
        public_key: key.public_key,
        attestation,
        proof,
    };
    Ok(client.enroll_idp(&request).await?)
}

/// Records the sign-in `id_token` (for the sign-in the service gave `nonce` for) behind the
/// enrolled key `key_id`, which signs the nonce with `sign`.
pub async fn sign_in_key(
    client: &Client,
    id_token: String,
    nonce: countersign_core::Digest,
    key_id: KeyId,
    sign: impl Fn(&[u8]) -> Result<Signature, String>,
) -> Result<countersign_core::api::KeySignedIn, ApproverError> {
    let service = client.server_key().await?.name;
    let payload = countersign_core::IdpSignInRequest::proof_payload(&nonce, &key_id, &service)
        .map_err(|e| ApproverError::Encoding(e.to_string()))?;
    let proof = sign(&payload).map_err(ApproverError::Sign)?;
    let request = countersign_core::IdpSignInRequest {
        id_token,
        nonce,
        key_id,
        proof,
    };
    Ok(client.sign_in_key(&request).await?)
}

/// Opens a session for `key_id`, signing the service's challenge with `sign`.
pub async fn open_session(
    client: &Client,
    key_id: KeyId,
    sign: impl Fn(&[u8]) -> Result<Signature, String>,
) -> Result<Client, ApproverError> {
    let challenge = client.challenge().await?;
    let payload = SessionRequest::payload(&challenge.challenge, &key_id, &challenge.service)
        .map_err(|e| ApproverError::Encoding(e.to_string()))?;
    let signature = sign(&payload).map_err(ApproverError::Sign)?;
    let opened = client
        .open_session(&SessionRequest {
            key_id,
            challenge: challenge.challenge,
            signature,
        })
        .await?;
    Ok(client.clone().with_token(opened.token))
}

/// The current time from the system clock.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// What an approver decides about one request.
#[derive(Clone, Copy, Debug)]
pub struct Choice<'a> {
    /// Approve or deny.
    pub verdict: Verdict,
    /// The comment; empty for none.
    pub comment: &'a str,
    /// The verification code picked, when the request asks for one.
    pub verification_code: Option<&'a str>,
}

/// Signs a decision on `view`, after checking that the request shown hashes to its digest.
pub fn sign_decision(
    view: &ActionView,
    approver_id: &str,
    key_id: KeyId,
    decided: Choice<'_>,
    sign: impl Fn(&[u8]) -> Result<Signature, String>,
) -> Result<SignedDecision, ApproverError> {
    let Choice {
        verdict,
        comment,
        verification_code,
    } = decided;
    let digest = shown_digest(view)?;
    let nonce = fresh_nonce();
    let decision = Decision {
        request_id: view.id,
        request_digest: digest,
        verdict,
        approver_id: approver_id.to_owned(),
        key_id,
        decided_at: now(),
        comment: comment.to_owned(),
        nonce,
        verification_code: verification_code.map(str::to_owned),
    };
    let payload = decision
        .signing_payload()
        .map_err(|e| ApproverError::Encoding(e.to_string()))?;
    let signature = sign(&payload).map_err(ApproverError::Sign)?;
    Ok(SignedDecision {
        decision,
        signature,
    })
}

/// The digest of the request in `view`, computed from what it shows: refused unless it is the
/// digest the view claims (what is signed is what was shown).
fn shown_digest(view: &ActionView) -> Result<countersign_core::Digest, ApproverError> {
    let digest = view
        .action
        .digest()
        .map_err(|e| ApproverError::Encoding(e.to_string()))?;
    if digest != view.digest {
        return Err(ApproverError::DigestMismatch);
    }
    Ok(digest)
}

/// A random nonce for a signed statement.
fn fresh_nonce() -> Nonce {
    let mut nonce = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut nonce);
    Nonce(nonce)
}

/// Signs a review of the break-glass request in `view`, after checking that the view hashes to
/// the digest it claims (as for decisions).
pub fn sign_review(
    view: &ActionView,
    reviewer_id: &str,
    key_id: KeyId,
    concern: bool,
    comment: &str,
    sign: impl Fn(&[u8]) -> Result<Signature, String>,
) -> Result<countersign_core::SignedReview, ApproverError> {
    let digest = shown_digest(view)?;
    let nonce = fresh_nonce();
    let review = countersign_core::Review {
        request_id: view.id,
        request_digest: digest,
        reviewer_id: reviewer_id.to_owned(),
        key_id,
        reviewed_at: now(),
        concern,
        comment: comment.to_owned(),
        nonce,
    };
    let payload = review
        .signing_payload()
        .map_err(|e| ApproverError::Encoding(e.to_string()))?;
    let signature = sign(&payload).map_err(ApproverError::Sign)?;
    Ok(countersign_core::SignedReview { review, signature })
}
