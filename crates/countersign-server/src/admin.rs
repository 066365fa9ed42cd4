//! Administration, shared by the CLI against a data directory and the `/v1/admin` routes: API
//! tokens, approvers, enrolment codes, key revocation. Every operation is an audit event; secrets are returned once and stored
//! only as hashes.

use countersign_core::api::admin::{ApproverAdminView, KeyAdminView, TokenRoleView, TokenView};
use countersign_core::{Actor, EventKind, KeyId, Timestamp, ValidationError, identifier, validate};
use countersign_store::{
    ApiToken, Approver, ApproverKey, EnrolmentCode, NewEvent, Store, StoreError, StoreResult,
    TokenRole,
};
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

/// Longest an enrolment code may live: a week.
pub const MAX_ENROLMENT_TTL_SECONDS: i64 = 7 * 86_400;
/// Shortest an enrolment code may live: a minute.
pub const MIN_ENROLMENT_TTL_SECONDS: i64 = 60;
/// Most groups one approver may be in.
pub const MAX_GROUPS: usize = 64;

/// Why an administrative change was refused; the same rules whether it came over HTTP or
/// from `countersign admin` on the data directory.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A field breaks a rule; nothing was written.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Prefix of agent tokens.
pub const AGENT_TOKEN_PREFIX: &str = "csa_";
/// Prefix of administrator tokens.
pub const ADMIN_TOKEN_PREFIX: &str = "csadm_";
/// Prefix of the directory's SCIM tokens.
pub const SCIM_TOKEN_PREFIX: &str = "csscim_";

/// Issues an API token for `subject` with `role`; returns `(token_id, token)`. The token is
/// shown once.
pub async fn issue_token(
    store: &dyn Store,
    admin: &str,
    role: TokenRole,
    subject: &str,
    now: Timestamp,
) -> Result<(Uuid, String), AdminError> {
    identifier::check("subject", subject)?;
    let token = secrets::token(match role {
        TokenRole::Agent => AGENT_TOKEN_PREFIX,
        TokenRole::Admin => ADMIN_TOKEN_PREFIX,
        TokenRole::Scim => SCIM_TOKEN_PREFIX,
    });
    let record = ApiToken {
        token_id: Uuid::now_v7(),
        subject: subject.to_owned(),
        role,
        token_hash: secrets::hash(&token),
        created_at: now,
        revoked_at: None,
    };
    let event = admin_event(
        admin,
        &format!("{}_token_issued", role.as_str()),
        subject,
        format!("token {}", record.token_id),
    );
    store.create_api_token(&record, event).await?;
    Ok((record.token_id, token))
}

/// Revokes an API token.
pub async fn revoke_token(
    store: &dyn Store,
    admin: &str,
    token_id: Uuid,
    now: Timestamp,
) -> StoreResult<()> {
    let event = admin_event(admin, "token_revoked", &token_id.to_string(), String::new());
    store.revoke_api_token(token_id, event, now).await
}

/// Creates or updates an approver.
pub async fn put_approver(
    store: &dyn Store,
    admin: &str,
    approver: &Approver,
    now: Timestamp,
) -> Result<(), AdminError> {
    identifier::check("id", &approver.id)?;
    validate::text("display_name", &approver.display_name, 256, false)?;
    if approver.groups.len() > MAX_GROUPS {
        return Err(ValidationError::new("groups", format!("at most {MAX_GROUPS} groups")).into());
    }
    for g in &approver.groups {
        identifier::check("groups", g)?;
    }
    let event = admin_event(
        admin,
        "approver_set",
        &approver.id,
        format!("groups: {}", approver.groups.join(",")),
    );
    Ok(store.put_approver(approver, event, now).await?)
}

/// Issues a one-time enrolment code for an approver, valid for `ttl_seconds`.
pub async fn issue_enrolment_code(
    store: &dyn Store,
    admin: &str,
    approver_id: &str,
    ttl_seconds: i64,
    now: Timestamp,
) -> Result<(String, Timestamp), AdminError> {
    if !(MIN_ENROLMENT_TTL_SECONDS..=MAX_ENROLMENT_TTL_SECONDS).contains(&ttl_seconds) {
        return Err(ValidationError::new(
            "ttl_seconds",
            format!(
                "{ttl_seconds} is outside {MIN_ENROLMENT_TTL_SECONDS}..={MAX_ENROLMENT_TTL_SECONDS}"
            ),
        )
        .into());
    }
    if store.approver(approver_id).await?.is_none() {
        return Err(StoreError::NotFound("approver").into());
    }
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

/// A token as administrators see it.
pub fn token_view(t: ApiToken) -> TokenView {
    TokenView {
        token_id: t.token_id,
        subject: t.subject,
        role: match t.role {
            TokenRole::Agent => TokenRoleView::Agent,
            TokenRole::Admin => TokenRoleView::Admin,
            TokenRole::Scim => TokenRoleView::Scim,
        },
        created_at: t.created_at,
        revoked_at: t.revoked_at,
    }
}

fn key_view(k: ApproverKey) -> KeyAdminView {
    KeyAdminView {
        key_id: k.key_id,
        kind: k.kind,
        label: k.label,
        attested: k.attested_by.is_some(),
        certified: k.attestation.is_some(),
        attested_by: k.attested_by,
        enrolled_at: k.enrolled_at,
        revoked_at: k.revoked_at,
    }
}

/// An approver with its keys, as administrators see it.
pub async fn approver_view(store: &dyn Store, a: Approver) -> StoreResult<ApproverAdminView> {
    let keys = store.keys(Some(&a.id)).await?;
    Ok(ApproverAdminView {
        id: a.id,
        display_name: a.display_name,
        groups: a.groups,
        keys: keys.into_iter().map(key_view).collect(),
    })
}

/// Every approver with its keys.
pub async fn approver_views(store: &dyn Store) -> StoreResult<Vec<ApproverAdminView>> {
    let mut views = Vec::new();
    for a in store.approvers().await? {
        views.push(approver_view(store, a).await?);
    }
    Ok(views)
}
