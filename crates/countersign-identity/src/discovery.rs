//! OpenID Provider metadata (OpenID Connect Discovery 1.0): what the service and the sign-in
//! clients need from `{issuer}/.well-known/openid-configuration`.

use serde::{Deserialize, Serialize};

/// Why a provider's metadata could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The provider could not be reached or answered with an error.
    #[error("the OpenID Provider at {issuer} could not be reached: {message}")]
    Unreachable {
        /// The configured issuer.
        issuer: String,
        /// Why.
        message: String,
    },
    /// The document is not provider metadata.
    #[error("the OpenID Provider at {issuer} published unusable metadata: {message}")]
    Invalid {
        /// The configured issuer.
        issuer: String,
        /// Why.
        message: String,
    },
}

/// The parts of the metadata Countersign uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The issuer, exactly as tokens carry it.
    pub issuer: String,
    /// Where its signing keys are published.
    pub jwks_uri: String,
    /// Where a person signs in (authorization code with PKCE).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where codes are exchanged for tokens.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Where a headless client starts the device authorization grant (RFC 8628).
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// Signature algorithms its ID tokens may use.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// Most bytes of a metadata or key-set document read.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Reads a JSON document of at most [`MAX_DOCUMENT_BYTES`] from `url`.
pub(crate) async fn fetch_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url} sent more than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
}

/// Reads `issuer`'s metadata and checks it names itself as `issuer`, byte for byte (a provider
/// that answers for another issuer is refused: tokens would be checked against the wrong one).
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, DiscoveryError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let metadata: Metadata =
        fetch_json(http, &url)
            .await
            .map_err(|message| DiscoveryError::Unreachable {
                issuer: issuer.to_owned(),
                message,
            })?;
    if metadata.issuer != issuer {
        return Err(DiscoveryError::Invalid {
            issuer: issuer.to_owned(),
            message: format!("it names itself {:?}", metadata.issuer),
        });
    }
    let https_or_loopback = |u: &str| {
        u.starts_with("https://")
            || u.starts_with("http://127.0.0.1")
            || u.starts_with("http://localhost")
            || u.starts_with("http://[::1]")
    };
    if !https_or_loopback(&metadata.jwks_uri) {
        return Err(DiscoveryError::Invalid {
            issuer: issuer.to_owned(),
            message: format!("jwks_uri {:?} is not https", metadata.jwks_uri),
        });
    }
    Ok(metadata)
}

/// A value fetched from an issuer once (its metadata and verifier), where a failure is
/// remembered for a while: callers meanwhile get the same error at once instead of each asking
/// the issuer again — an unauthenticated flood of sign-ins while the issuer is down costs the
/// issuer one request per pause, and the callers no wait.
pub struct Fetched<T> {
    cell: tokio::sync::OnceCell<T>,
    failed: std::sync::Mutex<Option<(std::time::Instant, String)>>,
    pause: std::time::Duration,
}

impl<T> Fetched<T> {
    /// Nothing fetched yet; a failure is remembered for `pause`.
    pub fn new(pause: std::time::Duration) -> Self {
        Self {
            cell: tokio::sync::OnceCell::new(),
            failed: std::sync::Mutex::new(None),
            pause,
        }
    }

    fn recent_failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.pause)
            .map(|(_, message)| message.clone())
    }

    /// The value, fetched with `fetch` if it is not yet (and did not fail within the pause).
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<&T, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        if let Some(value) = self.cell.get() {
            return Ok(value);
        }
        if let Some(message) = self.recent_failure() {
            return Err(message);
        }
        self.cell
            .get_or_try_init(|| async {
                // Callers that queued behind a fetch that failed take its answer.
                if let Some(message) = self.recent_failure() {
                    return Err(message);
                }
                let fetched = fetch().await;
                if let Err(message) = &fetched {
                    *self
                        .failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some((std::time::Instant::now(), message.clone()));
                }
                fetched
            })
            .await
    }
}
