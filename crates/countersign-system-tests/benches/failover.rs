//! The failover window: how long the service is unusable when PostgreSQL is stopped (as a
//! crash would: `pg_ctl stop -m immediate`) for a given outage and started again.
//!
//! An in-process service over a real PostgreSQL submits a request every 25 ms from fresh
//! tasks. The figures: when the database was back (`pg_ctl start -w` returned), when the first
//! request after that succeeded, and the slowest answer to a request started after it. Measured
//! for the pool's previous 30 s acquire timeout (the baseline) and for the one in force, in the
//! same run.
//!
//! `cargo bench -p countersign-server --bench failover` (`FAILOVER_OUTAGE_SECONDS`, default 5).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use countersign_core::Clock;
use countersign_server::{AppState, Config, Policy, ServiceKey, SystemClock, admin};
use countersign_store::Store;
use countersign_store_postgres::{ACQUIRE_TIMEOUT, PgStore};
use countersign_testdevices::Postgres;
use p256::ecdsa::SigningKey;
use tower::ServiceExt as _;

const POLICY: &str = r#"package countersign
import rego.v1
decision := {"outcome": "require_approval", "reason": "bench", "quorum": 1, "groups": [],
             "ttl_seconds": 600, "require_hardware_key": false, "quick_approve": false}
"#;

struct Attempt {
    started: Instant,
    finished: Instant,
    ok: bool,
}

async fn measure(pg: &Postgres, acquire_timeout: Duration, outage: Duration) {
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn Store> = Arc::new(
        PgStore::connect_with(&url, acquire_timeout)
            .await
            .expect("store"),
    );
    let policy_path = dir.path().join("policy.rego");
    std::fs::write(&policy_path, POLICY).expect("policy");
    let policy = Arc::new(Policy::from_file(&policy_path).expect("policy"));
    let key = Arc::new(
        ServiceKey::from_signing_key(SigningKey::from_bytes(&[7; 32].into()).expect("scalar"))
            .expect("key"),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::new(store, clock, policy, key, Config::default()).await;
    let (_, token) = admin::issue_token(
        state.store.as_ref(),
        "bench",
        countersign_store::TokenRole::Agent,
        "agent:bench",
        state.now(),
    )
    .await
    .expect("token");
    let app = countersign_server::router(state.clone());
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let generator = {
        let attempts = attempts.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                let app = app.clone();
                let token = token.clone();
                let attempts = attempts.clone();
                tokio::spawn(async move {
                    let body = serde_json::json!({"type": "k8s.deploy", "resource": format!("cluster/{n}"),
                        "environment": "prod", "justification": "failover bench"});
                    let req = Request::builder()
                        .method("POST")
                        .uri("/v1/actions")
                        .header("authorization", format!("Bearer {token}"))
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string()))
                        .expect("request");
                    let started = Instant::now();
                    let ok = app
                        .oneshot(req)
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false);
                    attempts.lock().expect("lock").push(Attempt {
                        started,
                        finished: Instant::now(),
                        ok,
                    });
                });
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    tokio::task::block_in_place(|| pg.kill());
    tokio::time::sleep(outage).await;
    tokio::task::block_in_place(|| pg.restart());
    let back = Instant::now();
    tokio::time::sleep(acquire_timeout.max(Duration::from_secs(5)) + Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = generator.await;
    tokio::time::sleep(acquire_timeout + Duration::from_secs(1)).await;

    let attempts = attempts.lock().expect("lock");
    let first_ok_after_back = attempts
        .iter()
        .filter(|a| a.ok && a.finished >= back)
        .map(|a| a.finished)
        .min();
    let slowest_after_back = attempts
        .iter()
        .filter(|a| a.started >= back)
        .map(|a| a.finished - a.started)
        .max()
        .unwrap_or_default();
    let failed_after_back = attempts
        .iter()
        .filter(|a| a.started >= back && !a.ok)
        .count();
    let slowest_during = attempts
        .iter()
        .filter(|a| a.started >= killed && a.started < back)
        .map(|a| a.finished - a.started)
        .max()
        .unwrap_or_default();
    // How long after the database was back clients that asked during the outage still waited.
    let lingering = attempts
        .iter()
        .filter(|a| a.started < back)
        .map(|a| a.finished.saturating_duration_since(back))
        .max()
        .unwrap_or_default();
    let outage_s = (back - killed).as_secs_f64();
    match first_ok_after_back {
        Some(first) => {
            let stopped = (first - killed).as_secs_f64();
            println!(
                "| {:>4.0} s | {outage_s:5.2} s | {stopped:6.2} s | {:5.2} s | {:6.2} s | {failed_after_back:>3} | {:6.2} s | {:6.2} s |",
                acquire_timeout.as_secs_f64(),
                stopped - outage_s,
                slowest_after_back.as_secs_f64(),
                slowest_during.as_secs_f64(),
                lingering.as_secs_f64(),
            );
        }
        None => println!(
            "| {:>4.0} s | {outage_s:5.2} s | never recovered within the run |",
            acquire_timeout.as_secs_f64()
        ),
    }
}

fn main() {
    let outage = Duration::from_secs(
        std::env::var("FAILOVER_OUTAGE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pg = Postgres::start();
    println!(
        "failover: PostgreSQL stopped (immediate) for {} s under a request every 25 ms",
        outage.as_secs()
    );
    println!(
        "| acquire timeout | outage (stop → accepting) | service stopped (stop → first success) | window beyond the outage | slowest answer after it is back | failed after back | slowest answer during | callers still waiting after it is back |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    runtime.block_on(async {
        measure(&pg, Duration::from_secs(30), outage).await;
        measure(&pg, ACQUIRE_TIMEOUT, outage).await;
    });
}
