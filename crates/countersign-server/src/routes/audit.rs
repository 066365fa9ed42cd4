//! The audit log: events in order, the signed checkpoint, proofs, and the service's key.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use countersign_core::api::{
    CheckpointView, CosignatureRequest, CosignedCheckpointView, ErrorBody, EventsPage,
    ServerKeyView,
};
use countersign_core::{ConsistencyProof, InclusionProof, SignedCheckpoint};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit_log::current_checkpoint;
use crate::auth::ApproverSession;
use crate::domain;
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
        .routes(routes!(cosign, cosignatures))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Return events with `seq > after`; all from the start when absent.
    after: Option<u64>,
    /// At most this many (1 to 1000).
    limit: Option<u32>,
}

/// Audit events in log order. The stored leaf bytes are served verbatim (no parse, no
/// re-encoding): readers hash exactly what the log committed to, and verify it.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(EventsQuery), security(("approver_session" = [])),
    responses((status = 200, body = EventsPage), (status = 401, body = ErrorBody)))]
async fn events(
    State(state): State<AppState>,
    _s: ApproverSession,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let from = q.after.map_or(0, |a| a.saturating_add(1));
    let limit = q.limit.unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT);
    let leaves = state.store.audit_leaves(from, limit).await?;
    let tree_size = state.store.audit_size().await?;
    let mut body =
        String::with_capacity(leaves.iter().map(|(_, t)| t.len() + 1).sum::<usize>() + 48);
    body.push_str("{\"events\":[");
    for (i, (_, text)) in leaves.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(text);
    }
    body.push_str("],\"tree_size\":");
    body.push_str(&tree_size.to_string());
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The latest signed checkpoint (signing a new one when the log grew), with the cosignature
/// lines of every witness that verified it.
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit", responses((status = 200, body = CheckpointView)))]
async fn checkpoint(State(state): State<AppState>) -> Result<Json<CheckpointView>, ApiError> {
    let mut signed = current_checkpoint(&state).await?;
    for c in state
        .store
        .cosignatures(signed.checkpoint.tree_size)
        .await?
    {
        // Only cosignatures that verified were kept; the key is looked up for its note key id.
        if let Some(key) = state.store.key(&c.key_id).await? {
            signed.add_cosignature(&c.approver_id, &key.public_key, c.signature);
        }
    }
    Ok(Json(CheckpointView {
        note: signed.to_note(),
        checkpoint: signed.checkpoint,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
#[into_params(parameter_in = Query)]
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

/// A witness (an approver's console) cosigns a checkpoint it verified, with the key of its
/// session. Kept only when the signature verifies over the service's own checkpoint of that
/// size, so every stored cosignature is evidence of what that console saw.
#[utoipa::path(post, path = "/v1/audit/cosignatures", tag = "audit", request_body = CosignatureRequest,
    security(("approver_session" = [])),
    responses((status = 201, description = "Kept"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn cosign(
    State(state): State<AppState>,
    ApproverSession(session): ApproverSession,
    Json(req): Json<CosignatureRequest>,
) -> Result<StatusCode, ApiError> {
    domain::witnesses::cosign(&state, &session, req.tree_size, req.signature).await?;
    Ok(StatusCode::CREATED)
}

/// Each witness key's latest cosigned checkpoint, so a console can check that what other
/// consoles verified is part of the history it verified itself.
#[utoipa::path(get, path = "/v1/audit/cosignatures", tag = "audit", security(("approver_session" = [])),
    responses((status = 200, body = Vec<CosignedCheckpointView>), (status = 401, body = ErrorBody)))]
async fn cosignatures(
    State(state): State<AppState>,
    _s: ApproverSession,
) -> Result<Json<Vec<CosignedCheckpointView>>, ApiError> {
    let mut out = Vec::new();
    for c in state.store.latest_cosignatures().await? {
        // Witness evidence is never left out: a cosignature whose checkpoint or key the store
        // no longer holds means the store was changed behind the service's back, and every
        // console must hear of it rather than see a shorter list.
        let (Some(note), Some(key)) = (
            state.store.checkpoint_note(c.tree_size).await?,
            state.store.key(&c.key_id).await?,
        ) else {
            return Err(countersign_store::StoreError::Corrupt(format!(
                "cosignature by {} of checkpoint {} has no stored checkpoint or key",
                c.approver_id, c.tree_size
            ))
            .into());
        };
        let mut signed = SignedCheckpoint::parse_note(&note)
            .map_err(|e| ApiError::internal("stored checkpoint", e))?;
        signed.add_cosignature(&c.approver_id, &key.public_key, c.signature);
        out.push(CosignedCheckpointView {
            approver_id: c.approver_id,
            key_id: c.key_id,
            tree_size: c.tree_size,
            received_at: c.received_at,
            note: signed.to_note(),
        });
    }
    Ok(Json(out))
}
