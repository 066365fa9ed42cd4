//! Who is calling: an agent or an administrator (API tokens with a role), or an approver
//! (session opened with an enrolled key).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use countersign_core::audit::AgentAuthentication;
use countersign_store::{Session, TokenRole};

use crate::error::ApiError;
use crate::secrets;
use crate::state::AppState;

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))
}

/// The subject of a live API token of `role`. The prefix and the stored role must agree, so
/// neither kind of token opens the other's routes.
async fn api_token(parts: &Parts, state: &AppState, role: TokenRole) -> Result<String, ApiError> {
    let token = bearer(parts)?;
    let (prefix, name) = match role {
        TokenRole::Agent => (crate::admin::AGENT_TOKEN_PREFIX, "agent"),
        TokenRole::Admin => (crate::admin::ADMIN_TOKEN_PREFIX, "admin"),
        TokenRole::Scim => (crate::admin::SCIM_TOKEN_PREFIX, "SCIM"),
    };
    if !token.starts_with(prefix) {
        return Err(ApiError::unauthorized(format!("not an {name} token")));
    }
    match state.store.api_token(&secrets::hash(token)).await? {
        Some(t) if t.role != role => Err(ApiError::unauthorized(format!("not an {name} token"))),
        Some(t) if t.revoked_at.is_none() => Ok(t.subject),
        Some(_) => Err(ApiError::unauthorized(format!("{name} token revoked"))),
        None => Err(ApiError::unauthorized(format!("unknown {name} token"))),
    }
}

/// An authenticated agent.
pub struct Agent(pub String);

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        AuthenticatedAgent::from_request_parts(parts, state)
            .await
            .map(|a| Agent(a.0))
    }
}

/// An authenticated agent and how it proved who it is: an API token, or a workload identity
/// token from a trusted issuer ([`crate::workload`]).
pub struct AuthenticatedAgent(pub String, pub AgentAuthentication);

impl FromRequestParts<AppState> for AuthenticatedAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if !token.starts_with(crate::admin::AGENT_TOKEN_PREFIX)
            && state.workload.any()
            && token.matches('.').count() == 2
        {
            let (id, how) = state
                .workload
                .authenticate(token)
                .await
                .map_err(|e| ApiError::unauthorized(e.to_string()))?;
            return Ok(AuthenticatedAgent(id, how));
        }
        api_token(parts, state, TokenRole::Agent)
            .await
            .map(|id| AuthenticatedAgent(id, AgentAuthentication::ApiToken))
    }
}

/// An authenticated administrator (by name, for the audit log).
pub struct Admin(pub String);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        api_token(parts, state, TokenRole::Admin).await.map(Admin)
    }
}

/// The organisation's directory, provisioning over SCIM (by the token's name, for the log).
pub struct ScimClient(pub String);

impl FromRequestParts<AppState> for ScimClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        api_token(parts, state, TokenRole::Scim)
            .await
            .map(ScimClient)
    }
}

/// An approver with a live session whose key is still enrolled.
pub struct ApproverSession(pub Session);

impl FromRequestParts<AppState> for ApproverSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if !token.starts_with("css_") {
            return Err(ApiError::unauthorized("not an approver session token"));
        }
        let session = state
            .store
            .session(&secrets::hash(token), state.now())
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown or expired session"))?;
        Ok(ApproverSession(session))
    }
}
