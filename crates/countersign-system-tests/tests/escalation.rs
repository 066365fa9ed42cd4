//! Escalation and reminders, through a policy with short delays (the harness's
//! `incident.page` rule: security may decide; after 60 s without quorum finance may too and the
//! `pager` channel is told; a reminder 120 s before the 600 s expiry). The service's clock is
//! moved by the test; each step is an audit event before it has any effect, reaches the stream
//! of an approver who may now decide at once, and is told to the channels.

mod harness;

use std::time::Duration;

use axum::http::StatusCode;
use countersign_client::stream::ApproverStream;
use countersign_core::api::ServerMessage;
use countersign_core::{EventKind, Verdict};
use countersign_server::channels::{ChannelConfig, ChannelKind, ChannelsConfig, NoticeKind};
use harness::receiver::{Receiver, SECRET};
use harness::{Harness, code, events_of, stream, test_config};
use serde_json::json;
use uuid::Uuid;

const DAVE: usize = 2; // in finance only

fn hook(name: &str, url: String, events: Vec<NoticeKind>) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        kind: ChannelKind::Webhook,
        url,
        secret: Some(SECRET.into()),
        events,
        include_parameters: false,
        sensitive_parameters: Vec::new(),
        include_diff: false,
        requesters: Vec::new(),
        recipient: None,
    }
}

/// The next message on `s` that `pick` takes, skipping others.
async fn next_taken<T>(s: &mut ApproverStream, pick: impl Fn(ServerMessage) -> Option<T>) -> T {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("a message within 10 s")
            .expect("stream")
            .expect("the stream goes on");
        if let Some(taken) = pick(message) {
            return taken;
        }
    }
}

/// Submits an `incident.page` request; its id and digest.
async fn submit_incident(h: &Harness) -> (Uuid, countersign_core::Digest) {
    let (status, body) = h.submit(json!({"type": "incident.page"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().expect("id").parse().expect("uuid"),
        body["digest"]
            .as_str()
            .expect("digest")
            .parse()
            .expect("digest"),
    )
}

async fn until_event(h: &Harness, id: Uuid, kind: &str) -> EventKind {
    for _ in 0..200 {
        if let Some(e) = events_of(h, id)
            .await
            .into_iter()
            .find(|e| e.type_name() == kind)
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} event for {id}");
}

#[tokio::test]
async fn a_request_without_quorum_escalates_to_more_approvers_and_reminds_before_it_expires() {
    let mut receiver = Receiver::start(0).await;
    let mut config = test_config();
    config.channels = ChannelsConfig {
        channels: vec![
            // Named by the escalation step: told of it though it otherwise takes only outcomes.
            hook(
                "pager",
                format!("{}/webhook", receiver.url),
                vec![NoticeKind::Approved],
            ),
            hook(
                "ops",
                format!("{}/webhook", receiver.url),
                vec![NoticeKind::Reminder],
            ),
        ],
        ..ChannelsConfig::default()
    };
    let h = Harness::with_config(config).await;
    h.set_to_wall_clock();
    let (url, _stop) = h.serve().await;
    let (stop_steps, stopped) = tokio::sync::watch::channel(false);
    let steps = tokio::spawn(countersign_server::jobs::timed_steps(
        h.state.clone(),
        stopped,
    ));

    let (id, digest) = submit_incident(&h).await;
    let (mut dave, inbox) = stream(&h, &url, DAVE).await;
    assert!(!inbox.contains(&id), "finance may not decide yet");
    let (status, early) = h
        .post_decision(id, &h.decision(DAVE, id, digest, Verdict::Approve, 1))
        .await;
    assert_eq!(
        (status, code(&early)),
        (StatusCode::FORBIDDEN, "not_eligible")
    );

    // Not yet: 59 s without quorum is no escalation.
    h.advance(59);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        events_of(&h, id)
            .await
            .iter()
            .all(|e| e.type_name() != "escalated")
    );

    h.advance(2);
    let escalated = until_event(&h, id, "escalated").await;
    assert_eq!(
        escalated,
        EventKind::Escalated {
            action_id: id,
            step: 0,
            added_groups: vec!["finance".into()],
            notified: vec!["pager".into()],
        }
    );
    // Dave's console hears of it at once, as a request new to him.
    let arrived = next_taken(&mut dave, |m| match m {
        ServerMessage::Request { view, .. } => Some(view),
        _ => None,
    })
    .await;
    assert_eq!(arrived.id, id);
    let told = receiver.next().await;
    assert_eq!(told["verified"], json!(true), "{told}");
    assert_eq!(told["body"]["type"], "request.escalated");
    assert_eq!(
        told["body"]["data"]["groups"],
        json!(["security", "finance"])
    );

    // The reminder, 120 s before expiry (at 480 s).
    h.advance(480 - 61);
    let reminded = until_event(&h, id, "reminded").await;
    assert_eq!(
        reminded,
        EventKind::Reminded {
            action_id: id,
            seconds_left: 120
        }
    );
    let reminder = receiver.next().await;
    assert_eq!(reminder["body"]["type"], "request.reminder");
    let update = next_taken(&mut dave, |m| match m {
        ServerMessage::Update { view, .. } => Some(view),
        _ => None,
    })
    .await;
    assert_eq!(update.id, id);

    // Finance decides now; the outcome reaches the pager channel as it asked.
    let (status, body) = h
        .post_decision(id, &h.decision(DAVE, id, digest, Verdict::Approve, 2))
        .await;
    assert!(status.is_success(), "{body}");
    let approved = receiver.next().await;
    assert_eq!(approved["body"]["type"], "request.approved");
    // Each step was taken once, in order, before the decision it made possible.
    let kinds: Vec<_> = events_of(&h, id)
        .await
        .iter()
        .map(|e| e.type_name())
        .filter(|k| ["escalated", "reminded", "decision_recorded", "approved"].contains(k))
        .collect();
    assert_eq!(
        kinds,
        ["escalated", "reminded", "decision_recorded", "approved"]
    );
    let _ = stop_steps.send(true);
    steps.await.expect("steps job");
}

#[tokio::test]
async fn a_decided_request_takes_no_more_steps() {
    let h = Harness::new().await;
    let (stop_steps, stopped) = tokio::sync::watch::channel(false);
    let steps = tokio::spawn(countersign_server::jobs::timed_steps(
        h.state.clone(),
        stopped,
    ));
    let (id, digest) = submit_incident(&h).await;
    let (status, body) = h
        .post_decision(id, &h.decision(0, id, digest, Verdict::Deny, 1))
        .await;
    assert!(status.is_success(), "{body}");
    h.advance(599);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let taken: Vec<_> = events_of(&h, id)
        .await
        .into_iter()
        .filter(|e| matches!(e, EventKind::Escalated { .. } | EventKind::Reminded { .. }))
        .collect();
    assert!(taken.is_empty(), "{taken:?}");
    assert_eq!(h.state.store.next_step().await.expect("next"), None);
    let _ = stop_steps.send(true);
    steps.await.expect("steps job");
}
