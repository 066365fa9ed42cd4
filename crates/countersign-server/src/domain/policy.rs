//! Replacing the policy in force: checked first (it must compile and decide), recorded in the
//! log before it takes effect, one change at a time, and only over the policy the admin saw.

use countersign_core::api::admin::PolicyChange;
use countersign_core::{Actor, Digest, EventKind};
use countersign_store::NewEvent;

use super::{DomainError, DomainResult};
use crate::state::AppState;

/// Replaces the policy with `source` for `admin`, if `expected_hash` (when given) is the policy
/// in force.
pub async fn replace(
    state: &AppState,
    admin: &str,
    source: &str,
    expected_hash: Option<Digest>,
) -> DomainResult<PolicyChange> {
    let Some(path) = state.policy.path() else {
        return Err(DomainError::conflict(
            "policy_builtin",
            "the service runs the built-in policy; start it with --policy FILE to manage the policy",
        ));
    };
    let _one_at_a_time = state.policy.change_lock().await;
    let (_, current) = state
        .policy
        .current()
        .map_err(|e| DomainError::internal("policy", e))?;
    if expected_hash.is_some_and(|h| h != current) {
        return Err(DomainError::conflict(
            "policy_changed",
            format!("the policy in force is {current}; fetch it again before changing it"),
        ));
    }
    let candidate = state
        .policy
        .check(source)
        .map_err(|e| DomainError::invalid("policy_invalid", e.message))?;
    if candidate.hash() == current {
        return Ok(PolicyChange {
            previous_hash: current,
            hash: current,
            changed: false,
        });
    }
    let staged = state
        .policy
        .stage(&candidate)
        .map_err(|e| DomainError::internal("policy", e))?;
    let new = candidate.hash();
    let events = vec![
        NewEvent::new(
            Actor::Admin(admin.to_owned()),
            EventKind::AdminChanged {
                operation: "policy_set".into(),
                subject: path.display().to_string(),
                detail: format!("{current} -> {new}"),
            },
        ),
        NewEvent::new(
            Actor::Admin(admin.to_owned()),
            EventKind::PolicyChanged {
                previous_hash: Some(current),
                policy_hash: new,
            },
        ),
    ];
    let recorded = match state.store.append_events(events, state.now()).await {
        Ok(recorded) => recorded,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e.into());
        }
    };
    let previous = state
        .policy
        .install(&staged, candidate)
        .map_err(|e| DomainError::internal("policy", e))?;
    state.publish(&recorded);
    tracing::info!(%admin, old = %previous, %new, "policy replaced");
    Ok(PolicyChange {
        previous_hash: previous,
        hash: new,
        changed: true,
    })
}
