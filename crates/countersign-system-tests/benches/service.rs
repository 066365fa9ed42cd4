//! Service benchmark. Prints figures; asserts nothing.
//!
//! `cargo bench -p countersign-server --bench service`
//! Environment: BENCH_SESSIONS (1000), BENCH_RATE (200 submissions/s), BENCH_SECONDS (60),
//! BENCH_DECISIONS (4000), BENCH_TEAMS (1: every stream may decide every request; N: approvers
//! and requests spread over N teams), BENCH_STORE (sqlite|postgres), BENCH_REPLICAS (1).
//!
//! Everything runs in this one process on loopback: the service (SQLite, synchronous=FULL),
//! the agent load, and the approver streams — so the streams' own work shares the two cores.

// The allocator `countersign serve` uses (see countersign-cli's main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::WebSocketUpgrade;
use axum::extract::ws::Message as AxumMessage;
use axum::routing::get;
use countersign_client::Client;
use countersign_client::stream::ApproverStream;
use countersign_core::{
    ActionRequest, Actor, Decision, EnrolmentRequest, EventKind, KeyKind, Nonce, PublicKey,
    Signature, SignedDecision, Verdict,
};
use countersign_server::{AppState, Config, Policy, ServiceKey, SystemClock, admin};
use countersign_store::NewEvent;
use countersign_store::{Approver, Store};
use countersign_store_postgres::PgStore;
use countersign_store_sqlite::SqliteStore;
use countersign_testdevices::Postgres;
use futures_util::{SinkExt as _, StreamExt as _};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use uuid::Uuid;

const POLICY: &str = r#"package countersign
import rego.v1
decision := {"outcome": "require_approval", "reason": "bench", "quorum": 1,
             "groups": [input.action.parameters.team],
             "ttl_seconds": 3600, "require_hardware_key": false, "quick_approve": false}
"#;
const APPROVERS: usize = 10;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system, all threads) this process has used so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    let hz = 100; // USER_HZ on Linux
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<52} n={:<8} p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
        ms.len(),
        pct(&ms, 0.5),
        pct(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

async fn echo_baseline() {
    let app = Router::new().route(
        "/echo",
        get(|ws: WebSocketUpgrade| async {
            ws.on_upgrade(|mut socket| async move {
                while let Some(Ok(m)) = socket.recv().await {
                    if matches!(m, AxumMessage::Text(_)) && socket.send(m).await.is_err() {
                        return;
                    }
                }
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo"))
        .await
        .expect("connect");
    let payload = "x".repeat(1500);
    let mut rtts = Vec::new();
    for i in 0..11_000 {
        let start = Instant::now();
        ws.send(tokio_tungstenite::tungstenite::Message::Text(
            payload.clone().into(),
        ))
        .await
        .expect("send");
        ws.next().await.expect("echo").expect("frame");
        if i >= 1000 {
            rtts.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    summary("baseline: bare WebSocket echo round trip (1.5 KB)", rtts);
}

struct Setup {
    state: AppState,
    /// One URL per replica; streams, submissions and decisions are spread across them.
    urls: Vec<String>,
    url: String,
    token: String,
    approvers: Vec<(String, SigningKey, PublicKey)>,
    _dir: tempfile::TempDir,
    _postgres: Option<Postgres>,
}

/// The store of one replica: SQLite in `dir`, or the shared PostgreSQL database.
async fn store(dir: &std::path::Path, postgres: Option<&str>) -> Arc<dyn Store> {
    match postgres {
        Some(url) => Arc::new(PgStore::connect(url).await.expect("PostgreSQL store")),
        None => Arc::new(
            SqliteStore::open(&dir.join("countersign.db"))
                .await
                .expect("store"),
        ),
    }
}

async fn setup(backend: &str, replicas: usize) -> Setup {
    let dir = tempfile::tempdir().expect("dir");
    let postgres = (backend == "postgres").then(Postgres::start);
    let database = postgres.as_ref().map(Postgres::fresh_database);
    let policy_path = dir.path().join("bench.rego");
    std::fs::write(&policy_path, POLICY).expect("policy");
    let key = Arc::new(ServiceKey::load_or_create(dir.path()).expect("key"));
    let mut states = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..replicas.max(1) {
        let policy = Arc::new(Policy::from_file(&policy_path).expect("policy"));
        let config = Config {
            origin: "countersign.bench/log".into(),
            ..Config::default()
        };
        let state = AppState::new(
            store(dir.path(), database.as_deref()).await,
            Arc::new(SystemClock),
            policy,
            key.clone(),
            config,
        )
        .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        urls.push(format!("http://{}", listener.local_addr().expect("addr")));
        let serving = state.clone();
        // Every simulated console connects from 127.0.0.1: one source, lifted to the whole budget.
        let limits = countersign_server::transport::Limits {
            max_connections_per_source: countersign_server::transport::Limits::default()
                .max_connections,
            ..countersign_server::transport::Limits::default()
        };
        tokio::spawn(async move {
            countersign_server::serve_with(listener, serving, None, limits, std::future::pending())
                .await
        });
        states.push(state);
    }
    let state = states.swap_remove(0);
    let url = urls[0].clone();

    let now = state.now();
    let s = state.store.as_ref();
    let (_, token) = admin::issue_token(
        s,
        "bench",
        countersign_store::TokenRole::Agent,
        "agent:bench",
        now,
    )
    .await
    .expect("token");
    let client = Client::new(&url).expect("client");
    let mut approvers = Vec::new();
    for i in 0..APPROVERS {
        let id = format!("approver{i}@bench");
        admin::put_approver(
            s,
            "bench",
            &Approver {
                id: id.clone(),
                display_name: id.clone(),
                groups: vec![team(i % teams())],
            },
            now,
        )
        .await
        .expect("approver");
        let (code, _) = admin::issue_enrolment_code(s, "bench", &id, 600, now)
            .await
            .expect("code");
        let k = SigningKey::from_bytes(&[i as u8 + 1; 32].into()).expect("scalar");
        let p = PublicKey::from_verifying_key(*k.verifying_key());
        let payload = EnrolmentRequest::proof_payload(
            &id,
            KeyKind::Software,
            "bench",
            &p,
            "countersign.bench/log",
        )
        .expect("payload");
        let req = EnrolmentRequest {
            approver_id: id.clone(),
            code,
            key_kind: KeyKind::Software,
            label: "bench".into(),
            public_key: p.clone(),
            attestation: None,
            proof: Signature::from_p256(k.sign(&payload)),
        };
        client.enroll(&req).await.expect("enroll");
        approvers.push((id, k, p));
    }
    Setup {
        state,
        urls,
        url,
        token,
        approvers,
        _dir: dir,
        _postgres: postgres,
    }
}

/// How many approver teams requests are spread over (BENCH_TEAMS, default 1: every stream
/// may decide every request). Approver `i` is in team `i % teams`.
fn teams() -> usize {
    env("BENCH_TEAMS", 1).clamp(1, APPROVERS as u64) as usize
}

fn team(t: usize) -> String {
    format!("team-{t}")
}

/// Request `i`, for the approvers of team `t`.
fn request(i: u64, t: usize) -> ActionRequest {
    serde_json::from_value(serde_json::json!({
        "type": "k8s.deploy", "resource": format!("k8s://bench/app-{i}"), "environment": "prod",
        "justification": "benchmark",
        "parameters": {"replicas": 3, "image": "registry/app:1.0", "team": team(t)},
        "diff": {"format": "unified", "language": "yaml", "text": "--- a\n+++ b\n@@ -1 +1 @@\n-  replicas: 2\n+  replicas: 3\n"},
        "tags": ["bench"]
    }))
    .expect("request")
}

/// The request id of a `{"type":"request","seq":N,"view":{"id":"…"` frame.
fn request_id(text: &str) -> Option<Uuid> {
    if !text.starts_with("{\"type\":\"request\"") {
        return None;
    }
    const MARK: &str = "\"view\":{\"id\":\"";
    let start = text.find(MARK)? + MARK.len();
    text.get(start..start + 36)?.parse().ok()
}

async fn push_latency(s: &Setup, sessions: usize, rate: u64, seconds: u64) {
    // Each reader keeps its own arrival list (no shared lock on the hot path); they are merged
    // once the load is over.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    for i in 0..sessions {
        let (_, k, p) = &s.approvers[i % s.approvers.len()];
        let url = &s.urls[i % s.urls.len()];
        let (mut stream, _) =
            ApproverStream::connect(url, p.key_id(), |m| Ok(Signature::from_p256(k.sign(m))))
                .await
                .expect("stream");
        let mut stop = stop_rx.clone();
        readers.push(tokio::spawn(async move {
            let mut seen: Vec<(Uuid, Instant)> = Vec::new();
            loop {
                tokio::select! {
                    frame = stream.next_text() => match frame {
                        // Only the arrival time and the id matter: pick the id out of the
                        // frame instead of decoding it, to keep the load generator cheap.
                        Ok(Some(text)) => {
                            let now = Instant::now();
                            if let Some(id) = request_id(&text) {
                                seen.push((id, now));
                            }
                        }
                        _ => return seen,
                    },
                    _ = stop.changed() => return seen,
                }
            }
        }));
    }
    println!("{sessions} approver streams connected; submitting {rate}/s for {seconds} s");
    let agents: Vec<Client> = s
        .urls
        .iter()
        .map(|u| Client::new(u).expect("client").with_token(s.token.clone()))
        .collect();
    type Sent = (Uuid, Instant, Instant, usize);
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let agent = agents[i as usize % agents.len()].clone();
        let sent = sent.clone();
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            let begin = Instant::now();
            match agent.submit(&request(i, i as usize % teams())).await {
                Ok(view) => sent.lock().expect("lock").push((
                    view.id,
                    begin,
                    Instant::now(),
                    i as usize % teams(),
                )),
                Err(_) => {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let load_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    let mut arrivals: HashMap<Uuid, Vec<Instant>> = HashMap::new();
    for r in readers {
        for (id, at) in r.await.unwrap_or_default() {
            arrivals.entry(id).or_default().push(at);
        }
    }
    let sent = sent.lock().expect("lock").clone();
    let team_of: HashMap<Uuid, usize> = sent.iter().map(|(id, _, _, t)| (*id, *t)).collect();
    let (mut round_trip, mut from_sent, mut from_returned) = (Vec::new(), Vec::new(), Vec::new());
    let mut delivered = 0usize;
    for (id, begin, returned, _) in &sent {
        round_trip.push(returned.duration_since(*begin).as_secs_f64() * 1000.0);
        for at in arrivals.get(id).map(Vec::as_slice).unwrap_or_default() {
            delivered += 1;
            from_sent.push(at.duration_since(*begin).as_secs_f64() * 1000.0);
            from_returned.push(at.saturating_duration_since(*returned).as_secs_f64() * 1000.0);
        }
    }
    // Stream `k` authenticates as approver `k % APPROVERS`, in team `(k % APPROVERS) % teams`.
    let eligible = |t: usize| {
        (0..sessions)
            .filter(|k| (k % s.approvers.len()) % teams() == t)
            .count()
    };
    let expected: usize = sent
        .iter()
        .map(|(id, ..)| eligible(team_of.get(id).copied().unwrap_or(0)))
        .sum();
    println!(
        "{} team(s): each request goes to the {} to {} streams of its team",
        teams(),
        (0..teams()).map(eligible).min().unwrap_or(0),
        (0..teams()).map(eligible).max().unwrap_or(0)
    );
    println!(
        "submitted {} in {load_secs:.1} s ({:.0}/s achieved, {} failed); frames delivered {delivered} of {} expected",
        sent.len(),
        sent.len() as f64 / load_secs,
        failed.load(std::sync::atomic::Ordering::Relaxed),
        expected
    );
    summary("POST /v1/actions round trip", round_trip);
    summary("POST sent -> frame at an approver", from_sent);
    summary(
        "POST returned -> frame at an approver (0 if earlier)",
        from_returned,
    );
}

async fn decisions_per_second(s: &Setup, count: u64) {
    let agent = Client::new(&s.url)
        .expect("client")
        .with_token(s.token.clone());
    let mut views = Vec::new();
    for i in 0..count {
        // Decided by approver `i % APPROVERS` (below), so asked of that approver's team.
        let t = (i as usize % s.approvers.len()) % teams();
        views.push(
            agent
                .submit(&request(1_000_000 + i, t))
                .await
                .expect("submit"),
        );
    }
    let now = countersign_client::approver::now();
    let decisions: Vec<SignedDecision> = views
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (id, k, p) = &s.approvers[i % s.approvers.len()];
            let mut nonce = [0u8; 16];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let d = Decision {
                request_id: v.id,
                request_digest: v.digest,
                verdict: Verdict::Approve,
                approver_id: id.clone(),
                key_id: p.key_id(),
                decided_at: now,
                comment: String::new(),
                nonce: Nonce(nonce),
                verification_code: None,
            };
            let signature = Signature::from_p256(k.sign(&d.signing_payload().expect("payload")));
            SignedDecision {
                decision: d,
                signature,
            }
        })
        .collect();
    let clients: Vec<Client> = s
        .urls
        .iter()
        .map(|u| Client::new(u).expect("client"))
        .collect();
    let decisions = Arc::new(decisions);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    println!("sending {count} signed decisions from 32 clients");
    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..32 {
        let (client, decisions, next) = (
            clients[w % clients.len()].clone(),
            decisions.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut ok = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(d) = decisions.get(i) else { return ok };
                if client.decide(d).await.is_ok() {
                    ok += 1;
                }
            }
        }));
    }
    let mut accepted = 0;
    for w in workers {
        accepted += w.await.unwrap_or(0);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu_before).as_secs_f64();
    println!(
        "{:<52} {:>8.0} /s  ({accepted} of {count} accepted in {secs:.2} s, 32 concurrent clients)",
        "signed decisions accepted",
        accepted as f64 / secs
    );
    println!(
        "{:<52} {:>8.3} ms  (service and clients together; {:.2} of the machine's cores busy)",
        "CPU time per decision",
        cpu * 1000.0 / count as f64,
        cpu / secs
    );

    // Baseline: raw P-256 verifications on this machine, same run.
    let (_, k, p) = &s.approvers[0];
    let msg =
        b"countersign/decision/v1\nbenchmark payload of a typical size for a decision".repeat(4);
    let sig = Signature::from_p256(k.sign(&msg));
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            p.verify(&msg, &sig).expect("verifies");
        }
        n += 100;
    }
    println!(
        "{:<52} {:>8.0} /s  (one core)",
        "baseline: raw P-256 verifications",
        n as f64 / started.elapsed().as_secs_f64()
    );
    let _ = s.state.store.audit_size().await;
}

/// Audit events appended per second: 32 writers, one event per transaction, on replica 0's
/// store (with PostgreSQL every append takes the log's advisory lock, as on any replica).
async fn appends_per_second(s: &Setup, count: u64) {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..32 {
        let (store, next) = (s.state.store.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let event = NewEvent::new(
                    Actor::Admin("bench".into()),
                    EventKind::AdminChanged {
                        operation: "bench".into(),
                        subject: format!("s{i}"),
                        detail: String::new(),
                    },
                );
                store
                    .append_events(vec![event], countersign_client::approver::now())
                    .await
                    .expect("append");
            }
        }));
    }
    for w in writers {
        let _ = w.await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:<52} {:>8.0} /s  ({count} in {secs:.2} s, 32 concurrent writers)",
        "audit appends (one event a transaction)",
        count as f64 / secs
    );
}

fn main() {
    let backend = std::env::var("BENCH_STORE").unwrap_or_else(|_| "sqlite".into());
    let replicas = env("BENCH_REPLICAS", 1) as usize;
    let sessions = env("BENCH_SESSIONS", 1000) as usize;
    let rate = env("BENCH_RATE", 200);
    let seconds = env("BENCH_SECONDS", 60);
    let decisions = env("BENCH_DECISIONS", 4000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!(
            "countersign service benchmark ({} cores)",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        );
        println!("store: {backend}, replicas: {replicas} (each its own state, store connection and listener, in this process)");
        echo_baseline().await;
        let s = setup(&backend, replicas).await;
        push_latency(&s, sessions, rate, seconds).await;
        decisions_per_second(&s, decisions).await;
        appends_per_second(&s, env("BENCH_APPENDS", 2000)).await;
    });
}
