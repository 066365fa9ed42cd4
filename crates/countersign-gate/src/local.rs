//! An MCP agent inside the gate's own process, reaching the gate over an in-memory stream: for
//! the demo's simulated agent and for benchmarks that measure the gate's own work.

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::{Map, Value};

use crate::server::{AgentToken, GateServer};
use crate::upstream::Upstreams;

/// What a tool call answered: whether it is an error, and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The call failed (denied, expired, refused, or the tool failed).
    pub is_error: bool,
    /// The text blocks of the answer.
    pub text: String,
}

/// An agent connected to a gate in this process.
pub struct LocalAgent {
    client: RunningService<RoleClient, ()>,
}

impl LocalAgent {
    /// Starts a gate in front of `upstreams`, asking `service` as the agent with `token`, and
    /// connects to it.
    pub async fn start(service: &str, upstreams: Upstreams, token: &str) -> Result<Self, String> {
        let (agent_side, gate_side) = tokio::io::duplex(1 << 20);
        let gate = GateServer::new(service, upstreams, AgentToken::Fixed(token.into()));
        tokio::spawn(async move {
            if let Ok(running) = gate.serve(gate_side).await {
                let _ = running.waiting().await;
            }
        });
        let client = ().serve(agent_side).await.map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    /// Calls `tool` (`<upstream>__<tool>`) with `arguments`; waits as long as approval takes.
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
        })
    }
}
