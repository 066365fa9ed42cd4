//! The notice: what a channel is told about a request, built once from an audit event and the
//! request it concerns, then written out as each channel's payload. It carries what the
//! console's notification carries (who asks for what, where, risk, time left) and a link that
//! opens the request in the console; never the diff or parameters unless a channel asks.

use countersign_core::{AuditEvent, Digest, EventKind, PolicyOutcome, Risk, Timestamp};
use countersign_store::RequestRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::ChannelConfig;

/// What happened to the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NoticeKind {
    /// It waits for approvers.
    #[serde(rename = "request.waiting")]
    Waiting,
    /// Quorum was reached, or policy allowed it.
    #[serde(rename = "request.approved")]
    Approved,
    /// An approver or the policy denied it.
    #[serde(rename = "request.denied")]
    Denied,
    /// Nobody decided in time.
    #[serde(rename = "request.expired")]
    Expired,
    /// It was withdrawn.
    #[serde(rename = "request.cancelled")]
    Cancelled,
    /// Still without quorum, it reached an escalation step.
    #[serde(rename = "request.escalated")]
    Escalated,
    /// Still pending, it reached a reminder point before expiry.
    #[serde(rename = "request.reminder")]
    Reminder,
    /// Granted without quorum on the break-glass path: reviewers must review it.
    #[serde(rename = "request.break_glass")]
    BreakGlass,
    /// A break-glass request's reviews are complete.
    #[serde(rename = "request.reviewed")]
    Reviewed,
}

impl NoticeKind {
    /// Every kind, in the order a request lives them.
    pub const ALL: [NoticeKind; 9] = [
        Self::Waiting,
        Self::BreakGlass,
        Self::Reviewed,
        Self::Escalated,
        Self::Reminder,
        Self::Approved,
        Self::Denied,
        Self::Expired,
        Self::Cancelled,
    ];

    /// The name in payloads and configuration (`request.waiting`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Waiting => "request.waiting",
            Self::Approved => "request.approved",
            Self::Denied => "request.denied",
            Self::Expired => "request.expired",
            Self::Cancelled => "request.cancelled",
            Self::Escalated => "request.escalated",
            Self::Reminder => "request.reminder",
            Self::BreakGlass => "request.break_glass",
            Self::Reviewed => "request.reviewed",
        }
    }

    /// A few words for people ("waits for approval").
    pub fn headline(self) -> &'static str {
        match self {
            Self::Waiting => "waits for approval",
            Self::Approved => "was approved",
            Self::Denied => "was denied",
            Self::Expired => "expired undecided",
            Self::Cancelled => "was withdrawn",
            Self::Escalated => "is escalated: still waiting for approval",
            Self::Reminder => "still waits for approval",
            Self::BreakGlass => "was granted by BREAK-GLASS, without approval: review it",
            Self::Reviewed => "break-glass use was reviewed",
        }
    }
}

/// The notice itself: the `data` of a webhook, the facts of a chat message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: NoticeKind,
    /// The request.
    pub request_id: Uuid,
    /// The request's digest, as approvers sign it.
    pub digest: Digest,
    /// The audit event this notice reports (its sequence number in the log).
    pub event_seq: u64,
    /// When that event was recorded.
    pub occurred_at: Timestamp,
    /// The dotted action type.
    pub action_type: String,
    /// What it touches.
    pub resource: String,
    /// Where.
    pub environment: String,
    /// The agent that asks.
    pub requester: String,
    /// The person it acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// Whom this notice is for, on a channel addressed to people (`recipient`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The agent's reason, shortened.
    pub justification: String,
    /// Granted without quorum on the break-glass path (reviews then follow: `quorum` and
    /// `groups` are the reviews needed and who may give them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
    /// The policy's risk, when it judged one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// Approvals needed, and from whom (empty: any approver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// Groups whose members may decide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// When it expires if undecided.
    pub expires_at: Timestamp,
    /// Why it was approved, denied or withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Opens the request in the approver console (`countersign://request/<id>`).
    pub link: String,
    /// The same through the service, for chat clients that open only web links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_url: Option<String>,
    /// The action's parameters, when the channel includes them (sensitive ones redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// The diff, when the channel includes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<Value>,
}

/// Longest justification a notice repeats.
const MAX_JUSTIFICATION_CHARS: usize = 280;

/// The console's link to a request.
pub fn deep_link(request_id: Uuid) -> String {
    format!("countersign://request/{request_id}")
}

/// The kind of notice an event is, and the request it concerns, if it is one.
pub fn notice_kind(event: &EventKind) -> Option<(NoticeKind, Uuid, Option<&str>)> {
    match event {
        EventKind::RequestCreated { action, .. } => match action.policy.outcome {
            PolicyOutcome::RequireApproval { .. } => Some((NoticeKind::Waiting, action.id, None)),
            PolicyOutcome::BreakGlass { .. } => Some((NoticeKind::BreakGlass, action.id, None)),
            // Allowed or denied by policy alone: its Approved or Denied event follows.
            _ => None,
        },
        EventKind::Approved { action_id, reason } => {
            Some((NoticeKind::Approved, *action_id, Some(reason)))
        }
        EventKind::Denied { action_id, reason } => {
            Some((NoticeKind::Denied, *action_id, Some(reason)))
        }
        EventKind::Expired { action_id } => Some((NoticeKind::Expired, *action_id, None)),
        EventKind::Cancelled { action_id, reason } => {
            Some((NoticeKind::Cancelled, *action_id, Some(reason)))
        }
        EventKind::Escalated { action_id, .. } => Some((NoticeKind::Escalated, *action_id, None)),
        EventKind::Reminded { action_id, .. } => Some((NoticeKind::Reminder, *action_id, None)),
        EventKind::ReviewCompleted { action_id, .. } => {
            Some((NoticeKind::Reviewed, *action_id, None))
        }
        _ => None,
    }
}

/// Parameter names whose values a notice never repeats, even when parameters are included:
/// any name containing one of these (case-insensitive).
const SENSITIVE_NAMES: [&str; 8] = [
    "password",
    "secret",
    "token",
    "credential",
    "private",
    "key",
    "auth",
    "cookie",
];

/// `value` with the value of every sensitive name replaced, at any depth.
fn redact(value: &Value, channel: &ChannelConfig) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, value)| {
                    let lower = name.to_lowercase();
                    let hidden = SENSITIVE_NAMES.iter().any(|s| lower.contains(s))
                        || channel
                            .sensitive_parameters
                            .iter()
                            .any(|s| s.to_lowercase() == lower);
                    let value = if hidden {
                        Value::String("[redacted]".into())
                    } else {
                        redact(value, channel)
                    };
                    (name.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, channel)).collect()),
        other => other.clone(),
    }
}

/// Builds the notice of `kind` for `event` about `action`, as `channel` wants it.
pub fn build(
    kind: NoticeKind,
    event: &AuditEvent,
    record: &RequestRecord,
    reason: Option<&str>,
    channel: &ChannelConfig,
    public_url: Option<&str>,
) -> Notice {
    let action = &record.action;
    let digest = record.digest;
    let request = &action.request;
    let outcome = &action.policy.outcome;
    let (quorum, groups) = match outcome {
        PolicyOutcome::BreakGlass {
            review_quorum,
            review_groups,
        } => (Some(*review_quorum), review_groups.clone()),
        // Who may decide now: escalations taken so far included.
        _ => (
            outcome.quorum(),
            outcome.eligible_groups(action.created_at, action.expires_at, record.steps_taken),
        ),
    };
    let justification: String = request
        .justification
        .chars()
        .take(MAX_JUSTIFICATION_CHARS)
        .collect();
    let parameters = channel
        .include_parameters
        .then(|| redact(&Value::Object(request.parameters.0.clone()), channel));
    let diff = request
        .diff
        .as_ref()
        .filter(|_| channel.include_diff)
        .and_then(|d| serde_json::to_value(d).ok());
    Notice {
        kind,
        request_id: action.id,
        digest,
        event_seq: event.seq,
        occurred_at: event.recorded_at,
        action_type: request.action_type.to_string(),
        resource: request.resource.clone(),
        environment: request.environment.clone(),
        requester: action.requester.clone(),
        on_behalf_of: request.on_behalf_of.clone(),
        recipient: match channel.recipient {
            Some(super::Recipient::OnBehalfOf) => request.on_behalf_of.clone(),
            None => None,
        },
        justification,
        break_glass: matches!(outcome, PolicyOutcome::BreakGlass { .. }),
        risk: action.policy.risk.clone(),
        quorum,
        groups,
        expires_at: action.expires_at,
        reason: reason.map(str::to_owned),
        link: deep_link(action.id),
        open_url: public_url
            .map(|base| format!("{}/open/{}", base.trim_end_matches('/'), action.id)),
        parameters,
        diff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::ChannelKind;

    fn channel(include_parameters: bool) -> ChannelConfig {
        ChannelConfig {
            name: "c".into(),
            kind: ChannelKind::Slack,
            url: "https://x.example".into(),
            secret: None,
            events: Vec::new(),
            include_parameters,
            sensitive_parameters: vec!["Customer".into()],
            include_diff: false,
            requesters: Vec::new(),
            recipient: None,
        }
    }

    #[test]
    fn included_parameters_hide_sensitive_names_at_any_depth() {
        let value = serde_json::json!({
            "replicas": 3,
            "db": {"Password": "hunter2", "host": "db1"},
            "steps": [{"api_token": "t"}, {"name": "x"}],
            "customer": "ACME",
        });
        let shown = redact(&value, &channel(true));
        assert_eq!(
            shown,
            serde_json::json!({
                "replicas": 3,
                "db": {"Password": "[redacted]", "host": "db1"},
                "steps": [{"api_token": "[redacted]"}, {"name": "x"}],
                "customer": "[redacted]",
            })
        );
    }

    #[test]
    fn only_events_about_a_request_make_notices() {
        let id = Uuid::nil();
        assert_eq!(
            notice_kind(&EventKind::Expired { action_id: id }).map(|(k, i, _)| (k, i)),
            Some((NoticeKind::Expired, id))
        );
        assert!(
            notice_kind(&EventKind::Notified {
                action_id: id,
                sessions: 2
            })
            .is_none()
        );
    }
}
