//! Turns committed audit events into approver-stream notices: one store read and one JSON
//! encoding per changed request, shared by every connected stream, which only filters and
//! forwards.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use countersign_core::api::ServerMessage;
use countersign_core::{EventKind, KeyId};
use countersign_store::RequestRecord;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use uuid::Uuid;

use crate::domain::requests::view;
use crate::state::AppState;

/// A change to a request, ready to send.
#[derive(Debug)]
pub enum Notice {
    /// A request changed; `text` is the encoded `Request` (when `new`) or `Update` message.
    Change {
        /// Log position.
        seq: u64,
        /// The request, for eligibility checks.
        record: Arc<RequestRecord>,
        /// A request just created.
        new: bool,
        /// The encoded message.
        text: Utf8Bytes,
    },
    /// Notices were lost (the fan-out fell behind): streams must take a fresh snapshot.
    Resync,
    /// A key was revoked: the streams it authenticated end at once.
    KeyRevoked(KeyId),
    /// The directory changed approvers' groups: each stream re-reads its approver, and takes a
    /// fresh snapshot if who it may decide for changed.
    DirectoryChanged,
}

/// Whether an event changes a request on approvers' streams, and if so whether it is news to
/// some (`true`: a request new to them, sent to streams that may now decide it and do not
/// hold it) or a change to those that hold it (`false`).
fn relevant(kind: &EventKind) -> Option<bool> {
    match kind {
        // An escalation makes the request new to the members of the groups it added.
        EventKind::RequestCreated { .. } | EventKind::Escalated { .. } => Some(true),
        EventKind::Reminded { .. } => Some(false),
        EventKind::DecisionRecorded { .. }
        | EventKind::Approved { .. }
        | EventKind::Denied { .. }
        | EventKind::Expired { .. }
        | EventKind::Cancelled { .. } => Some(false),
        _ => None,
    }
}

/// Runs until `stop`.
///
/// Events committed together (a decision that completes quorum appends three) are taken
/// together and each request's changes coalesced into one notice carrying its latest state
/// and log position: one read and one encoding per request instead of per event.
pub async fn run(
    state: AppState,
    mut events: broadcast::Receiver<countersign_core::AuditEvent>,
    notices: broadcast::Sender<Arc<Notice>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            r = events.recv() => r,
            _ = stop.changed() => return,
        };
        let mut batch = match received {
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
        // Per request: where it was created in this batch, if it was, and its last relevant
        // position. A creation keeps its own position and is announced before the later
        // change: folded into one "new" notice at the later position, a request that a
        // snapshot taken between the two already holds would be announced a second time.
        let mut changed: HashMap<Uuid, (Option<u64>, u64)> = HashMap::new();
        let directory_changed = batch.iter().any(|e| {
            matches!(&e.event, EventKind::AdminChanged { operation, .. } if operation.starts_with("directory_"))
        });
        if directory_changed {
            let _ = notices.send(Arc::new(Notice::DirectoryChanged));
        }
        for e in &batch {
            if let EventKind::KeyRevoked { key_id, .. } = &e.event {
                let _ = notices.send(Arc::new(Notice::KeyRevoked(*key_id)));
            }
            if let (Some(new), Some(id)) = (relevant(&e.event), e.event.action_id()) {
                let entry = changed.entry(id).or_insert((None, e.seq));
                if new {
                    entry.0 = Some(e.seq);
                }
                entry.1 = e.seq;
            }
        }
        let mut notices_due: Vec<(u64, Uuid, bool)> = Vec::with_capacity(changed.len());
        for (id, (created, last)) in changed {
            match created {
                Some(created) => {
                    notices_due.push((created, id, true));
                    if last != created {
                        notices_due.push((last, id, false));
                    }
                }
                None => notices_due.push((last, id, false)),
            }
        }
        notices_due.sort_unstable_by_key(|&(seq, _, _)| seq);
        for (seq, id, new) in notices_due {
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
    let record = match state.store.request(id).await {
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
    // Bounded whatever the agent sent: the full request is fetched when it is opened.
    let view = view.summarized();
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
