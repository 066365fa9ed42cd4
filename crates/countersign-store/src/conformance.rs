//! The conformance suite: the same tests for every backend. A backend's test file calls
//! [`conformance_tests!`](crate::conformance_tests) with an async expression that makes a fresh,
//! empty store and returns `(store, guard)`, the guard keeping its resources (a temporary
//! directory, a database) alive for the test; each rule below then runs as its own test.

use countersign_core::policy::policy_hash;
use countersign_core::{
    Action, ActionRequest, ActionStatus, Actor, Decision, Digest, EventKind, ExecutionOutcome,
    Grant, KeyKind, Nonce, PolicyEvaluation, PolicyOutcome, PublicKey, Signature, SignedDecision,
    SignedGrant, Timestamp, Verdict,
};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use uuid::Uuid;

use crate::{
    Approver, ApproverKey, Conflict, Cosignature, DecisionEffects, DecisionOutcome, DirectoryGroup,
    DirectoryUser, EnrolmentCode, Expected, NewEvent, NewOutboxItem, NewRequest, OutboxSettlement,
    OutboxState, RequestRecord, Store, StoreError,
};

/// Generates one `#[tokio::test]` per rule, each with a `(store, guard)` from `$make`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            audit_log_is_gapless_and_ordered,
            unknown_action_is_not_found,
            action_round_trips_with_its_digest,
            quorum_counts_distinct_approvers_and_issues_one_grant,
            second_decision_by_same_approver_is_rejected,
            replayed_nonce_is_rejected,
            one_deny_denies,
            decision_on_decided_request_is_rejected,
            decision_after_expiry_is_rejected,
            rejected_step_writes_no_audit_event,
            grant_redeems_once_inside_its_window_for_its_digest,
            outcome_needs_a_redeemed_grant_and_is_recorded_once,
            expiry_happens_once,
            policy_allowed_action_has_its_grant,
            enrolment_code_is_single_use_and_bound_to_its_approver,
            expired_enrolment_code_is_rejected,
            challenge_is_single_use,
            revoked_key_cannot_decide,
            idempotency_key_names_one_request,
            revoked_key_ends_its_sessions,
            api_token_lookup_and_revocation,
            checkpoints_keep_the_first_note_per_size,
            cosignatures_keep_the_first_per_key_and_size,
            a_large_batch_of_events_is_appended_whole,
            directory_groups_decide_an_approvers_groups,
            deactivating_in_the_directory_revokes_keys_and_sessions_and_blocks_enrolment,
            directory_writes_check_versions_and_names,
            a_sign_in_is_recorded_for_an_active_key_of_its_approver_and_only_moves_forward,
            renaming_in_the_directory_moves_the_groups_and_deprovisions_the_old_approver,
            outbox_position_moves_once_and_notices_are_queued_once,
            outbox_claims_hold_items_until_their_lease_ends_and_settle_once,
            timed_steps_are_taken_once_each_in_order_while_pending,
            break_glass_reviews_count_distinct_reviewers_once_until_complete,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make.await;
                $crate::conformance::$name(&store).await;
            }
        )*
    };
}

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_millis(1_795_000_000_000 + seconds * 1000).expect("in range")
}

fn key(seed: u8) -> (SigningKey, PublicKey) {
    let k = SigningKey::from_bytes(&[seed.max(1); 32].into()).expect("valid scalar");
    let p = PublicKey::from_verifying_key(*k.verifying_key());
    (k, p)
}

fn agent() -> Actor {
    Actor::Agent("agent:test".into())
}

fn sample_action(n: u128, quorum: u32) -> (NewRequest, Vec<NewEvent>) {
    let request: ActionRequest = serde_json::from_value(serde_json::json!({
        "type": "db.export", "resource": format!("postgres://prod/t{n}"), "environment": "prod",
        "justification": "conformance", "tags": ["pii"]
    }))
    .expect("valid request");
    let action = Action {
        id: Uuid::from_u128(n),
        requester: "agent:test".into(),
        request,
        created_at: t(0),
        expires_at: t(600),
        policy: PolicyEvaluation {
            outcome: PolicyOutcome::RequireApproval {
                quorum,
                groups: vec!["security".into()],
                ttl_seconds: 600,
                require_hardware_key: false,
                quick_approve: false,
                verification_code: false,
                require_idp_enrolment: false,
                max_sign_in_age_seconds: None,
                require_attested_key: false,
                escalation: Vec::new(),
                remind_before_seconds: Vec::new(),
            },
            reason: "test".into(),
            policy_hash: policy_hash(b"test"),
            risk: None,
        },
    };
    let digest = action.digest().expect("digest");
    let events = vec![NewEvent::new(
        agent(),
        EventKind::RequestCreated {
            action: Box::new(action.clone()),
            digest,
            authenticated_by: None,
        },
    )];
    let record = RequestRecord {
        action,
        digest,
        status: ActionStatus::Pending,
        quorum,
        updated_at: t(0),
        steps_taken: 0,
    };
    (
        NewRequest {
            record,
            grant: None,
            idempotency_key: None,
        },
        events,
    )
}

/// The approvers' keys the tests decide with (approver, key seed), enrolled once per store.
const DECIDERS: [(&str, u8); 3] = [("bob", 1), ("carol", 2), ("bob", 3)];

/// Enrols every key of [`DECIDERS`] that is not enrolled yet: the store checks inside its
/// transaction that a decision's key is enrolled, active and its approver's.
async fn enrol_deciders<S: Store>(store: &S) {
    for (i, (approver, seed)) in DECIDERS.into_iter().enumerate() {
        let (k, e) = approver_key(approver, seed, t(0));
        if store.key(&k.key_id).await.expect("read key").is_some() {
            continue;
        }
        let code = format!("decider-code-{i}");
        let code = approver_with_code(store, approver, code.as_bytes(), t(3600)).await;
        store.enrol_key(&code, &k, e).await.expect("enrol decider");
    }
}

async fn create<S: Store>(store: &S, n: u128, quorum: u32) -> RequestRecord {
    enrol_deciders(store).await;
    let (new, events) = sample_action(n, quorum);
    store
        .create_request(&new, events, t(0))
        .await
        .expect("create action");
    new.record
}

fn decision(
    record: &RequestRecord,
    approver: &str,
    verdict: Verdict,
    nonce: u8,
    seed: u8,
) -> SignedDecision {
    let (k, p) = key(seed);
    let decision = Decision {
        request_id: record.action.id,
        request_digest: record.digest,
        verdict,
        approver_id: approver.into(),
        key_id: p.key_id(),
        decided_at: t(10),
        comment: String::new(),
        nonce: Nonce([nonce; 16]),
        verification_code: None,
    };
    let signature = Signature::from_p256(k.sign(&decision.signing_payload().expect("payload")));
    SignedDecision {
        decision,
        signature,
    }
}

fn grant_for(record: &RequestRecord, not_before: Timestamp, expires_at: Timestamp) -> SignedGrant {
    let (k, _) = key(99);
    let grant = Grant {
        grant_id: Uuid::from_u128(record.action.id.as_u128() + 1_000_000),
        request_id: record.action.id,
        request_digest: record.digest,
        not_before,
        expires_at,
        single_use: true,
    };
    let signature = Signature::from_p256(k.sign(&grant.signing_payload().expect("payload")));
    SignedGrant { grant, signature }
}

fn effects(record: &RequestRecord) -> DecisionEffects {
    let grant = grant_for(record, t(10), t(310));
    let on_quorum = vec![
        NewEvent::new(
            Actor::System,
            EventKind::Approved {
                action_id: record.action.id,
                reason: "quorum".into(),
            },
        ),
        NewEvent::new(
            Actor::System,
            EventKind::GrantIssued {
                grant: grant.clone(),
            },
        ),
    ];
    DecisionEffects {
        quorum: record.quorum,
        on_quorum: Some((grant, on_quorum)),
        on_deny: vec![NewEvent::new(
            Actor::System,
            EventKind::Denied {
                action_id: record.action.id,
                reason: "denied".into(),
            },
        )],
    }
}

fn decided_event(d: &SignedDecision) -> NewEvent {
    NewEvent::new(
        Actor::Approver(d.decision.approver_id.clone()),
        EventKind::DecisionRecorded {
            decision: d.clone(),
            key_kind: KeyKind::Software,
            attested_by: None,
        },
    )
}

async fn decide<S: Store>(
    store: &S,
    record: &RequestRecord,
    d: &SignedDecision,
    now: Timestamp,
) -> Result<DecisionOutcome, StoreError> {
    store
        .record_decision(d, KeyKind::Software, effects(record), decided_event(d), now)
        .await
        .map(|(outcome, _)| outcome)
}

fn conflict(result: Result<impl std::fmt::Debug, StoreError>) -> Conflict {
    match result {
        Err(StoreError::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Events get sequence numbers 0, 1, 2, ... in append order and read back unchanged.
pub async fn audit_log_is_gapless_and_ordered<S: Store>(store: &S) {
    assert_eq!(store.audit_size().await.expect("size"), 0);
    for i in 0..5u8 {
        let e = NewEvent::new(
            Actor::Admin("root".into()),
            EventKind::AdminChanged {
                operation: "test".into(),
                subject: format!("s{i}"),
                detail: String::new(),
            },
        );
        let appended = store
            .append_events(vec![e.clone(), e], t(i64::from(i)))
            .await
            .expect("append");
        assert_eq!(
            appended.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [u64::from(i) * 2, u64::from(i) * 2 + 1]
        );
    }
    assert_eq!(store.audit_size().await.expect("size"), 10);
    let events = store.audit_events(3, 4).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [3, 4, 5, 6]
    );
    let hashes = store.leaf_hashes(0, 100).await.expect("hashes");
    assert_eq!(hashes.len(), 10);
    // Leaves as stored are the events' exact leaf bytes, hashing to the stored leaf hashes.
    let leaves = store.audit_leaves(3, 4).await.expect("leaves");
    assert_eq!(leaves.len(), 4);
    for ((seq, text), event) in leaves.iter().zip(&events) {
        assert_eq!(*seq, event.seq);
        assert_eq!(text.as_bytes(), event.leaf_bytes().expect("canonical"));
        assert_eq!(
            countersign_core::merkle::leaf_hash(text.as_bytes()),
            hashes[*seq as usize]
        );
    }
    let latest = store
        .latest_event_of_kind("admin_changed")
        .await
        .expect("query")
        .expect("found");
    assert_eq!(latest.seq, 9);
    assert_eq!(
        store
            .latest_event_of_kind("policy_changed")
            .await
            .expect("query"),
        None
    );
    assert_eq!(hashes[3], events[0].leaf_hash().expect("hash"));
}

/// Asking for a request that does not exist is `NotFound`, not an empty record.
pub async fn unknown_action_is_not_found<S: Store>(store: &S) {
    assert!(matches!(
        store.request(Uuid::from_u128(42)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store
            .grant_for_request(Uuid::from_u128(42))
            .await
            .expect("query")
            .is_none()
    );
}

/// A stored request reads back identical, with its digest, and lists as pending.
pub async fn action_round_trips_with_its_digest<S: Store>(store: &S) {
    enrol_deciders(store).await;
    let before = store.audit_size().await.expect("size");
    let record = create(store, 1, 2).await;
    let back = store.request(record.action.id).await.expect("read");
    assert_eq!(back, record);
    assert_eq!(back.action.digest().expect("digest"), back.digest);
    let pending = store
        .requests_by_status(ActionStatus::Pending, 10)
        .await
        .expect("list");
    assert_eq!(pending.len(), 1);
    assert_eq!(store.audit_size().await.expect("size"), before + 1);
    let (new, events) = sample_action(1, 2);
    assert_eq!(
        conflict(store.create_request(&new, events, t(1)).await),
        Conflict::Exists
    );
}

/// Quorum 2: one approval counts, a second approver's approval approves and issues the grant.
pub async fn quorum_counts_distinct_approvers_and_issues_one_grant<S: Store>(store: &S) {
    let record = create(store, 2, 2).await;
    let before = store.audit_size().await.expect("size");
    let first = decide(
        store,
        &record,
        &decision(&record, "bob", Verdict::Approve, 1, 1),
        t(10),
    )
    .await;
    assert_eq!(
        first.expect("first"),
        DecisionOutcome::Counted { approvals: 1 }
    );
    assert!(
        store
            .grant_for_request(record.action.id)
            .await
            .expect("query")
            .is_none()
    );
    let second = decide(
        store,
        &record,
        &decision(&record, "carol", Verdict::Approve, 2, 2),
        t(11),
    )
    .await;
    let DecisionOutcome::Approved(grant) = second.expect("second") else {
        panic!("not approved")
    };
    assert_eq!(grant.grant.request_digest, record.digest);
    assert_eq!(
        store.request(record.action.id).await.expect("read").status,
        ActionStatus::Approved
    );
    assert_eq!(
        store
            .grant_for_request(record.action.id)
            .await
            .expect("query")
            .map(|g| g.grant),
        Some(grant)
    );
    let decisions = store.decisions(record.action.id).await.expect("decisions");
    assert_eq!(
        decisions
            .iter()
            .map(|d| d.decision.decision.approver_id.as_str())
            .collect::<Vec<_>>(),
        ["bob", "carol"]
    );
    // decision, decision, approved, grant issued, after the request
    assert_eq!(store.audit_size().await.expect("size"), before + 4);
}

/// The same approver cannot count twice, even with a new nonce or another key.
pub async fn second_decision_by_same_approver_is_rejected<S: Store>(store: &S) {
    let record = create(store, 3, 2).await;
    decide(
        store,
        &record,
        &decision(&record, "bob", Verdict::Approve, 1, 1),
        t(10),
    )
    .await
    .expect("first");
    let again = decide(
        store,
        &record,
        &decision(&record, "bob", Verdict::Approve, 2, 3),
        t(11),
    )
    .await;
    assert_eq!(conflict(again), Conflict::AlreadyDecided);
    assert_eq!(
        store.request(record.action.id).await.expect("read").status,
        ActionStatus::Pending
    );
}

/// A nonce seen before, on any request, is a replay.
pub async fn replayed_nonce_is_rejected<S: Store>(store: &S) {
    let a = create(store, 4, 2).await;
    let b = create(store, 5, 2).await;
    decide(
        store,
        &a,
        &decision(&a, "bob", Verdict::Approve, 7, 1),
        t(10),
    )
    .await
    .expect("first");
    let replay = decide(
        store,
        &b,
        &decision(&b, "carol", Verdict::Approve, 7, 2),
        t(11),
    )
    .await;
    assert_eq!(conflict(replay), Conflict::NonceReused);
}

/// A single deny denies the request, whatever the quorum.
pub async fn one_deny_denies<S: Store>(store: &S) {
    let record = create(store, 6, 3).await;
    decide(
        store,
        &record,
        &decision(&record, "bob", Verdict::Approve, 1, 1),
        t(10),
    )
    .await
    .expect("approve");
    let denied = decide(
        store,
        &record,
        &decision(&record, "carol", Verdict::Deny, 2, 2),
        t(11),
    )
    .await;
    assert_eq!(denied.expect("deny"), DecisionOutcome::Denied);
    assert_eq!(
        store.request(record.action.id).await.expect("read").status,
        ActionStatus::Denied
    );
    assert!(
        store
            .grant_for_request(record.action.id)
            .await
            .expect("query")
            .is_none()
    );
}

/// Nothing can be decided once a request is decided.
pub async fn decision_on_decided_request_is_rejected<S: Store>(store: &S) {
    let record = create(store, 7, 1).await;
    decide(
        store,
        &record,
        &decision(&record, "bob", Verdict::Approve, 1, 1),
        t(10),
    )
    .await
    .expect("approve");
    let late = decide(
        store,
        &record,
        &decision(&record, "carol", Verdict::Deny, 2, 2),
        t(11),
    )
    .await;
    assert_eq!(conflict(late), Conflict::NotPending);
}

/// A decision at or after `expires_at` is refused even before the expiry job ran.
pub async fn decision_after_expiry_is_rejected<S: Store>(store: &S) {
    let record = create(store, 8, 1).await;
    let late = decide(
        store,
        &record,
        &decision(&record, "bob", Verdict::Approve, 1, 1),
        t(600),
    )
    .await;
    assert_eq!(conflict(late), Conflict::Expired);
}

/// A refused step leaves no trace: no decision row, no audit event.
pub async fn rejected_step_writes_no_audit_event<S: Store>(store: &S) {
    let record = create(store, 9, 1).await;
    let size = store.audit_size().await.expect("size");
    let late = decide(
        store,
        &record,
        &decision(&record, "bob", Verdict::Approve, 1, 1),
        t(700),
    )
    .await;
    assert!(late.is_err());
    assert_eq!(store.audit_size().await.expect("size"), size);
    assert!(
        store
            .decisions(record.action.id)
            .await
            .expect("decisions")
            .is_empty()
    );
}

/// A grant redeems once, only inside its window, only for its digest.
pub async fn grant_redeems_once_inside_its_window_for_its_digest<S: Store>(store: &S) {
    let record = create(store, 10, 1).await;
    let DecisionOutcome::Approved(grant) = decide(
        store,
        &record,
        &decision(&record, "bob", Verdict::Approve, 1, 1),
        t(10),
    )
    .await
    .expect("approve") else {
        panic!("not approved")
    };
    let id = grant.grant.grant_id;
    assert_eq!(
        store.grant_request(id).await.expect("query"),
        Some(record.action.id)
    );
    assert_eq!(
        store
            .grant_request(Uuid::from_u128(77))
            .await
            .expect("query"),
        None
    );
    let redeemed = || {
        NewEvent::new(
            agent(),
            EventKind::GrantRedeemed {
                grant_id: id,
                action_id: record.action.id,
            },
        )
    };
    assert_eq!(
        conflict(
            store
                .redeem_grant(id, &Digest::of(b"other"), redeemed(), t(20))
                .await
        ),
        Conflict::GrantDigestMismatch
    );
    assert_eq!(
        conflict(
            store
                .redeem_grant(id, &record.digest, redeemed(), t(9))
                .await
        ),
        Conflict::GrantNotValidNow
    );
    assert_eq!(
        conflict(
            store
                .redeem_grant(id, &record.digest, redeemed(), t(310))
                .await
        ),
        Conflict::GrantNotValidNow
    );
    let (g, _) = store
        .redeem_grant(id, &record.digest, redeemed(), t(20))
        .await
        .expect("redeem");
    assert_eq!(g.redeemed_at, Some(t(20)));
    assert_eq!(
        conflict(
            store
                .redeem_grant(id, &record.digest, redeemed(), t(21))
                .await
        ),
        Conflict::GrantRedeemed
    );
    assert!(matches!(
        store
            .redeem_grant(Uuid::from_u128(77), &record.digest, redeemed(), t(21))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// An outcome is accepted once, and only after the grant was redeemed.
pub async fn outcome_needs_a_redeemed_grant_and_is_recorded_once<S: Store>(store: &S) {
    let record = create(store, 11, 1).await;
    let DecisionOutcome::Approved(grant) = decide(
        store,
        &record,
        &decision(&record, "bob", Verdict::Approve, 1, 1),
        t(10),
    )
    .await
    .expect("approve") else {
        panic!("not approved")
    };
    let outcome = ExecutionOutcome {
        succeeded: true,
        exit_code: Some(0),
        detail: String::new(),
    };
    let event = || {
        NewEvent::new(
            agent(),
            EventKind::ExecutionReported {
                action_id: record.action.id,
                outcome: outcome.clone(),
            },
        )
    };
    assert_eq!(
        conflict(
            store
                .report_outcome(record.action.id, &outcome, event(), t(15))
                .await
        ),
        Conflict::NoOutcomeExpected
    );
    let redeemed = NewEvent::new(
        agent(),
        EventKind::GrantRedeemed {
            grant_id: grant.grant.grant_id,
            action_id: record.action.id,
        },
    );
    store
        .redeem_grant(grant.grant.grant_id, &record.digest, redeemed, t(20))
        .await
        .expect("redeem");
    store
        .report_outcome(record.action.id, &outcome, event(), t(30))
        .await
        .expect("report");
    assert_eq!(
        store.outcome(record.action.id).await.expect("read"),
        Some(outcome.clone())
    );
    assert_eq!(
        conflict(
            store
                .report_outcome(record.action.id, &outcome, event(), t(31))
                .await
        ),
        Conflict::NoOutcomeExpected
    );
}

/// Expiry marks due requests once; running it again does nothing.
pub async fn expiry_happens_once<S: Store>(store: &S) {
    let record = create(store, 12, 1).await;
    assert_eq!(store.next_expiry().await.expect("next"), Some(t(600)));
    let event_for = |id| NewEvent::new(Actor::System, EventKind::Expired { action_id: id });
    assert!(
        store
            .expire_due(t(599), &event_for)
            .await
            .expect("expire")
            .is_empty()
    );
    let expired = store.expire_due(t(600), &event_for).await.expect("expire");
    assert_eq!(expired.len(), 1);
    assert_eq!(
        expired[0].event,
        EventKind::Expired {
            action_id: record.action.id
        }
    );
    assert!(
        store
            .expire_due(t(601), &event_for)
            .await
            .expect("expire")
            .is_empty()
    );
    assert_eq!(
        store.request(record.action.id).await.expect("read").status,
        ActionStatus::Expired
    );
    assert_eq!(store.next_expiry().await.expect("next"), None);
}

/// A request the policy allowed is stored approved with its grant, in one step.
pub async fn policy_allowed_action_has_its_grant<S: Store>(store: &S) {
    let (mut new, events) = sample_action(13, 0);
    new.record.status = ActionStatus::Approved;
    let grant = grant_for(&new.record, t(0), t(300));
    new.grant = Some(grant.clone());
    store
        .create_request(&new, events, t(0))
        .await
        .expect("create");
    let stored = store
        .grant_for_request(new.record.action.id)
        .await
        .expect("query")
        .expect("grant");
    assert_eq!(stored.grant, grant);
    assert_eq!(stored.redeemed_at, None);
}

async fn approver_with_code<S: Store>(
    store: &S,
    id: &str,
    code: &[u8],
    expires_at: Timestamp,
) -> Digest {
    let admin = || {
        NewEvent::new(
            Actor::Admin("root".into()),
            EventKind::AdminChanged {
                operation: "test".into(),
                subject: id.into(),
                detail: String::new(),
            },
        )
    };
    let approver = Approver {
        id: id.into(),
        display_name: id.into(),
        groups: vec!["security".into()],
    };
    store
        .put_approver(&approver, admin(), t(0))
        .await
        .expect("approver");
    let code_hash = Digest::of(code);
    let code = EnrolmentCode {
        code_hash,
        approver_id: id.into(),
        expires_at,
    };
    store
        .create_enrolment_code(&code, admin(), t(0))
        .await
        .expect("code");
    code_hash
}

fn approver_key(approver: &str, seed: u8, at: Timestamp) -> (ApproverKey, NewEvent) {
    let (_, public_key) = key(seed);
    let k = ApproverKey {
        key_id: public_key.key_id(),
        approver_id: approver.into(),
        kind: KeyKind::Software,
        public_key: public_key.clone(),
        label: "test".into(),
        attestation: None,
        attested_by: None,
        enrolled_via: None,
        signed_in_at: None,
        enrolled_at: at,
        revoked_at: None,
    };
    let e = NewEvent::new(
        Actor::Approver(approver.into()),
        EventKind::KeyEnrolled {
            approver_id: approver.into(),
            key_id: k.key_id,
            key_kind: k.kind,
            public_key,
            attestation_key: None,
            attested_by: None,
        },
    );
    (k, e)
}

/// An enrolment code enrols one key of its own approver, once.
pub async fn enrolment_code_is_single_use_and_bound_to_its_approver<S: Store>(store: &S) {
    let code = approver_with_code(store, "bob", b"code-1", t(3600)).await;
    approver_with_code(store, "mallory", b"code-2", t(3600)).await;
    let (wrong, e) = approver_key("mallory", 5, t(10));
    assert_eq!(
        conflict(store.enrol_key(&code, &wrong, e).await),
        Conflict::EnrolmentCodeInvalid
    );
    let (k, e) = approver_key("bob", 6, t(10));
    store.enrol_key(&code, &k, e.clone()).await.expect("enrol");
    assert_eq!(store.key(&k.key_id).await.expect("read"), Some(k.clone()));
    assert_eq!(store.keys(Some("bob")).await.expect("keys").len(), 1);
    assert_eq!(
        conflict(store.enrol_key(&code, &k, e).await),
        Conflict::EnrolmentCodeInvalid
    );
}

/// An enrolment code past its expiry enrols nothing.
pub async fn expired_enrolment_code_is_rejected<S: Store>(store: &S) {
    let code = approver_with_code(store, "bob", b"code-3", t(60)).await;
    let (k, e) = approver_key("bob", 7, t(60));
    assert_eq!(
        conflict(store.enrol_key(&code, &k, e).await),
        Conflict::EnrolmentCodeInvalid
    );
    assert_eq!(store.key(&k.key_id).await.expect("read"), None);
}

/// A challenge opens at most one session, and not after it expired; used ones are forgotten
/// once they have expired, and nothing is stored for a challenge before it is answered.
pub async fn challenge_is_single_use<S: Store>(store: &S) {
    let c = Digest::of(b"challenge");
    assert_eq!(
        conflict(store.use_challenge(&c, t(60), t(60)).await),
        Conflict::ChallengeInvalid,
        "expired"
    );
    store
        .use_challenge(&c, t(60), t(10))
        .await
        .expect("first use");
    assert_eq!(
        conflict(store.use_challenge(&c, t(60), t(11)).await),
        Conflict::ChallengeInvalid,
        "second use"
    );
    let c2 = Digest::of(b"challenge-2");
    store
        .use_challenge(&c2, t(120), t(30))
        .await
        .expect("another");
    // Past its expiry the first is dropped (it could never be accepted again anyway).
    store
        .use_challenge(&Digest::of(b"challenge-3"), t(200), t(100))
        .await
        .expect("third");
    assert_eq!(
        conflict(store.use_challenge(&c2, t(120), t(101)).await),
        Conflict::ChallengeInvalid
    );
}

/// A decision signed by a key that is revoked by the time the store records it is refused
/// inside the store's transaction (the service's check before it can race a revocation), and
/// leaves no trace.
pub async fn revoked_key_cannot_decide<S: Store>(store: &S) {
    let record = create(store, 30, 1).await;
    let d = decision(&record, "bob", Verdict::Approve, 1, 1);
    let revoked = NewEvent::new(
        Actor::Admin("root".into()),
        EventKind::KeyRevoked {
            approver_id: "bob".into(),
            key_id: d.decision.key_id,
            reason: "lost".into(),
        },
    );
    store
        .revoke_key(&d.decision.key_id, revoked, t(5))
        .await
        .expect("revoke");
    let size = store.audit_size().await.expect("size");
    assert_eq!(
        conflict(decide(store, &record, &d, t(10)).await),
        Conflict::KeyRevoked
    );
    assert_eq!(store.audit_size().await.expect("size"), size);
    assert!(
        store
            .decisions(record.action.id)
            .await
            .expect("read")
            .is_empty()
    );
    // A key the store does not know, or another approver's, is refused the same way.
    let stranger = decision(&record, "bob", Verdict::Approve, 2, 77);
    assert_eq!(
        conflict(decide(store, &record, &stranger, t(10)).await),
        Conflict::KeyRevoked
    );
    let borrowed = decision(&record, "carol", Verdict::Approve, 3, 3);
    assert_eq!(
        conflict(decide(store, &record, &borrowed, t(10)).await),
        Conflict::KeyRevoked
    );
    assert_eq!(
        store.request(record.action.id).await.expect("read").status,
        ActionStatus::Pending
    );
}

/// An idempotency key names one request: a second request under it is refused with nothing
/// written, and the key finds the first.
pub async fn idempotency_key_names_one_request<S: Store>(store: &S) {
    let key = crate::idempotency_scope("agent:test", "k-1");
    let (mut first, events) = sample_action(40, 1);
    first.idempotency_key = Some(key.clone());
    store
        .create_request(&first, events, t(0))
        .await
        .expect("first");
    let size = store.audit_size().await.expect("size");
    let (mut second, events) = sample_action(41, 1);
    second.idempotency_key = Some(key.clone());
    assert_eq!(
        conflict(store.create_request(&second, events, t(1)).await),
        Conflict::IdempotencyKeyUsed
    );
    assert_eq!(store.audit_size().await.expect("size"), size);
    assert!(matches!(
        store.request(second.record.action.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.request_by_idempotency_key(&key).await.expect("read"),
        Some(first.record.action.id)
    );
    // Keys are the agent's own.
    let theirs = crate::idempotency_scope("agent:other", "k-1");
    assert_eq!(
        store
            .request_by_idempotency_key(&theirs)
            .await
            .expect("read"),
        None
    );
}

/// Revoking a key marks it and ends the sessions opened with it.
pub async fn revoked_key_ends_its_sessions<S: Store>(store: &S) {
    let code = approver_with_code(store, "bob", b"code-4", t(3600)).await;
    let (k, e) = approver_key("bob", 8, t(10));
    store.enrol_key(&code, &k, e).await.expect("enrol");
    let session = crate::Session {
        token_hash: Digest::of(b"tok"),
        approver_id: "bob".into(),
        key_id: k.key_id,
        expires_at: t(7200),
    };
    store.create_session(&session).await.expect("session");
    assert_eq!(
        store
            .session(&session.token_hash, t(20))
            .await
            .expect("read"),
        Some(session.clone())
    );
    assert_eq!(
        store
            .session(&session.token_hash, t(7200))
            .await
            .expect("read"),
        None
    );
    let revoked = NewEvent::new(
        Actor::Admin("root".into()),
        EventKind::KeyRevoked {
            approver_id: "bob".into(),
            key_id: k.key_id,
            reason: "lost".into(),
        },
    );
    store
        .revoke_key(&k.key_id, revoked.clone(), t(30))
        .await
        .expect("revoke");
    assert_eq!(
        store
            .key(&k.key_id)
            .await
            .expect("read")
            .and_then(|k| k.revoked_at),
        Some(t(30))
    );
    assert_eq!(
        store
            .session(&session.token_hash, t(31))
            .await
            .expect("read"),
        None
    );
    assert!(matches!(
        store.revoke_key(&k.key_id, revoked, t(32)).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Tokens are found by hash with their role; revocation is recorded and happens once.
pub async fn api_token_lookup_and_revocation<S: Store>(store: &S) {
    let admin = crate::ApiToken {
        token_id: Uuid::from_u128(6),
        subject: "root".into(),
        role: crate::TokenRole::Admin,
        token_hash: Digest::of(b"admin secret"),
        created_at: t(1),
        revoked_at: None,
    };
    let token = crate::ApiToken {
        token_id: Uuid::from_u128(5),
        subject: "agent:ci".into(),
        role: crate::TokenRole::Agent,
        token_hash: Digest::of(b"secret"),
        created_at: t(0),
        revoked_at: None,
    };
    let event = || {
        NewEvent::new(
            Actor::Admin("root".into()),
            EventKind::AdminChanged {
                operation: "token".into(),
                subject: "agent:ci".into(),
                detail: String::new(),
            },
        )
    };
    store
        .create_api_token(&token, event())
        .await
        .expect("create");
    store
        .create_api_token(&admin, event())
        .await
        .expect("create");
    assert_eq!(
        store.api_token(&token.token_hash).await.expect("read"),
        Some(token.clone())
    );
    assert_eq!(
        store.api_token(&admin.token_hash).await.expect("read"),
        Some(admin.clone())
    );
    assert_eq!(
        store.api_token(&Digest::of(b"guess")).await.expect("read"),
        None
    );
    store
        .revoke_api_token(token.token_id, event(), t(5))
        .await
        .expect("revoke");
    assert_eq!(
        store
            .api_token(&token.token_hash)
            .await
            .expect("read")
            .and_then(|t| t.revoked_at),
        Some(t(5))
    );
    assert!(matches!(
        store.revoke_api_token(token.token_id, event(), t(6)).await,
        Err(StoreError::NotFound(_))
    ));
    let listed = store.api_tokens().await.expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[1], admin,
        "the admin token is untouched by the agent's revocation"
    );
}

/// The first checkpoint note for a size is kept; the latest is the largest size.
pub async fn checkpoints_keep_the_first_note_per_size<S: Store>(store: &S) {
    assert_eq!(store.latest_checkpoint().await.expect("read"), None);
    store.save_checkpoint(3, "three").await.expect("save");
    store.save_checkpoint(3, "other three").await.expect("save");
    store.save_checkpoint(2, "two").await.expect("save");
    assert_eq!(
        store.latest_checkpoint().await.expect("read"),
        Some((3, "three".into()))
    );
}

/// A witness's first cosignature of a size is kept; each key's latest is its largest size.
pub async fn cosignatures_keep_the_first_per_key_and_size<S: Store>(store: &S) {
    store.save_checkpoint(5, "five").await.expect("save");
    assert_eq!(
        store.checkpoint_note(5).await.expect("read"),
        Some("five".into())
    );
    assert_eq!(store.checkpoint_note(6).await.expect("read"), None);
    let cosign = |approver: &str, seed: u8, size: u64, message: &[u8], at: i64| {
        let (k, public) = key(seed);
        Cosignature {
            tree_size: size,
            approver_id: approver.into(),
            key_id: public.key_id(),
            signature: Signature::from_p256(k.sign(message)),
            received_at: t(at),
        }
    };
    let bob5 = cosign("bob", 31, 5, b"five", 1);
    let bob5_again = cosign("bob", 31, 5, b"other", 2);
    let bob9 = cosign("bob", 31, 9, b"nine", 3);
    let carol5 = cosign("carol", 32, 5, b"five", 4);
    for c in [&bob5, &bob5_again, &bob9, &carol5] {
        store.save_cosignature(c).await.expect("save");
    }
    assert_eq!(
        store.cosignatures(5).await.expect("read"),
        vec![bob5.clone(), carol5.clone()]
    );
    assert_eq!(store.cosignatures(7).await.expect("read"), vec![]);
    assert_eq!(
        store.latest_cosignatures().await.expect("read"),
        vec![bob9, carol5]
    );
}

/// One append of more events than one SQL statement can bind lands whole and in order.
pub async fn a_large_batch_of_events_is_appended_whole<S: Store>(store: &S) {
    let events: Vec<NewEvent> = (0..12_000)
        .map(|i| {
            NewEvent::new(
                Actor::Admin("root".into()),
                EventKind::AdminChanged {
                    operation: "bulk".into(),
                    subject: format!("s{i}"),
                    detail: String::new(),
                },
            )
        })
        .collect();
    let appended = store.append_events(events, t(0)).await.expect("append");
    assert_eq!(appended.len(), 12_000);
    assert_eq!(store.audit_size().await.expect("size"), 12_000);
    let tail = store.audit_events(11_998, 10).await.expect("read");
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![11_998, 11_999]
    );
    assert!(
        matches!(&tail[1].event, EventKind::AdminChanged { subject, .. } if subject == "s11999")
    );
}

fn directory_event(subject: &str) -> NewEvent {
    NewEvent::new(
        Actor::Admin("scim:test".into()),
        EventKind::AdminChanged {
            operation: "directory_test".into(),
            subject: subject.into(),
            detail: String::new(),
        },
    )
}

fn directory_user(n: u128, approver: &str, active: bool, version: u64) -> DirectoryUser {
    DirectoryUser {
        id: Uuid::from_u128(n),
        approver_id: approver.into(),
        external_id: Some(format!("ext-{n}")),
        active,
        attributes: format!(r#"{{"userName":"{approver}"}}"#),
        version,
        created_at: t(1),
        updated_at: t(1),
    }
}

fn directory_group(
    n: u128,
    name: &str,
    maps_to: Option<&str>,
    members: &[u128],
    version: u64,
) -> DirectoryGroup {
    DirectoryGroup {
        id: Uuid::from_u128(n),
        display_name: name.into(),
        external_id: None,
        maps_to: maps_to.map(str::to_owned),
        members: members.iter().map(|m| Uuid::from_u128(*m)).collect(),
        version,
        created_at: t(1),
        updated_at: t(1),
    }
}

async fn groups_of<S: Store>(store: &S, id: &str) -> Vec<String> {
    store
        .approver(id)
        .await
        .expect("read")
        .expect("approver")
        .groups
}

/// An approver the directory holds has the mapped groups it is a member of, recomputed by
/// every group change (membership, mapping, deletion), each once and sorted.
pub async fn directory_groups_decide_an_approvers_groups<S: Store>(store: &S) {
    for (n, who) in [(1, "alice@example.com"), (2, "bob@example.com")] {
        store
            .put_directory_user(
                &directory_user(n, who, true, 1),
                Expected::New,
                who,
                &[],
                vec![directory_event(who)],
                t(1),
            )
            .await
            .expect("user");
    }
    assert!(groups_of(store, "alice@example.com").await.is_empty());
    let sec = directory_group(10, "Security Team", Some("security"), &[1, 2], 1);
    store
        .put_directory_group(&sec, Expected::New, vec![directory_event("sec")], t(2))
        .await
        .expect("group");
    let ops = directory_group(11, "Ops", Some("sre"), &[1], 1);
    store
        .put_directory_group(&ops, Expected::New, vec![directory_event("ops")], t(2))
        .await
        .expect("group");
    let unmapped = directory_group(12, "Everyone", None, &[1, 2], 1);
    store
        .put_directory_group(&unmapped, Expected::New, vec![directory_event("all")], t(2))
        .await
        .expect("group");
    assert_eq!(
        groups_of(store, "alice@example.com").await,
        vec!["security".to_owned(), "sre".to_owned()]
    );
    assert_eq!(
        groups_of(store, "bob@example.com").await,
        vec!["security".to_owned()]
    );
    // Bob leaves the security team; the group's mapping changes.
    let sec2 = DirectoryGroup {
        members: vec![Uuid::from_u128(1)],
        maps_to: Some("sre".into()),
        version: 2,
        ..sec
    };
    store
        .put_directory_group(
            &sec2,
            Expected::Version(1),
            vec![directory_event("sec")],
            t(3),
        )
        .await
        .expect("group");
    assert!(groups_of(store, "bob@example.com").await.is_empty());
    assert_eq!(
        groups_of(store, "alice@example.com").await,
        vec!["sre".to_owned()]
    );
    assert_eq!(
        store.directory_group(sec2.id).await.expect("read"),
        Some(sec2.clone())
    );
    store
        .delete_directory_group(ops.id, Expected::Any, vec![directory_event("ops")], t(4))
        .await
        .expect("delete");
    store
        .delete_directory_group(sec2.id, Expected::Any, vec![directory_event("sec")], t(4))
        .await
        .expect("delete");
    assert!(groups_of(store, "alice@example.com").await.is_empty());
    assert_eq!(store.directory_groups().await.expect("read").len(), 1);
}

/// Deactivation revokes the keys it names and ends every session of the person; it is refused
/// while another active key is left; a deactivated person enrols nothing; deletion keeps the
/// approver (history names it) with no groups.
pub async fn deactivating_in_the_directory_revokes_keys_and_sessions_and_blocks_enrolment<
    S: Store,
>(
    store: &S,
) {
    let code = approver_with_code(store, "carol", b"code-d1", t(3600)).await;
    let (k1, e1) = approver_key("carol", 21, t(10));
    store.enrol_key(&code, &k1, e1).await.expect("enrol");
    let user = directory_user(5, "carol", true, 1);
    store
        .put_directory_user(
            &user,
            Expected::New,
            "Carol",
            &[],
            vec![directory_event("carol")],
            t(11),
        )
        .await
        .expect("user");
    let group = directory_group(20, "Security", Some("security"), &[5], 1);
    store
        .put_directory_group(&group, Expected::New, vec![directory_event("g")], t(11))
        .await
        .expect("group");
    assert_eq!(groups_of(store, "carol").await, vec!["security".to_owned()]);
    let session = crate::Session {
        token_hash: Digest::of(b"carol-tok"),
        approver_id: "carol".into(),
        key_id: k1.key_id,
        expires_at: t(7200),
    };
    store.create_session(&session).await.expect("session");

    let inactive = DirectoryUser {
        active: false,
        version: 2,
        ..user.clone()
    };
    // Planned without the key: refused, nothing written.
    let before = store.audit_size().await.expect("size");
    assert!(matches!(
        store
            .put_directory_user(
                &inactive,
                Expected::Version(1),
                "Carol",
                &[],
                vec![directory_event("carol")],
                t(12)
            )
            .await,
        Err(StoreError::Conflict(Conflict::Stale))
    ));
    assert_eq!(store.audit_size().await.expect("size"), before);
    assert!(
        store
            .session(&session.token_hash, t(12))
            .await
            .expect("read")
            .is_some()
    );

    store
        .put_directory_user(
            &inactive,
            Expected::Version(1),
            "Carol",
            &[k1.key_id],
            vec![directory_event("carol")],
            t(13),
        )
        .await
        .expect("deactivate");
    assert_eq!(
        store
            .key(&k1.key_id)
            .await
            .expect("read")
            .and_then(|k| k.revoked_at),
        Some(t(13))
    );
    assert_eq!(
        store
            .session(&session.token_hash, t(14))
            .await
            .expect("read"),
        None
    );
    assert!(groups_of(store, "carol").await.is_empty());

    let code2 = Digest::of(b"code-d2");
    store
        .create_enrolment_code(
            &EnrolmentCode {
                code_hash: code2,
                approver_id: "carol".into(),
                expires_at: t(3600),
            },
            directory_event("code"),
            t(14),
        )
        .await
        .expect("code");
    let (k2, e2) = approver_key("carol", 22, t(15));
    assert!(matches!(
        store.enrol_key(&code2, &k2, e2.clone()).await,
        Err(StoreError::Conflict(Conflict::Deprovisioned))
    ));

    // Reactivated: the membership counts again, and a key may be enrolled.
    let active = DirectoryUser {
        active: true,
        version: 3,
        ..user.clone()
    };
    store
        .put_directory_user(
            &active,
            Expected::Version(2),
            "Carol",
            &[],
            vec![directory_event("carol")],
            t(16),
        )
        .await
        .expect("reactivate");
    assert_eq!(groups_of(store, "carol").await, vec!["security".to_owned()]);
    store.enrol_key(&code2, &k2, e2).await.expect("enrol again");

    store
        .delete_directory_user(
            user.id,
            Expected::Version(3),
            &[k2.key_id],
            vec![directory_event("carol")],
            t(17),
        )
        .await
        .expect("delete");
    assert!(store.directory_user(user.id).await.expect("read").is_none());
    assert!(groups_of(store, "carol").await.is_empty());
    assert!(
        store
            .key(&k2.key_id)
            .await
            .expect("read")
            .and_then(|k| k.revoked_at)
            .is_some()
    );
    assert!(
        store
            .directory_group(group.id)
            .await
            .expect("read")
            .expect("group")
            .members
            .is_empty()
    );
}

/// A write names the version it replaces; two people cannot share a userName, nor two groups
/// a name that differs only in case; members must be directory users.
pub async fn directory_writes_check_versions_and_names<S: Store>(store: &S) {
    let user = directory_user(7, "dave", true, 1);
    store
        .put_directory_user(
            &user,
            Expected::New,
            "Dave",
            &[],
            vec![directory_event("d")],
            t(1),
        )
        .await
        .expect("user");
    assert!(matches!(
        store
            .put_directory_user(
                &user,
                Expected::New,
                "Dave",
                &[],
                vec![directory_event("d")],
                t(1)
            )
            .await,
        Err(StoreError::Conflict(Conflict::Exists))
    ));
    let twin = directory_user(8, "dave", true, 1);
    assert!(matches!(
        store
            .put_directory_user(
                &twin,
                Expected::New,
                "Dave",
                &[],
                vec![directory_event("d")],
                t(1)
            )
            .await,
        Err(StoreError::Conflict(Conflict::Exists))
    ));
    let next = DirectoryUser {
        version: 3,
        ..user.clone()
    };
    assert!(matches!(
        store
            .put_directory_user(
                &next,
                Expected::Version(2),
                "Dave",
                &[],
                vec![directory_event("d")],
                t(2)
            )
            .await,
        Err(StoreError::Conflict(Conflict::Stale))
    ));
    assert!(matches!(
        store
            .delete_directory_user(
                Uuid::from_u128(99),
                Expected::Any,
                &[],
                vec![directory_event("d")],
                t(2)
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.directory_user_of("dave").await.expect("read"),
        Some(user.clone())
    );

    let g = directory_group(30, "Admins", None, &[7], 1);
    store
        .put_directory_group(&g, Expected::New, vec![directory_event("g")], t(3))
        .await
        .expect("group");
    let shout = directory_group(31, "ADMINS", None, &[], 1);
    assert!(matches!(
        store
            .put_directory_group(&shout, Expected::New, vec![directory_event("g")], t(3))
            .await,
        Err(StoreError::Conflict(Conflict::Exists))
    ));
    let ghost = directory_group(32, "Ghosts", None, &[404], 1);
    assert!(matches!(
        store
            .put_directory_group(&ghost, Expected::New, vec![directory_event("g")], t(3))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.directory_groups().await.expect("read"), vec![g]);
}

/// A sign-in vouches for an active key of its own approver; an older one changes nothing.
pub async fn a_sign_in_is_recorded_for_an_active_key_of_its_approver_and_only_moves_forward<
    S: Store,
>(
    store: &S,
) {
    let code = approver_with_code(store, "gina", b"code-s1", t(3600)).await;
    let (k, e) = approver_key("gina", 31, t(10));
    store.enrol_key(&code, &k, e).await.expect("enrol");
    assert_eq!(signed_in_at(store, &k.key_id).await, None);
    store
        .record_sign_in(&k.key_id, "gina", t(100), directory_event("gina"), t(101))
        .await
        .expect("record");
    assert_eq!(signed_in_at(store, &k.key_id).await, Some(t(100)));
    store
        .record_sign_in(&k.key_id, "gina", t(50), directory_event("gina"), t(102))
        .await
        .expect("record");
    assert_eq!(
        signed_in_at(store, &k.key_id).await,
        Some(t(100)),
        "an older sign-in changes nothing"
    );
    let before = store.audit_size().await.expect("size");
    assert!(matches!(
        store
            .record_sign_in(
                &k.key_id,
                "someone-else",
                t(200),
                directory_event("x"),
                t(201)
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    let revoked = NewEvent::new(
        Actor::Admin("root".into()),
        EventKind::KeyRevoked {
            approver_id: "gina".into(),
            key_id: k.key_id,
            reason: "lost".into(),
        },
    );
    store
        .revoke_key(&k.key_id, revoked, t(300))
        .await
        .expect("revoke");
    assert!(matches!(
        store
            .record_sign_in(&k.key_id, "gina", t(400), directory_event("gina"), t(401))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.audit_size().await.expect("size"),
        before + 1,
        "only the revocation was logged"
    );
}

async fn signed_in_at<S: Store>(store: &S, key: &countersign_core::KeyId) -> Option<Timestamp> {
    store
        .key(key)
        .await
        .expect("read")
        .and_then(|k| k.signed_in_at)
}

/// A person renamed in the directory (a new `userName`): the new approver takes over the
/// memberships; the old one, which history still names, loses its groups, keys and sessions.
pub async fn renaming_in_the_directory_moves_the_groups_and_deprovisions_the_old_approver<
    S: Store,
>(
    store: &S,
) {
    let code = approver_with_code(store, "henry", b"code-r1", t(3600)).await;
    let (k, e) = approver_key("henry", 41, t(10));
    store.enrol_key(&code, &k, e).await.expect("enrol");
    let user = directory_user(50, "henry", true, 1);
    store
        .put_directory_user(
            &user,
            Expected::New,
            "Henry",
            &[],
            vec![directory_event("h")],
            t(11),
        )
        .await
        .expect("user");
    let group = directory_group(51, "Security", Some("security"), &[50], 1);
    store
        .put_directory_group(&group, Expected::New, vec![directory_event("g")], t(11))
        .await
        .expect("group");
    let session = crate::Session {
        token_hash: Digest::of(b"henry-tok"),
        approver_id: "henry".into(),
        key_id: k.key_id,
        expires_at: t(7200),
    };
    store.create_session(&session).await.expect("session");

    let renamed = DirectoryUser {
        approver_id: "henry.ford".into(),
        version: 2,
        ..user.clone()
    };
    // Planned without revoking the old approver's key: refused, nothing changed.
    assert!(matches!(
        store
            .put_directory_user(
                &renamed,
                Expected::Version(1),
                "Henry",
                &[],
                vec![directory_event("h")],
                t(12)
            )
            .await,
        Err(StoreError::Conflict(Conflict::Stale))
    ));
    assert_eq!(groups_of(store, "henry").await, vec!["security".to_owned()]);
    store
        .put_directory_user(
            &renamed,
            Expected::Version(1),
            "Henry Ford",
            &[k.key_id],
            vec![directory_event("h")],
            t(13),
        )
        .await
        .expect("rename");
    assert!(groups_of(store, "henry").await.is_empty());
    assert_eq!(
        groups_of(store, "henry.ford").await,
        vec!["security".to_owned()]
    );
    assert_eq!(
        store
            .key(&k.key_id)
            .await
            .expect("read")
            .and_then(|k| k.revoked_at),
        Some(t(13))
    );
    assert_eq!(
        store
            .session(&session.token_hash, t(14))
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store
            .directory_user_of("henry.ford")
            .await
            .expect("read")
            .map(|u| u.id),
        Some(user.id)
    );
    assert_eq!(store.directory_user_of("henry").await.expect("read"), None);
}

fn notice(channel: &str, message: &str) -> NewOutboxItem {
    NewOutboxItem {
        channel: channel.into(),
        message_id: message.into(),
        payload: format!("{{\"message\":\"{message}\"}}"),
    }
}

/// The position starts unset, moves only from where the caller read it (a second replica
/// that read the same position is refused and queues nothing), and a notice already queued
/// for a channel is not queued twice.
pub async fn outbox_position_moves_once_and_notices_are_queued_once<S: Store>(store: &S) {
    assert_eq!(store.outbox_position().await.expect("position"), None);
    store
        .enqueue_outbox(
            None,
            3,
            vec![notice("hooks", "msg_1"), notice("chat", "msg_1")],
            t(0),
        )
        .await
        .expect("first enqueue");
    assert_eq!(store.outbox_position().await.expect("position"), Some(3));
    let raced = store
        .enqueue_outbox(
            None,
            3,
            vec![notice("hooks", "msg_1"), notice("hooks", "msg_2")],
            t(0),
        )
        .await;
    assert_eq!(conflict(raced), Conflict::Stale);
    store
        .enqueue_outbox(
            Some(3),
            5,
            vec![notice("hooks", "msg_1"), notice("hooks", "msg_3")],
            t(1),
        )
        .await
        .expect("second enqueue");
    let pending = store
        .outbox_items(OutboxState::Pending, 100)
        .await
        .expect("pending");
    let mut queued: Vec<_> = pending
        .iter()
        .map(|i| (i.channel.as_str(), i.message_id.as_str()))
        .collect();
    queued.sort();
    assert_eq!(
        queued,
        [("chat", "msg_1"), ("hooks", "msg_1"), ("hooks", "msg_3")]
    );
    assert!(
        pending
            .iter()
            .all(|i| i.attempts == 0 && i.last_error.is_none())
    );
}

/// A claimed item is not handed out again until its lease ends; a settlement counts the
/// attempt; a delivered item is never due again; a dead one keeps its error until retried.
pub async fn outbox_claims_hold_items_until_their_lease_ends_and_settle_once<S: Store>(store: &S) {
    store
        .enqueue_outbox(
            None,
            1,
            vec![notice("hooks", "a"), notice("hooks", "b")],
            t(0),
        )
        .await
        .expect("enqueue");
    let first = store.claim_outbox(t(1), t(31), 10).await.expect("claim");
    assert_eq!(first.len(), 2);
    assert!(
        store
            .claim_outbox(t(2), t(32), 10)
            .await
            .expect("claim")
            .is_empty(),
        "leased items are handed out once"
    );
    let (a, b) = (&first[0], &first[1]);
    store
        .settle_outbox(a.id, OutboxSettlement::Delivered { at: t(3) })
        .await
        .expect("delivered");
    store
        .settle_outbox(
            b.id,
            OutboxSettlement::Retry {
                next: t(10),
                error: "HTTP 503".into(),
            },
        )
        .await
        .expect("retry");
    assert!(
        matches!(
            store
                .settle_outbox(a.id, OutboxSettlement::Delivered { at: t(4) })
                .await,
            Err(StoreError::NotFound(_))
        ),
        "a delivered item is settled once"
    );
    assert!(
        store
            .claim_outbox(t(9), t(39), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store.claim_outbox(t(10), t(40), 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (b.id, 1));
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 503"));
    // A lease that ran out (a sender that died) lets another sender take the item.
    let retaken = store.claim_outbox(t(41), t(71), 10).await.expect("claim");
    assert_eq!(retaken.len(), 1);
    store
        .settle_outbox(
            b.id,
            OutboxSettlement::Dead {
                at: t(42),
                error: "HTTP 500".into(),
            },
        )
        .await
        .expect("dead");
    let dead = store
        .outbox_items(OutboxState::Dead, 10)
        .await
        .expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].attempts, dead[0].last_error.as_deref()),
        (2, Some("HTTP 500"))
    );
    assert!(
        store
            .claim_outbox(t(100), t(130), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    store.retry_outbox(b.id, t(101)).await.expect("retry dead");
    assert!(matches!(
        store.retry_outbox(a.id, t(101)).await,
        Err(StoreError::NotFound(_))
    ));
    let revived = store.claim_outbox(t(101), t(131), 10).await.expect("claim");
    assert_eq!((revived.len(), revived[0].attempts), (1, 0));
    let delivered = store
        .outbox_items(OutboxState::Delivered, 10)
        .await
        .expect("delivered");
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].next_attempt_at, t(3));
    // Pruning takes delivered items older than the cut only; pending and dead ones stay.
    assert_eq!(store.prune_outbox(t(3)).await.expect("prune"), 0);
    assert_eq!(store.prune_outbox(t(4)).await.expect("prune"), 1);
    assert!(
        store
            .outbox_items(OutboxState::Delivered, 10)
            .await
            .expect("delivered")
            .is_empty()
    );
    assert_eq!(
        store
            .outbox_items(OutboxState::Pending, 10)
            .await
            .expect("pending")
            .len(),
        1
    );
}

/// A request's escalation steps and reminders are taken in time order, one per call even when
/// several are overdue, each once (a second writer with the same view takes nothing), and none
/// once the request is decided.
pub async fn timed_steps_are_taken_once_each_in_order_while_pending<S: Store>(store: &S) {
    use countersign_core::{EscalationStep, TimedStep};
    enrol_deciders(store).await;
    let (mut new, _) = sample_action(70, 1);
    if let PolicyOutcome::RequireApproval {
        escalation,
        remind_before_seconds,
        ..
    } = &mut new.record.action.policy.outcome
    {
        *escalation = vec![
            EscalationStep {
                after_seconds: 60,
                add_groups: vec!["leads".into()],
                notify: Vec::new(),
            },
            EscalationStep {
                after_seconds: 300,
                add_groups: Vec::new(),
                notify: vec!["pager".into()],
            },
        ];
        *remind_before_seconds = vec![400];
    }
    let action = new.record.action.clone();
    new.record.digest = action.digest().expect("digest");
    let created = vec![NewEvent::new(
        agent(),
        EventKind::RequestCreated {
            action: Box::new(action.clone()),
            digest: new.record.digest,
            authenticated_by: None,
        },
    )];
    store
        .create_request(&new, created, t(0))
        .await
        .expect("create");
    // Reminder 400 s before the 600 s expiry falls at 200 s: between the two escalations.
    assert_eq!(store.next_step().await.expect("next"), Some(t(60)));
    let seen = std::sync::Mutex::new(Vec::new());
    let event_for = |r: &RequestRecord, step: TimedStep| {
        seen.lock().expect("lock").push((r.steps_taken, step));
        NewEvent::new(
            Actor::System,
            EventKind::AdminChanged {
                operation: "step".into(),
                subject: r.action.id.to_string(),
                detail: format!("{step:?}"),
            },
        )
    };
    assert!(
        store
            .take_due_steps(t(59), &event_for)
            .await
            .expect("none due")
            .is_empty()
    );
    // Everything overdue at once: one step per call, in order.
    for expected in 1..=3 {
        let taken = store
            .take_due_steps(t(500), &event_for)
            .await
            .expect("take");
        assert_eq!(taken.len(), 1, "step {expected}");
        assert_eq!(
            store.request(action.id).await.expect("record").steps_taken,
            expected
        );
    }
    assert!(
        store
            .take_due_steps(t(500), &event_for)
            .await
            .expect("done")
            .is_empty()
    );
    assert_eq!(
        *seen.lock().expect("lock"),
        [
            (0, TimedStep::Escalate(0)),
            (1, TimedStep::Remind(400)),
            (2, TimedStep::Escalate(1)),
        ]
    );
    assert_eq!(store.next_step().await.expect("next"), None);

    // Decided before its first step: it never takes one.
    let (mut other, _) = sample_action(71, 1);
    if let PolicyOutcome::RequireApproval {
        remind_before_seconds,
        ..
    } = &mut other.record.action.policy.outcome
    {
        *remind_before_seconds = vec![300];
    }
    other.record.digest = other.record.action.digest().expect("digest");
    store
        .create_request(&other, Vec::new(), t(0))
        .await
        .expect("create");
    assert_eq!(store.next_step().await.expect("next"), Some(t(300)));
    store
        .cancel_request(
            other.record.action.id,
            NewEvent::new(
                agent(),
                EventKind::Cancelled {
                    action_id: other.record.action.id,
                    reason: "done".into(),
                },
            ),
            t(10),
        )
        .await
        .expect("cancel");
    assert_eq!(store.next_step().await.expect("next"), None);
    assert!(
        store
            .take_due_steps(t(400), &event_for)
            .await
            .expect("none")
            .is_empty()
    );
}

fn review(
    record: &RequestRecord,
    reviewer: &str,
    concern: bool,
    nonce: u8,
    seed: u8,
) -> countersign_core::SignedReview {
    let (k, p) = key(seed);
    let review = countersign_core::Review {
        request_id: record.action.id,
        request_digest: record.digest,
        reviewer_id: reviewer.into(),
        key_id: p.key_id(),
        reviewed_at: t(10),
        concern,
        comment: String::new(),
        nonce: Nonce([nonce; 16]),
    };
    let signature = Signature::from_p256(k.sign(&review.signing_payload().expect("payload")));
    countersign_core::SignedReview { review, signature }
}

/// A break-glass request takes one review per reviewer, each with a fresh nonce and an active
/// key of the reviewer, until its review quorum; the last one appends the completion with the
/// count of concerns; no request that is not break-glass takes any, and a complete one no more.
pub async fn break_glass_reviews_count_distinct_reviewers_once_until_complete<S: Store>(store: &S) {
    enrol_deciders(store).await;
    let (mut new, _) = sample_action(80, 1);
    new.record.action.policy.outcome = PolicyOutcome::BreakGlass {
        review_quorum: 2,
        review_groups: vec!["security".into()],
    };
    new.record.status = ActionStatus::Approved;
    new.record.quorum = 0;
    new.record.digest = new.record.action.digest().expect("digest");
    store
        .create_request(&new, Vec::new(), t(0))
        .await
        .expect("create");
    let record = new.record;
    let recorded = |r: &countersign_core::SignedReview| {
        NewEvent::new(
            Actor::Approver(r.review.reviewer_id.clone()),
            EventKind::ReviewRecorded {
                review: r.clone(),
                key_kind: KeyKind::Software,
            },
        )
    };
    let id = record.action.id;
    let completed = move |concerns: u32| {
        NewEvent::new(
            Actor::System,
            EventKind::ReviewCompleted {
                action_id: id,
                concerns,
            },
        )
    };
    let awaiting = store.awaiting_review(10).await.expect("awaiting");
    assert_eq!(
        awaiting.iter().map(|r| r.action.id).collect::<Vec<_>>(),
        [id]
    );

    let bob = review(&record, "bob", false, 1, 1);
    let appended = store
        .record_review(&bob, KeyKind::Software, recorded(&bob), &completed, t(11))
        .await
        .expect("first review");
    assert_eq!(appended.len(), 1);
    // Bob again, with his other key: one review per reviewer.
    let again = review(&record, "bob", true, 2, 3);
    assert_eq!(
        conflict(
            store
                .record_review(
                    &again,
                    KeyKind::Software,
                    recorded(&again),
                    &completed,
                    t(12)
                )
                .await
        ),
        Conflict::AlreadyDecided
    );
    // Carol replaying bob's nonce.
    let replay = review(&record, "carol", true, 1, 2);
    assert_eq!(
        conflict(
            store
                .record_review(
                    &replay,
                    KeyKind::Software,
                    recorded(&replay),
                    &completed,
                    t(12)
                )
                .await
        ),
        Conflict::NonceReused
    );
    // Carol with bob's key.
    let stolen = review(&record, "carol", true, 4, 1);
    assert_eq!(
        conflict(
            store
                .record_review(
                    &stolen,
                    KeyKind::Software,
                    recorded(&stolen),
                    &completed,
                    t(12)
                )
                .await
        ),
        Conflict::KeyRevoked
    );
    let carol = review(&record, "carol", true, 5, 2);
    let appended = store
        .record_review(
            &carol,
            KeyKind::Software,
            recorded(&carol),
            &completed,
            t(13),
        )
        .await
        .expect("second review");
    assert_eq!(appended.len(), 2);
    assert_eq!(
        appended[1].event,
        EventKind::ReviewCompleted {
            action_id: id,
            concerns: 1
        }
    );
    assert!(
        store
            .awaiting_review(10)
            .await
            .expect("awaiting")
            .is_empty()
    );
    let reviews = store.reviews(id).await.expect("reviews");
    assert_eq!(
        reviews
            .iter()
            .map(|r| r.review.review.reviewer_id.as_str())
            .collect::<Vec<_>>(),
        ["bob", "carol"]
    );
    // Complete: no more reviews. Not break-glass: none at all.
    let late = review(&record, "dave", false, 6, 4);
    assert_eq!(
        conflict(
            store
                .record_review(&late, KeyKind::Software, recorded(&late), &completed, t(14))
                .await
        ),
        Conflict::ReviewNotExpected
    );
    let ordinary = create(store, 81, 1).await;
    let stray = review(&ordinary, "carol", false, 7, 2);
    let size = store.audit_size().await.expect("size");
    assert_eq!(
        conflict(
            store
                .record_review(
                    &stray,
                    KeyKind::Software,
                    recorded(&stray),
                    &completed,
                    t(15)
                )
                .await
        ),
        Conflict::ReviewNotExpected
    );
    assert_eq!(
        store.audit_size().await.expect("size"),
        size,
        "nothing written"
    );
}
