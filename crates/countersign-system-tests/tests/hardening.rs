//! What outside testers broke, pinned: identities re-spelled around the self-approval rule, a
//! revocation racing a decision, streams outliving their key, input that poisons readers, and
//! what an unauthenticated client can make the service write or keep.

mod harness;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use countersign_client::stream::ApproverStream;
use countersign_core::api::ServerMessage;
use countersign_core::{AuditEvent, EventKind, KeyKind, Signature, Verdict};
use countersign_server::admin;
use countersign_store::Approver;
use harness::{Harness, code, key};
use p256::ecdsa::signature::Signer as _;
use serde_json::json;
use sqlx::Connection as _;

async fn events(h: &Harness) -> Vec<AuditEvent> {
    let size = h.state.store.audit_size().await.expect("size");
    h.state
        .store
        .audit_events(0, u32::try_from(size).expect("small"))
        .await
        .expect("events")
}

async fn count_rows(h: &Harness, table: &str) -> i64 {
    let db = h.dir.path().join("countersign.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open");
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

/// The six spellings of one identity that let a person approve a request made on their behalf
/// are refused where they enter, and nothing is recorded.
#[tokio::test]
async fn re_spelled_on_behalf_of_is_refused_at_submission() {
    let h = Harness::new().await;
    let before = h.state.store.audit_size().await.expect("size");
    for spelling in [
        "Bob",
        "BOB",
        " bob",
        "bob ",
        "b\u{200B}ob",
        "bob\u{200F}",
        "bob\u{FF20}example.com",
    ] {
        let (status, body) = h.submit(json!({"on_behalf_of": spelling})).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_field"),
            "{spelling:?}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("on_behalf_of:"),
            "{body}"
        );
    }
    assert_eq!(h.state.store.audit_size().await.expect("size"), before);
}

/// Approver ids, groups and token subjects have the same one spelling: the re-spellings are
/// refused by the administration rules (HTTP and data directory share them).
#[tokio::test]
async fn identifiers_are_refused_in_any_but_their_canonical_form() {
    let h = Harness::new().await;
    let store = h.state.store.as_ref();
    let now = h.now();
    for (id, groups) in [
        ("Alice@example.com", vec!["security"]),
        ("alice@example.com ", vec!["security"]),
        ("ali\u{200D}ce@example.com", vec!["security"]),
        ("alice@example.com", vec!["Security"]),
        ("alice@example.com", vec!["secur\u{202E}ity"]),
    ] {
        let approver = Approver {
            id: id.into(),
            display_name: "Alice".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        };
        let refused = admin::put_approver(store, "root", &approver, now).await;
        assert!(refused.is_err(), "{id:?} {groups:?} accepted");
        assert_eq!(store.approver(id).await.expect("read"), None);
    }
    let refused = admin::issue_token(
        store,
        "root",
        countersign_store::TokenRole::Agent,
        "Agent:Deployer",
        now,
    )
    .await;
    assert!(refused.is_err());
    // A display name is free text, but not one that reorders or hides what it shows.
    let approver = Approver {
        id: "erin".into(),
        display_name: "Erin \u{202E}nimda".into(),
        groups: vec!["security".into()],
    };
    assert!(
        admin::put_approver(store, "root", &approver, now)
            .await
            .is_err()
    );
}

/// A revocation and a decision by the revoked key sent together: the decision is either
/// recorded before the revocation or refused, never after it (the check runs inside the
/// transaction that records the decision). 40 rounds, each with a fresh key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_racing_a_decision_never_records_the_revoked_keys_decision() {
    let h = Arc::new(Harness::new().await);
    let mut refused_after_revocation = 0;
    for round in 0..40u8 {
        let (code_text, _) =
            admin::issue_enrolment_code(h.state.store.as_ref(), "root", "bob", 3600, h.now())
                .await
                .expect("code");
        let (k, p) = key(100 + round);
        let (status, body) = h.enroll("bob", &code_text, &k, &p, KeyKind::Software).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (id, digest) = h.submit_pending().await;
        let mut d = h.decision(0, id, digest, Verdict::Approve, round);
        d.decision.key_id = p.key_id();
        d.signature = Signature::from_p256(k.sign(&d.decision.signing_payload().expect("p")));

        let revoke = {
            let h = h.clone();
            let key_id = p.key_id();
            tokio::spawn(async move {
                admin::revoke_key(h.state.store.as_ref(), "root", &key_id, "race", h.now()).await
            })
        };
        let decide = {
            let h = h.clone();
            tokio::spawn(async move { h.post_decision(id, &d).await })
        };
        revoke.await.expect("join").expect("revoked");
        let (status, body) = decide.await.expect("join");
        if status != StatusCode::OK {
            assert_eq!(code(&body), "key_revoked", "{body}");
            refused_after_revocation += 1;
        }
        let log = events(&h).await;
        let revoked_at = log
            .iter()
            .find(|e| matches!(&e.event, EventKind::KeyRevoked { key_id, .. } if *key_id == p.key_id()))
            .map(|e| e.seq)
            .expect("revocation logged");
        let recorded_at = log.iter().find_map(|e| match &e.event {
            EventKind::DecisionRecorded { decision, .. }
                if decision.decision.key_id == p.key_id() =>
            {
                Some(e.seq)
            }
            _ => None,
        });
        if let Some(seq) = recorded_at {
            assert!(
                seq < revoked_at,
                "round {round}: decision at {seq} recorded after the revocation at {revoked_at}"
            );
        }
    }
    // Both orders happen; the test is only meaningful when the race is actually run.
    assert!(refused_after_revocation > 0, "no round revoked first");
}

/// A stream opened with a key that is then revoked closes at once; the approver's other
/// streams (another key) stay open.
#[tokio::test]
async fn revoking_a_key_closes_its_open_streams() {
    let h = Harness::new().await;
    let (url, _stop) = h.serve().await;
    let connect = |who: usize| {
        let a = &h.approvers[who];
        let key = a.key.clone();
        ApproverStream::connect(&url, a.public.key_id(), move |m| {
            Ok(Signature::from_p256(key.sign(m)))
        })
    };
    let (mut bob, _) = connect(0).await.expect("bob connects");
    let (mut carol, _) = connect(1).await.expect("carol connects");
    let (status, _) = {
        admin::revoke_key(
            h.state.store.as_ref(),
            "root",
            &h.approvers[0].public.key_id(),
            "laptop lost",
            h.now(),
        )
        .await
        .expect("revoke");
        h.state.log_grew();
        (StatusCode::NO_CONTENT, ())
    };
    assert_eq!(status, StatusCode::NO_CONTENT);
    // bob's stream ends without carrying the next request.
    let (fresh, _) = h.submit_pending().await;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), bob.next()).await {
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Ok(Ok(Some(ServerMessage::Request { view, .. }))) => {
                panic!("revoked stream still received request {}", view.id)
            }
            Ok(Ok(Some(_))) => continue,
            Err(_) => panic!("revoked stream still open after 5 s"),
        }
    }
    let ServerMessage::Request { view, .. } =
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                match carol.next().await.expect("open").expect("message") {
                    m @ ServerMessage::Request { .. } => return m,
                    _ => continue,
                }
            }
        })
        .await
        .expect("carol hears of it")
    else {
        unreachable!()
    };
    assert_eq!(view.id, fresh);
}

/// Pings and binary frames count toward the stream's rate like any message.
#[tokio::test]
async fn ping_and_binary_floods_close_the_stream() {
    let h = Harness::new().await;
    let (url, _stop) = h.serve().await;
    let a = &h.approvers[0];
    let key = a.key.clone();
    let (mut flooder, _) = ApproverStream::connect(&url, a.public.key_id(), move |m| {
        Ok(Signature::from_p256(key.sign(m)))
    })
    .await
    .expect("connects");
    let mut closed = false;
    for _ in 0..2000 {
        if flooder.ping().await.is_err() {
            closed = true;
            break;
        }
    }
    for _ in 0..4000 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), flooder.next()).await {
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(Ok(Some(_))) => {}
        }
    }
    assert!(closed, "a ping flood was not disconnected");
}

/// Asking for session challenges, and opening streams that never authenticate, writes
/// nothing: only an answered challenge is recorded.
#[tokio::test]
async fn unauthenticated_challenges_and_streams_write_nothing() {
    let h = Harness::new().await;
    let (url, _stop) = h.serve().await;
    for _ in 0..300 {
        let (status, _) = h.call("POST", "/v1/sessions/challenge", None, None).await;
        assert_eq!(status, StatusCode::OK);
    }
    for _ in 0..20 {
        let ws = url.replace("http://", "ws://") + "/v1/ws";
        let (socket, _) = tokio_tungstenite::connect_async(&ws).await.expect("ws");
        drop(socket);
    }
    assert_eq!(count_rows(&h, "challenges").await, 0);
    // An answered one is recorded, once.
    h.session(0).await;
    assert_eq!(count_rows(&h, "challenges").await, 1);
    // A challenge this service did not issue is refused before any key is looked up.
    let forged = countersign_core::Digest::of(b"not issued here");
    let a = &h.approvers[0];
    let payload = countersign_core::SessionRequest::payload(
        &forged,
        &a.public.key_id(),
        "countersign.test/log",
    )
    .expect("payload");
    let body = json!({"key_id": a.public.key_id(), "challenge": forged,
                      "signature": Signature::from_p256(a.key.sign(&payload))});
    let (status, body) = h.call("POST", "/v1/sessions", None, Some(body)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "challenge_invalid")
    );
}

/// Made-up HTTP methods do not grow `/metrics`: they share one label.
#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let h = Harness::new().await;
    for i in 0..500 {
        let req = Request::builder()
            .method(format!("BOGUS{i}").as_str())
            .uri("/healthz")
            .body(Body::empty())
            .expect("request");
        h.send(req).await;
    }
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .expect("request");
    let (_, text) = h.send(req).await;
    let text = text.as_str().unwrap_or_default().to_owned();
    assert!(!text.contains("BOGUS"), "made-up method names in /metrics");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.len() < 16 * 1024, "/metrics is {} bytes", text.len());
}

/// Decision comments are bounded text: no terminal escapes, NUL or bidirectional controls,
/// and not megabytes.
#[tokio::test]
async fn decision_comments_that_attack_the_reader_are_refused() {
    let h = Harness::new().await;
    let (id, digest) = h.submit_pending().await;
    for (i, comment) in [
        "ok\u{1b}[2J".to_owned(),
        "ok\u{0}".to_owned(),
        "ok \u{202E}deifirev".to_owned(),
        "x".repeat(9 * 1024 * 1024),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = h.decision(0, id, digest, Verdict::Approve, i as u8 + 1);
        d.decision.comment = comment;
        let a = &h.approvers[0];
        d.signature = Signature::from_p256(a.key.sign(&d.decision.signing_payload().expect("p")));
        let (status, body) = h.post_decision(id, &d).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
            "comment {i}: {status} {body}"
        );
    }
    assert_eq!(h.status_of(id).await, "pending");
    assert!(h.state.store.decisions(id).await.expect("read").is_empty());
}

/// A request whose resource, justification or data attack the reader is refused field by
/// field, naming the field.
#[tokio::test]
async fn request_text_that_attacks_the_reader_is_refused_naming_the_field() {
    let h = Harness::new().await;
    for (extra, field) in [
        (json!({"resource": "s3://b/\u{202E}fdp.exe"}), "resource"),
        (json!({"resource": "db\u{1b}[31m"}), "resource"),
        (json!({"justification": "fine\u{200B}"}), "justification"),
        (
            json!({"parameters": {"q": "\u{1b}]0;x\u{7}"}}),
            "parameters.q",
        ),
        (json!({"context": {"k\u{0}": 1}}), "context"),
        (
            json!({"diff": {"format": "unified", "text": "+\u{85}"}}),
            "diff.text",
        ),
    ] {
        let (status, body) = h.submit(extra.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(field), "{extra}: {message}");
    }
}

/// Large diffs do not make every inbox read and stream message large: inboxes, snapshots and
/// live messages carry summaries; the whole request, diff included, comes from its view.
#[tokio::test]
async fn inboxes_and_streams_carry_bounded_summaries() {
    let h = Harness::new().await;
    let (url, _stop) = h.serve().await;
    let diff = format!("+{}\n", "x".repeat(4 * 1024 * 1024));
    let mut ids = Vec::new();
    for i in 0..4 {
        let (status, body) = h
            .submit(json!({
                "resource": format!("cluster/prod/web-{i}"),
                "diff": {"format": "unified", "text": diff},
                "parameters": {"blob": "p".repeat(100_000)},
            }))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    let token = h.session(0).await;
    let (status, inbox) = h.call("GET", "/v1/pending", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let inbox_bytes = inbox.to_string().len();
    assert_eq!(inbox.as_array().map(Vec::len), Some(4));
    assert!(inbox_bytes < 16 * 1024, "the inbox is {inbox_bytes} bytes");
    assert!(
        inbox
            .as_array()
            .expect("list")
            .iter()
            .all(|v| v["summary"] == true)
    );

    let a = &h.approvers[0];
    let key = a.key.clone();
    let (mut stream, snapshot) = ApproverStream::connect(&url, a.public.key_id(), move |m| {
        Ok(Signature::from_p256(key.sign(m)))
    })
    .await
    .expect("connects");
    let snapshot_bytes = serde_json::to_string(&snapshot.requests)
        .expect("json")
        .len();
    assert!(
        snapshot_bytes < 16 * 1024,
        "the snapshot is {snapshot_bytes} bytes"
    );
    let (status, body) = h
        .submit(json!({"diff": {"format": "unified", "text": diff}}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let message = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next_text())
        .await
        .expect("a live message")
        .expect("open")
        .expect("text");
    assert!(message.contains(body["id"].as_str().expect("id")));
    assert!(
        message.len() < 8 * 1024,
        "a live message is {} bytes",
        message.len()
    );

    // Opened, the request is whole and hashes to its digest.
    let (status, whole) = h
        .call(
            "GET",
            &format!("/v1/actions/{}/view", ids[0]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whole["action"]["request"]["diff"]["text"], json!(diff));
    assert!(whole.get("summary").is_none());
    let view: countersign_core::api::ActionView = serde_json::from_value(whole).expect("view");
    assert_eq!(view.action.digest().expect("digest"), view.digest);
}
