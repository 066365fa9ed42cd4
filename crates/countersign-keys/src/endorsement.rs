//! A TPM's endorsement key (EK) certificate checked against the manufacturers' roots the
//! deployment trusts: the chain from the EK certificate through the configured intermediates to
//! a configured root, each signature verified, each certificate within its validity. What comes
//! back is the EK's public key, to seal a credential to ([`crate::credential`]), and the root
//! that vouched for it.

use der::{Decode as _, Encode as _};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::signature::Verifier as _;
use x509_cert::Certificate;

use crate::credential::RsaEndorsementKey;

/// Why an EK certificate was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndorsementError {
    /// A certificate does not parse.
    #[error("certificate: {0}")]
    Encoding(String),
    /// No configured certificate issued one in the chain.
    #[error("the endorsement key certificate does not chain to a trusted root (stopped at {0})")]
    Untrusted(String),
    /// A signature in the chain does not verify.
    #[error("a signature in the chain does not verify: {0}")]
    BadSignature(String),
    /// A certificate is not valid at this time.
    #[error("{0} is not valid now")]
    Expired(String),
    /// The EK or an issuer uses an algorithm this code does not verify.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// An EK certificate that chains to a trusted root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEndorsement {
    /// The endorsement key.
    pub key: RsaEndorsementKey,
    /// The subject of the root it chains to.
    pub root: String,
}

const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
const SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";

/// Parses certificates given as PEM (any number, concatenated) or one DER.
pub fn certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, EndorsementError> {
    if bytes.starts_with(b"-----") {
        let text =
            std::str::from_utf8(bytes).map_err(|e| EndorsementError::Encoding(e.to_string()))?;
        Certificate::load_pem_chain(text.as_bytes())
            .map_err(|e| EndorsementError::Encoding(e.to_string()))?
            .iter()
            .map(|c| {
                c.to_der()
                    .map_err(|e| EndorsementError::Encoding(e.to_string()))
            })
            .collect()
    } else {
        Certificate::from_der(bytes).map_err(|e| EndorsementError::Encoding(e.to_string()))?;
        Ok(vec![bytes.to_vec()])
    }
}

fn parse(der: &[u8]) -> Result<Certificate, EndorsementError> {
    Certificate::from_der(der).map_err(|e| EndorsementError::Encoding(e.to_string()))
}

/// Checks `issuer` signed `cert`.
fn signed_by(cert: &Certificate, issuer: &Certificate) -> Result<(), EndorsementError> {
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|e| EndorsementError::Encoding(e.to_string()))?;
    let signature = cert.signature.raw_bytes();
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let algorithm = cert.signature_algorithm.oid.to_string();
    let bad = |e: String| {
        EndorsementError::BadSignature(format!("{}: {e}", cert.tbs_certificate.subject))
    };
    match algorithm.as_str() {
        SHA256_WITH_RSA | SHA384_WITH_RSA | SHA512_WITH_RSA => {
            let key = rsa::RsaPublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes())
                .map_err(|e| bad(e.to_string()))?;
            let sig =
                rsa::pkcs1v15::Signature::try_from(signature).map_err(|e| bad(e.to_string()))?;
            match algorithm.as_str() {
                SHA256_WITH_RSA => {
                    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key).verify(&tbs, &sig)
                }
                SHA384_WITH_RSA => {
                    rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key).verify(&tbs, &sig)
                }
                _ => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(key).verify(&tbs, &sig),
            }
            .map_err(|e| bad(e.to_string()))
        }
        ECDSA_WITH_SHA256 => {
            let key =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
                    .map_err(|e| bad(e.to_string()))?;
            let sig =
                p256::ecdsa::DerSignature::try_from(signature).map_err(|e| bad(e.to_string()))?;
            key.verify(&tbs, &sig).map_err(|e| bad(e.to_string()))
        }
        other => Err(EndorsementError::Unsupported(format!(
            "signature algorithm {other}"
        ))),
    }
}

fn valid_at(cert: &Certificate, now_unix: u64) -> Result<(), EndorsementError> {
    let validity = &cert.tbs_certificate.validity;
    let from = validity.not_before.to_unix_duration().as_secs();
    let until = validity.not_after.to_unix_duration().as_secs();
    if now_unix < from || now_unix > until {
        return Err(EndorsementError::Expired(
            cert.tbs_certificate.subject.to_string(),
        ));
    }
    Ok(())
}

/// Checks `leaf` (DER) chains through `intermediates` to one of `roots` (DER), every
/// certificate valid at `now_unix`; returns the parsed leaf and the root's subject.
pub fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now_unix: u64,
) -> Result<(Certificate, String), EndorsementError> {
    let leaf = parse(leaf)?;
    let roots: Vec<Certificate> = roots.iter().map(|r| parse(r)).collect::<Result<_, _>>()?;
    let intermediates: Vec<Certificate> = intermediates
        .iter()
        .map(|r| parse(r))
        .collect::<Result<_, _>>()?;
    let mut current = leaf.clone();
    // A chain longer than the certificates given would repeat one: stop there.
    for _ in 0..=intermediates.len() {
        valid_at(&current, now_unix)?;
        let issuer = &current.tbs_certificate.issuer;
        // Issuers are found by name, then by signature: two authorities may share a name
        // (every swtpm_localca is "CN=swtpm-localca"), and a CA's renewed key keeps it.
        let named = |c: &&Certificate| c.tbs_certificate.subject == *issuer;
        let mut refused = None;
        for root in roots.iter().filter(named) {
            match signed_by(&current, root) {
                Ok(()) => {
                    valid_at(root, now_unix)?;
                    return Ok((leaf, root.tbs_certificate.subject.to_string()));
                }
                Err(e) => refused = Some(e),
            }
        }
        let mut next = None;
        for candidate in intermediates.iter().filter(named) {
            match signed_by(&current, candidate) {
                Ok(()) => {
                    next = Some(candidate);
                    break;
                }
                Err(e) => refused = Some(e),
            }
        }
        match (next, refused) {
            (Some(next), _) => current = next.clone(),
            (None, Some(EndorsementError::BadSignature(_))) => {
                return Err(EndorsementError::Untrusted(format!(
                    "{issuer}: a trusted certificate of that name did not sign it"
                )));
            }
            (None, Some(other)) => return Err(other),
            (None, None) => return Err(EndorsementError::Untrusted(issuer.to_string())),
        }
    }
    Err(EndorsementError::Untrusted(
        current.tbs_certificate.issuer.to_string(),
    ))
}

/// Checks the EK certificate `ek` (DER) chains through `intermediates` to one of `roots` (DER),
/// every certificate valid at `now_unix`; returns the EK and the root's subject.
pub fn verify(
    ek: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now_unix: u64,
) -> Result<VerifiedEndorsement, EndorsementError> {
    let (leaf, root) = verify_chain(ek, intermediates, roots, now_unix)?;
    let spki = &leaf.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid.to_string() != RSA_ENCRYPTION {
        return Err(EndorsementError::Unsupported(format!(
            "an endorsement key of algorithm {} (RSA endorsement keys are verified)",
            spki.algorithm.oid
        )));
    }
    let rsa_key = rsa::RsaPublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes())
        .map_err(|e| EndorsementError::Encoding(e.to_string()))?;
    let exponent = rsa::traits::PublicKeyParts::e(&rsa_key).to_bytes_be();
    if exponent.len() > 4 {
        return Err(EndorsementError::Unsupported(
            "an exponent over 32 bits".into(),
        ));
    }
    Ok(VerifiedEndorsement {
        key: RsaEndorsementKey {
            modulus: rsa::traits::PublicKeyParts::n(&rsa_key).to_bytes_be(),
            exponent: exponent.iter().fold(0u32, |e, b| (e << 8) | u32::from(*b)),
        },
        root,
    })
}

/// What a YubiKey's PIV attestation says of a key in one of its slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PivAttestation {
    /// The attested key (SubjectPublicKeyInfo, DER).
    pub public_key: Vec<u8>,
    /// The attested key's point (the SubjectPublicKeyInfo's bits: SEC1 for EC keys), to compare
    /// with the enrolled key.
    pub public_point: Vec<u8>,
    /// The device's serial number.
    pub serial: Option<u64>,
    /// Its firmware version.
    pub firmware: Option<String>,
    /// The root the chain ends at.
    pub root: String,
}

const YUBICO_FIRMWARE: &str = "1.3.6.1.4.1.41482.3.3";
const YUBICO_SERIAL: &str = "1.3.6.1.4.1.41482.3.7";

/// Checks a YubiKey PIV key attestation (the certificate the device makes for a slot, signed by
/// its slot f9 key) chains through the device's f9 certificate to one of `roots` (Yubico's PIV
/// root), and reads what it says: the key, the serial number, the firmware.
pub fn verify_piv_attestation(
    attestation: &[u8],
    device: &[u8],
    roots: &[Vec<u8>],
    now_unix: u64,
) -> Result<PivAttestation, EndorsementError> {
    let (leaf, root) = verify_chain(attestation, &[device.to_vec()], roots, now_unix)?;
    let spki = &leaf.tbs_certificate.subject_public_key_info;
    let public_point = spki.subject_public_key.raw_bytes().to_vec();
    let public_key = spki
        .to_der()
        .map_err(|e| EndorsementError::Encoding(e.to_string()))?;
    let mut serial = None;
    let mut firmware = None;
    for extension in leaf.tbs_certificate.extensions.iter().flatten() {
        let value = extension.extn_value.as_bytes();
        match extension.extn_id.to_string().as_str() {
            YUBICO_SERIAL => {
                // A DER INTEGER: tag, length, big-endian value.
                serial = der::asn1::Int::from_der(value).ok().map(|i| {
                    i.as_bytes()
                        .iter()
                        .fold(0u64, |n, b| (n << 8) | u64::from(*b))
                });
            }
            YUBICO_FIRMWARE if value.len() == 3 => {
                firmware = Some(format!("{}.{}.{}", value[0], value[1], value[2]));
            }
            _ => {}
        }
    }
    Ok(PivAttestation {
        public_key,
        public_point,
        serial,
        firmware,
        root,
    })
}
