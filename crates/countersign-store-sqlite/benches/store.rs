//! SQLite store benchmark: audit appends, request creation and decisions per second, one
//! writer, synchronous=FULL. Prints figures; asserts nothing.
//! `cargo bench -p countersign-store-sqlite --bench store` (BENCH_OPS, default 3000)

use std::time::Instant;

use countersign_core::policy::policy_hash;
use countersign_core::{
    Action, ActionRequest, ActionStatus, Actor, Decision, EventKind, Grant, KeyKind, Nonce,
    PolicyEvaluation, PolicyOutcome, PublicKey, Signature, SignedDecision, SignedGrant, Timestamp,
    Verdict,
};
use countersign_store::{
    AuditLog as _, DecisionEffects, NewEvent, NewRequest, RequestRecord, Requests as _,
};
use countersign_store_sqlite::SqliteStore;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use uuid::Uuid;

fn report(name: &str, n: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name:<40} {:>8.0} /s   {:>7.3} ms each",
        n as f64 / secs,
        secs * 1000.0 / n as f64
    );
}

fn main() {
    let n: u64 = std::env::var("BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(&dir.path().join("bench.db")).await.expect("open");
        let now = Timestamp::from_millis(1_795_000_000_000).expect("ts");
        let key = SigningKey::from_bytes(&[7; 32].into()).expect("scalar");
        let public = PublicKey::from_verifying_key(*key.verifying_key());

        let started = Instant::now();
        for i in 0..n {
            let e = NewEvent::new(Actor::Admin("bench".into()), EventKind::AdminChanged { operation: "bench".into(), subject: format!("s{i}"), detail: String::new() });
            store.append_events(vec![e], now).await.expect("append");
        }
        report("audit append (1 event a transaction)", n, started);

        let request: ActionRequest = serde_json::from_value(serde_json::json!({
            "type": "k8s.deploy", "resource": "k8s://bench/app", "environment": "prod", "justification": "bench"
        })).expect("request");
        let mut records = Vec::new();
        let started = Instant::now();
        for i in 0..n {
            let action = Action {
                id: Uuid::from_u128(u128::from(i) + 1), requester: "agent:bench".into(), request: request.clone(),
                created_at: now, expires_at: now.add_seconds(3600),
                policy: PolicyEvaluation { outcome: PolicyOutcome::RequireApproval { quorum: 1, groups: vec![], ttl_seconds: 3600, require_hardware_key: false, quick_approve: false, verification_code: false, require_idp_enrolment: false, max_sign_in_age_seconds: None, require_attested_key: false, escalation: Vec::new(), remind_before_seconds: Vec::new() }, reason: "bench".into(), policy_hash: policy_hash(b"p"), risk: None },
            };
            let digest = action.digest().expect("digest");
            let event = NewEvent::new(Actor::Agent("agent:bench".into()), EventKind::RequestCreated { action: Box::new(action.clone()), digest, authenticated_by: None });
            let record = RequestRecord { action, digest, status: ActionStatus::Pending, quorum: 1, updated_at: now, steps_taken: 0 };
            store.create_request(&NewRequest { record: record.clone(), grant: None, idempotency_key: None }, vec![event], now).await.expect("create");
            records.push(record);
        }
        report("create request (+1 event)", n, started);

        let started = Instant::now();
        for (i, r) in records.iter().enumerate() {
            let mut nonce = [0u8; 16];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let d = Decision { request_id: r.action.id, request_digest: r.digest, verdict: Verdict::Approve, approver_id: "bob".into(), key_id: public.key_id(), decided_at: now, comment: String::new(), nonce: Nonce(nonce), verification_code: None };
            let signed = SignedDecision { signature: Signature::from_p256(key.sign(&d.signing_payload().expect("payload"))), decision: d };
            let grant = Grant { grant_id: Uuid::from_u128(10_000_000 + i as u128), request_id: r.action.id, request_digest: r.digest, not_before: now, expires_at: now.add_seconds(300), single_use: true };
            let grant = SignedGrant { signature: Signature::from_p256(key.sign(&grant.signing_payload().expect("payload"))), grant };
            let events = vec![
                NewEvent::new(Actor::System, EventKind::Approved { action_id: r.action.id, reason: "quorum".into() }),
                NewEvent::new(Actor::System, EventKind::GrantIssued { grant: grant.clone() }),
            ];
            let effects = DecisionEffects { quorum: 1, on_quorum: Some((grant, events)), on_deny: vec![] };
            let event = NewEvent::new(Actor::Approver("bob".into()), EventKind::DecisionRecorded { decision: signed.clone(), key_kind: KeyKind::Software, attested_by: None });
            store.record_decision(&signed, KeyKind::Software, effects, event, now).await.expect("decide");
        }
        report("decision reaching quorum (+3 events)", n, started);

        let started = Instant::now();
        for r in &records {
            store.request(r.action.id).await.expect("read");
        }
        report("read request (with digest re-check)", n, started);
        println!("database size: {:.1} KiB per request (with its events)", std::fs::metadata(dir.path().join("bench.db")).map(|m| m.len()).unwrap_or(0) as f64 / 1024.0 / n as f64);
    });
}
