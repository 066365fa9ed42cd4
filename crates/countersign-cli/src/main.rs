//! `countersign`: the approval service, its agent and approver sides, and administration.

mod commands;
mod pin;
mod profile;
mod secret;

use clap::{Parser, Subcommand};
use countersign_core::Verdict;

use commands::{admin, agent, approver, audit, demo, exec, gate, keys, serve};

// The service allocates small, short-lived buffers on every thread for every request; glibc's
// allocator spent about a sixth of the CPU of the decision benchmark (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "countersign",
    version,
    about = "Per-action human approval for agents and automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the approval service.
    Serve(serve::ServeArgs),
    /// Run the gate: an MCP server in front of the agent's tools, each call approved first.
    Gate(gate::GateArgs),
    /// Run the embedded service with a simulated agent and approvers, printing a live log.
    Demo(demo::DemoArgs),
    /// Ask for one action, wait for the decision, print it as JSON.
    Request(agent::RequestArgs),
    /// Ask for one action and run a command only if it is granted.
    Run(agent::RunArgs),
    /// Run SQL or a command through a gate's brokered connection, once approved.
    Exec(exec::ExecArgs),
    /// List the requests waiting for you.
    Pending(approver::ProfileArg),
    /// Approve a request, signing with your enrolled key.
    Approve(approver::DecideArgs),
    /// List break-glass uses waiting for your review.
    Reviews(approver::ProfileArg),
    /// Review a break-glass use (granted without approval), signing with your enrolled key.
    Review(approver::ReviewArgs),
    /// Deny a request, signing with your enrolled key.
    Deny(approver::DecideArgs),
    /// Create, enrol and list approver keys.
    Keys(keys::KeysArgs),
    /// Administer a service's data directory.
    Admin(admin::AdminArgs),
    /// The verified audit mirror: sync, search, export reports, verify evidence.
    Audit(audit::AuditArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("countersign: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(a) => serve::run(a).await.map(|()| 0),
            Command::Gate(a) => gate::run(a).await.map(|()| 0),
            Command::Demo(a) => demo::run(a).await.map(|()| 0),
            Command::Request(a) => agent::request(a).await,
            Command::Run(a) => agent::run(a).await,
            Command::Exec(a) => exec::run(a).await,
            Command::Pending(a) => approver::pending(a).await.map(|()| 0),
            Command::Approve(a) => approver::decide(a, Verdict::Approve).await.map(|()| 0),
            Command::Reviews(a) => approver::reviews(a).await.map(|()| 0),
            Command::Review(a) => approver::review(a).await.map(|()| 0),
            Command::Deny(a) => approver::decide(a, Verdict::Deny).await.map(|()| 0),
            Command::Keys(a) => keys::keys(a).await.map(|()| 0),
            Command::Admin(a) => admin::run(a).await.map(|()| 0),
            Command::Audit(a) => audit::run(a).await,
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("countersign: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
