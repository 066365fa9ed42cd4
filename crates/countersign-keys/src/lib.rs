//! Approvers' signing keys. A [`Signer`] hands out its public key and signatures, never its
//! private key, so hardware backends (PKCS#11, TPM 2.0) and the development software key are
//! used the same way.

mod config;
pub mod credential;
pub mod endorsement;
pub mod files;
mod pin;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
mod software;
#[cfg(feature = "tpm")]
pub mod tpm;

use countersign_core::{KeyId, KeyKind, PublicKey, Signature};

pub use config::KeyConfig;
pub use pin::{PinPrompt, PinRequest};
pub use software::SoftwareKey;

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file or device could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The key material is not a P-256 key.
    #[error("not a P-256 key: {0}")]
    Format(String),
    /// The device refused to sign.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The device (module, token, TPM) is missing, removed or unusable.
    #[error("{0}")]
    Device(String),
    /// No key with that label or id on the device.
    #[error("{0}")]
    NotFound(String),
    /// The PIN or authorization value was wrong; nothing was retried.
    #[error("wrong PIN for {device}{}", warning.map(|w| format!(" ({w})")).unwrap_or_default())]
    WrongPin {
        /// The token or key asked about.
        device: String,
        /// What the device says about the attempts left, when it says anything.
        warning: Option<&'static str>,
    },
    /// The device locked the PIN after too many wrong attempts.
    #[error("the PIN of {0} is locked; unlock it with the security officer PIN or PUK")]
    PinLocked(String),
    /// The person did not give a PIN.
    #[error("no PIN given for {0}")]
    PinCancelled(String),
}

/// What a key is, for listings and enrolment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Where the private key lives.
    pub kind: KeyKind,
    /// A label for people.
    pub label: String,
    /// SHA-256 of the public key's DER.
    pub key_id: KeyId,
}

impl KeyInfo {
    /// One line for listings: kind (and the hardware warning), label, short fingerprint.
    pub fn describe(&self) -> String {
        format!(
            "{} [{}] {}",
            self.label,
            self.kind.label(),
            self.key_id.short()
        )
    }
}

/// A P-256 signing key whose private half never leaves its backend.
pub trait Signer: Send + Sync {
    /// The public key.
    fn public_key(&self) -> PublicKey;
    /// Kind, label and id.
    fn describe(&self) -> KeyInfo;
    /// ECDSA P-256 over SHA-256 of `message`.
    fn sign(&self, message: &[u8]) -> Result<Signature, KeyError>;
    /// Device evidence that the key was made on it and cannot leave it, bound to `nonce`,
    /// for enrolment; `None` when the backend has none.
    fn attest(&self, _nonce: &[u8]) -> Result<Option<String>, KeyError> {
        Ok(None)
    }
    /// What a verifier seals a credential to, to learn that [`Signer::attest`]'s attestation
    /// key lives in a device a manufacturer certified; `None` when the device has no
    /// endorsement certificate (or is not a TPM).
    fn endorsement(&self) -> Result<Option<Endorsement>, KeyError> {
        Ok(None)
    }
    /// Recovers the secret of a credential sealed to this device's endorsement key for its
    /// attestation key (TPM2_ActivateCredential).
    fn activate_credential(
        &self,
        _credential: &credential::Credential,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        Err(KeyError::Device(
            "this key's device has no endorsement key".into(),
        ))
    }
}

/// A device's endorsement: its manufacturer's certificate and the attestation key it vouches
/// for through a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endorsement {
    /// The endorsement key certificate (DER).
    pub ek_certificate: Vec<u8>,
    /// The attestation key's TPMT_PUBLIC (marshalled).
    pub attestation_key_public: Vec<u8>,
}

/// SHA-256 of `message`: hardware backends are handed the digest, because not every device
/// hashes (SoftHSM2 has no CKM_ECDSA_SHA256, a TPM signs digests).
#[cfg(any(feature = "pkcs11", feature = "tpm"))]
fn sha256(message: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(message).into()
}
