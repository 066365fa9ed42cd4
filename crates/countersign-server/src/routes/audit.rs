//! The audit log: events in order, the signed checkpoint, proofs, and the service's key.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use countersign_core::api::{CheckpointView, EventsPage, ServerKeyView};
use countersign_core::{ConsistencyProof, InclusionProof};
use serde::Deserialize;

use crate::audit_log::current_checkpoint;
use crate::auth::ApproverSession;
use crate::error::ApiError;
use crate::state::AppState;

const MAX_LIMIT: u32 = 1000;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(events))
        .route("/v1/audit/checkpoint", get(checkpoint))
        .route("/v1/audit/proof/inclusion", get(inclusion))
        .route("/v1/audit/proof/consistency", get(consistency))
        .route("/v1/server-key", get(server_key))
}

#[derive(Deserialize)]
struct EventsQuery {
    /// Return events with `seq > after`; all from the start when absent.
    after: Option<u64>,
    limit: Option<u32>,
}

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

async fn checkpoint(State(state): State<AppState>) -> Result<Json<CheckpointView>, ApiError> {
    let signed = current_checkpoint(&state).await?;
    Ok(Json(CheckpointView {
        note: signed.to_note(),
        checkpoint: signed.checkpoint,
    }))
}

#[derive(Deserialize)]
struct InclusionQuery {
    seq: u64,
    tree_size: u64,
}

async fn inclusion(
    State(state): State<AppState>,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<InclusionProof>, ApiError> {
    state.log.sync(state.store.as_ref()).await?;
    Ok(Json(state.log.inclusion(q.seq, q.tree_size)?))
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

async fn consistency(
    State(state): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    state.log.sync(state.store.as_ref()).await?;
    Ok(Json(state.log.consistency(q.from, q.to)?))
}

async fn server_key(State(state): State<AppState>) -> Json<ServerKeyView> {
    let key = state.key.public();
    Json(ServerKeyView {
        name: state.config.origin.clone(),
        public_key: key.clone(),
        key_id: key.key_id(),
        pem: key.to_pem(),
    })
}
