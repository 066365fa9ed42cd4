//! The audit log: events in order, the signed checkpoint, proofs, and the service's key.

use axum::Json;
use axum::extract::{Query, State};
use countersign_core::api::{CheckpointView, ErrorBody, EventsPage, ServerKeyView};
use countersign_core::{ConsistencyProof, InclusionProof};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit_log::current_checkpoint;
use crate::auth::ApproverSession;
use crate::error::ApiError;
use crate::state::AppState;

const MAX_LIMIT: u32 = 1000;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(checkpoint))
        .routes(routes!(inclusion))
        .routes(routes!(consistency))
        .routes(routes!(server_key))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct EventsQuery {
    /// Return events with `seq > after`; all from the start when absent.
    after: Option<u64>,
    /// At most this many (1 to 1000).
    limit: Option<u32>,
}

/// Audit events in log order.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(EventsQuery), security(("approver_session" = [])),
    responses((status = 200, body = EventsPage), (status = 401, body = ErrorBody)))]
async fn events(
    State(state): State<AppState>,
    _s: ApproverSession,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventsPage>, ApiError> {
    let from = q.after.map_or(0, |a| a.saturating_add(1));
    let limit = q.limit.unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT);
    let events = state.store.audit_events(from, limit).await?;
    let tree_size = state.store.audit_size().await?;
    Ok(Json(EventsPage { events, tree_size }))
}

/// The latest signed checkpoint (signing a new one when the log grew).
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit", responses((status = 200, body = CheckpointView)))]
async fn checkpoint(State(state): State<AppState>) -> Result<Json<CheckpointView>, ApiError> {
    let signed = current_checkpoint(&state).await?;
    Ok(Json(CheckpointView {
        note: signed.to_note(),
        checkpoint: signed.checkpoint,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct InclusionQuery {
    /// The event (leaf index).
    seq: u64,
    /// Size of the tree (a checkpoint's size).
    tree_size: u64,
}

/// RFC 9162 inclusion proof of an event in the tree of a given size.
#[utoipa::path(get, path = "/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, body = InclusionProof), (status = 400, description = "Invalid field or malformed JSON", body = ErrorBody)))]
async fn inclusion(
    State(state): State<AppState>,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<InclusionProof>, ApiError> {
    state.log.sync(state.store.as_ref()).await?;
    Ok(Json(state.log.inclusion(q.seq, q.tree_size)?))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct ConsistencyQuery {
    /// Older tree size.
    from: u64,
    /// Newer tree size.
    to: u64,
}

/// RFC 9162 consistency proof between two tree sizes.
#[utoipa::path(get, path = "/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = 400, description = "Invalid field or malformed JSON", body = ErrorBody)))]
async fn consistency(
    State(state): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    state.log.sync(state.store.as_ref()).await?;
    Ok(Json(state.log.consistency(q.from, q.to)?))
}

/// The service's public key (grants, checkpoints).
#[utoipa::path(get, path = "/v1/server-key", tag = "audit", responses((status = 200, body = ServerKeyView)))]
async fn server_key(State(state): State<AppState>) -> Json<ServerKeyView> {
    let key = state.key.public();
    Json(ServerKeyView {
        name: state.config.origin.clone(),
        public_key: key.clone(),
        key_id: key.key_id(),
        pem: key.to_pem(),
    })
}
