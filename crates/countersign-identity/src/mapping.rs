//! Verified claims to a Countersign identity: a configured claim is the identifier (folded to
//! its one spelling, refused when it has none), and a groups claim is mapped through a
//! configured table — an IdP group counts only where the table names it, so a group someone
//! creates at the IdP with a Countersign group's name grants nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use crate::token::Verified;

/// Why verified claims do not make an identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    /// The identifying claim is missing or not text.
    #[error("the token has no text claim {0:?} to identify the person by")]
    Missing(String),
    /// The claim's value has no Countersign spelling.
    #[error(
        "the claim {claim:?} is {value:?}, which is not a Countersign identifier (map the person when provisioning, or choose another claim): {reason}"
    )]
    NotAnIdentifier {
        /// Which claim.
        claim: String,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
}

/// How claims become an identity.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// The claim holding the identifier (`email`, `preferred_username`, `sub`, …).
    pub id_claim: String,
    /// The claim holding the person's groups, if any.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// IdP group → Countersign group.
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
    /// The claim holding a display name.
    #[serde(default)]
    pub name_claim: Option<String>,
}

/// Who the token says the person (or workload) is, in Countersign's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedIdentity {
    /// The identifier.
    pub id: String,
    /// Countersign groups.
    pub groups: BTreeSet<String>,
    /// For people: the name to show.
    pub display_name: Option<String>,
}

impl ClaimMapping {
    /// The identity `verified` names.
    pub fn map(&self, verified: &Verified) -> Result<MappedIdentity, MappingError> {
        let raw = verified
            .claims
            .get(&self.id_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| MappingError::Missing(self.id_claim.clone()))?;
        // Case is the one difference the spelling rules fold for an IdP: emails and user names
        // arrive as the person typed them. Anything else odd is refused, not repaired.
        let id = raw.to_ascii_lowercase();
        countersign_core::identifier::check(&self.id_claim, &id).map_err(|e| {
            MappingError::NotAnIdentifier {
                claim: self.id_claim.clone(),
                value: raw.to_owned(),
                reason: e.to_string(),
            }
        })?;
        let mut groups = BTreeSet::new();
        if let Some(claim) = &self.groups_claim {
            let listed: Vec<&str> = match verified.claims.get(claim) {
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(one)) => vec![one.as_str()],
                _ => Vec::new(),
            };
            for group in listed {
                if let Some(ours) = self.groups.get(group) {
                    groups.insert(ours.clone());
                }
            }
        }
        let display_name = self
            .name_claim
            .as_ref()
            .and_then(|c| verified.claims.get(c))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(MappedIdentity {
            id,
            groups,
            display_name,
        })
    }
}
