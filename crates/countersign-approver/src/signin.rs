//! Signing in with the organisation's OpenID Provider, for CLI and console alike. The service
//! says where and with which nonce ([`countersign_core::api::OidcSignIn`]). At a desk, the
//! console opens the system browser with the authorization code flow and PKCE and takes the
//! answer on a loopback redirect (RFC 8252, [`browser_sign_in`]); a headless approver uses the
//! device authorization grant (RFC 8628, [`device_sign_in`]): the provider gives a short code,
//! the person enters it in a browser anywhere, and the CLI polls until the provider answers.
//! The ID token then enrols a key ([`enrol_with_sign_in`]) or vouches again for an enrolled one
//! ([`sign_in_with_key`]), for requests whose policy wants a recent sign-in.

use std::time::{Duration, Instant};

use base64::Engine as _;
use countersign_client::Client;
use countersign_client::approver::enroll_with_id_token;
use countersign_core::api::{Enrolled, KeySignedIn, OidcSignIn};
use countersign_keys::Signer;
use rand_core::RngCore as _;
use serde::Deserialize;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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
    /// The loopback redirect could not be set up or was answered wrongly.
    #[error("the sign-in's redirect: {0}")]
    Redirect(String),
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
        enrolment_key(signer, label)?,
    )
    .await?)
}

/// Records `signed_in` behind `signer`'s enrolled key (the key signs the sign-in's nonce), for
/// requests whose policy wants a recent sign-in.
pub async fn sign_in_with_key(
    client: &Client,
    signed_in: SignedIn,
    signer: &dyn Signer,
) -> Result<KeySignedIn, SignInError> {
    Ok(countersign_client::approver::sign_in_key(
        client,
        signed_in.id_token,
        signed_in.sign_in.nonce,
        signer.public_key().key_id(),
        |m| signer.sign(m).map_err(|e| e.to_string()),
    )
    .await?)
}

/// Longest a browser sign-in may take before it is given up.
pub const BROWSER_SIGN_IN_TIMEOUT: Duration = Duration::from_secs(300);

fn random_text() -> String {
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs in with the authorization code flow and PKCE at the provider the service at `client`
/// names: listens on a loopback port, calls `open` with the address the person signs in at (the
/// console opens the system browser there), takes the provider's redirect back, checks its
/// `state`, and exchanges the code for tokens with the PKCE verifier.
pub async fn browser_sign_in(
    client: &Client,
    open: impl FnOnce(&str) -> Result<(), String>,
) -> Result<SignedIn, SignInError> {
    let sign_in = client.oidc_sign_in().await?;
    let (Some(authorize), Some(token_endpoint)) = (
        sign_in.authorization_endpoint.clone(),
        sign_in.token_endpoint.clone(),
    ) else {
        return Err(SignInError::Provider(
            "it names no authorization or token endpoint".into(),
        ));
    };
    // RFC 8252 §7.3: the loopback IP literal, any port, fixed at the moment of the request.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| SignInError::Redirect(e.to_string()))?;
    let port = listener
        .local_addr()
        .map_err(|e| SignInError::Redirect(e.to_string()))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier = random_text();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let state = random_text();
    let nonce = sign_in.nonce.to_hex();
    let max_age = sign_in.max_age_seconds.to_string();
    let mut url = reqwest::Url::parse(&authorize)
        .map_err(|e| SignInError::Provider(format!("authorization endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &sign_in.client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", &sign_in.scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("max_age", &max_age)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    open(url.as_str()).map_err(|e| SignInError::Redirect(format!("opening the browser: {e}")))?;
    let code = tokio::time::timeout(BROWSER_SIGN_IN_TIMEOUT, redirect(&listener, &state))
        .await
        .map_err(|_| SignInError::Expired)??;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| SignInError::Provider(e.to_string()))?;
    let answer: TokenAnswer = http
        .post(&token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", sign_in.client_id.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .map_err(|e| SignInError::Provider(e.to_string()))?
        .json()
        .await
        .map_err(|e| SignInError::Provider(format!("token endpoint: {e}")))?;
    match (answer.id_token, answer.error) {
        (Some(id_token), None) => Ok(SignedIn { id_token, sign_in }),
        (_, Some(error)) => Err(SignInError::Provider(format!(
            "{error}: {}",
            answer.error_description.unwrap_or_default()
        ))),
        (None, None) => Err(SignInError::Provider(
            "the token endpoint answered without an ID token (is openid in the scope?)".into(),
        )),
    }
}

/// Largest redirect request read from the browser.
const MAX_REDIRECT_BYTES: usize = 16 * 1024;

/// Waits for the browser's redirect to `/callback` with this sign-in's `state`; answers the
/// browser with a page saying what happened, and returns the code. Anything else that reaches
/// the port (a favicon, another tab) is answered 404 and ignored.
async fn redirect(listener: &tokio::net::TcpListener, state: &str) -> Result<String, SignInError> {
    loop {
        let (mut socket, _) = listener
            .accept()
            .await
            .map_err(|e| SignInError::Redirect(e.to_string()))?;
        let mut request = Vec::new();
        let mut buffer = [0u8; 2048];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REDIRECT_BYTES {
            match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer)).await {
                Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                Ok(Ok(n)) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request);
        let target = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("GET "))
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or("");
        let Ok(url) = reqwest::Url::parse(&format!("http://127.0.0.1{target}")) else {
            respond(&mut socket, "404 Not Found", "Not the sign-in.").await;
            continue;
        };
        if url.path() != "/callback" {
            respond(&mut socket, "404 Not Found", "Not the sign-in.").await;
            continue;
        }
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if param("state").as_deref() != Some(state) {
            // Not this sign-in's answer (a stale tab, or a page trying to inject a code).
            respond(
                &mut socket,
                "400 Bad Request",
                "This is not the sign-in Countersign started.",
            )
            .await;
            continue;
        }
        if let Some(error) = param("error") {
            respond(
                &mut socket,
                "200 OK",
                "The sign-in was not completed. You can close this tab.",
            )
            .await;
            return Err(match error.as_str() {
                "access_denied" => SignInError::Declined,
                _ => SignInError::Provider(format!(
                    "{error}: {}",
                    param("error_description").unwrap_or_default()
                )),
            });
        }
        let Some(code) = param("code") else {
            respond(&mut socket, "400 Bad Request", "The provider sent no code.").await;
            return Err(SignInError::Provider("the redirect carried no code".into()));
        };
        respond(
            &mut socket,
            "200 OK",
            "Signed in to Countersign. You can close this tab.",
        )
        .await;
        return Ok(code);
    }
}

async fn respond(socket: &mut tokio::net::TcpStream, status: &str, message: &str) {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Countersign</title><p style=\"font:16px system-ui;margin:3em\">{message}</p>"
    );
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}
