//! How an approver's key joins (enrolment with a one-time code and proof of possession) and how
//! it opens a session (signing a fresh server challenge).

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalError, to_canonical_vec};
use crate::decision::KeyKind;
use crate::digest::Digest;
use crate::domain;
use crate::ecdsa::{KeyId, PublicKey, Signature};

/// Enrols a public key for an approver.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentRequest {
    /// Who enrols.
    pub approver_id: String,
    /// The one-time code an administrator gave them.
    pub code: String,
    /// Where the private key lives.
    pub key_kind: KeyKind,
    /// A label for people.
    pub label: String,
    /// The public key.
    pub public_key: PublicKey,
    /// Device attestation, base64, when the device gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// Signature by the enrolled key over [`EnrolmentRequest::proof_payload`].
    pub proof: Signature,
}

#[derive(Serialize)]
struct EnrolmentProof<'a> {
    approver_id: &'a str,
    key_kind: KeyKind,
    label: &'a str,
    public_key: &'a PublicKey,
    service: &'a str,
}

impl EnrolmentRequest {
    /// `countersign/enrol/v1\n || JCS({approver_id, key_kind, label, public_key, service})`:
    /// proves the enrolling party holds the private key, for this service.
    pub fn proof_payload(
        approver_id: &str,
        key_kind: KeyKind,
        label: &str,
        public_key: &PublicKey,
        service: &str,
    ) -> Result<Vec<u8>, CanonicalError> {
        let body = EnrolmentProof {
            approver_id,
            key_kind,
            label,
            public_key,
            service,
        };
        Ok(domain::prefixed(domain::ENROL, &to_canonical_vec(&body)?))
    }
}

/// Enrols a public key for the person an ID token from the organisation's OpenID Provider
/// names, instead of an administrator's one-time code: the sign-in asked for `nonce` (issued by
/// this service), the ID token carries it back, and the key signs it — so the token, the sign-in
/// and the key are one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpEnrolmentRequest {
    /// The ID token of the sign-in.
    pub id_token: String,
    /// The nonce this service issued for the sign-in.
    pub nonce: Digest,
    /// Where the private key lives.
    pub key_kind: KeyKind,
    /// A label for people.
    pub label: String,
    /// The public key.
    pub public_key: PublicKey,
    /// Device attestation, base64, when the device gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// Signature by the enrolled key over [`IdpEnrolmentRequest::proof_payload`].
    pub proof: Signature,
}

#[derive(Serialize)]
struct IdpEnrolmentProof<'a> {
    key_kind: KeyKind,
    label: &'a str,
    nonce: &'a Digest,
    public_key: &'a PublicKey,
    service: &'a str,
}

impl IdpEnrolmentRequest {
    /// `countersign/enrol-idp/v1\n || JCS({key_kind, label, nonce, public_key, service})`.
    pub fn proof_payload(
        nonce: &Digest,
        key_kind: KeyKind,
        label: &str,
        public_key: &PublicKey,
        service: &str,
    ) -> Result<Vec<u8>, CanonicalError> {
        let body = IdpEnrolmentProof {
            key_kind,
            label,
            nonce,
            public_key,
            service,
        };
        Ok(domain::prefixed(
            domain::ENROL_IDP,
            &to_canonical_vec(&body)?,
        ))
    }
}

/// Vouches for an enrolled key again with a fresh sign-in at the organisation's OpenID Provider,
/// for requests whose policy wants a recent one (`max_sign_in_age_seconds`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpSignInRequest {
    /// The ID token of the sign-in.
    pub id_token: String,
    /// The nonce this service issued for the sign-in.
    pub nonce: Digest,
    /// The enrolled key the sign-in vouches for.
    pub key_id: KeyId,
    /// Signature by that key over [`IdpSignInRequest::proof_payload`].
    pub proof: Signature,
}

#[derive(Serialize)]
struct IdpSignInProof<'a> {
    key_id: &'a KeyId,
    nonce: &'a Digest,
    service: &'a str,
}

impl IdpSignInRequest {
    /// `countersign/sign-in-idp/v1\n || JCS({key_id, nonce, service})`.
    pub fn proof_payload(
        nonce: &Digest,
        key_id: &KeyId,
        service: &str,
    ) -> Result<Vec<u8>, CanonicalError> {
        let body = IdpSignInProof {
            key_id,
            nonce,
            service,
        };
        Ok(domain::prefixed(
            domain::SIGN_IN_IDP,
            &to_canonical_vec(&body)?,
        ))
    }
}

/// Opens an approver session by signing a challenge.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The enrolled key.
    pub key_id: KeyId,
    /// The challenge the service issued.
    pub challenge: Digest,
    /// Signature over [`SessionRequest::payload`].
    pub signature: Signature,
}

#[derive(Serialize)]
struct SessionPayload<'a> {
    challenge: &'a Digest,
    key_id: &'a KeyId,
    service: &'a str,
}

impl SessionRequest {
    /// `countersign/session/v1\n || JCS({challenge, key_id, service})`; `service` is the log
    /// origin, so a signed challenge cannot open a session elsewhere.
    pub fn payload(
        challenge: &Digest,
        key_id: &KeyId,
        service: &str,
    ) -> Result<Vec<u8>, CanonicalError> {
        let body = SessionPayload {
            challenge,
            key_id,
            service,
        };
        Ok(domain::prefixed(domain::SESSION, &to_canonical_vec(&body)?))
    }
}
