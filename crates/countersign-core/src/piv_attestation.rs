//! A PIV token's own statement about a key it generated (YubiKey PIV attestation): a
//! certificate for the slot's key signed by the device's attestation key (slot f9), whose
//! certificate the vendor's PIV root signed. The service checks the chain against the roots it
//! trusts and that the attested key is the enrolled one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::tpm_attestation::{AttestationError, decode_document, encode_document};

/// The attestation format tag.
pub const FORMAT: &str = "piv-attestation/v1";

/// The two certificates a PIV attestation is made of, as sent with an enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PivAttestationDocument {
    /// Always [`FORMAT`].
    pub format: String,
    /// The slot's attestation certificate (DER), base64 (`yubico-piv-tool -a attest`).
    pub attestation_certificate: String,
    /// The device's attestation certificate from slot f9 (DER), base64.
    pub device_certificate: String,
}

impl PivAttestationDocument {
    /// The document for two DER certificates.
    pub fn new(attestation_certificate: &[u8], device_certificate: &[u8]) -> Self {
        Self {
            format: FORMAT.into(),
            attestation_certificate: B64.encode(attestation_certificate),
            device_certificate: B64.encode(device_certificate),
        }
    }

    /// Base64 of the JSON, the form carried in `EnrolmentRequest::attestation`.
    pub fn encode(&self) -> String {
        encode_document(self)
    }

    /// Parses the form carried in `EnrolmentRequest::attestation`.
    pub fn decode(text: &str) -> Result<Self, AttestationError> {
        decode_document(text, FORMAT, |this: &Self| &this.format)
    }

    /// The two certificates, DER.
    pub fn certificates(&self) -> Result<(Vec<u8>, Vec<u8>), AttestationError> {
        let decode = |what: &str, b64: &str| {
            B64.decode(b64)
                .map_err(|e| AttestationError::Encoding(format!("{what}: {e}")))
        };
        Ok((
            decode("attestation_certificate", &self.attestation_certificate)?,
            decode("device_certificate", &self.device_certificate)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_round_trips_and_another_format_is_refused() {
        let doc = PivAttestationDocument::new(b"leaf", b"device");
        let back = PivAttestationDocument::decode(&doc.encode()).expect("decodes");
        assert_eq!(
            back.certificates().expect("der"),
            (b"leaf".to_vec(), b"device".to_vec())
        );
        let tpm = B64.encode(br#"{"format":"tpm2-certify/v1"}"#);
        assert!(PivAttestationDocument::decode(&tpm).is_err());
    }
}
