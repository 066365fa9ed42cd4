//! The service tells the truth about what happened: a submission is never answered "nothing was
//! changed" when it was stored, an unknown outcome is said to be unknown, and retrying with the
//! same idempotency key or the same signed decision returns what was recorded — never a second
//! request or a replay error. Against a real PostgreSQL: a privilege revoked on the reply's
//! read, and a connection cut at COMMIT by a proxy in between.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use countersign_core::{Clock, Verdict};
use countersign_server::{AppState, Config, Policy, ServiceKey, SystemClock, admin};
use countersign_store::Store;
use countersign_store_postgres::PgStore;
use countersign_testdevices::Postgres;
use harness::{Harness, code};
use http_body_util::BodyExt as _;
use p256::ecdsa::SigningKey;
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn body() -> Value {
    json!({"type": "k8s.deploy", "resource": "cluster/prod/web", "environment": "prod",
           "justification": "release 4.2"})
}

async fn submit_with_key(
    app: &axum::Router,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    use tower::ServiceExt as _;
    let mut req = Request::builder()
        .method("POST")
        .uri("/v1/actions")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_request() {
    let h = Harness::new().await;
    let token = h.agent_token.clone();
    let (status, first) = submit_with_key(&h.app, &token, Some("deploy-4.2"), body()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let size = h.state.store.audit_size().await.expect("size");
    let (status, again) = submit_with_key(&h.app, &token, Some("deploy-4.2"), body()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(h.state.store.audit_size().await.expect("size"), size);

    // Another request under a used key is refused, naming why.
    let mut other = body();
    other["resource"] = "cluster/prod/db".into();
    let (status, refused) = submit_with_key(&h.app, &token, Some("deploy-4.2"), other).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );
    // Bad keys are refused; another agent's key space is its own.
    let (status, _) = submit_with_key(&h.app, &token, Some("has space"), body()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, other_token) = admin::issue_token(
        h.state.store.as_ref(),
        "root",
        countersign_store::TokenRole::Agent,
        "agent:other",
        h.now(),
    )
    .await
    .expect("token");
    let (status, theirs) = submit_with_key(&h.app, &other_token, Some("deploy-4.2"), body()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(theirs["id"], first["id"]);
}

/// Ten copies of one submission sent at once make one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_copies_of_a_submission_make_one_request() {
    let h = Harness::new().await;
    let token = h.agent_token.clone();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let app = h.app.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            submit_with_key(&app, &token, Some("once"), body()).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, view) = t.await.expect("join");
        assert!(status.is_success(), "{status} {view}");
        ids.insert(view["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let pending = h
        .state
        .store
        .count_requests(countersign_core::ActionStatus::Pending)
        .await
        .expect("count");
    assert_eq!(pending, 1);
}

/// A signed decision sent again gets the result it had, not `already_decided` or
/// `nonce_reused`, and writes nothing.
#[tokio::test]
async fn a_resent_decision_returns_what_it_did() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    let first = h.decision(0, id, digest, Verdict::Approve, 1);
    let (status, result) = h.post_decision(id, &first).await;
    assert_eq!(
        (status, result["result"].as_str()),
        (StatusCode::OK, Some("counted"))
    );
    let size = h.state.store.audit_size().await.expect("size");
    let (status, again) = h.post_decision(id, &first).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, result);
    assert_eq!(h.state.store.audit_size().await.expect("size"), size);

    let second = h.decision(1, id, digest, Verdict::Approve, 2);
    let (_, done) = h.post_decision(id, &second).await;
    assert_eq!(done["result"], "approved");
    let (status, again) = h.post_decision(id, &second).await;
    assert_eq!((status, again), (StatusCode::OK, done));
    // The first one still says what it did then.
    let (_, first_again) = h.post_decision(id, &first).await;
    assert_eq!(first_again["result"], "counted");
    // A different decision by the same approver is still refused.
    let other = h.decision(0, id, digest, Verdict::Approve, 9);
    let (status, refused) = h.post_decision(id, &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
}

/// A service over PostgreSQL reached through `url`, with an agent token.
async fn pg_service(url: &str, dir: &std::path::Path) -> (AppState, axum::Router, String) {
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(url).await.expect("store"));
    let policy_path = dir.join("policy.rego");
    std::fs::write(&policy_path, harness::POLICY).expect("policy");
    let policy = Arc::new(Policy::from_file(&policy_path).expect("policy"));
    let key = Arc::new(
        ServiceKey::from_signing_key(SigningKey::from_bytes(&[42; 32].into()).expect("scalar"))
            .expect("key"),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = Config {
        origin: "countersign.test/log".into(),
        ..Config::default()
    };
    let state = AppState::new(store, clock, policy, key, config).await;
    let (_, token) = admin::issue_token(
        state.store.as_ref(),
        "root",
        countersign_store::TokenRole::Agent,
        "agent:deployer",
        state.now(),
    )
    .await
    .expect("token");
    let app = countersign_server::router(state.clone());
    (state, app, token)
}

async fn sql(url: &str, statements: &[&str]) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    for s in statements {
        sqlx::query(s).execute(&mut conn).await.expect(s);
    }
}

/// The reply to a submission is built from what the transaction committed: a read that fails
/// after the commit (here, the privilege to read outcomes revoked) cannot turn a stored
/// request into a 503 that the agent would retry into a duplicate.
#[tokio::test]
async fn a_failing_read_after_commit_does_not_hide_a_stored_request() {
    let pg = Postgres::shared();
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().expect("dir");
    // Migrate as the owner, then serve as a role that may not read `outcomes`.
    drop(PgStore::connect(&url).await.expect("migrate"));
    sql(
        &url,
        &[
            "DO $$ BEGIN CREATE ROLE cs_limited LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO cs_limited",
            "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO cs_limited",
            "GRANT ALL ON SCHEMA public TO cs_limited",
            "REVOKE SELECT ON outcomes FROM cs_limited",
        ],
    )
    .await;
    let limited = url.replace("postgres://postgres@", "postgres://cs_limited@");
    let (state, app, token) = pg_service(&limited, dir.path()).await;
    let (status, view) = submit_with_key(&app, &token, None, body()).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    let id = view["id"].as_str().expect("id").parse().expect("uuid");
    assert_eq!(state.store.request(id).await.expect("stored").action.id, id);
}

/// A TCP proxy in front of PostgreSQL that, when armed, lets the next `COMMIT` through to the
/// server and then cuts the connection before the answer comes back: the client cannot know
/// whether it committed.
struct CommitCutter {
    port: u16,
    armed: Arc<AtomicBool>,
}

/// `COMMIT` as a simple-protocol query message: 'Q', length 11, the text and its NUL.
const COMMIT: &[u8] = b"Q\x00\x00\x00\x0bCOMMIT\x00";

impl CommitCutter {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let armed = Arc::new(AtomicBool::new(false));
        let arm = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let arm = arm.clone();
                tokio::spawn(async move {
                    let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                        .await
                        .expect("upstream");
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        tail.extend_from_slice(&buf[..n]);
                        let seen = tail.windows(COMMIT.len()).any(|w| w == COMMIT);
                        if tail.len() > COMMIT.len() {
                            tail.drain(..tail.len() - COMMIT.len());
                        }
                        if seen && arm.swap(false, Ordering::SeqCst) {
                            // Nothing more reaches the client; the COMMIT reaches the server,
                            // which is given the time to commit; then both sides are dropped.
                            down.abort();
                            let _ = sw.write_all(&buf[..n]).await;
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                            return;
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    down.abort();
                });
            }
        });
        Self { port, armed }
    }
}

/// A connection cut while committing: the agent is told the outcome is unknown (not "nothing
/// was changed"), and its retry with the same idempotency key returns the request that was in
/// fact stored — one request, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_at_commit_is_an_unknown_outcome_and_the_retry_finds_the_request() {
    let pg = Postgres::shared();
    let url = pg.fresh_database();
    let cutter = CommitCutter::start(pg.port()).await;
    let proxied = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", cutter.port));
    let dir = tempfile::tempdir().expect("dir");
    let (state, app, token) = pg_service(&proxied, dir.path()).await;
    let before = state.store.audit_size().await.expect("size");

    cutter.armed.store(true, Ordering::SeqCst);
    let (status, unknown) = submit_with_key(&app, &token, Some("cut-1"), body()).await;
    assert_eq!(
        (status, code(&unknown)),
        (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown"),
        "{unknown}"
    );
    assert!(
        !unknown["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing was changed")
    );
    // The server did commit; the retry finds it (the pool replaces the cut connection).
    let (status, found) = submit_with_key(&app, &token, Some("cut-1"), body()).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let (status, again) = submit_with_key(&app, &token, Some("cut-1"), body()).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &found["id"]));
    let pending = state
        .store
        .count_requests(countersign_core::ActionStatus::Pending)
        .await
        .expect("count");
    assert_eq!(pending, 1, "exactly one request");
    assert_eq!(
        state.store.audit_size().await.expect("size"),
        before + 1,
        "one request_created event"
    );
}
