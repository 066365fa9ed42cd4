//! The agent-facing endpoint: MCP Streamable HTTP at `/mcp`, for agents that present a valid
//! Countersign agent token. A token is checked with the approval service (and remembered for a
//! minute), so the gate offers nothing — not even its tool list — to a caller the service does
//! not know.

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

use crate::server::{AgentToken, GateServer};
use crate::upstream::Upstreams;

/// How long a token the service accepted is trusted without asking again.
const TOKEN_CACHE: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Tokens {
    service: Arc<str>,
    /// SHA-256 of accepted tokens, with when they were checked.
    accepted: Arc<Mutex<HashMap<Digest, Instant>>>,
}

impl Tokens {
    /// Whether the service knows `token` as an agent's: an agent route answers 404 for a
    /// request that does not exist, and 401 for a token it does not know.
    async fn accepts(&self, token: &str) -> bool {
        let key = Digest::of(token.as_bytes());
        if let Some(at) = self
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            && at.elapsed() < TOKEN_CACHE
        {
            return true;
        }
        let Ok(client) = countersign_client::Client::new(&self.service) else {
            return false;
        };
        let probe = client
            .with_token(token.to_owned())
            .action(uuid::Uuid::nil())
            .await;
        let known = matches!(&probe, Err(e) if e.code() == Some("not_found"));
        if known {
            let mut accepted = self
                .accepted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            accepted.retain(|_, at| at.elapsed() < TOKEN_CACHE);
            accepted.insert(key, Instant::now());
        }
        known
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
    match token {
        Some(t) if tokens.accepts(&t).await => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            "a Countersign agent token is required: Authorization: Bearer csa_…",
        )
            .into_response(),
    }
}

/// The agent-facing router: `/mcp`, behind the agent-token check.
pub fn router(service: &str, upstreams: Upstreams) -> axum::Router {
    let server = GateServer::new(service, upstreams, AgentToken::FromRequest);
    let mcp = StreamableHttpService::new(
        move || Ok(server.clone()),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    let tokens = Tokens {
        service: service.into(),
        accepted: Arc::default(),
    };
    axum::Router::new()
        .nest_service("/mcp", mcp)
        .layer(axum::middleware::from_fn_with_state(tokens, require_agent))
}

/// Serves one local agent over standard input and output, asking the service with
/// `agent_token`. This mode does not keep the upstreams' credentials from the agent's own user
/// (who can read the gate's configuration): it is for local use, not an enforcement point.
pub async fn serve_stdio(
    service: &str,
    upstreams: Upstreams,
    agent_token: &str,
) -> Result<(), std::io::Error> {
    use rmcp::ServiceExt as _;
    let server = GateServer::new(service, upstreams, AgentToken::Fixed(agent_token.into()));
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    running.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}
