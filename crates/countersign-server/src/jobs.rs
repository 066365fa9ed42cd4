//! Background work: expiring requests on time with no traffic, reloading the policy file.

use std::time::Duration;

use countersign_core::{Actor, EventKind};
use countersign_store::NewEvent;
use tokio::sync::watch;

use crate::state::AppState;

const EXPIRY_TICK: Duration = Duration::from_millis(200);
const POLICY_TICK: Duration = Duration::from_secs(1);

/// Expires due requests. Runs on every replica; the store makes each expiry happen once.
pub async fn expiry(state: AppState, mut stop: watch::Receiver<bool>) {
    let event_for = |action_id| NewEvent::new(Actor::System, EventKind::Expired { action_id });
    loop {
        let now = state.now();
        match state.store.next_expiry().await {
            Ok(Some(at)) if at <= now => match state.store.expire_due(now, &event_for).await {
                Ok(events) => {
                    for e in &events {
                        tracing::info!(action = ?e.event.action_id(), "request expired");
                    }
                    state.publish(&events);
                }
                Err(e) => tracing::error!(error = %e, "expiring requests failed; will retry"),
            },
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "reading the next expiry failed; will retry"),
        }
        tokio::select! {
            () = tokio::time::sleep(EXPIRY_TICK) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Reloads the policy file when it changes; every change is an audit event. A broken file is
/// logged and the last good policy stays in force.
pub async fn policy_reload(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLICY_TICK) => {}
            _ = stop.changed() => return,
        }
        match state.policy.reload() {
            Ok(Some((old, new))) => {
                let event = NewEvent::new(
                    Actor::System,
                    EventKind::PolicyChanged {
                        previous_hash: Some(old),
                        policy_hash: new,
                    },
                );
                match state.store.append_events(vec![event], state.now()).await {
                    Ok(events) => {
                        tracing::info!(%old, %new, "policy reloaded");
                        state.publish(&events);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "policy changed but the audit event failed")
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "policy file is broken; keeping the last good policy")
            }
        }
    }
}
