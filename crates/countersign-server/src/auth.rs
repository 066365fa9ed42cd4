//! Who is calling: an agent (API token) or an approver (session opened with an enrolled key).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use countersign_store::Session;

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

/// An authenticated agent.
pub struct Agent(pub String);

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if !token.starts_with("csa_") {
            return Err(ApiError::unauthorized("not an agent token"));
        }
        match state.store.agent_token(&secrets::hash(token)).await? {
            Some(t) if t.revoked_at.is_none() => Ok(Agent(t.agent_id)),
            Some(_) => Err(ApiError::unauthorized("agent token revoked")),
            None => Err(ApiError::unauthorized("unknown agent token")),
        }
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
