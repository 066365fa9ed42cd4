//! An approver's decision and its signature.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::canonical::{CanonicalError, to_canonical_vec};
use crate::digest::Digest;
use crate::domain;
use crate::ecdsa::{KeyId, PublicKey, Signature, SignatureError};
use crate::timestamp::Timestamp;

/// Approve or deny.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Counts toward quorum.
    Approve,
    /// Denies the request.
    Deny,
}

/// What kind of key store holds a signing key; policy may require a hardware one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A PKCS#11 token (YubiKey, smart card, HSM).
    Pkcs11,
    /// A TPM 2.0.
    Tpm,
    /// Apple's Secure Enclave.
    SecureEnclave,
    /// A Windows platform (CNG/TPM-backed) key.
    WindowsPlatform,
    /// A key in a file: for development only.
    Software,
}

impl KeyKind {
    /// True when the private key cannot leave a hardware device.
    pub fn is_hardware(self) -> bool {
        !matches!(self, KeyKind::Software)
    }

    /// How the key is described to people.
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::Pkcs11 => "PKCS#11 token",
            KeyKind::Tpm => "TPM 2.0",
            KeyKind::SecureEnclave => "Secure Enclave",
            KeyKind::WindowsPlatform => "Windows platform key",
            KeyKind::Software => "software — not hardware-backed",
        }
    }
}

/// 16 random bytes, hex, that make each decision unique so a replay is recognisable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce(pub [u8; 16]);

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({self})")
    }
}

/// The error for a nonce that is not 32 lowercase hex characters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expected a nonce of 32 lowercase hex characters")]
pub struct NonceParseError;

impl FromStr for Nonce {
    type Err = NonceParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(NonceParseError);
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| NonceParseError)?;
        Ok(Self(out))
    }
}

impl Serialize for Nonce {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One approver's verdict on one request, bound to the digest of what they were shown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// The request decided.
    pub request_id: Uuid,
    /// The digest of the request as shown to the approver.
    pub request_digest: Digest,
    /// Approve or deny.
    pub verdict: Verdict,
    /// Who decided.
    pub approver_id: String,
    /// The key that signs this decision.
    pub key_id: KeyId,
    /// When, by the approver's clock (the service bounds the skew).
    pub decided_at: Timestamp,
    /// The approver's comment; empty when none.
    pub comment: String,
    /// Unique per decision.
    pub nonce: Nonce,
    /// The verification code the approver picked, when the policy asks for one (absent
    /// otherwise, so decisions without one sign the same bytes as before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_code: Option<String>,
}

/// Longest decision comment, in bytes.
pub const MAX_COMMENT_BYTES: usize = 2000;

impl Decision {
    /// Checks the fields a signature cannot vouch for: the approver id is a canonical
    /// identifier, the comment is bounded text without control (but newline and tab),
    /// bidirectional or invisible characters; the error names the field.
    pub fn validate(&self) -> Result<(), crate::ValidationError> {
        crate::identifier::check("decision.approver_id", &self.approver_id)?;
        crate::validate::optional_text("decision.comment", &self.comment, MAX_COMMENT_BYTES, true)?;
        if let Some(code) = &self.verification_code {
            let ok = code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit());
            if !ok {
                return Err(crate::ValidationError::new(
                    "decision.verification_code",
                    "must be two digits",
                ));
            }
        }
        Ok(())
    }

    /// The bytes an approver's key signs: `countersign/decision/v1\n || JCS(decision)`.
    pub fn signing_payload(&self) -> Result<Vec<u8>, CanonicalError> {
        Ok(domain::prefixed(domain::DECISION, &to_canonical_vec(self)?))
    }
}

/// Why a signed decision was not accepted as authentic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecisionSignatureError {
    /// The decision names another key than the one it was checked against.
    #[error("decision names key {named}, but was checked against key {given}")]
    KeyMismatch {
        /// Key id in the decision.
        named: KeyId,
        /// Key id of the key given.
        given: KeyId,
    },
    /// The payload has no canonical form.
    #[error("decision has no canonical form: {0}")]
    Canonical(String),
    /// The signature does not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// A decision with its approver's signature.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDecision {
    /// What was decided.
    pub decision: Decision,
    /// ECDSA P-256 over [`Decision::signing_payload`].
    pub signature: Signature,
}

impl SignedDecision {
    /// Checks that `key` is the key the decision names and that it made the signature.
    pub fn verify(&self, key: &PublicKey) -> Result<(), DecisionSignatureError> {
        let given = key.key_id();
        if given != self.decision.key_id {
            return Err(DecisionSignatureError::KeyMismatch {
                named: self.decision.key_id,
                given,
            });
        }
        let payload = self
            .decision
            .signing_payload()
            .map_err(|e| DecisionSignatureError::Canonical(e.to_string()))?;
        key.verify(&payload, &self.signature)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::tests::sample_action;
    use crate::ecdsa::tests::{sign, test_key};

    fn signed(verdict: Verdict) -> (SignedDecision, PublicKey) {
        let key = test_key(7);
        let public = PublicKey::from_verifying_key(*key.verifying_key());
        let action = sample_action();
        let decision = Decision {
            request_id: action.id,
            request_digest: action.digest().expect("digest"),
            verdict,
            approver_id: "bob@example.com".into(),
            key_id: public.key_id(),
            decided_at: action.created_at.add_seconds(30),
            comment: "looks right".into(),
            nonce: Nonce([9; 16]),
            verification_code: None,
        };
        let payload = decision.signing_payload().expect("payload");
        let signature = sign(&key, &payload);
        (
            SignedDecision {
                decision,
                signature,
            },
            public,
        )
    }

    #[test]
    fn signed_decision_verifies() {
        let (d, key) = signed(Verdict::Approve);
        assert_eq!(d.verify(&key), Ok(()));
    }

    #[test]
    fn changed_verdict_breaks_signature() {
        let (mut d, key) = signed(Verdict::Deny);
        d.decision.verdict = Verdict::Approve;
        assert!(matches!(
            d.verify(&key),
            Err(DecisionSignatureError::Signature(_))
        ));
    }

    #[test]
    fn other_key_is_a_key_mismatch() {
        let (d, _) = signed(Verdict::Approve);
        let other = PublicKey::from_verifying_key(*test_key(8).verifying_key());
        assert!(matches!(
            d.verify(&other),
            Err(DecisionSignatureError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn payload_is_domain_separated() {
        let (d, _) = signed(Verdict::Approve);
        let payload = d.decision.signing_payload().expect("payload");
        assert!(payload.starts_with(b"countersign/decision/v1\n{\"approver_id\":"));
    }

    #[test]
    fn nonce_text_rules() {
        assert!("00112233445566778899aabbccddeeff".parse::<Nonce>().is_ok());
        assert!("00112233445566778899AABBCCDDEEFF".parse::<Nonce>().is_err());
        assert!("0011".parse::<Nonce>().is_err());
    }

    #[test]
    fn software_keys_are_labelled_as_such() {
        assert!(!KeyKind::Software.is_hardware());
        assert!(KeyKind::Software.label().contains("not hardware-backed"));
        assert!(KeyKind::Pkcs11.is_hardware());
    }
}
