//! Client of the approval service's v1 interface. Errors keep the service's `{code, message}`
//! so callers act on codes, never on message text.

pub mod admin;
pub mod approver;
pub mod stream;

use std::time::Duration;

use countersign_core::api::{
    ActionView, Challenge, CheckpointView, CosignatureRequest, CosignedCheckpointView,
    DecisionResult, Enrolled, ErrorBody, EventsPage, OidcSignIn, RedeemRequest, Redeemed,
    ServerKeyView, SessionOpened,
};
use countersign_core::{
    ActionRequest, ConsistencyProof, Digest, EnrolmentRequest, ExecutionOutcome,
    IdpEnrolmentRequest, InclusionProof, SessionRequest, SignedDecision,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error.
    #[error("{status}: {code}: {message}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The service's error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The service could not be reached or answered something unreadable.
    #[error("cannot reach the service at {url}: {source}")]
    Transport {
        /// Where.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The URL is not usable.
    #[error("invalid service URL {0:?}")]
    Url(String),
}

impl ClientError {
    /// Whether sending the same idempotent call again may succeed: the service was unreachable
    /// or said its storage was unavailable or the outcome unknown.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api { code, .. } => {
                code == "storage_unavailable" || code == "outcome_unknown"
            }
            _ => false,
        }
    }

    /// The service's error code, if the service answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// What plain HTTP to `base` means, when it is not to this machine: everything travels in clear
/// text (requests and their diffs, session tokens, agent tokens, grants), and anyone on the path
/// can read it or change what the service answers. The service itself refuses plain HTTP off
/// loopback unless it is told a TLS proxy is in front of it. `None` for HTTPS and loopback.
pub fn plain_http_warning(base: &str) -> Option<String> {
    let url = reqwest::Url::parse(base).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!local).then(|| {
        format!(
            "{base} is plain HTTP to another machine: requests, diffs, session tokens and grants travel unencrypted, and anyone on the network path can read them or change what you are shown. Use https:// unless this address is a TLS-terminating proxy on a trusted network."
        )
    })
}

/// A connection to one service, optionally with a bearer token (agent or approver session).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the service at `base` (e.g. `http://127.0.0.1:8750`).
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Self::with_ca(base, None)
    }

    /// A client that also trusts the PEM certificate `ca_pem` (a private CA or a self-signed
    /// service certificate), besides the system's roots.
    pub fn with_ca(base: &str, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Url(base));
        }
        let transport = |source| ClientError::Transport {
            url: base.clone(),
            source,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120));
        if let Some(pem) = ca_pem {
            builder = builder
                .add_root_certificate(reqwest::Certificate::from_pem(pem).map_err(transport)?);
        }
        let http = builder.build().map_err(transport)?;
        Ok(Self {
            http,
            base,
            token: None,
        })
    }

    /// The same client, authenticating with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one call; a non-success status becomes the service's error.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_with(method, path, body, &[]).await
    }

    /// [`Client::send`] with extra headers.
    async fn send_with<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Transport { url, source })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(e) => ClientError::Api {
                status,
                code: e.error.code,
                message: e.error.message,
            },
            Err(_) => ClientError::Api {
                status,
                code: "http_error".into(),
                message: text.chars().take(500).collect(),
            },
        })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, path, body).await?;
        let url = resp.url().to_string();
        resp.json()
            .await
            .map_err(|source| ClientError::Transport { url, source })
    }

    /// A call whose success has no body (`204 No Content`).
    async fn call_empty<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        self.send(method, path, body).await.map(drop)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    // --- agents ---

    /// Submits a request.
    pub async fn submit(&self, request: &ActionRequest) -> Result<ActionView, ClientError> {
        self.post("/v1/actions", request).await
    }

    /// Submits a request under an idempotency key: sending it again with the same key returns
    /// the request recorded the first time, never a second one.
    pub async fn submit_idempotent(
        &self,
        request: &ActionRequest,
        key: &str,
    ) -> Result<ActionView, ClientError> {
        let resp = self
            .send_with(
                Method::POST,
                "/v1/actions",
                Some(request),
                &[("Idempotency-Key", key)],
            )
            .await?;
        let url = resp.url().to_string();
        resp.json()
            .await
            .map_err(|source| ClientError::Transport { url, source })
    }

    /// Submits under a fresh idempotency key and, when the service could not answer for sure
    /// (unreachable, `storage_unavailable`, `outcome_unknown`), sends the same request with
    /// the same key again, up to `attempts` times with growing pauses: a request is created
    /// once however often it is sent.
    pub async fn submit_with_retries(
        &self,
        request: &ActionRequest,
        attempts: u32,
    ) -> Result<ActionView, ClientError> {
        let key = Uuid::now_v7().to_string();
        let mut pause = std::time::Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            match self.submit_idempotent(request, &key).await {
                Err(e) if attempt < attempts && e.is_retryable() => {
                    tracing::warn!(error = %e, attempt, "submission not confirmed; retrying with the same idempotency key");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(8));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One of this agent's requests.
    pub async fn action(&self, id: Uuid) -> Result<ActionView, ClientError> {
        self.get(&format!("/v1/actions/{id}")).await
    }

    /// Long-polls until the request is decided or `timeout_seconds` pass.
    pub async fn wait(&self, id: Uuid, timeout_seconds: u64) -> Result<ActionView, ClientError> {
        self.get(&format!("/v1/actions/{id}/wait?timeout={timeout_seconds}"))
            .await
    }

    /// Withdraws one of this agent's pending requests.
    pub async fn cancel(&self, id: Uuid) -> Result<ActionView, ClientError> {
        self.call::<(), ActionView>(Method::POST, &format!("/v1/actions/{id}/cancel"), None)
            .await
    }

    /// Redeems a grant for the digest about to be acted on.
    pub async fn redeem(
        &self,
        grant_id: Uuid,
        request_digest: Digest,
    ) -> Result<Redeemed, ClientError> {
        self.post(
            &format!("/v1/grants/{grant_id}/redeem"),
            &RedeemRequest { request_digest },
        )
        .await
    }

    /// Reports how the action went.
    pub async fn report_outcome(
        &self,
        id: Uuid,
        outcome: &ExecutionOutcome,
    ) -> Result<(), ClientError> {
        self.call_empty(
            Method::POST,
            &format!("/v1/actions/{id}/outcome"),
            Some(outcome),
        )
        .await
    }

    // --- approvers ---

    /// Enrols a key.
    pub async fn enroll(&self, request: &EnrolmentRequest) -> Result<Enrolled, ClientError> {
        self.post("/v1/enroll", request).await
    }

    /// Seals a secret to a TPM's endorsement key for its attestation key (the first step of an
    /// attested TPM enrolment).
    pub async fn tpm_challenge(
        &self,
        request: &countersign_core::api::TpmChallengeRequest,
    ) -> Result<countersign_core::api::TpmChallenge, ClientError> {
        self.post("/v1/enroll/tpm-challenge", request).await
    }

    /// How to sign in with the service's OpenID Provider, with a fresh nonce.
    pub async fn oidc_sign_in(&self) -> Result<OidcSignIn, ClientError> {
        self.post("/v1/identity/oidc/sign-in", &serde_json::json!({}))
            .await
    }

    /// Enrols a key with an ID token from the service's OpenID Provider.
    pub async fn enroll_idp(&self, request: &IdpEnrolmentRequest) -> Result<Enrolled, ClientError> {
        self.post("/v1/enroll/idp", request).await
    }

    /// Records a fresh sign-in behind an enrolled key.
    pub async fn sign_in_key(
        &self,
        request: &countersign_core::IdpSignInRequest,
    ) -> Result<countersign_core::api::KeySignedIn, ClientError> {
        self.post("/v1/identity/oidc/key-sign-in", request).await
    }

    /// A fresh challenge.
    pub async fn challenge(&self) -> Result<Challenge, ClientError> {
        self.post("/v1/sessions/challenge", &serde_json::json!({}))
            .await
    }

    /// Opens a session with a signed challenge.
    pub async fn open_session(
        &self,
        request: &SessionRequest,
    ) -> Result<SessionOpened, ClientError> {
        self.post("/v1/sessions", request).await
    }

    /// Requests this approver may decide.
    pub async fn pending(&self) -> Result<Vec<ActionView>, ClientError> {
        self.get("/v1/pending").await
    }

    /// Break-glass requests waiting for this approver's review.
    pub async fn pending_reviews(&self) -> Result<Vec<ActionView>, ClientError> {
        self.get("/v1/pending-reviews").await
    }

    /// Sends a signed review of a break-glass request.
    pub async fn review(
        &self,
        review: &countersign_core::SignedReview,
    ) -> Result<countersign_core::api::ReviewResult, ClientError> {
        self.post(
            &format!("/v1/actions/{}/reviews", review.review.request_id),
            review,
        )
        .await
    }

    /// A request as approvers see it.
    pub async fn view(&self, id: Uuid) -> Result<ActionView, ClientError> {
        self.get(&format!("/v1/actions/{id}/view")).await
    }

    /// Sends a signed decision.
    pub async fn decide(&self, decision: &SignedDecision) -> Result<DecisionResult, ClientError> {
        self.post(
            &format!("/v1/actions/{}/decisions", decision.decision.request_id),
            decision,
        )
        .await
    }

    // --- audit ---

    /// Events with `seq > after`.
    pub async fn audit(&self, after: Option<u64>, limit: u32) -> Result<EventsPage, ClientError> {
        let after = after.map(|a| format!("&after={a}")).unwrap_or_default();
        self.get(&format!("/v1/audit?limit={limit}{after}")).await
    }

    /// Events with `seq > after`, each as the exact JSON text the service sent: the log's leaf
    /// bytes, to hash without re-encoding.
    pub async fn audit_raw(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<RawEventsPage, ClientError> {
        let after = after.map(|a| format!("&after={a}")).unwrap_or_default();
        self.get(&format!("/v1/audit?limit={limit}{after}")).await
    }

    /// The latest signed checkpoint.
    pub async fn checkpoint(&self) -> Result<CheckpointView, ClientError> {
        self.get("/v1/audit/checkpoint").await
    }

    /// Inclusion proof of event `seq` in the tree of `tree_size`.
    pub async fn inclusion_proof(
        &self,
        seq: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, ClientError> {
        self.get(&format!(
            "/v1/audit/proof/inclusion?seq={seq}&tree_size={tree_size}"
        ))
        .await
    }

    /// Consistency proof between two tree sizes.
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, ClientError> {
        self.get(&format!("/v1/audit/proof/consistency?from={from}&to={to}"))
            .await
    }

    /// Sends a witness cosignature of the checkpoint of `tree_size`.
    pub async fn cosign(&self, request: &CosignatureRequest) -> Result<(), ClientError> {
        self.call_empty(Method::POST, "/v1/audit/cosignatures", Some(request))
            .await
    }

    /// Each witness's latest cosigned checkpoint.
    pub async fn cosignatures(&self) -> Result<Vec<CosignedCheckpointView>, ClientError> {
        self.get("/v1/audit/cosignatures").await
    }

    /// The service's public key.
    pub async fn server_key(&self) -> Result<ServerKeyView, ClientError> {
        self.get("/v1/server-key").await
    }
}

/// A page of the audit log with each event's text as received.
#[derive(Debug, serde::Deserialize)]
pub struct RawEventsPage {
    /// Events in order, verbatim.
    pub events: Vec<Box<serde_json::value::RawValue>>,
    /// The log's size when read.
    pub tree_size: u64,
}

#[cfg(test)]
mod tests {
    use super::plain_http_warning;

    #[test]
    fn plain_http_off_loopback_is_named() {
        assert!(plain_http_warning("http://countersign.example:8750").is_some());
        assert!(plain_http_warning("http://10.0.0.5").is_some());
        for quiet in [
            "https://countersign.example",
            "http://127.0.0.1:8750",
            "http://localhost:8750",
            "http://[::1]:8750",
        ] {
            assert_eq!(plain_http_warning(quiet), None, "{quiet}");
        }
    }
}
