//! The gate with real parts nobody here wrote: `@modelcontextprotocol/server-filesystem` (npm) as
//! the upstream, started by the gate, and the official Python MCP SDK as the agent over
//! Streamable HTTP, in front of a real `countersign serve`. An allowed read passes; a write waits
//! for bob's signature and then changes the file exactly as shown; a denied write leaves the file
//! untouched and the agent reads the comment; the upstream's secret never reaches the agent's
//! side or the audit log.
//!
//! Needs `tests/mcp/node_modules` (`npm ci` there) and the Python SDK in
//! `/root/.cache/countersign-venv` (or `COUNTERSIGN_PYTHON`); `scripts/setup.sh` installs both.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use countersign_testdevices::{Gate, SoftHsm};
use support::*;

const POLICY: &str = r#"package countersign
import rego.v1

decision := {"outcome": "allow", "reason": "reading is fine"} if startswith(input.action.type, "mcp.fs.read")
else := {"outcome": "allow", "reason": "listing is fine"} if startswith(input.action.type, "mcp.fs.list")
else := {"outcome": "require_approval", "reason": "writes need security", "quorum": 1, "groups": ["security"],
         "ttl_seconds": 120, "require_hardware_key": false, "quick_approve": false}
"#;

const SECRET: &str = "upstream-secret-7f3a9c";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> String {
    std::env::var("COUNTERSIGN_PYTHON")
        .unwrap_or_else(|_| "/root/.cache/countersign-venv/bin/python".to_owned())
}

/// The Python SDK agent (`tests/mcp/agent.py`) with the agent's token in its environment.
fn agent(url: &str, token: &str, args: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.arg(repo().join("tests/mcp/agent.py"))
        .arg(url)
        .args(args)
        .env("COUNTERSIGN_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "agent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The agent calling `tool` with `arguments`, started (a call that may wait for a person).
fn spawn_call(url: &str, token: &str, tool: &str, arguments: &serde_json::Value) -> Child {
    agent(url, token, &["call", tool, &arguments.to_string()])
        .spawn()
        .expect("agent")
}

fn start_gate(config: &Path) -> Gate {
    Gate::start(Path::new(BIN), config)
}

/// `countersign serve` on `w`'s data directory, deciding with the Rego `policy`.
fn serve_with_policy(w: &World, policy: &str) -> Server {
    let path = w.root.join("policy.rego");
    std::fs::write(&path, policy).expect("policy");
    Server::start_with(
        &w.data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--policy",
            &path.display().to_string(),
        ],
    )
}

/// The `request_created` event of request `id`, from the service's database.
fn request_created(data: &Path, id: &str) -> serde_json::Value {
    let out = Command::new("sqlite3")
        .arg(data.join("countersign.db"))
        .arg(format!(
            "SELECT event_json FROM audit_events WHERE kind = 'request_created' AND event_json LIKE '%{id}%'"
        ))
        .output()
        .expect("sqlite3");
    serde_json::from_slice(&out.stdout).expect("the event")
}

/// [`wait_pending`] for an approver whose key needs `env` (a token's configuration and PIN).
fn pending_with(profile: &str, env: &[(&str, &str)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = ok_env(&["pending", "--profile", profile], env);
        if let Some(line) = out.lines().next() {
            return line.split_whitespace().next().expect("id").to_owned();
        }
        assert!(Instant::now() < deadline, "no pending request appeared");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_mcp_agent_reaches_real_tools_only_through_approval() {
    let w = World::new();
    let server = serve_with_policy(&w, POLICY);
    // bob's key is on a PKCS#11 token (SoftHSM2): every approval below is signed there.
    let token = SoftHsm::init();
    let conf = token.conf().display().to_string();
    let module = token.module().display().to_string();
    let hsm: [(&str, &str); 2] = [
        ("SOFTHSM2_CONF", conf.as_str()),
        ("COUNTERSIGN_PIN", SoftHsm::PIN),
    ];
    let bob = w.enroll_with(
        "bob",
        &server.url,
        &[
            "--backend",
            "pkcs11",
            "--module",
            &module,
            "--token-label",
            SoftHsm::LABEL,
            "--label",
            "bob-token",
        ],
        &hsm,
    );

    let files = w.root.join("files");
    std::fs::create_dir_all(&files).expect("dir");
    let notes = files.join("notes.txt");
    std::fs::write(&notes, "replicas: 2\n").expect("file");
    std::fs::write(w.root.join("fs.secret"), format!("{SECRET}\n")).expect("secret");
    let config = w.root.join("gate.toml");
    std::fs::write(
        &config,
        format!(
            r#"service = "{url}"
[[upstream]]
name = "fs"
command = "{server}"
args = ["{files}"]
env_files = {{ FS_API_KEY = "fs.secret" }}
environment = "prod"
tags = ["files"]
[upstream.tools.write_file]
resource = "file://{{path}}"
preview = "write-file"
[upstream.tools.edit_file]
resource = "file://{{path}}"
preview = "dry-run-diff"
"#,
            url = server.url,
            server = repo()
                .join("tests/mcp/node_modules/.bin/mcp-server-filesystem")
                .display(),
            files = files.display(),
        ),
    )
    .expect("gate.toml");
    let gate = start_gate(&config);
    let mut agent_saw = String::new();

    // The tools are the upstream's, namespaced.
    let listed = json_of(
        &agent(&gate.url, &w.token, &["list"])
            .output()
            .expect("agent"),
    );
    let names: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        names.contains(&"fs__read_text_file") && names.contains(&"fs__write_file"),
        "{names:?}"
    );
    agent_saw.push_str(&listed.to_string());

    // An allowed read passes straight through.
    let path = notes.display().to_string();
    let read = json_of(
        &agent(
            &gate.url,
            &w.token,
            &[
                "call",
                "fs__read_text_file",
                &serde_json::json!({"path": path}).to_string(),
            ],
        )
        .output()
        .expect("agent"),
    );
    assert_eq!(read["is_error"], false, "{read}");
    assert_eq!(read["text"], "replicas: 2\n");
    agent_saw.push_str(&read.to_string());

    // A write waits for bob; approved, it runs once and the file is exactly as shown.
    let write = spawn_call(
        &gate.url,
        &w.token,
        "fs__write_file",
        &serde_json::json!({"path": path, "content": "replicas: 3\n"}),
    );
    let id = pending_with(&bob, &hsm);
    assert_eq!(
        std::fs::read_to_string(&notes).expect("file"),
        "replicas: 2\n",
        "nothing runs before approval"
    );
    let shown = ok_env(&["pending", "--profile", &bob], &hsm);
    assert!(
        shown.contains("mcp.fs.write_file") && shown.contains(&format!("file://{path}")),
        "{shown}"
    );
    ok_env(
        &[
            "approve",
            &id,
            "--profile",
            &bob,
            "--comment",
            "three it is",
        ],
        &hsm,
    );
    let written = json_of(&write.wait_with_output().expect("agent"));
    assert_eq!(written["is_error"], false, "{written}");
    assert_eq!(
        std::fs::read_to_string(&notes).expect("file"),
        "replicas: 3\n"
    );
    agent_saw.push_str(&written.to_string());
    // What bob judged was the gate's diff against the file as it was, not the agent's word.
    let created = request_created(&w.data, &id);
    assert_eq!(
        created["event"]["action"]["request"]["diff"],
        serde_json::json!({"format": "before-after", "before": "replicas: 2\n", "after": "replicas: 3\n"}),
        "{created}"
    );

    // An edit shows the upstream's own dry run, and runs only once approved.
    let edit = spawn_call(
        &gate.url,
        &w.token,
        "fs__edit_file",
        &serde_json::json!({"path": path, "edits": [{"oldText": "replicas: 3", "newText": "replicas: 4"}]}),
    );
    let id = pending_with(&bob, &hsm);
    assert_eq!(
        std::fs::read_to_string(&notes).expect("file"),
        "replicas: 3\n",
        "the dry run changed nothing"
    );
    let created = request_created(&w.data, &id);
    let diff = created["event"]["action"]["request"]["diff"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        diff.contains("-replicas: 3") && diff.contains("+replicas: 4"),
        "{diff}"
    );
    ok_env(&["approve", &id, "--profile", &bob], &hsm);
    let edited = json_of(&edit.wait_with_output().expect("agent"));
    assert_eq!(edited["is_error"], false, "{edited}");
    assert_eq!(
        std::fs::read_to_string(&notes).expect("file"),
        "replicas: 4\n"
    );
    agent_saw.push_str(&edited.to_string());

    // A denied write changes nothing, and the agent reads why.
    let write = spawn_call(
        &gate.url,
        &w.token,
        "fs__write_file",
        &serde_json::json!({"path": path, "content": "replicas: 300\n"}),
    );
    let id = pending_with(&bob, &hsm);
    ok_env(
        &[
            "deny",
            &id,
            "--profile",
            &bob,
            "--comment",
            "300 is a typo, use 3",
        ],
        &hsm,
    );
    let denied = json_of(&write.wait_with_output().expect("agent"));
    assert_eq!(denied["is_error"], true, "{denied}");
    assert!(
        denied["text"]
            .as_str()
            .unwrap_or_default()
            .contains("300 is a typo"),
        "{denied}"
    );
    assert_eq!(
        std::fs::read_to_string(&notes).expect("file"),
        "replicas: 4\n"
    );
    agent_saw.push_str(&denied.to_string());

    // An agent that gives up on a waiting call withdraws its request: it leaves bob's inbox and
    // can never be approved.
    let gave_up = agent(
        &gate.url,
        &w.token,
        &[
            "call",
            "fs__write_file",
            &serde_json::json!({"path": path, "content": "never\n"}).to_string(),
        ],
    )
    .env("CANCEL_AFTER", "3")
    .output()
    .expect("agent");
    let gave_up = json_of(&gave_up);
    assert_eq!(gave_up["cancelled"], true, "{gave_up}");
    assert!(
        !gave_up["progress"].as_array().expect("progress").is_empty(),
        "the agent heard how the approval stood while it waited: {gave_up}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inbox = ok_env(&["pending", "--profile", &bob], &hsm);
        if inbox.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still pending: {inbox}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        std::fs::read_to_string(&notes).expect("file"),
        "replicas: 4\n"
    );

    // Without a token the gate offers nothing.
    let refused = agent(&gate.url, "csa_not-a-token", &["list"])
        .output()
        .expect("agent");
    assert!(!refused.status.success());

    // The upstream's secret is nowhere the agent or the log can see.
    assert!(!agent_saw.contains(SECRET));
    let log = Command::new("sqlite3")
        .arg(w.data.join("countersign.db"))
        .arg("SELECT group_concat(event_json, ' ') FROM audit_events")
        .output()
        .expect("sqlite3");
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.contains("mcp.fs.write_file"),
        "the calls are in the log"
    );
    assert!(!log.contains(SECRET), "the secret reached the audit log");
    let kinds = Command::new("sqlite3")
        .arg(w.data.join("countersign.db"))
        .arg("SELECT group_concat(DISTINCT json_extract(event_json, '$.event.key_kind')) FROM audit_events WHERE kind = 'decision_recorded'")
        .output()
        .expect("sqlite3");
    assert_eq!(
        String::from_utf8_lossy(&kinds.stdout).trim(),
        "pkcs11",
        "every decision was signed on the token"
    );
    drop(gate);
    server.stop();
}

const PERMISSIVE: &str = r#"package countersign
import rego.v1

decision := {"outcome": "require_approval", "reason": "deleting needs security", "quorum": 1, "groups": ["security"],
             "ttl_seconds": 120, "require_hardware_key": false, "quick_approve": false} if input.action.type in {"mcp.bad.delete_everything", "mcp.bad.resource-read"}
else := {"outcome": "allow", "reason": "the rest is harmless here"}
"#;

/// Bad input and bad upstreams, each a clear error to the agent, nothing forwarded twice:
/// an unknown tool, oversized arguments, an upstream that hangs (timeout) and one that dies
/// mid-call, and a tool that lies about being read-only (its claim reaches the policy as a hint;
/// the policy still holds the call, and a denial runs nothing).
#[test]
fn bad_calls_and_bad_upstreams_are_clear_errors() {
    let w = World::new();
    let server = serve_with_policy(&w, PERMISSIVE);
    let bob = w.enroll("bob", &server.url);
    let marker = w.root.join("deleted");
    let config = w.root.join("gate.toml");
    std::fs::write(
        &config,
        format!(
            r#"service = "{url}"
[[upstream]]
name = "bad"
command = "{python}"
args = ["{script}", "{marker}"]
environment = "prod"
call_timeout_seconds = 2
resources_need_approval = true
"#,
            url = server.url,
            python = python(),
            script = repo().join("tests/mcp/misbehaving.py").display(),
            marker = marker.display(),
        ),
    )
    .expect("gate.toml");
    let gate = start_gate(&config);
    let call = |tool: &str, args: serde_json::Value| {
        json_of(
            &agent(&gate.url, &w.token, &["call", tool, &args.to_string()])
                .output()
                .expect("agent"),
        )
    };

    // Resources and prompts pass through read-only; this upstream's resource reads need
    // approval, so a read waits for bob.
    let offered = json_of(
        &agent(&gate.url, &w.token, &["resources"])
            .output()
            .expect("agent"),
    );
    assert_eq!(
        offered,
        serde_json::json!({"resources": ["memo://plan"], "prompts": ["bad__review"]})
    );
    let prompt = json_of(
        &agent(
            &gate.url,
            &w.token,
            &["prompt", "bad__review", r#"{"change": "v2"}"#],
        )
        .output()
        .expect("agent"),
    );
    assert!(
        prompt["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Review this change carefully: v2"),
        "{prompt}"
    );
    let reading = agent(&gate.url, &w.token, &["read", "memo://plan"])
        .spawn()
        .expect("agent");
    let id = wait_pending(&bob);
    let created = request_created(&w.data, &id);
    assert_eq!(
        created["event"]["action"]["request"]["type"],
        "mcp.bad.resource-read"
    );
    assert_eq!(
        created["event"]["action"]["request"]["resource"],
        "memo://plan"
    );
    ok(&["approve", &id, "--profile", &bob]);
    let read = json_of(&reading.wait_with_output().expect("agent"));
    assert_eq!(read["text"], "ship on friday", "{read}");
    let unknown = json_of(
        &agent(&gate.url, &w.token, &["read", "memo://secret"])
            .output()
            .expect("agent"),
    );
    assert!(unknown.get("protocol_error").is_some(), "{unknown}");

    let ok_call = call("bad__echo", serde_json::json!({"text": "hi"}));
    assert_eq!(ok_call["is_error"], false, "{ok_call}");

    let unknown = call("bad__nope", serde_json::json!({}));
    assert!(
        unknown["protocol_error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown tool"),
        "{unknown}"
    );
    let elsewhere = call("other__echo", serde_json::json!({"text": "hi"}));
    assert!(elsewhere.get("protocol_error").is_some(), "{elsewhere}");

    let big_args = w.root.join("big.json");
    std::fs::write(
        &big_args,
        serde_json::json!({"text": "x".repeat(300 * 1024)}).to_string(),
    )
    .expect("args");
    let big = json_of(
        &agent(
            &gate.url,
            &w.token,
            &["call", "bad__echo", &format!("@{}", big_args.display())],
        )
        .output()
        .expect("agent"),
    );
    assert_eq!(big["is_error"], true, "{big}");
    assert!(
        big["text"]
            .as_str()
            .unwrap_or_default()
            .contains("refused by the gate"),
        "{big}"
    );

    let hung = call("bad__hang", serde_json::json!({"seconds": 60}));
    assert_eq!(hung["is_error"], true, "{hung}");
    assert!(
        hung["text"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer within 2 s"),
        "{hung}"
    );

    // The lying tool: its read-only claim does not decide; the policy holds it, bob denies.
    let lying = agent(
        &gate.url,
        &w.token,
        &["call", "bad__delete_everything", r#"{"path": "/"}"#],
    )
    .spawn()
    .expect("agent");
    let id = wait_pending(&bob);
    let created = request_created(&w.data, &id);
    assert_eq!(
        created["event"]["action"]["request"]["context"]["mcp"]["annotations"]["readOnlyHint"],
        true,
        "the claim is recorded as a hint"
    );
    ok(&[
        "deny",
        &id,
        "--profile",
        &bob,
        "--comment",
        "it is not read-only",
    ]);
    let denied = json_of(&lying.wait_with_output().expect("agent"));
    assert_eq!(denied["is_error"], true, "{denied}");
    assert!(!marker.exists(), "a denied call ran");

    // An upstream that dies mid-call: a clear error now, and for the calls after it.
    let crashed = call("bad__crash", serde_json::json!({"reason": "test"}));
    assert_eq!(crashed["is_error"], true, "{crashed}");
    assert!(
        crashed["text"]
            .as_str()
            .unwrap_or_default()
            .contains("upstream"),
        "{crashed}"
    );
    let after = call("bad__echo", serde_json::json!({"text": "still there?"}));
    assert_eq!(after["is_error"], true, "{after}");

    // Every forwarded call's outcome is recorded, failures included, each once.
    let outcomes = Command::new("sqlite3")
        .arg(w.data.join("countersign.db"))
        .arg("SELECT count(*), sum(json_extract(event_json, '$.event.outcome.succeeded') = 0) FROM audit_events WHERE kind = 'execution_reported'")
        .output()
        .expect("sqlite3");
    let outcomes = String::from_utf8_lossy(&outcomes.stdout).trim().to_owned();
    assert_eq!(
        outcomes, "5|3",
        "the resource read and echo ok; hang, crash and the echo after it failed"
    );
    drop(gate);
    server.stop();
}

/// A local agent reaches the gate over stdio (`countersign gate --stdio`), with its token from
/// the environment: the same tools, the same approval flow.
#[test]
fn a_local_agent_reaches_the_gate_over_stdio() {
    let w = World::new();
    let server = serve_with_policy(&w, POLICY);
    let files = w.root.join("files");
    std::fs::create_dir_all(&files).expect("dir");
    let notes = files.join("notes.txt");
    std::fs::write(&notes, "local\n").expect("file");
    let config = w.root.join("gate.toml");
    std::fs::write(
        &config,
        format!(
            r#"service = "{url}"
[[upstream]]
name = "fs"
command = "{server}"
args = ["{files}"]
environment = "dev"
"#,
            url = server.url,
            server = repo()
                .join("tests/mcp/node_modules/.bin/mcp-server-filesystem")
                .display(),
            files = files.display(),
        ),
    )
    .expect("gate.toml");
    let endpoint = format!("stdio:{}", config.display());
    let listed = json_of(
        &agent(&endpoint, &w.token, &["list"])
            .env("COUNTERSIGN_BIN", BIN)
            .output()
            .expect("agent"),
    );
    assert!(
        listed.to_string().contains("fs__read_text_file"),
        "{listed}"
    );
    let read = json_of(
        &agent(
            &endpoint,
            &w.token,
            &[
                "call",
                "fs__read_text_file",
                &serde_json::json!({"path": notes.display().to_string()}).to_string(),
            ],
        )
        .env("COUNTERSIGN_BIN", BIN)
        .output()
        .expect("agent"),
    );
    assert_eq!(read["text"], "local\n", "{read}");
    server.stop();
}

/// A Streamable HTTP upstream with its credential from a file: a second gate in front of the
/// first (which holds the filesystem server), reaching it with a token only the second gate
/// knows. The agent of the outer gate reads through both; the inner token never reaches it.
#[test]
fn an_http_upstream_is_reached_with_the_gates_own_credentials() {
    let w = World::new();
    let server = serve_with_policy(
        &w,
        "package countersign\nimport rego.v1\ndecision := {\"outcome\": \"allow\", \"reason\": \"reads\"} if contains(input.action.type, \"read\")\nelse := {\"outcome\": \"deny\", \"reason\": \"only reads here\"}\n",
    );
    let inner_token = w.admin(&["agent-token", "agent:outer-gate"]);
    let files = w.root.join("files");
    std::fs::create_dir_all(&files).expect("dir");
    let notes = files.join("notes.txt");
    std::fs::write(&notes, "two hops\n").expect("file");
    let inner_config = w.root.join("inner.toml");
    std::fs::write(
        &inner_config,
        format!(
            "service = \"{}\"\n[[upstream]]\nname = \"fs\"\ncommand = \"{}\"\nargs = [\"{}\"]\nenvironment = \"prod\"\n",
            server.url,
            repo()
                .join("tests/mcp/node_modules/.bin/mcp-server-filesystem")
                .display(),
            files.display()
        ),
    )
    .expect("inner.toml");
    let inner = start_gate(&inner_config);
    std::fs::write(
        w.root.join("inner.header"),
        format!("Bearer {inner_token}\n"),
    )
    .expect("header");
    let outer_config = w.root.join("outer.toml");
    std::fs::write(
        &outer_config,
        format!(
            "service = \"{}\"\n[[upstream]]\nname = \"remote\"\nurl = \"{}\"\nheader_files = {{ Authorization = \"inner.header\" }}\nenvironment = \"prod\"\n",
            server.url, inner.url
        ),
    )
    .expect("outer.toml");
    let outer = start_gate(&outer_config);
    let listed = json_of(
        &agent(&outer.url, &w.token, &["list"])
            .output()
            .expect("agent"),
    );
    assert!(
        listed.to_string().contains("remote__fs__read_text_file"),
        "{listed}"
    );
    let read = json_of(
        &agent(
            &outer.url,
            &w.token,
            &[
                "call",
                "remote__fs__read_text_file",
                &serde_json::json!({"path": notes.display().to_string()}).to_string(),
            ],
        )
        .output()
        .expect("agent"),
    );
    assert_eq!(read["text"], "two hops\n", "{read}");
    assert!(!read.to_string().contains(&inner_token));
    // The gate accepts connections like the service does: one that sends nothing is closed at
    // the header deadline (10 s) instead of holding a place forever.
    let addr = outer
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let mut silent = std::net::TcpStream::connect(&addr).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    match std::io::Read::read(&mut silent, &mut buf) {
        // Closed by the gate (EOF or reset): what should happen.
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("a silent connection was answered ({n} bytes) instead of closed"),
        Err(e) => panic!("a silent connection was still open after 20 s: {e}"),
    }
    drop(outer);
    drop(inner);
    server.stop();
}

const GIT_POLICY: &str = r#"package countersign
import rego.v1

decision := {"outcome": "allow", "reason": "looking is fine"} if input.action.type in {"mcp.git.git_status", "mcp.git.git_diff_staged", "mcp.git.git_log"}
else := {"outcome": "require_approval", "reason": "changing history needs security", "quorum": 1, "groups": ["security"],
         "ttl_seconds": 120, "require_hardware_key": false, "quick_approve": false}
"#;

/// `git` run in `repo`, which must succeed; its standard output.
fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The reference git MCP server (`mcp-server-git`, PyPI) behind the gate: a commit waits for
/// approval showing its staged diff, and runs as approved; a commit whose staged changes grow
/// after the approver looked is approved but not forwarded, and nothing is committed.
#[test]
fn a_commit_shows_its_staged_diff_and_commits_only_what_was_shown() {
    let w = World::new();
    let server = serve_with_policy(&w, GIT_POLICY);
    let bob = w.enroll("bob", &server.url);
    let repo_dir = w.root.join("repo");
    std::fs::create_dir_all(&repo_dir).expect("dir");
    git(&repo_dir, &["init", "-q", "-b", "main"]);
    git(&repo_dir, &["config", "user.name", "Agent"]);
    git(&repo_dir, &["config", "user.email", "agent@example.com"]);
    std::fs::write(repo_dir.join("deploy.yaml"), "replicas: 2\n").expect("file");
    git(&repo_dir, &["add", "deploy.yaml"]);
    git(&repo_dir, &["commit", "-q", "-m", "first"]);
    let config = w.root.join("gate.toml");
    std::fs::write(
        &config,
        format!(
            r#"service = "{url}"
[[upstream]]
name = "git"
command = "{python}"
args = ["-m", "mcp_server_git", "--repository", "{repo}"]
environment = "prod"
[upstream.tools.git_commit]
type = "mcp.git.git_commit"
resource = "git://{{repo_path}}"
preview = "staged-diff"
"#,
            url = server.url,
            python = python(),
            repo = repo_dir.display(),
        ),
    )
    .expect("gate.toml");
    let gate = start_gate(&config);
    let repo_path = repo_dir.display().to_string();

    // Looking passes straight through.
    let status = json_of(
        &agent(
            &gate.url,
            &w.token,
            &[
                "call",
                "git__git_status",
                &serde_json::json!({"repo_path": repo_path}).to_string(),
            ],
        )
        .output()
        .expect("agent"),
    );
    assert_eq!(status["is_error"], false, "{status}");

    // A commit waits; bob's request carries the staged diff, read by the gate.
    std::fs::write(repo_dir.join("deploy.yaml"), "replicas: 3\n").expect("file");
    git(&repo_dir, &["add", "deploy.yaml"]);
    let commit = spawn_call(
        &gate.url,
        &w.token,
        "git__git_commit",
        &serde_json::json!({"repo_path": repo_path, "message": "three replicas"}),
    );
    let id = wait_pending(&bob);
    let created = request_created(&w.data, &id);
    let diff = created["event"]["action"]["request"]["diff"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        diff.contains("deploy.yaml")
            && diff.contains("-replicas: 2")
            && diff.contains("+replicas: 3"),
        "{created}"
    );
    assert_eq!(git(&repo_dir, &["rev-list", "--count", "HEAD"]).trim(), "1");
    ok(&["approve", &id, "--profile", &bob]);
    let committed = json_of(&commit.wait_with_output().expect("agent"));
    assert_eq!(committed["is_error"], false, "{committed}");
    assert_eq!(
        git(&repo_dir, &["log", "-1", "--format=%s"]).trim(),
        "three replicas"
    );
    assert_eq!(
        git(&repo_dir, &["show", "HEAD:deploy.yaml"]),
        "replicas: 3\n",
        "the commit holds exactly what was shown"
    );

    // More is staged after bob looked: the approval covers the diff he saw, not this one.
    std::fs::write(repo_dir.join("deploy.yaml"), "replicas: 4\n").expect("file");
    git(&repo_dir, &["add", "deploy.yaml"]);
    let commit = spawn_call(
        &gate.url,
        &w.token,
        "git__git_commit",
        &serde_json::json!({"repo_path": repo_path, "message": "four replicas"}),
    );
    let id = wait_pending(&bob);
    std::fs::write(repo_dir.join("secrets.env"), "TOKEN=exfiltrated\n").expect("file");
    git(&repo_dir, &["add", "secrets.env"]);
    ok(&["approve", &id, "--profile", &bob]);
    let refused = json_of(&commit.wait_with_output().expect("agent"));
    assert_eq!(refused["is_error"], true, "{refused}");
    assert!(
        refused["text"]
            .as_str()
            .unwrap_or_default()
            .contains("not forwarded"),
        "{refused}"
    );
    assert_eq!(
        git(&repo_dir, &["log", "-1", "--format=%s"]).trim(),
        "three replicas",
        "nothing was committed"
    );
    // The log says the approved call was not run, and why.
    let reported = Command::new("sqlite3")
        .arg(w.data.join("countersign.db"))
        .arg(format!(
            "SELECT event_json FROM audit_events WHERE kind = 'execution_reported' AND event_json LIKE '%{id}%'"
        ))
        .output()
        .expect("sqlite3");
    let reported = String::from_utf8_lossy(&reported.stdout);
    assert!(
        reported.contains("not forwarded") && reported.contains("\"succeeded\":false"),
        "{reported}"
    );
    drop(gate);
    server.stop();
}

const CONNECTIONS_POLICY: &str = r#"package countersign
import rego.v1

decision := {"outcome": "allow", "reason": "masked reads are fine"} if {
    input.action.type == "sql.select"
    not input.action.parameters.reveal_classified
}
else := {"outcome": "allow", "reason": "status checks are fine"} if input.action.type == "command.status"
else := {"outcome": "require_approval", "reason": "writes need security", "quorum": 1, "groups": ["security"],
         "ttl_seconds": 120, "require_hardware_key": false, "quick_approve": false}
"#;

/// `countersign exec` against the database connection `crm` of the gate at `url`, started.
fn spawn_exec(url: &str, token: &str, sql: &str) -> Child {
    Command::new(BIN)
        .args(["exec", "--gate", url, "--connection", "crm", "--sql", sql])
        .args(["--justification", "support ticket 4711"])
        .env("COUNTERSIGN_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exec")
}

/// A gate with the database connection `crm` (the minting role's DSN in a file beside it).
fn crm_gate(w: &World, service: &str, minting: &str) -> PathBuf {
    std::fs::write(w.root.join("crm.dsn"), minting).expect("dsn");
    let config = w.root.join("gate.toml");
    std::fs::write(
        &config,
        format!(
            r#"service = "{service}"
[[connection]]
name = "crm"
postgres_file = "crm.dsn"
environment = "prod"
statement_timeout_seconds = 20
[connection.classification]
"customers.email" = ["pii"]
"customers.phone" = ["pii"]
"#
        ),
    )
    .expect("gate.toml");
    config
}

/// SQL through the gate from the shell: `countersign exec` asks, bob approves with
/// `countersign approve` having seen the rows the write changes, and the statement runs as a
/// role that exists only for it. Then the gate is killed while an approved statement runs: the
/// database rolls it back, and the restarted gate drops the role left behind and records the
/// run as failed.
#[test]
fn sql_approved_from_the_cli_runs_once_and_a_killed_gate_records_it_failed() {
    let pg = countersign_testdevices::Postgres::shared();
    let (db, minting) = pg.crm_database("cli");
    let w = World::new();
    let server = serve_with_policy(&w, CONNECTIONS_POLICY);
    let bob = w.enroll("bob", &server.url);
    let config = crm_gate(&w, &server.url, &minting);
    let gate = start_gate(&config);
    let prefix = pg.psql(
        &db,
        "SELECT 'cs_grant_' || left(encode(sha256('crm'), 'hex'), 8) || '_'",
    );
    let roles = format!("SELECT count(*) FROM pg_roles WHERE starts_with(rolname, '{prefix}')");

    // A masked read runs at once.
    let read = Command::new(BIN)
        .args(["exec", "--gate", &gate.url, "--connection", "crm"])
        .args(["--sql", "SELECT id, email FROM customers WHERE id = 1"])
        .env("COUNTERSIGN_TOKEN", &w.token)
        .stdin(Stdio::null())
        .output()
        .expect("exec");
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&read.stdout).expect("json");
    assert_eq!(
        result["rows"],
        serde_json::json!([{"id": 1, "email": "••• (classified)"}])
    );

    // A write waits, showing bob how many rows and which; approved, it runs once.
    let write = spawn_exec(
        &gate.url,
        &w.token,
        "UPDATE customers SET plan = 'pro' WHERE plan = 'free'",
    );
    let id = wait_pending(&bob);
    let created = request_created(&w.data, &id);
    let request = &created["event"]["action"]["request"];
    assert_eq!(request["type"], "sql.update");
    assert_eq!(request["resource"], "postgres://crm/public.customers");
    let shown = request["diff"]["after"].as_str().unwrap_or_default();
    assert!(
        shown.starts_with("-- UPDATE public.customers: 2 rows affected"),
        "{shown}"
    );
    assert!(!shown.contains("bo@example.com"), "{shown}");
    assert_eq!(pg.psql(&db, &roles), "0", "no role while it waits");
    ok(&["approve", &id, "--profile", &bob]);
    let out = write.wait_with_output().expect("exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(result["rows_affected"], 2);
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM customers WHERE plan = 'pro'"),
        "3"
    );
    assert_eq!(
        pg.psql(&db, &roles),
        "0",
        "the role went with its statement"
    );

    // The gate is killed while an approved statement runs.
    let slow = "UPDATE customers SET plan = 'gone' WHERE id = 1 AND pg_sleep(3) IS NOT NULL";
    let write = spawn_exec(&gate.url, &w.token, slow);
    let id = wait_pending(&bob);
    ok(&["approve", &id, "--profile", &bob]);
    let running = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE starts_with(usename, '{prefix}') AND state = 'active'"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.psql(&db, &running) == "0" {
        assert!(
            Instant::now() < deadline,
            "the approved statement never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(gate);
    let out = write.wait_with_output().expect("exec");
    assert!(
        !out.status.success(),
        "the agent learns its call did not finish"
    );
    // The statement finishes its sleep, finds its client gone, and is rolled back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.psql(&db, &running) != "0" {
        assert!(Instant::now() < deadline, "the statement never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pg.psql(&db, "SELECT plan FROM customers WHERE id = 1"),
        "pro"
    );
    assert_eq!(pg.psql(&db, &roles), "1", "the killed gate left its role");

    let gate = start_gate(&config);
    assert_eq!(pg.psql(&db, &roles), "0", "swept at start");
    let outcome = Command::new("sqlite3")
        .arg(w.data.join("countersign.db"))
        .arg(format!(
            "SELECT json_extract(event_json, '$.event.outcome.succeeded') || '|' || json_extract(event_json, '$.event.outcome.detail') FROM audit_events WHERE kind = 'execution_reported' AND event_json LIKE '%{id}%'"
        ))
        .output()
        .expect("sqlite3");
    let outcome = String::from_utf8_lossy(&outcome.stdout).trim().to_owned();
    assert!(
        outcome.starts_with("0|") && outcome.contains("rolled back by the database"),
        "{outcome:?}"
    );
    drop(gate);
    server.stop();
}

/// A command connection from the shell: `countersign exec -- name=value` fills the template's
/// arguments, the program's output reaches the terminal while it still runs, and its exit status
/// is exec's.
#[test]
fn a_commands_output_reaches_exec_as_it_is_printed() {
    let w = World::new();
    let server = serve_with_policy(&w, CONNECTIONS_POLICY);
    let config = w.root.join("gate.toml");
    // The program waits, after its first line, for the test to have read that line: output that
    // only arrived at the end would leave it waiting until it is killed at its timeout.
    let seen = w.root.join("first-line-seen");
    std::fs::write(
        &config,
        format!(
            r#"service = "{url}"
[[connection]]
name = "status"
command = "/bin/sh"
args = ["-c", 'echo "checking $0"; while [ ! -e "$1" ]; do sleep 0.05; done; echo "$0 is up"; echo "warned" >&2; exit 7', "{{service}}", "{seen}"]
environment = "prod"
timeout_seconds = 10
"#,
            url = server.url,
            seen = seen.display(),
        ),
    )
    .expect("gate.toml");
    let gate = start_gate(&config);
    let mut exec = Command::new(BIN)
        .args(["exec", "--gate", &gate.url, "--connection", "status", "--"])
        .arg("service=billing api")
        .env("COUNTERSIGN_TOKEN", &w.token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exec");
    let mut out = std::io::BufReader::new(exec.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).expect("first line");
    assert_eq!(first, "checking billing api\n");
    std::fs::write(&seen, "").expect("marker");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("rest");
    assert_eq!(rest, "billing api is up\n", "each line once");
    let status = exec.wait().expect("exit");
    assert_eq!(status.code(), Some(7), "the program's exit status");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut exec.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(err.contains("warned"), "{err}");
    drop(gate);
    server.stop();
}
