//! The service's business steps, apart from HTTP: submitting a request, waiting for it,
//! deciding, redeeming a grant, reporting an outcome, cancelling, enrolling and opening
//! sessions, replacing the policy, keeping witnesses' cosignatures. Routes and the approver
//! stream extract what they were sent, call a step and map its [`DomainError`] to the API's
//! error in one place ([`crate::error`]).

pub mod approvers;
pub mod attestation;
pub mod decisions;
pub mod directory;
pub mod grants;
pub mod policy;
pub mod requests;
pub mod reviews;
pub mod rules;
pub mod witnesses;

use countersign_core::ValidationError;
use countersign_store::StoreError;

/// Why a step did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Input that breaks a rule of its shape.
    #[error("{message}")]
    Invalid {
        /// Stable machine-readable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// A field of the input that breaks a rule.
    #[error(transparent)]
    Field(#[from] ValidationError),
    /// A rule refused the caller: self-approval, eligibility, keys, signatures.
    #[error("{message}")]
    Refused {
        /// Stable machine-readable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// The caller could not be authenticated (an unknown or revoked key, a bad signature).
    #[error("{0}")]
    Unauthenticated(String),
    /// The state the step needs has moved on (another change came first).
    #[error("{message}")]
    Conflict {
        /// Stable machine-readable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// Nothing of this kind, or not the caller's.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The agent's idempotency key names another request.
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// The store refused (a rule checked in its transaction) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service failed itself (encoding, signing).
    #[error("{context}: {cause}")]
    Internal {
        /// What it was doing.
        context: &'static str,
        /// Why it failed (logged, never shown).
        cause: String,
    },
}

impl DomainError {
    /// A rule refusing the caller.
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }

    /// The state moved on.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// Input of the wrong shape.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    /// A failure of the service itself.
    pub fn internal(context: &'static str, cause: impl std::fmt::Display) -> Self {
        Self::Internal {
            context,
            cause: cause.to_string(),
        }
    }
}

/// The result of a step.
pub type DomainResult<T> = Result<T, DomainError>;
