//! Console performance, measured on the real app under Xvfb against a real service, with the
//! test notification server on a private D-Bus session:
//! - submit (POST sent) → the console's D-Bus Notify call, p50/p99;
//! - an MCP agent's `write_file` call through the gate (asked, with the gate's diff of the file
//!   read through the real filesystem server) → the console's D-Bus Notify call, p50/p99;
//! - cold start (WebDriver session opened, app launched) → inbox rendered with a request;
//! - idle RSS of the console's process tree (app + WebKit web and network processes);
//! - a 10,000-line diff: click → first page rendered, and "Show all" → all rows rendered.
//!
//! `cargo bench -p countersign-console --bench console` (release build). Prints figures; asserts
//! nothing about them.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_client::Client;
use countersign_core::ActionRequest;
use countersign_gate::GateConfig;
use countersign_gate::agent::GateAgent;
use countersign_gate::upstream::Upstreams;
use fantoccini::Locator;
use serde_json::{Map, Value};
use support::notify_server::{Server, serve};
use support::*;

const NOTIFICATIONS: usize = 20;

fn request(kind: &str, i: usize, diff: Option<String>) -> ActionRequest {
    let mut body = serde_json::json!({
        "type": kind, "resource": format!("arn:aws:iam::123456789012:role/bench-{i}"),
        "environment": "prod", "justification": "benchmark", "tags": ["prod-change"],
    });
    if let Some(text) = diff {
        body["diff"] = serde_json::json!({"format": "unified", "language": "json", "text": text});
    }
    serde_json::from_value(body).expect("request")
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Resident (RSS) and proportional (PSS: shared pages divided among their users) memory in
/// KiB of `root` and all its descendants, from /proc.
fn tree_memory_kib(root: u32) -> (u64, u64, usize) {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name may contain spaces; the ppid is the second field after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        parents.push((pid, ppid));
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    let field = |file: &str, name: &str| -> u64 {
        tree.iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok())
            .filter_map(|text| {
                text.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .sum()
    };
    // Per process: which one holds the memory, and whether it is the process's own
    // (anonymous: heaps, JavaScript, caches) or mapped from files (libraries).
    for pid in &tree {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let get = |key: &str| -> u64 {
            rollup
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        println!(
            "    {:<24} PSS {:>6.1} MiB (anonymous {:>6.1}, files {:>6.1})",
            name.trim(),
            get("Pss:") as f64 / 1024.0,
            get("Pss_Anon:") as f64 / 1024.0,
            get("Pss_File:") as f64 / 1024.0
        );
    }
    (
        field("status", "VmRSS:"),
        field("smaps_rollup", "Pss:"),
        tree.len(),
    )
}

/// The `--memory-floor` console started under `xvfb-run` (a grandchild).
fn floor_pid(_xvfb_run: &std::process::Child) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            (exe.file_name()? == "countersign-console"
                && cmdline.split(|b| *b == 0).any(|a| a == b"--memory-floor"))
            .then_some(pid)
        })
}

fn console_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            (exe.file_name()? == "countersign-console").then_some(pid)
        })
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let w = World::start();
    let server = Server::default();
    let _bus = serve(&w.bus_address, server.clone()).await;
    let data = w.dir.path().join("data").display().to_string();
    let code = ok(&[
        "admin",
        "--data-dir",
        &data,
        "enrolment-code",
        "bob@example.com",
    ]);
    let c = w.console().await;
    enrol_in_ui_with(&c, &w, &code, "software").await;
    until_page(&c, "live", |t| t.contains("Live")).await;
    let agent = Client::new(&w.url)
        .expect("client")
        .with_token(w.agent_token.clone());

    // Submit → Notify. Spaced out so no two fall in one burst window (bursts are grouped).
    let mut latencies = Vec::new();
    for i in 0..NOTIFICATIONS {
        let kind = format!("iam.bench{i}");
        let req = request(&kind, i, None);
        let posted = Instant::now();
        agent.submit(&req).await.expect("submit");
        let sent = server.wait_for(&format!("{kind} ·")).await;
        latencies.push(sent.at.saturating_duration_since(posted));
        tokio::time::sleep(Duration::from_millis(3400)).await;
    }
    latencies.sort();
    println!(
        "submit → D-Bus Notify ({NOTIFICATIONS} requests): p50 {}  p99 {}  max {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1])
    );

    // An agent's call through the gate → Notify: the gate writes the action (reading the file
    // through the upstream for its diff), the service asks, the console notifies. The agent
    // reaches the gate in this process (no HTTP hop to it); the calls wait for approval until
    // the end of the run.
    let files = w.dir.path().join("gate-files");
    std::fs::create_dir_all(&files).expect("dir");
    let upstream = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/mcp/node_modules/.bin/mcp-server-filesystem");
    let config = GateConfig::parse(
        &format!(
            "service = \"{}\"\n[[upstream]]\nname = \"fs\"\ncommand = \"{}\"\nargs = [\"{}\"]\nenvironment = \"prod\"\n[upstream.tools.write_file]\nresource = \"file://{{path}}\"\npreview = \"write-file\"\n",
            w.url,
            upstream.display(),
            files.display()
        ),
        w.dir.path(),
    )
    .expect("gate config");
    let upstreams = Upstreams::connect(&config.upstreams)
        .await
        .expect("the filesystem server (npm ci in tests/mcp)");
    let mcp_agent = Arc::new(
        GateAgent::start(&w.url, upstreams, &w.agent_token)
            .await
            .expect("agent session"),
    );
    let mut waiting = Vec::new();
    let mut gated = Vec::new();
    for i in 0..NOTIFICATIONS {
        let path = files.join(format!("deploy-{i}.yaml"));
        std::fs::write(&path, "replicas: 2\n").expect("file");
        let mut arguments = Map::new();
        arguments.insert("path".into(), Value::String(path.display().to_string()));
        arguments.insert("content".into(), Value::String("replicas: 3\n".into()));
        let called = Instant::now();
        let a = mcp_agent.clone();
        waiting.push(tokio::spawn(async move {
            a.call("fs__write_file", arguments).await
        }));
        let sent = server.wait_for(&format!("deploy-{i}.yaml")).await;
        gated.push(sent.at.saturating_duration_since(called));
        tokio::time::sleep(Duration::from_millis(3400)).await;
    }
    gated.sort();
    println!(
        "MCP call through the gate → D-Bus Notify ({NOTIFICATIONS} calls): p50 {}  p99 {}  max {}",
        ms(percentile(&gated, 0.5)),
        ms(percentile(&gated, 0.99)),
        ms(gated[gated.len() - 1])
    );
    for call in waiting {
        call.abort();
    }

    // Idle RSS after the inbox holds those requests.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let console_pss = console_pid().map(|pid| {
        let (rss, pss, processes) = tree_memory_kib(pid);
        println!(
            "idle memory of the console process tree ({processes} processes): RSS {:.1} MiB, PSS {:.1} MiB",
            rss as f64 / 1024.0,
            pss as f64 / 1024.0
        );
        pss
    });

    // A 10,000-line diff: first page, then all of it.
    let mut diff = String::from("--- a/big.json\n+++ b/big.json\n@@ -1,10000 +1,10000 @@\n");
    for i in 0..10_000 {
        if i % 10 == 0 {
            diff.push_str(&format!("-  \"k{i}\": \"old value {i}\",\n"));
            diff.push_str(&format!("+  \"k{i}\": \"new value {i}\",\n"));
        } else {
            diff.push_str(&format!("   \"k{i}\": \"same {i}\",\n"));
        }
    }
    agent
        .submit(&request("iam.bigdiff", 0, Some(diff)))
        .await
        .expect("submit");
    until_page(&c, "the big diff arrives", |t| t.contains("iam.bigdiff")).await;
    let item = c
        .find(Locator::XPath(
            "//button[@data-testid='inbox-item'][.//*[contains(text(),'iam.bigdiff')]]",
        ))
        .await
        .expect("the big-diff request in the inbox");
    let started = Instant::now();
    item.click().await.expect("open");
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css(".diff-table tr.row"))
        .await
        .expect("diff rendered");
    let first_page = started.elapsed();
    let started = Instant::now();
    click(&c, "[data-testid=diff-held] button:nth-of-type(2)").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = c
            .execute(
                "return document.querySelectorAll('.diff-table tr.row').length",
                vec![],
            )
            .await
            .expect("count rows");
        if rows.as_u64().unwrap_or(0) >= 3_000 {
            break;
        }
        assert!(Instant::now() < deadline, "show all never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = started.elapsed();
    println!(
        "10,000-line diff (1,000 changed): first page {}  show all {}",
        ms(first_page),
        ms(all)
    );

    // Cold start: a new session launches the app, which opens the development key without a
    // PIN, connects, and renders the inbox.
    c.close().await.expect("close");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let c = w.console().await;
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css("[data-testid=inbox-item]"))
        .await
        .expect("inbox rendered");
    println!(
        "cold start (app launched) → inbox rendered: {}",
        ms(started.elapsed())
    );
    c.close().await.expect("close");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The floor, in the same run once the console has quit (so neither shares its libraries'
    // pages with the other): the same binary's window with an empty page (`--memory-floor`),
    // the same kind of display server and the same session bus, idle as long.
    if let Some(console_pss) = console_pss {
        let mut floor = std::process::Command::new("xvfb-run")
            .args(["-a", "--server-args=-screen 0 1280x800x24"])
            .arg(CONSOLE)
            .arg("--memory-floor")
            .env("DBUS_SESSION_BUS_ADDRESS", &w.bus_address)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("xvfb-run");
        tokio::time::sleep(Duration::from_secs(8)).await;
        let floor_pid = floor_pid(&floor);
        if let Some(pid) = floor_pid {
            let (rss, pss, processes) = tree_memory_kib(pid);
            println!(
                "idle memory of an empty window of the same binary and settings ({processes} processes): RSS {:.1} MiB, PSS {:.1} MiB",
                rss as f64 / 1024.0,
                pss as f64 / 1024.0
            );
            println!(
                "console / empty window (PSS): {:.2}x",
                console_pss as f64 / pss.max(1) as f64
            );
        }
        let _ = std::process::Command::new("pkill")
            .args(["-f", "--", "--memory-floor"])
            .status();
        let _ = floor.kill();
        let _ = floor.wait();
    }
}
