//! Session challenges that cost nothing until they are answered. A challenge is
//! `expiry (8 bytes, ms, big-endian) ‖ 8 random bytes ‖ HMAC-SHA-256(expiry ‖ random)[..16]`
//! under a key derived from the service key: the service can tell it issued one, and when it
//! ends, without having stored it. Only a correctly signed answer from an enrolled key records
//! the challenge as used (single use), so an unauthenticated client can make the service write
//! nothing and keep nothing.

use countersign_core::{Digest, Timestamp};

use crate::secrets;
use crate::service_key::ServiceKey;

/// A new challenge valid until `expires_at`.
pub fn issue(key: &ServiceKey, expires_at: Timestamp) -> (Digest, Timestamp) {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&expires_at.as_millis().to_be_bytes());
    bytes[8..16].copy_from_slice(&secrets::random_bytes::<8>());
    let tag = key.mac(&bytes[..16]);
    bytes[16..].copy_from_slice(&tag[..16]);
    (Digest(bytes), expires_at)
}

/// When `challenge` expires, if this service issued it; `None` for anything else.
pub fn expiry(key: &ServiceKey, challenge: &Digest) -> Option<Timestamp> {
    let bytes = &challenge.0;
    let tag = key.mac(&bytes[..16]);
    // Constant-time comparison of the truncated tag.
    let same = tag[..16]
        .iter()
        .zip(&bytes[16..])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0;
    if !same {
        return None;
    }
    let millis = i64::from_be_bytes(bytes[..8].try_into().ok()?);
    Timestamp::from_millis(millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;

    fn key(seed: u8) -> ServiceKey {
        ServiceKey::from_signing_key(SigningKey::from_bytes(&[seed; 32].into()).expect("scalar"))
            .expect("key")
    }

    #[test]
    fn issued_challenges_verify_and_carry_their_expiry() {
        let k = key(1);
        let at = Timestamp::from_millis(1_795_000_000_000).expect("in range");
        let (c, expires) = issue(&k, at);
        assert_eq!(expiry(&k, &c), Some(expires));
        // Another service key, or any changed byte, makes it not ours.
        assert_eq!(expiry(&key(2), &c), None);
        for i in [0, 9, 20, 31] {
            let mut forged = c;
            forged.0[i] ^= 1;
            assert_eq!(expiry(&k, &forged), None, "byte {i}");
        }
        assert_ne!(issue(&k, at).0, c, "random part differs");
    }
}
