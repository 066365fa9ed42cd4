//! The rules of the store's operations, written once for every backend. A backend reads, inside
//! its write transaction, the state a rule looks at; the rule says whether the operation may go
//! ahead and what it does; the backend writes that in the same transaction. So the rules cannot
//! drift between backends, and the backends hold only SQL.

use countersign_core::{Action, ActionStatus, Digest, Timestamp, Verdict};

use crate::{Conflict, GrantRecord, StoreError, StoreResult};

/// A request's canonical encoding (RFC 8785), the form every backend stores: one hash of the
/// stored text then checks it on every read.
pub fn canonical_text(action: &Action) -> StoreResult<String> {
    let bytes = countersign_core::to_canonical_vec(action)
        .map_err(|e| StoreError::Backend(format!("request has no canonical form: {e}")))?;
    String::from_utf8(bytes).map_err(|e| StoreError::Backend(e.to_string()))
}

/// The request stored as `text` under row id `id` with digest `stored_digest`, refused as
/// corrupt unless its content still hashes to the digest approvers sign and its id is the
/// row's. Rows written before requests were stored canonically are re-encoded to check.
pub fn stored_action(id: &str, text: &str, stored_digest: &Digest) -> StoreResult<Action> {
    let corrupt = |why: String| StoreError::Corrupt(format!("action {id}: {why}"));
    let action: Action = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let matches = Action::digest_of_canonical(text.as_bytes()) == *stored_digest
        || action.digest().map_err(|e| corrupt(e.to_string()))? == *stored_digest;
    if !matches || action.id.to_string() != id {
        return Err(corrupt("content does not match its digest".into()));
    }
    Ok(action)
}

/// What the checks of a decision read, in the transaction that records it.
#[derive(Clone, Debug)]
pub struct DecisionState {
    /// The request's status.
    pub status: ActionStatus,
    /// When it expires undecided.
    pub expires_at: Timestamp,
    /// This approver decided it already.
    pub already_decided: bool,
    /// The decision's nonce was seen before (on any request).
    pub nonce_seen: bool,
    /// The signing key is an enrolled, unrevoked key of the approver.
    pub key_active: bool,
    /// Distinct approvers who approved so far.
    pub prior_approvals: u32,
}

/// What recording an accepted decision does to its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionStep {
    /// A denial: the request is denied.
    Deny,
    /// An approval short of quorum: the request stays pending with this many approvals.
    Count {
        /// Distinct approvals including this one.
        approvals: u32,
    },
    /// The approval that reaches quorum: the request is approved and its grant issued.
    Approve,
}

/// Whether a decision with `verdict` may be recorded now, and what it does. The key is checked
/// first so that a revocation committed a moment before always wins.
pub fn decide(
    state: &DecisionState,
    verdict: Verdict,
    quorum: u32,
    now: Timestamp,
) -> Result<DecisionStep, Conflict> {
    if !state.key_active {
        return Err(Conflict::KeyRevoked);
    }
    if state.status != ActionStatus::Pending {
        return Err(Conflict::NotPending);
    }
    if now >= state.expires_at {
        return Err(Conflict::Expired);
    }
    if state.already_decided {
        return Err(Conflict::AlreadyDecided);
    }
    if state.nonce_seen {
        return Err(Conflict::NonceReused);
    }
    Ok(match verdict {
        Verdict::Deny => DecisionStep::Deny,
        Verdict::Approve => {
            // This approver had not decided (checked above): one more distinct approval.
            let approvals = state.prior_approvals.saturating_add(1);
            if approvals >= quorum {
                DecisionStep::Approve
            } else {
                DecisionStep::Count { approvals }
            }
        }
    })
}

/// Whether `grant` may be redeemed now for the request digest `presented`: once, inside its
/// window, for its own digest.
pub fn check_redeem(
    grant: &GrantRecord,
    presented: &Digest,
    now: Timestamp,
) -> Result<(), Conflict> {
    let g = &grant.grant.grant;
    if &g.request_digest != presented {
        return Err(Conflict::GrantDigestMismatch);
    }
    if grant.redeemed_at.is_some() {
        return Err(Conflict::GrantRedeemed);
    }
    if now < g.not_before || now >= g.expires_at {
        return Err(Conflict::GrantNotValidNow);
    }
    Ok(())
}

/// Whether an outcome may be reported for a request whose grant was redeemed at `redeemed_at`
/// (`None`: no grant; `Some(None)`: not redeemed), with an outcome `already_reported` or not.
pub fn check_outcome(
    redeemed_at: Option<Option<Timestamp>>,
    already_reported: bool,
) -> Result<(), Conflict> {
    match redeemed_at {
        Some(Some(_)) if !already_reported => Ok(()),
        _ => Err(Conflict::NoOutcomeExpected),
    }
}

/// Whether a request in `status` may be cancelled.
pub fn check_cancel(status: ActionStatus) -> Result<(), Conflict> {
    if status == ActionStatus::Pending {
        Ok(())
    } else {
        Err(Conflict::NotPending)
    }
}

/// Whether a request in `status`, expiring at `expires_at`, expires at `now`: only a pending
/// one, once its time ran out. Backends expire with an update conditioned on the same, so a
/// request decided or expired by another writer in the meantime expires at most once.
pub fn expires(status: ActionStatus, expires_at: Timestamp, now: Timestamp) -> bool {
    status == ActionStatus::Pending && expires_at <= now
}

/// A request's next timed step once `taken` were taken, with when it falls due, if it has
/// one left.
pub fn next_step(action: &Action, taken: u32) -> Option<(Timestamp, countersign_core::TimedStep)> {
    action
        .policy
        .outcome
        .timed_steps(action.created_at, action.expires_at)
        .get(taken as usize)
        .copied()
}

/// What a review is checked against, read in the transaction that records it.
#[derive(Clone, Copy, Debug)]
pub struct ReviewState {
    /// Reviews the request needs (`None`: not break-glass).
    pub quorum: Option<u32>,
    /// Reviews it has.
    pub reviews: u32,
    /// This reviewer reviewed it already.
    pub already_reviewed: bool,
    /// The review's nonce was seen before.
    pub nonce_seen: bool,
    /// The signing key is an enrolled, unrevoked key of the reviewer.
    pub key_active: bool,
}

/// Whether a review may be recorded, in the order decisions are refused; on success, whether
/// it completes the reviews.
pub fn review(state: &ReviewState) -> Result<bool, Conflict> {
    let Some(quorum) = state.quorum else {
        return Err(Conflict::ReviewNotExpected);
    };
    if state.reviews >= quorum {
        return Err(Conflict::ReviewNotExpected);
    }
    if !state.key_active {
        return Err(Conflict::KeyRevoked);
    }
    if state.already_reviewed {
        return Err(Conflict::AlreadyDecided);
    }
    if state.nonce_seen {
        return Err(Conflict::NonceReused);
    }
    Ok(state.reviews + 1 >= quorum)
}

/// The reviews a request needs, if it is break-glass.
pub fn review_quorum(action: &Action) -> Option<u32> {
    match &action.policy.outcome {
        countersign_core::PolicyOutcome::BreakGlass { review_quorum, .. } => Some(*review_quorum),
        _ => None,
    }
}

/// A one-time enrolment code as stored.
#[derive(Clone, Debug)]
pub struct StoredCode {
    /// The approver it was issued for.
    pub approver_id: String,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// It enrolled a key already.
    pub used: bool,
}

/// Whether a key of `approver_id` may be enrolled now with `code` (`None`: no such code): the
/// code must be unused, unexpired and issued for that approver, and the key new.
pub fn check_enrolment(
    code: Option<&StoredCode>,
    approver_id: &str,
    key_exists: bool,
    now: Timestamp,
) -> Result<(), Conflict> {
    match code {
        Some(c) if !c.used && c.expires_at > now && c.approver_id == approver_id => {}
        _ => return Err(Conflict::EnrolmentCodeInvalid),
    }
    if key_exists {
        return Err(Conflict::KeyExists);
    }
    Ok(())
}

/// Whether a challenge valid until `expires_at` may open a session now: once, before it expires.
pub fn check_challenge(
    expires_at: Timestamp,
    used_before: bool,
    now: Timestamp,
) -> Result<(), Conflict> {
    if expires_at <= now || used_before {
        Err(Conflict::ChallengeInvalid)
    } else {
        Ok(())
    }
}

/// Whether a directory write expecting `expected` may replace what is stored (`stored` is its
/// version, if there is a record).
pub fn check_version(stored: Option<u64>, expected: crate::Expected) -> StoreResult<()> {
    use crate::Expected;
    match (stored, expected) {
        (Some(_), Expected::New) => Err(StoreError::Conflict(Conflict::Exists)),
        (None, Expected::Version(_) | Expected::Any) => {
            Err(StoreError::NotFound("directory record"))
        }
        (Some(v), Expected::Version(want)) if v != want => {
            Err(StoreError::Conflict(Conflict::Stale))
        }
        _ => Ok(()),
    }
}

/// The groups a directory user has: the Countersign groups their directory groups map to,
/// each once and in order; none while they are inactive.
pub fn directory_groups(active: bool, mapped: impl IntoIterator<Item = String>) -> Vec<String> {
    if !active {
        return Vec::new();
    }
    let set: std::collections::BTreeSet<String> = mapped.into_iter().collect();
    set.into_iter().collect()
}

/// After deprovisioning revoked what it read, no key of the person may remain active: one
/// enrolled in between means the write was planned on stale state.
pub fn check_deprovisioned(active_keys_left: usize) -> StoreResult<()> {
    if active_keys_left > 0 {
        return Err(StoreError::Conflict(Conflict::Stale));
    }
    Ok(())
}

/// A person the directory deactivated cannot enrol a key (whatever the way).
pub fn check_may_enrol(directory_active: Option<bool>) -> Result<(), Conflict> {
    if directory_active == Some(false) {
        return Err(Conflict::Deprovisioned);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).expect("in range")
    }

    fn state() -> DecisionState {
        DecisionState {
            status: ActionStatus::Pending,
            expires_at: at(2_000),
            already_decided: false,
            nonce_seen: false,
            key_active: true,
            prior_approvals: 0,
        }
    }

    const NOW_MS: i64 = 1_000;

    #[test]
    fn a_revoked_key_loses_to_every_other_refusal() {
        let s = DecisionState {
            key_active: false,
            status: ActionStatus::Approved,
            already_decided: true,
            ..state()
        };
        assert_eq!(
            decide(&s, Verdict::Approve, 1, at(NOW_MS)),
            Err(Conflict::KeyRevoked)
        );
    }

    #[test]
    fn decisions_are_refused_in_the_order_of_their_rules() {
        let cases = [
            (
                DecisionState {
                    status: ActionStatus::Denied,
                    ..state()
                },
                Conflict::NotPending,
            ),
            (
                DecisionState {
                    expires_at: at(NOW_MS),
                    ..state()
                },
                Conflict::Expired,
            ),
            (
                DecisionState {
                    already_decided: true,
                    ..state()
                },
                Conflict::AlreadyDecided,
            ),
            (
                DecisionState {
                    nonce_seen: true,
                    ..state()
                },
                Conflict::NonceReused,
            ),
        ];
        for (s, want) in cases {
            assert_eq!(decide(&s, Verdict::Deny, 1, at(NOW_MS)), Err(want), "{s:?}");
        }
    }

    #[test]
    fn approvals_count_until_quorum() {
        assert_eq!(
            decide(&state(), Verdict::Approve, 2, at(NOW_MS)),
            Ok(DecisionStep::Count { approvals: 1 })
        );
        let one_in = DecisionState {
            prior_approvals: 1,
            ..state()
        };
        assert_eq!(
            decide(&one_in, Verdict::Approve, 2, at(NOW_MS)),
            Ok(DecisionStep::Approve)
        );
        assert_eq!(
            decide(&one_in, Verdict::Deny, 2, at(NOW_MS)),
            Ok(DecisionStep::Deny)
        );
    }

    #[test]
    fn an_outcome_is_expected_once_after_redemption() {
        assert_eq!(check_outcome(Some(Some(at(NOW_MS))), false), Ok(()));
        for (redeemed, reported) in [
            (None, false),
            (Some(None), false),
            (Some(Some(at(NOW_MS))), true),
        ] {
            assert_eq!(
                check_outcome(redeemed, reported),
                Err(Conflict::NoOutcomeExpected)
            );
        }
    }

    #[test]
    fn only_pending_requests_cancel_or_expire() {
        assert_eq!(check_cancel(ActionStatus::Pending), Ok(()));
        assert_eq!(
            check_cancel(ActionStatus::Approved),
            Err(Conflict::NotPending)
        );
        let now = at(1_000);
        assert!(expires(ActionStatus::Pending, now, now));
        assert!(!expires(ActionStatus::Pending, at(1_001), now));
        assert!(!expires(ActionStatus::Approved, now, now));
    }

    #[test]
    fn an_enrolment_code_enrols_one_new_key_of_its_approver_before_it_expires() {
        let code = StoredCode {
            approver_id: "bob".into(),
            expires_at: at(2_000),
            used: false,
        };
        let now = at(NOW_MS);
        assert_eq!(check_enrolment(Some(&code), "bob", false, now), Ok(()));
        assert_eq!(
            check_enrolment(Some(&code), "bob", true, now),
            Err(Conflict::KeyExists)
        );
        let refused = [
            (None, "bob", now),
            (Some(&code), "alice", now),
            (Some(&code), "bob", at(2_000)),
        ];
        for (c, who, when) in refused {
            assert_eq!(
                check_enrolment(c, who, false, when),
                Err(Conflict::EnrolmentCodeInvalid)
            );
        }
        let used = StoredCode { used: true, ..code };
        assert_eq!(
            check_enrolment(Some(&used), "bob", false, now),
            Err(Conflict::EnrolmentCodeInvalid)
        );
    }

    #[test]
    fn a_challenge_opens_one_session_before_it_expires() {
        let now = at(NOW_MS);
        assert_eq!(check_challenge(at(2_000), false, now), Ok(()));
        assert_eq!(
            check_challenge(at(2_000), true, now),
            Err(Conflict::ChallengeInvalid)
        );
        assert_eq!(
            check_challenge(now, false, now),
            Err(Conflict::ChallengeInvalid)
        );
    }

    #[test]
    fn a_stored_request_that_no_longer_hashes_to_its_digest_is_corrupt() {
        let action = Action {
            id: uuid::Uuid::from_u128(7),
            requester: "agent:ci".into(),
            request: serde_json::from_value(serde_json::json!({
                "type": "svc.deploy", "resource": "svc/api", "environment": "prod",
                "justification": "release"
            }))
            .expect("request"),
            created_at: at(0),
            expires_at: at(600_000),
            policy: countersign_core::PolicyEvaluation {
                outcome: countersign_core::PolicyOutcome::Deny {},
                reason: "r".into(),
                policy_hash: countersign_core::policy::policy_hash(b"p"),
                risk: None,
            },
        };
        let text = canonical_text(&action).expect("canonical");
        let digest = action.digest().expect("digest");
        let id = action.id.to_string();
        assert!(stored_action(&id, &text, &digest).is_ok());
        let altered = text.replace("svc/api", "svc/db");
        assert!(matches!(
            stored_action(&id, &altered, &digest),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            stored_action(&uuid::Uuid::from_u128(8).to_string(), &text, &digest),
            Err(StoreError::Corrupt(_))
        ));
    }
}
