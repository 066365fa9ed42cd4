//! ECDSA P-256 with SHA-256: public keys, key ids and signatures as they travel.
//!
//! Encodings, chosen so that `openssl` checks them without conversion:
//! - a public key is its DER SubjectPublicKeyInfo, base64 (standard alphabet, padded);
//! - a key id is the SHA-256 of that DER, in lowercase hex (`openssl pkey -pubin -outform DER |
//!   sha256sum` prints it);
//! - a signature is the DER `ECDSA-Sig-Value` (RFC 3279), base64. Hardware tokens return raw
//!   `r‖s`; [`Signature::from_raw`] converts.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature as P256Signature, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// Why a key or signature was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// Not base64.
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    /// Not a P-256 SubjectPublicKeyInfo.
    #[error("not a P-256 public key (DER SubjectPublicKeyInfo expected)")]
    PublicKey,
    /// Not a DER (or raw 64-byte) ECDSA signature.
    #[error("malformed ECDSA signature")]
    Malformed,
    /// Well-formed, but not made by this key over these bytes.
    #[error("signature does not verify")]
    Invalid,
}

/// A P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey, [u8; 65]);

impl PublicKey {
    /// Wraps a verifying key.
    pub fn from_verifying_key(key: VerifyingKey) -> Self {
        let mut point = [0u8; 65];
        point.copy_from_slice(key.to_encoded_point(false).as_bytes());
        Self(key, point)
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, SignatureError> {
        VerifyingKey::from_public_key_der(der)
            .map(Self::from_verifying_key)
            .map_err(|_| SignatureError::PublicKey)
    }

    /// Parses an uncompressed or compressed SEC1 point (what PKCS#11 and TPMs hand out).
    pub fn from_sec1_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        VerifyingKey::from_sec1_bytes(bytes)
            .map(Self::from_verifying_key)
            .map_err(|_| SignatureError::PublicKey)
    }

    /// Parses a PEM `PUBLIC KEY` block.
    pub fn from_pem(pem: &str) -> Result<Self, SignatureError> {
        VerifyingKey::from_public_key_pem(pem)
            .map(Self::from_verifying_key)
            .map_err(|_| SignatureError::PublicKey)
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Vec<u8> {
        // Encoding a valid P-256 key cannot fail; an empty result would fail every check.
        self.0
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// The PEM `PUBLIC KEY` block, as `openssl` reads it.
    pub fn to_pem(&self) -> String {
        self.0.to_public_key_pem(LineEnding::LF).unwrap_or_default()
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn key_id(&self) -> KeyId {
        KeyId(Digest::of(&self.to_spki_der()))
    }

    /// The underlying verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// Checks `signature` over `message` (hashed with SHA-256). Verification runs on `ring`'s
    /// constant-time assembly P-256; `p256` stays the type for keys and signing.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            &self.1,
        );
        key.verify(message, signature.0.to_der().as_bytes())
            .map_err(|_| SignatureError::Invalid)
    }

    /// The same check through RustCrypto `p256` (tests cross-check the two).
    pub fn verify_with_p256(
        &self,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        self.0
            .verify(message, &signature.0)
            .map_err(|_| SignatureError::Invalid)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(self.to_spki_der()))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let der = BASE64
            .decode(text)
            .map_err(|_| serde::de::Error::custom(SignatureError::Base64("public key")))?;
        PublicKey::from_spki_der(&der).map_err(serde::de::Error::custom)
    }
}

/// An ECDSA P-256 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(P256Signature);

impl Signature {
    /// Wraps a signature.
    pub fn from_p256(signature: P256Signature) -> Self {
        Self(signature)
    }

    /// Parses a DER `ECDSA-Sig-Value`.
    pub fn from_der(der: &[u8]) -> Result<Self, SignatureError> {
        P256Signature::from_der(der)
            .map(Self)
            .map_err(|_| SignatureError::Malformed)
    }

    /// Parses raw `r‖s` (64 bytes, big-endian), as PKCS#11 `CKM_ECDSA` and TPMs return it.
    pub fn from_raw(raw: &[u8]) -> Result<Self, SignatureError> {
        P256Signature::from_slice(raw)
            .map(Self)
            .map_err(|_| SignatureError::Malformed)
    }

    /// The DER encoding.
    pub fn to_der(&self) -> Vec<u8> {
        self.0.to_der().as_bytes().to_vec()
    }

    /// Raw `r‖s`.
    pub fn to_raw(&self) -> [u8; 64] {
        self.0.to_bytes().into()
    }

    /// Base64 of the DER encoding: the form used in every JSON document.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.to_der())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_base64())
    }
}

impl FromStr for Signature {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let der = BASE64
            .decode(s)
            .map_err(|_| SignatureError::Base64("signature"))?;
        Signature::from_der(&der)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Identifies a public key: SHA-256 of its DER SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub Digest);

impl KeyId {
    /// The first 16 hex characters, for people: enough to tell keys apart at a glance.
    pub fn short(&self) -> String {
        self.0.to_hex()[..16].to_owned()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl FromStr for KeyId {
    type Err = crate::digest::DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(KeyId)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    /// A fixed key for tests: the scalar 0x01…01 is valid on P-256.
    pub(crate) fn test_key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32].into()).expect("valid scalar")
    }

    pub(crate) fn sign(key: &SigningKey, msg: &[u8]) -> Signature {
        Signature::from_p256(key.sign(msg))
    }

    #[test]
    fn signature_verifies_and_rejects_other_message() {
        let key = test_key(1);
        let public = PublicKey::from_verifying_key(*key.verifying_key());
        let sig = sign(&key, b"hello");
        assert_eq!(public.verify(b"hello", &sig), Ok(()));
        assert_eq!(public.verify(b"hellO", &sig), Err(SignatureError::Invalid));
    }

    #[test]
    fn ring_and_p256_agree_on_valid_and_altered_signatures() {
        for seed in 1..=20u8 {
            let key = test_key(seed);
            let public = PublicKey::from_verifying_key(*key.verifying_key());
            let msg = [seed; 40];
            let sig = sign(&key, &msg);
            assert_eq!(public.verify(&msg, &sig), Ok(()));
            assert_eq!(public.verify_with_p256(&msg, &sig), Ok(()));
            let mut raw = sig.to_raw();
            raw[usize::from(seed) % 64] ^= 1;
            if let Ok(bad) = Signature::from_raw(&raw) {
                assert_eq!(public.verify(&msg, &bad), Err(SignatureError::Invalid));
                assert_eq!(
                    public.verify_with_p256(&msg, &bad),
                    Err(SignatureError::Invalid)
                );
            }
        }
    }

    #[test]
    fn signature_from_other_key_is_rejected() {
        let sig = sign(&test_key(1), b"hello");
        let other = PublicKey::from_verifying_key(*test_key(2).verifying_key());
        assert_eq!(other.verify(b"hello", &sig), Err(SignatureError::Invalid));
    }

    #[test]
    fn encodings_round_trip() {
        let key = test_key(3);
        let public = PublicKey::from_verifying_key(*key.verifying_key());
        let json = serde_json::to_string(&public).expect("serializes");
        assert_eq!(
            serde_json::from_str::<PublicKey>(&json).ok(),
            Some(public.clone())
        );
        assert_eq!(
            PublicKey::from_pem(&public.to_pem()).ok(),
            Some(public.clone())
        );
        let point = key.verifying_key().to_encoded_point(false);
        assert_eq!(
            PublicKey::from_sec1_bytes(point.as_bytes()).ok(),
            Some(public)
        );

        let sig = sign(&key, b"m");
        assert_eq!(Signature::from_raw(&sig.to_raw()), Ok(sig));
        assert_eq!(sig.to_base64().parse::<Signature>(), Ok(sig));
    }

    #[test]
    fn malformed_inputs_are_clear_errors() {
        assert_eq!(
            "%%%".parse::<Signature>(),
            Err(SignatureError::Base64("signature"))
        );
        assert_eq!("AAAA".parse::<Signature>(), Err(SignatureError::Malformed));
        assert_eq!(
            Signature::from_raw(&[0u8; 64]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            PublicKey::from_spki_der(b"junk"),
            Err(SignatureError::PublicKey)
        );
    }
}
