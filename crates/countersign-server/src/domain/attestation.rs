//! Whether an enrolling key's device is what it claims. A TPM key comes with TPM2_Certify by an
//! attestation key (AK); the AK is tied to its TPM's manufacturer in two steps that keep no
//! state here: [`tpm_challenge`] checks the TPM's endorsement key (EK) certificate against the
//! trusted roots and seals a secret to that EK for the AK's name (TPM2_MakeCredential), and the
//! enrolment brings the secret back, which only that TPM could recover. The secret is a MAC
//! under the service key over the certificate, the AK and the challenge's end, so any replica
//! recomputes it. A PIV token's key comes with the token's attestation certificate chain.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use countersign_core::api::{TpmChallenge, TpmChallengeRequest};
use countersign_core::tpm_attestation::{attestation_key_from_area, name_of};
use countersign_core::{
    KeyId, KeyKind, PivAttestationDocument, PublicKey, Timestamp, TpmCertification,
    TpmEndorsementProof,
};
use countersign_keys::credential::make_credential;
use countersign_keys::endorsement;

use super::{DomainError, DomainResult};
use crate::state::AppState;

/// How long a sealed credential's secret is accepted: enough for a PIN prompt and a slow TPM.
const CHALLENGE_TTL_SECONDS: i64 = 300;
/// Larger than any EK certificate (about 1.5 KB) or chain certificate.
const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;
/// Larger than any TPMT_PUBLIC of a P-256 key.
const MAX_PUBLIC_AREA_BYTES: usize = 1024;

/// What checked out about an enrolling key's device.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeviceEvidence {
    /// The TPM attestation key whose TPM2_Certify about the key verified.
    pub attestation_key: Option<KeyId>,
    /// The trusted root whose chain vouched for the device; `None`: claimed.
    pub attested_by: Option<String>,
}

/// Seals a secret to the TPM whose EK certificate `req` carries, for its attestation key, once
/// the certificate chains to a trusted root. Costs a few signature checks and one RSA
/// encryption; writes nothing.
pub fn tpm_challenge(state: &AppState, req: &TpmChallengeRequest) -> DomainResult<TpmChallenge> {
    let anchors = &state.attestation;
    if anchors.tpm_roots.is_empty() {
        return Err(DomainError::refused(
            "attestation_not_configured",
            "this service trusts no TPM manufacturer's root ([attestation] tpm_roots), so it cannot check an endorsement key certificate",
        ));
    }
    let ek = decode("ek_certificate", &req.ek_certificate, MAX_CERTIFICATE_BYTES)?;
    let ak_area = decode(
        "attestation_key_public",
        &req.attestation_key_public,
        MAX_PUBLIC_AREA_BYTES,
    )?;
    attestation_key_from_area(&ak_area)
        .map_err(|e| DomainError::invalid("attestation_invalid", e.to_string()))?;
    let now = state.now();
    let verified = endorsement::verify(
        &ek,
        &anchors.tpm_intermediates,
        &anchors.tpm_roots,
        unix_seconds(now),
    )
    .map_err(endorsement_refused)?;
    let expires_at = now.add_seconds(CHALLENGE_TTL_SECONDS);
    let secret = credential_secret(state, &ek, &ak_area, expires_at);
    let credential = make_credential(&verified.key, &name_of(&ak_area), &secret)
        .map_err(|e| DomainError::invalid("attestation_invalid", e.to_string()))?;
    Ok(TpmChallenge {
        credential_blob: B64.encode(credential.id_object),
        encrypted_secret: B64.encode(credential.encrypted_secret),
        expires_at,
        root: verified.root,
    })
}

/// Checks the attestation sent with an enrolment of `key` (of `kind`), whose proof signs
/// `payload`: what it proves, or why it is refused. No attestation proves nothing and is not
/// an error; a policy may still require one ([`super::rules`]).
pub fn check_enrolment(
    state: &AppState,
    kind: KeyKind,
    key: &PublicKey,
    attestation: Option<&str>,
    payload: &[u8],
) -> DomainResult<DeviceEvidence> {
    let Some(text) = attestation else {
        return Ok(DeviceEvidence::default());
    };
    match kind {
        KeyKind::Tpm => {
            let certification = TpmCertification::decode(text)
                .map_err(|e| DomainError::invalid("attestation_invalid", e.to_string()))?;
            let ak = certification
                .verify(key, &TpmCertification::nonce(payload))
                .map_err(|e| DomainError::refused("bad_attestation", e.to_string()))?;
            let attested_by = match &certification.endorsement {
                None => None,
                Some(proof) => Some(check_endorsement(
                    state,
                    &certification.attestation_key,
                    proof,
                )?),
            };
            Ok(DeviceEvidence {
                attestation_key: Some(ak),
                attested_by,
            })
        }
        KeyKind::Pkcs11 => {
            let root = check_piv(state, key, text)?;
            Ok(DeviceEvidence {
                attestation_key: None,
                attested_by: Some(root),
            })
        }
        other => Err(DomainError::invalid(
            "attestation_unsupported",
            format!("no attestation format is known for {} keys", other.label()),
        )),
    }
}

/// The proof that the AK `ak` lives in a TPM a trusted manufacturer certified: the root.
fn check_endorsement(
    state: &AppState,
    ak: &PublicKey,
    proof: &TpmEndorsementProof,
) -> DomainResult<String> {
    let refused = |why: String| DomainError::refused("bad_attestation", why);
    let ek = decode(
        "ek_certificate",
        &proof.ek_certificate,
        MAX_CERTIFICATE_BYTES,
    )?;
    let ak_area = decode(
        "attestation_key_public",
        &proof.attestation_key_public,
        MAX_PUBLIC_AREA_BYTES,
    )?;
    let area_key = attestation_key_from_area(&ak_area).map_err(|e| refused(e.to_string()))?;
    if area_key != *ak {
        return Err(refused(
            "the endorsed attestation key is not the one that certified the key".into(),
        ));
    }
    let now = state.now();
    if proof.challenge_expires_at <= now {
        return Err(refused(
            "the TPM credential challenge has expired; enrol again".into(),
        ));
    }
    let secret = B64
        .decode(&proof.secret)
        .map_err(|e| DomainError::invalid("attestation_invalid", format!("secret: {e}")))?;
    if !state.key.mac_verifies(
        &credential_message(&ek, &ak_area, proof.challenge_expires_at),
        &secret,
    ) {
        return Err(refused(
            "the credential secret is not the one this service sealed to that TPM's endorsement key for that attestation key".into(),
        ));
    }
    // Checked again: the roots may have changed since the challenge, and the certificate the
    // proof names is the one whose chain must hold now.
    endorsement::verify(
        &ek,
        &state.attestation.tpm_intermediates,
        &state.attestation.tpm_roots,
        unix_seconds(now),
    )
    .map(|verified| verified.root)
    .map_err(endorsement_refused)
}

/// A certificate that does not parse is malformed input; one that parses but does not chain
/// is refused.
fn endorsement_refused(e: endorsement::EndorsementError) -> DomainError {
    match e {
        endorsement::EndorsementError::Encoding(_) => {
            DomainError::invalid("attestation_invalid", e.to_string())
        }
        other => DomainError::refused("endorsement_untrusted", other.to_string()),
    }
}

/// A PIV attestation of `key`: the root its chain ends at.
fn check_piv(state: &AppState, key: &PublicKey, text: &str) -> DomainResult<String> {
    let document = PivAttestationDocument::decode(text)
        .map_err(|e| DomainError::invalid("attestation_invalid", e.to_string()))?;
    let (attestation, device) = document
        .certificates()
        .map_err(|e| DomainError::invalid("attestation_invalid", e.to_string()))?;
    if attestation.len() > MAX_CERTIFICATE_BYTES || device.len() > MAX_CERTIFICATE_BYTES {
        return Err(DomainError::invalid(
            "attestation_invalid",
            "a certificate over 16 KiB",
        ));
    }
    if state.attestation.piv_roots.is_empty() {
        return Err(DomainError::refused(
            "attestation_not_configured",
            "this service trusts no PIV attestation root ([attestation] piv_roots); enrol without the attestation",
        ));
    }
    let verified = endorsement::verify_piv_attestation(
        &attestation,
        &device,
        &state.attestation.piv_roots,
        unix_seconds(state.now()),
    )
    .map_err(|e| DomainError::refused("bad_attestation", e.to_string()))?;
    match PublicKey::from_sec1_bytes(&verified.public_point) {
        Ok(attested) if attested == *key => Ok(verified.root),
        Ok(_) => Err(DomainError::refused(
            "bad_attestation",
            "the PIV attestation is for another key",
        )),
        Err(_) => Err(DomainError::refused(
            "bad_attestation",
            "the PIV attestation is for a key that is not P-256, so not the enrolled key",
        )),
    }
}

/// What the secret sealed for one challenge is the MAC of.
fn credential_message(ek: &[u8], ak_area: &[u8], expires_at: Timestamp) -> Vec<u8> {
    let mut message = b"countersign/tpm-credential/v1\0".to_vec();
    message.extend_from_slice(&expires_at.as_millis().to_be_bytes());
    message.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, ek).as_ref());
    message.extend_from_slice(&name_of(ak_area));
    message
}

fn credential_secret(
    state: &AppState,
    ek: &[u8],
    ak_area: &[u8],
    expires_at: Timestamp,
) -> [u8; 32] {
    state.key.mac(&credential_message(ek, ak_area, expires_at))
}

fn decode(field: &'static str, b64: &str, max: usize) -> DomainResult<Vec<u8>> {
    // Base64 is 4/3 of the bytes: refuse before decoding anything larger.
    if b64.len() > max / 3 * 4 + 4 {
        return Err(DomainError::invalid(
            "attestation_invalid",
            format!("{field} is over {max} bytes"),
        ));
    }
    B64.decode(b64)
        .map_err(|e| DomainError::invalid("attestation_invalid", format!("{field}: {e}")))
}

fn unix_seconds(at: Timestamp) -> u64 {
    u64::try_from(at.as_millis() / 1000).unwrap_or(0)
}
