//! Opening a data directory: the policy in force is recorded once, and again only when it
//! changes between starts.

use countersign_core::EventKind;
use countersign_server::{Config, Service};

async fn policy_events(
    dir: &std::path::Path,
    policy: &std::path::Path,
) -> Vec<(Option<countersign_core::Digest>, countersign_core::Digest)> {
    let store = countersign_store_sqlite::SqliteStore::open_in(dir)
        .await
        .expect("store");
    let service = Service::open(
        dir,
        std::sync::Arc::new(store),
        Some(policy),
        Config::default(),
    )
    .await
    .expect("opens");
    let events = service
        .state
        .store
        .audit_events(0, 1000)
        .await
        .expect("events");
    events
        .into_iter()
        .filter_map(|e| match e.event {
            EventKind::PolicyChanged {
                previous_hash,
                policy_hash,
            } => Some((previous_hash, policy_hash)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn policy_in_force_is_recorded_once_per_change_across_restarts() {
    let dir = tempfile::tempdir().expect("dir");
    let policy = dir.path().join("policy.rego");
    std::fs::write(&policy, countersign_server::policy::DEFAULT_POLICY).expect("write");
    let data = dir.path().join("data");

    let first = policy_events(&data, &policy).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, None);
    assert_eq!(
        policy_events(&data, &policy).await.len(),
        1,
        "an unchanged policy is not recorded again"
    );

    std::fs::write(&policy, "package countersign\nimport rego.v1\ndecision := {\"outcome\": \"deny\", \"reason\": \"frozen\"}\n").expect("write");
    let after = policy_events(&data, &policy).await;
    assert_eq!(after.len(), 2);
    assert_eq!(
        after[1].0,
        Some(first[0].1),
        "the change names the policy it replaced"
    );
}

/// Every background task (log follower, fan-out, expiry, policy reload) ends when the service
/// stops: none holds what it waits on, so a stopped service leaves nothing running.
#[tokio::test]
async fn background_jobs_end_when_stopped() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let store = countersign_store_sqlite::SqliteStore::open_in(&data)
        .await
        .expect("store");
    let service = Service::open(&data, std::sync::Arc::new(store), None, Config::default())
        .await
        .expect("opens");
    let jobs = countersign_server::jobs::Jobs::all(&service.state).await;
    // A bound that only a hang reaches: stopping takes a few milliseconds.
    tokio::time::timeout(std::time::Duration::from_secs(30), jobs.stop())
        .await
        .expect("every background task ended on stop");
}
