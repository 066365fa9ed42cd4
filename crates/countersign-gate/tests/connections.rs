//! Brokered connections end to end in one process: a real approval service on loopback, the
//! gate's MCP server with a database connection to a real PostgreSQL (started from Debian's
//! package) and a command connection, reached by an MCP client as an agent would. The database
//! holds a `customers` table with PII columns, and the gate mints roles with a minting role that
//! is not a superuser.

mod support;

use std::collections::BTreeSet;

use countersign_core::Verdict;
use countersign_gate::agent::{Answer, GateAgent};
use countersign_gate::journal::Journal;
use countersign_gate::server::{AgentToken, GateServer};
use countersign_gate::upstream::Upstreams;
use countersign_testdevices::Postgres;
use serde_json::{Map, Value, json};
use sqlx::{Connection as _, Executor as _, PgConnection};
use support::{World, world_with};

const POLICY: &str = r#"package countersign
import rego.v1

decision := {"outcome": "deny", "reason": "credentials stay in the vault"} if "credentials" in input.action.tags
else := {"outcome": "allow", "reason": "masked reads are fine"} if {
    input.action.type == "sql.select"
    not input.action.parameters.reveal_classified
}
else := {"outcome": "allow", "reason": "status checks are fine"} if input.action.type == "command.status"
else := {"outcome": "require_approval", "reason": "writes and unmasked reads need security", "quorum": 1,
         "groups": ["security"], "ttl_seconds": 60, "require_hardware_key": false, "quick_approve": false}
"#;

async fn seeded(name: &str) -> (String, String) {
    Postgres::shared().crm_database(name)
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect(sql)
}

/// The service, and a gate configuration with the database `crm` (at `dsn`) and two commands.
async fn world(name: &str, dsn: &str, tolerance: u64) -> World {
    let gate = format!(
        r#"
service = "{{url}}"
[[connection]]
name = "{name}"
postgres_file = "crm.dsn"
environment = "prod"
tags = ["database"]
statement_timeout_seconds = 5
row_count_tolerance = {tolerance}
[connection.classification]
"customers.email" = ["pii"]
"customers.phone" = ["pii"]
"api_keys.secret" = ["credentials"]
[[connection]]
name = "status"
command = "/bin/sh"
args = ["-c", 'echo "status of $0: ok"; echo "token=$(printf %s "$OPS_TOKEN" | wc -c) chars" >&2; exit 3', "{{service}}"]
env = {{ OPS_TOKEN = "s3cret-ops-token" }}
environment = "prod"
"#
    );
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("crm.dsn"), dsn).expect("dsn");
    let w = world_with(
        POLICY,
        &gate.replace("crm.dsn", &dir.path().join("crm.dsn").display().to_string()),
    )
    .await;
    std::mem::forget(dir);
    w
}

async fn agent(w: &World) -> GateAgent {
    let upstreams = Upstreams::connect(&[]).await.expect("no upstreams");
    let journal = Journal::open(&w.dir.path().join("gate-state")).expect("journal");
    let gate = GateServer::new(
        &w.url,
        upstreams,
        AgentToken::Fixed(w.agent_token.clone().into()),
    )
    .with_connections(w.gate.connections.clone())
    .with_journal(journal);
    GateAgent::connect(gate).await.expect("agent")
}

fn args(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

/// The one pending request's id and action, once the gate has asked.
async fn pending(w: &World) -> (uuid::Uuid, Value) {
    let bob = w.bob().await;
    for _ in 0..200 {
        let mine = bob.pending().await.expect("requests");
        if let Some(view) = mine
            .into_iter()
            .find(|v| v.status == countersign_core::ActionStatus::Pending)
        {
            // The inbox lists summaries; the request view carries everything shown.
            let full = bob.view(view.id).await.expect("view");
            return (
                view.id,
                serde_json::to_value(&full.action.request).expect("json"),
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no pending request appeared");
}

fn rows(answer: &Answer) -> Vec<Value> {
    assert!(!answer.is_error, "{}", answer.text);
    answer.structured.as_ref().expect("structured")["rows"]
        .as_array()
        .expect("rows")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_showing_its_rows_and_runs_as_the_grants_role() {
    let (url, minting) = seeded("write").await;
    let w = std::sync::Arc::new(world("crm", &minting, 0).await);
    let agent = agent(&w).await;
    let sql =
        "UPDATE customers SET plan = 'pro' WHERE plan = 'free' AND email LIKE '%@example.com'";
    let call = tokio::spawn({
        async move {
            agent
                .call(
                    "crm",
                    args(json!({"sql": sql, "justification": "upgrade the beta testers"})),
                )
                .await
        }
    });
    let (id, action) = pending(&w).await;
    // The gate wrote the action from the parsed statement; the tags come from its
    // classification, not from the agent.
    assert_eq!(action["type"], "sql.update");
    assert_eq!(action["resource"], "postgres://crm/public.customers");
    assert_eq!(action["justification"], "upgrade the beta testers");
    assert_eq!(action["parameters"]["sql"], sql);
    let tags: BTreeSet<&str> = action["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(tags, BTreeSet::from(["database", "pii"]));
    assert_eq!(action["context"]["sql"]["preview_rows_affected"], 2);
    // The approvers see the blast radius: the count, and the rows before and after, masked.
    let before = action["diff"]["before"].as_str().expect("before");
    let after = action["diff"]["after"].as_str().expect("after");
    assert!(
        before.starts_with("-- UPDATE public.customers: 2 rows affected"),
        "{before}"
    );
    assert!(
        before.contains("\"plan\":\"free\"") && after.contains("\"plan\":\"pro\""),
        "{after}"
    );
    assert!(
        !before.contains("ada@example.com") && before.contains("(classified)"),
        "{before}"
    );
    // Nothing ran yet, and no role is left from the preview.
    let prefix = countersign_gate::postgres::role_prefix("crm");
    let roles = format!("SELECT count(*) FROM pg_roles WHERE starts_with(rolname, '{prefix}')");
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM customers WHERE plan = 'pro'").await,
        1
    );
    assert_eq!(scalar(&url, &roles).await, 0);

    w.decide(id, Verdict::Approve, "ok").await;
    let answer = call.await.expect("joined").expect("answered");
    assert!(!answer.is_error, "{}", answer.text);
    assert_eq!(
        answer.structured.as_ref().expect("result")["rows_affected"],
        2
    );
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM customers WHERE plan = 'pro'").await,
        3
    );
    assert_eq!(scalar(&url, &roles).await, 0, "the grant's role is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_results_are_masked_unless_revealing_was_approved() {
    let (_url, minting) = seeded("mask").await;
    let w = std::sync::Arc::new(world("crm", &minting, 0).await);
    let agent = std::sync::Arc::new(agent(&w).await);
    // Allowed at once; classified values are masked however they are named or computed.
    let sql = "SELECT id, email AS contact, upper(phone) AS shout, plan FROM customers ORDER BY id";
    let got = rows(
        &agent
            .call("crm", args(json!({"sql": sql})))
            .await
            .expect("answer"),
    );
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["id"], 1);
    assert_eq!(got[0]["plan"], "free");
    assert_eq!(got[0]["contact"], countersign_gate::sql::MASKED);
    assert_eq!(got[0]["shout"], countersign_gate::sql::MASKED);
    // A column of an unclassified table is not masked even beside a classified one.
    let joined = "SELECT c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id ORDER BY o.id";
    let got = rows(
        &agent
            .call("crm", args(json!({"sql": joined})))
            .await
            .expect("answer"),
    );
    assert_eq!(
        (got[0]["total"].clone(), got[0]["email"].clone()),
        (json!(5), json!(countersign_gate::sql::MASKED))
    );

    // Huge values are cut at the gate's byte budget, not held whole.
    let big = agent
        .call(
            "crm",
            args(json!({"sql": "SELECT repeat('x', 1048576) AS big FROM generate_series(1, 20)"})),
        )
        .await
        .expect("answer");
    let out = big
        .structured
        .clone()
        .unwrap_or_else(|| panic!("{}", big.text));
    assert_eq!(out["truncated"], true, "{}", big.text.len());
    let kept = out["rows"].as_array().expect("rows").len();
    assert!((1..20).contains(&kept), "{kept} rows kept");

    // Asking to reveal is part of what the approvers approve.
    let call = tokio::spawn({
        let agent = agent.clone();
        async move {
            agent
                .call("crm", args(json!({"sql": "SELECT email FROM customers WHERE id = 2", "reveal_classified": true})))
                .await
        }
    });
    let (id, action) = pending(&w).await;
    assert_eq!(action["parameters"]["reveal_classified"], true);
    w.decide(id, Verdict::Approve, "needed for the support ticket")
        .await;
    let got = rows(&call.await.expect("joined").expect("answer"));
    assert_eq!(got, vec![json!({"email": "bo@example.com"})]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_row_count_moved_since_the_preview_is_rolled_back() {
    let (url, minting) = seeded("moved").await;
    let w = std::sync::Arc::new(world("crm", &minting, 0).await);
    let agent = agent(&w).await;
    let call = tokio::spawn(async move {
        agent
            .call(
                "crm",
                args(json!({"sql": "DELETE FROM orders WHERE total < 10"})),
            )
            .await
    });
    let (id, action) = pending(&w).await;
    assert_eq!(action["context"]["sql"]["preview_rows_affected"], 2);
    // While the approver reads, more rows come to match.
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    conn.execute("INSERT INTO orders VALUES (12, 2, 1)")
        .await
        .expect("insert");
    w.decide(id, Verdict::Approve, "two test orders").await;
    let answer = call.await.expect("joined").expect("answer");
    assert!(answer.is_error);
    assert!(
        answer
            .text
            .contains("would change 3 rows where the approvers were shown 2"),
        "{}",
        answer.text
    );
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM orders").await,
        3,
        "rolled back"
    );
    // The log says it failed, and why.
    let view = countersign_client::Client::new(&w.url)
        .expect("client")
        .with_token(w.agent_token.clone())
        .action(id)
        .await
        .expect("view");
    let outcome = view.outcome.expect("outcome recorded");
    assert!(!outcome.succeeded);
    assert!(outcome.detail.contains("rolled back"), "{}", outcome.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_statements_are_refused_before_anyone_is_asked() {
    let (url, minting) = seeded("bad").await;
    let w = world("crm", &minting, 0).await;
    let agent = agent(&w).await;
    let refused = |answer: Answer, expected: &str| {
        assert!(answer.is_error, "{}", answer.text);
        assert!(
            answer.text.contains(expected),
            "{expected:?} not in {}",
            answer.text
        );
    };
    for (arguments, expected) in [
        (
            json!({"sql": "SELEC email FROM customers"}),
            "does not parse",
        ),
        (
            json!({"sql": "SELECT 1; SELECT 2"}),
            "2 statements in one call",
        ),
        (
            json!({"sql": "SELECT * FROM no_such_table"}),
            "unknown table(s): public.no_such_table",
        ),
        (
            json!({"sql": "DROP TABLE customers"}),
            "does not run drop statements",
        ),
        (json!({"sql": ""}), "no statement given"),
        (json!({"sql": 42}), "give the statement as text"),
        (
            json!({"sql": "SELECT 1", "host": "elsewhere"}),
            "unknown argument \"host\"",
        ),
        (
            json!({"sql": "SELECT 1", "reveal_classified": "yes"}),
            "true or false",
        ),
    ] {
        refused(
            agent.call("crm", args(arguments)).await.expect("answer"),
            expected,
        );
    }
    // Tags the classification sets decide, whatever the statement says: credentials are denied.
    refused(
        agent
            .call(
                "crm",
                args(json!({"sql": "SELECT secret AS harmless FROM api_keys"})),
            )
            .await
            .expect("answer"),
        "credentials stay in the vault",
    );
    // A statement past its timeout is stopped.
    refused(
        agent
            .call(
                "crm",
                args(json!({"sql": "SELECT pg_sleep(30) FROM customers"})),
            )
            .await
            .expect("answer"),
        "statement timeout",
    );
    // Nothing waits for anyone: the refused calls were never asked, the policy denied one and
    // allowed the other.
    assert!(w.bob().await.pending().await.expect("pending").is_empty());
    assert_eq!(scalar(&url, "SELECT count(*) FROM customers").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_is_a_clear_error() {
    let port = countersign_testdevices::free_port();
    let w = world(
        "crm",
        &format!("postgres://nobody:x@127.0.0.1:{port}/crm"),
        0,
    )
    .await;
    let agent = agent(&w).await;
    let answer = agent
        .call("crm", args(json!({"sql": "SELECT id FROM customers"})))
        .await
        .expect("answer");
    assert!(answer.is_error);
    assert!(
        answer.text.contains("refused by the gate: database:"),
        "{}",
        answer.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_runs_with_its_secret_and_its_exit_status_is_the_outcome() {
    let (_url, minting) = seeded("cmd").await;
    let w = world("crm", &minting, 0).await;
    let agent = agent(&w).await;
    let answer = agent
        .call("status", args(json!({"service": "billing; rm -rf /"})))
        .await
        .expect("answer");
    // The argument is one argument, never shell text; the secret reached only the child.
    let out = answer.structured.expect("structured");
    assert_eq!(out["stdout"], "status of billing; rm -rf /: ok\n");
    assert_eq!(out["stderr"], "token=16 chars\n");
    assert_eq!(out["exit_code"], 3);
    assert!(answer.is_error, "a non-zero exit is an error");
    // Arguments the template does not name are refused.
    let refused = agent
        .call("status", args(json!({"service": "x", "extra": "y"})))
        .await
        .expect("answer");
    assert!(
        refused.is_error && refused.text.contains("unknown argument"),
        "{}",
        refused.text
    );
}

/// Over Streamable HTTP, a program's output reaches the agent while the program still runs (as
/// progress notifications of the call), each piece once, and the whole output is in the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commands_output_reaches_the_agent_while_it_runs() {
    let (_url, minting) = seeded("live").await;
    let w = world("crm", &minting, 0).await;
    let seen = w.dir.path().join("seen");
    let mut connections = w.gate.connections.clone();
    for c in &mut connections {
        if let countersign_gate::connection::ConnectionKind::Command { args, .. } = &mut c.kind {
            *args = vec![
                "-c".into(),
                "echo \"checking $0\"; while [ ! -e \"$1\" ]; do sleep 0.05; done; echo done"
                    .into(),
                "{service}".into(),
                seen.display().to_string(),
            ];
        }
    }
    let gate = GateServer::new(
        &w.url,
        Upstreams::connect(&[]).await.expect("none"),
        AgentToken::FromRequest,
    )
    .with_connections(connections);
    let router = countersign_gate::http::router_for(&w.url, gate).expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    let sink: countersign_gate::agent::OutputSink =
        std::sync::Arc::new(move |stream: &str, text: &str| {
            let _ = tx.send((stream.to_owned(), text.to_owned()));
        });
    let agent = GateAgent::over_http_following(&url, &w.agent_token, Some(sink))
        .await
        .expect("agent");
    let call =
        tokio::spawn(async move { agent.call("status", args(json!({"service": "api"}))).await });
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
        .await
        .expect("output while the program runs")
        .expect("a piece");
    assert_eq!(first, ("stdout".to_owned(), "checking api\n".to_owned()));
    assert!(!call.is_finished());
    std::fs::write(&seen, "").expect("marker");
    let answer = call.await.expect("joined").expect("answer");
    let out = answer.structured.expect("structured");
    assert_eq!(out["stdout"], "checking api\ndone\n");
}

/// An agent with no long-lived secret: its workload identity token (a JWT from an issuer the
/// service trusts, served here on loopback) is its bearer token at the gate, which passes it on
/// for the service to verify; a token signed by another key gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_identity_agent_reaches_a_connection_through_the_gate() {
    use base64::Engine as _;
    use p256::pkcs8::EncodePrivateKey as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let signing = |secret: &p256::ecdsa::SigningKey| {
        jsonwebtoken::EncodingKey::from_ec_der(secret.to_pkcs8_der().expect("pkcs8").as_bytes())
    };
    let issuer_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let point = issuer_key.verifying_key().to_encoded_point(false);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
        "kid": "ci", "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y"))}]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let router = axum::Router::new().route(
        "/keys",
        axum::routing::get(move || async move { axum::Json(jwks) }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });

    let gate_config = "service = \"{url}\"\n[[connection]]\nname = \"status\"\ncommand = \"/bin/echo\"\nargs = [\"up:\", \"{service}\"]\nenvironment = \"prod\"\n";
    let w = support::world_with_config(
        POLICY,
        gate_config,
        countersign_server::Config {
            workload_issuers: vec![countersign_server::workload::WorkloadIssuerConfig {
                issuer: issuer.clone(),
                audience: "countersign".into(),
                jwks_uri: Some(format!("{issuer}/keys")),
                id_claim: "sub".into(),
                agent_prefix: "agent:ci:".into(),
            }],
            ..countersign_server::Config::default()
        },
    )
    .await;
    let gate = GateServer::new(
        &w.url,
        Upstreams::connect(&[]).await.expect("none"),
        AgentToken::FromRequest,
    )
    .with_connections(w.gate.connections.clone());
    let router = countersign_gate::http::router_for(&w.url, gate).expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gate_url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({"iss": issuer, "aud": "countersign", "sub": "deploy-job-7",
                        "iat": now, "exp": now + 300});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("ci".into());
    let token = jsonwebtoken::encode(&header, &claims, &signing(&issuer_key)).expect("jwt");
    let agent = GateAgent::over_http(&gate_url, &token)
        .await
        .expect("the gate takes the workload token");
    let answer = agent
        .call("status", args(json!({"service": "billing"})))
        .await
        .expect("answer");
    assert_eq!(
        answer.structured.as_ref().expect("structured")["stdout"],
        "up: billing\n",
        "{}",
        answer.text
    );

    // The same claims signed by a key the issuer never published get nothing at the gate.
    let stranger = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let forged = jsonwebtoken::encode(&header, &claims, &signing(&stranger)).expect("jwt");
    assert!(GateAgent::over_http(&gate_url, &forged).await.is_err());
}
