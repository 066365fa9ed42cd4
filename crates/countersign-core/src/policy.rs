//! What the policy decided for a request.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::domain;

/// The policy's verdict on one request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyOutcome {
    /// Proceed without a human. (Empty braces, so that stray fields are rejected.)
    Allow {},
    /// Refused outright.
    Deny {},
    /// Wait for `quorum` distinct approvers from `groups`.
    RequireApproval {
        /// Distinct approvers needed.
        quorum: u32,
        /// Groups whose members may decide; empty means any approver.
        groups: Vec<String>,
        /// How long the request stays open, in seconds.
        ttl_seconds: u32,
        /// Refuse decisions signed by software keys.
        require_hardware_key: bool,
        /// Allow approving straight from the notification.
        quick_approve: bool,
        /// Approvers must pick the requester's verification code (see
        /// [`crate::verification`]) before approving.
        #[serde(default, skip_serializing_if = "is_false")]
        verification_code: bool,
        /// Refuse decisions signed by keys not enrolled through the organisation's OpenID
        /// Provider (an administrator's code does not do).
        #[serde(default, skip_serializing_if = "is_false")]
        require_idp_enrolment: bool,
        /// Refuse decisions signed by keys no sign-in at the organisation's OpenID Provider
        /// vouched for in this many seconds (at enrolment, or again since).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_sign_in_age_seconds: Option<u32>,
        /// Refuse decisions signed by keys whose device no trusted manufacturer's root vouched
        /// for at enrolment (a TPM's endorsement key certificate, a token's PIV attestation).
        #[serde(default, skip_serializing_if = "is_false")]
        require_attested_key: bool,
        /// Steps taken while the request still lacks quorum, in time order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        escalation: Vec<EscalationStep>,
        /// Reminders to those who may decide, in seconds before expiry.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remind_before_seconds: Vec<u32>,
    },
    /// An emergency the policy lets through without quorum, for a request that asked for
    /// break-glass: granted at once, marked everywhere, and open until `review_quorum`
    /// distinct reviewers from `review_groups` (any approver when empty) sign a review.
    BreakGlass {
        /// Distinct reviewers needed.
        review_quorum: u32,
        /// Groups whose members may review.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        review_groups: Vec<String>,
    },
}

/// What happens when a request still lacks quorum some time after it was made: more groups
/// may decide, and/or notice channels are told.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    /// Seconds after the request was made.
    pub after_seconds: u32,
    /// Groups whose members may decide from then on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_groups: Vec<String>,
    /// Notice channels told (their configured names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

/// One of a request's timed steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimedStep {
    /// The escalation step at this index.
    Escalate(usize),
    /// A reminder this many seconds before expiry.
    Remind(u32),
}

impl PolicyOutcome {
    /// The timed steps of a request made at `created_at` that expires at `expires_at`, in the
    /// order they fall due (escalations first at equal times), each with its time; steps that
    /// would fall at or after expiry are left out. The store takes them in this order, one
    /// after another, so "`n` steps taken" says which.
    pub fn timed_steps(
        &self,
        created_at: crate::Timestamp,
        expires_at: crate::Timestamp,
    ) -> Vec<(crate::Timestamp, TimedStep)> {
        let PolicyOutcome::RequireApproval {
            escalation,
            remind_before_seconds,
            ..
        } = self
        else {
            return Vec::new();
        };
        let mut steps: Vec<_> = escalation
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    created_at.add_seconds(i64::from(s.after_seconds)),
                    TimedStep::Escalate(i),
                )
            })
            .chain(remind_before_seconds.iter().map(|before| {
                (
                    expires_at.add_seconds(-i64::from(*before)),
                    TimedStep::Remind(*before),
                )
            }))
            .filter(|(at, _)| *at < expires_at && *at > created_at)
            .collect();
        steps.sort_by_key(|(at, step)| (*at, matches!(step, TimedStep::Remind(_))));
        steps
    }

    /// The groups whose members may decide once the first `steps_taken` timed steps were
    /// taken: the outcome's groups and those its escalations taken so far added. Empty means
    /// any approver.
    pub fn eligible_groups(
        &self,
        created_at: crate::Timestamp,
        expires_at: crate::Timestamp,
        steps_taken: u32,
    ) -> Vec<String> {
        let PolicyOutcome::RequireApproval {
            groups, escalation, ..
        } = self
        else {
            return Vec::new();
        };
        let mut all = groups.clone();
        if all.is_empty() {
            return all;
        }
        for (_, step) in self
            .timed_steps(created_at, expires_at)
            .into_iter()
            .take(steps_taken as usize)
        {
            if let TimedStep::Escalate(i) = step
                && let Some(s) = escalation.get(i)
            {
                for g in &s.add_groups {
                    if !all.iter().any(|a| crate::identifier::same(a, g)) {
                        all.push(g.clone());
                    }
                }
            }
        }
        all
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl PolicyOutcome {
    /// Whether approvers must pick the requester's verification code.
    pub fn needs_verification_code(&self) -> bool {
        matches!(
            self,
            PolicyOutcome::RequireApproval {
                verification_code: true,
                ..
            }
        )
    }

    /// The quorum, or `None` when no approval is needed.
    pub fn quorum(&self) -> Option<u32> {
        match self {
            PolicyOutcome::RequireApproval { quorum, .. } => Some(*quorum),
            PolicyOutcome::Allow {} | PolicyOutcome::Deny {} | PolicyOutcome::BreakGlass { .. } => {
                None
            }
        }
    }
}

/// How much could go wrong, as the policy judged it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    /// Routine.
    Low,
    /// Worth a careful read (production).
    Medium,
    /// Could do real harm: personal data, many rows, permissions in production.
    High,
    /// Opens the system to everyone or grants everything.
    Critical,
}

impl RiskLevel {
    /// The word shown to people.
    pub fn label(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }
}

/// The policy's risk judgement of one request, from its facts (the diff, the parameters, the
/// environment), with the facts that made it: shown to approvers as words.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    /// How much could go wrong.
    pub level: RiskLevel,
    /// Why, one fact each ("opens 0.0.0.0/0 to the internet").
    pub reasons: Vec<String>,
}

/// A policy evaluation as recorded with the request and shown to approvers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEvaluation {
    /// The outcome and its parameters.
    pub outcome: PolicyOutcome,
    /// Why, in words a person understands.
    pub reason: String,
    /// Hash of the policy source that decided (see [`policy_hash`]).
    pub policy_hash: Digest,
    /// The policy's risk judgement, when the policy makes one (its `risk` rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
}

/// SHA-256 over `countersign/policy/v1\n || source`: identifies the exact policy text.
pub fn policy_hash(source: &[u8]) -> Digest {
    Digest::of_prefixed(domain::POLICY, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_round_trips() {
        let eval = PolicyEvaluation {
            outcome: PolicyOutcome::RequireApproval {
                quorum: 2,
                groups: vec!["security".into()],
                ttl_seconds: 900,
                require_hardware_key: true,
                quick_approve: false,
                verification_code: false,
                require_idp_enrolment: false,
                max_sign_in_age_seconds: None,
                require_attested_key: false,
                escalation: Vec::new(),
                remind_before_seconds: Vec::new(),
            },
            reason: "prod export of pii".into(),
            policy_hash: policy_hash(b"package countersign"),
            risk: None,
        };
        let json = serde_json::to_value(&eval).expect("serializes");
        assert_eq!(json["outcome"]["kind"], "require_approval");
        assert_eq!(json["outcome"]["quorum"], 2);
        let back: PolicyEvaluation = serde_json::from_value(json).expect("parses");
        assert_eq!(back, eval);
    }

    #[test]
    fn unknown_field_in_outcome_is_rejected() {
        let json = serde_json::json!({"kind": "allow", "quorum": 0});
        assert!(serde_json::from_value::<PolicyOutcome>(json).is_err());
    }

    #[test]
    fn unknown_outcome_is_rejected() {
        let json = serde_json::json!({"outcome": {"kind": "maybe"}, "reason": "", "policy_hash": "00".repeat(32)});
        assert!(serde_json::from_value::<PolicyEvaluation>(json).is_err());
    }
}
