//! Action requests: what an agent asks to do, and the record the service builds around it.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::canonical::{CanonicalError, StrictObject, to_canonical_vec};
use crate::digest::Digest;
use crate::domain;
use crate::identifier;
use crate::policy::PolicyEvaluation;
use crate::timestamp::Timestamp;
use crate::validate::{self, ValidationError};

/// Largest diff (all its text together) a request may carry, in bytes.
pub const MAX_DIFF_BYTES: usize = 8 * 1024 * 1024;
/// Most tags on one request.
pub const MAX_TAGS: usize = 32;
/// Largest `parameters` object, as JSON.
pub const MAX_PARAMETERS_BYTES: usize = 256 * 1024;
/// Largest `context` object, as JSON.
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;
/// Longest `resource`.
pub const MAX_RESOURCE_BYTES: usize = 1024;
/// Longest `justification`.
pub const MAX_JUSTIFICATION_BYTES: usize = 4096;

/// A dotted action type such as `db.export` or `iam.role.update`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ActionType(String);

impl ActionType {
    /// Validates `value`: two or more dot-separated segments of `[a-z0-9_-]`.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        let segments: Vec<&str> = value.split('.').collect();
        let ok = value.len() <= 128
            && segments.len() >= 2
            && segments
                .iter()
                .all(|s| validate::identifier("type", s, 64, "_-").is_ok());
        if ok {
            Ok(Self(value))
        } else {
            Err(ValidationError::new(
                "type",
                "must be dotted lowercase segments such as `db.export` (a-z, 0-9, `_`, `-`)",
            ))
        }
    }

    /// The type as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ActionType {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ActionType> for String {
    fn from(value: ActionType) -> Self {
        value.0
    }
}

impl fmt::Display for ActionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A data-classification or routing tag such as `pii` or `credentials`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    /// Validates `value`: 1..=64 characters of `[a-z0-9_:-]`.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        validate::identifier("tags", &value, 64, "_:-")?;
        Ok(Self(value))
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Tag {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Tag> for String {
    fn from(value: Tag) -> Self {
        value.0
    }
}

/// The change an action would make, as the console renders it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Diff {
    /// A unified diff (`diff -u` / `git diff` output).
    Unified {
        /// The diff text.
        text: String,
        /// Syntax hint for highlighting: `json`, `yaml`, `sql`, `hcl`, ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
    /// Whole before and after texts; the console computes the diff.
    BeforeAfter {
        /// The current text.
        before: String,
        /// The text after the action.
        after: String,
        /// Syntax hint for highlighting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
}

impl Diff {
    /// The texts the diff carries, with the field each is in.
    fn texts(&self) -> Vec<(&'static str, &str)> {
        match self {
            Diff::Unified { text, .. } => vec![("diff.text", text)],
            Diff::BeforeAfter { before, after, .. } => {
                vec![("diff.before", before), ("diff.after", after)]
            }
        }
    }

    /// Bytes of all the diff's text together.
    pub fn byte_len(&self) -> usize {
        match self {
            Diff::Unified { text, .. } => text.len(),
            Diff::BeforeAfter { before, after, .. } => before.len() + after.len(),
        }
    }

    fn language(&self) -> Option<&str> {
        match self {
            Diff::Unified { language, .. } | Diff::BeforeAfter { language, .. } => {
                language.as_deref()
            }
        }
    }
}

/// What an agent submits: one specific action, with everything an approver needs to judge it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Dotted action type.
    #[serde(rename = "type")]
    pub action_type: ActionType,
    /// What the action touches, e.g. `postgres://prod-eu/customers`.
    pub resource: String,
    /// Where, e.g. `prod`, `staging`.
    pub environment: String,
    /// The action's parameters, free-form.
    #[serde(default)]
    pub parameters: StrictObject,
    /// Why the agent wants to do it.
    pub justification: String,
    /// Extra context for the approver (ticket, pipeline run, ...), free-form.
    #[serde(default)]
    pub context: StrictObject,
    /// The change, when there is one to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<Diff>,
    /// Classification tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The human the agent acts for, who may then not approve it either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// An emergency: asks the policy for break-glass (granted at once without quorum where
    /// the policy allows it, loudly, and reviewed afterwards).
    #[serde(default, skip_serializing_if = "is_false")]
    pub break_glass: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ActionRequest {
    /// Checks the rules serde cannot express; the error names the field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate::text("resource", &self.resource, MAX_RESOURCE_BYTES, false)?;
        validate::identifier("environment", &self.environment, 64, "_-")?;
        validate::text(
            "justification",
            &self.justification,
            MAX_JUSTIFICATION_BYTES,
            true,
        )?;
        if let Some(who) = &self.on_behalf_of {
            identifier::check("on_behalf_of", who)?;
        }
        validate::free_form("parameters", &self.parameters.0, MAX_PARAMETERS_BYTES)?;
        validate::free_form("context", &self.context.0, MAX_CONTEXT_BYTES)?;
        if self.tags.len() > MAX_TAGS {
            return Err(ValidationError::new(
                "tags",
                format!("{} tags, at most {MAX_TAGS} allowed", self.tags.len()),
            ));
        }
        for (i, tag) in self.tags.iter().enumerate() {
            if self.tags[..i].contains(tag) {
                return Err(ValidationError::new(
                    format!("tags[{i}]"),
                    format!("duplicate tag {:?}", tag.as_str()),
                ));
            }
        }
        if let Some(diff) = &self.diff {
            if diff.byte_len() > MAX_DIFF_BYTES {
                return Err(ValidationError::new(
                    "diff",
                    format!(
                        "is {} bytes, at most {MAX_DIFF_BYTES} allowed",
                        diff.byte_len()
                    ),
                ));
            }
            for (field, text) in diff.texts() {
                validate::data_text(field, text)?;
            }
            if let Some(language) = diff.language() {
                validate::identifier("diff.language", language, 32, "_+-")?;
            }
        }
        Ok(())
    }
}

/// Where a request stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Waiting for approvers.
    Pending,
    /// Approved by quorum or allowed by policy: a grant exists.
    Approved,
    /// Denied by an approver or by policy.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// Withdrawn by the agent or an admin.
    Cancelled,
}

impl ActionStatus {
    /// True once nothing can change the request any more.
    pub fn is_final(self) -> bool {
        !matches!(self, ActionStatus::Pending)
    }
}

/// A request as the service recorded it: exactly what approvers are shown, and so exactly what
/// the request digest covers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// UUIDv7, assigned by the service.
    pub id: Uuid,
    /// The agent identity that submitted it.
    pub requester: String,
    /// What the agent asked for.
    pub request: ActionRequest,
    /// When the service accepted it.
    pub created_at: Timestamp,
    /// When it expires if undecided.
    pub expires_at: Timestamp,
    /// The policy's evaluation.
    pub policy: PolicyEvaluation,
}

impl Action {
    /// The request digest: SHA-256 over `countersign/request/v1\n || JCS(action)`.
    ///
    /// Decisions and grants name this digest, so an approval can only ever apply to the bytes
    /// the approver was shown.
    pub fn digest(&self) -> Result<Digest, CanonicalError> {
        Ok(Self::digest_of_canonical(&to_canonical_vec(self)?))
    }

    /// The digest of an action given its RFC 8785 encoding (which a store may keep verbatim,
    /// so that checking it costs one hash instead of a re-encoding).
    pub fn digest_of_canonical(canonical: &[u8]) -> Digest {
        Digest::of_prefixed(domain::REQUEST, canonical)
    }

    /// The people who may not decide this request: the requester and its `on_behalf_of`,
    /// compared as identities ([`identifier::same`]), not as strings.
    pub fn is_requester(&self, identity: &str) -> bool {
        identifier::same(&self.requester, identity)
            || self
                .request
                .on_behalf_of
                .as_deref()
                .is_some_and(|who| identifier::same(who, identity))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::{PolicyOutcome, policy_hash};

    pub(crate) fn sample_request() -> ActionRequest {
        serde_json::from_value(serde_json::json!({
            "type": "db.export",
            "resource": "postgres://prod-eu/customers",
            "environment": "prod",
            "parameters": {"rows": 120000, "columns": ["id", "email", "country"]},
            "justification": "Quarterly churn analysis (ticket DATA-1422)",
            "context": {"pipeline": "analytics-nightly", "run": 8812},
            "diff": {"format": "unified", "text": "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n"},
            "tags": ["pii"],
            "on_behalf_of": "alice@example.com"
        }))
        .expect("valid sample")
    }

    pub(crate) fn sample_action() -> Action {
        Action {
            id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
            requester: "agent:analytics-bot".into(),
            request: sample_request(),
            created_at: Timestamp::from_millis(1_795_000_000_000).expect("in range"),
            expires_at: Timestamp::from_millis(1_795_000_900_000).expect("in range"),
            policy: PolicyEvaluation {
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
                reason: "production export of pii needs two security approvers".into(),
                policy_hash: policy_hash(b"package countersign\n"),
                risk: None,
            },
        }
    }

    #[test]
    fn sample_request_is_valid() {
        assert_eq!(sample_request().validate(), Ok(()));
    }

    #[test]
    fn unknown_field_is_rejected() {
        let mut json = serde_json::to_value(sample_request()).expect("serializes");
        json["approved"] = true.into();
        let err = serde_json::from_value::<ActionRequest>(json).expect_err("unknown field");
        assert!(
            err.to_string().contains("unknown field `approved`"),
            "{err}"
        );
    }

    #[test]
    fn bad_type_and_tags_name_the_field() {
        let err = ActionType::new("export").expect_err("one segment");
        assert_eq!(err.field, "type");
        assert!(ActionType::new("DB.export").is_err());
        assert!(ActionType::new("db..export").is_err());
        assert!(Tag::new("PII").is_err());

        let mut req = sample_request();
        req.tags.push(Tag::new("pii").expect("valid"));
        assert_eq!(
            req.validate().map_err(|e| e.field),
            Err("tags[1]".to_owned())
        );
    }

    #[test]
    fn blank_justification_and_control_characters_are_rejected() {
        let mut req = sample_request();
        req.justification = " ".into();
        assert_eq!(
            req.validate().map_err(|e| e.field),
            Err("justification".into())
        );
        let mut req = sample_request();
        req.resource = "db\u{1b}[31m".into();
        assert_eq!(req.validate().map_err(|e| e.field), Err("resource".into()));
    }

    #[test]
    fn oversized_diff_is_rejected() {
        let mut req = sample_request();
        req.diff = Some(Diff::Unified {
            text: "x".repeat(MAX_DIFF_BYTES + 1),
            language: None,
        });
        assert_eq!(req.validate().map_err(|e| e.field), Err("diff".into()));
    }

    #[test]
    fn digest_changes_with_anything_shown() {
        let base = sample_action();
        let digest = base.digest().expect("digest");
        let mut other = base.clone();
        other.request.justification.push('.');
        assert_ne!(other.digest().expect("digest"), digest);
        let mut other = base.clone();
        other.policy.reason.push('!');
        assert_ne!(other.digest().expect("digest"), digest);
        let mut other = base;
        other.expires_at = other.expires_at.add_seconds(1);
        assert_ne!(other.digest().expect("digest"), digest);
    }

    #[test]
    fn digest_survives_reformatting() {
        let action = sample_action();
        let text = serde_json::to_string_pretty(&action).expect("serializes");
        let reparsed: Action = serde_json::from_str(&text).expect("parses");
        assert_eq!(reparsed.digest().ok(), action.digest().ok());
    }

    #[test]
    fn requester_and_on_behalf_of_are_the_requester() {
        let action = sample_action();
        assert!(action.is_requester("agent:analytics-bot"));
        assert!(action.is_requester("alice@example.com"));
        assert!(!action.is_requester("bob@example.com"));
        // Another spelling of the same person is the same person.
        assert!(action.is_requester("Alice@Example.com"));
        assert!(action.is_requester("alice\u{200B}@example.com"));
        assert!(action.is_requester("alice\u{FF20}example.com"));
    }

    #[test]
    fn on_behalf_of_must_be_a_canonical_identifier() {
        for spelling in [
            "Alice@example.com",
            " alice@example.com",
            "alice\u{200F}@example.com",
        ] {
            let mut req = sample_request();
            req.on_behalf_of = Some(spelling.into());
            assert_eq!(
                req.validate().map_err(|e| e.field),
                Err("on_behalf_of".into()),
                "{spelling:?}"
            );
        }
    }

    #[test]
    fn text_that_attacks_the_reader_is_refused_per_field() {
        let mut req = sample_request();
        req.resource = "s3://bucket/\u{202E}fdp.exe".into();
        assert_eq!(req.validate().map_err(|e| e.field), Err("resource".into()));
        let mut req = sample_request();
        req.justification = "ok\u{200B}".into();
        assert_eq!(
            req.validate().map_err(|e| e.field),
            Err("justification".into())
        );
        let mut req = sample_request();
        req.parameters
            .0
            .insert("q".into(), "\u{1b}]0;pwned\u{7}".into());
        assert_eq!(
            req.validate().map_err(|e| e.field),
            Err("parameters.q".into())
        );
        let mut req = sample_request();
        req.diff = Some(Diff::Unified {
            text: "+\u{0}".into(),
            language: None,
        });
        assert_eq!(req.validate().map_err(|e| e.field), Err("diff.text".into()));
        // Kept and flagged (shown escaped): bidi in data, CRLF in a diff.
        let mut req = sample_request();
        req.parameters
            .0
            .insert("label".into(), "\u{202E}abc".into());
        req.diff = Some(Diff::Unified {
            text: "-a\r\n+b\r\n".into(),
            language: None,
        });
        assert_eq!(req.validate(), Ok(()));
    }

    #[test]
    fn oversized_context_is_refused() {
        let mut req = sample_request();
        req.context
            .0
            .insert("blob".into(), "x".repeat(MAX_CONTEXT_BYTES).into());
        assert_eq!(req.validate().map_err(|e| e.field), Err("context".into()));
    }
}
