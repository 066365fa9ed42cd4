//! `countersign gate`: the enforcement point in front of an agent's MCP tool servers.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use countersign_gate::GateConfig;
use countersign_gate::connection::ConnectionKind;
use countersign_gate::journal::Journal;
use countersign_gate::server::{AgentToken, GateServer};
use countersign_gate::upstream::Upstreams;

/// Options of `gate`.
#[derive(Args, Debug)]
pub struct GateArgs {
    /// The gate's configuration (docs/gate.md).
    #[arg(long, env = "COUNTERSIGN_GATE_CONFIG")]
    pub config: PathBuf,
    /// Address to listen on, instead of the configuration's `listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy only).
    #[arg(long)]
    pub insecure_plain_http: bool,
    /// Serve one local agent over standard input and output instead of HTTP, as the agent
    /// whose token is in COUNTERSIGN_TOKEN (or --token-file). Not an enforcement point: the
    /// agent's user can read this configuration.
    #[arg(long, conflicts_with = "listen")]
    pub stdio: bool,
    /// The agent's token for --stdio.
    #[arg(long, env = "COUNTERSIGN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the agent's token for --stdio from this file (`-`: standard input is the MCP
    /// stream, so not that).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// Runs the gate until Ctrl-C or SIGTERM.
pub async fn run(args: GateArgs) -> anyhow::Result<()> {
    let config = GateConfig::load(&args.config)?;
    let journal = prepare_connections(&config).await?;
    if args.stdio {
        let token = crate::secret::resolve(args.token, args.token_file.as_deref(), "agent token")?;
        let upstreams = Upstreams::connect(&config.upstreams).await?;
        let server = GateServer::new(&config.service, upstreams, AgentToken::Fixed(token.into()))
            .with_connections(config.connections.clone())
            .with_journal(journal);
        // Standard output is the MCP stream: nothing else may be written there.
        countersign_gate::server::serve_stdio(server).await?;
        return Ok(());
    }
    let listen = args.listen.unwrap_or(config.listen);
    // Agents send their API token to the gate: never in clear text off this machine.
    super::serve::check_listen(&listen, false, args.insecure_plain_http)?;
    let upstreams = Upstreams::connect(&config.upstreams).await?;
    for u in upstreams.all() {
        eprintln!(
            "countersign gate: upstream {} offers {} tools",
            u.config.name,
            u.tools.len()
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "countersign gate: serving MCP at http://{addr}/mcp for agents of {}",
        config.service
    );
    // The service's own accept loop: header deadlines from accept, and caps on connections in
    // all and per source address, so idle or half-open connections cannot exhaust the gate.
    countersign_server::transport::serve_connections(
        listener,
        countersign_gate::http::router_for(
            &config.service,
            GateServer::new(&config.service, upstreams, AgentToken::FromRequest)
                .with_connections(config.connections.clone())
                .with_journal(journal),
        )
        .context("the approval service's address")?,
        None,
        countersign_server::transport::Limits::default(),
        super::serve::shutdown_signal(),
    )
    .await?;
    eprintln!("countersign gate: stopped");
    Ok(())
}

/// Before serving: drops per-grant database roles a stopped gate left, and reports the runs it
/// stopped during as failed. A database that cannot be reached now is said, not fatal (its
/// calls fail with the reason until it is back; leftover roles expire on their own).
async fn prepare_connections(config: &GateConfig) -> anyhow::Result<Journal> {
    let journal = Journal::open(&config.state_dir)?;
    for c in &config.connections {
        match &c.kind {
            ConnectionKind::Postgres { dsn, .. } => {
                match countersign_gate::postgres::sweep(dsn, &c.name).await {
                    Ok(0) => eprintln!("countersign gate: connection {} (database) ready", c.name),
                    Ok(n) => eprintln!(
                        "countersign gate: connection {} (database): dropped {n} per-grant role(s) left by a stopped gate",
                        c.name
                    ),
                    Err(e) => eprintln!(
                        "countersign gate: connection {} (database) not reachable now: {e}",
                        c.name
                    ),
                }
            }
            ConnectionKind::Command { program, .. } => eprintln!(
                "countersign gate: connection {} runs {}",
                c.name,
                program.display()
            ),
        }
    }
    match journal.recover(&config.service).await {
        Ok(0) => {}
        Ok(n) => {
            eprintln!("countersign gate: {n} run(s) the gate stopped during recorded as failed")
        }
        Err(e) => eprintln!("countersign gate: could not recover stopped runs: {e}"),
    }
    Ok(journal)
}
