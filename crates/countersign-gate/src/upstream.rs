//! The real tool servers behind the gate, reached with the gate's credentials. Stdio servers are
//! started by the gate with only the environment the configuration gives them (plus `PATH` and
//! `HOME`): nothing of the gate's own environment, and nothing the agent sent.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, GetPromptRequestParams, GetPromptResult, Prompt,
    ReadResourceRequestParams, ReadResourceResult, Resource, Tool,
};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::{Map, Value};

use crate::config::{Upstream, UpstreamTransport};

/// Why an upstream could not be reached or answered.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream could not be started or connected to.
    #[error("upstream {name}: cannot start: {message}")]
    Start {
        /// Which.
        name: String,
        /// Why.
        message: String,
    },
    /// The call failed on the way (the upstream crashed, closed, or answered nonsense).
    #[error("upstream {name}: {message}")]
    Call {
        /// Which.
        name: String,
        /// Why.
        message: String,
    },
    /// The call took longer than the upstream's `call_timeout_seconds`.
    #[error("upstream {name} did not answer within {seconds} s")]
    Timeout {
        /// Which.
        name: String,
        /// The limit.
        seconds: u64,
    },
}

/// One connected upstream and the tools it listed.
pub struct Connected {
    /// Its configuration.
    pub config: Upstream,
    client: RunningService<RoleClient, ()>,
    /// Its tools by their own name, as listed when the gate connected.
    pub tools: BTreeMap<String, Tool>,
    /// Its resources by URI (none when it offers none).
    pub resources: BTreeMap<String, Resource>,
    /// Its prompts by their own name (none when it offers none).
    pub prompts: BTreeMap<String, Prompt>,
}

impl Connected {
    /// Starts (or connects to) `config`'s server and lists its tools.
    pub async fn connect(config: &Upstream) -> Result<Self, UpstreamError> {
        let start = |message: String| UpstreamError::Start {
            name: config.name.clone(),
            message,
        };
        let client = match &config.transport {
            UpstreamTransport::Stdio { command, args, env } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).env_clear();
                for inherited in ["PATH", "HOME"] {
                    if let Some(v) = std::env::var_os(inherited) {
                        cmd.env(inherited, v);
                    }
                }
                for (k, v) in env {
                    cmd.env(k, v.expose());
                }
                let (transport, _) = TokioChildProcess::builder(cmd)
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| start(format!("{command}: {e}")))?;
                ().serve(transport)
                    .await
                    .map_err(|e| start(format!("initialize: {e}")))?
            }
            UpstreamTransport::Http { url, headers } => {
                use rmcp::transport::StreamableHttpClientTransport;
                use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                let mut custom = std::collections::HashMap::new();
                for (name, value) in headers {
                    if name.eq_ignore_ascii_case("authorization") {
                        let token = value.expose().strip_prefix("Bearer ").ok_or_else(|| {
                            start("the Authorization header must be \"Bearer <token>\"".into())
                        })?;
                        config = config.auth_header(token);
                        continue;
                    }
                    let header = axum::http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| start(format!("header {name}: {e}")))?;
                    // The value is a secret: never in the error.
                    let value = axum::http::HeaderValue::from_str(value.expose())
                        .map_err(|_| start(format!("header {name}: not a valid header value")))?;
                    custom.insert(header, value);
                }
                let transport =
                    StreamableHttpClientTransport::from_config(config.custom_headers(custom));
                ().serve(transport)
                    .await
                    .map_err(|e| start(format!("initialize {url}: {e}")))?
            }
        };
        let listed = client
            .list_all_tools()
            .await
            .map_err(|e| start(format!("tools/list: {e}")))?;
        let tools = listed
            .into_iter()
            .map(|t| (t.name.to_string(), t))
            .collect();
        // Resources and prompts are optional for a server: one that offers none answers
        // "method not found", which is not an error here.
        let capabilities = client.peer_info().map(|i| i.capabilities.clone());
        let resources = match capabilities.as_ref().and_then(|c| c.resources.as_ref()) {
            Some(_) => client
                .list_all_resources()
                .await
                .map_err(|e| start(format!("resources/list: {e}")))?
                .into_iter()
                .map(|r| (r.uri.clone(), r))
                .collect(),
            None => BTreeMap::new(),
        };
        let prompts = match capabilities.as_ref().and_then(|c| c.prompts.as_ref()) {
            Some(_) => client
                .list_all_prompts()
                .await
                .map_err(|e| start(format!("prompts/list: {e}")))?
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
            None => BTreeMap::new(),
        };
        Ok(Self {
            config: config.clone(),
            client,
            tools,
            resources,
            prompts,
        })
    }

    /// Calls `tool` with `arguments`, within the upstream's time limit.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallToolResult, UpstreamError> {
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        self.timed(self.client.call_tool(params)).await
    }

    /// Reads resource `uri`, within the upstream's time limit.
    pub async fn read(&self, uri: &str) -> Result<ReadResourceResult, UpstreamError> {
        self.timed(
            self.client
                .read_resource(ReadResourceRequestParams::new(uri)),
        )
        .await
    }

    /// Gets prompt `name` with `arguments`, within the upstream's time limit.
    pub async fn prompt(
        &self,
        name: &str,
        arguments: Option<Map<String, Value>>,
    ) -> Result<GetPromptResult, UpstreamError> {
        let mut params = GetPromptRequestParams::new(name);
        if let Some(a) = arguments {
            params = params.with_arguments(a);
        }
        self.timed(self.client.get_prompt(params)).await
    }

    /// Runs one request to the upstream within its `call_timeout_seconds`.
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, rmcp::service::ServiceError>>,
    ) -> Result<T, UpstreamError> {
        let seconds = self.config.call_timeout_seconds;
        match tokio::time::timeout(Duration::from_secs(seconds), call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(UpstreamError::Call {
                name: self.config.name.clone(),
                message: e.to_string(),
            }),
            Err(_) => Err(UpstreamError::Timeout {
                name: self.config.name.clone(),
                seconds,
            }),
        }
    }
}

/// Every configured upstream, connected.
#[derive(Clone)]
pub struct Upstreams(Arc<Vec<Connected>>);

impl Upstreams {
    /// Connects to every upstream of `configs`; one that cannot be reached stops the gate.
    pub async fn connect(configs: &[Upstream]) -> Result<Self, UpstreamError> {
        let mut connected = Vec::with_capacity(configs.len());
        for c in configs {
            connected.push(Connected::connect(c).await?);
        }
        Ok(Self(Arc::new(connected)))
    }

    /// The upstreams.
    pub fn all(&self) -> &[Connected] {
        &self.0
    }

    /// The upstream called `name`.
    pub fn get(&self, name: &str) -> Option<&Connected> {
        self.0.iter().find(|u| u.config.name == name)
    }

    /// The upstream that listed resource `uri` (the first, when two list the same URI).
    pub fn owner_of(&self, uri: &str) -> Option<&Connected> {
        self.0.iter().find(|u| u.resources.contains_key(uri))
    }
}
