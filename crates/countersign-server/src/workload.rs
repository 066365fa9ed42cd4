//! Agents without long-lived secrets: besides API tokens, an agent may present a workload
//! identity token — a JWT from an issuer the operator trusts (a CI system's OIDC tokens,
//! Kubernetes service-account tokens) — verified against that issuer's published keys and mapped
//! to an agent id by a configured claim under a configured prefix. The issuer is chosen by the
//! token's `iss` exactly; an issuer nobody configured is refused before any key is fetched.

use std::sync::Arc;

use base64::Engine as _;
use countersign_core::audit::AgentAuthentication;
use countersign_identity::discovery::Fetched;
use countersign_identity::{Expectations, KeySet, Verifier};
use serde::Deserialize;

/// One trusted workload-identity issuer, as configured.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadIssuerConfig {
    /// The issuer, exactly as its tokens carry it.
    pub issuer: String,
    /// The audience its tokens must name for this service.
    pub audience: String,
    /// Where its keys are published; discovered from the issuer's metadata when absent.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The claim naming the workload (`sub` by default).
    #[serde(default = "default_claim")]
    pub id_claim: String,
    /// Put before the claim's value to make the agent id, e.g. `agent:ci:`.
    pub agent_prefix: String,
}

fn default_claim() -> String {
    "sub".into()
}

/// Why a workload token was refused; the message is safe to show the caller.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WorkloadError(String);

struct Issuer {
    config: WorkloadIssuerConfig,
    verifier: Fetched<Verifier>,
}

/// The trusted issuers.
pub struct WorkloadIssuers {
    http: reqwest::Client,
    issuers: Vec<Issuer>,
}

impl WorkloadIssuers {
    /// The issuers of `configs`, checked: an agent prefix that makes identifiers, no issuer twice.
    pub fn new(configs: &[WorkloadIssuerConfig]) -> Result<Self, WorkloadError> {
        let mut issuers: Vec<Issuer> = Vec::new();
        for config in configs {
            countersign_core::identifier::check(
                "agent_prefix",
                &format!("{}x", config.agent_prefix),
            )
            .map_err(|e| WorkloadError(format!("workload issuer {}: {e}", config.issuer)))?;
            if issuers.iter().any(|i| i.config.issuer == config.issuer) {
                return Err(WorkloadError(format!(
                    "workload issuer {} is configured twice",
                    config.issuer
                )));
            }
            issuers.push(Issuer {
                config: config.clone(),
                verifier: Fetched::new(std::time::Duration::from_secs(5)),
            });
        }
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| WorkloadError(e.to_string()))?,
            issuers,
        })
    }

    /// No trusted issuer.
    pub fn none() -> Self {
        Self {
            http: reqwest::Client::new(),
            issuers: Vec::new(),
        }
    }

    /// Whether any issuer is trusted.
    pub fn any(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// The agent `token` identifies, and how.
    pub async fn authenticate(
        &self,
        token: &str,
    ) -> Result<(String, AgentAuthentication), WorkloadError> {
        let claimed = unverified_issuer(token)
            .ok_or_else(|| WorkloadError("not a workload identity token".into()))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == claimed)
            .ok_or_else(|| WorkloadError("the token's issuer is not trusted here".into()))?;
        let verifier = issuer
            .verifier
            .get(|| async {
                let jwks_uri = match &issuer.config.jwks_uri {
                    Some(uri) => uri.clone(),
                    None => {
                        countersign_identity::discover(&self.http, &issuer.config.issuer)
                            .await
                            .map_err(|e| e.to_string())?
                            .jwks_uri
                    }
                };
                Ok(Verifier::new(
                    issuer.config.issuer.clone(),
                    Arc::new(KeySet::new(self.http.clone(), jwks_uri)),
                ))
            })
            .await
            .map_err(WorkloadError)?;
        let verified = verifier
            .verify(
                token,
                &Expectations {
                    audience: issuer.config.audience.clone(),
                    ..Expectations::default()
                },
            )
            .await
            .map_err(|e| WorkloadError(format!("workload token {e}")))?;
        let value = verified
            .claims
            .get(&issuer.config.id_claim)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                WorkloadError(format!(
                    "the workload token has no text claim {:?}",
                    issuer.config.id_claim
                ))
            })?;
        let id = format!(
            "{}{}",
            issuer.config.agent_prefix,
            value.to_ascii_lowercase()
        );
        countersign_core::identifier::check("agent", &id).map_err(|e| {
            WorkloadError(format!(
                "the workload {value:?} makes no agent identifier: {e}"
            ))
        })?;
        Ok((
            id,
            AgentAuthentication::WorkloadToken {
                issuer: issuer.config.issuer.clone(),
                subject: verified.subject,
            },
        ))
    }
}

/// The `iss` a JWT claims, read without verifying it (only to pick the verifier).
fn unverified_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    if payload.len() > countersign_identity::token::MAX_TOKEN_BYTES {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}
