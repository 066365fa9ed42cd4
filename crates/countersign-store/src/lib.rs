//! The storage interface of the approval service.
//!
//! Methods are whole operations, not row access: each one checks its rules and writes its
//! state change together with the audit events that record it in one transaction. So an event
//! that cannot be written stops the step it records (audit before effect), and a rule such as
//! single use or distinct approvers holds under concurrent writers on every backend.

pub mod codec;
mod error;
mod models;
pub mod rules;

#[cfg(feature = "conformance")]
pub mod conformance;

use async_trait::async_trait;
use countersign_core::{
    ActionStatus, AuditEvent, Digest, ExecutionOutcome, KeyId, KeyKind, SignedDecision,
    SignedGrant, SignedReview, TimedStep, Timestamp,
};
use uuid::Uuid;

pub use error::{Conflict, StoreError, StoreResult};
pub use models::{
    ApiToken, Approver, ApproverKey, Cosignature, DecisionContext, DecisionEffects,
    DecisionOutcome, DecisionRecord, DirectoryGroup, DirectoryUser, EnrolmentCode, Expected,
    GrantRecord, NewEvent, NewOutboxItem, OutboxItem, OutboxSettlement, OutboxState, RequestRecord,
    ReviewRecord, Session, TokenRole,
};

/// A new request to record, with the grant the policy allowed outright, if any.
#[derive(Clone, Debug)]
pub struct NewRequest {
    /// The request, status and quorum.
    pub record: RequestRecord,
    /// The grant issued at once when policy allowed the request.
    pub grant: Option<SignedGrant>,
    /// The agent's idempotency key, scoped to the agent (see [`idempotency_scope`]): a second
    /// request with the same scoped key is refused with `Conflict::IdempotencyKeyUsed`.
    pub idempotency_key: Option<String>,
}

/// The stored form of an agent's idempotency key: keys are the agent's own, so two agents may
/// use the same one.
pub fn idempotency_scope(requester: &str, key: &str) -> String {
    format!("{requester}\n{key}")
}

/// Everything the approval service keeps: its log, who may do what, and the requests. Each
/// part is a trait of its own, which a backend implements in the module that holds its SQL.
pub trait Store: AuditLog + Identity + Requests + Directory + Outbox {}

impl<T: AuditLog + Identity + Requests + Directory + Outbox> Store for T {}

/// The audit log, its checkpoints and witnesses' cosignatures.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends events on their own (policy changes, admin operations).
    async fn append_events(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// Number of events in the log.
    async fn audit_size(&self) -> StoreResult<u64>;
    /// Up to `limit` events with `seq >= from`, in order.
    async fn audit_events(&self, from: u64, limit: u32) -> StoreResult<Vec<AuditEvent>>;
    /// Wakes when another process (a replica) may have appended to the log; `None` when this
    /// process is the only writer, so it sees every append itself. Notifications can be lost
    /// (a reconnecting listener): whoever follows the log also reads it on a timer.
    fn log_changes(&self) -> Option<tokio::sync::broadcast::Receiver<()>> {
        None
    }
    /// Up to `limit` events with `seq >= from` as stored: their leaf bytes (RFC 8785 text), not
    /// parsed, in order. For serving the log verbatim; readers verify what they get.
    async fn audit_leaves(&self, from: u64, limit: u32) -> StoreResult<Vec<(u64, String)>>;
    /// The latest event whose type is `kind` (e.g. `policy_changed`).
    async fn latest_event_of_kind(&self, kind: &str) -> StoreResult<Option<AuditEvent>>;
    /// Up to `limit` leaf hashes with `seq >= from`, in order.
    async fn leaf_hashes(&self, from: u64, limit: u32) -> StoreResult<Vec<Digest>>;
    /// Keeps a signed checkpoint note for `tree_size` (the first one for a size wins).
    async fn save_checkpoint(&self, tree_size: u64, note: &str) -> StoreResult<()>;
    /// The checkpoint with the largest tree size, as `(size, note)`.
    async fn latest_checkpoint(&self) -> StoreResult<Option<(u64, String)>>;
    /// The checkpoint note kept for `tree_size`.
    async fn checkpoint_note(&self, tree_size: u64) -> StoreResult<Option<String>>;
    /// Keeps a witness's cosignature (the first one per key and size wins).
    async fn save_cosignature(&self, cosignature: &Cosignature) -> StoreResult<()>;
    /// The cosignatures of the checkpoint of `tree_size`, oldest first.
    async fn cosignatures(&self, tree_size: u64) -> StoreResult<Vec<Cosignature>>;
    /// Each witness key's cosignature of the largest checkpoint it cosigned.
    async fn latest_cosignatures(&self) -> StoreResult<Vec<Cosignature>>;
}

/// API tokens (agents and administrators), approvers, their keys and sessions.
#[async_trait]
pub trait Identity: Send + Sync + 'static {
    /// Records a new API token.
    async fn create_api_token(&self, token: &ApiToken, event: NewEvent) -> StoreResult<()>;
    /// The token with this hash, revoked or not.
    async fn api_token(&self, token_hash: &Digest) -> StoreResult<Option<ApiToken>>;
    /// All tokens.
    async fn api_tokens(&self) -> StoreResult<Vec<ApiToken>>;
    /// Revokes a token.
    async fn revoke_api_token(
        &self,
        token_id: Uuid,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()>;

    /// Creates or updates an approver (name and groups).
    async fn put_approver(
        &self,
        approver: &Approver,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// An approver by id.
    async fn approver(&self, id: &str) -> StoreResult<Option<Approver>>;
    /// All approvers.
    async fn approvers(&self) -> StoreResult<Vec<Approver>>;
    /// Records a one-time enrolment code.
    async fn create_enrolment_code(
        &self,
        code: &EnrolmentCode,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Consumes the code (unused, unexpired, for this key's approver) and enrols the key.
    async fn enrol_key(
        &self,
        code_hash: &Digest,
        key: &ApproverKey,
        event: NewEvent,
    ) -> StoreResult<()>;
    /// A key by id, revoked or not.
    async fn key(&self, key_id: &KeyId) -> StoreResult<Option<ApproverKey>>;
    /// All keys of one approver, or of everyone.
    async fn keys(&self, approver_id: Option<&str>) -> StoreResult<Vec<ApproverKey>>;
    /// Records a sign-in vouching for an active key of `approver_id` at `signed_in_at` (kept
    /// only when later than the one recorded).
    async fn record_sign_in(
        &self,
        key_id: &KeyId,
        approver_id: &str,
        signed_in_at: Timestamp,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Revokes a key.
    async fn revoke_key(&self, key_id: &KeyId, event: NewEvent, now: Timestamp) -> StoreResult<()>;
    /// Records that a challenge valid until `expires_at` was answered, so it opens one session
    /// at most; `Conflict::ChallengeInvalid` if it was used before or has expired at `now`.
    /// Challenges are issued without a write (the service authenticates them itself): only an
    /// answered one is stored, until it expires.
    async fn use_challenge(
        &self,
        challenge: &Digest,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Records an approver session.
    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    /// The unexpired session with this token hash.
    async fn session(&self, token_hash: &Digest, now: Timestamp) -> StoreResult<Option<Session>>;
}

/// Requests, their decisions, grants and outcomes. Every rule of their operations is in
/// [`rules`], checked by the backend inside the write transaction.
#[async_trait]
pub trait Requests: Identity {
    /// Records a request with its events (and its grant, when policy allowed it).
    async fn create_request(
        &self,
        action: &NewRequest,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// A request by id.
    async fn request(&self, id: Uuid) -> StoreResult<RequestRecord>;
    /// The request recorded with this scoped idempotency key, if any.
    async fn request_by_idempotency_key(&self, scoped_key: &str) -> StoreResult<Option<Uuid>>;
    /// Requests in a status, oldest first, at most `limit`.
    async fn requests_by_status(
        &self,
        status: ActionStatus,
        limit: u32,
    ) -> StoreResult<Vec<RequestRecord>>;
    /// How many requests are in a status.
    async fn count_requests(&self, status: ActionStatus) -> StoreResult<u64>;
    /// Decisions on a request, in the order they were accepted.
    async fn decisions(&self, action_id: Uuid) -> StoreResult<Vec<DecisionRecord>>;
    /// What checking a decision needs: the request, the signing key and the approver (a
    /// backend may read them together).
    async fn decision_context(
        &self,
        action_id: Uuid,
        key_id: &KeyId,
        approver_id: &str,
    ) -> StoreResult<DecisionContext> {
        Ok(DecisionContext {
            record: self.request(action_id).await?,
            key: self.key(key_id).await?,
            approver: self.approver(approver_id).await?,
        })
    }
    /// Records a decision: the request must be pending and unexpired at `now`, the approver
    /// must not have decided it, the nonce must be new; then applies `effects`.
    async fn record_decision(
        &self,
        decision: &SignedDecision,
        key_kind: KeyKind,
        effects: DecisionEffects,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<(DecisionOutcome, Vec<AuditEvent>)>;
    /// The grant of a request, if one was issued.
    async fn grant_for_request(&self, action_id: Uuid) -> StoreResult<Option<GrantRecord>>;
    /// The request a grant was issued for.
    async fn grant_request(&self, grant_id: Uuid) -> StoreResult<Option<Uuid>>;
    /// Redeems a grant once, inside its window, for its digest.
    async fn redeem_grant(
        &self,
        grant_id: Uuid,
        digest: &Digest,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<(GrantRecord, Vec<AuditEvent>)>;
    /// Records the outcome of a redeemed grant's action, once.
    async fn report_outcome(
        &self,
        action_id: Uuid,
        outcome: &ExecutionOutcome,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// The reported outcome of a request, if any.
    async fn outcome(&self, action_id: Uuid) -> StoreResult<Option<ExecutionOutcome>>;
    /// Marks every pending request whose time ran out at `now` as expired, with one event
    /// each from `event_for`. Safe to run concurrently: each request expires once.
    async fn expire_due(
        &self,
        now: Timestamp,
        event_for: &(dyn Fn(Uuid) -> NewEvent + Send + Sync),
    ) -> StoreResult<Vec<AuditEvent>>;
    /// Cancels a pending request.
    async fn cancel_request(
        &self,
        id: Uuid,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// The earliest `expires_at` among pending requests.
    async fn next_expiry(&self) -> StoreResult<Option<Timestamp>>;
    /// Takes the next timed step (escalation, reminder) of every pending request whose step is
    /// due at `now`, each once across writers, with the event `event_for` makes for it; a
    /// request with several overdue steps takes one per call.
    async fn take_due_steps(
        &self,
        now: Timestamp,
        event_for: &(dyn for<'r> Fn(&'r RequestRecord, TimedStep) -> NewEvent + Send + Sync),
    ) -> StoreResult<Vec<AuditEvent>>;
    /// The earliest time a pending request's next timed step falls due.
    async fn next_step(&self) -> StoreResult<Option<Timestamp>>;
    /// Records a signed review of a break-glass request with `event`, the rules checked in
    /// the transaction (`rules::review`: break-glass, reviews not complete, the key active
    /// and the reviewer's, one review per reviewer, a fresh nonce); when it completes the
    /// reviews, the event `completed` makes from the count of concerns too.
    async fn record_review(
        &self,
        review: &SignedReview,
        key_kind: KeyKind,
        event: NewEvent,
        completed: &(dyn Fn(u32) -> NewEvent + Send + Sync),
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// The reviews of a request, in the order they were recorded.
    async fn reviews(&self, action_id: Uuid) -> StoreResult<Vec<ReviewRecord>>;
    /// Break-glass requests whose reviews are not complete, oldest first.
    async fn awaiting_review(&self, limit: u32) -> StoreResult<Vec<RequestRecord>>;
}

/// People and groups provisioned by the organisation's directory (SCIM). A directory user is an
/// approver whose groups the directory decides: every write recomputes the groups of the
/// approvers it touches from the mapped groups they are members of (none while inactive).
#[async_trait]
pub trait Directory: Identity {
    /// A directory user by id.
    async fn directory_user(&self, id: Uuid) -> StoreResult<Option<DirectoryUser>>;
    /// The directory user standing for an approver.
    async fn directory_user_of(&self, approver_id: &str) -> StoreResult<Option<DirectoryUser>>;
    /// Every directory user, oldest first.
    async fn directory_users(&self) -> StoreResult<Vec<DirectoryUser>>;
    /// A directory group by id, with its members.
    async fn directory_group(&self, id: Uuid) -> StoreResult<Option<DirectoryGroup>>;
    /// Every directory group with its members, oldest first.
    async fn directory_groups(&self) -> StoreResult<Vec<DirectoryGroup>>;
    /// Creates or replaces a directory user (and its approver, named `display_name`); revokes
    /// `revoke` and ends their sessions. An inactive user must be left with no active key:
    /// one enrolled since `revoke` was read makes it `Conflict::Stale`.
    #[allow(clippy::too_many_arguments)]
    async fn put_directory_user(
        &self,
        user: &DirectoryUser,
        expected: Expected,
        display_name: &str,
        revoke: &[KeyId],
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// Deletes a directory user and their memberships; their approver stays (history names
    /// it) with no groups, and with `revoke` revoked, as for an inactive user.
    async fn delete_directory_user(
        &self,
        id: Uuid,
        expected: Expected,
        revoke: &[KeyId],
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// Creates or replaces a directory group with its members (all directory users).
    async fn put_directory_group(
        &self,
        group: &DirectoryGroup,
        expected: Expected,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// Deletes a directory group.
    async fn delete_directory_group(
        &self,
        id: Uuid,
        expected: Expected,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>>;
}

/// Notices for outbound channels (webhooks, chat) waiting to be delivered: an outbox filled
/// from the audit log, so a notice is owed for every event once, whichever replica read it,
/// and delivered at least once with retries, or set aside as dead with its last error.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// How far into the audit log notices have been made (the next event's sequence number),
    /// or `None` before the first time.
    async fn outbox_position(&self) -> StoreResult<Option<u64>>;
    /// Adds `items` made from the log's events before `to`, and moves the position there, if
    /// it is still `expected` (`Conflict::Stale` when another replica moved it first: that
    /// replica queued the same events).
    async fn enqueue_outbox(
        &self,
        expected: Option<u64>,
        to: u64,
        items: Vec<NewOutboxItem>,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Takes up to `limit` items due at `now` that no one holds, holding them until
    /// `lease_until` so another replica does not send them meanwhile.
    async fn claim_outbox(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<OutboxItem>>;
    /// Records how an attempt at item `id` ended.
    async fn settle_outbox(&self, id: i64, settlement: OutboxSettlement) -> StoreResult<()>;
    /// Items in `state`, newest first.
    async fn outbox_items(&self, state: OutboxState, limit: u32) -> StoreResult<Vec<OutboxItem>>;
    /// Puts a dead item back in the queue, due at `now`, its attempts counted afresh.
    async fn retry_outbox(&self, id: i64, now: Timestamp) -> StoreResult<()>;
    /// Deletes items delivered before `before`; returns how many. Pending and dead items stay
    /// (a dead one is the record an operator must act on).
    async fn prune_outbox(&self, before: Timestamp) -> StoreResult<u64>;
}
