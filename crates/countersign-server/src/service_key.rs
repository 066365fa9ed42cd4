//! The service's own signing key (grants and checkpoints): generated on first start, kept in
//! the data directory readable by the owner only.

use std::path::Path;

use countersign_core::{PublicKey, Signature};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};

/// File name inside the data directory.
pub const FILE_NAME: &str = "service-key.pem";

/// The service's key. Signing runs on `ring` (assembly P-256, randomized nonces): every
/// approving decision signs a grant, so this is on the hot path.
pub struct ServiceKey {
    signing: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    public: PublicKey,
    /// Authenticates the service's own short-lived tokens (challenges), derived from the
    /// signing key so that every replica sharing the key accepts what another issued.
    mac: ring::hmac::Key,
}

impl ServiceKey {
    /// Loads `dir/service-key.pem`, creating it on first start.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(FILE_NAME);
        let signing = if path.exists() {
            countersign_keys::files::check_owner_only(&path)?;
            let pem = std::fs::read_to_string(&path)?;
            SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?
        } else {
            let key = SigningKey::random(&mut rand_core::OsRng);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            countersign_keys::files::write_owner_only(&path, pem.as_bytes())?;
            tracing::info!(path = %path.display(), "generated the service signing key");
            key
        };
        Self::from_signing_key(signing)
    }

    /// Wraps a key.
    pub fn from_signing_key(signing: SigningKey) -> std::io::Result<Self> {
        let public = PublicKey::from_verifying_key(*signing.verifying_key());
        let rng = ring::rand::SystemRandom::new();
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let der = signing.to_pkcs8_der().map_err(|e| invalid(e.to_string()))?;
        let mac_secret = countersign_core::Digest::of_prefixed(
            countersign_core::domain::CHALLENGE_MAC,
            &signing.to_bytes(),
        );
        let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &mac_secret.0);
        let signing = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            der.as_bytes(),
            &rng,
        )
        .map_err(|e| invalid(format!("service key: {e}")))?;
        Ok(Self {
            signing,
            rng,
            public,
            mac,
        })
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// HMAC-SHA-256 of `message` under the key derived from the signing key.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let tag = ring::hmac::sign(&self.mac, message);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Whether `tag` is the MAC of `message` (constant time).
    pub fn mac_verifies(&self, message: &[u8], tag: &[u8]) -> bool {
        ring::hmac::verify(&self.mac, message, tag).is_ok()
    }

    /// Signs `message` (SHA-256, ECDSA P-256). Fails only if the system's randomness does.
    pub fn sign(&self, message: &[u8]) -> Result<Signature, SignError> {
        let signed = self
            .signing
            .sign(&self.rng, message)
            .map_err(|_| SignError)?;
        Signature::from_der(signed.as_ref()).map_err(|_| SignError)
    }
}

/// The service key could not sign (no system randomness): the step is refused.
#[derive(Debug, thiserror::Error)]
#[error("the service key could not sign")]
pub struct SignError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("dir");
        let first = ServiceKey::load_or_create(dir.path()).expect("create");
        let again = ServiceKey::load_or_create(dir.path()).expect("load");
        assert_eq!(first.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sig = first.sign(b"m").expect("signs");
        assert_eq!(again.public().verify(b"m", &sig), Ok(()));
    }
}
