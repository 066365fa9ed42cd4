//! The gate's added latency on an allowed call: the same `read_text_file` call of the real
//! filesystem MCP server (npm, `tests/mcp`), made directly to an instance of the upstream and
//! through the gate in front of another, at a fixed rate, in the same run.
//!
//! Through the gate a call is: the action written, `POST /v1/actions` (the policy allows it and a
//! grant is issued, one SQLite commit), `POST /v1/grants/{id}/redeem` (another), the upstream
//! call, `POST /v1/actions/{id}/outcome` (a third). The agent reaches the gate over an in-memory
//! MCP stream ([`GateAgent`]), so the figures are the gate's own work, not an HTTP hop to it.
//!
//! The same for a brokered database read (a real PostgreSQL from the test devices): on an open
//! connection, and through the gate's connection tool with its per-grant role.
//!
//! `cargo bench -p countersign-gate --bench gate` (GATE_BENCH_RATE 100/s, GATE_BENCH_CALLS 1000;
//! GATE_BENCH_SQL_RATE 20/s, GATE_BENCH_SQL_CALLS 200)

use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_gate::GateConfig;
use countersign_gate::agent::GateAgent;
use countersign_gate::upstream::{Connected, Upstreams};
use countersign_server::{Config, Service, admin};
use countersign_store_sqlite::SqliteStore;
use serde_json::{Map, Value};

const POLICY: &str = r#"package countersign
import rego.v1
decision := {"outcome": "require_approval", "reason": "writes wait", "quorum": 1, "groups": [],
             "ttl_seconds": 60, "require_hardware_key": false, "quick_approve": false} if input.action.type == "mcp.fs.write_file"
else := {"outcome": "allow", "reason": "benchmark"}
"#;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(name: &str, mut samples: Vec<Duration>, failed: usize) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    println!(
        "{name:<28} n={:<6} failed={failed:<3} p50={:8.3} ms  p99={:8.3} ms  max={:8.3} ms",
        samples.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// Calls `call` `n` times at `rate` per second (open loop), each on its own task.
async fn drive<F, Fut>(n: u64, rate: u64, call: F) -> (Vec<Duration>, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let mut tasks = Vec::with_capacity(n as usize);
    for _ in 0..n {
        tick.tick().await;
        let fut = call();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let ok = fut.await;
            (started.elapsed(), ok)
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    for t in tasks {
        let (d, ok) = t.await.expect("task");
        if ok {
            samples.push(d);
        } else {
            failed += 1;
        }
    }
    (samples, failed)
}

fn main() {
    let rate = env("GATE_BENCH_RATE", 100);
    let calls = env("GATE_BENCH_CALLS", 1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("dir");
        let policy = dir.path().join("policy.rego");
        std::fs::write(&policy, POLICY).expect("policy");
        let data = dir.path().join("data");
        let store = SqliteStore::open_in(&data).await.expect("store");
        let service = Service::open(&data, Arc::new(store), Some(&policy), Config::default())
            .await
            .expect("service");
        let state = service.state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(countersign_server::serve(
            listener,
            state.clone(),
            std::future::pending(),
        ));
        let (_, token) = admin::issue_token(
            state.store.as_ref(),
            "bench",
            countersign_store::TokenRole::Agent,
            "agent:bench",
            state.now(),
        )
        .await
        .expect("token");
        let files = dir.path().join("files");
        std::fs::create_dir_all(&files).expect("files");
        let file = files.join("config.yaml");
        std::fs::write(&file, "replicas: 3\n".repeat(20)).expect("file");
        let server = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/mcp/node_modules/.bin/mcp-server-filesystem");
        let config = GateConfig::parse(
            &format!(
                "service = \"{url}\"\n[[upstream]]\nname = \"fs\"\ncommand = \"{}\"\nargs = [\"{}\"]\nenvironment = \"prod\"\n",
                server.display(),
                files.display()
            ),
            dir.path(),
        )
        .expect("config");
        let direct = Arc::new(
            Connected::connect(&config.upstreams[0])
                .await
                .expect("direct upstream (npm ci in tests/mcp)"),
        );
        let upstreams = Upstreams::connect(&config.upstreams)
            .await
            .expect("gate upstream");
        let agent = Arc::new(
            GateAgent::start(&url, upstreams, &token)
                .await
                .expect("agent session"),
        );
        let mut arguments = Map::new();
        arguments.insert("path".into(), Value::String(file.display().to_string()));

        println!(
            "gate benchmark: read_text_file at {rate}/s, {calls} calls per path, real filesystem server"
        );
        // Warm both paths.
        for _ in 0..20 {
            direct
                .call("read_text_file", arguments.clone())
                .await
                .expect("direct call");
            agent
                .call("fs__read_text_file", arguments.clone())
                .await
                .expect("gate call");
        }
        let (samples, failed) = drive(calls, rate, || {
            let direct = direct.clone();
            let arguments = arguments.clone();
            async move {
                direct
                    .call("read_text_file", arguments)
                    .await
                    .is_ok_and(|r| r.is_error != Some(true))
            }
        })
        .await;
        report("direct to the upstream", samples, failed);
        let (samples, failed) = drive(calls, rate, || {
            let agent = agent.clone();
            let arguments = arguments.clone();
            async move {
                agent
                    .call("fs__read_text_file", arguments)
                    .await
                    .is_ok_and(|a| !a.is_error)
            }
        })
        .await;
        report("through the gate (allowed)", samples, failed);

        // A brokered database read the policy allows: the statement parsed and checked, the
        // action asked for, a role minted for the grant, the read run as it, the role dropped,
        // the outcome reported. Beside it, the same read on an open connection.
        let sql_calls = env("GATE_BENCH_SQL_CALLS", 200);
        let sql_rate = env("GATE_BENCH_SQL_RATE", 20);
        let (db, minting) = countersign_testdevices::Postgres::shared().crm_database("bench");
        std::fs::write(dir.path().join("crm.dsn"), &minting).expect("dsn");
        let with_db = GateConfig::parse(
            &format!(
                "service = \"{url}\"\n[[connection]]\nname = \"crm\"\npostgres_file = \"crm.dsn\"\nenvironment = \"prod\"\n[connection.classification]\n\"customers.email\" = [\"pii\"]\n"
            ),
            dir.path(),
        )
        .expect("config");
        let gate = countersign_gate::server::GateServer::new(
            &url,
            Upstreams::connect(&[]).await.expect("none"),
            countersign_gate::server::AgentToken::Fixed(token.clone().into()),
        )
        .with_connections(with_db.connections.clone());
        let db_agent = Arc::new(GateAgent::connect(gate).await.expect("agent session"));
        let open = Arc::new(tokio::sync::Mutex::new(
            <sqlx::PgConnection as sqlx::Connection>::connect(&db)
                .await
                .expect("connect"),
        ));
        let read = "SELECT id, email, plan FROM customers WHERE id = 1";
        let mut query = Map::new();
        query.insert("sql".into(), Value::String(read.into()));
        let (samples, failed) = drive(sql_calls, sql_rate, || {
            let open = open.clone();
            async move {
                let mut conn = open.lock().await;
                sqlx::query(read).fetch_all(&mut *conn).await.is_ok()
            }
        })
        .await;
        report("sql read, open connection", samples, failed);
        let (samples, failed) = drive(sql_calls, sql_rate, || {
            let agent = db_agent.clone();
            let query = query.clone();
            async move {
                agent
                    .call("crm", query)
                    .await
                    .is_ok_and(|a| !a.is_error)
            }
        })
        .await;
        report("sql read, through the gate", samples, failed);

        // An asked call: from the agent's call to the request arriving on an approver's stream
        // (what makes the console notify), 50 times.
        use countersign_client::approver::{EnrolmentKey, enroll};
        use countersign_core::{KeyKind, PublicKey, Signature};
        use p256::ecdsa::signature::Signer as _;
        let store = state.store.as_ref();
        admin::put_approver(
            store,
            "bench",
            &countersign_store::Approver {
                id: "bob".into(),
                display_name: "Bob".into(),
                groups: vec![],
            },
            state.now(),
        )
        .await
        .expect("approver");
        let (code, _) = admin::issue_enrolment_code(store, "bench", "bob", 600, state.now())
            .await
            .expect("code");
        let bob = p256::ecdsa::SigningKey::from_bytes(&[9; 32].into()).expect("key");
        let public = PublicKey::from_verifying_key(*bob.verifying_key());
        let signer = bob.clone();
        enroll(
            &countersign_client::Client::new(&url).expect("client"),
            "bob",
            code,
            EnrolmentKey {
                kind: KeyKind::Software,
                label: "bench".into(),
                public_key: public.clone(),
                sign: Box::new(move |m| Ok(Signature::from_p256(signer.sign(m)))),
                attest: Box::new(|_| Ok(None)),
                endorsement: None,
            },
        )
        .await
        .expect("enrol");
        let key = bob.clone();
        let (mut stream, _) = countersign_client::stream::ApproverStream::connect(
            &url,
            public.key_id(),
            move |m| Ok(Signature::from_p256(key.sign(m))),
        )
        .await
        .expect("approver stream");
        let mut to_stream = Vec::new();
        for i in 0..50 {
            let mut write = arguments.clone();
            write.insert("content".into(), Value::String(format!("replicas: {i}\n")));
            let agent = agent.clone();
            let started = Instant::now();
            tokio::spawn(async move {
                let _ = agent.call("fs__write_file", write).await;
            });
            loop {
                match stream.next().await {
                    Ok(Some(countersign_core::api::ServerMessage::Request { .. })) => break,
                    Ok(Some(_)) => continue,
                    other => panic!("stream ended: {other:?}"),
                }
            }
            to_stream.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        report("asked call -> approver stream", to_stream, 0);
        let outcomes = state
            .store
            .audit_size()
            .await
            .expect("size");
        println!("audit events written: {outcomes} (request, approval, grant, redemption, outcome per call)");
    });
}
