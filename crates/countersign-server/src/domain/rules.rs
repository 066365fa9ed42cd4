//! The approval rules the service checks before a decision is recorded. Each failure has its
//! own code, so clients and tests can tell exactly which rule refused.

use countersign_core::{PolicyOutcome, SignedDecision, Timestamp, Verdict};
use countersign_store::{Approver, ApproverKey, RequestRecord};

use super::{DomainError, DomainResult};

/// Whether `approver` belongs to one of `groups` (compared as identities), or `groups` is
/// empty (anyone may).
pub fn in_any_group(approver: &Approver, groups: &[String]) -> bool {
    groups.is_empty()
        || groups.iter().any(|g| {
            approver
                .groups
                .iter()
                .any(|mine| countersign_core::identifier::same(mine, g))
        })
}

/// May `approver` decide `record` at all (before looking at any decision)?
pub fn eligible(approver: &Approver, record: &RequestRecord) -> DomainResult<()> {
    if record.action.is_requester(&approver.id) {
        return Err(DomainError::refused(
            "self_approval",
            "the requester, or the person it acts for, cannot decide its own request",
        ));
    }
    let outcome = &record.action.policy.outcome;
    if !matches!(outcome, PolicyOutcome::RequireApproval { .. }) {
        return Err(DomainError::refused(
            "not_pending",
            "this request needs no approval",
        ));
    }
    // Its groups, and those its escalation steps taken so far added (only ever more).
    let groups = outcome.eligible_groups(
        record.action.created_at,
        record.action.expires_at,
        record.steps_taken,
    );
    if !in_any_group(approver, &groups) {
        return Err(DomainError::refused(
            "not_eligible",
            format!(
                "only members of {} may decide this request",
                groups.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The key that signed something for `signer`: enrolled, unrevoked, and theirs.
fn signing_key<'k>(key: Option<&'k ApproverKey>, signer: &str) -> DomainResult<&'k ApproverKey> {
    let key =
        key.ok_or_else(|| DomainError::refused("unknown_key", "the signing key is not enrolled"))?;
    if key.revoked_at.is_some() {
        return Err(DomainError::refused(
            "key_revoked",
            "the signing key has been revoked",
        ));
    }
    if key.approver_id != signer {
        return Err(DomainError::refused(
            "key_not_approvers",
            "the signing key belongs to someone else",
        ));
    }
    Ok(key)
}

/// A signed `what` (decision, review) whose signature checked as `verified`, made for
/// `digest`: refused unless the signature holds and the digest is the stored request's.
fn signed_as_shown(
    what: &str,
    verified: Result<(), countersign_core::decision::DecisionSignatureError>,
    digest: &countersign_core::Digest,
    record: &RequestRecord,
) -> DomainResult<()> {
    verified.map_err(|e| {
        DomainError::refused("bad_signature", format!("{what} signature rejected: {e}"))
    })?;
    if *digest != record.digest {
        return Err(DomainError::refused(
            "digest_mismatch",
            format!("the {what} is for a different version of this request than the one stored"),
        ));
    }
    Ok(())
}

/// Every check on a signed decision that does not need the store's transaction; on success,
/// the key that signed it.
pub fn check_decision<'k>(
    signed: &SignedDecision,
    record: &RequestRecord,
    key: Option<&'k ApproverKey>,
    approver: Option<&Approver>,
    now: Timestamp,
    max_skew_ms: i64,
) -> DomainResult<&'k ApproverKey> {
    let d = &signed.decision;
    d.validate()?;
    if d.request_id != record.action.id {
        return Err(DomainError::invalid(
            "request_mismatch",
            "decision is for another request",
        ));
    }
    let key = signing_key(key, &d.approver_id)?;
    signed_as_shown(
        "decision",
        signed.verify(&key.public_key),
        &d.request_digest,
        record,
    )?;
    let approver =
        approver.ok_or_else(|| DomainError::refused("unknown_approver", "no such approver"))?;
    eligible(approver, record)?;
    let hardware_required = matches!(
        record.action.policy.outcome,
        PolicyOutcome::RequireApproval {
            require_hardware_key: true,
            ..
        }
    );
    if hardware_required && !key.kind.is_hardware() {
        return Err(DomainError::refused(
            "hardware_key_required",
            "policy requires a hardware-backed key for this request",
        ));
    }
    let attestation_required = matches!(
        record.action.policy.outcome,
        PolicyOutcome::RequireApproval {
            require_attested_key: true,
            ..
        }
    );
    if attestation_required && key.attested_by.is_none() {
        return Err(DomainError::refused(
            "attested_key_required",
            "policy requires a key whose device a trusted manufacturer vouched for at enrolment (a TPM with a certified endorsement key, a token's PIV attestation); this key's hardware is only claimed",
        ));
    }
    let idp_required = matches!(
        record.action.policy.outcome,
        PolicyOutcome::RequireApproval {
            require_idp_enrolment: true,
            ..
        }
    );
    if idp_required && key.enrolled_via.is_none() {
        return Err(DomainError::refused(
            "idp_enrolment_required",
            "policy requires a key enrolled through the organisation's OpenID Provider for this request",
        ));
    }
    if let PolicyOutcome::RequireApproval {
        max_sign_in_age_seconds: Some(max_age),
        ..
    } = record.action.policy.outcome
    {
        let recent = key
            .signed_in_at
            .is_some_and(|at| now.millis_since(at) <= i64::from(max_age) * 1000);
        if !recent {
            return Err(DomainError::refused(
                "sign_in_too_old",
                format!(
                    "policy requires a sign-in at the organisation's OpenID Provider within the last {} minutes behind this key: sign in again (the console's Sign in, or `countersign keys sign-in`)",
                    max_age.div_ceil(60)
                ),
            ));
        }
    }
    // An approval needs the code the requester was shown; a denial never does (refusing must
    // stay possible without confirming anything).
    if d.verdict == Verdict::Approve && record.action.policy.outcome.needs_verification_code() {
        match d.verification_code.as_deref() {
            None => {
                return Err(DomainError::refused(
                    "verification_code_required",
                    "policy requires picking the requester's verification code to approve",
                ));
            }
            Some(picked) if !countersign_core::verification::matches(&record.digest, picked) => {
                return Err(DomainError::refused(
                    "verification_code_wrong",
                    "the verification code picked is not the requester's; confirm with them",
                ));
            }
            Some(_) => {}
        }
    }
    let skew = d.decided_at.millis_since(now).abs();
    if skew > max_skew_ms {
        return Err(DomainError::refused(
            "clock_skew",
            format!(
                "decided_at is {skew} ms from the service's clock (at most {max_skew_ms} allowed)"
            ),
        ));
    }
    Ok(key)
}

/// Every check on a signed review of a break-glass request that needs no transaction; on
/// success, the key that signed it. The store checks the rest with the write (not reviewed
/// yet by this reviewer, fresh nonce, key still active, reviews not complete).
pub fn check_review<'k>(
    signed: &countersign_core::SignedReview,
    record: &RequestRecord,
    key: Option<&'k ApproverKey>,
    reviewer: Option<&Approver>,
    now: Timestamp,
    max_skew_ms: i64,
) -> DomainResult<&'k ApproverKey> {
    let r = &signed.review;
    r.validate()?;
    if r.request_id != record.action.id {
        return Err(DomainError::invalid(
            "request_mismatch",
            "review is for another request",
        ));
    }
    let PolicyOutcome::BreakGlass { review_groups, .. } = &record.action.policy.outcome else {
        return Err(DomainError::refused(
            "review_not_expected",
            "only break-glass requests are reviewed",
        ));
    };
    let key = signing_key(key, &r.reviewer_id)?;
    signed_as_shown(
        "review",
        signed.verify(&key.public_key),
        &r.request_digest,
        record,
    )?;
    let reviewer =
        reviewer.ok_or_else(|| DomainError::refused("unknown_approver", "no such approver"))?;
    if record.action.is_requester(&reviewer.id) {
        return Err(DomainError::refused(
            "self_review",
            "the requester, or the person it acts for, cannot review its own break-glass use",
        ));
    }
    if !in_any_group(reviewer, review_groups) {
        return Err(DomainError::refused(
            "not_eligible",
            format!(
                "only members of {} may review this request",
                review_groups.join(", ")
            ),
        ));
    }
    let skew = r.reviewed_at.millis_since(now).abs();
    if skew > max_skew_ms {
        return Err(DomainError::refused(
            "clock_skew",
            format!(
                "reviewed_at is {skew} ms from the service's clock (at most {max_skew_ms} allowed)"
            ),
        ));
    }
    Ok(key)
}
