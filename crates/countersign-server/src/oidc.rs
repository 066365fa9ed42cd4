//! Approvers from the organisation's OpenID Provider: the service is a relying party for the
//! public client the console and the CLI sign in as. It hands out what a sign-in needs with a
//! nonce it can check without storing (MAC'd, like session challenges), and verifies the ID
//! token that comes back at enrolment ([`crate::domain::approvers::enrol_with_idp`]). The
//! provider's metadata and keys are fetched when first needed, so a provider that is down when
//! the service starts only delays sign-ins.

use std::sync::Arc;

use countersign_identity::discovery::Fetched;
use countersign_identity::{ClaimMapping, Expectations, KeySet, Metadata, Verifier};
use serde::Deserialize;

/// The `[oidc]` configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer, exactly as its tokens carry it.
    pub issuer: String,
    /// The public client (no secret) the console and the CLI sign in as.
    pub client_id: String,
    /// The claim naming the approver (`email` by default).
    #[serde(default = "default_id_claim")]
    pub id_claim: String,
    /// The claim listing the person's groups.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// IdP group → Countersign group; other IdP groups grant nothing.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, String>,
    /// The claim holding the name to show (`name` by default).
    #[serde(default = "default_name_claim")]
    pub name_claim: Option<String>,
    /// Create (or update) the approver from the token's claims at enrolment; otherwise the
    /// approver must exist already (provisioned by SCIM or an administrator).
    #[serde(default = "default_true")]
    pub provision: bool,
    /// The scopes a sign-in asks for.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Longest ago the person may have signed in when the key is enrolled.
    #[serde(default = "default_max_age")]
    pub max_sign_in_age_seconds: u64,
}

fn default_id_claim() -> String {
    "email".into()
}

#[allow(clippy::unnecessary_wraps)] // serde's default for an optional field
fn default_name_claim() -> Option<String> {
    Some("name".into())
}

impl OidcConfig {
    /// How the ID token's claims become an approver.
    pub fn mapping(&self) -> ClaimMapping {
        ClaimMapping {
            id_claim: self.id_claim.clone(),
            groups_claim: self.groups_claim.clone(),
            groups: self.groups.clone(),
            name_claim: self.name_claim.clone(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_scope() -> String {
    "openid email profile groups".into()
}

fn default_max_age() -> u64 {
    600
}

/// The relying party.
pub struct Oidc {
    /// The configuration.
    pub config: OidcConfig,
    http: reqwest::Client,
    discovered: Fetched<(Metadata, Verifier)>,
}

/// Why the provider cannot be used now; the message is safe to show.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OidcError(pub String);

impl Oidc {
    /// The relying party of `config`.
    pub fn new(config: OidcConfig) -> Self {
        Self {
            config,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            discovered: Fetched::new(std::time::Duration::from_secs(5)),
        }
    }

    /// The provider's metadata and a verifier of its tokens (discovered once it answers).
    pub async fn provider(&self) -> Result<&(Metadata, Verifier), OidcError> {
        self.discovered
            .get(|| async {
                let metadata = countersign_identity::discover(&self.http, &self.config.issuer)
                    .await
                    .map_err(|e| e.to_string())?;
                let keys = Arc::new(KeySet::new(self.http.clone(), metadata.jwks_uri.clone()));
                let verifier = Verifier::new(metadata.issuer.clone(), keys);
                Ok((metadata, verifier))
            })
            .await
            .map_err(OidcError)
    }

    /// What an ID token for the sign-in with `nonce` must be.
    pub fn expectations(&self, nonce: &str) -> Expectations {
        Expectations {
            audience: self.config.client_id.clone(),
            check_authorized_party: true,
            nonce: Some(nonce.to_owned()),
            // A device sign-in's token carries no nonce: the enrolment then holds it to the
            // sign-in's time window and uses the token itself up.
            nonce_may_be_absent: true,
            max_auth_age: Some(std::time::Duration::from_secs(
                self.config.max_sign_in_age_seconds,
            )),
        }
    }
}
