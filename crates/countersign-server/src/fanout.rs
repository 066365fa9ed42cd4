//! Turns committed audit events into approver-stream notices, once per event: one store read
//! and one JSON encoding, shared by every connected stream, which only filters and forwards.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use countersign_core::EventKind;
use countersign_core::api::ServerMessage;
use countersign_store::ActionRecord;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::routes::actions::view;
use crate::state::AppState;

/// A change to a request, ready to send.
#[derive(Debug)]
pub enum Notice {
    /// A request changed; `text` is the encoded `Request` (when `new`) or `Update` message.
    Change {
        /// Log position.
        seq: u64,
        /// The request, for eligibility checks.
        record: Arc<ActionRecord>,
        /// A request just created.
        new: bool,
        /// The encoded message.
        text: Utf8Bytes,
    },
    /// Notices were lost (the fan-out fell behind): streams must take a fresh snapshot.
    Resync,
}

fn relevant(kind: &EventKind) -> Option<bool> {
    match kind {
        EventKind::RequestCreated { .. } => Some(true),
        EventKind::DecisionRecorded { .. }
        | EventKind::Approved { .. }
        | EventKind::Denied { .. }
        | EventKind::Expired { .. }
        | EventKind::Cancelled { .. } => Some(false),
        _ => None,
    }
}

/// Runs until the event channel closes.
pub async fn run(
    state: AppState,
    mut events: broadcast::Receiver<countersign_core::AuditEvent>,
    notices: broadcast::Sender<Arc<Notice>>,
) {
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "approver fan-out fell behind; streams will resync"
                );
                let _ = notices.send(Arc::new(Notice::Resync));
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let (Some(new), Some(id)) = (relevant(&e.event), e.event.action_id()) else {
            continue;
        };
        let record = match state.store.action(id).await {
            Ok(r) => r,
            Err(err) => {
                tracing::error!(%id, error = %err, "fan-out could not read a request; streams will resync");
                let _ = notices.send(Arc::new(Notice::Resync));
                continue;
            }
        };
        if new && record.status.is_final() {
            // Decided by policy alone: nobody's inbox.
            continue;
        }
        let view = match view(&state, record.clone(), false).await {
            Ok(v) => v,
            Err(_) => {
                let _ = notices.send(Arc::new(Notice::Resync));
                continue;
            }
        };
        let message = if new {
            ServerMessage::Request { seq: e.seq, view }
        } else {
            ServerMessage::Update { seq: e.seq, view }
        };
        let Ok(text) = serde_json::to_string(&message) else {
            continue;
        };
        let _ = notices.send(Arc::new(Notice::Change {
            seq: e.seq,
            record: Arc::new(record),
            new,
            text: text.into(),
        }));
    }
}
