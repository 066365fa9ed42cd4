//! The gate: the enforcement point between an agent and the tools it uses. The agent reaches its
//! tools only through the gate, which holds their credentials. For every tool call the gate — not
//! the agent — writes the action (type, resource, environment, classification tags, the call's
//! arguments as parameters), asks the approval service, and, once a grant exists, redeems it and
//! runs exactly the arguments whose digest was approved, once, then reports the outcome.
//!
//! This crate holds what does not depend on the transport: the configuration
//! ([`config`]), the action a call becomes ([`action`]) and the approval flow around a call
//! ([`approval`]). The MCP transports (the agent-facing server, the upstream clients) build on it.

pub mod action;
pub mod approval;
pub mod config;

pub use action::{ActionError, ToolCall, action_for};
pub use approval::{Approval, ApprovalError, Progress, Ran, forwardable};
pub use config::{ConfigError, GateConfig, ToolRule, Upstream, UpstreamTransport};
