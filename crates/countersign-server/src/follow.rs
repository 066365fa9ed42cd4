//! Each service process follows the audit log and hands every new event, in log order, to its
//! own waiters and approver streams. It wakes when this process commits, when another replica's
//! append is announced (PostgreSQL `NOTIFY`), and once a second regardless, since an
//! announcement can be lost while a listener reconnects. Reading the log instead of passing on
//! what each handler committed keeps the order of delivery the log's: two handlers that commit
//! seq 10 and 11 may announce them in either order, and a stream that saw 11 first would drop 10.

use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::state::AppState;

const BATCH: u32 = 1000;
const POLL: Duration = Duration::from_secs(1);

/// Follows the log from `start` (its end when delivery started; read here when that read
/// failed) until `stop`.
pub async fn run(
    state: AppState,
    start: Option<u64>,
    changes: Option<broadcast::Receiver<()>>,
    mut stop: watch::Receiver<bool>,
) {
    let wake = state.follow.clone();
    let mut changes = changes;
    // Streams start from a snapshot, so only what is appended from now on needs handing out.
    let mut next = if let Some(start) = start {
        start
    } else {
        loop {
            match state.store.audit_size().await {
                Ok(n) => break n,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the log's size; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(POLL) => {}
                        _ = stop.changed() => return,
                    }
                }
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
            _ = stop.changed() => return,
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
