//! Checks on single events, shared by the mirror's sync and by offline evidence verification:
//! every decision is signed by a key the log enrolled to that approver and not yet revoked,
//! over the digest of the request it names, by someone other than the requester; every grant
//! carries the service's signature over its request's digest; every request's digest is the
//! digest of its content; every enrolled key's id is its key's id.

use std::collections::HashMap;

use countersign_core::{AuditEvent, Digest, EventKind, KeyId, KeyKind, PublicKey, merkle};
use uuid::Uuid;

use crate::alarm::{Alarm, AlarmKind};

/// An approver key as the log enrolled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownKey {
    /// Owner.
    pub approver_id: String,
    /// Kind.
    pub kind: KeyKind,
    /// The key.
    pub public_key: PublicKey,
    /// The `key_enrolled` event.
    pub enrolled_seq: u64,
    /// The `key_revoked` event, if any.
    pub revoked_seq: Option<u64>,
}

/// What a decision or grant is checked against: its request as the log recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownRequest {
    /// The request digest.
    pub digest: Digest,
    /// Who asked.
    pub requester: String,
    /// The human it was asked for, if any.
    pub on_behalf_of: Option<String>,
}

/// The leaf bytes (RFC 8785) of an event and its Merkle leaf hash.
pub fn leaf(event: &AuditEvent) -> Result<(Vec<u8>, Digest), Alarm> {
    let bytes = event.leaf_bytes().map_err(|e| {
        Alarm::new(
            AlarmKind::BadEvent,
            format!("event {} has no canonical form: {e}", event.seq),
        )
    })?;
    let hash = merkle::leaf_hash(&bytes);
    Ok((bytes, hash))
}

/// The keys and requests seen so far, and the service key.
#[derive(Clone, Debug)]
pub struct EventChecker {
    server_key: PublicKey,
    keys: HashMap<KeyId, KnownKey>,
    requests: HashMap<Uuid, KnownRequest>,
}

fn bad(event: &AuditEvent, what: impl std::fmt::Display) -> Alarm {
    Alarm::new(AlarmKind::BadEvent, format!("event {}: {what}", event.seq))
}

impl EventChecker {
    /// A checker trusting `server_key` for grants and knowing `keys`.
    pub fn new(server_key: PublicKey, keys: HashMap<KeyId, KnownKey>) -> Self {
        Self {
            server_key,
            keys,
            requests: HashMap::new(),
        }
    }

    /// The keys known so far (enrolled by events checked, or given).
    pub fn keys(&self) -> &HashMap<KeyId, KnownKey> {
        &self.keys
    }

    /// Whether the request is known (its `request_created` event was seen or it was given).
    pub fn knows_request(&self, id: &Uuid) -> bool {
        self.requests.contains_key(id)
    }

    /// Tells the checker about a request seen before (e.g. in an earlier sync).
    pub fn add_request(&mut self, id: Uuid, request: KnownRequest) {
        self.requests.insert(id, request);
    }

    fn request(&self, event: &AuditEvent, id: &Uuid) -> Result<&KnownRequest, Alarm> {
        self.requests.get(id).ok_or_else(|| {
            bad(
                event,
                format!("names request {id}, which the log never created"),
            )
        })
    }

    /// Checks one event and learns what it enrols, revokes or creates.
    pub fn check(&mut self, event: &AuditEvent) -> Result<(), Alarm> {
        match &event.event {
            EventKind::RequestCreated { action, digest } => {
                let actual = action
                    .digest()
                    .map_err(|e| bad(event, format!("request has no canonical form: {e}")))?;
                if &actual != digest {
                    return Err(bad(
                        event,
                        format!(
                            "request {} records digest {} but its content hashes to {}",
                            action.id,
                            digest.to_hex(),
                            actual.to_hex()
                        ),
                    ));
                }
                self.requests.insert(
                    action.id,
                    KnownRequest {
                        digest: *digest,
                        requester: action.requester.clone(),
                        on_behalf_of: action.request.on_behalf_of.clone(),
                    },
                );
            }
            EventKind::DecisionRecorded { decision, key_kind } => {
                let d = &decision.decision;
                let key = self.keys.get(&d.key_id).ok_or_else(|| {
                    bad(
                        event,
                        format!(
                            "decision by {} is signed by key {}, which the log never enrolled",
                            d.approver_id,
                            d.key_id.short()
                        ),
                    )
                })?;
                if key.approver_id != d.approver_id {
                    return Err(bad(
                        event,
                        format!(
                            "decision by {} is signed by {}'s key {}",
                            d.approver_id,
                            key.approver_id,
                            d.key_id.short()
                        ),
                    ));
                }
                if key.revoked_seq.is_some_and(|r| r < event.seq) {
                    return Err(bad(
                        event,
                        format!(
                            "decision by {} uses key {}, revoked before it",
                            d.approver_id,
                            d.key_id.short()
                        ),
                    ));
                }
                if key.kind != *key_kind {
                    return Err(bad(
                        event,
                        format!(
                            "decision records key kind {key_kind:?} but the key was enrolled as {:?}",
                            key.kind
                        ),
                    ));
                }
                decision.verify(&key.public_key).map_err(|e| {
                    bad(
                        event,
                        format!("decision by {} does not verify: {e}", d.approver_id),
                    )
                })?;
                let request = self.request(event, &d.request_id)?;
                if request.digest != d.request_digest {
                    return Err(bad(
                        event,
                        format!(
                            "decision by {} is for digest {}, not the request's {}",
                            d.approver_id,
                            d.request_digest.to_hex(),
                            request.digest.to_hex()
                        ),
                    ));
                }
                if request.requester == d.approver_id
                    || request.on_behalf_of.as_deref() == Some(d.approver_id.as_str())
                {
                    return Err(bad(
                        event,
                        format!(
                            "{} decided their own request {}",
                            d.approver_id, d.request_id
                        ),
                    ));
                }
            }
            EventKind::GrantIssued { grant } => {
                let payload = grant
                    .grant
                    .signing_payload()
                    .map_err(|e| bad(event, format!("grant has no canonical form: {e}")))?;
                self.server_key
                    .verify(&payload, &grant.signature)
                    .map_err(|e| bad(event, format!("grant is not signed by the service: {e}")))?;
                let request = self.request(event, &grant.grant.request_id)?;
                if request.digest != grant.grant.request_digest {
                    return Err(bad(event, "grant is for another digest than its request's"));
                }
            }
            EventKind::KeyEnrolled {
                approver_id,
                key_id,
                key_kind,
                public_key,
                ..
            } => {
                if public_key.key_id() != *key_id {
                    return Err(bad(
                        event,
                        format!("key {} is not the id of its key", key_id.short()),
                    ));
                }
                self.keys.insert(
                    *key_id,
                    KnownKey {
                        approver_id: approver_id.clone(),
                        kind: *key_kind,
                        public_key: public_key.clone(),
                        enrolled_seq: event.seq,
                        revoked_seq: None,
                    },
                );
            }
            EventKind::KeyRevoked { key_id, .. } => {
                let key = self.keys.get_mut(key_id).ok_or_else(|| {
                    bad(
                        event,
                        format!(
                            "revokes key {}, which the log never enrolled",
                            key_id.short()
                        ),
                    )
                })?;
                key.revoked_seq.get_or_insert(event.seq);
            }
            EventKind::Notified { .. }
            | EventKind::Approved { .. }
            | EventKind::Denied { .. }
            | EventKind::Expired { .. }
            | EventKind::Cancelled { .. }
            | EventKind::GrantRedeemed { .. }
            | EventKind::ExecutionReported { .. }
            | EventKind::PolicyChanged { .. }
            | EventKind::AdminChanged { .. } => {}
        }
        Ok(())
    }
}
