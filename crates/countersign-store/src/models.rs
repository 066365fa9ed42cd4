//! What the store keeps, as the service sees it.

use countersign_core::{
    Action, ActionStatus, Actor, Digest, EventKind, KeyId, KeyKind, PublicKey, Signature,
    SignedDecision, SignedGrant, Timestamp,
};
use uuid::Uuid;

/// An audit event before the store gives it its sequence number and time.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// Who caused it.
    pub actor: Actor,
    /// What happened.
    pub event: EventKind,
}

impl NewEvent {
    /// A new event.
    pub fn new(actor: Actor, event: EventKind) -> Self {
        Self { actor, event }
    }
}

/// A request and where it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    /// The request as shown to approvers.
    pub action: Action,
    /// Its digest.
    pub digest: Digest,
    /// Where it stands.
    pub status: ActionStatus,
    /// Approvals needed (0 when policy decided alone).
    pub quorum: u32,
    /// Last change.
    pub updated_at: Timestamp,
    /// How many of its timed steps (escalations, reminders: `PolicyOutcome::timed_steps`)
    /// were taken.
    pub steps_taken: u32,
}

/// A decision as accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionRecord {
    /// The signed decision.
    pub decision: SignedDecision,
    /// Kind of key that signed it.
    pub key_kind: KeyKind,
    /// When the service accepted it.
    pub recorded_at: Timestamp,
}

/// A grant and whether it was used.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantRecord {
    /// The signed grant.
    pub grant: SignedGrant,
    /// When it was redeemed, if it was.
    pub redeemed_at: Option<Timestamp>,
}

/// What an API token lets its bearer do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRole {
    /// Submit requests, wait, redeem grants, report outcomes.
    Agent,
    /// Administer the service: tokens, approvers, enrolment codes, keys, policy.
    Admin,
    /// Provision people and groups over SCIM: the organisation's directory's client.
    Scim,
}

impl TokenRole {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Agent => "agent",
            TokenRole::Admin => "admin",
            TokenRole::Scim => "scim",
        }
    }

    /// The role with this stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "agent" => Some(TokenRole::Agent),
            "admin" => Some(TokenRole::Admin),
            "scim" => Some(TokenRole::Scim),
            _ => None,
        }
    }
}

/// An API token of an agent or an administrator (only its hash is kept).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiToken {
    /// Token id, shown in listings.
    pub token_id: Uuid,
    /// The identity it authenticates: an agent id, or an administrator's name.
    pub subject: String,
    /// What it may do.
    pub role: TokenRole,
    /// SHA-256 of the token.
    pub token_hash: Digest,
    /// Issued.
    pub created_at: Timestamp,
    /// Revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// A person who may decide requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Approver {
    /// Identity, e.g. an email address.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Groups, which policy names.
    pub groups: Vec<String>,
}

/// An approver's enrolled key.
#[derive(Clone, Debug, PartialEq)]
pub struct ApproverKey {
    /// SHA-256 of the public key's DER.
    pub key_id: KeyId,
    /// Owner.
    pub approver_id: String,
    /// Where the private key lives.
    pub kind: KeyKind,
    /// The public key.
    pub public_key: PublicKey,
    /// A label for people ("YubiKey 5C", "laptop TPM").
    pub label: String,
    /// Attestation evidence, when the device gave one (base64).
    pub attestation: Option<String>,
    /// The manufacturer's root (certificate subject) that vouched for the key's device at
    /// enrolment; `None` when its hardware is only claimed.
    pub attested_by: Option<String>,
    /// The OpenID Provider (issuer) whose sign-in vouched for the enrolment; `None` for an
    /// administrator's one-time code.
    pub enrolled_via: Option<String>,
    /// The latest sign-in at the organisation's OpenID Provider that vouched for the key (at
    /// enrolment, or again since); `None` when none ever did.
    pub signed_in_at: Option<Timestamp>,
    /// Enrolled.
    pub enrolled_at: Timestamp,
    /// Revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// A one-time enrolment code (only its hash is kept).
#[derive(Clone, Debug, PartialEq)]
pub struct EnrolmentCode {
    /// SHA-256 of the code.
    pub code_hash: Digest,
    /// Whose key it enrols.
    pub approver_id: String,
    /// Not usable from this instant on.
    pub expires_at: Timestamp,
}

/// An approver session, opened by signing a challenge (only the token's hash is kept).
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// SHA-256 of the session token.
    pub token_hash: Digest,
    /// Who.
    pub approver_id: String,
    /// With which key.
    pub key_id: KeyId,
    /// Not usable from this instant on.
    pub expires_at: Timestamp,
}

/// What recording a decision may also do, decided by the service before the transaction and
/// applied by the store inside it, so quorum is counted where concurrent decisions serialize.
#[derive(Clone, Debug)]
pub struct DecisionEffects {
    /// Distinct approvals that approve the request.
    pub quorum: u32,
    /// The grant to issue, and its events, if this decision completes the quorum.
    pub on_quorum: Option<(SignedGrant, Vec<NewEvent>)>,
    /// Events to append if this decision denies the request.
    pub on_deny: Vec<NewEvent>,
}

/// What checking a decision needs, read together.
#[derive(Clone, Debug)]
pub struct DecisionContext {
    /// The request decided.
    pub record: RequestRecord,
    /// The signing key, if enrolled.
    pub key: Option<ApproverKey>,
    /// The approver named in the decision, if known.
    pub approver: Option<Approver>,
}

/// A witness's cosignature of one of the service's checkpoints (verified before it is kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosignature {
    /// Size of the checkpoint cosigned.
    pub tree_size: u64,
    /// The witness.
    pub approver_id: String,
    /// The witness's key.
    pub key_id: KeyId,
    /// Over the checkpoint's cosigning payload.
    pub signature: Signature,
    /// When the service received it.
    pub received_at: Timestamp,
}

/// What recording a decision did.
#[derive(Clone, Debug, PartialEq)]
pub enum DecisionOutcome {
    /// Counted; the request is still pending with this many approvals.
    Counted {
        /// Approvals so far.
        approvals: u32,
    },
    /// Quorum reached; the request is approved and this grant issued.
    Approved(SignedGrant),
    /// The request is denied.
    Denied,
}

/// A person provisioned by the organisation's directory (SCIM): the approver it stands for and
/// what the directory said of them.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryUser {
    /// The directory's id for them (SCIM `id`), ours to assign.
    pub id: Uuid,
    /// The approver (the folded `userName`).
    pub approver_id: String,
    /// The directory client's own id for them (SCIM `externalId`).
    pub external_id: Option<String>,
    /// Inactive people keep their record but no keys, sessions or groups.
    pub active: bool,
    /// The other attributes the directory sent (a JSON object), returned as sent.
    pub attributes: String,
    /// Bumped by every change (the SCIM ETag).
    pub version: u64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// A group provisioned by the organisation's directory, and the Countersign group it counts as.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryGroup {
    /// The directory's id for it (SCIM `id`), ours to assign.
    pub id: Uuid,
    /// Its name at the directory (unique, ignoring case).
    pub display_name: String,
    /// The directory client's own id for it.
    pub external_id: Option<String>,
    /// The Countersign group membership grants, if the configuration maps this one.
    pub maps_to: Option<String>,
    /// Its members: directory users' ids.
    pub members: Vec<Uuid>,
    /// Bumped by every change (the SCIM ETag).
    pub version: u64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// Which version of a directory record a write expects to replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// None: the record is new.
    New,
    /// Exactly this version (read before, or the client's `If-Match`).
    Version(u64),
    /// Whatever is stored.
    Any,
}

/// A notice to queue for one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOutboxItem {
    /// The channel's configured name.
    pub channel: String,
    /// The message's id, the same on every attempt (receivers deduplicate on it).
    pub message_id: String,
    /// The notice, as JSON.
    pub payload: String,
}

/// Where a queued notice stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxState {
    /// Not delivered yet; tried again when due.
    Pending,
    /// The channel accepted it.
    Delivered,
    /// Given up on after its last attempt (the dead-letter record).
    Dead,
}

impl OutboxState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// A queued notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxItem {
    /// Its row.
    pub id: i64,
    /// The channel's configured name.
    pub channel: String,
    /// The message's id.
    pub message_id: String,
    /// The notice, as JSON.
    pub payload: String,
    /// When it was queued.
    pub created_at: Timestamp,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is due (pending), or was delivered or given up on.
    pub next_attempt_at: Timestamp,
    /// Where it stands.
    pub state: OutboxState,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// How an attempt at a queued notice ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxSettlement {
    /// Accepted at this time.
    Delivered {
        /// When.
        at: Timestamp,
    },
    /// Failed; try again at `next`.
    Retry {
        /// When to try again.
        next: Timestamp,
        /// Why it failed.
        error: String,
    },
    /// Failed for the last time.
    Dead {
        /// When.
        at: Timestamp,
        /// Why it failed.
        error: String,
    },
}

impl OutboxSettlement {
    /// What is stored: the item's new state, its time (next attempt, delivery or giving up)
    /// and the error, if it failed.
    pub fn into_parts(self) -> (OutboxState, Timestamp, Option<String>) {
        match self {
            Self::Delivered { at } => (OutboxState::Delivered, at, None),
            Self::Retry { next, error } => (OutboxState::Pending, next, Some(error)),
            Self::Dead { at, error } => (OutboxState::Dead, at, Some(error)),
        }
    }
}

/// A review as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewRecord {
    /// The signed review.
    pub review: countersign_core::SignedReview,
    /// What kind of key signed it.
    pub key_kind: KeyKind,
    /// When the service recorded it.
    pub recorded_at: Timestamp,
}
