//! The gate's approval flow against a real approval service on loopback: an allowed call runs at
//! once and its outcome is recorded; an asked call waits (with progress) until an approver signs,
//! then runs exactly the approved arguments, once; a denial carries the approver's comment and
//! runs nothing; a policy denial runs nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

mod support;

use countersign_core::Verdict;
use countersign_gate::journal::Effect;
use countersign_gate::{Approval, ApprovalError, Progress, Ran, ToolCall, action_for};
use serde_json::{Map, Value, json};
use support::{World, world_with};

const POLICY: &str = r#"package countersign
import rego.v1

decision := {"outcome": "allow", "reason": "reads are fine"} if input.action.type == "mcp.fs.read_file"
else := {"outcome": "deny", "reason": "the frozen environment takes no changes"} if input.action.environment == "frozen"
else := {"outcome": "require_approval", "reason": "writes need security", "quorum": 1,
         "groups": ["security"], "ttl_seconds": 60, "require_hardware_key": false, "quick_approve": false}
"#;

async fn world() -> World {
    world_with(POLICY, GATE).await
}

const GATE: &str = r#"
service = "{url}"
[[upstream]]
name = "fs"
command = "mcp-server-filesystem"
environment = "prod"
[upstream.tools.write_file]
resource = "file://{path}"
[[upstream]]
name = "vault"
command = "vault-mcp"
environment = "frozen"
"#;

fn args(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_call_runs_at_once_and_its_outcome_is_recorded() {
    let w = world().await;
    let approval = Approval::connect(&w.url, &w.agent_token)
        .await
        .expect("connect");
    let arguments = args(json!({"path": "/srv/readme.md"}));
    let call = ToolCall {
        upstream: w.gate.upstream("fs").expect("fs"),
        tool: "read_file",
        arguments: &arguments,
        annotations: Some(json!({"readOnlyHint": true})),
        justification: None,
        diff: None,
    };
    let request = action_for(&call).expect("action");
    let runs = AtomicUsize::new(0);
    let got = approval
        .run(
            &request,
            Effect::External,
            |_| panic!("an allowed call does not wait"),
            |approved| {
                runs.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ran {
                        value: approved.parameters,
                        succeeded: true,
                        result: b"# readme".to_vec(),
                        detail: None,
                        exit_code: None,
                    }
                }
            },
        )
        .await
        .expect("runs");
    assert_eq!(got, arguments);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asked_call_waits_for_a_signature_then_runs_the_approved_arguments_once() {
    let w = Arc::new(world().await);
    let approval = Approval::connect(&w.url, &w.agent_token)
        .await
        .expect("connect");
    let arguments = args(json!({"path": "/srv/app.yaml", "content": "replicas: 3\n"}));
    let call = ToolCall {
        upstream: w.gate.upstream("fs").expect("fs"),
        tool: "write_file",
        arguments: &arguments,
        annotations: None,
        justification: Some("scale to three replicas"),
        diff: None,
    };
    let request = action_for(&call).expect("action");
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let decided = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runs = AtomicUsize::new(0);
    let progress = {
        let seen = seen.clone();
        let decided = decided.clone();
        let w = w.clone();
        move |p: &Progress| {
            seen.lock().expect("lock").push(p.clone());
            if !decided.swap(true, Ordering::SeqCst) {
                let (w, id) = (w.clone(), p.id);
                tokio::spawn(async move { w.decide(id, Verdict::Approve, "looks right").await });
            }
        }
    };
    let ran = approval
        .run(&request, Effect::External, progress, |approved| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                Ran {
                    value: approved.parameters,
                    succeeded: true,
                    result: b"written".to_vec(),
                    detail: None,
                    exit_code: None,
                }
            }
        })
        .await
        .expect("approved and run");
    assert_eq!(ran, arguments, "exactly the approved arguments");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let seen = seen.lock().expect("lock").clone();
    assert!(!seen.is_empty());
    assert_eq!((seen[0].approvals, seen[0].quorum), (0, 1));

    // The agent (whose token the gate uses) cannot redeem the grant again: it was spent.
    let agent = countersign_client::Client::new(&w.url)
        .expect("client")
        .with_token(w.agent_token.clone());
    let view = agent.action(seen[0].id).await.expect("view");
    let grant = view.grant.expect("grant");
    let again = agent.redeem(grant.grant.grant_id, view.digest).await;
    assert_eq!(again.expect_err("spent").code(), Some("grant_redeemed"));
    let outcome = view.outcome.expect("outcome reported");
    assert!(outcome.succeeded);
    assert!(
        outcome.detail.starts_with("result sha256:"),
        "{}",
        outcome.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_runs_nothing_and_carries_the_comment() {
    let w = Arc::new(world().await);
    let approval = Approval::connect(&w.url, &w.agent_token)
        .await
        .expect("connect");
    let arguments = args(json!({"path": "/srv/app.yaml", "content": "replicas: 300\n"}));
    let call = ToolCall {
        upstream: w.gate.upstream("fs").expect("fs"),
        tool: "write_file",
        arguments: &arguments,
        annotations: None,
        justification: None,
        diff: None,
    };
    let request = action_for(&call).expect("action");
    let decided = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = {
        let w = w.clone();
        move |p: &Progress| {
            if !decided.swap(true, Ordering::SeqCst) {
                let (w, id) = (w.clone(), p.id);
                tokio::spawn(async move {
                    w.decide(id, Verdict::Deny, "300 replicas is a typo, use 3")
                        .await
                });
            }
        }
    };
    let err = approval
        .run(&request, Effect::External, progress, |_| async {
            panic!("a denied call must not run");
            #[allow(unreachable_code)]
            Ran {
                value: (),
                succeeded: false,
                result: Vec::new(),
                detail: None,
                exit_code: None,
            }
        })
        .await
        .expect_err("denied");
    match err {
        ApprovalError::Denied { reason, .. } => {
            assert!(reason.contains("300 replicas is a typo"), "{reason}")
        }
        other => panic!("{other}"),
    }

    // The policy denies outright: nothing waits, nothing runs.
    let frozen = ToolCall {
        upstream: w.gate.upstream("vault").expect("vault"),
        tool: "rotate",
        arguments: &arguments,
        annotations: None,
        justification: None,
        diff: None,
    };
    let err = approval
        .run(
            &action_for(&frozen).expect("action"),
            Effect::External,
            |_| panic!("a policy denial does not wait"),
            |_| async {
                panic!("a denied call must not run");
                #[allow(unreachable_code)]
                Ran {
                    value: (),
                    succeeded: false,
                    result: Vec::new(),
                    detail: None,
                    exit_code: None,
                }
            },
        )
        .await
        .expect_err("denied by policy");
    assert!(err.to_string().contains("frozen environment"), "{err}");
}

/// How many times the service answered `GET /v1/actions/{id}` with `status` (from its metrics).
async fn probes(service: &str, status: u16) -> u64 {
    let text = reqwest::get(format!("{service}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|l| {
            l.starts_with("countersign_http_requests_total{")
                && l.contains("route=\"/v1/actions/{id}\"")
                && l.contains(&format!("status=\"{status}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// An unauthenticated caller cannot make the gate flood the service: a malformed token is
/// refused without asking, a refused token is asked about once and then remembered, and an
/// accepted one is asked about once.
#[tokio::test]
async fn bad_agent_tokens_cost_the_service_at_most_one_check() {
    let w = world().await;
    let upstreams = countersign_gate::upstream::Upstreams::connect(&[])
        .await
        .expect("no upstreams");
    let router = countersign_gate::http::router(&w.url, upstreams).expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gate = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let post = |token: String| {
        http.post(&gate)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .send()
    };

    for malformed in [
        "hello",
        "csa_",
        "csa_a b",
        "csa_\u{200b}x",
        &"csa_x".repeat(40),
    ] {
        let answer = post(malformed.to_owned()).await.expect("answer");
        assert_eq!(answer.status(), 401, "{malformed:?}");
    }
    assert_eq!(
        probes(&w.url, 401).await,
        0,
        "malformed tokens reached the service"
    );

    for _ in 0..50 {
        let answer = post("csa_not-a-real-token".to_owned())
            .await
            .expect("answer");
        assert_eq!(answer.status(), 401);
    }
    assert_eq!(
        probes(&w.url, 401).await,
        1,
        "a refused token is remembered"
    );

    for _ in 0..20 {
        let answer = post(w.agent_token.clone()).await.expect("answer");
        assert_ne!(answer.status(), 401);
    }
    assert_eq!(
        probes(&w.url, 404).await,
        1,
        "an accepted token is remembered"
    );
}
