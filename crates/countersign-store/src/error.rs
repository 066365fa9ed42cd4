//! Store errors. `NotFound` and `Conflict` are distinct so the service maps them to 404 and 409
//! (or to the rule that was broken) without looking at messages.

/// Why a store operation did not happen. When it fails, nothing of it was written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A rule checked atomically with the write refused it.
    #[error("{0}")]
    Conflict(Conflict),
    /// Stored data that does not parse: corruption or tampering, never silently skipped.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, connection, disk full); the operation was rolled back.
    #[error("storage backend: {0}")]
    Backend(String),
    /// The connection was lost while the backend committed: the operation may or may not have
    /// been stored. Retry idempotently (the same idempotency key, the same signed decision).
    #[error("storage outcome unknown: {0}")]
    OutcomeUnknown(String),
}

/// A rule enforced inside the store's transaction, where concurrent writers cannot race it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The request is no longer pending.
    #[error("the request is no longer pending")]
    NotPending,
    /// The request's time ran out.
    #[error("the request has expired")]
    Expired,
    /// This approver already decided this request.
    #[error("this approver has already decided this request")]
    AlreadyDecided,
    /// The decision nonce was seen before.
    #[error("decision nonce already used (replay)")]
    NonceReused,
    /// The grant was redeemed before.
    #[error("grant already redeemed")]
    GrantRedeemed,
    /// The grant is outside its validity window.
    #[error("grant is not valid at this time")]
    GrantNotValidNow,
    /// The grant is for another request digest.
    #[error("grant does not match the request digest")]
    GrantDigestMismatch,
    /// No redeemed grant to report an outcome for, or it was already reported.
    #[error("no redeemed grant awaiting an outcome")]
    NoOutcomeExpected,
    /// The enrolment code is unknown, used or expired.
    #[error("enrolment code is invalid, used or expired")]
    EnrolmentCodeInvalid,
    /// A key with this id is enrolled already.
    #[error("this key is already enrolled")]
    KeyExists,
    /// The decision's key is not an enrolled, unrevoked key of its approver at the moment the
    /// decision is recorded.
    #[error("the signing key has been revoked")]
    KeyRevoked,
    /// The challenge is unknown, used or expired.
    #[error("challenge is invalid, used or expired")]
    ChallengeInvalid,
    /// Something with this id exists already.
    #[error("already exists")]
    Exists,
    /// The record changed since it was read (its version is not the one expected).
    #[error("the record was changed by someone else; read it again")]
    Stale,
    /// The person was deactivated by the organisation's directory.
    #[error("this person has been deactivated by the organisation's directory")]
    Deprovisioned,
    /// The request takes no (more) reviews: it is not break-glass, or its reviews are done.
    #[error("this request takes no review: it is not break-glass, or its reviews are complete")]
    ReviewNotExpected,
    /// The agent's idempotency key names a request already.
    #[error("this idempotency key was used for another request")]
    IdempotencyKeyUsed,
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;
