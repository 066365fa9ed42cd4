//! Grants: issued signed by the service when a request is approved, redeemed once by the agent
//! that asked, inside their window, for the approved digest.

use countersign_core::api::Redeemed;
use countersign_core::{Actor, Digest, EventKind, Grant, SignedGrant, Timestamp};
use countersign_store::{NewEvent, RequestRecord, StoreError};
use uuid::Uuid;

use super::{DomainError, DomainResult, requests};
use crate::state::AppState;

/// A single-use grant for `record`, valid from `now` for the configured time, signed with the
/// service key.
pub fn issue(
    state: &AppState,
    record: &RequestRecord,
    now: Timestamp,
) -> DomainResult<SignedGrant> {
    let grant = Grant {
        grant_id: Uuid::now_v7(),
        request_id: record.action.id,
        request_digest: record.digest,
        not_before: now,
        expires_at: now.add_seconds(state.config.grant_ttl_seconds),
        single_use: true,
    };
    let payload = grant
        .signing_payload()
        .map_err(|e| DomainError::internal("grant encoding", e))?;
    let signature = state
        .key
        .sign(&payload)
        .map_err(|e| DomainError::internal("grant signature", e))?;
    Ok(SignedGrant { signature, grant })
}

/// Redeems grant `grant_id` for `agent`, presenting `digest`. Only the agent that made the
/// request may redeem its grant (another agent's is as good as absent); digest, window and
/// single use are checked by the store, atomically.
pub async fn redeem(
    state: &AppState,
    agent: &str,
    grant_id: Uuid,
    digest: &Digest,
) -> DomainResult<Redeemed> {
    let now = state.now();
    let action_id = state
        .store
        .grant_request(grant_id)
        .await?
        .ok_or(DomainError::NotFound("grant"))?;
    requests::own(state, agent, action_id)
        .await
        .map_err(|e| match e {
            DomainError::NotFound(_) | DomainError::Store(StoreError::NotFound(_)) => {
                DomainError::NotFound("grant")
            }
            other => other,
        })?;
    let event = NewEvent::new(
        Actor::Agent(agent.to_owned()),
        EventKind::GrantRedeemed {
            grant_id,
            action_id,
        },
    );
    let (record, appended) = state
        .store
        .redeem_grant(grant_id, digest, event, now)
        .await?;
    state.publish(&appended);
    Ok(Redeemed {
        grant: record.grant,
        redeemed_at: now,
    })
}
