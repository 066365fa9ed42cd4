//! An agent's side of the gate: an MCP client reaching a gate over Streamable HTTP (what
//! `countersign exec` is), or inside the gate's own process over an in-memory stream (the demo's
//! simulated agent, and benchmarks that measure the gate's own work).

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::{Map, Value};

use crate::server::{AgentToken, GateServer};
use crate::upstream::Upstreams;

/// What a tool call answered: whether it is an error, its text, and its structured result.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The call failed (denied, expired, refused, or the tool failed).
    pub is_error: bool,
    /// The text blocks of the answer.
    pub text: String,
    /// The structured result, when the tool gave one (a connection's rows, a program's output).
    pub structured: Option<Value>,
}

/// An agent connected to a gate.
pub struct GateAgent {
    client: RunningService<RoleClient, ()>,
}

impl GateAgent {
    /// Connects to the gate at `url` (its `/mcp` endpoint) as the agent with `token`.
    pub async fn over_http(url: &str, token: &str) -> Result<Self, String> {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        // A gate that goes away takes the call it held with it: after a few reconnection
        // attempts the call fails instead of waiting for a gate that no longer knows it.
        let mut retry = rmcp::transport::common::client_side_sse::ExponentialBackoff::default();
        retry.max_times = Some(3);
        retry.base_duration = std::time::Duration::from_millis(500);
        let mut config = StreamableHttpClientTransportConfig::with_uri(url).auth_header(token);
        config.retry_config = std::sync::Arc::new(retry);
        let client = ()
            .serve(StreamableHttpClientTransport::from_config(config))
            .await
            .map_err(|e| format!("connecting to the gate at {url}: {e}"))?;
        Ok(Self { client })
    }

    /// Starts a gate in front of `upstreams`, asking `service` as the agent with `token`, and
    /// connects to it.
    pub async fn start(service: &str, upstreams: Upstreams, token: &str) -> Result<Self, String> {
        Self::connect(GateServer::new(
            service,
            upstreams,
            AgentToken::Fixed(token.into()),
        ))
        .await
    }

    /// Serves `gate` (made with a fixed [`AgentToken`]) in this process and connects to it.
    pub async fn connect(gate: GateServer) -> Result<Self, String> {
        let (agent_side, gate_side) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            if let Ok(running) = gate.serve(gate_side).await {
                let _ = running.waiting().await;
            }
        });
        let client = ().serve(agent_side).await.map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    /// Calls `tool` (`<upstream>__<tool>`, or a connection's name) with `arguments`; waits as long as approval takes.
    pub async fn call(&self, tool: &str, arguments: Map<String, Value>) -> Result<Answer, String> {
        let result = self
            .client
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
            .await
            .map_err(|e| e.to_string())?;
        let text = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Answer {
            is_error: result.is_error == Some(true),
            text,
            structured: result.structured_content,
        })
    }
}
