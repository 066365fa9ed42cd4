//! Administration, for the CLI against a data directory: agent tokens, approvers, enrolment
//! codes, revocation. Every operation is an audit event; secrets are returned once and stored
//! only as hashes.

use countersign_core::{Actor, EventKind, KeyId, Timestamp};
use countersign_store::{AgentToken, Approver, EnrolmentCode, NewEvent, Store, StoreResult};
use uuid::Uuid;

use crate::secrets;

fn admin_event(admin: &str, operation: &str, subject: &str, detail: String) -> NewEvent {
    NewEvent::new(
        Actor::Admin(admin.to_owned()),
        EventKind::AdminChanged {
            operation: operation.to_owned(),
            subject: subject.to_owned(),
            detail,
        },
    )
}

/// Issues an API token for `agent_id`; returns `(token_id, token)`. The token is shown once.
pub async fn issue_agent_token(
    store: &dyn Store,
    admin: &str,
    agent_id: &str,
    now: Timestamp,
) -> StoreResult<(Uuid, String)> {
    let token = secrets::token("csa_");
    let record = AgentToken {
        token_id: Uuid::now_v7(),
        agent_id: agent_id.to_owned(),
        token_hash: secrets::hash(&token),
        created_at: now,
        revoked_at: None,
    };
    let event = admin_event(
        admin,
        "agent_token_issued",
        agent_id,
        format!("token {}", record.token_id),
    );
    store.create_agent_token(&record, event).await?;
    Ok((record.token_id, token))
}

/// Revokes an agent token.
pub async fn revoke_agent_token(
    store: &dyn Store,
    admin: &str,
    token_id: Uuid,
    now: Timestamp,
) -> StoreResult<()> {
    let event = admin_event(
        admin,
        "agent_token_revoked",
        &token_id.to_string(),
        String::new(),
    );
    store.revoke_agent_token(token_id, event, now).await
}

/// Creates or updates an approver.
pub async fn put_approver(
    store: &dyn Store,
    admin: &str,
    approver: &Approver,
    now: Timestamp,
) -> StoreResult<()> {
    let event = admin_event(
        admin,
        "approver_set",
        &approver.id,
        format!("groups: {}", approver.groups.join(",")),
    );
    store.put_approver(approver, event, now).await
}

/// Issues a one-time enrolment code for an approver, valid for `ttl_seconds`.
pub async fn issue_enrolment_code(
    store: &dyn Store,
    admin: &str,
    approver_id: &str,
    ttl_seconds: i64,
    now: Timestamp,
) -> StoreResult<(String, Timestamp)> {
    let code = secrets::enrolment_code();
    let expires_at = now.add_seconds(ttl_seconds);
    let record = EnrolmentCode {
        code_hash: secrets::hash(&code),
        approver_id: approver_id.to_owned(),
        expires_at,
    };
    let event = admin_event(
        admin,
        "enrolment_code_issued",
        approver_id,
        format!("expires {expires_at}"),
    );
    store.create_enrolment_code(&record, event, now).await?;
    Ok((code, expires_at))
}

/// Revokes an approver's key; its sessions end with it.
pub async fn revoke_key(
    store: &dyn Store,
    admin: &str,
    key_id: &KeyId,
    reason: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let key = store
        .key(key_id)
        .await?
        .ok_or(countersign_store::StoreError::NotFound("key"))?;
    let event = NewEvent::new(
        Actor::Admin(admin.to_owned()),
        EventKind::KeyRevoked {
            approver_id: key.approver_id,
            key_id: *key_id,
            reason: reason.to_owned(),
        },
    );
    store.revoke_key(key_id, event, now).await
}
