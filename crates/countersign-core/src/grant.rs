//! The single-use, short-lived grant an agent receives once a request is approved.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::canonical::{CanonicalError, to_canonical_vec};
use crate::digest::Digest;
use crate::domain;
use crate::ecdsa::{PublicKey, Signature, SignatureError};
use crate::timestamp::Timestamp;

/// Permission to perform exactly one approved action, for a short time.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Unique id; redeeming marks it used.
    pub grant_id: Uuid,
    /// The approved request.
    pub request_id: Uuid,
    /// The digest of exactly what was approved.
    pub request_digest: Digest,
    /// Not valid before.
    pub not_before: Timestamp,
    /// Not valid from this instant on.
    pub expires_at: Timestamp,
    /// Redeemable once only.
    pub single_use: bool,
}

impl Grant {
    /// The bytes the service signs: `countersign/grant/v1\n || JCS(grant)`.
    pub fn signing_payload(&self) -> Result<Vec<u8>, CanonicalError> {
        Ok(domain::prefixed(domain::GRANT, &to_canonical_vec(self)?))
    }
}

/// Why a grant may not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    /// Not signed by the service's key.
    #[error("grant signature does not verify: {0}")]
    Signature(#[from] SignatureError),
    /// No canonical form.
    #[error("grant has no canonical form: {0}")]
    Canonical(String),
    /// Used before `not_before`.
    #[error("grant is not valid before {0}")]
    NotYetValid(Timestamp),
    /// Used at or after `expires_at`.
    #[error("grant expired at {0}")]
    Expired(Timestamp),
    /// Presented for another request than the one approved.
    #[error("grant is for request digest {granted}, not {presented}")]
    DigestMismatch {
        /// Digest in the grant.
        granted: Digest,
        /// Digest presented.
        presented: Digest,
    },
}

/// A grant with the service's signature.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedGrant {
    /// The grant.
    pub grant: Grant,
    /// ECDSA P-256 over [`Grant::signing_payload`] by the service key.
    pub signature: Signature,
}

impl SignedGrant {
    /// Checks signature, time window and digest: everything but single use, which needs the
    /// service's record of redemptions.
    pub fn check(
        &self,
        service_key: &PublicKey,
        now: Timestamp,
        digest: &Digest,
    ) -> Result<(), GrantError> {
        let payload = self
            .grant
            .signing_payload()
            .map_err(|e| GrantError::Canonical(e.to_string()))?;
        service_key.verify(&payload, &self.signature)?;
        if now < self.grant.not_before {
            return Err(GrantError::NotYetValid(self.grant.not_before));
        }
        if now >= self.grant.expires_at {
            return Err(GrantError::Expired(self.grant.expires_at));
        }
        if &self.grant.request_digest != digest {
            return Err(GrantError::DigestMismatch {
                granted: self.grant.request_digest,
                presented: *digest,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecdsa::tests::{sign, test_key};

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).expect("in range")
    }

    fn signed() -> (SignedGrant, PublicKey) {
        let key = test_key(5);
        let grant = Grant {
            grant_id: Uuid::from_u128(2),
            request_id: Uuid::from_u128(1),
            request_digest: Digest::of(b"request"),
            not_before: ts(1_000_000),
            expires_at: ts(1_060_000),
            single_use: true,
        };
        let signature = sign(&key, &grant.signing_payload().expect("payload"));
        let public = PublicKey::from_verifying_key(*key.verifying_key());
        (SignedGrant { grant, signature }, public)
    }

    #[test]
    fn grant_is_usable_inside_its_window_for_its_digest() {
        let (g, key) = signed();
        assert_eq!(
            g.check(&key, ts(1_000_000), &Digest::of(b"request")),
            Ok(())
        );
        assert_eq!(
            g.check(&key, ts(1_059_999), &Digest::of(b"request")),
            Ok(())
        );
    }

    #[test]
    fn grant_outside_window_is_refused() {
        let (g, key) = signed();
        let d = Digest::of(b"request");
        assert_eq!(
            g.check(&key, ts(999_999), &d),
            Err(GrantError::NotYetValid(ts(1_000_000)))
        );
        assert_eq!(
            g.check(&key, ts(1_060_000), &d),
            Err(GrantError::Expired(ts(1_060_000)))
        );
    }

    #[test]
    fn grant_for_other_digest_is_refused() {
        let (g, key) = signed();
        assert!(matches!(
            g.check(&key, ts(1_000_001), &Digest::of(b"other")),
            Err(GrantError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn extended_grant_fails_signature() {
        let (mut g, key) = signed();
        g.grant.expires_at = ts(9_000_000);
        assert!(matches!(
            g.check(&key, ts(1_000_001), &Digest::of(b"request")),
            Err(GrantError::Signature(_))
        ));
    }
}
