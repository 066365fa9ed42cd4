//! Checks on single events, shared by the mirror's sync and by offline evidence verification:
//! every decision is signed by a key the log enrolled to that approver and not yet revoked,
//! over the digest of the request it names, by someone other than the requester; every grant
//! carries the service's signature over its request's digest; every request's digest is the
//! digest of its content; every enrolled key's id is its key's id.

use std::collections::HashMap;

use countersign_core::{
    AuditEvent, Digest, EventKind, KeyId, KeyKind, PublicKey, SignedDecision, SignedGrant, merkle,
};
use serde_json::value::RawValue;
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
    /// The root that vouched for its device at enrolment, as `key_enrolled` says.
    pub attested_by: Option<String>,
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

/// What checking an event needs that costs the most and depends on nothing else: its leaf
/// bytes and hash, and a new request's content digest. Computed for many events at once.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The event.
    pub event: AuditEvent,
    /// Its leaf bytes.
    pub bytes: Vec<u8>,
    /// Its leaf hash.
    pub hash: Digest,
    /// For `request_created`: the digest of the request's content.
    pub content_digest: Option<Digest>,
}

/// Prepares events received as JSON text on every core, keeping their order: the text is the
/// leaf (hashed as received, never re-encoded), then parsed.
pub fn prepare_all(events: Vec<Box<RawValue>>) -> Result<Vec<Prepared>, Alarm> {
    let one = |raw: Box<RawValue>| -> Result<Prepared, Alarm> {
        let text = raw.get();
        let hash = merkle::leaf_hash(text.as_bytes());
        let event: AuditEvent = serde_json::from_str(text).map_err(|e| {
            Alarm::new(
                AlarmKind::BadEvent,
                format!("an event the service sent does not parse: {e}"),
            )
        })?;
        let content_digest = match &event.event {
            EventKind::RequestCreated { action, .. } => Some(
                action
                    .digest()
                    .map_err(|e| bad(&event, format!("request has no canonical form: {e}")))?,
            ),
            _ => None,
        };
        Ok(Prepared {
            bytes: text.as_bytes().to_vec(),
            event,
            hash,
            content_digest,
        })
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if events.len() < 64 || threads == 1 {
        return events.into_iter().map(one).collect();
    }
    let per = events.len().div_ceil(threads);
    let mut chunks: Vec<Vec<Box<RawValue>>> = Vec::new();
    let mut rest = events.into_iter();
    loop {
        let chunk: Vec<Box<RawValue>> = rest.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || chunk.into_iter().map(one).collect::<Result<Vec<_>, _>>())
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| Alarm::new(AlarmKind::BadEvent, "preparing events crashed"))??,
            );
        }
        Ok(out)
    })
}

/// A signature to check, found while checking an event: checked later, many at once, since
/// signature verification is most of a sync's work and every job is independent.
#[derive(Clone, Debug)]
pub enum SignatureJob {
    /// A decision, against the approver key the log enrolled.
    Decision {
        /// The event.
        seq: u64,
        /// The decision.
        decision: Box<SignedDecision>,
        /// The key.
        key: PublicKey,
    },
    /// A break-glass review, against the reviewer key the log enrolled.
    Review {
        /// The event.
        seq: u64,
        /// The review.
        review: Box<countersign_core::SignedReview>,
        /// The key.
        key: PublicKey,
    },
    /// A grant, against the service key.
    Grant {
        /// The event.
        seq: u64,
        /// The grant.
        grant: Box<SignedGrant>,
        /// The service key.
        key: PublicKey,
    },
}

impl SignatureJob {
    /// Checks the signature.
    pub fn verify(&self) -> Result<(), Alarm> {
        match self {
            SignatureJob::Decision { seq, decision, key } => {
                // The key is the one the log enrolled under this id (checked at enrolment).
                let bad = |what: String| {
                    Alarm::new(
                        AlarmKind::BadEvent,
                        format!(
                            "event {seq}: decision by {} does not verify: {what}",
                            decision.decision.approver_id
                        ),
                    )
                };
                let payload = decision
                    .decision
                    .signing_payload()
                    .map_err(|e| bad(e.to_string()))?;
                key.verify(&payload, &decision.signature)
                    .map_err(|e| bad(e.to_string()))
            }
            SignatureJob::Review { seq, review, key } => review.verify(key).map_err(|e| {
                Alarm::new(
                    AlarmKind::BadEvent,
                    format!(
                        "event {seq}: review by {} does not verify: {e}",
                        review.review.reviewer_id
                    ),
                )
            }),
            SignatureJob::Grant { seq, grant, key } => {
                let bad =
                    |what: String| Alarm::new(AlarmKind::BadEvent, format!("event {seq}: {what}"));
                let payload = grant
                    .grant
                    .signing_payload()
                    .map_err(|e| bad(format!("grant has no canonical form: {e}")))?;
                key.verify(&payload, &grant.signature)
                    .map_err(|e| bad(format!("grant is not signed by the service: {e}")))
            }
        }
    }
}

/// Checks every job, spread over the machine's cores; the first failure in log order wins.
pub fn verify_all(jobs: &[SignatureJob]) -> Result<(), Alarm> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if jobs.len() < 64 || threads == 1 {
        return jobs.iter().try_for_each(SignatureJob::verify);
    }
    let per = jobs.len().div_ceil(threads);
    let failures: Vec<Alarm> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(per)
            .map(|chunk| scope.spawn(move || chunk.iter().try_for_each(SignatureJob::verify)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(result) => result.err(),
                Err(_) => Some(Alarm::new(AlarmKind::BadEvent, "a signature check crashed")),
            })
            .collect()
    });
    match failures.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// The keys and requests seen so far, and the service key.
#[derive(Clone, Debug)]
pub struct EventChecker {
    server_key: PublicKey,
    grant_signatures: bool,
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
            grant_signatures: true,
            keys,
            requests: HashMap::new(),
        }
    }

    /// Leaves grant signatures unchecked. A grant is the service's own statement, and the
    /// service's checkpoint signature already covers the event that holds it; checking every
    /// grant again costs a third of a sync's signature work for no evidence the checkpoint does
    /// not give. Decisions are always checked: they are the approvers' statements, which the
    /// service cannot make. Evidence bundles check grants too.
    pub fn without_grant_signatures(mut self) -> Self {
        self.grant_signatures = false;
        self
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

    /// Checks one event, signatures included, and learns what it enrols, revokes or creates.
    pub fn check(&mut self, event: &AuditEvent) -> Result<(), Alarm> {
        let mut jobs = Vec::new();
        self.check_deferred(event, None, &mut jobs)?;
        jobs.iter().try_for_each(SignatureJob::verify)
    }

    /// Checks one event but leaves its signatures in `jobs` (check them with [`verify_all`]
    /// before trusting the event). `content_digest`, when given, is the request's digest
    /// already computed from its content.
    pub fn check_deferred(
        &mut self,
        event: &AuditEvent,
        content_digest: Option<Digest>,
        jobs: &mut Vec<SignatureJob>,
    ) -> Result<(), Alarm> {
        match &event.event {
            EventKind::RequestCreated { action, digest, .. } => {
                let actual = match content_digest {
                    Some(d) => d,
                    None => action
                        .digest()
                        .map_err(|e| bad(event, format!("request has no canonical form: {e}")))?,
                };
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
            EventKind::DecisionRecorded {
                decision,
                key_kind,
                attested_by,
            } => {
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
                // A decision can claim no more for its key than the key's enrolment proved.
                if *attested_by != key.attested_by {
                    return Err(bad(
                        event,
                        format!(
                            "decision records key attestation {:?} but the key was enrolled with {:?}",
                            attested_by, key.attested_by
                        ),
                    ));
                }
                jobs.push(SignatureJob::Decision {
                    seq: event.seq,
                    decision: Box::new(decision.clone()),
                    key: key.public_key.clone(),
                });
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
            EventKind::ReviewRecorded { review, key_kind } => {
                let r = &review.review;
                let key = self.keys.get(&r.key_id).ok_or_else(|| {
                    bad(
                        event,
                        format!(
                            "review by {} is signed by key {}, which the log never enrolled",
                            r.reviewer_id,
                            r.key_id.short()
                        ),
                    )
                })?;
                if key.approver_id != r.reviewer_id
                    || key.revoked_seq.is_some_and(|at| at < event.seq)
                    || key.kind != *key_kind
                {
                    return Err(bad(
                        event,
                        format!(
                            "review by {} uses key {} of {}, revoked or of another kind",
                            r.reviewer_id,
                            r.key_id.short(),
                            key.approver_id
                        ),
                    ));
                }
                jobs.push(SignatureJob::Review {
                    seq: event.seq,
                    review: Box::new(review.clone()),
                    key: key.public_key.clone(),
                });
                let request = self.request(event, &r.request_id)?;
                if request.digest != r.request_digest {
                    return Err(bad(
                        event,
                        format!("review by {} is for another digest", r.reviewer_id),
                    ));
                }
                if request.requester == r.reviewer_id
                    || request.on_behalf_of.as_deref() == Some(r.reviewer_id.as_str())
                {
                    return Err(bad(
                        event,
                        format!(
                            "{} reviewed their own break-glass request {}",
                            r.reviewer_id, r.request_id
                        ),
                    ));
                }
            }
            EventKind::GrantIssued { grant } => {
                if self.grant_signatures {
                    jobs.push(SignatureJob::Grant {
                        seq: event.seq,
                        grant: Box::new(grant.clone()),
                        key: self.server_key.clone(),
                    });
                }
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
                attested_by,
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
                        attested_by: attested_by.clone(),
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
            | EventKind::Escalated { .. }
            | EventKind::Reminded { .. }
            | EventKind::ReviewCompleted { .. }
            | EventKind::GrantRedeemed { .. }
            | EventKind::ExecutionReported { .. }
            | EventKind::PolicyChanged { .. }
            | EventKind::AdminChanged { .. } => {}
        }
        Ok(())
    }
}
