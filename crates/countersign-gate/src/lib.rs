//! The gate: the enforcement point between an agent and the tools it uses. The agent reaches its
//! tools only through the gate, which holds their credentials. For every tool call the gate — not
//! the agent — writes the action (type, resource, environment, classification tags, the call's
//! arguments as parameters), asks the approval service, and, once a grant exists, redeems it and
//! runs exactly the arguments whose digest was approved, once, then reports the outcome.
//!
//! The configuration ([`config`]), the action a call becomes ([`action`]) and the approval flow
//! around a call ([`approval`]) do not depend on the transport; the MCP side is the agent-facing
//! server ([`server`], served over Streamable HTTP by [`http`]) and the upstream clients
//! ([`upstream`]), on `rmcp`, the official Rust MCP SDK. [`sql`] describes SQL statements for
//! the policy (the brokered database connections of the next step).

pub mod action;
pub mod approval;
pub mod command;
pub mod config;
pub mod connection;
pub mod http;
pub mod local;
pub mod postgres;
pub mod preview;
pub mod server;
pub mod sql;
pub mod upstream;

pub use action::{ActionError, ToolCall, action_for};
pub use approval::{Approval, ApprovalError, Progress, Ran, forwardable};
pub use config::{ConfigError, GateConfig, Preview, ToolRule, Upstream, UpstreamTransport};
