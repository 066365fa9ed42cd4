//! The agent-facing endpoint: MCP Streamable HTTP at `/mcp`, for agents that present a valid
//! Countersign agent token. A token is checked with the approval service (and remembered for a
//! minute), so the gate offers nothing — not even its tool list — to a caller the service does
//! not know.
//!
//! An unauthenticated caller must not be able to make the gate flood the service: a token of the
//! wrong shape is refused without asking, a refused token is remembered for a while, both
//! memories are bounded, and only a few checks run against the service at once (beyond that the
//! caller is told to retry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use countersign_core::Digest;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::sync::Semaphore;

use crate::server::{AgentToken, GateServer};
use crate::upstream::Upstreams;

/// How long a token the service accepted is trusted without asking again.
const TOKEN_CACHE: Duration = Duration::from_secs(60);
/// How long a token the service refused is refused without asking again.
const REFUSAL_CACHE: Duration = Duration::from_secs(30);
/// Most tokens remembered either way (beyond it, nothing new is remembered until entries age).
const MAX_REMEMBERED: usize = 10_000;
/// Most token checks in flight against the service.
const MAX_CHECKS: usize = 16;
/// Agent tokens are `csa_` and URL-safe base64; anything else is refused without asking.
const TOKEN_PREFIX: &str = "csa_";
const MAX_TOKEN_LEN: usize = 128;

/// What the gate knows of a token.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    Accepted,
    Refused,
    /// Too many checks in flight: the caller should retry shortly.
    Busy,
}

/// Token digests with when they were learnt, forgotten after `ttl`, at most [`MAX_REMEMBERED`].
#[derive(Default)]
struct Memory(Mutex<HashMap<Digest, Instant>>);

impl Memory {
    fn knows(&self, key: &Digest, ttl: Duration) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .is_some_and(|at| at.elapsed() < ttl)
    }

    fn remember(&self, key: Digest, ttl: Duration) {
        let mut known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= MAX_REMEMBERED {
            known.retain(|_, at| at.elapsed() < ttl);
        }
        if known.len() < MAX_REMEMBERED {
            known.insert(key, Instant::now());
        }
    }
}

/// Longest workload identity token (a JWT) passed on to the service.
const MAX_JWT_LEN: usize = 16 * 1024;

/// Whether `token` looks like an agent token at all: an API token, or a workload identity
/// token (three base64url parts) for the service to verify.
fn well_formed(token: &str) -> bool {
    let base64url = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let api_token =
        token.len() <= MAX_TOKEN_LEN && token.strip_prefix(TOKEN_PREFIX).is_some_and(base64url);
    let jwt = token.len() <= MAX_JWT_LEN
        && token.split('.').count() == 3
        && token.split('.').all(base64url);
    api_token || jwt
}

#[derive(Clone)]
struct Tokens {
    client: countersign_client::Client,
    accepted: Arc<Memory>,
    refused: Arc<Memory>,
    checks: Arc<Semaphore>,
}

impl Tokens {
    fn new(service: &str) -> Result<Self, countersign_client::ClientError> {
        Ok(Self {
            client: countersign_client::Client::new(service)?,
            accepted: Arc::default(),
            refused: Arc::default(),
            checks: Arc::new(Semaphore::new(MAX_CHECKS)),
        })
    }

    /// Whether the service knows `token` as an agent's: an agent route answers 404 for a
    /// request that does not exist, and 401 for a token it does not know.
    async fn check(&self, token: &str) -> Check {
        if !well_formed(token) {
            return Check::Refused;
        }
        let key = Digest::of(token.as_bytes());
        if self.accepted.knows(&key, TOKEN_CACHE) {
            return Check::Accepted;
        }
        if self.refused.knows(&key, REFUSAL_CACHE) {
            return Check::Refused;
        }
        let Ok(_permit) = self.checks.try_acquire() else {
            return Check::Busy;
        };
        let probe = self
            .client
            .clone()
            .with_token(token.to_owned())
            .action(uuid::Uuid::nil())
            .await;
        match &probe {
            Err(e) if e.code() == Some("not_found") => {
                self.accepted.remember(key, TOKEN_CACHE);
                Check::Accepted
            }
            Err(e) if e.code() == Some("unauthorized") => {
                self.refused.remember(key, REFUSAL_CACHE);
                Check::Refused
            }
            // The service could not say (down, overloaded): refuse now, remember nothing.
            _ => Check::Busy,
        }
    }
}

async fn require_agent(State(tokens): State<Tokens>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    let check = match &token {
        Some(t) => tokens.check(t).await,
        None => Check::Refused,
    };
    match check {
        Check::Accepted => next.run(request).await,
        Check::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            "the agent token cannot be checked right now; retry shortly",
        )
            .into_response(),
        Check::Refused => (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            "a Countersign agent token is required: Authorization: Bearer csa_…",
        )
            .into_response(),
    }
}

/// The agent-facing router: `/mcp`, behind the agent-token check, for the upstreams of
/// `upstreams`; [`router_for`] serves a configured [`GateServer`].
pub fn router(
    service: &str,
    upstreams: Upstreams,
) -> Result<axum::Router, countersign_client::ClientError> {
    router_for(
        service,
        GateServer::new(service, upstreams, AgentToken::FromRequest),
    )
}

/// The agent-facing router serving `server` (made with [`AgentToken::FromRequest`]).
pub fn router_for(
    service: &str,
    server: GateServer,
) -> Result<axum::Router, countersign_client::ClientError> {
    let mcp = StreamableHttpService::new(
        move || Ok(server.clone()),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    let tokens = Tokens::new(service)?;
    Ok(axum::Router::new()
        .nest_service("/mcp", mcp)
        .layer(axum::middleware::from_fn_with_state(tokens, require_agent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_agent_shaped_tokens_are_checked() {
        assert!(well_formed("csa_AbC-12_x"));
        for bad in [
            "",
            "csa_",
            "Bearer csa_x",
            "csa_x y",
            "csa_\u{200b}",
            "CSA_x",
            "csr_x",
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
        assert!(!well_formed(&format!("csa_{}", "x".repeat(MAX_TOKEN_LEN))));
        // A workload identity token is passed on for the service to verify; nothing like one is.
        assert!(well_formed("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        for bad in ["a.b", "a..c", "a.b.c.d", "a.b.c d", "a.b.c\u{200b}"] {
            assert!(!well_formed(bad), "{bad:?}");
        }
        assert!(!well_formed(&format!("a.{}.c", "x".repeat(MAX_JWT_LEN))));
    }

    #[test]
    fn remembered_tokens_are_bounded() {
        let memory = Memory::default();
        for i in 0..MAX_REMEMBERED + 100 {
            memory.remember(Digest::of(&i.to_le_bytes()), TOKEN_CACHE);
        }
        let held = memory.0.lock().expect("lock").len();
        assert_eq!(held, MAX_REMEMBERED);
        assert!(memory.knows(&Digest::of(&0usize.to_le_bytes()), TOKEN_CACHE));
        assert!(!memory.knows(
            &Digest::of(&(MAX_REMEMBERED + 1).to_le_bytes()),
            TOKEN_CACHE
        ));
    }
}
