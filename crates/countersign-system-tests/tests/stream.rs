//! The approver stream over a real socket: authentication, snapshot, live requests and
//! updates, decisions on the stream, and the limits that protect other clients.

mod harness;

use countersign_client::stream::{ApproverStream, StreamError};
use countersign_core::api::ServerMessage;
use countersign_core::{Signature, Verdict};
use harness::Harness;
use p256::ecdsa::signature::Signer as _;
use serde_json::json;

async fn connect(
    h: &Harness,
    url: &str,
    who: usize,
) -> (ApproverStream, countersign_client::stream::Snapshot) {
    let a = &h.approvers[who];
    ApproverStream::connect(url, a.public.key_id(), |m| {
        Ok(Signature::from_p256(a.key.sign(m)))
    })
    .await
    .expect("stream connects")
}

async fn next(stream: &mut ApproverStream) -> ServerMessage {
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("a message within 10 s")
        .expect("stream works")
        .expect("stream open")
}

#[tokio::test]
async fn snapshot_then_live_requests_and_updates() {
    let h = Harness::new().await;
    let (url, _stop) = h.serve().await;
    let (existing, _) = h.submit_pending().await;
    let (mut bob, snapshot) = connect(&h, &url, 0).await;
    assert_eq!(snapshot.approver_id, "bob");
    assert_eq!(
        snapshot.requests.iter().map(|v| v.id).collect::<Vec<_>>(),
        [existing]
    );

    let (fresh, digest) = h.submit_pending().await;
    let ServerMessage::Request { seq, view } = next(&mut bob).await else {
        panic!("expected a request")
    };
    assert_eq!(view.id, fresh);
    assert!(seq >= snapshot.seq);

    // carol decides over REST; bob's stream sees the update.
    h.post_decision(fresh, &h.decision(1, fresh, digest, Verdict::Approve, 1))
        .await;
    let ServerMessage::Update { view, .. } = next(&mut bob).await else {
        panic!("expected an update")
    };
    assert_eq!((view.id, view.approvals), (fresh, 1));

    // bob decides on the stream and completes the quorum.
    bob.decide(h.decision(0, fresh, digest, Verdict::Approve, 2))
        .await
        .expect("send");
    let mut decided = None;
    let mut final_status = None;
    for _ in 0..6 {
        match next(&mut bob).await {
            ServerMessage::Decided { request_id, result } => {
                decided = Some((request_id, result.result.to_string()))
            }
            ServerMessage::Update { view, .. } if view.id == fresh => {
                final_status = Some(view.status)
            }
            _ => {}
        }
        if decided.is_some() && final_status == Some(countersign_core::ActionStatus::Approved) {
            break;
        }
    }
    assert_eq!(decided, Some((fresh, "approved".to_owned())));
    assert_eq!(final_status, Some(countersign_core::ActionStatus::Approved));
}

#[tokio::test]
async fn requests_an_approver_may_not_decide_are_not_sent() {
    let h = Harness::new().await;
    let (url, _stop) = h.serve().await;
    let (mut dave, snapshot) = connect(&h, &url, 2).await; // finance, not security
    assert!(snapshot.requests.is_empty());
    h.submit_pending().await;
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(700), dave.next()).await;
    assert!(quiet.is_err(), "dave received {quiet:?}");
}

#[tokio::test]
async fn refused_decision_on_the_stream_is_an_error_message() {
    let h = Harness::new().await;
    let (url, _stop) = h.serve().await;
    let (id, _) = h.submit_pending().await;
    let (mut bob, _) = connect(&h, &url, 0).await;
    bob.decide(h.decision(
        0,
        id,
        countersign_core::Digest::of(b"other"),
        Verdict::Approve,
        1,
    ))
    .await
    .expect("send");
    let ServerMessage::Error {
        request_id, code, ..
    } = next(&mut bob).await
    else {
        panic!("expected an error")
    };
    assert_eq!((request_id, code.as_str()), (Some(id), "digest_mismatch"));
}

#[tokio::test]
async fn wrong_key_cannot_authenticate() {
    let h = Harness::new().await;
    let (url, _stop) = h.serve().await;
    let carol = &h.approvers[1];
    // bob's key id, carol's signature.
    let result = ApproverStream::connect(&url, h.approvers[0].public.key_id(), |m| {
        Ok(Signature::from_p256(carol.key.sign(m)))
    })
    .await;
    assert!(
        matches!(result, Err(StreamError::Refused { ref code, .. }) if code == "unauthorized"),
        "{result:?}"
    );
}

#[tokio::test]
async fn flooding_client_is_disconnected_and_others_are_unaffected() {
    let h = Harness::new().await;
    let (url, _stop) = h.serve().await;
    let (mut flooder, _) = connect(&h, &url, 0).await;
    let (mut carol, _) = connect(&h, &url, 1).await;
    let junk = json!({"type": "nonsense"}).to_string();
    let mut closed = false;
    for _ in 0..500 {
        if flooder.send_raw(&junk).await.is_err() {
            closed = true;
            break;
        }
    }
    // Drain until the service closes the flooder.
    for _ in 0..600 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), flooder.next()).await {
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(Ok(Some(_))) => {}
        }
    }
    assert!(closed, "the flooding client was not disconnected");
    let (id, _) = h.submit_pending().await;
    let ServerMessage::Request { view, .. } = next(&mut carol).await else {
        panic!("carol got no request")
    };
    assert_eq!(view.id, id);
}
