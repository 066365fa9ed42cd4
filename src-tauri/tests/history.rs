//! The console's History view in the real app: it mirrors and verifies the service's log as
//! requests are decided, finds them by search, opens one with its decisions, keys and
//! inclusion evidence, exports CSV, and raises a loud alarm when the service's database is
//! rewritten behind its back.

mod support;

use std::path::Path;
use std::time::Duration;

use countersign_core::{AuditEvent, EventKind};
use sqlx::Connection as _;
use support::*;

/// Rewrites the first `approved` event's reason in the service's database, leaf hash and all,
/// as someone with write access to it would.
async fn rewrite_history(data: &Path) {
    let db = data.join("countersign.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the service database");
    let (seq, body): (i64, String) = sqlx::query_as(
        "SELECT seq, event_json FROM audit_events WHERE kind = 'approved' ORDER BY seq LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("an approved event");
    let mut event: AuditEvent = serde_json::from_str(&body).expect("event");
    if let EventKind::Approved { reason, .. } = &mut event.event {
        *reason = "approved by the CTO in person".into();
    }
    let bytes = event.leaf_bytes().expect("canonical");
    let leaf = countersign_core::merkle::leaf_hash(&bytes);
    sqlx::query("UPDATE audit_events SET event_json = ?, leaf_hash = ? WHERE seq = ?")
        .bind(String::from_utf8(bytes).expect("utf-8"))
        .bind(leaf.0.to_vec())
        .bind(seq)
        .execute(&mut conn)
        .await
        .expect("rewrite");
}

/// "…Z (207 ms)": the decision time, a space, then its duration in brackets, never "…Z(207 ms)".
fn regex_lite_decided(facts: &str) -> bool {
    facts.contains("Z (") && !facts.contains("Z(")
}

#[tokio::test(flavor = "multi_thread")]
async fn history_is_verified_searchable_exportable_and_alarms_on_a_rewrite() {
    let mut w = World::start();
    let c = w.enrolled_console().await;

    // Two requests decided in the console: one approved, one denied.
    let marker = w.dir.path().join("approved");
    let agent = w.agent("iam.role.update", None, &marker);
    click(&c, "[data-testid=inbox-item]").await;
    // The request's id is shown whole, to match it to a ticket or the CLI.
    let id = c
        .find(fantoccini::Locator::Css("[data-testid=inbox-item]"))
        .await
        .expect("item")
        .attr("data-id")
        .await
        .expect("attr")
        .expect("data-id");
    assert_eq!(text_of(&c, "[data-testid=request-id]").await, id);
    approve_in_ui(&c).await;
    assert!(decided(&c).await.contains("Approved"));
    let (status, err) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(0), "{err}");
    // The operator's witness policy (bob's console, one of one) placed beside the history, as
    // configuration management would: later syncs count the log witnessed only through it.
    ok(&[
        "admin",
        "--data-dir",
        &w.dir.path().join("data").display().to_string(),
        "witness-policy",
        "--threshold",
        "1",
        "--witness",
        "bob@example.com",
        "--out",
        &w.dir
            .path()
            .join("console/witness-policy.json")
            .display()
            .to_string(),
    ]);
    let agent = w.agent("iam.policy.attach", None, &w.dir.path().join("denied"));
    until_page(&c, "the second request arrives", |t| {
        t.contains("iam.policy.attach")
    })
    .await;
    click(&c, "[data-testid=inbox-item]").await;
    click(&c, "[data-testid=deny]").await;
    assert!(decided(&c).await.contains("Denied"));
    let (status, _) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(3));

    // The mirror follows the stream; the history lists both, verified.
    click(&c, "[data-testid=tab-history]").await;
    until_page(&c, "the history shows both requests", |t| {
        t.contains("2 requests")
    })
    .await;
    until_page(&c, "the log is verified and witnessed", |t| {
        t.contains("Log verified to checkpoint") && t.contains("witnessed to")
    })
    .await;

    // Search narrows to the denied one; it opens with its decision and proof.
    type_into(&c, "[data-testid=history-search]", "policy.attach").await;
    until_page(&c, "the search finds one", |t| {
        t.contains("1 request") && !t.contains("2 requests")
    })
    .await;
    click(&c, "[data-testid=history-item]").await;
    let proof = text_of(&c, "[data-testid=history-proof]").await;
    assert!(
        proof.contains("Included in checkpoint") && proof.contains("verified"),
        "{proof}"
    );
    assert_eq!(
        text_of(&c, "[data-testid=history-status]")
            .await
            .to_lowercase(),
        "denied"
    );
    let decision = text_of(&c, "[data-testid=history-decision]").await;
    assert!(
        decision.contains("bob@example.com")
            && decision.contains("deny")
            && decision.contains("pkcs11")
            && decision.contains("hardware claimed, not attested"),
        "{decision}"
    );
    // Words keep their spaces: "requester → approver", "decided (1.2 s)".
    // Read as the DOM holds it: WebKitWebDriver leaves out text in clipped (ellipsised) spans.
    let row = c
        .execute(
            "return document.querySelector('[data-testid=history-item].selected .item-meta').textContent;",
            vec![],
        )
        .await
        .expect("script")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(row.contains("agent:release-bot → bob@example.com"), "{row}");
    let facts = text_of(&c, ".facts").await;
    assert!(
        regex_lite_decided(&facts),
        "the decision time and its duration are apart: {facts}"
    );
    save_screenshot(&c, "console-history.png").await;

    // The proof of this one request, signed with the console's key, verifies offline.
    click(&c, "[data-testid=save-proof]").await;
    let saved = text_of(&c, "[data-testid=proof-saved]").await;
    let path = saved
        .trim_start_matches("Saved to ")
        .split(" — ")
        .next()
        .expect("path")
        .trim()
        .to_owned();
    assert!(path.contains("countersign-proof-"), "{path}");
    let verified = ok(&["audit", "verify", &path, "--accept-unanchored"]);
    assert!(verified.contains("1 requests"), "{verified}");

    // CSV export of what the search shows.
    click(&c, "[data-testid=export-csv]").await;
    let saved = text_of(&c, "[data-testid=export-result]").await;
    let path = saved.trim_start_matches("Saved to ").trim();
    let csv = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(
        csv.contains("iam.policy.attach") && !csv.contains("iam.role.update"),
        "{csv}"
    );

    // Someone rewrites the history in the service's database; the next sync raises the alarm.
    w.restart_server(|data| {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(rewrite_history(data))
        })
    });
    let mut agent = w.agent("iam.role.delete", None, &w.dir.path().join("later"));
    let alarm = text_of(&c, "[data-testid=audit-alarm]").await;
    assert!(
        alarm.contains("verification failed") && alarm.contains("rewritten"),
        "{alarm}"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    c.close().await.expect("close session");
}

/// A break-glass use (granted at once, without approval) is marked in the history list and
/// its entry says it awaits review, with how many reviews it needs.
#[tokio::test(flavor = "multi_thread")]
async fn a_break_glass_use_is_marked_in_the_history_and_awaits_review() {
    let w = World::start();
    let c = w.enrolled_console().await;
    w.break_glass_use();
    click(&c, "[data-testid=tab-history]").await;
    // Nothing of bob's own brings it: ask the mirror to sync now, as the History tab's timer would.
    c.execute(
        "return window.__TAURI_INTERNALS__.invoke('history_sync')",
        vec![],
    )
    .await
    .expect("sync");
    until_page(&c, "the break-glass use is in the history", |t| {
        t.contains("incident.fix")
    })
    .await;
    assert_eq!(
        text_of(&c, "[data-testid=history-break-glass]").await,
        "BREAK-GLASS"
    );
    click(&c, "[data-testid=history-item]").await;
    let banner = text_of(&c, "[data-testid=history-break-glass-banner]").await;
    assert!(
        banner.contains("granted at once without approval")
            && banner.contains("Awaiting review")
            && banner.contains("0 of 1 review"),
        "{banner}"
    );
}
