//! The gate: the enforcement point between an agent and the tools it uses. The agent reaches its
//! tools only through the gate, which holds their credentials. For every tool call the gate — not
//! the agent — writes the action (type, resource, environment, classification tags, the call's
//! arguments as parameters), asks the approval service, and, once a grant exists, redeems it and
//! runs exactly the arguments whose digest was approved, once, then reports the outcome.
//!
//! The configuration ([`config`]), the action a call becomes ([`action`]) and the approval flow
//! around a call ([`approval`]) do not depend on the transport; the MCP side is the agent-facing
//! server ([`server`], served over Streamable HTTP by [`http`]) and the upstream clients
//! ([`upstream`]), on `rmcp`, the official Rust MCP SDK. Brokered connections — databases and
//! commands the gate runs itself — are configured in [`connection`], turned into actions and run
//! by [`broker`] ([`sql`] describes statements for the policy, [`postgres`] runs them as roles
//! minted per grant, [`command`] runs programs); [`journal`] lets a restarted gate report runs it
//! stopped during.

pub mod action;
pub mod agent;
pub mod approval;
pub mod broker;
pub mod command;
pub mod config;
pub mod connection;
pub mod http;
pub mod journal;
pub mod postgres;
pub mod preview;
pub mod server;
pub mod sql;
pub mod template;
pub mod upstream;

pub use action::{ActionError, ToolCall, action_for};
pub use approval::{Approval, ApprovalError, Approved, Progress, Ran, forwardable};
pub use config::{ConfigError, GateConfig, Preview, ToolRule, Upstream, UpstreamTransport};
