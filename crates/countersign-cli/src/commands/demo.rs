//! `countersign demo`: the service embedded on SQLite, a simulated agent submitting realistic
//! requests at a steady pace, simulated approvers with development keys, and a live log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use countersign_client::Client;
use countersign_client::approver::{Choice, enroll, open_session, sign_decision};
use countersign_core::api::ActionView;
use countersign_core::{
    ActionRequest, ActionStatus, AuditEvent, EventKind, ExecutionOutcome, Verdict,
};
use countersign_keys::{Signer, SoftwareKey};
use countersign_server::audit_log::current_checkpoint;
use countersign_server::{AppState, Config, Service, admin};
use countersign_store::{Approver, TokenRole};
use tokio::sync::watch;

use super::scenarios;
use countersign_keys::KeyConfig;

use countersign_approver::enrolment::enrolment_key;

use crate::profile::{Profile, sign_with};

/// Options of `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Data directory (default: a fresh temporary one).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the embedded service.
    #[arg(long, default_value = "127.0.0.1:8750")]
    pub listen: SocketAddr,
    /// Seconds between the simulated agent's requests.
    #[arg(long, default_value_t = 20)]
    pub interval: u64,
    /// Seconds the simulated approvers leave a request to you before deciding it themselves:
    /// long enough to read it.
    #[arg(long, default_value_t = 45)]
    pub approver_delay: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Leave every decision to you (no simulated approvers).
    #[arg(long)]
    pub no_simulated_approvers: bool,
    /// Do not open the desktop console.
    #[arg(long)]
    pub no_console: bool,
}

/// The approver the person running the demo signs in as, in the console.
const YOU: &str = "you@example.com";

const DEMO_APPROVERS: [(&str, &[&str]); 3] = [
    ("alice@example.com", &["security", "platform"]),
    ("bob@example.com", &["security"]),
    ("carol@example.com", &["platform"]),
];

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("countersign-demo-")
                .tempdir()?;
            temp.path().to_owned()
        }
    };
    let config = Config {
        origin: "countersign.demo/log".into(),
        ..Config::default()
    };
    let store = super::database::open(&data_dir, None).await?;
    let service = Service::open(&data_dir, store, None, config).await?;
    let state = service.state.clone();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut stop_server = stop_rx.clone();
    let server = tokio::spawn(countersign_server::serve(
        listener,
        state.clone(),
        async move {
            let _ = stop_server.changed().await;
        },
    ));

    let now = state.now();
    let store = state.store.clone();
    let (_, agent_token) = admin::issue_token(
        store.as_ref(),
        "demo",
        TokenRole::Agent,
        "agent:demo-bot",
        now,
    )
    .await?;
    let (_, mcp_token) = admin::issue_token(
        store.as_ref(),
        "demo",
        TokenRole::Agent,
        "agent:mcp-coder",
        now,
    )
    .await?;
    let keys_dir = data_dir.join("demo");
    let mut profiles = Vec::new();
    for (id, groups) in DEMO_APPROVERS {
        profiles.push(provision_approver(&state, &url, &keys_dir, id, groups).await?);
    }
    // A command-line profile for you as well, so the printed commands act as you.
    provision_approver(&state, &url, &keys_dir, YOU, &["security", "platform"]).await?;
    let exe = std::env::current_exe()?;
    let you = keys_dir.join(format!("{YOU}.json"));

    println!("Countersign demo");
    println!("  service     {url}   (data in {})", data_dir.display());
    println!(
        "  agent       agent:demo-bot submits a request every {} s",
        args.interval
    );
    println!(
        "  approvers   {}",
        DEMO_APPROVERS.map(|(id, _)| id).join(", ")
    );
    if args.no_simulated_approvers {
        println!("  you decide every request: in the console, or here as {YOU}:");
    } else {
        println!(
            "  simulated approvers leave each request to you for {} s, then decide it; as {YOU}:",
            args.approver_delay
        );
    }
    println!("    {} pending --profile {}", exe.display(), you.display());
    println!(
        "    {} approve ID --profile {}",
        exe.display(),
        you.display()
    );
    let mut console = if args.no_console {
        None
    } else {
        open_console(&state, &url, &data_dir).await?
    };
    println!("  Ctrl-C stops everything.");
    println!();

    let mcp = mcp_agent(&url, &mcp_token, &data_dir).await;
    let mut tasks = vec![
        tokio::spawn(live_log(state.clone(), stop_rx.clone())),
        tokio::spawn(checkpoints(state.clone(), stop_rx.clone())),
        tokio::spawn(agent(
            url.clone(),
            agent_token,
            args.interval,
            stop_rx.clone(),
        )),
    ];
    if let Some(agent) = mcp {
        tasks.push(tokio::spawn(mcp_writes(
            agent,
            args.interval * 3,
            stop_rx.clone(),
        )));
    }
    if !args.no_simulated_approvers {
        for p in profiles {
            tasks.push(tokio::spawn(simulated_approver(
                p,
                Duration::from_secs(args.approver_delay),
                stop_rx.clone(),
            )));
        }
    }

    match args.duration {
        Some(s) => tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(s)) => {}
            () = super::serve::shutdown_signal() => {}
        },
        None => super::serve::shutdown_signal().await,
    }
    // Stop promptly however much is pending: the console (whose stream would hold the
    // service's graceful shutdown open) first, then every task, each given a moment.
    if let Some(child) = console.as_mut() {
        let _ = child.kill().await;
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        // A task still in a long poll after that has nothing that needs finishing.
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(served) => served??,
        Err(_) => println!("(the service's last connections were cut)"),
    }
    let cp = current_checkpoint(&state)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    println!(
        "\nfinal checkpoint: {} events, root {}",
        cp.checkpoint.tree_size, cp.checkpoint.root_hash
    );
    Ok(())
}

/// A simulated coding agent (it says so in the log) that works on files only through the gate:
/// the real `@modelcontextprotocol/server-filesystem` behind a gate in this process, each write
/// held for an approver with the gate's diff of the file. `None` when the MCP test servers are
/// not installed (`npm ci` in `tests/mcp`; `make demo` does).
async fn mcp_agent(
    url: &str,
    token: &str,
    data_dir: &Path,
) -> Option<(countersign_gate::agent::GateAgent, PathBuf)> {
    let server = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/.bin/mcp-server-filesystem");
    if !server.exists() {
        println!(
            "  mcp agent   skipped: the MCP filesystem server is not installed (npm ci in tests/mcp)"
        );
        return None;
    }
    let files = data_dir.join("mcp-files");
    let deploy = files.join("deploy.yaml");
    std::fs::create_dir_all(&files).ok()?;
    std::fs::write(&deploy, "service: web\nimage: web:4.1\nreplicas: 2\n").ok()?;
    let config = countersign_gate::GateConfig::parse(
        &format!(
            "service = \"{url}\"\n[[upstream]]\nname = \"fs\"\ncommand = \"{}\"\nargs = [\"{}\"]\nenvironment = \"prod\"\ntags = [\"source-code\"]\n[upstream.tools.write_file]\nresource = \"file://{{path}}\"\npreview = \"write-file\"\n",
            server.display(),
            files.display()
        ),
        data_dir,
    )
    .ok()?;
    let upstreams = countersign_gate::upstream::Upstreams::connect(&config.upstreams)
        .await
        .map_err(|e| println!("  mcp agent   skipped: {e}"))
        .ok()?;
    let agent = countersign_gate::agent::GateAgent::start(url, upstreams, token)
        .await
        .map_err(|e| println!("  mcp agent   skipped: {e}"))
        .ok()?;
    println!(
        "  mcp agent   agent:mcp-coder (simulated) edits {} through the gate; each write waits for an approver",
        deploy.display()
    );
    Some((agent, deploy))
}

/// The simulated MCP agent's work: a write of `deploy.yaml` every `every` seconds, through the
/// gate, each waiting for its approval; the outcome in the live log.
async fn mcp_writes(
    (agent, deploy): (countersign_gate::agent::GateAgent, PathBuf),
    every: u64,
    mut stop: watch::Receiver<bool>,
) {
    let agent = std::sync::Arc::new(agent);
    let mut replicas = 2;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(every.max(5))) => {}
        }
        replicas = if replicas >= 6 { 2 } else { replicas + 1 };
        let mut arguments = serde_json::Map::new();
        arguments.insert("path".into(), deploy.display().to_string().into());
        arguments.insert(
            "content".into(),
            format!("service: web\nimage: web:4.1\nreplicas: {replicas}\n").into(),
        );
        let agent = agent.clone();
        tokio::spawn(async move {
            println!(
                "mcp agent (simulated) asks the gate to set replicas: {replicas} in deploy.yaml"
            );
            match agent.call("fs__write_file", arguments).await {
                Ok(a) if !a.is_error => {
                    println!("mcp agent (simulated): written, replicas: {replicas}")
                }
                Ok(a) => println!("mcp agent (simulated): not written: {}", a.text),
                Err(e) => println!("mcp agent (simulated): the gate failed: {e}"),
            }
        });
    }
}

/// Starts the desktop console enrolled as [`YOU`] with a development key, when it is built and
/// there is a display. The child is killed when the demo ends.
async fn open_console(
    state: &AppState,
    url: &str,
    data_dir: &Path,
) -> anyhow::Result<Option<tokio::process::Child>> {
    let console = std::env::current_exe()?.with_file_name("countersign-console");
    let display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !console.exists() || !display {
        println!(
            "  console     not opened ({}); this log shows what it would",
            if display {
                "build it with `cargo build -p countersign-console`; make demo does"
            } else {
                "no display"
            }
        );
        return Ok(None);
    }
    let store = state.store.as_ref();
    let approver = Approver {
        id: YOU.into(),
        display_name: "You".into(),
        groups: vec!["security".into(), "platform".into()],
    };
    admin::put_approver(store, "demo", &approver, state.now()).await?;
    let (code, _) = admin::issue_enrolment_code(store, "demo", YOU, 600, state.now()).await?;
    // The toolkit's warnings go to a file, not over the demo's log.
    let log_path = data_dir.join("console.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let child = tokio::process::Command::new(&console)
        .args(["--enrol-development-key", url, YOU])
        .env("COUNTERSIGN_ENROLMENT_CODE", &code)
        .env("COUNTERSIGN_CONSOLE_DIR", data_dir.join("console"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", console.display()))?;
    println!(
        "  console     opened, signed in as {YOU} with a development key (its log: {})",
        log_path.display()
    );
    Ok(Some(child))
}

async fn provision_approver(
    state: &AppState,
    url: &str,
    dir: &Path,
    id: &str,
    groups: &[&str],
) -> anyhow::Result<Profile> {
    let store = state.store.as_ref();
    let approver = Approver {
        id: id.into(),
        display_name: id.split('@').next().unwrap_or(id).into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    };
    admin::put_approver(store, "demo", &approver, state.now()).await?;
    let key_path = dir.join(format!("{id}.pem"));
    let key = if key_path.exists() {
        SoftwareKey::load(&key_path)?
    } else {
        SoftwareKey::generate(&key_path)?
    };
    let public_key = key.public_key();
    if store.key(&public_key.key_id()).await?.is_none() {
        let (code, _) = admin::issue_enrolment_code(store, "demo", id, 600, state.now()).await?;
        let client = Client::new(url)?;
        enroll(
            &client,
            id,
            code,
            enrolment_key(&key, "demo software key".into())?,
        )
        .await?;
    }
    let profile = Profile {
        server: url.to_owned(),
        approver_id: id.into(),
        key_id: public_key.key_id(),
        key: KeyConfig::Software { path: key_path },
    };
    profile.save(&dir.join(format!("{id}.json")))?;
    Ok(profile)
}

async fn agent(url: String, token: String, interval: u64, mut stop: watch::Receiver<bool>) {
    let client = match Client::new(&url) {
        Ok(c) => c.with_token(token),
        Err(e) => return eprintln!("demo agent: {e}"),
    };
    let scenarios = scenarios::all();
    for i in 0.. {
        let request: ActionRequest =
            match serde_json::from_value(scenarios[i % scenarios.len()].clone()) {
                Ok(r) => r,
                Err(e) => return eprintln!("demo agent: bad scenario: {e}"),
            };
        match client.submit(&request).await {
            Ok(view) => {
                tokio::spawn(execute_when_granted(client.clone(), view));
            }
            Err(e) => eprintln!("demo agent: submit failed: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(interval.max(1))) => {}
            _ = stop.changed() => return,
        }
    }
}

/// What a real agent does with its request: wait, redeem, "execute", report.
async fn execute_when_granted(client: Client, mut view: ActionView) {
    while view.status == ActionStatus::Pending {
        match client.wait(view.id, 30).await {
            Ok(v) => view = v,
            Err(_) => return,
        }
    }
    if let (ActionStatus::Approved, Some(grant)) = (view.status, &view.grant) {
        if client
            .redeem(grant.grant.grant_id, view.digest)
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        let outcome = ExecutionOutcome {
            succeeded: true,
            exit_code: Some(0),
            detail: "simulated execution".into(),
        };
        let _ = client.report_outcome(view.id, &outcome).await;
    }
}

async fn simulated_approver(profile: Profile, delay: Duration, mut stop: watch::Receiver<bool>) {
    let Ok(signer) = profile.signer() else { return };
    let Ok(client) = Client::new(&profile.server) else {
        return;
    };
    let Ok(client) = open_session(&client, profile.key_id, sign_with(signer.as_ref())).await else {
        return;
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
        let Ok(pending) = client.pending().await else {
            continue;
        };
        let now = countersign_client::approver::now();
        for summary in pending {
            // Leave it to the person watching long enough to read it and act first.
            if now.millis_since(summary.action.created_at) < delay.as_millis() as i64 {
                continue;
            }
            // The inbox holds summaries; a decision is signed over the whole request.
            let Ok(view) = client.view(summary.id).await else {
                continue;
            };
            // What the policy judged critical (an internet-open rule, a wildcard grant) is
            // refused, with the policy's own words; the rest approved.
            let critical = view
                .action
                .policy
                .risk
                .as_ref()
                .filter(|r| r.level == countersign_core::RiskLevel::Critical);
            let reason = critical
                .and_then(|r| r.reasons.first())
                .map(|r| format!("no: {r}"));
            let (verdict, comment) = match &reason {
                Some(why) => (Verdict::Deny, why.as_str()),
                None => (Verdict::Approve, "looks right"),
            };
            // A simulated approver has "asked the requester" for the code.
            let code = view
                .verification_choices
                .is_some()
                .then(|| countersign_core::verification::code(&view.digest));
            let choice = Choice {
                verdict,
                comment,
                verification_code: code.as_deref(),
            };
            if let Ok(signed) = sign_decision(
                &view,
                &profile.approver_id,
                profile.key_id,
                choice,
                sign_with(signer.as_ref()),
            ) {
                let _ = client.decide(&signed).await;
            }
        }
    }
}

async fn live_log(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut events = state.events.subscribe();
    let mut names: HashMap<uuid::Uuid, String> = HashMap::new();
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.changed() => return,
        };
        if let Ok(e) = event
            && let Some(line) = describe(&e, &mut names)
        {
            println!(
                "{}  #{:<4} {line}",
                &e.recorded_at.to_string()[11..19],
                e.seq
            );
        }
    }
}

fn describe(e: &AuditEvent, names: &mut HashMap<uuid::Uuid, String>) -> Option<String> {
    let name = |id: &uuid::Uuid, names: &HashMap<uuid::Uuid, String>| {
        names.get(id).cloned().unwrap_or_else(|| id.to_string())
    };
    Some(match &e.event {
        EventKind::RequestCreated { action, .. } => {
            let label = format!("{} {}", action.request.action_type, action.request.resource);
            names.insert(action.id, label.clone());
            let risk = action
                .policy
                .risk
                .as_ref()
                .map(|r| format!(" ({} risk)", r.level.label()))
                .unwrap_or_default();
            format!(
                "REQUEST   {label} [{}] by {}{risk} — {}",
                action.request.environment, action.requester, action.policy.reason
            )
        }
        EventKind::DecisionRecorded {
            decision, key_kind, ..
        } => {
            let d = &decision.decision;
            let verdict = match d.verdict {
                Verdict::Approve => "approved",
                Verdict::Deny => "denied",
            };
            format!(
                "DECISION  {} {verdict} {} ({}, key {})",
                d.approver_id,
                name(&d.request_id, names),
                key_kind.label(),
                d.key_id.short()
            )
        }
        EventKind::Approved { action_id, reason } => {
            format!("APPROVED  {} — {reason}", name(action_id, names))
        }
        EventKind::Denied { action_id, reason } => {
            format!("DENIED    {} — {reason}", name(action_id, names))
        }
        EventKind::Expired { action_id } => format!("EXPIRED   {}", name(action_id, names)),
        EventKind::GrantIssued { grant } => format!(
            "GRANT     single-use, valid until {}",
            grant.grant.expires_at
        ),
        EventKind::GrantRedeemed { action_id, .. } => {
            format!("REDEEMED  {}", name(action_id, names))
        }
        EventKind::ExecutionReported { action_id, outcome } => format!(
            "EXECUTED  {} — {}",
            name(action_id, names),
            if outcome.succeeded {
                "succeeded"
            } else {
                "failed"
            }
        ),
        EventKind::KeyEnrolled {
            approver_id,
            key_kind,
            key_id,
            ..
        } => format!(
            "ENROLLED  {approver_id}: {} {}",
            key_kind.label(),
            key_id.short()
        ),
        EventKind::PolicyChanged { policy_hash, .. } => {
            format!("POLICY    now {}", &policy_hash.to_hex()[..16])
        }
        _ => return None,
    })
}

async fn checkpoints(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(20)) => {}
            _ = stop.changed() => return,
        }
        if let Ok(cp) = current_checkpoint(&state).await {
            println!(
                "          CHECKPOINT {} events, root {}…, signed by {}",
                cp.checkpoint.tree_size,
                &cp.checkpoint.root_hash.to_hex()[..16],
                state.key.public().key_id().short()
            );
        }
    }
}
