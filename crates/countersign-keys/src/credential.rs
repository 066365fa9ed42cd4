//! TPM2_MakeCredential in software (TPM 2.0 Library, Part 1 §24), for a verifier without a TPM:
//! a secret sealed to an endorsement key (EK) so that only the TPM holding that EK, and only for
//! the attestation key (AK) of the given name, can recover it with TPM2_ActivateCredential.
//! Getting the secret back proves the AK lives in the TPM whose EK certificate the verifier
//! checked — the link from a manufacturer's root to the keys the AK attests.
//!
//! Written for the TCG default RSA EK (template L-1: RSA-2048, name algorithm SHA-256,
//! AES-128-CFB), which `swtpm_setup` and hardware TPMs provision.

use aes::cipher::{AsyncStreamCipher as _, KeyIvInit as _};
use hmac::{Hmac, Mac as _};
use rsa::{BigUint, Oaep, RsaPublicKey};
use sha2::Sha256;

/// Why a credential could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The endorsement key is not an RSA key this code can encrypt to.
    #[error("endorsement key: {0}")]
    EndorsementKey(String),
    /// The secret is empty or longer than a TPM digest.
    #[error("a credential secret is 1 to 32 bytes")]
    Secret,
    /// Encryption failed (the system's randomness).
    #[error("sealing the credential: {0}")]
    Seal(String),
}

/// An RSA endorsement key's public part, as TPM2_ReadPublic gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaEndorsementKey {
    /// The modulus, big-endian.
    pub modulus: Vec<u8>,
    /// The public exponent (0 in a TPM public area means 65537).
    pub exponent: u32,
}

/// What TPM2_ActivateCredential takes: the TPM2B_ID_OBJECT's and the TPM2B_ENCRYPTED_SECRET's
/// contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The integrity HMAC and the encrypted secret (`credentialBlob`).
    pub id_object: Vec<u8>,
    /// The seed, encrypted to the EK (`secret`).
    pub encrypted_secret: Vec<u8>,
}

/// KDFa (Part 1 §11.4.10.2) with SHA-256: `bits` of key from `key`, `label` (a terminating
/// zero is added) and the two contexts.
pub fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        // HMAC takes a key of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            break;
        };
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// The TPM name of an object (kept here, beside the credential it is sealed for).
pub use countersign_core::tpm_attestation::name_of;

/// Seals `secret` to `ek` for the AK named `ak_name`.
pub fn make_credential(
    ek: &RsaEndorsementKey,
    ak_name: &[u8],
    secret: &[u8],
) -> Result<Credential, CredentialError> {
    if secret.is_empty() || secret.len() > 32 {
        return Err(CredentialError::Secret);
    }
    let exponent = if ek.exponent == 0 {
        65_537
    } else {
        ek.exponent
    };
    let public = RsaPublicKey::new(BigUint::from_bytes_be(&ek.modulus), BigUint::from(exponent))
        .map_err(|e| CredentialError::EndorsementKey(e.to_string()))?;
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let encrypted_secret = public
        .encrypt(
            &mut rand_core::OsRng,
            Oaep::new_with_label::<Sha256, _>("IDENTITY\0"),
            &seed,
        )
        .map_err(|e| CredentialError::Seal(e.to_string()))?;
    // The secret as a TPM2B_DIGEST, encrypted with AES-128-CFB under a key bound to the AK's
    // name (IV zero: the key is used once).
    let sym_key = kdfa(&seed, "STORAGE", ak_name, &[], 128);
    let mut enc_identity = (secret.len() as u16).to_be_bytes().to_vec();
    enc_identity.extend_from_slice(secret);
    cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&sym_key, &[0u8; 16])
        .map_err(|e| CredentialError::Seal(e.to_string()))?
        .encrypt(&mut enc_identity);
    let hmac_key = kdfa(&seed, "INTEGRITY", &[], &[], 256);
    let mut mac = Hmac::<Sha256>::new_from_slice(&hmac_key)
        .map_err(|e| CredentialError::Seal(e.to_string()))?;
    mac.update(&enc_identity);
    mac.update(ak_name);
    let outer = mac.finalize().into_bytes();
    let mut id_object = (outer.len() as u16).to_be_bytes().to_vec();
    id_object.extend_from_slice(&outer);
    id_object.extend_from_slice(&enc_identity);
    Ok(Credential {
        id_object,
        encrypted_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_gives_the_bits_asked_for_and_depends_on_every_input() {
        let a = kdfa(b"seed", "STORAGE", b"name", b"", 128);
        assert_eq!(a.len(), 16);
        assert_eq!(kdfa(b"seed", "INTEGRITY", b"", b"", 256).len(), 32);
        assert_ne!(a, kdfa(b"seed", "STORAGE", b"other", b"", 128));
        assert_ne!(a, kdfa(b"seed", "INTEGRITY", b"name", b"", 128));
        assert_ne!(a, kdfa(b"seeds", "STORAGE", b"name", b"", 128));
        assert_eq!(a, kdfa(b"seed", "STORAGE", b"name", b"", 128));
    }

    #[test]
    fn a_secret_must_be_a_digest_sized_value() {
        let ek = RsaEndorsementKey {
            modulus: vec![0xff; 256],
            exponent: 0,
        };
        assert_eq!(
            make_credential(&ek, &name_of(b"ak"), &[]),
            Err(CredentialError::Secret)
        );
        assert_eq!(
            make_credential(&ek, &name_of(b"ak"), &[1; 33]),
            Err(CredentialError::Secret)
        );
    }
}
