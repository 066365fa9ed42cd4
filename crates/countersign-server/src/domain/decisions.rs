//! Approvers' signed decisions: checked against every rule that needs no transaction, then
//! recorded by the store, which checks the rest atomically (pending, unexpired, distinct
//! approvers, fresh nonce, key still active).

use countersign_core::api::{DecisionEffect, DecisionResult};
use countersign_core::{Actor, EventKind, SignedDecision, Verdict};
use countersign_store::{DecisionContext, DecisionEffects, DecisionOutcome, NewEvent, StoreError};
use uuid::Uuid;

use super::{DomainResult, grants, rules};
use crate::state::AppState;

/// Records `signed` on request `id`: the path shared by REST and the approver stream. A
/// decision sent again (a retry after an unknown outcome) answers what it did the first time.
pub async fn apply(
    state: &AppState,
    id: Uuid,
    signed: SignedDecision,
) -> DomainResult<DecisionResult> {
    let d = &signed.decision;
    let DecisionContext {
        record,
        key,
        approver,
    } = state
        .store
        .decision_context(id, &d.key_id, &d.approver_id)
        .await?;
    let now = state.now();
    let (key_kind, attested_by) = match rules::check_decision(
        &signed,
        &record,
        key.as_ref(),
        approver.as_ref(),
        now,
        state.config.max_clock_skew_ms,
    ) {
        Ok(key) => (key.kind, key.attested_by.clone()),
        Err(e) => {
            if let Some(result) = recorded_result(state, &signed, &record).await {
                return Ok(result);
            }
            tracing::warn!(%id, approver = %d.approver_id, error = %e, "decision refused");
            return Err(e);
        }
    };
    let on_quorum = if d.verdict == Verdict::Approve {
        let grant = grants::issue(state, &record, now)?;
        let events = vec![
            NewEvent::new(
                Actor::System,
                EventKind::Approved {
                    action_id: id,
                    reason: format!("quorum of {} reached", record.quorum),
                },
            ),
            NewEvent::new(
                Actor::System,
                EventKind::GrantIssued {
                    grant: grant.clone(),
                },
            ),
        ];
        Some((grant, events))
    } else {
        None
    };
    let effects = DecisionEffects {
        quorum: record.quorum,
        on_quorum,
        on_deny: vec![NewEvent::new(
            Actor::System,
            EventKind::Denied {
                action_id: id,
                reason: format!("denied by {}", d.approver_id),
            },
        )],
    };
    let event = NewEvent::new(
        Actor::Approver(d.approver_id.clone()),
        EventKind::DecisionRecorded {
            decision: signed.clone(),
            key_kind,
            attested_by,
        },
    );
    let (outcome, appended) = match state
        .store
        .record_decision(&signed, key_kind, effects, event, now)
        .await
    {
        Ok(recorded) => recorded,
        Err(e @ StoreError::Conflict(_)) => {
            // The same signed decision sent again (a retry after an unknown outcome): what it
            // did the first time, not a replay error.
            if let Some(result) = recorded_result(state, &signed, &record).await {
                return Ok(result);
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    state.publish(&appended);
    tracing::info!(%id, approver = %d.approver_id, verdict = ?d.verdict, "decision recorded");
    if !matches!(outcome, DecisionOutcome::Counted { .. }) {
        state
            .metrics
            .decided_after(now.millis_since(record.action.created_at));
    }
    Ok(match outcome {
        DecisionOutcome::Counted { approvals } => DecisionResult {
            result: DecisionEffect::Counted,
            approvals,
            quorum: record.quorum,
        },
        DecisionOutcome::Approved(_) => DecisionResult {
            result: DecisionEffect::Approved,
            approvals: record.quorum,
            quorum: record.quorum,
        },
        DecisionOutcome::Denied => DecisionResult {
            result: DecisionEffect::Denied,
            approvals: 0,
            quorum: record.quorum,
        },
    })
}

/// What `signed` did when it was recorded, if exactly this signed decision is on record for
/// the request: counted (with the approvals up to and including it), approved (it completed
/// the quorum) or denied. Only read on a refusal, so the usual path costs nothing more.
async fn recorded_result(
    state: &AppState,
    signed: &SignedDecision,
    record: &countersign_store::RequestRecord,
) -> Option<DecisionResult> {
    let decisions = state
        .store
        .decisions(signed.decision.request_id)
        .await
        .ok()?;
    let at = decisions.iter().position(|d| &d.decision == signed)?;
    let approvals = decisions[..=at]
        .iter()
        .filter(|d| d.decision.decision.verdict == Verdict::Approve)
        .map(|d| d.decision.decision.approver_id.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len() as u32;
    let quorum = record.quorum;
    Some(match signed.decision.verdict {
        Verdict::Deny => DecisionResult {
            result: DecisionEffect::Denied,
            approvals: 0,
            quorum,
        },
        Verdict::Approve if approvals >= quorum => DecisionResult {
            result: DecisionEffect::Approved,
            approvals: quorum,
            quorum,
        },
        Verdict::Approve => DecisionResult {
            result: DecisionEffect::Counted,
            approvals,
            quorum,
        },
    })
}
