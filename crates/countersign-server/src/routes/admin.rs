//! Administration over HTTP with an admin token: agent tokens, approvers and their groups,
//! enrolment codes, key revocation and the policy. Each change is an audit event naming the
//! administrator, recorded before it takes effect. Admin tokens themselves are issued only
//! against the data directory (`countersign admin admin-token`), so a leaked admin token cannot
//! mint itself a successor.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use countersign_core::api::ErrorBody;
use countersign_core::api::admin::{
    ApproverAdminView, ApproverUpdate, IssuedEnrolmentCode, IssuedToken, KeyRevocation,
    NewAgentToken, NewEnrolmentCode, PolicyChange, PolicyUpdate, PolicyView, TokenView,
};
use countersign_core::{KeyId, validate};
use countersign_store::{Approver, TokenRole};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::admin;
use crate::auth::Admin;
use crate::domain;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

/// Enrolment code validity when none is asked for (one day).
const DEFAULT_ENROLMENT_TTL_SECONDS: i64 = 86_400;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens))
        .routes(routes!(issue_agent_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_approvers))
        .routes(routes!(put_approver))
        .routes(routes!(issue_enrolment_code))
        .routes(routes!(revoke_key))
        .routes(routes!(get_policy, put_policy))
}

/// Every API token, agents' and administrators', revoked ones included.
#[utoipa::path(get, path = "/v1/admin/tokens", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = [TokenView]), (status = 401, description = "Missing, unknown or revoked admin token", body = ErrorBody)))]
async fn list_tokens(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let tokens = state.store.api_tokens().await?;
    Ok(Json(tokens.into_iter().map(admin::token_view).collect()))
}

/// Issue an API token for an agent; the token is in this response only.
#[utoipa::path(post, path = "/v1/admin/agent-tokens", tag = "admin", security(("admin_token" = [])),
    request_body = NewAgentToken,
    responses((status = 201, body = IssuedToken), (status = 400, description = "Invalid agent id", body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn issue_agent_token(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(body): ApiJson<NewAgentToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    countersign_core::identifier::check("agent_id", &body.agent_id)?;
    let (token_id, token) = admin::issue_token(
        state.store.as_ref(),
        &admin,
        TokenRole::Agent,
        &body.agent_id,
        state.now(),
    )
    .await?;
    tracing::info!(%admin, agent = %body.agent_id, %token_id, "agent token issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token_id,
            subject: body.agent_id,
            token,
        }),
    ))
}

/// Revoke an API token (an agent's or an administrator's, this one included).
#[utoipa::path(delete, path = "/v1/admin/tokens/{token_id}", tag = "admin", security(("admin_token" = [])),
    params(("token_id" = Uuid, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 404, description = "No such active token", body = ErrorBody)))]
async fn revoke_token(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(token_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    admin::revoke_token(state.store.as_ref(), &admin, token_id, state.now()).await?;
    tracing::info!(%admin, %token_id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Every approver with groups and keys.
#[utoipa::path(get, path = "/v1/admin/approvers", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = [ApproverAdminView]), (status = 401, body = ErrorBody)))]
async fn list_approvers(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<ApproverAdminView>>, ApiError> {
    Ok(Json(admin::approver_views(state.store.as_ref()).await?))
}

/// Create an approver or replace its name and groups.
#[utoipa::path(put, path = "/v1/admin/approvers/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Approver identity, e.g. an email address")),
    request_body = ApproverUpdate,
    responses((status = 200, body = ApproverAdminView), (status = 400, description = "Invalid id, name or group", body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn put_approver(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApproverUpdate>,
) -> Result<Json<ApproverAdminView>, ApiError> {
    let approver = Approver {
        display_name: body.display_name.unwrap_or_else(|| id.clone()),
        id,
        groups: body.groups,
    };
    admin::put_approver(state.store.as_ref(), &admin, &approver, state.now()).await?;
    tracing::info!(%admin, approver = %approver.id, "approver set");
    Ok(Json(
        admin::approver_view(state.store.as_ref(), approver).await?,
    ))
}

/// Issue a one-time enrolment code for an approver; the code is in this response only.
#[utoipa::path(post, path = "/v1/admin/approvers/{id}/enrolment-codes", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Approver identity")),
    request_body = NewEnrolmentCode,
    responses((status = 201, body = IssuedEnrolmentCode), (status = 400, description = "ttl_seconds outside 60..=604800", body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, description = "No such approver", body = ErrorBody)))]
async fn issue_enrolment_code(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewEnrolmentCode>,
) -> Result<(StatusCode, Json<IssuedEnrolmentCode>), ApiError> {
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_ENROLMENT_TTL_SECONDS);
    let (code, expires_at) =
        admin::issue_enrolment_code(state.store.as_ref(), &admin, &id, ttl, state.now()).await?;
    tracing::info!(%admin, approver = %id, "enrolment code issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedEnrolmentCode {
            approver_id: id,
            code,
            expires_at,
        }),
    ))
}

/// Revoke an approver's key; its sessions end with it.
#[utoipa::path(post, path = "/v1/admin/keys/{key_id}/revoke", tag = "admin", security(("admin_token" = [])),
    params(("key_id" = String, Path, description = "Key id (64 hex characters)")),
    request_body = KeyRevocation,
    responses((status = 204, description = "Revoked"), (status = 400, description = "Malformed key id or reason", body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, description = "No such active key", body = ErrorBody)))]
async fn revoke_key(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(key_id): Path<String>,
    ApiJson(body): ApiJson<KeyRevocation>,
) -> Result<StatusCode, ApiError> {
    let key_id: KeyId = key_id
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_field", format!("key_id: {e}")))?;
    validate::text("reason", &body.reason, 512, false)?;
    admin::revoke_key(
        state.store.as_ref(),
        &admin,
        &key_id,
        &body.reason,
        state.now(),
    )
    .await?;
    // The revocation is in the log: the follower hands it to every stream the key opened,
    // which close at once (on other replicas through their own followers).
    state.log_grew();
    tracing::info!(%admin, %key_id, "key revoked");
    Ok(StatusCode::NO_CONTENT)
}

fn policy_error(e: crate::policy::PolicyError) -> ApiError {
    ApiError::internal("policy", e)
}

/// The policy in force: source, hash and file.
#[utoipa::path(get, path = "/v1/admin/policy", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = PolicyView), (status = 401, body = ErrorBody)))]
async fn get_policy(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<PolicyView>, ApiError> {
    let (source, hash) = state.policy.current().map_err(policy_error)?;
    Ok(Json(PolicyView {
        hash,
        source,
        path: state.policy.path().map(|p| p.display().to_string()),
    }))
}

/// Replace the policy. The new source must compile and decide; it is written to the policy
/// file (so it survives a restart) and takes effect at once. The change is recorded first.
#[utoipa::path(put, path = "/v1/admin/policy", tag = "admin", security(("admin_token" = [])),
    request_body = PolicyUpdate,
    responses((status = 200, body = PolicyChange), (status = 400, description = "policy_invalid: the source does not compile or does not decide", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "policy_builtin: the service runs the built-in policy; policy_changed: expected_hash is not the policy in force", body = ErrorBody)))]
async fn put_policy(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(body): ApiJson<PolicyUpdate>,
) -> Result<Json<PolicyChange>, ApiError> {
    Ok(Json(
        domain::policy::replace(&state, &admin, &body.source, body.expected_hash).await?,
    ))
}
