//! SCIM provisioning driven by a standard client library: `scim2-client` (PyPI), through
//! `tests/scim/directory.py`, against the service on a real socket. Every operation of RFC
//! 7644 the directory uses (create, read, filter, page, replace with ETags, PATCH, delete) and
//! what each does to approvers: groups follow the directory at once (pending requests'
//! eligibility and the approver's open stream included), and deactivation mid-stream revokes
//! the person's keys, closes their stream and ends their sessions. Then bad input.
//!
//! Needs the Python virtual environment with scim2-client (`scripts/setup.sh` makes it at
//! `/root/.cache/countersign-venv`, or set `COUNTERSIGN_PYTHON`).

mod harness;

use std::process::Stdio;
use std::time::Duration;

use axum::http::StatusCode;
use countersign_client::stream::ApproverStream;
use countersign_core::api::ServerMessage;
use countersign_core::{Actor, EventKind, Verdict};
use harness::{Harness, code, stream, test_config};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The directory: scim2-client in a Python process, one command a line.
struct Directory {
    _child: Child,
    input: ChildStdin,
    output: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Directory {
    async fn start(url: &str, token: &str) -> Self {
        let python = std::env::var("COUNTERSIGN_PYTHON")
            .unwrap_or_else(|_| "/root/.cache/countersign-venv/bin/python".to_owned());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/scim/directory.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(url)
            .arg(token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python with scim2-client (scripts/setup.sh installs it)");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut directory = Self {
            _child: child,
            input,
            output,
        };
        // As a directory starts: what the service supports, from its own discovery documents.
        let discovered = directory.run(json!({"op": "discover"})).await;
        assert_eq!(discovered["etag"], json!(true), "{discovered}");
        directory
    }

    async fn run(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        self.input.write_all(line.as_bytes()).await.expect("write");
        let answer = tokio::time::timeout(Duration::from_secs(30), self.output.next_line())
            .await
            .expect("the client answers within 30 s")
            .expect("read")
            .expect("the client is running");
        let answer: Value = serde_json::from_str(&answer).expect("json");
        assert!(answer.get("exception").is_none(), "{command} → {answer}");
        answer
    }

    async fn create(&mut self, kind: &str, resource: Value) -> Value {
        let out = self
            .run(json!({"op": "create", "type": kind, "resource": resource}))
            .await;
        out["resource"].clone()
    }
}

fn id(resource: &Value) -> String {
    resource["id"].as_str().expect("id").to_owned()
}

async fn groups_of(h: &Harness, who: &str) -> Vec<String> {
    h.state
        .store
        .approver(who)
        .await
        .expect("read")
        .expect("approver")
        .groups
}

async fn scim_token(h: &Harness) -> String {
    countersign_server::admin::issue_token(
        h.state.store.as_ref(),
        "root",
        countersign_store::TokenRole::Scim,
        "okta",
        h.now(),
    )
    .await
    .expect("token")
    .1
}

async fn next(s: &mut ApproverStream) -> Option<ServerMessage> {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("a message within 10 s")
        .ok()
        .flatten()
}

fn config() -> countersign_server::Config {
    let mut config = test_config();
    config.scim.groups = [("Security Team".to_owned(), "security".to_owned())].into();
    config
}

#[tokio::test]
async fn a_directory_provisions_and_deprovisions_approvers_through_a_standard_scim_client() {
    let h = Harness::with_config(config()).await;
    let (url, _stop) = h.serve().await;
    let token = scim_token(&h).await;
    let mut dir = Directory::start(&url, &token).await;
    assert_eq!(
        dir.run(json!({"op": "discover"})).await["etag"],
        json!(true)
    );

    // People: bob and carol exist already (enrolled keys); the directory takes them over,
    // with the userName spelt as the directory spells it. erin is new.
    let bob = dir
        .create("User", json!({"userName": "Bob", "displayName": "Bob Builder", "externalId": "00u-bob",
                               "emails": [{"value": "bob@example.com", "type": "work", "primary": true}]}))
        .await;
    let carol = dir
        .create(
            "User",
            json!({"userName": "carol", "name": {"givenName": "Carol", "familyName": "Danvers"}}),
        )
        .await;
    let erin = dir
        .create("User", json!({"userName": "erin", "active": true}))
        .await;
    assert_eq!(bob["meta"]["version"], json!("W/\"1\""));
    // Taken over by the directory: groups are the directory's (none yet), not the admin's.
    assert!(groups_of(&h, "bob").await.is_empty());
    assert_eq!(
        h.state
            .store
            .approver("carol")
            .await
            .expect("read")
            .expect("carol")
            .display_name,
        "Carol Danvers"
    );

    // Groups: only the mapped one grants anything.
    let security = dir
        .create("Group", json!({"displayName": "Security Team", "members": [{"value": id(&bob)}, {"value": id(&carol)}]}))
        .await;
    let finance = dir
        .create(
            "Group",
            json!({"displayName": "Finance", "members": [{"value": id(&erin)}]}),
        )
        .await;
    assert_eq!(groups_of(&h, "bob").await, ["security"]);
    assert_eq!(groups_of(&h, "carol").await, ["security"]);
    assert!(groups_of(&h, "erin").await.is_empty());
    let read = dir
        .run(json!({"op": "get", "type": "User", "id": id(&bob)}))
        .await;
    assert_eq!(
        read["resource"]["groups"][0]["display"],
        json!("Security Team")
    );

    // Filtering (case-insensitive userName, bracketed multi-valued) and paging.
    let found = dir
        .run(json!({"op": "search", "type": "User", "filter": "userName eq \"BOB\""}))
        .await;
    assert_eq!(found["list"]["totalResults"], json!(1));
    let found = dir
        .run(json!({"op": "search", "type": "User", "filter": "emails[type eq \"work\" and value co \"@example.com\"]"}))
        .await;
    assert_eq!(found["list"]["resources"][0]["id"], json!(id(&bob)));
    let page = dir
        .run(json!({"op": "search", "type": "User", "startIndex": 2, "count": 1}))
        .await;
    assert_eq!(
        (
            &page["list"]["totalResults"],
            &page["list"]["itemsPerPage"],
            &page["list"]["resources"][0]["id"]
        ),
        (&json!(3), &json!(1), &json!(id(&carol)))
    );
    let groups = dir
        .run(json!({"op": "search", "type": "Group", "filter": "displayName eq \"security team\"", "excludedAttributes": ["members"]}))
        .await;
    assert_eq!(groups["list"]["resources"][0]["id"], json!(id(&security)));
    assert!(groups["list"]["resources"][0].get("members").is_none());

    // Replace with ETags: the library sends If-Match with what it read; a stale version is 412.
    let renamed = dir
        .run(json!({"op": "replace", "type": "User", "id": id(&erin), "set": {"display_name": "Erin Hannon"}}))
        .await;
    assert_eq!(renamed["resource"]["meta"]["version"], json!("W/\"2\""));
    let stale = dir
        .run(json!({"op": "replace", "type": "User", "id": id(&erin), "set": {"display_name": "Late"}, "stale_version": "W/\"1\""}))
        .await;
    assert_eq!(stale["error"]["status"], json!(412));

    // A pending request two of security must approve; bob and carol are connected.
    let (request, digest) = h.submit_pending().await;
    let (mut bob_stream, bob_inbox) = stream(&h, &url, 0).await;
    let (mut carol_stream, carol_inbox) = stream(&h, &url, 1).await;
    assert_eq!((bob_inbox, carol_inbox), (vec![request], vec![request]));
    let bob_session = h.session(0).await;
    let (status, _) = h.call("GET", "/v1/audit", Some(&bob_session), None).await;
    assert_eq!(status, StatusCode::OK);

    // Carol leaves the security team: her stream's inbox empties at once, and she can no
    // longer decide the pending request.
    let removed = dir
        .run(json!({"op": "modify", "type": "Group", "id": id(&security),
                    "operations": [{"op": "remove", "path": format!("members[value eq \"{}\"]", id(&carol))}]}))
        .await;
    assert!(removed.get("error").is_none(), "{removed}");
    assert!(groups_of(&h, "carol").await.is_empty());
    match next(&mut carol_stream).await {
        Some(ServerMessage::Snapshot { requests, .. }) => assert!(requests.is_empty()),
        other => panic!("carol's stream should take a fresh, empty snapshot: {other:?}"),
    }
    let (status, body) = h
        .post_decision(
            request,
            &h.decision(1, request, digest, Verdict::Approve, 1),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "not_eligible"),
        "{body}"
    );

    // Bob is deactivated mid-stream (Entra ID's spelling of the PATCH): his keys are revoked,
    // his stream closes, his session ends, his decision is refused.
    let deactivated = dir
        .run(json!({"op": "modify", "type": "User", "id": id(&bob),
                    "operations": [{"op": "Replace", "value": {"active": false}}]}))
        .await;
    assert_eq!(
        deactivated["resource"]["active"],
        json!(false),
        "{deactivated}"
    );
    let mut closed = false;
    for _ in 0..4 {
        if next(&mut bob_stream).await.is_none() {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "bob's stream must close when the directory deactivates him"
    );
    let (status, _) = h.call("GET", "/v1/audit", Some(&bob_session), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = h
        .post_decision(
            request,
            &h.decision(0, request, digest, Verdict::Approve, 2),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(h.status_of(request).await, "pending");
    assert!(groups_of(&h, "bob").await.is_empty());
    // Still a member at the directory; membership grants nothing while inactive.
    let group = dir
        .run(json!({"op": "get", "type": "Group", "id": id(&security)}))
        .await;
    assert_eq!(
        group["resource"]["members"].as_array().map(Vec::len),
        Some(1)
    );

    // Deletion.
    assert_eq!(
        dir.run(json!({"op": "delete", "type": "User", "id": id(&erin)}))
            .await,
        json!({"ok": true})
    );
    let gone = dir
        .run(json!({"op": "get", "type": "User", "id": id(&erin)}))
        .await;
    assert_eq!(gone["error"]["status"], json!(404));
    assert_eq!(
        dir.run(json!({"op": "delete", "type": "Group", "id": id(&finance)}))
            .await,
        json!({"ok": true})
    );

    // Every change is in the log, by the directory's client.
    let events = h.state.store.audit_events(0, 10_000).await.expect("log");
    let by_directory: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.actor == Actor::Admin("scim:okta".into()))
        .map(|e| match &e.event {
            EventKind::AdminChanged {
                operation, subject, ..
            } => (operation.clone(), subject.clone()),
            EventKind::KeyRevoked {
                approver_id,
                reason,
                ..
            } => (format!("key_revoked: {reason}"), approver_id.clone()),
            other => (format!("{other:?}"), String::new()),
        })
        .collect();
    for expected in [
        ("directory_user_created", "bob"),
        ("directory_group_created", "Security Team"),
        ("directory_group_updated", "Security Team"),
        ("directory_user_deactivated", "bob"),
        ("key_revoked: deactivated in the directory", "bob"),
        ("directory_user_deleted", "erin"),
        ("directory_group_deleted", "Finance"),
    ] {
        assert!(
            by_directory
                .iter()
                .any(|(o, s)| o == expected.0 && s == expected.1),
            "missing {expected:?} in {by_directory:?}"
        );
    }
}

#[tokio::test]
async fn bad_scim_input_gets_the_standard_errors_and_changes_nothing() {
    let h = Harness::with_config(config()).await;
    let (url, _stop) = h.serve().await;
    let token = scim_token(&h).await;
    let mut dir = Directory::start(&url, &token).await;
    let raw = |method: &str, path: &str, body: Value| json!({"op": "raw", "method": method, "path": path, "body": body});
    let before = h.state.store.audit_size().await.expect("size");

    let no_name = dir
        .run(raw(
            "POST",
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}),
        ))
        .await;
    assert_eq!(
        (&no_name["status"], &no_name["body"]["scimType"]),
        (&json!(400), &json!("invalidValue"))
    );
    // Re-spellings that would make a second approver: invisible characters, spaces.
    for name in ["bob\u{200b}", " bob", "b ob"] {
        let out = dir
            .run(raw("POST", "/Users", json!({"userName": name})))
            .await;
        assert_eq!(out["status"], json!(400), "{name:?}: {out}");
    }
    let bad_filter = dir.run(json!({"op": "raw", "method": "GET", "path": "/Users?filter=userName%20eq", "body": null})).await;
    assert_eq!(bad_filter["body"]["scimType"], json!("invalidFilter"));
    let deep = format!(
        "/Users?filter={}",
        "not%20(".repeat(300) + "active%20pr" + &")".repeat(300)
    );
    let deep = dir
        .run(json!({"op": "raw", "method": "GET", "path": deep, "body": null}))
        .await;
    assert_eq!(deep["status"], json!(400), "{deep}");
    let nested = dir
        .run(raw(
            "POST",
            "/Groups",
            json!({"displayName": "x", "members": [{"value": "nobody"}]}),
        ))
        .await;
    assert_eq!(nested["body"]["scimType"], json!("invalidValue"));
    let missing = dir.run(raw("GET", "/Users/not-an-id", Value::Null)).await;
    assert_eq!(missing["status"], json!(404));
    let not_json = dir
        .run(json!({"op": "raw", "method": "POST", "path": "/Users", "body": "{", "headers": {"content-type": "application/scim+json"}}))
        .await;
    assert_eq!(not_json["status"], json!(400));
    assert_eq!(
        h.state.store.audit_size().await.expect("size"),
        before,
        "nothing was written"
    );

    let user = dir.create("User", json!({"userName": "frank"})).await;
    let path = format!("/Users/{}", id(&user));
    let bad_path = dir
        .run(raw("PATCH", &path, json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                        "Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}]})))
        .await;
    assert_eq!(
        (&bad_path["status"], &bad_path["body"]["scimType"]),
        (&json!(400), &json!("invalidPath"))
    );
    let mismatch = dir
        .run(json!({"op": "raw", "method": "DELETE", "path": path, "body": null, "headers": {"if-match": "W/\"7\""}}))
        .await;
    assert_eq!(mismatch["status"], json!(412));
    let current = dir
        .run(json!({"op": "raw", "method": "GET", "path": path, "body": null, "headers": {"if-none-match": "W/\"1\""}}))
        .await;
    assert_eq!(current["status"], json!(304));

    // Other tokens do not open SCIM, and a SCIM token opens nothing else.
    let client = reqwest::Client::new();
    for bearer in [h.agent_token.as_str(), "csscim_forged", ""] {
        let response = client
            .get(format!("{url}/scim/v2/Users"))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body["schemas"][0],
            json!("urn:ietf:params:scim:api:messages:2.0:Error")
        );
    }
    let response = client
        .get(format!("{url}/v1/admin/approvers"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
}

/// Directories send many PATCHes at once (one per member added), to any replica: none may lose
/// another's member. Then the `[scim] groups` map changes between starts and is applied to the groups
/// provisioned under the old one.
#[tokio::test]
async fn concurrent_member_additions_are_all_kept_and_a_new_map_applies_at_start() {
    let h = Harness::with_config(config()).await;
    let (url, _stop) = h.serve().await;
    let token = scim_token(&h).await;
    let http = reqwest::Client::new();
    let post = |path: &'static str, body: Value| {
        let request = http
            .post(format!("{url}/scim/v2{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(body.to_string());
        async move {
            let response = request.send().await.expect("send");
            assert_eq!(response.status(), reqwest::StatusCode::CREATED);
            response.json::<Value>().await.expect("json")
        }
    };
    let group = post("/Groups", json!({"displayName": "Security Team"})).await;
    let mut users = Vec::new();
    for n in 0..8 {
        users.push(
            post(
                "/Users",
                json!({"userName": format!("person{n}@example.com")}),
            )
            .await,
        );
    }
    // A second replica over the same store: its own process-wide lock, so only the records'
    // versions keep the two from losing each other's members.
    let replica = countersign_server::AppState::new(
        h.state.store.clone(),
        h.clock.clone(),
        h.state.policy.clone(),
        h.state.key.clone(),
        config(),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let other = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(countersign_server::serve(
        listener,
        replica,
        std::future::pending(),
    ));
    let additions = users.iter().enumerate().map(|(n, u)| {
        let base = if n % 2 == 0 { &url } else { &other };
        let request = http
            .patch(format!("{base}/scim/v2/Groups/{}", id(&group)))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "add", "path": "members", "value": [{"value": id(u)}]}]})
                .to_string(),
            );
        async move { request.send().await.expect("send").status() }
    });
    let statuses = futures_util::future::join_all(additions).await;
    assert!(
        statuses.iter().all(|s| *s == reqwest::StatusCode::OK),
        "{statuses:?}"
    );
    let stored = h
        .state
        .store
        .directory_group(id(&group).parse().expect("uuid"))
        .await
        .expect("read")
        .expect("group");
    assert_eq!(stored.members.len(), 8, "every concurrent addition is kept");
    assert_eq!(stored.version, 9);
    for n in 0..8 {
        assert_eq!(
            groups_of(&h, &format!("person{n}@example.com")).await,
            ["security"]
        );
    }

    // The next start maps the team to `sre` instead.
    let mut remapped = test_config();
    remapped.scim.groups = [("Security Team".to_owned(), "sre".to_owned())].into();
    let restarted = countersign_server::AppState::new(
        h.state.store.clone(),
        h.clock.clone(),
        h.state.policy.clone(),
        h.state.key.clone(),
        remapped,
    )
    .await;
    countersign_server::domain::directory::apply_mapping(&restarted)
        .await
        .expect("remap");
    assert_eq!(groups_of(&h, "person3@example.com").await, ["sre"]);
    let last = h
        .state
        .store
        .latest_event_of_kind("admin_changed")
        .await
        .expect("read")
        .expect("event");
    assert!(
        matches!(&last.event, EventKind::AdminChanged { operation, .. } if operation == "directory_group_remapped"),
        "{last:?}"
    );
}
