//! Reviews of break-glass requests: granted without quorum, they stay open until enough
//! reviewers sign that they looked at what was done. Checked like decisions, then recorded by
//! the store, which checks the rest atomically.

use countersign_core::api::ReviewResult;
use countersign_core::{Actor, EventKind, PolicyOutcome, SignedReview};
use countersign_store::{DecisionContext, NewEvent, RequestRecord};
use uuid::Uuid;

use super::{DomainResult, rules};
use crate::state::AppState;

/// Records `signed` on break-glass request `id`.
pub async fn apply(state: &AppState, id: Uuid, signed: SignedReview) -> DomainResult<ReviewResult> {
    let r = &signed.review;
    let DecisionContext {
        record,
        key,
        approver,
    } = state
        .store
        .decision_context(id, &r.key_id, &r.reviewer_id)
        .await?;
    let now = state.now();
    let key = rules::check_review(
        &signed,
        &record,
        key.as_ref(),
        approver.as_ref(),
        now,
        state.config.max_clock_skew_ms,
    )
    .inspect_err(
        |e| tracing::warn!(%id, reviewer = %r.reviewer_id, error = %e, "review refused"),
    )?;
    let event = NewEvent::new(
        Actor::Approver(r.reviewer_id.clone()),
        EventKind::ReviewRecorded {
            review: signed.clone(),
            key_kind: key.kind,
        },
    );
    let completed = move |concerns: u32| {
        NewEvent::new(
            Actor::System,
            EventKind::ReviewCompleted {
                action_id: id,
                concerns,
            },
        )
    };
    let appended = state
        .store
        .record_review(&signed, key.kind, event, &completed, now)
        .await?;
    state.publish(&appended);
    let reviews = u32::try_from(state.store.reviews(id).await?.len()).unwrap_or(u32::MAX);
    let review_quorum = review_quorum(&record);
    tracing::info!(%id, reviewer = %r.reviewer_id, concern = r.concern, reviews, review_quorum, "break-glass review recorded");
    Ok(ReviewResult {
        reviews,
        review_quorum,
        complete: reviews >= review_quorum,
    })
}

/// The reviews `record` needs (0 when it is not break-glass).
pub fn review_quorum(record: &RequestRecord) -> u32 {
    match &record.action.policy.outcome {
        PolicyOutcome::BreakGlass { review_quorum, .. } => *review_quorum,
        _ => 0,
    }
}

/// Most break-glass requests awaiting review listed at once: they are rare by design, and an
/// operator with more than this many open has a bigger problem than a long list.
const MAX_AWAITING: u32 = 1000;

/// Break-glass requests `approver` may review and has not: in the review groups, not the
/// requester or the person it acted for.
pub async fn awaiting(
    state: &AppState,
    approver: &countersign_store::Approver,
) -> DomainResult<Vec<countersign_core::api::ActionView>> {
    let mut out = Vec::new();
    for record in state.store.awaiting_review(MAX_AWAITING).await? {
        let PolicyOutcome::BreakGlass { review_groups, .. } = &record.action.policy.outcome else {
            continue;
        };
        if !rules::in_any_group(approver, review_groups) || record.action.is_requester(&approver.id)
        {
            continue;
        }
        let id = record.action.id;
        let reviewed = state.store.reviews(id).await?.iter().any(|r| {
            countersign_core::identifier::same(&r.review.review.reviewer_id, &approver.id)
        });
        if reviewed {
            continue;
        }
        out.push(
            super::requests::view(state, record, false)
                .await?
                .summarized(),
        );
    }
    Ok(out)
}
