//! Outbound notice channels against a real receiver: `tests/channels/receiver.py` checks each
//! webhook's signature with the Standard Webhooks reference library (`standardwebhooks` on
//! PyPI) and answers as told (failures first, then success; or always 500). The Slack and
//! Teams payloads are checked against their documented shapes (Block Kit, Adaptive Card).
//!
//! Needs the Python virtual environment (`scripts/setup.sh` makes it at
//! `/root/.cache/countersign-venv`, or set `COUNTERSIGN_PYTHON`).

mod harness;

use std::time::Duration;

use countersign_core::Verdict;
use countersign_server::channels::{ChannelConfig, ChannelKind, ChannelsConfig, NoticeKind};
use countersign_store::OutboxState;
use harness::receiver::{Receiver, SECRET};
use harness::{Harness, test_config};
use serde_json::{Value, json};

fn channel(name: &str, kind: ChannelKind, url: String) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        kind,
        url,
        secret: (kind == ChannelKind::Webhook).then(|| SECRET.to_owned()),
        events: Vec::new(),
        include_parameters: false,
        sensitive_parameters: Vec::new(),
        include_diff: false,
        requesters: Vec::new(),
        recipient: None,
    }
}

async fn harness(channels: Vec<ChannelConfig>, max_attempts: u32) -> Harness {
    let mut config = test_config();
    config.channels = ChannelsConfig {
        public_url: Some("https://countersign.example".into()),
        channels,
        first_retry_ms: 1_000,
        max_retry_ms: 60_000,
        max_attempts,
        timeout_ms: 5_000,
        keep_delivered_days: 30,
    };
    config.channels.validate().expect("valid channels");
    let h = Harness::with_config(config).await;
    // Receivers refuse signatures more than five minutes from their own clock.
    h.set_to_wall_clock();
    h
}

fn submitted_with_secrets() -> Value {
    json!({
        "parameters": {"replicas": 3, "db": {"password": "hunter2"}, "api_token": "tok-123"},
        "diff": {"format": "unified", "text": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old-secret-line\n+new-secret-line\n"},
    })
}

#[tokio::test]
async fn a_webhook_signed_per_the_standard_is_verified_and_retried_until_accepted() {
    let mut receiver = Receiver::start(2).await;
    let hook = channel(
        "hooks",
        ChannelKind::Webhook,
        format!("{}/webhook", receiver.url),
    );
    let h = harness(vec![hook], 5).await;
    let (status, body) = h.submit(submitted_with_secrets()).await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let digest = body["digest"].as_str().expect("digest").to_owned();

    let first = receiver.next().await;
    assert_eq!(first["verified"], json!(true), "{first}");
    assert_eq!(first["status"], json!(503));
    let message_id = first["headers"]["webhook-id"].clone();
    assert!(
        message_id
            .as_str()
            .is_some_and(|m| m.starts_with("msg_") && m.ends_with("request.waiting")),
        "{message_id}"
    );
    let notice = &first["body"];
    assert_eq!(notice["type"], "request.waiting");
    assert_eq!(notice["data"]["request_id"], json!(id));
    assert_eq!(notice["data"]["digest"], json!(digest));
    assert_eq!(
        notice["data"]["link"],
        json!(format!("countersign://request/{id}"))
    );
    assert_eq!(
        notice["data"]["open_url"],
        json!(format!("https://countersign.example/open/{id}"))
    );
    assert_eq!(notice["data"]["environment"], "prod");
    assert!(
        notice["data"]["quorum"].as_u64().is_some_and(|q| q >= 1),
        "{notice}"
    );
    // Neither the diff nor any parameter unless the channel asks.
    let text = notice.to_string();
    for secret in ["hunter2", "tok-123", "secret-line", "replicas"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }

    // Retried after the backoff (the service's clock decides when it is due), same id.
    settled(&h, 1).await;
    h.advance(2);
    let second = receiver.next().await;
    assert_eq!(
        (second["verified"].clone(), second["status"].clone()),
        (json!(true), json!(503))
    );
    assert_eq!(second["headers"]["webhook-id"], message_id);
    settled(&h, 2).await;
    h.advance(4);
    let third = receiver.next().await;
    assert_eq!(
        (third["verified"].clone(), third["status"].clone()),
        (json!(true), json!(204))
    );
    assert_eq!(third["headers"]["webhook-id"], message_id);
    let delivered = wait_for(&h, OutboxState::Delivered, 1).await;
    assert_eq!(delivered[0].attempts, 3);
    assert_eq!(
        delivered[0].last_error, None,
        "delivered: the earlier failures are cleared"
    );

    // The outcome follows, denied with its reason.
    let (uuid, digest) = (id.parse().expect("uuid"), digest.parse().expect("digest"));
    let (status, body) = h
        .post_decision(uuid, &h.decision(0, uuid, digest, Verdict::Deny, 1))
        .await;
    assert!(status.is_success(), "{body}");
    let denied = receiver.next().await;
    assert_eq!(denied["verified"], json!(true));
    assert_eq!(denied["body"]["type"], "request.denied");
    assert_eq!(denied["body"]["data"]["request_id"], json!(id));
    assert_ne!(denied["headers"]["webhook-id"], message_id);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_receiver_and_the_notice_is_set_aside() {
    let mut receiver = Receiver::start(0).await;
    let mut hook = channel(
        "hooks",
        ChannelKind::Webhook,
        format!("{}/webhook", receiver.url),
    );
    hook.secret = Some("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=".into());
    let h = harness(vec![hook], 5).await;
    h.submit_pending().await;
    let refused = receiver.next().await;
    assert_eq!(
        (refused["verified"].clone(), refused["status"].clone()),
        (json!(false), json!(401))
    );
    // A 401 will not change by retrying: dead at once, with the reason kept.
    let dead = wait_for(&h, OutboxState::Dead, 1).await;
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 401"));
    // After the operator fixes the receiver, the dead notice can be sent again.
    h.state
        .store
        .retry_outbox(dead[0].id, h.now())
        .await
        .expect("retry");
    let again = receiver.next().await;
    assert_eq!(
        again["headers"]["webhook-id"],
        refused["headers"]["webhook-id"]
    );
}

#[tokio::test]
async fn slack_and_teams_get_their_documented_shapes_with_agent_text_made_inert() {
    let mut receiver = Receiver::start(0).await;
    let mut broken = channel(
        "pager",
        ChannelKind::Webhook,
        format!("{}/broken", receiver.url),
    );
    broken.events = vec![NoticeKind::Waiting];
    let h = harness(
        vec![
            channel(
                "slack",
                ChannelKind::Slack,
                format!("{}/slack", receiver.url),
            ),
            channel(
                "teams",
                ChannelKind::Teams,
                format!("{}/teams", receiver.url),
            ),
            broken,
        ],
        2,
    )
    .await;
    let sneaky = "<!channel> see [the runbook](https://evil.example) *now*";
    let mut extra = submitted_with_secrets();
    extra["justification"] = json!(sneaky);
    let (status, body) = h.submit(extra).await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();

    let mut by_path = std::collections::HashMap::new();
    while by_path.len() < 3 {
        let got = receiver.next().await;
        by_path.insert(got["path"].as_str().expect("path").to_owned(), got);
    }
    let open_url = format!("https://countersign.example/open/{id}");

    // Slack, Block Kit: a fallback text, a plain-text header (≤ 150), sections of at most 10
    // plain-text fields, a button to the web link, a context line.
    let slack = &by_path["/slack"]["body"];
    assert!(
        slack["text"]
            .as_str()
            .is_some_and(|t| t.contains("k8s.deploy")),
        "{slack}"
    );
    let blocks = slack["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(
        blocks[0]["text"]["text"]
            .as_str()
            .expect("header")
            .chars()
            .count()
            <= 150
    );
    let mut agent_text_seen = false;
    for block in blocks {
        match block["type"].as_str().expect("type") {
            "section" => {
                let fields = block["fields"].as_array().expect("fields");
                assert!(!fields.is_empty() && fields.len() <= 10, "{block}");
                for f in fields {
                    assert_eq!(f["type"], "plain_text", "{f}");
                    let t = f["text"].as_str().expect("text");
                    assert!(t.chars().count() <= 2000);
                    // In plain text Slack shows `<!channel>` as written: it notifies no one.
                    agent_text_seen |= t.contains(sneaky);
                }
            }
            "actions" => {
                let button = &block["elements"][0];
                assert_eq!(button["type"], "button");
                assert_eq!(button["text"]["type"], "plain_text");
                assert_eq!(button["url"], json!(open_url));
            }
            "context" => assert_eq!(block["elements"][0]["type"], "plain_text"),
            "header" => {}
            other => panic!("unexpected block {other}"),
        }
    }
    assert!(agent_text_seen, "the justification is shown: {slack}");
    assert!(
        !slack.to_string().contains("mrkdwn"),
        "no markup type carries agent text"
    );

    // Teams: a message with one Adaptive Card (1.4) holding a fact set and an OpenUrl action.
    let teams = &by_path["/teams"]["body"];
    assert_eq!(teams["type"], "message");
    let attachment = &teams["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(card["actions"][0]["url"], json!(open_url));
    let facts = card["body"]
        .as_array()
        .expect("body")
        .iter()
        .find(|b| b["type"] == "FactSet")
        .expect("a fact set");
    let justification = facts["facts"]
        .as_array()
        .expect("facts")
        .iter()
        .find(|f| f["title"] == "Justification")
        .expect("justification fact");
    let value = justification["value"].as_str().expect("value");
    assert!(
        value.contains(r"\[the runbook\]\(https://evil\.example\)") && value.contains(r"\*now\*"),
        "Markdown is escaped: {value}"
    );
    for body in [slack, teams] {
        let text = body.to_string();
        for secret in ["hunter2", "tok-123", "secret-line"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    // The always-failing receiver: retried once after the backoff, then set aside as dead.
    assert_eq!(by_path["/broken"]["status"], json!(500));
    settled(&h, 1).await;
    h.advance(2);
    let retried = receiver.next().await;
    assert_eq!(retried["path"], "/broken");
    let dead = wait_for(&h, OutboxState::Dead, 1).await;
    assert_eq!(dead[0].channel, "pager");
    assert_eq!(
        (dead[0].attempts, dead[0].last_error.as_deref()),
        (2, Some("HTTP 500"))
    );
}

/// Waits until `count` outbox items are in `state`.
async fn wait_for(
    h: &Harness,
    state: OutboxState,
    count: usize,
) -> Vec<countersign_store::OutboxItem> {
    for _ in 0..200 {
        let items = h.state.store.outbox_items(state, 100).await.expect("items");
        if items.len() >= count {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {count} outbox items in state {state:?}");
}

/// Waits until a pending item's `attempts`-th failure is recorded (its retry is then due
/// after the backoff, counted from the clock at that moment).
async fn settled(h: &Harness, attempts: u32) {
    for _ in 0..200 {
        let items = h
            .state
            .store
            .outbox_items(OutboxState::Pending, 100)
            .await
            .expect("items");
        if items.iter().any(|i| i.attempts >= attempts) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending item with {attempts} attempts");
}

#[tokio::test]
async fn an_agents_own_channel_and_the_person_it_acts_for_hear_the_outcome_and_nobody_elses() {
    use countersign_server::channels::Recipient;
    let mut receiver = Receiver::start(0).await;
    // The harness's agent is agent:deployer; another agent's channel must stay silent.
    let mut mine = channel(
        "deployer",
        ChannelKind::Webhook,
        format!("{}/webhook", receiver.url),
    );
    mine.requesters = vec!["agent:deployer".into()];
    let mut theirs = channel(
        "other",
        ChannelKind::Webhook,
        format!("{}/webhook", receiver.url),
    );
    theirs.requesters = vec!["agent:other".into()];
    let mut person = channel(
        "people",
        ChannelKind::Webhook,
        format!("{}/webhook", receiver.url),
    );
    person.recipient = Some(Recipient::OnBehalfOf);
    person.events = vec![
        NoticeKind::Approved,
        NoticeKind::Denied,
        NoticeKind::Expired,
    ];
    let h = harness(vec![mine, theirs, person], 3).await;

    // Made for nobody: only the agent's own channel hears of it.
    let (plain, plain_digest) = h.submit_pending().await;
    let got = receiver.next().await;
    assert_eq!(got["body"]["type"], "request.waiting");
    assert_eq!(got["body"]["data"]["request_id"], json!(plain.to_string()));
    assert!(got["body"]["data"].get("recipient").is_none());
    // Made for alice: the agent's channel hears it wait; alice hears the outcome.
    let (status, body) = h.submit(json!({"on_behalf_of": "alice@example.com"})).await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
    let for_alice: uuid::Uuid = body["id"].as_str().expect("id").parse().expect("uuid");
    let digest = body["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    let got = receiver.next().await;
    assert_eq!(got["body"]["type"], "request.waiting");
    assert_eq!(
        got["body"]["data"]["request_id"],
        json!(for_alice.to_string())
    );
    let (status, body) = h
        .post_decision(
            for_alice,
            &h.decision(0, for_alice, digest, Verdict::Deny, 1),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = h
        .post_decision(plain, &h.decision(0, plain, plain_digest, Verdict::Deny, 2))
        .await;
    assert!(status.is_success(), "{body}");
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let got = receiver.next().await;
        assert_eq!(got["verified"], json!(true));
        outcomes.push((
            got["body"]["data"]["request_id"]
                .as_str()
                .expect("id")
                .to_owned(),
            got["body"]["data"]["recipient"].as_str().map(str::to_owned),
        ));
    }
    outcomes.sort();
    let mut expected = vec![
        (for_alice.to_string(), None),
        (for_alice.to_string(), Some("alice@example.com".to_owned())),
        (plain.to_string(), None),
    ];
    expected.sort();
    assert_eq!(
        outcomes, expected,
        "the other agent's channel heard nothing"
    );
    // Nothing more arrives (no notice for agent:other's channel, none to alice about `plain`).
    let delivered = wait_for(&h, OutboxState::Delivered, 5).await;
    assert!(delivered.iter().all(|i| i.channel != "other"));
    assert_eq!(delivered.len(), 5);
}
