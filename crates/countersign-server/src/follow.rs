//! With several replicas on one database, each replica follows the shared audit log and hands
//! every new event, in log order, to its own waiters and approver streams. It wakes when this
//! replica commits, when another replica's append is announced (PostgreSQL `NOTIFY`), and once
//! a second regardless, since an announcement can be lost while a listener reconnects.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast};

use crate::state::AppState;

const BATCH: u32 = 1000;
const POLL: Duration = Duration::from_secs(1);

/// Follows the log from its current end, for as long as the process runs.
pub async fn run(state: AppState, changes: broadcast::Receiver<()>, wake: Arc<Notify>) {
    let mut changes = Some(changes);
    // Streams start from a snapshot, so only what is appended from now on needs handing out.
    let mut next = loop {
        match state.store.audit_size().await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the log's size; retrying");
                tokio::time::sleep(POLL).await;
            }
        }
    };
    loop {
        tokio::select! {
            () = wake.notified() => {}
            r = announced(&mut changes) => {
                if matches!(r, Err(broadcast::error::RecvError::Closed)) {
                    // The announcements stopped; the timer alone keeps the log followed.
                    changes = None;
                }
            }
            () = tokio::time::sleep(POLL) => {}
        }
        loop {
            match state.store.audit_events(next, BATCH).await {
                Ok(events) => {
                    for e in &events {
                        // No receivers is fine: nobody is waiting.
                        let _ = state.events.send(e.clone());
                    }
                    next += events.len() as u64;
                    if (events.len() as u32) < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the shared log; retrying");
                    break;
                }
            }
        }
    }
}

async fn announced(
    changes: &mut Option<broadcast::Receiver<()>>,
) -> Result<(), broadcast::error::RecvError> {
    match changes {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}
