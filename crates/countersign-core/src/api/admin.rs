//! The bodies of the administration interface (`/v1/admin/…`, admin token).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decision::KeyKind;
use crate::digest::Digest;
use crate::ecdsa::KeyId;
use crate::timestamp::Timestamp;

/// What an API token lets its bearer do.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRoleView {
    /// An agent: submit, wait, redeem, report.
    Agent,
    /// An administrator.
    Admin,
    /// The organisation's directory, provisioning over SCIM.
    Scim,
}

/// An API token as listed (the token itself is never stored, so never shown again).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    /// Token id, for revocation.
    pub token_id: Uuid,
    /// The agent id or administrator it authenticates.
    pub subject: String,
    /// What it may do.
    pub role: TokenRoleView,
    /// Issued.
    pub created_at: Timestamp,
    /// Revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

/// Asks for a new agent token.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAgentToken {
    /// Agent identity, e.g. `agent:deploy-bot`.
    pub agent_id: String,
}

/// A newly issued token: shown once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IssuedToken {
    /// Token id, for revocation.
    pub token_id: Uuid,
    /// The identity it authenticates.
    pub subject: String,
    /// The secret; keep it as one.
    pub token: String,
}

/// Creates or updates an approver.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverUpdate {
    /// Display name (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Every group the approver belongs to (replaces the previous list).
    pub groups: Vec<String>,
}

/// An enrolled key as listed to administrators.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyAdminView {
    /// Key id.
    pub key_id: KeyId,
    /// Where the private key lives.
    pub kind: KeyKind,
    /// Label given at enrolment.
    pub label: String,
    /// Whether a trusted manufacturer's root vouched for its device at enrolment.
    pub attested: bool,
    /// That root's certificate subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_by: Option<String>,
    /// Whether the device made a statement about the key (a TPM2_Certify), checked or not
    /// against a root.
    #[serde(default)]
    pub certified: bool,
    /// Enrolled.
    pub enrolled_at: Timestamp,
    /// Revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

/// An approver with groups and keys.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApproverAdminView {
    /// Identity.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Enrolled keys, revoked ones included.
    pub keys: Vec<KeyAdminView>,
}

/// Asks for a one-time enrolment code.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnrolmentCode {
    /// Validity in seconds (default one day, at most seven).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
}

/// A one-time enrolment code: shown once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IssuedEnrolmentCode {
    /// The approver it enrols a key for.
    pub approver_id: String,
    /// The code.
    pub code: String,
    /// Usable until.
    pub expires_at: Timestamp,
}

/// Revokes a key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRevocation {
    /// Why, for the audit log.
    pub reason: String,
}

/// The policy in force.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    /// SHA-256 of the source, as recorded with every evaluation.
    pub hash: Digest,
    /// The Rego source.
    pub source: String,
    /// The file it is loaded from; absent for the built-in policy (which cannot be replaced
    /// over HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A new policy.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    /// The Rego source; it must define `data.countersign.decision`.
    pub source: String,
    /// The hash the caller last saw: the change is refused if the policy has changed since
    /// (so two administrators cannot overwrite each other unknowingly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_hash: Option<Digest>,
}

/// What a policy update did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// Hash before.
    pub previous_hash: Digest,
    /// Hash now in force.
    pub hash: Digest,
    /// False when the source was already in force (nothing recorded).
    pub changed: bool,
}
