//! The gate as the agent sees it: one MCP server offering every upstream's tools as
//! `<upstream>__<tool>`. A tool call becomes an action the gate writes, the policy decides, and
//! the call is forwarded only with a redeemed grant, with exactly the approved arguments.
//!
//! Over Streamable HTTP each request carries the agent's Countersign API token
//! (`Authorization: Bearer csa_…`); the gate asks the service with it, so the agent is the
//! requester and cannot approve its own calls. Over stdio (local use) the token comes from the
//! gate's own configuration: that mode does not keep credentials from the agent's own user.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, Prompt, ReadResourceRequestParams,
    ReadResourceResponse, Resource, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::action::{ToolCall, action_for};
use crate::approval::{Approval, ApprovalError, Approved, Progress, Ran};
use crate::connection::Connection;
use crate::journal::{Effect, Journal};
use crate::upstream::Upstreams;

/// The message of a progress notification carrying a piece of a program's output:
/// `[stdout] ` or `[stderr] `, then the text as printed. (The stream's name goes in the message,
/// which people read too, because SDKs do not pass a notification's `_meta` on reliably.)
pub fn output_message(stream: crate::command::Stream, text: &str) -> String {
    format!("[{}] {text}", stream.name())
}

/// The stream and the text of a progress message made by [`output_message`].
pub fn parse_output_message(message: &str) -> Option<(&'static str, &str)> {
    [
        crate::command::Stream::Stdout,
        crate::command::Stream::Stderr,
    ]
    .into_iter()
    .find_map(|s| {
        message
            .strip_prefix(&format!("[{}] ", s.name()))
            .map(|text| (s.name(), text))
    })
}

/// Between an upstream's name and its tool's name in the names the agent sees.
pub const SEPARATOR: &str = "__";

/// Where the agent's token comes from.
#[derive(Clone)]
pub enum AgentToken {
    /// Each HTTP request's `Authorization: Bearer` header.
    FromRequest,
    /// Fixed (stdio: one local agent).
    Fixed(Arc<str>),
}

/// The MCP server the agent talks to.
#[derive(Clone)]
pub struct GateServer {
    service: Arc<str>,
    upstreams: Upstreams,
    connections: Arc<Vec<Connection>>,
    token: AgentToken,
    journal: Option<Journal>,
    /// Bounds on the database work calls of connections cause before anyone approves them.
    previews: Arc<PreviewLimits>,
    /// One approval client per agent token (by its SHA-256): the service key is fetched once.
    approvals: Arc<std::sync::Mutex<std::collections::HashMap<countersign_core::Digest, Approval>>>,
}

/// Calls of connections being prepared (parsed, checked, previewed in the database) at once:
/// in all, and per agent. Beyond either, a call is refused at once with "retry shortly", so one
/// agent cannot keep the database busy with previews nobody asked for.
struct PreviewLimits {
    all: tokio::sync::Semaphore,
    per_agent: std::sync::Mutex<std::collections::HashMap<countersign_core::Digest, usize>>,
}

/// Most calls of connections prepared at once.
const MAX_PREPARING: usize = 8;
/// Most calls of connections one agent has prepared at once.
const MAX_PREPARING_PER_AGENT: usize = 2;

/// One agent's slot in [`PreviewLimits`], given back when dropped.
struct Preparing<'a> {
    limits: &'a PreviewLimits,
    agent: countersign_core::Digest,
    _all: tokio::sync::SemaphorePermit<'a>,
}

impl PreviewLimits {
    fn new() -> Self {
        Self {
            all: tokio::sync::Semaphore::new(MAX_PREPARING),
            per_agent: std::sync::Mutex::default(),
        }
    }

    fn try_enter(&self, agent: countersign_core::Digest) -> Option<Preparing<'_>> {
        let all = self.all.try_acquire().ok()?;
        let mut per_agent = self
            .per_agent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = per_agent.entry(agent).or_default();
        if *count >= MAX_PREPARING_PER_AGENT {
            return None;
        }
        *count += 1;
        Some(Preparing {
            limits: self,
            agent,
            _all: all,
        })
    }
}

impl Drop for Preparing<'_> {
    fn drop(&mut self) {
        let mut per_agent = self
            .limits
            .per_agent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = per_agent.get_mut(&self.agent) {
            *count -= 1;
            if *count == 0 {
                per_agent.remove(&self.agent);
            }
        }
    }
}

impl GateServer {
    /// A server in front of `upstreams`, asking the approval service at `service`.
    pub fn new(service: &str, upstreams: Upstreams, token: AgentToken) -> Self {
        Self {
            service: service.into(),
            upstreams,
            connections: Arc::default(),
            token,
            journal: None,
            previews: Arc::new(PreviewLimits::new()),
            approvals: Arc::default(),
        }
    }

    /// Also offers `connections`, one tool each, named as the connection.
    #[must_use]
    pub fn with_connections(mut self, connections: Vec<Connection>) -> Self {
        self.connections = Arc::new(connections);
        self
    }

    /// Records runs in `journal`, so a stopped gate reports them when it starts again.
    #[must_use]
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.name == name)
    }

    /// A call of a brokered connection: prepared (parsed, previewed) within the limits, asked
    /// for, and run as approved.
    async fn call_connection(
        &self,
        connection: &Connection,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let Some(token) = self.agent_token(&context) else {
            return tool_error(
                "no agent token: send Authorization: Bearer <your Countersign API token>",
            );
        };
        let arguments = request.arguments.unwrap_or_default();
        let prepared = {
            let Some(_slot) = self
                .previews
                .try_enter(countersign_core::Digest::of(token.as_bytes()))
            else {
                return tool_error(
                    "the gate is preparing as many of your calls as it takes at once; retry shortly",
                );
            };
            match crate::broker::prepare(connection, &arguments).await {
                Ok(p) => p,
                Err(e) => return tool_error(format!("refused by the gate: {e}")),
            }
        };
        let approval = match self.approval(&token).await {
            Ok(a) => a,
            Err(e) => return tool_error(format!("approval service: {e}")),
        };
        let waiting_on: Arc<std::sync::Mutex<Option<uuid::Uuid>>> = Arc::default();
        let progress = progress_reporter(&context, waiting_on.clone());
        let prepared = &prepared;
        // A program's output goes to the agent as it is printed, as progress notifications of
        // the call (when it asked for progress) whose message is the text after the stream's
        // name ([`output_message`]); the whole (bounded) output is in the result as well.
        let (live, mut printed) =
            tokio::sync::mpsc::channel::<(crate::command::Stream, String)>(64);
        let progress_token = context.meta.get_progress_token();
        let peer = context.peer.clone();
        let forward = tokio::spawn(async move {
            // After the approvals' progress (at most a quorum, far below this), rising per byte.
            let mut progress = f64::from(u16::MAX);
            while let Some((stream, text)) = printed.recv().await {
                let Some(token) = progress_token.clone() else {
                    continue;
                };
                progress += text.len() as f64;
                let param = ProgressNotificationParam::new(token, progress)
                    .with_message(output_message(stream, &text));
                if peer.notify_progress(param).await.is_err() {
                    break;
                }
            }
        });
        let outcome = tokio::select! {
            outcome = approval.run(&prepared.action, prepared.effect(), progress, |approved: Approved| async move {
                prepared.run(connection, &approved, Some(live)).await
            }) => outcome,
            () = context.ct.cancelled() => return withdraw(&approval, &waiting_on).await,
        };
        // Everything printed is passed on before the answer.
        let _ = forward.await;
        match outcome {
            Ok(Ok(output)) => {
                let text = serde_json::to_string_pretty(&output.value).unwrap_or_default();
                let mut result = if output.is_error {
                    CallToolResult::error(vec![ContentBlock::text(text)])
                } else {
                    CallToolResult::success(vec![ContentBlock::text(text)])
                };
                result.structured_content = Some(output.value);
                result.into()
            }
            Ok(Err(message)) => tool_error(message),
            Err(ApprovalError::Denied { id, reason }) => {
                tool_error(format!("denied (request {id}): {reason}"))
            }
            Err(e) => tool_error(e.to_string()),
        }
    }

    async fn approval(&self, token: &str) -> Result<Approval, ApprovalError> {
        let key = countersign_core::Digest::of(token.as_bytes());
        let cached = self
            .approvals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(a) = cached {
            return Ok(a);
        }
        let mut approval = Approval::connect(&self.service, token).await?;
        if let Some(journal) = &self.journal {
            approval = approval.with_journal(journal.clone());
        }
        self.approvals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, approval.clone());
        Ok(approval)
    }

    fn agent_token(&self, context: &RequestContext<RoleServer>) -> Option<String> {
        match &self.token {
            AgentToken::Fixed(t) => Some(t.to_string()),
            AgentToken::FromRequest => context
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(|p| p.headers.get(axum::http::header::AUTHORIZATION))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| t.trim().to_owned()),
        }
    }
}

/// Reports a waiting call's progress to the agent (when it asked for progress) and remembers
/// the request it waits on in `waiting_on`.
fn progress_reporter(
    context: &RequestContext<RoleServer>,
    waiting_on: Arc<std::sync::Mutex<Option<uuid::Uuid>>>,
) -> impl Fn(&Progress) + use<> {
    let progress_token = context.meta.get_progress_token();
    let peer = context.peer.clone();
    move |p: &Progress| {
        *waiting_on
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(p.id);
        let Some(token) = progress_token.clone() else {
            return;
        };
        let param = ProgressNotificationParam::new(token, f64::from(p.approvals))
            .with_total(f64::from(p.quorum))
            .with_message(format!(
                "waiting for approval of request {}: {} of {} approvals, expires {}",
                p.id, p.approvals, p.quorum, p.expires_at
            ));
        let peer = peer.clone();
        tokio::spawn(async move {
            let _ = peer.notify_progress(param).await;
        });
    }
}

/// Withdraws the request a cancelled call waited on.
async fn withdraw(
    approval: &Approval,
    waiting_on: &std::sync::Mutex<Option<uuid::Uuid>>,
) -> CallToolResponse {
    let id = *waiting_on
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(id) = id
        && let Err(e) = approval.cancel(id).await
    {
        tracing::warn!(%id, error = %e, "could not withdraw a cancelled call's request");
    }
    tool_error("cancelled by the client; its request was withdrawn")
}

/// A tool error the agent (and the model behind it) reads.
fn tool_error(message: impl Into<String>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message.into())]).into()
}

impl ServerHandler for GateServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
            .with_server_info(Implementation::new(
                "countersign-gate",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Tools of the upstream servers, named <upstream>__<tool>. Each call is an action \
                 that Countersign's policy may allow at once, deny, or hold until people approve it; \
                 a held call answers when it is decided.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools: Vec<Tool> = Vec::new();
        for upstream in self.upstreams.all() {
            for tool in upstream.tools.values() {
                let mut offered = tool.clone();
                offered.name = format!("{}{SEPARATOR}{}", upstream.config.name, tool.name).into();
                tools.push(offered);
            }
        }
        for connection in self.connections.iter() {
            tools.push(Tool::new(
                connection.name.clone(),
                crate::broker::description(connection),
                Arc::new(crate::broker::input_schema(connection)),
            ));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut seen = std::collections::HashSet::new();
        let resources: Vec<Resource> = self
            .upstreams
            .all()
            .iter()
            .flat_map(|u| u.resources.values())
            .filter(|r| seen.insert(r.uri.clone()))
            .cloned()
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        // Only what an upstream listed can be read.
        let Some(upstream) = self.upstreams.owner_of(&request.uri) else {
            return Err(ErrorData::invalid_params(
                format!("unknown resource {:?}", request.uri),
                None,
            ));
        };
        let failed = |e: String| ErrorData::internal_error(e, None);
        if !upstream.config.resources_need_approval {
            return upstream
                .read(&request.uri)
                .await
                .map(Into::into)
                .map_err(|e| failed(e.to_string()));
        }
        let token = self
            .agent_token(&context)
            .ok_or_else(|| ErrorData::invalid_params("no agent token", None))?;
        let action = crate::action::action_for_resource(&upstream.config, &request.uri)
            .map_err(|e| ErrorData::invalid_params(format!("refused by the gate: {e}"), None))?;
        let approval = self
            .approval(&token)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let uri = request.uri.clone();
        let outcome = approval
            .run(
                &action,
                Effect::External,
                |_| {},
                |_approved| async move {
                    let result = upstream.read(&uri).await;
                    let (succeeded, bytes) = match &result {
                        Ok(r) => (true, serde_json::to_vec(r).unwrap_or_default()),
                        Err(e) => (false, e.to_string().into_bytes()),
                    };
                    Ran {
                        value: result,
                        succeeded,
                        result: bytes,
                        detail: None,
                        exit_code: None,
                    }
                },
            )
            .await;
        match outcome {
            Ok(Ok(result)) => Ok(result.into()),
            Ok(Err(e)) => Err(failed(format!("approved, but the upstream failed: {e}"))),
            Err(e) => Err(ErrorData::invalid_request(e.to_string(), None)),
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut prompts: Vec<Prompt> = Vec::new();
        for upstream in self.upstreams.all() {
            for prompt in upstream.prompts.values() {
                let mut offered = prompt.clone();
                offered.name = format!("{}{SEPARATOR}{}", upstream.config.name, prompt.name);
                prompts.push(offered);
            }
        }
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let unknown =
            || ErrorData::invalid_params(format!("unknown prompt {:?}", request.name), None);
        let (upstream_name, prompt_name) =
            request.name.split_once(SEPARATOR).ok_or_else(unknown)?;
        let upstream = self.upstreams.get(upstream_name).ok_or_else(unknown)?;
        if !upstream.prompts.contains_key(prompt_name) {
            return Err(unknown());
        }
        // A prompt is text for the model; getting one changes nothing upstream.
        upstream
            .prompt(prompt_name, request.arguments.clone())
            .await
            .map(Into::into)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if let Some(connection) = self.connection(&request.name) {
            return Ok(self.call_connection(connection, request, context).await);
        }
        let Some((upstream_name, tool_name)) = request.name.split_once(SEPARATOR) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {:?}", request.name),
                None,
            ));
        };
        let Some(upstream) = self.upstreams.get(upstream_name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {:?}", request.name),
                None,
            ));
        };
        // Only what the upstream listed can be called: an agent cannot reach a hidden tool.
        let Some(tool) = upstream.tools.get(tool_name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {:?}", request.name),
                None,
            ));
        };
        let Some(token) = self.agent_token(&context) else {
            return Ok(tool_error(
                "no agent token: send Authorization: Bearer <your Countersign API token>",
            ));
        };
        let arguments = request.arguments.clone().unwrap_or_default();
        let annotations = tool
            .annotations
            .as_ref()
            .and_then(|a| serde_json::to_value(a).ok());
        let preview = upstream
            .config
            .tools
            .get(tool_name)
            .and_then(|r| r.preview.as_ref());
        let diff = match preview {
            Some(preview) => crate::preview::diff(preview, upstream, tool_name, &arguments).await,
            None => None,
        };
        let call = ToolCall {
            upstream: &upstream.config,
            tool: tool_name,
            arguments: &arguments,
            annotations,
            justification: None,
            diff,
        };
        let shown = call.diff.clone();
        let action = match action_for(&call) {
            Ok(a) => a,
            Err(e) => return Ok(tool_error(format!("refused by the gate: {e}"))),
        };
        let approval = match self.approval(&token).await {
            Ok(a) => a,
            Err(e) => return Ok(tool_error(format!("approval service: {e}"))),
        };
        let waiting_on: Arc<std::sync::Mutex<Option<uuid::Uuid>>> = Arc::default();
        let progress = progress_reporter(&context, waiting_on.clone());
        let outcome = tokio::select! {
            outcome = approval.run(&action, Effect::External, progress, |approved: Approved| async move {
                let approved = approved.parameters;
                // What the approvers saw was the change against the state they were shown. If
                // that state moved since (another write to the file, more changes staged), the
                // approved call would now do something else: it is not forwarded.
                if let Some(preview) = preview
                    && crate::preview::diff(preview, upstream, tool_name, &approved).await != shown
                {
                    let why = "what the call would change is no longer what the approvers were \
                               shown (the state it applies to changed since)";
                    return Ran::not_forwarded(
                        Err(format!("approved, but not forwarded: {why}; ask again")),
                        why,
                    );
                }
                let result = upstream.call(tool_name, approved).await;
                let (succeeded, bytes) = match &result {
                    Ok(r) => (r.is_error != Some(true), serde_json::to_vec(r).unwrap_or_default()),
                    Err(e) => (false, e.to_string().into_bytes()),
                };
                let value = result.map_err(|e| format!("approved, but the upstream failed: {e}"));
                Ran { value, succeeded, result: bytes, detail: None, exit_code: None }
            }) => outcome,
            () = context.ct.cancelled() => {
                return Ok(withdraw(&approval, &waiting_on).await);
            }
        };
        Ok(match outcome {
            Ok(Ok(result)) => result.into(),
            Ok(Err(message)) => tool_error(message),
            Err(ApprovalError::Denied { id, reason }) => {
                tool_error(format!("denied (request {id}): {reason}"))
            }
            Err(e) => tool_error(e.to_string()),
        })
    }
}

/// Serves one local agent over standard input and output (`server` made with a fixed
/// [`AgentToken`]). This mode does not keep the upstreams' credentials from the agent's own user
/// (who can read the gate's configuration): it is for local use, not an enforcement point.
pub async fn serve_stdio(server: GateServer) -> Result<(), std::io::Error> {
    use rmcp::ServiceExt as _;
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    running.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_core::Digest;

    #[test]
    fn one_agent_cannot_take_every_preparing_slot() {
        let limits = PreviewLimits::new();
        let (a, b) = (Digest::of(b"agent a"), Digest::of(b"agent b"));
        let first = limits.try_enter(a).expect("a's first");
        let second = limits.try_enter(a).expect("a's second");
        assert!(limits.try_enter(a).is_none(), "a third for the same agent");
        // Others still get in, up to the bound in all.
        let mut others: Vec<_> = (0..MAX_PREPARING - MAX_PREPARING_PER_AGENT)
            .map(|i| {
                limits
                    .try_enter(Digest::of(&i.to_le_bytes()))
                    .expect("another agent")
            })
            .collect();
        assert!(limits.try_enter(b).is_none(), "beyond the bound in all");
        others.pop();
        let b_slot = limits.try_enter(b).expect("a slot freed");
        // A slot given back is the agent's to use again.
        drop(first);
        drop(b_slot);
        assert!(limits.try_enter(a).is_some());
        drop(second);
        assert!(limits.per_agent.lock().expect("lock").get(&b).is_none());
    }
}
