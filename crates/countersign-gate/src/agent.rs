//! An agent's side of the gate: an MCP client reaching a gate over Streamable HTTP (what
//! `countersign exec` is), or inside the gate's own process over an in-memory stream (the demo's
//! simulated agent, and benchmarks that measure the gate's own work).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rmcp::model::{
    CallToolRequestParams, NumberOrString, ProgressNotificationParam, ProgressToken,
    RequestMetaObject,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use serde_json::{Map, Value};

use crate::server::{AgentToken, GateServer, parse_output_message};
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

/// Where a program's output goes as the gate passes it on: `(stream, text)`, stream being
/// `stdout` or `stderr`.
pub type OutputSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// The agent's side of the session: follows a program's output as the gate passes it on.
#[derive(Clone, Default)]
pub struct Listener {
    output: Option<OutputSink>,
}

impl ClientHandler for Listener {
    fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        if let Some(output) = &self.output
            && let Some((stream, text)) = params.message.as_deref().and_then(parse_output_message)
        {
            output(stream, text);
        }
        std::future::ready(())
    }
}

/// An agent connected to a gate.
pub struct GateAgent {
    client: RunningService<RoleClient, Listener>,
}

/// Progress tokens of this process's calls.
static NEXT_TOKEN: AtomicI64 = AtomicI64::new(1);

impl GateAgent {
    /// Connects to the gate at `url` (its `/mcp` endpoint) as the agent with `token`.
    pub async fn over_http(url: &str, token: &str) -> Result<Self, String> {
        Self::over_http_following(url, token, None).await
    }

    /// [`Self::over_http`], passing a program's output to `output` as it is printed.
    pub async fn over_http_following(
        url: &str,
        token: &str,
        output: Option<OutputSink>,
    ) -> Result<Self, String> {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        // A gate that goes away takes the call it held with it: after a few reconnection
        // attempts the call fails instead of waiting for a gate that no longer knows it.
        let mut retry = rmcp::transport::common::client_side_sse::ExponentialBackoff::default();
        retry.max_times = Some(3);
        retry.base_duration = std::time::Duration::from_millis(500);
        let mut config = StreamableHttpClientTransportConfig::with_uri(url).auth_header(token);
        config.retry_config = std::sync::Arc::new(retry);
        let client = Listener { output }
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
        let client = Listener::default()
            .serve(agent_side)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    /// Calls `tool` (`<upstream>__<tool>`, or a connection's name) with `arguments`; waits as long as approval takes.
    pub async fn call(&self, tool: &str, arguments: Map<String, Value>) -> Result<Answer, String> {
        let mut params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        // Output is asked for (with a progress token) only when someone follows it.
        if self.client.service().output.is_some() {
            let token = ProgressToken(NumberOrString::Number(
                NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
            ));
            params.meta = Some(RequestMetaObject::with_progress_token(token));
        }
        let result = self
            .client
            .call_tool(params)
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
