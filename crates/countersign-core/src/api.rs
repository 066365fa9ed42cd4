//! The bodies of the v1 HTTP interface, shared by the service and its clients.

pub mod admin;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::action::{Action, ActionStatus};
use crate::audit::{AuditEvent, ExecutionOutcome};
use crate::checkpoint::Checkpoint;
use crate::decision::{KeyKind, Verdict};
use crate::digest::Digest;
use crate::ecdsa::{KeyId, PublicKey, Signature};
use crate::grant::SignedGrant;
use crate::timestamp::Timestamp;

/// A decision as shown to agents and approvers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionView {
    /// Who decided.
    pub approver_id: String,
    /// Approve or deny.
    pub verdict: Verdict,
    /// When, by the approver's clock.
    pub decided_at: Timestamp,
    /// The signing key.
    pub key_id: KeyId,
    /// Its kind.
    pub key_kind: KeyKind,
    /// The approver's comment.
    pub comment: String,
}

/// A request and where it stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionView {
    /// Request id.
    pub id: Uuid,
    /// Where it stands.
    pub status: ActionStatus,
    /// Request digest.
    pub digest: Digest,
    /// Approvals needed.
    pub quorum: u32,
    /// Approvals so far.
    pub approvals: u32,
    /// The request as shown to approvers.
    pub action: Action,
    /// Decisions so far.
    pub decisions: Vec<DecisionView>,
    /// The grant (agents only, once approved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<SignedGrant>,
    /// The reported execution outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ExecutionOutcome>,
    /// The code to tell approvers (agents only, when the policy asks for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_code: Option<String>,
    /// The codes an approver picks from (approvers only, when the policy asks for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_choices: Option<Vec<String>>,
    /// True in inboxes and on the approver stream: the request's `diff`, `parameters` and
    /// `context` are left out (so `action` does not hash to `digest`), keeping every inbox
    /// message small whatever the agent sent. The whole request comes from
    /// `GET /v1/actions/{id}/view`; a summary is never signed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub summary: bool,
}

impl ActionView {
    /// Whether `approver` has decided this request already (as an identity, not a spelling).
    pub fn decided_by(&self, approver: &str) -> bool {
        self.decisions
            .iter()
            .any(|d| crate::identifier::same(&d.approver_id, approver))
    }

    /// The bounded form for inboxes and the approver stream: without the diff, parameters and
    /// context, whose size the agent chooses (up to 8 MiB); everything an inbox lists and a
    /// notification shows stays. See [`ActionView::summary`].
    pub fn summarized(mut self) -> Self {
        self.action.request.diff = None;
        self.action.request.parameters = Default::default();
        self.action.request.context = Default::default();
        self.summary = true;
        self
    }
}

/// What a decision did to its request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionEffect {
    /// An approval counted toward the quorum; the request still waits.
    Counted,
    /// The approval that completed the quorum: the request is approved.
    Approved,
    /// A denial: the request is denied.
    Denied,
}

impl std::fmt::Display for DecisionEffect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecisionEffect::Counted => "counted",
            DecisionEffect::Approved => "approved",
            DecisionEffect::Denied => "denied",
        })
    }
}

/// What a decision did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionResult {
    /// What it did to the request.
    pub result: DecisionEffect,
    /// Approvals so far.
    pub approvals: u32,
    /// Approvals needed.
    pub quorum: u32,
}

/// What a review of a break-glass request did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewResult {
    /// Reviews so far.
    pub reviews: u32,
    /// Reviews needed.
    pub review_quorum: u32,
    /// The reviews are complete.
    pub complete: bool,
}

/// Body of `POST /v1/grants/{id}/redeem`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// The digest the agent is about to act on.
    pub request_digest: Digest,
}

/// A redeemed grant.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redeemed {
    /// The grant.
    pub grant: SignedGrant,
    /// When.
    pub redeemed_at: Timestamp,
}

/// A key enrolled.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// Whose.
    pub approver_id: String,
    /// Which.
    pub key_id: KeyId,
    /// The trusted manufacturer's root that vouched for the key's device; absent: its
    /// hardware is only claimed (policies with `require_attested_key` refuse it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_by: Option<String>,
}

/// A fresh sign-in recorded behind an enrolled key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySignedIn {
    /// Whose.
    pub approver_id: String,
    /// Which.
    pub key_id: KeyId,
    /// When the person signed in, by the provider's word (never later than the service's now).
    pub signed_in_at: Timestamp,
}

/// A challenge to sign.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The random challenge.
    pub challenge: Digest,
    /// Unusable from then on.
    pub expires_at: Timestamp,
    /// What the signature binds to besides the challenge (the log origin).
    pub service: String,
}

/// A TPM asks the service to seal a secret to its endorsement key for its attestation key
/// (the first step of an attested TPM enrolment; nothing is stored).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmChallengeRequest {
    /// The TPM's endorsement key certificate (DER, as read from NV index 0x01c00002), base64.
    pub ek_certificate: String,
    /// The attestation key's TPMT_PUBLIC (marshalled), base64.
    pub attestation_key_public: String,
}

/// A secret sealed to a TPM's endorsement key for its attestation key (TPM2_MakeCredential):
/// only that TPM, holding that AK, can recover it with TPM2_ActivateCredential.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmChallenge {
    /// The TPM2B_ID_OBJECT's contents (`credentialBlob`), base64.
    pub credential_blob: String,
    /// The TPM2B_ENCRYPTED_SECRET's contents (the seed encrypted to the EK), base64.
    pub encrypted_secret: String,
    /// The recovered secret is accepted until then.
    pub expires_at: Timestamp,
    /// The manufacturer's root the EK certificate chains to.
    pub root: String,
}

/// How to sign in with the organisation's OpenID Provider, with a fresh nonce for this sign-in
/// (the ID token must carry it back, and the enrolled key signs it).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcSignIn {
    /// The provider's issuer.
    pub issuer: String,
    /// The public client the console and the CLI sign in as.
    pub client_id: String,
    /// The scopes to ask for.
    pub scope: String,
    /// Where a person signs in (authorization code with PKCE).
    pub authorization_endpoint: Option<String>,
    /// Where the code is exchanged.
    pub token_endpoint: Option<String>,
    /// Where a headless client starts the device authorization grant.
    pub device_authorization_endpoint: Option<String>,
    /// The nonce to send; single use.
    pub nonce: Digest,
    /// Unusable from then on.
    pub expires_at: Timestamp,
    /// The `max_age` to ask for: the sign-in must be at most this old at enrolment.
    pub max_age_seconds: u64,
}

/// An approver session.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOpened {
    /// Bearer token (`css_…`).
    pub token: String,
    /// Whose.
    pub approver_id: String,
    /// Until.
    pub expires_at: Timestamp,
}

/// A page of the audit log.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventsPage {
    /// Events in order.
    pub events: Vec<AuditEvent>,
    /// The log's size when read.
    pub tree_size: u64,
}

/// The latest signed checkpoint.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointView {
    /// Parsed.
    pub checkpoint: Checkpoint,
    /// The C2SP signed note, verbatim.
    pub note: String,
}

/// A witness's cosignature of a checkpoint it verified (`POST /v1/audit/cosignatures`). The
/// witness is the session's approver and key; the signature is over
/// [`Checkpoint::cosigning_payload`] of the service's checkpoint of `tree_size`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignatureRequest {
    /// Size of the checkpoint cosigned.
    pub tree_size: u64,
    /// ECDSA P-256 signature, DER, base64.
    pub signature: Signature,
}

/// One witness's latest cosigned checkpoint: the service's note with the witness's line added.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CosignedCheckpointView {
    /// The witness (an approver).
    pub approver_id: String,
    /// The witness key (an enrolled approver key, found in the log's `key_enrolled` events).
    pub key_id: KeyId,
    /// Size of the checkpoint.
    pub tree_size: u64,
    /// When the service received the cosignature.
    pub received_at: Timestamp,
    /// Signed note: the service's signature line, then the witness's.
    pub note: String,
}

/// The service's public key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKeyView {
    /// Checkpoint key name (the log origin).
    pub name: String,
    /// The key.
    pub public_key: PublicKey,
    /// Its id.
    pub key_id: KeyId,
    /// PEM, for openssl.
    pub pem: String,
}

/// An API error body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// For people.
    pub message: String,
}

/// Messages the service sends on the approver stream (`GET /v1/ws`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message: sign this to authenticate the stream.
    Challenge {
        /// The random challenge.
        challenge: Digest,
        /// What the signature binds to besides the challenge (the log origin).
        service: String,
    },
    /// Authenticated. `requests` is the complete set of pending requests this approver may
    /// decide as of log position `seq` (the log's size), as summaries: the client replaces its
    /// inbox with it, so a reconnect neither repeats nor misses a request. Every later message
    /// on the connection has a `seq` at least this one, never lower than the one before.
    Snapshot {
        /// Who is signed in.
        approver_id: String,
        /// Log size when the snapshot was taken.
        seq: u64,
        /// Pending requests this approver may decide and has not decided.
        requests: Vec<ActionView>,
    },
    /// A new request this approver may decide (announced once per connection, never when the
    /// snapshot held it).
    Request {
        /// Log position of the event.
        seq: u64,
        /// The request, as a summary.
        view: ActionView,
    },
    /// A request in the inbox changed: a decision counted, or it left `pending`.
    Update {
        /// Log position of the event.
        seq: u64,
        /// The request as it stands now, as a summary.
        view: ActionView,
    },
    /// Reply to a decision sent on the stream.
    Decided {
        /// The request.
        request_id: Uuid,
        /// What the decision did.
        result: DecisionResult,
    },
    /// A refused message; `request_id` names the request when it was a decision.
    Error {
        /// The request, for refused decisions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<Uuid>,
        /// Stable code.
        code: String,
        /// For people.
        message: String,
    },
}

/// Messages an approver sends on the stream.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Answer to the challenge: signature over `SessionRequest::payload`.
    Auth {
        /// The enrolled key.
        key_id: KeyId,
        /// The signature.
        signature: crate::ecdsa::Signature,
    },
    /// A signed decision.
    Decide {
        /// The decision.
        decision: crate::decision::SignedDecision,
    },
}
