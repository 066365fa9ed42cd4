//! Countersign's protocol core: the types agents, the service and approvers exchange, their
//! canonical encoding (RFC 8785), the digests and signatures that bind them, and the RFC 9162
//! Merkle audit log with signed checkpoints.
//!
//! Pure by design: no I/O, no async, no clock of its own. Whatever needs the time takes a
//! [`Timestamp`] or a [`Clock`] from the caller, so expiry and skew are testable.

pub mod action;
pub mod api;
pub mod audit;
pub mod canonical;
pub mod checkpoint;
pub mod decision;
pub mod digest;
pub mod domain;
pub mod ecdsa;
pub mod enrolment;
pub mod grant;
pub mod identifier;
pub mod json_budget;
pub mod merkle;
#[cfg(feature = "openapi")]
mod openapi;
pub mod piv_attestation;
pub mod policy;
pub mod review;
pub mod text;
pub mod timestamp;
pub mod tpm_attestation;
pub mod validate;
pub mod verification;
pub mod witness_policy;

pub use action::{Action, ActionRequest, ActionStatus, ActionType, Diff, Tag};
pub use audit::{Actor, AuditEvent, EncodedEvent, EventKind, ExecutionOutcome};
pub use canonical::{CanonicalError, to_canonical_vec};
pub use checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
pub use decision::{Decision, KeyKind, Nonce, SignedDecision, Verdict};
pub use digest::Digest;
pub use ecdsa::{KeyId, PublicKey, Signature, SignatureError};
pub use enrolment::{EnrolmentRequest, IdpEnrolmentRequest, IdpSignInRequest, SessionRequest};
pub use grant::{Grant, GrantError, SignedGrant};
pub use merkle::{ConsistencyProof, InclusionProof, MerkleTree, ProofError};
pub use piv_attestation::PivAttestationDocument;
pub use policy::{EscalationStep, PolicyEvaluation, PolicyOutcome, Risk, RiskLevel, TimedStep};
pub use review::{Review, SignedReview};
pub use timestamp::{Clock, Timestamp};
pub use tpm_attestation::{AttestationError, TpmCertification, TpmEndorsementProof};
pub use validate::ValidationError;
