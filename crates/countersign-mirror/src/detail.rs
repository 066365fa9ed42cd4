//! One request in full, from its events, with the evidence that each event is in the verified
//! log: its stored bytes hash to its leaf, and an inclusion proof from the mirror's own tree
//! verifies against the trusted checkpoint's root.

use std::sync::Arc;

use countersign_core::{
    Action, Actor, AuditEvent, Digest, EventKind, ExecutionOutcome, InclusionProof, KeyId, KeyKind,
    MerkleTree, SignedGrant, Timestamp, Verdict, merkle,
};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::search::{RequestSummary, fetch_summaries, summaries_query};
use crate::{Mirror, MirrorError, MirrorResult};

/// A decision as the log recorded it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct DecisionDetail {
    /// The event.
    pub seq: u64,
    /// Who.
    pub approver_id: String,
    /// Approve or deny.
    pub verdict: Verdict,
    /// By the approver's clock.
    pub decided_at: Timestamp,
    /// When the service recorded it.
    pub recorded_at: Timestamp,
    /// Comment.
    pub comment: String,
    /// The signing key.
    pub key_id: KeyId,
    /// Its kind.
    pub key_kind: KeyKind,
    /// Whether that kind is hardware-backed.
    pub hardware: bool,
    /// The trusted manufacturer's root that vouched for the key's device at enrolment;
    /// `None`: its hardware is only claimed.
    pub attested_by: Option<String>,
    /// The signature (DER, base64), verified at sync against the key the log enrolled.
    pub signature: String,
}

/// One event of the request, with its inclusion evidence.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct EventEntry {
    /// Position.
    pub seq: u64,
    /// When.
    pub recorded_at: Timestamp,
    /// Its type.
    pub kind: &'static str,
    /// Who caused it.
    pub actor: Actor,
    /// Merkle leaf hash.
    pub leaf_hash: Digest,
    /// The stored bytes hash to the leaf and its inclusion proof verifies against the trusted
    /// checkpoint.
    pub verified: bool,
}

/// A request with everything the log says about it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct RequestDetail {
    /// The summary row.
    pub summary: RequestSummary,
    /// The request as shown to approvers (context, parameters, diff).
    pub action: Action,
    /// Its digest.
    pub digest: Digest,
    /// How the agent proved who it is, as the request's event recorded it (none for events
    /// recorded before the service kept it).
    pub requester_authentication: Option<countersign_core::audit::AgentAuthentication>,
    /// Decisions, in order.
    pub decisions: Vec<DecisionDetail>,
    /// The grant, if one was issued.
    pub grant: Option<SignedGrant>,
    /// The reported outcome.
    pub outcome: Option<ExecutionOutcome>,
    /// Every event, in order.
    pub events: Vec<EventEntry>,
    /// Size of the checkpoint the events are proven against.
    pub checkpoint_size: u64,
    /// Every event verified.
    pub verified: bool,
}

impl Mirror {
    /// The Merkle tree of the verified events, built from the stored leaf hashes once and
    /// extended as the mirror grows.
    pub async fn tree(&self) -> MirrorResult<Arc<MerkleTree>> {
        let size = self.trust().await?.map_or(0, |t| t.verified_size);
        let current = self.tree_cache().await;
        if current.size() == size {
            return Ok(current);
        }
        let mut tree = if current.size() < size {
            (*current).clone()
        } else {
            MerkleTree::new()
        };
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT leaf_hash FROM events WHERE seq >= ? AND seq < ? ORDER BY seq",
        )
        .bind(tree.size() as i64)
        .bind(size as i64)
        .fetch_all(&self.pool)
        .await?;
        for h in rows {
            let d = <[u8; 32]>::try_from(h.as_slice())
                .map_err(|_| MirrorError::Corrupt("stored leaf hash is not 32 bytes".into()))?;
            tree.push_leaf_hash(Digest(d));
        }
        if tree.size() != size {
            return Err(MirrorError::Corrupt(format!(
                "{} events stored but {size} verified",
                tree.size()
            )));
        }
        let tree = Arc::new(tree);
        self.set_tree_cache(tree.clone()).await;
        Ok(tree)
    }

    /// An inclusion proof of event `seq` in the tree of `tree_size`, from the mirror's own
    /// stored leaves.
    pub async fn inclusion_proof(&self, seq: u64, tree_size: u64) -> MirrorResult<InclusionProof> {
        let tree = self.tree().await?;
        let hashes = tree
            .inclusion_proof(seq, tree_size)
            .map_err(|e| MirrorError::Invalid(e.to_string()))?;
        Ok(InclusionProof {
            leaf_index: seq,
            tree_size,
            hashes,
        })
    }

    /// Request `id` in full.
    pub async fn request(&self, id: Uuid) -> MirrorResult<RequestDetail> {
        let mut b = summaries_query();
        b.push(" FROM requests r WHERE r.id = ");
        b.push_bind(id.to_string());
        let summary = fetch_summaries(b, &self.pool)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| MirrorError::Invalid(format!("no request {id} in the mirror")))?;
        let trust = self
            .trust()
            .await?
            .ok_or_else(|| MirrorError::Invalid("the mirror has not synced yet".into()))?;
        let checkpoint = trust
            .checkpoint
            .as_ref()
            .map(|c| c.checkpoint.clone())
            .ok_or_else(|| MirrorError::Invalid("the mirror has no checkpoint yet".into()))?;
        let size = trust.verified_size;
        let tree = self.tree().await?;
        let rows =
            sqlx::query("SELECT seq, body, leaf_hash FROM events WHERE action_id = ? ORDER BY seq")
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
        let mut action = None;
        let mut digest = None;
        let mut requester_authentication = None;
        let mut decisions = Vec::new();
        let mut grant = None;
        let mut outcome = None;
        let mut events = Vec::new();
        for row in rows {
            let seq: i64 = row.try_get(0)?;
            let body: String = row.try_get(1)?;
            let stored: Vec<u8> = row.try_get(2)?;
            let event: AuditEvent = serde_json::from_str(&body)
                .map_err(|e| MirrorError::Corrupt(format!("event {seq}: {e}")))?;
            let leaf = merkle::leaf_hash(body.as_bytes());
            let seq = seq as u64;
            // Verified when the bytes hash to the stored leaf, the event is within the
            // verified size and its path leads to the trusted root.
            let verified = stored.as_slice() == leaf.as_bytes()
                && event.seq == seq
                && seq < size
                && size == checkpoint.tree_size
                && tree
                    .inclusion_proof(seq, size)
                    .ok()
                    .map(|hashes| InclusionProof {
                        leaf_index: seq,
                        tree_size: size,
                        hashes,
                    })
                    .is_some_and(|p| p.verify(&leaf, &checkpoint.root_hash).is_ok());
            match &event.event {
                EventKind::RequestCreated {
                    action: a,
                    digest: d,
                    authenticated_by,
                } => {
                    action = Some((**a).clone());
                    digest = Some(*d);
                    requester_authentication = authenticated_by.clone();
                }
                EventKind::DecisionRecorded {
                    decision,
                    key_kind,
                    attested_by,
                } => {
                    let d = &decision.decision;
                    decisions.push(DecisionDetail {
                        seq,
                        approver_id: d.approver_id.clone(),
                        verdict: d.verdict,
                        decided_at: d.decided_at,
                        recorded_at: event.recorded_at,
                        comment: d.comment.clone(),
                        key_id: d.key_id,
                        key_kind: *key_kind,
                        hardware: key_kind.is_hardware(),
                        attested_by: attested_by.clone(),
                        signature: decision.signature.to_base64(),
                    });
                }
                EventKind::GrantIssued { grant: g } => grant = Some(g.clone()),
                EventKind::ExecutionReported { outcome: o, .. } => outcome = Some(o.clone()),
                _ => {}
            }
            events.push(EventEntry {
                seq,
                recorded_at: event.recorded_at,
                kind: event.event.type_name(),
                actor: event.actor,
                leaf_hash: leaf,
                verified,
            });
        }
        let (Some(action), Some(digest)) = (action, digest) else {
            return Err(MirrorError::Corrupt(format!(
                "request {id} is indexed but its request_created event is missing"
            )));
        };
        let verified = events.iter().all(|e| e.verified);
        Ok(RequestDetail {
            summary,
            action,
            digest,
            requester_authentication,
            decisions,
            grant,
            outcome,
            events,
            checkpoint_size: checkpoint.tree_size,
            verified,
        })
    }
}
