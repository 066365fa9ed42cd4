//! Break-glass through the harness's policy: `incident.fix` asking for break-glass is granted
//! at once without quorum, marked in the log and told to the channels, and stays open until
//! two reviewers from security have signed a review; the rules of reviews (eligibility, one per
//! reviewer, no review of anything else) and the policy's mistakes failing closed.

mod harness;

use axum::http::StatusCode;
use countersign_core::{EventKind, PolicyOutcome};
use countersign_server::channels::{ChannelConfig, ChannelKind, ChannelsConfig};
use harness::receiver::{Receiver, SECRET};
use harness::{Harness, code, events_of, test_config};
use serde_json::{Value, json};
use uuid::Uuid;

const BOB: usize = 0; // security
const CAROL: usize = 1; // security
const DAVE: usize = 2; // finance

async fn pending_reviews(h: &Harness, who: usize) -> Vec<String> {
    let token = h.session(who).await;
    let (status, body) = h
        .call("GET", "/v1/pending-reviews", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .expect("list")
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn break_glass_is_granted_at_once_loudly_and_stays_open_until_reviewed() {
    let mut receiver = Receiver::start(0).await;
    let mut config = test_config();
    config.channels = ChannelsConfig {
        channels: vec![ChannelConfig {
            name: "secops".into(),
            kind: ChannelKind::Webhook,
            url: format!("{}/webhook", receiver.url),
            secret: Some(SECRET.into()),
            events: Vec::new(),
            include_parameters: false,
            sensitive_parameters: Vec::new(),
            include_diff: false,
            requesters: Vec::new(),
            recipient: None,
        }],
        ..ChannelsConfig::default()
    };
    let h = Harness::with_config(config).await;
    h.set_to_wall_clock();

    let (status, body) = h
        .submit(json!({"type": "incident.fix", "break_glass": true,
                       "justification": "payments down, rolling back"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "approved", "granted without quorum: {body}");
    assert!(body["grant"].is_object(), "{body}");
    let id: Uuid = body["id"].as_str().expect("id").parse().expect("uuid");
    let digest = body["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    let events = events_of(&h, id).await;
    let EventKind::RequestCreated { action, .. } = &events[0] else {
        panic!("{events:?}");
    };
    assert!(action.request.break_glass);
    assert!(matches!(
        action.policy.outcome,
        PolicyOutcome::BreakGlass {
            review_quorum: 2,
            ..
        }
    ));
    assert!(events.iter().any(
        |e| matches!(e, EventKind::Approved { reason, .. } if reason.starts_with("break-glass:"))
    ));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::GrantIssued { .. }))
    );

    // Loud: the channels hear of it at once, as break-glass.
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let told: Value = receiver.next().await;
        assert_eq!(told["verified"], json!(true));
        kinds.push(told["body"]["type"].as_str().expect("type").to_owned());
        if told["body"]["type"] == "request.break_glass" {
            assert_eq!(told["body"]["data"]["break_glass"], json!(true));
            assert_eq!(told["body"]["data"]["quorum"], json!(2));
            assert_eq!(told["body"]["data"]["groups"], json!(["security"]));
        }
    }
    kinds.sort();
    assert_eq!(kinds, ["request.approved", "request.break_glass"]);

    // In security reviewers' lists, not finance's.
    assert_eq!(pending_reviews(&h, BOB).await, [id.to_string()]);
    assert!(pending_reviews(&h, DAVE).await.is_empty());
    let (status, body) = h
        .post_review(id, &h.review(DAVE, id, digest, false, 1))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "not_eligible")
    );

    let (status, body) = h
        .post_review(id, &h.review(BOB, id, digest, false, 2))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"reviews": 1, "review_quorum": 2, "complete": false})
    );
    let (status, body) = h.post_review(id, &h.review(BOB, id, digest, true, 3)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "already_decided")
    );
    assert!(
        pending_reviews(&h, BOB).await.is_empty(),
        "reviewed: off bob's list"
    );
    assert_eq!(pending_reviews(&h, CAROL).await, [id.to_string()]);

    let (status, body) = h
        .post_review(id, &h.review(CAROL, id, digest, true, 4))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["complete"], json!(true));
    assert!(pending_reviews(&h, CAROL).await.is_empty());
    let events = events_of(&h, id).await;
    let reviews: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::ReviewRecorded { review, .. } => {
                Some((review.review.reviewer_id.clone(), review.review.concern))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        reviews,
        [("bob".to_owned(), false), ("carol".to_owned(), true)]
    );
    assert_eq!(
        events.last(),
        Some(&EventKind::ReviewCompleted {
            action_id: id,
            concerns: 1
        })
    );
    let told = loop {
        let t = receiver.next().await;
        if t["body"]["type"] == "request.reviewed" {
            break t;
        }
    };
    assert_eq!(told["body"]["data"]["request_id"], json!(id.to_string()));
}

#[tokio::test]
async fn break_glass_fails_closed_when_not_asked_for_and_ordinary_requests_take_no_review() {
    let h = Harness::new().await;
    // The policy answers break-glass to a request that did not ask: denied.
    let (status, body) = h.submit(json!({"type": "glass.always"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "denied", "{body}");
    assert!(body["grant"].is_null());
    // Asking for break-glass where the policy does not allow it is an ordinary request.
    let (status, body) = h
        .submit(json!({"type": "k8s.deploy", "break_glass": true}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "pending", "{body}");
    let id: Uuid = body["id"].as_str().expect("id").parse().expect("uuid");
    let digest = body["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    let (status, body) = h
        .post_review(id, &h.review(BOB, id, digest, false, 1))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "review_not_expected")
    );
    assert!(pending_reviews(&h, BOB).await.is_empty());
}

#[tokio::test]
async fn the_person_a_break_glass_use_acted_for_cannot_review_it_under_another_spelling() {
    let h = Harness::new().await;
    // Another spelling of bob is refused at intake, so it can never reach the review rules.
    let (status, body) = h
        .submit(json!({"type": "incident.fix", "break_glass": true, "on_behalf_of": "BOB"}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );
    // Made for bob: bob may not review his own emergency.
    let (status, body) = h
        .submit(json!({"type": "incident.fix", "break_glass": true, "on_behalf_of": "bob"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id: Uuid = body["id"].as_str().expect("id").parse().expect("uuid");
    let digest = body["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    assert!(pending_reviews(&h, BOB).await.is_empty(), "not on his list");
    let (status, body) = h
        .post_review(id, &h.review(BOB, id, digest, false, 1))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "self_review")
    );
    // A review naming carol but signed with bob's key is not carol's.
    let mut forged = h.review(BOB, id, digest, false, 2);
    forged.review.reviewer_id = "carol".into();
    let (status, body) = h.post_review(id, &forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = h
        .post_review(id, &h.review(CAROL, id, digest, false, 3))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
