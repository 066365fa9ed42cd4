//! The HTTP interface, one module per area.

pub mod actions;
pub mod audit;
pub mod decisions;
pub mod grants;
pub mod identity;
pub mod stream;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

/// Every route of v1, plus liveness.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(actions::router())
        .merge(decisions::router())
        .merge(grants::router())
        .merge(audit::router())
        .merge(identity::router())
        .merge(stream::router())
        .route("/healthz", get(|| async { "ok" }))
}
