//! Audit events: every step of every request, and every change to who may decide what. Each
//! event is one leaf of the Merkle log; its leaf bytes are its RFC 8785 encoding.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::action::Action;
use crate::canonical::{CanonicalError, to_canonical_vec};
use crate::decision::{KeyKind, SignedDecision};
use crate::digest::Digest;
use crate::ecdsa::{KeyId, PublicKey};
use crate::grant::SignedGrant;
use crate::merkle;
use crate::review::SignedReview;
use crate::timestamp::Timestamp;

/// Who caused an event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// An agent, by identity.
    Agent(String),
    /// An approver, by identity.
    Approver(String),
    /// An administrator, by identity.
    Admin(String),
    /// The service itself (expiry, policy reload).
    System,
}

/// What an agent reports after running an approved action.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionOutcome {
    /// Did it work.
    pub succeeded: bool,
    /// Process exit status, when it was a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// A short free-text detail.
    #[serde(default)]
    pub detail: String,
}

/// How an agent proved who it is when it asked.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentAuthentication {
    /// An API token the service issued.
    ApiToken,
    /// A workload identity token (a JWT) from an issuer the service trusts.
    WorkloadToken {
        /// The token's issuer.
        issuer: String,
        /// The token's subject, as the issuer spelled it.
        subject: String,
    },
}

impl AgentAuthentication {
    /// A short label to group by: `api_token`, or `workload_token:<issuer>`.
    pub fn label(&self) -> String {
        match self {
            AgentAuthentication::ApiToken => "api_token".into(),
            AgentAuthentication::WorkloadToken { issuer, .. } => format!("workload_token:{issuer}"),
        }
    }
}

/// The kinds of audit event, each with what an auditor needs to check it on its own.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventKind {
    /// A request was accepted and evaluated by policy (the evaluation is part of the action,
    /// so the request and the decision about it cannot be separated).
    RequestCreated {
        /// The request as shown to approvers (boxed: it dwarfs every other event).
        action: Box<Action>,
        /// Its digest.
        digest: Digest,
        /// How the requester proved who it is (absent in events recorded before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authenticated_by: Option<AgentAuthentication>,
    },
    /// Approvers were notified.
    Notified {
        /// The request.
        action_id: Uuid,
        /// How many approver sessions received it.
        sessions: u32,
    },
    /// A signed decision was accepted.
    DecisionRecorded {
        /// The decision and signature, verifiable offline.
        decision: SignedDecision,
        /// What kind of key signed it.
        key_kind: KeyKind,
        /// The manufacturer's root that vouched for the signing key's device at enrolment;
        /// absent when the key's hardware is only claimed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attested_by: Option<String>,
    },
    /// Quorum reached, or policy allowed it.
    Approved {
        /// The request.
        action_id: Uuid,
        /// Why (quorum reached, policy allow).
        reason: String,
    },
    /// An approver or the policy denied it.
    Denied {
        /// The request.
        action_id: Uuid,
        /// Why.
        reason: String,
    },
    /// Nobody decided in time.
    Expired {
        /// The request.
        action_id: Uuid,
    },
    /// Withdrawn.
    Cancelled {
        /// The request.
        action_id: Uuid,
        /// Why.
        reason: String,
    },
    /// A request still without quorum reached one of its policy's escalation steps: from now
    /// on members of `added_groups` may decide it too.
    Escalated {
        /// The request.
        action_id: Uuid,
        /// Which step (0 the first), of the policy outcome's `escalation`.
        step: u32,
        /// Groups whose members may decide from now on.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        added_groups: Vec<String>,
        /// Notice channels told.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notified: Vec<String>,
    },
    /// A request still pending reached one of its reminder points before expiry.
    Reminded {
        /// The request.
        action_id: Uuid,
        /// Seconds left before it expires.
        seconds_left: u32,
    },
    /// A reviewer signed a review of a break-glass request.
    ReviewRecorded {
        /// The review and signature, verifiable offline.
        review: SignedReview,
        /// What kind of key signed it.
        key_kind: KeyKind,
    },
    /// A break-glass request has all the reviews its policy asked for.
    ReviewCompleted {
        /// The request.
        action_id: Uuid,
        /// How many of the reviews raised a concern.
        concerns: u32,
    },
    /// A grant was issued to the agent.
    GrantIssued {
        /// The signed grant.
        grant: SignedGrant,
    },
    /// The grant was used.
    GrantRedeemed {
        /// The grant.
        grant_id: Uuid,
        /// The request.
        action_id: Uuid,
    },
    /// The agent reported how the action went.
    ExecutionReported {
        /// The request.
        action_id: Uuid,
        /// The outcome.
        outcome: ExecutionOutcome,
    },
    /// An approver enrolled a key.
    KeyEnrolled {
        /// Whose key.
        approver_id: String,
        /// Its id.
        key_id: KeyId,
        /// Its kind.
        key_kind: KeyKind,
        /// The public key itself, so decisions verify from the log alone.
        public_key: PublicKey,
        /// The TPM attestation key whose TPM2_Certify statement about this key verified at
        /// enrolment; absent when no attestation was given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attestation_key: Option<KeyId>,
        /// The manufacturer's root (its certificate's subject) whose certificate chain vouched
        /// for the key's device: the TPM's endorsement key certificate for its attestation key,
        /// or the token's PIV attestation. Absent when the hardware is only claimed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attested_by: Option<String>,
    },
    /// A key was revoked.
    KeyRevoked {
        /// Whose key.
        approver_id: String,
        /// Its id.
        key_id: KeyId,
        /// Why.
        reason: String,
    },
    /// The policy changed (or was first loaded).
    PolicyChanged {
        /// Hash of the previous policy, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_hash: Option<Digest>,
        /// Hash of the new policy.
        policy_hash: Digest,
    },
    /// An identity, group or token changed (admin operations).
    AdminChanged {
        /// What was done, e.g. `agent_token_issued`, `approver_groups_set`.
        operation: String,
        /// The subject, e.g. an agent or approver id.
        subject: String,
        /// Detail, free-form but never a secret.
        detail: String,
    },
}

impl EventKind {
    /// The `type` member this event is encoded with.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::RequestCreated { .. } => "request_created",
            EventKind::Notified { .. } => "notified",
            EventKind::DecisionRecorded { .. } => "decision_recorded",
            EventKind::Approved { .. } => "approved",
            EventKind::Denied { .. } => "denied",
            EventKind::Expired { .. } => "expired",
            EventKind::Cancelled { .. } => "cancelled",
            EventKind::Escalated { .. } => "escalated",
            EventKind::Reminded { .. } => "reminded",
            EventKind::ReviewRecorded { .. } => "review_recorded",
            EventKind::ReviewCompleted { .. } => "review_completed",
            EventKind::GrantIssued { .. } => "grant_issued",
            EventKind::GrantRedeemed { .. } => "grant_redeemed",
            EventKind::ExecutionReported { .. } => "execution_reported",
            EventKind::KeyEnrolled { .. } => "key_enrolled",
            EventKind::KeyRevoked { .. } => "key_revoked",
            EventKind::PolicyChanged { .. } => "policy_changed",
            EventKind::AdminChanged { .. } => "admin_changed",
        }
    }

    /// The request this event belongs to, if any.
    pub fn action_id(&self) -> Option<Uuid> {
        match self {
            EventKind::RequestCreated { action, .. } => Some(action.id),
            EventKind::DecisionRecorded { decision, .. } => Some(decision.decision.request_id),
            EventKind::GrantIssued { grant } => Some(grant.grant.request_id),
            EventKind::ReviewRecorded { review, .. } => Some(review.review.request_id),
            EventKind::Notified { action_id, .. }
            | EventKind::Approved { action_id, .. }
            | EventKind::Denied { action_id, .. }
            | EventKind::Expired { action_id }
            | EventKind::Escalated { action_id, .. }
            | EventKind::Reminded { action_id, .. }
            | EventKind::ReviewCompleted { action_id, .. }
            | EventKind::Cancelled { action_id, .. }
            | EventKind::GrantRedeemed { action_id, .. }
            | EventKind::ExecutionReported { action_id, .. } => Some(*action_id),
            EventKind::KeyEnrolled { .. }
            | EventKind::KeyRevoked { .. }
            | EventKind::PolicyChanged { .. }
            | EventKind::AdminChanged { .. } => None,
        }
    }
}

/// One entry of the audit log.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Position in the log, from 0: also the Merkle leaf index.
    pub seq: u64,
    /// When the service recorded it.
    pub recorded_at: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// What happened.
    pub event: EventKind,
}

impl AuditEvent {
    /// The leaf bytes: RFC 8785 encoding of the event.
    pub fn leaf_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        to_canonical_vec(self)
    }

    /// The Merkle leaf hash, `SHA-256(0x00 || leaf bytes)`.
    pub fn leaf_hash(&self) -> Result<Digest, CanonicalError> {
        Ok(merkle::leaf_hash(&self.leaf_bytes()?))
    }
}

/// An event encoded before its position in the log is known, so that a single log writer
/// only has to add the position: in RFC 8785 member order `seq` comes last, so the leaf bytes
/// are the encoding of everything else followed by the number.
#[derive(Clone, Debug)]
pub struct EncodedEvent {
    /// When the service recorded it.
    pub recorded_at: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// What happened.
    pub event: EventKind,
    /// The leaf bytes up to and including `"seq":`.
    head: Vec<u8>,
}

/// The end of the canonical encoding of an event at position 0.
const SEQ_ZERO_TAIL: &[u8] = b"\"seq\":0}";

impl EncodedEvent {
    /// Encodes the event for any position.
    pub fn new(
        recorded_at: Timestamp,
        actor: Actor,
        event: EventKind,
    ) -> Result<Self, CanonicalError> {
        let at_zero = AuditEvent {
            seq: 0,
            recorded_at,
            actor,
            event,
        };
        let mut head = at_zero.leaf_bytes()?;
        if !head.ends_with(SEQ_ZERO_TAIL) {
            return Err(CanonicalError::Json(serde::ser::Error::custom(
                "the sequence number is not the last member of an audit event",
            )));
        }
        head.truncate(head.len() - 2);
        let AuditEvent { actor, event, .. } = at_zero;
        Ok(Self {
            recorded_at,
            actor,
            event,
            head,
        })
    }

    /// The leaf bytes of this event at position `seq`.
    pub fn leaf_bytes(&self, seq: u64) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.head.len() + 21);
        bytes.extend_from_slice(&self.head);
        bytes.extend_from_slice(seq.to_string().as_bytes());
        bytes.push(b'}');
        bytes
    }

    /// The event at position `seq`.
    pub fn at(self, seq: u64) -> AuditEvent {
        AuditEvent {
            seq,
            recorded_at: self.recorded_at,
            actor: self.actor,
            event: self.event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::tests::sample_action;

    #[test]
    fn event_round_trips_and_names_its_action() {
        let action = sample_action();
        let event = AuditEvent {
            seq: 0,
            recorded_at: action.created_at,
            actor: Actor::Agent(action.requester.clone()),
            event: EventKind::RequestCreated {
                digest: action.digest().expect("digest"),
                authenticated_by: None,
                action: Box::new(action.clone()),
            },
        };
        let json = serde_json::to_string(&event).expect("serializes");
        let back: AuditEvent = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, event);
        assert_eq!(back.event.action_id(), Some(action.id));
        assert_eq!(back.leaf_hash().ok(), event.leaf_hash().ok());
    }

    #[test]
    fn actor_serializes_tagged() {
        let json = serde_json::to_value(Actor::Approver("bob".into())).expect("serializes");
        assert_eq!(json, serde_json::json!({"kind": "approver", "id": "bob"}));
        let json = serde_json::to_value(Actor::System).expect("serializes");
        assert_eq!(json, serde_json::json!({"kind": "system"}));
    }

    fn sample_events() -> Vec<(Actor, EventKind)> {
        let action = sample_action();
        let id = action.id;
        vec![
            (
                Actor::Agent(action.requester.clone()),
                EventKind::RequestCreated {
                    digest: action.digest().expect("digest"),
                    authenticated_by: None,
                    action: Box::new(action),
                },
            ),
            (
                Actor::System,
                EventKind::Approved {
                    action_id: id,
                    reason: "quorum of 2 reached \u{202e} with \"quotes\"".into(),
                },
            ),
            (Actor::System, EventKind::Expired { action_id: id }),
            (
                Actor::Admin("root".into()),
                EventKind::AdminChanged {
                    operation: "approver_groups_set".into(),
                    subject: "bob".into(),
                    detail: "security, ops".into(),
                },
            ),
        ]
    }

    #[test]
    fn encoded_event_has_the_leaf_bytes_of_the_event_at_any_position() {
        let at = Timestamp::from_millis(1_795_000_000_123).expect("time");
        for (actor, kind) in sample_events() {
            let encoded = EncodedEvent::new(at, actor.clone(), kind.clone()).expect("encodes");
            for seq in [0, 1, 9, 10, 12_345, (1 << 53) - 1] {
                let event = AuditEvent {
                    seq,
                    recorded_at: at,
                    actor: actor.clone(),
                    event: kind.clone(),
                };
                assert_eq!(
                    encoded.leaf_bytes(seq),
                    event.leaf_bytes().expect("canonical"),
                    "seq {seq}"
                );
                assert_eq!(encoded.clone().at(seq), event);
            }
        }
    }

    #[test]
    fn type_name_is_the_encoded_type() {
        for (_, kind) in sample_events() {
            let json = serde_json::to_value(&kind).expect("serializes");
            assert_eq!(json["type"], kind.type_name());
        }
    }
}
