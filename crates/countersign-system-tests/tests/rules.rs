//! Every rule that fails closed, pinned against the real router, store and signatures.

mod harness;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use countersign_core::checkpoint::SignedCheckpoint;
use countersign_core::{AuditEvent, Digest, InclusionProof, KeyKind, Verdict};
use countersign_server::admin;
use harness::{Harness, code, key};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn decision_from_requester_is_rejected() {
    let h = Harness::new().await;
    let (status, body) = h.submit(json!({"on_behalf_of": "bob"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().expect("id").parse().expect("uuid");
    let digest = body["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    let (status, body) = h
        .post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 1))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "self_approval")
    );
    assert_eq!(h.status_of(id).await, "pending");
}

#[tokio::test]
async fn quorum_counts_distinct_approvers_only() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    let (status, body) = h
        .post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 1))
        .await;
    assert_eq!(
        (status, body["result"].as_str()),
        (StatusCode::OK, Some("counted")),
        "{body}"
    );
    let (status, body) = h
        .post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 2))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "already_decided")
    );
    assert_eq!(h.status_of(id).await, "pending");
    let (status, body) = h
        .post_decision(id, &h.decision(1, id, digest, Verdict::Approve, 3))
        .await;
    assert_eq!(
        (status, body["result"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{body}"
    );
    assert_eq!(h.status_of(id).await, "approved");
}

#[tokio::test]
async fn decision_with_wrong_digest_is_rejected() {
    let h = Harness::new().await;
    let (id, _) = h.submit_pending().await;
    let (status, body) = h
        .post_decision(
            id,
            &h.decision(0, id, Digest::of(b"something else"), Verdict::Approve, 1),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "digest_mismatch")
    );
}

#[tokio::test]
async fn decision_with_bad_signature_is_rejected() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    let mut d = h.decision(0, id, digest, Verdict::Deny, 1);
    d.decision.verdict = Verdict::Approve;
    let (status, body) = h.post_decision(id, &d).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "bad_signature")
    );
}

#[tokio::test]
async fn decision_with_unknown_or_revoked_key_is_rejected() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    let mut unknown = h.decision(0, id, digest, Verdict::Approve, 1);
    unknown.decision.key_id = key(77).1.key_id();
    let (status, body) = h.post_decision(id, &unknown).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "unknown_key")
    );

    let store = h.state.store.clone();
    admin::revoke_key(
        store.as_ref(),
        "root",
        &h.approvers[0].public.key_id(),
        "lost",
        h.now(),
    )
    .await
    .expect("revoke");
    let (status, body) = h
        .post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 2))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "key_revoked")
    );
}

#[tokio::test]
async fn decision_signed_with_someone_elses_key_is_rejected() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    let mut d = h.decision(1, id, digest, Verdict::Approve, 1);
    d.decision.approver_id = "bob".into(); // carol's key, claiming to be bob
    let (status, body) = h.post_decision(id, &d).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "key_not_approvers")
    );
}

#[tokio::test]
async fn replayed_nonce_is_rejected() {
    let h = Harness::new().await;
    let (a, da) = h.submit_pending().await;
    let (b, db) = h.submit_pending().await;
    let (status, _) = h
        .post_decision(a, &h.decision(0, a, da, Verdict::Approve, 9))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h
        .post_decision(b, &h.decision(0, b, db, Verdict::Approve, 9))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "nonce_reused")
    );
    // The exact same signed decision sent again is not a second decision: it answers what it
    // did (a retry after an unknown outcome), and records nothing (issue 15, item 16).
    let size = h.state.store.audit_size().await.expect("size");
    let (status, body) = h
        .post_decision(a, &h.decision(0, a, da, Verdict::Approve, 9))
        .await;
    assert_eq!(
        (status, body["result"].as_str()),
        (StatusCode::OK, Some("counted"))
    );
    assert_eq!(h.state.store.audit_size().await.expect("size"), size);
    assert_eq!(h.state.store.decisions(a).await.expect("read").len(), 1);
}

#[tokio::test]
async fn decision_with_skewed_clock_is_rejected() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    let d = h.decision(0, id, digest, Verdict::Approve, 1);
    h.advance(61);
    let (status, body) = h.post_decision(id, &d).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "clock_skew"));
}

#[tokio::test]
async fn decision_after_expiry_is_rejected() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    h.advance(60);
    let (status, body) = h
        .post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 1))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "expired"));
}

#[tokio::test]
async fn one_deny_denies() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    h.post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 1))
        .await;
    let (status, body) = h
        .post_decision(id, &h.decision(1, id, digest, Verdict::Deny, 2))
        .await;
    assert_eq!(
        (status, body["result"].as_str()),
        (StatusCode::OK, Some("denied"))
    );
    assert_eq!(h.status_of(id).await, "denied");
}

#[tokio::test]
async fn approver_outside_the_policy_groups_is_not_eligible() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    let (status, body) = h
        .post_decision(id, &h.decision(2, id, digest, Verdict::Approve, 1))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "not_eligible")
    );
}

#[tokio::test]
async fn software_key_is_refused_where_policy_requires_hardware() {
    let h = Harness::new().await;
    let (status, body) = h.submit(json!({"type": "hsm.rotate"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["id"].as_str().expect("id").parse().expect("uuid");
    let digest = body["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    let (status, body) = h
        .post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 1))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "hardware_key_required")
    );
}

#[tokio::test]
async fn approval_needs_the_verification_code_the_requester_was_shown() {
    let h = Harness::new().await;
    let (status, body) = h.submit(json!({"type": "iam.grant"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id: Uuid = body["id"].as_str().expect("id").parse().expect("uuid");
    let digest: Digest = body["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    // The requester's side is told the code; approvers get the three choices and not the code.
    let shown = body["verification_code"]
        .as_str()
        .expect("a code")
        .to_owned();
    assert_eq!(shown, countersign_core::verification::code(&digest));
    let (_, approver_view) = h
        .call(
            "GET",
            &format!("/v1/actions/{id}/view"),
            Some(&h.session(0).await),
            None,
        )
        .await;
    assert!(approver_view.get("verification_code").is_none());
    let choices: Vec<String> =
        serde_json::from_value(approver_view["verification_choices"].clone()).expect("choices");
    assert_eq!(choices.len(), 3);
    assert!(choices.contains(&shown));
    let wrong = choices.iter().find(|c| **c != shown).expect("a decoy");

    let (status, body) = h
        .post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 1))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "verification_code_required")
    );
    let (status, body) = h
        .post_decision(
            id,
            &h.decision_with_code(0, id, digest, Verdict::Approve, 2, Some(wrong)),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "verification_code_wrong")
    );
    assert_eq!(h.status_of(id).await, "pending");
    let (status, body) = h
        .post_decision(
            id,
            &h.decision_with_code(0, id, digest, Verdict::Approve, 3, Some(&shown)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.status_of(id).await, "approved");

    // Denying never needs the code.
    let (_, body) = h.submit(json!({"type": "iam.grant"})).await;
    let id: Uuid = body["id"].as_str().expect("id").parse().expect("uuid");
    let digest: Digest = body["digest"].as_str().expect("d").parse().expect("digest");
    let (status, body) = h
        .post_decision(id, &h.decision(0, id, digest, Verdict::Deny, 4))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.status_of(id).await, "denied");
}

#[tokio::test]
async fn grant_redeems_once_only_in_time_only_for_its_digest() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    h.post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 1))
        .await;
    h.post_decision(id, &h.decision(1, id, digest, Verdict::Approve, 2))
        .await;
    let token = h.agent_token.clone();
    let (_, view) = h
        .call(
            "GET",
            &format!("/v1/actions/{id}/wait?timeout=1"),
            Some(&token),
            None,
        )
        .await;
    let grant_id = view["grant"]["grant"]["grant_id"]
        .as_str()
        .expect("grant id")
        .to_owned();
    let redeem = |d: Digest| json!({"request_digest": d});

    let (status, body) = h
        .call(
            "POST",
            &format!("/v1/grants/{grant_id}/redeem"),
            Some(&token),
            Some(redeem(Digest::of(b"x"))),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "digest_mismatch")
    );
    let (status, body) = h
        .call(
            "POST",
            &format!("/v1/grants/{grant_id}/redeem"),
            Some(&token),
            Some(redeem(digest)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .call(
            "POST",
            &format!("/v1/grants/{grant_id}/redeem"),
            Some(&token),
            Some(redeem(digest)),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "grant_redeemed")
    );

    // A second approved request whose grant is left to expire.
    let (id2, digest2) = h.submit_pending().await;
    h.post_decision(id2, &h.decision(0, id2, digest2, Verdict::Approve, 3))
        .await;
    h.post_decision(id2, &h.decision(1, id2, digest2, Verdict::Approve, 4))
        .await;
    let (_, view) = h
        .call("GET", &format!("/v1/actions/{id2}"), Some(&token), None)
        .await;
    let grant2 = view["grant"]["grant"]["grant_id"]
        .as_str()
        .expect("grant id")
        .to_owned();
    h.advance(301);
    let (status, body) = h
        .call(
            "POST",
            &format!("/v1/grants/{grant2}/redeem"),
            Some(&token),
            Some(redeem(digest2)),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "grant_not_valid_now")
    );
}

#[tokio::test]
async fn policy_allow_and_deny_need_no_human() {
    let h = Harness::new().await;
    let (status, body) = h.submit(json!({"type": "db.table.read"})).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::CREATED, Some("approved")),
        "{body}"
    );
    assert!(body["grant"]["signature"].is_string());
    let (status, body) = h.submit(json!({"environment": "frozen"})).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::CREATED, Some("denied"))
    );
    assert_eq!(body["action"]["policy"]["reason"], "frozen");
}

#[tokio::test]
async fn expiry_happens_with_no_traffic() {
    let h = Harness::new().await;
    let (id, _) = h.submit_pending().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let job = tokio::spawn(countersign_server::jobs::expiry(h.state.clone(), stop_rx));
    h.advance(60);
    // The job ticks every 200 ms; wait for it, bounded.
    let mut status = String::new();
    for _ in 0..100 {
        status = h
            .state
            .store
            .request(id)
            .await
            .map(|r| format!("{:?}", r.status))
            .unwrap_or_default();
        if status == "Expired" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    job.await.expect("job stops");
    assert_eq!(status, "Expired");
}

#[tokio::test]
async fn failing_audit_write_stops_the_submission() {
    let h = Harness::new().await;
    let db = h.dir.path().join("countersign.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit device failed'); END;")
        .output()
        .expect("sqlite3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = h
        .state
        .store
        .requests_by_status(countersign_core::ActionStatus::Pending, 100)
        .await
        .expect("list")
        .len();
    let (status, body) = h.submit(json!({})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
    );
    let after = h
        .state
        .store
        .requests_by_status(countersign_core::ActionStatus::Pending, 100)
        .await
        .expect("list")
        .len();
    assert_eq!(before, after);
}

#[tokio::test]
async fn restart_loses_no_acknowledged_request_decision_or_grant() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    h.post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 1))
        .await;
    let (pending, pending_digest) = h.submit_pending().await;
    h.post_decision(
        pending,
        &h.decision(0, pending, pending_digest, Verdict::Approve, 2),
    )
    .await;
    h.post_decision(id, &h.decision(1, id, digest, Verdict::Approve, 3))
        .await;
    let size = h.state.store.audit_size().await.expect("size");
    let h = h.reopen().await;
    assert_eq!(h.status_of(id).await, "approved");
    assert_eq!(h.status_of(pending).await, "pending");
    let (_, view) = h
        .call(
            "GET",
            &format!("/v1/actions/{pending}"),
            Some(&h.agent_token.clone()),
            None,
        )
        .await;
    assert_eq!(view["approvals"], 1);
    assert!(
        h.state
            .store
            .grant_for_request(id)
            .await
            .expect("query")
            .is_some()
    );
    assert!(h.state.store.audit_size().await.expect("size") >= size);
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let h = Harness::new().await;
    let token = h.agent_token.clone();
    let (status, body) = h
        .call(
            "POST",
            "/v1/actions",
            Some(&token),
            Some(json!({"type": "k8s.deploy"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("resource"),
        "{body}"
    );
    let (status, body) = h.submit(json!({"approved": true})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("approved"),
        "{body}"
    );
    let (status, body) = h.submit(json!({"justification": "  "})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );

    let req = Request::post("/v1/actions")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from("{\"type\": "))
        .expect("req");
    let (status, body) = h.send(req).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let req = Request::post("/v1/actions")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .expect("req");
    let (status, body) = h.send(req).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let huge = "x".repeat(11 * 1024 * 1024);
    let req = Request::post("/v1/actions")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(format!("{{\"justification\": \"{huge}\"}}")))
        .expect("req");
    let (status, body) = h.send(req).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );

    let (status, body) = h
        .call(
            "GET",
            &format!("/v1/actions/{}", uuid::Uuid::now_v7()),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = h
        .call("GET", "/v1/actions/not-a-uuid", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = h
        .call("POST", "/v1/actions", Some("csa_wrong"), Some(json!({})))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert_eq!(
        h.state
            .store
            .requests_by_status(countersign_core::ActionStatus::Pending, 10)
            .await
            .expect("list")
            .len(),
        0
    );
}

#[tokio::test]
async fn enrolment_needs_a_valid_code_and_proof_of_possession() {
    let h = Harness::new().await;
    let store = h.state.store.clone();
    let (code_text, _) = admin::issue_enrolment_code(store.as_ref(), "root", "bob", 3600, h.now())
        .await
        .expect("code");
    let (k, p) = key(50);
    let (_, other) = key(51);
    let (status, body) = h
        .enroll("bob", &code_text, &k, &other, KeyKind::Software)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "bad_proof"));
    let (status, body) = h
        .enroll("bob", "AAAAA-BBBBB-CCCCC-DDDDD", &k, &p, KeyKind::Software)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "enrolment_code_invalid")
    );
    let (status, _) = h
        .enroll("bob", &code_text.to_lowercase(), &k, &p, KeyKind::Software)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = h.enroll("bob", &code_text, &k, &p, KeyKind::Software).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "enrolment_code_invalid")
    );
}

#[tokio::test]
async fn malformed_or_misplaced_attestation_is_refused_without_using_the_code() {
    let h = Harness::new().await;
    let store = h.state.store.clone();
    let (code_text, _) = admin::issue_enrolment_code(store.as_ref(), "root", "bob", 3600, h.now())
        .await
        .expect("code");
    let (k, p) = key(52);
    let (status, body) = h
        .enroll_attested("bob", &code_text, &k, &p, KeyKind::Tpm, Some("!!".into()))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "attestation_invalid")
    );
    let (status, body) = h
        .enroll_attested(
            "bob",
            &code_text,
            &k,
            &p,
            KeyKind::Software,
            Some("e30=".into()),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "attestation_unsupported")
    );
    // Refusals happen before the code is spent.
    let (status, body) = h.enroll("bob", &code_text, &k, &p, KeyKind::Tpm).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn session_opens_by_signing_a_fresh_challenge_once() {
    let h = Harness::new().await;
    let (_, ch) = h.call("POST", "/v1/sessions/challenge", None, None).await;
    let challenge: Digest = ch["challenge"]
        .as_str()
        .expect("challenge")
        .parse()
        .expect("digest");
    let a = &h.approvers[0];
    let payload = countersign_core::SessionRequest::payload(
        &challenge,
        &a.public.key_id(),
        "countersign.test/log",
    )
    .expect("payload");
    use p256::ecdsa::signature::Signer as _;
    let signature = countersign_core::Signature::from_p256(a.key.sign(&payload));
    let body = json!({"key_id": a.public.key_id(), "challenge": challenge, "signature": signature});
    let (status, opened) = h
        .call("POST", "/v1/sessions", None, Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let (status, again) = h.call("POST", "/v1/sessions", None, Some(body)).await;
    assert_eq!(
        (status, code(&again)),
        (StatusCode::CONFLICT, "challenge_invalid")
    );

    let token = opened["token"].as_str().expect("token").to_owned();
    let (id, _) = h.submit_pending().await;
    let (status, pending) = h.call("GET", "/v1/pending", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending.as_array().map(|a| a.len()), Some(1));
    assert_eq!(pending[0]["id"], id.to_string());
    let (status, _) = h
        .call("GET", "/v1/pending", Some(&h.agent_token.clone()), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn checkpoint_is_signed_and_every_event_is_provably_included() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    h.post_decision(id, &h.decision(0, id, digest, Verdict::Approve, 1))
        .await;
    let (_, cp) = h.call("GET", "/v1/audit/checkpoint", None, None).await;
    let signed = SignedCheckpoint::parse_note(cp["note"].as_str().expect("note")).expect("parses");
    signed
        .verify("countersign.test/log", h.state.key.public())
        .expect("signed by the service key");
    let size = signed.checkpoint.tree_size;
    assert!(
        size >= 10,
        "policy, admin, enrolment, request and decision events: {size}"
    );

    // Read the events as an approver and check each one's inclusion in the checkpoint.
    let store = h.state.store.clone();
    let events: Vec<AuditEvent> = store.audit_events(0, 1000).await.expect("events");
    for e in &events {
        let (_, proof) = h
            .call(
                "GET",
                &format!("/v1/audit/proof/inclusion?seq={}&tree_size={size}", e.seq),
                None,
                None,
            )
            .await;
        let proof: InclusionProof = serde_json::from_value(proof).expect("proof");
        proof
            .verify(&e.leaf_hash().expect("hash"), &signed.checkpoint.root_hash)
            .expect("included");
    }
    let (_, c) = h
        .call(
            "GET",
            &format!("/v1/audit/proof/consistency?from=3&to={size}"),
            None,
            None,
        )
        .await;
    let c: countersign_core::ConsistencyProof = serde_json::from_value(c).expect("proof");
    let old_root = h.state.log.root_at(3).expect("root");
    c.verify(&old_root, &signed.checkpoint.root_hash)
        .expect("consistent");
}

#[tokio::test]
async fn metrics_report_pending_requests_and_http_traffic() {
    let h = Harness::new().await;
    h.submit_pending().await;
    h.submit_pending().await;
    let (status, body) = h.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().expect("text body");
    assert!(text.contains("countersign_pending_actions 2"), "{text}");
    assert!(text.contains("countersign_http_requests_total{method=\"POST\",route=\"/v1/actions\",status=\"201\"} 2"), "{text}");
    assert!(text.contains("countersign_connected_approvers 0"), "{text}");
}

/// The console's TypeScript types are generated from `ui/src/generated/openapi.json`; this
/// keeps that file equal to what the service serves (rewrite it with
/// `COUNTERSIGN_UPDATE_VECTORS=1`, then `npm --prefix ui run types`).
#[tokio::test]
async fn console_copy_of_the_openapi_document_is_current() {
    let h = Harness::new().await;
    let (_, doc) = h.call("GET", "/v1/openapi.json", None, None).await;
    let text = serde_json::to_string_pretty(&doc).expect("json") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../ui/src/generated/openapi.json");
    if std::env::var_os("COUNTERSIGN_UPDATE_VECTORS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
        std::fs::write(&path, &text).expect("write");
    }
    let saved = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        saved == text,
        "{} is stale: rerun with COUNTERSIGN_UPDATE_VECTORS=1 and regenerate the UI types",
        path.display()
    );
}

#[tokio::test]
async fn openapi_document_matches_the_router() {
    let h = Harness::new().await;
    let (status, doc) = h.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3."),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    for expected in [
        "/v1/actions",
        "/v1/actions/{id}",
        "/v1/actions/{id}/wait",
        "/v1/actions/{id}/view",
        "/v1/actions/{id}/decisions",
        "/v1/actions/{id}/outcome",
        "/v1/grants/{id}/redeem",
        "/v1/enroll",
        "/v1/sessions/challenge",
        "/v1/sessions",
        "/v1/pending",
        "/v1/ws",
        "/v1/audit",
        "/v1/audit/checkpoint",
        "/v1/audit/proof/inclusion",
        "/v1/audit/proof/consistency",
        "/v1/server-key",
        "/healthz",
    ] {
        assert!(
            paths.contains_key(expected),
            "{expected} missing from the document"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for s in [
        "ActionRequest",
        "ActionView",
        "SignedDecision",
        "ErrorBody",
        "AuditEvent",
        "ServerMessage",
        "ClientMessage",
        "Digest",
        "Timestamp",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    assert!(doc["components"]["securitySchemes"]["agent_token"].is_object());

    // Every documented path and method is served: the router answers with something other
    // than its own bare 404 or a 405.
    let id = uuid::Uuid::now_v7();
    for (path, item) in paths {
        for method in ["get", "post"] {
            if item.get(method).is_none() {
                continue;
            }
            let uri = path.replace("{id}", &id.to_string());
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let (status, body) = h.send(req).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let bare_404 = status == StatusCode::NOT_FOUND && body["error"]["code"].is_null();
            assert!(!bare_404, "{method} {path} is documented but not routed");
        }
    }
}

#[tokio::test]
async fn inbox_is_never_cut_short() {
    let h = Harness::new().await;
    // More pending requests than any fixed page size the inbox once had.
    let mut ids = Vec::new();
    for _ in 0..520 {
        ids.push(h.submit_pending().await.0);
    }
    let (_, ch) = h.call("POST", "/v1/sessions/challenge", None, None).await;
    let challenge: Digest = ch["challenge"]
        .as_str()
        .expect("challenge")
        .parse()
        .expect("digest");
    let a = &h.approvers[0];
    let payload = countersign_core::SessionRequest::payload(
        &challenge,
        &a.public.key_id(),
        "countersign.test/log",
    )
    .expect("payload");
    use p256::ecdsa::signature::Signer as _;
    let signature = countersign_core::Signature::from_p256(a.key.sign(&payload));
    let body = json!({"key_id": a.public.key_id(), "challenge": challenge, "signature": signature});
    let (_, opened) = h.call("POST", "/v1/sessions", None, Some(body)).await;
    let token = opened["token"].as_str().expect("token").to_owned();
    let (status, pending) = h.call("GET", "/v1/pending", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<String> = pending
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(listed.len(), 520);
    assert!(ids.iter().all(|id| listed.contains(&id.to_string())));
}
