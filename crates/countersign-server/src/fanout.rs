//! Turns committed audit events into approver-stream notices: one store read and one JSON
//! encoding per changed request, shared by every connected stream, which only filters and
//! forwards.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use countersign_core::EventKind;
use countersign_core::api::ServerMessage;
use countersign_store::ActionRecord;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use uuid::Uuid;

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
///
/// Events committed together (a decision that completes quorum appends three) are taken
/// together and each request's changes coalesced into one notice carrying its latest state
/// and log position: one read and one encoding per request instead of per event.
pub async fn run(
    state: AppState,
    mut events: broadcast::Receiver<countersign_core::AuditEvent>,
    notices: broadcast::Sender<Arc<Notice>>,
) {
    loop {
        let mut batch = match events.recv().await {
            Ok(e) => vec![e],
            Err(RecvError::Lagged(n)) => {
                resync(&notices, n);
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        loop {
            match events.try_recv() {
                Ok(e) => batch.push(e),
                Err(TryRecvError::Lagged(n)) => {
                    resync(&notices, n);
                    batch.clear();
                }
                Err(_) => break,
            }
        }
        // Per request: the last relevant position, and whether it was created in this batch.
        let mut changed: HashMap<Uuid, (u64, bool)> = HashMap::new();
        for e in &batch {
            if let (Some(new), Some(id)) = (relevant(&e.event), e.event.action_id()) {
                let entry = changed.entry(id).or_insert((e.seq, new));
                *entry = (e.seq, entry.1 || new);
            }
        }
        let mut changed: Vec<(Uuid, u64, bool)> = changed
            .into_iter()
            .map(|(id, (seq, new))| (id, seq, new))
            .collect();
        changed.sort_unstable_by_key(|&(_, seq, _)| seq);
        for (id, seq, new) in changed {
            if let Some(notice) = notice(&state, id, seq, new).await {
                let _ = notices.send(Arc::new(notice));
            }
        }
    }
}

fn resync(notices: &broadcast::Sender<Arc<Notice>>, missed: u64) {
    tracing::warn!(missed, "approver fan-out fell behind; streams will resync");
    let _ = notices.send(Arc::new(Notice::Resync));
}

/// The notice for request `id` as it is now; `None` when nobody needs one.
async fn notice(state: &AppState, id: Uuid, seq: u64, new: bool) -> Option<Notice> {
    let record = match state.store.action(id).await {
        Ok(r) => r,
        Err(err) => {
            tracing::error!(%id, error = %err, "fan-out could not read a request; streams will resync");
            return Some(Notice::Resync);
        }
    };
    if new && record.status.is_final() {
        // Decided before anyone saw it (by policy alone, or within this batch): nobody's inbox.
        return None;
    }
    let Ok(view) = view(state, record.clone(), false).await else {
        return Some(Notice::Resync);
    };
    let message = if new {
        ServerMessage::Request { seq, view }
    } else {
        ServerMessage::Update { seq, view }
    };
    let text = serde_json::to_string(&message).ok()?;
    Some(Notice::Change {
        seq,
        record: Arc::new(record),
        new,
        text: text.into(),
    })
}
