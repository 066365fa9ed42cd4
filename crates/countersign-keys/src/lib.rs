//! Approvers' signing keys. A [`Signer`] hands out its public key and signatures, never its
//! private key, so hardware backends (PKCS#11, TPM 2.0) and the development software key are
//! used the same way.

pub mod files;
mod software;

use countersign_core::{KeyId, KeyKind, PublicKey, Signature};

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
}
