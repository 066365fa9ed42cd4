//! The review of a break-glass request: after the emergency, reviewers sign that they looked
//! at what was done, with or without a concern. Signed like decisions, under its own domain,
//! so a review can never be replayed as an approval or the other way round.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::canonical::{CanonicalError, to_canonical_vec};
use crate::decision::{DecisionSignatureError, MAX_COMMENT_BYTES, Nonce};
use crate::digest::Digest;
use crate::domain;
use crate::ecdsa::{KeyId, PublicKey, Signature};
use crate::timestamp::Timestamp;

/// One reviewer's review of one break-glass request, bound to its digest.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// The request reviewed.
    pub request_id: Uuid,
    /// Its digest, as the reviewer was shown it.
    pub request_digest: Digest,
    /// Who reviewed.
    pub reviewer_id: String,
    /// The key that signs this review.
    pub key_id: KeyId,
    /// When, by the reviewer's clock.
    pub reviewed_at: Timestamp,
    /// The reviewer raises a concern (the use was not justified, or needs follow-up).
    pub concern: bool,
    /// What the reviewer found; empty when nothing to add.
    pub comment: String,
    /// Unique per review.
    pub nonce: Nonce,
}

impl Review {
    /// Checks what a signature cannot vouch for, as for decisions.
    pub fn validate(&self) -> Result<(), crate::ValidationError> {
        crate::identifier::check("review.reviewer_id", &self.reviewer_id)?;
        crate::validate::optional_text("review.comment", &self.comment, MAX_COMMENT_BYTES, true)
    }

    /// The bytes a reviewer's key signs: `countersign/review/v1\n || JCS(review)`.
    pub fn signing_payload(&self) -> Result<Vec<u8>, CanonicalError> {
        Ok(domain::prefixed(domain::REVIEW, &to_canonical_vec(self)?))
    }
}

/// A review with its reviewer's signature.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReview {
    /// What was reviewed.
    pub review: Review,
    /// ECDSA P-256 over [`Review::signing_payload`].
    pub signature: Signature,
}

impl SignedReview {
    /// Checks that `key` is the key the review names and that it made the signature.
    pub fn verify(&self, key: &PublicKey) -> Result<(), DecisionSignatureError> {
        let given = key.key_id();
        if given != self.review.key_id {
            return Err(DecisionSignatureError::KeyMismatch {
                named: self.review.key_id,
                given,
            });
        }
        let payload = self
            .review
            .signing_payload()
            .map_err(|e| DecisionSignatureError::Canonical(e.to_string()))?;
        key.verify(&payload, &self.signature)?;
        Ok(())
    }
}
