//! What only the SQLite backend can show: data survives reopening the file, tampering with the
//! file is reported, and a failing audit write stops the step it records.

use countersign_core::policy::policy_hash;
use countersign_core::{
    Action, ActionRequest, ActionStatus, Actor, EventKind, PolicyEvaluation, PolicyOutcome,
    Timestamp,
};
use countersign_store::{
    AuditLog as _, NewEvent, NewRequest, RequestRecord, Requests as _, StoreError,
};
use countersign_store_sqlite::SqliteStore;
use uuid::Uuid;

fn t(s: i64) -> Timestamp {
    Timestamp::from_millis(1_795_000_000_000 + s * 1000).expect("in range")
}

fn new_action(n: u128) -> (NewRequest, Vec<NewEvent>) {
    let request: ActionRequest = serde_json::from_value(serde_json::json!({
        "type": "k8s.deploy", "resource": "cluster/prod/web", "environment": "prod",
        "justification": "release"
    }))
    .expect("request");
    let action = Action {
        id: Uuid::from_u128(n),
        requester: "agent:ci".into(),
        request,
        created_at: t(0),
        expires_at: t(600),
        policy: PolicyEvaluation {
            outcome: PolicyOutcome::RequireApproval {
                quorum: 1,
                groups: vec![],
                ttl_seconds: 600,
                require_hardware_key: false,
                quick_approve: true,
                verification_code: false,
                require_idp_enrolment: false,
                max_sign_in_age_seconds: None,
                require_attested_key: false,
                escalation: Vec::new(),
                remind_before_seconds: Vec::new(),
            },
            reason: "deploys need a human".into(),
            policy_hash: policy_hash(b"p"),
            risk: None,
        },
    };
    let digest = action.digest().expect("digest");
    let event = NewEvent::new(
        Actor::Agent("agent:ci".into()),
        EventKind::RequestCreated {
            action: Box::new(action.clone()),
            digest,
            authenticated_by: None,
        },
    );
    let record = RequestRecord {
        action,
        digest,
        status: ActionStatus::Pending,
        quorum: 1,
        updated_at: t(0),
        steps_taken: 0,
    };
    (
        NewRequest {
            record,
            grant: None,
            idempotency_key: None,
        },
        vec![event],
    )
}

#[tokio::test]
async fn acknowledged_writes_survive_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("countersign.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let (new, events) = new_action(1);
    store
        .create_request(&new, events, t(0))
        .await
        .expect("create");
    store.close().await;
    drop(store);

    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(
        store.request(Uuid::from_u128(1)).await.expect("read"),
        new.record
    );
    assert_eq!(store.audit_size().await.expect("size"), 1);
}

#[tokio::test]
async fn altered_action_row_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("countersign.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let (new, events) = new_action(2);
    store
        .create_request(&new, events, t(0))
        .await
        .expect("create");
    store.close().await;

    // Someone with the file rewrites what approvers would be shown.
    let status = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg("UPDATE actions SET action_json = replace(action_json, 'cluster/prod/web', 'cluster/prod/db')")
        .status()
        .expect("sqlite3 runs");
    assert!(status.success());

    let store = SqliteStore::open(&path).await.expect("reopen");
    let err = store
        .request(Uuid::from_u128(2))
        .await
        .expect_err("tampered row");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn failing_audit_write_stops_the_step() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("countersign.db");
    let store = SqliteStore::open(&path).await.expect("open");
    store.close().await;

    // The audit table refuses writes (as a full disk or a failing device would).
    let status = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit device failed'); END;")
        .status()
        .expect("sqlite3 runs");
    assert!(status.success());

    let store = SqliteStore::open(&path).await.expect("reopen");
    let (new, events) = new_action(3);
    let err = store
        .create_request(&new, events, t(0))
        .await
        .expect_err("audit failed");
    assert!(err.to_string().contains("audit device failed"), "{err}");
    assert!(matches!(
        store.request(Uuid::from_u128(3)).await,
        Err(StoreError::NotFound(_))
    ));
}
