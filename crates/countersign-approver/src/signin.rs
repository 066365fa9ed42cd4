//! Signing in with the organisation's OpenID Provider to enrol a key, for CLI and console alike.
//! The service says where and with which nonce ([`countersign_core::api::OidcSignIn`]); a
//! headless approver signs in with the device authorization grant (RFC 8628): the provider gives
//! a short code, the person enters it in a browser anywhere, and the CLI polls until the provider
//! answers with tokens. The ID token then enrols the key ([`enrol_with_sign_in`]).

use std::time::{Duration, Instant};

use countersign_client::Client;
use countersign_client::approver::enroll_with_id_token;
use countersign_core::api::{Enrolled, OidcSignIn};
use countersign_keys::Signer;
use serde::Deserialize;

use crate::enrolment::enrolment_key;

/// Why a sign-in did not produce an ID token.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The service has no provider, or cannot reach it.
    #[error("{0}")]
    Service(#[from] countersign_client::ClientError),
    /// The provider offers no device sign-in, or answered with an error.
    #[error("the OpenID Provider: {0}")]
    Provider(String),
    /// The person declined at the provider.
    #[error("the sign-in was declined at the OpenID Provider")]
    Declined,
    /// Nobody finished the sign-in in time.
    #[error("the sign-in code expired before it was used; start again")]
    Expired,
    /// The key could not be enrolled with the sign-in.
    #[error(transparent)]
    Enrol(#[from] countersign_client::approver::ApproverError),
}

/// What the person must do to sign in on another device.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct DevicePrompt {
    /// The code to enter.
    pub user_code: String,
    /// Where to enter it.
    pub verification_uri: String,
    /// The same, with the code filled in, when the provider gives one.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
}

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    #[serde(flatten)]
    prompt: DevicePrompt,
    expires_in: u64,
    #[serde(default = "default_interval")]
    interval: u64,
}

fn default_interval() -> u64 {
    5
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A finished sign-in: the ID token, for the nonce the service issued.
pub struct SignedIn {
    /// The ID token.
    pub id_token: String,
    /// The sign-in the service prepared.
    pub sign_in: OidcSignIn,
}

/// Signs in with the device authorization grant at the provider the service at `client`
/// names, calling `prompt` once with what the person must do.
pub async fn device_sign_in(
    client: &Client,
    prompt: impl FnOnce(&DevicePrompt),
) -> Result<SignedIn, SignInError> {
    let sign_in = client.oidc_sign_in().await?;
    let (Some(device_endpoint), Some(token_endpoint)) = (
        sign_in.device_authorization_endpoint.clone(),
        sign_in.token_endpoint.clone(),
    ) else {
        return Err(SignInError::Provider(
            "it offers no device sign-in (device_authorization_endpoint)".into(),
        ));
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| SignInError::Provider(e.to_string()))?;
    let nonce = sign_in.nonce.to_hex();
    let max_age = sign_in.max_age_seconds.to_string();
    let answer = http
        .post(&device_endpoint)
        .form(&[
            ("client_id", sign_in.client_id.as_str()),
            ("scope", sign_in.scope.as_str()),
            ("nonce", nonce.as_str()),
            ("max_age", max_age.as_str()),
        ])
        .send()
        .await
        .map_err(|e| SignInError::Provider(e.to_string()))?;
    if !answer.status().is_success() {
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        return Err(SignInError::Provider(format!(
            "device authorization answered {status}: {}",
            body.chars().take(300).collect::<String>()
        )));
    }
    let authorization: DeviceAuthorization = answer
        .json()
        .await
        .map_err(|e| SignInError::Provider(format!("device authorization: {e}")))?;
    prompt(&authorization.prompt);
    let deadline = Instant::now() + Duration::from_secs(authorization.expires_in);
    let mut interval = Duration::from_secs(authorization.interval.max(1));
    loop {
        if Instant::now() >= deadline {
            return Err(SignInError::Expired);
        }
        tokio::time::sleep(interval).await;
        let answer: TokenAnswer = http
            .post(&token_endpoint)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", authorization.device_code.as_str()),
                ("client_id", sign_in.client_id.as_str()),
            ])
            .send()
            .await
            .map_err(|e| SignInError::Provider(e.to_string()))?
            .json()
            .await
            .map_err(|e| SignInError::Provider(format!("token endpoint: {e}")))?;
        match (answer.id_token, answer.error.as_deref()) {
            (Some(id_token), None) => return Ok(SignedIn { id_token, sign_in }),
            (_, Some("authorization_pending")) => {}
            (_, Some("slow_down")) => interval += Duration::from_secs(5),
            (_, Some("access_denied")) => return Err(SignInError::Declined),
            (_, Some("expired_token")) => return Err(SignInError::Expired),
            (_, Some(other)) => {
                return Err(SignInError::Provider(format!(
                    "{other}: {}",
                    answer.error_description.unwrap_or_default()
                )));
            }
            (None, None) => {
                return Err(SignInError::Provider(
                    "the token endpoint answered without an ID token (is openid in the scope?)"
                        .into(),
                ));
            }
        }
    }
}

/// Enrols `signer`'s key with a finished sign-in, labelled `label`.
pub async fn enrol_with_sign_in(
    client: &Client,
    signed_in: SignedIn,
    signer: &dyn Signer,
    label: String,
) -> Result<Enrolled, SignInError> {
    Ok(enroll_with_id_token(
        client,
        signed_in.id_token,
        signed_in.sign_in.nonce,
        enrolment_key(signer, label),
    )
    .await?)
}
