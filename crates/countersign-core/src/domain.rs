//! Domain-separation prefixes: every hashed or signed byte string starts with one, so a
//! signature or digest made for one purpose can never be replayed as another.

/// Prefix of the request digest's preimage.
pub const REQUEST: &[u8] = b"countersign/request/v1\n";
/// Prefix of an approver's decision signature payload.
pub const DECISION: &[u8] = b"countersign/decision/v1\n";
/// Prefix of the service's grant signature payload.
pub const GRANT: &[u8] = b"countersign/grant/v1\n";
/// A reviewer's signed review of a break-glass request.
pub const REVIEW: &[u8] = b"countersign/review/v1\n";
/// Prefix of the service's checkpoint signature payload.
pub const CHECKPOINT: &[u8] = b"countersign/checkpoint/v1\n";
/// Prefix of a witness's cosignature of a checkpoint it verified.
pub const COSIGNATURE: &[u8] = b"countersign/cosignature/v1\n";
/// Prefix of the exporter's signature over an evidence bundle's digest.
pub const EVIDENCE: &[u8] = b"countersign/evidence/v1\n";
/// Prefix of the proof of possession an approver's key signs at enrolment.
pub const ENROL: &[u8] = b"countersign/enrol/v1\n";
/// An enrolment vouched for by the organisation's OpenID Provider (an ID token for this nonce).
pub const ENROL_IDP: &[u8] = b"countersign/enrol-idp/v1\n";
/// A fresh sign-in at the organisation's OpenID Provider vouching for an enrolled key again.
pub const SIGN_IN_IDP: &[u8] = b"countersign/sign-in-idp/v1\n";
/// A witness policy, signed by the service key for whoever operates the deployment.
pub const WITNESS_POLICY: &[u8] = b"countersign/witness-policy/v1\n";
/// Prefix of the hash that makes a TPM attestation's nonce from an enrolment's proof payload.
pub const ATTESTATION: &[u8] = b"countersign/attest/v1\n";
/// Prefix of the challenge an approver's key signs to open a session.
pub const SESSION: &[u8] = b"countersign/session/v1\n";
/// Prefix of the hash that derives the service's challenge MAC key from its signing key.
pub const CHALLENGE_MAC: &[u8] = b"countersign/challenge-mac/v1\n";
/// Prefix of the hash a request's verification code is drawn from.
pub const VERIFICATION: &[u8] = b"countersign/verification/v1\n";
/// Prefix of the policy hash's preimage.
pub const POLICY: &[u8] = b"countersign/policy/v1\n";

/// `prefix || body`, the bytes that are actually hashed or signed.
pub fn prefixed(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + body.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(body);
    out
}
