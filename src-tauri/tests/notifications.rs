//! The console's desktop notifications on a private D-Bus session, received by a test
//! notification server (org.freedesktop.Notifications, written with zbus) that records what
//! the console sends and presses its buttons: Approve on a quick-approve request approves it
//! (the agent's command runs); a request without quick approval offers no Approve button, and
//! Review opens it in the console. A request still waiting shortly before it expires is
//! recalled once. A test tray host (org.kde.StatusNotifierWatcher) reads the tray icon's
//! pending count and snoozes notifications from its menu.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::notify_server::{Server, press, serve};
use support::tray_host::{self, Watcher, click_menu, until_label};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn notification_buttons_approve_quick_requests_and_open_others() {
    let w = World::start();
    let server = Server::default();
    let conn = serve(&w.bus_address, server.clone()).await;
    let c = w.enrolled_console().await;

    // Quick approval: the notification offers Approve, and pressing it approves.
    let marker = w.dir.path().join("flag");
    let agent = w.agent("flag.enable", None, &marker);
    let sent = server.wait_for("flag.enable").await;
    assert_eq!(sent.app, "Countersign");
    assert!(
        sent.summary
            .contains("arn:aws:iam::123456789012:role/deployer"),
        "{sent:?}"
    );
    assert!(
        sent.body.contains("agent:release-bot")
            && sent.body.contains("prod")
            && sent.body.contains("left"),
        "{sent:?}"
    );
    // One Review (the default action), Approve, Deny: no second Review button.
    assert_eq!(sent.actions, ["default", "approve", "deny"], "{sent:?}");
    let m = marker.clone();
    press(&conn, sent.id, "approve", move || m.exists()).await;
    let (status, err) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(0), "{err}");
    // The button's effect is confirmed, and the notification it was on closes.
    let confirmed = server.wait_for("Approved: flag.enable").await;
    assert!(
        confirmed.body.contains("Signed with your key"),
        "{confirmed:?}"
    );
    assert!(confirmed.actions.is_empty(), "{confirmed:?}");
    server.wait_closed(sent.id).await;

    // No quick approval: no Approve button. With one request already open in the console,
    // Review on another's notification switches the view to it.
    let first = w.agent("iam.policy.attach", None, &w.dir.path().join("first"));
    until_page(&c, "the first request is shown", |t| {
        t.contains("iam.policy.attach")
    })
    .await;
    let other = w.dir.path().join("iam");
    let agent = w.agent("iam.role.update", None, &other);
    let sent = server.wait_for("iam.role.update").await;
    assert_eq!(sent.actions, ["default", "deny"], "{sent:?}");
    assert_eq!(text_of(&c, ".action-type").await, "iam.policy.attach");
    let opened = Arc::new(Mutex::new(false));
    let flag = opened.clone();
    let pressing = tokio::spawn({
        let conn = conn.clone();
        async move {
            press(&conn, sent.id, "default", move || {
                *flag.lock().expect("lock")
            })
            .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while text_of(&c, ".action-type").await != "iam.role.update" {
        assert!(Instant::now() < deadline, "Review did not open the request");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    *opened.lock().expect("lock") = true;
    pressing.await.expect("pressing");
    click(&c, "[data-testid=deny]").await;
    let (status, _) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(3));
    assert!(!other.exists());
    // Decided in the window: its notification closes too.
    server.wait_closed(sent.id).await;
    drop(first);
    c.close().await.expect("close session");
}

/// The console going offline is said at once (a notification, the tray), in plain words in
/// the window; back online, the notification closes and the window says Live.
#[tokio::test(flavor = "multi_thread")]
async fn going_offline_is_said_at_once_and_cleared_on_reconnecting() {
    let mut w = World::start();
    let server = Server::default();
    let _conn = serve(&w.bus_address, server.clone()).await;
    let c = w.enrolled_console().await;
    until_page(&c, "live", |t| t.contains("Live")).await;
    let watching = server.clone();
    let mut offline_id = None;
    w.restart_server(|_| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !watching.has("Countersign is offline") {
            assert!(Instant::now() < deadline, "no offline notification");
            std::thread::sleep(Duration::from_millis(100));
        }
        offline_id = watching
            .sent
            .lock()
            .expect("lock")
            .iter()
            .find(|s| s.summary.contains("Countersign is offline"))
            .map(|s| s.id);
    });
    let offline_id = offline_id.expect("offline notification");
    server.wait_closed(offline_id).await;
    until_page(&c, "live again", |t| {
        t.contains("Live") && !t.contains("Offline")
    })
    .await;
    let told = server
        .sent
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.summary.contains("offline"))
        .count();
    assert_eq!(told, 1, "one notification per outage, not per retry");
    c.close().await.expect("close session");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_request_is_recalled_once_shortly_before_it_expires() {
    let w = World::start();
    let server = Server::default();
    let _conn = serve(&w.bus_address, server.clone()).await;
    let c = w.enrolled_console().await;
    // 48 s to live: the reminder comes when a quarter (12 s) is left, i.e. about 36 s in.
    let marker = w.dir.path().join("remind");
    let agent = w.agent("test.remind", None, &marker);
    let arrived = server.wait_for("test.remind").await;
    assert!(!arrived.summary.starts_with("Expires in"), "{arrived:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let reminder = loop {
        let found = server
            .sent
            .lock()
            .expect("lock")
            .iter()
            .find(|s| s.summary.starts_with("Expires in") && s.summary.contains("test.remind"))
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no reminder before expiry");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        reminder.summary.contains(" s · "),
        "seconds left: {reminder:?}"
    );
    assert_eq!(reminder.actions, ["default", "deny"], "{reminder:?}");
    // It expires unanswered: one reminder, never a second; both its notifications close.
    let (status, _) = wait_exit(agent, Duration::from_secs(40));
    assert_eq!(status, Some(4), "the request expired");
    server.wait_closed(arrived.id).await;
    server.wait_closed(reminder.id).await;
    // Two of the console's 5-second reminder checks.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let reminders = server
        .sent
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.summary.starts_with("Expires in"))
        .count();
    assert_eq!(reminders, 1);
    assert!(!marker.exists());
    c.close().await.expect("close session");
}

/// The tray shows how many requests wait; snoozing from its menu silences notifications
/// until Resume in the same menu; deciding brings the count down.
#[tokio::test(flavor = "multi_thread")]
async fn tray_counts_waiting_requests_and_snoozes_notifications() {
    let w = World::start();
    let server = Server::default();
    let _notify = serve(&w.bus_address, server.clone()).await;
    // The panel's host is there before the console starts, as on a desktop.
    let watcher = Watcher::default();
    let tray = tray_host::serve(&w.bus_address, watcher.clone()).await;
    let c = w.enrolled_console().await;
    let item = watcher.item().await;

    let _first = Running(w.agent("iam.role.update", None, &w.dir.path().join("first")));
    server.wait_for("iam.role.update").await;
    until_label(&tray, &item, "1").await;

    click_menu(&tray, &item, "Snooze notifications").await;
    until_page(&c, "the window shows the tray's snooze", |t| {
        t.contains("Resume") && !t.contains("Snooze 1 h")
    })
    .await;
    // One item that says what it will do: never Snooze and Resume side by side (an XEmbed
    // tray shows every item).
    let labels: Vec<String> = tray_host::menu(&tray, &item)
        .await
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert!(
        labels.iter().any(|l| l.contains("Resume notifications"))
            && !labels.iter().any(|l| l.contains("Snooze")),
        "{labels:?}"
    );
    let _second = Running(w.agent("iam.policy.attach", None, &w.dir.path().join("second")));
    until_label(&tray, &item, "2").await;
    // A notification, had one been sent, comes with the inbox change; give it time to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = server.sent.lock().expect("lock").clone();
    assert!(
        !sent.iter().any(|s| s.summary.contains("iam.policy.attach")),
        "a snoozed console notified: {sent:?}"
    );

    click_menu(&tray, &item, "Resume notifications").await;
    until_page(&c, "the window shows the tray's resume", |t| {
        t.contains("Snooze 1 h")
    })
    .await;
    let _third = Running(w.agent("flag.enable", None, &w.dir.path().join("third")));
    server.wait_for("flag.enable").await;
    until_label(&tray, &item, "3").await;

    // Deciding in the window brings the count down.
    until_page(&c, "all three are listed", |t| t.contains("flag.enable")).await;
    click(&c, "[data-testid=inbox-item]").await;
    click(&c, "[data-testid=deny]").await;
    until_label(&tray, &item, "2").await;
    c.close().await.expect("close session");
}

/// A break-glass use (granted at once, without approval) that waits for this approver's
/// review is told once, as break-glass, with Review only (a review is signed in the window).
#[tokio::test(flavor = "multi_thread")]
async fn a_break_glass_use_waiting_for_review_is_notified_once() {
    let w = World::start();
    let server = Server::default();
    let _conn = serve(&w.bus_address, server.clone()).await;
    let _c = w.enrolled_console().await;
    w.break_glass_use();
    let sent = server.wait_for("BREAK-GLASS used").await;
    assert!(
        sent.summary.contains("incident.fix") && sent.summary.contains("db/payments"),
        "{sent:?}"
    );
    assert!(
        sent.body.contains("agent:release-bot") && sent.body.contains("without approval"),
        "{sent:?}"
    );
    assert_eq!(sent.actions, ["default"], "{sent:?}");
    // Checked every 5 s: still one notice after several checks.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let told = server
        .sent
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.summary.contains("BREAK-GLASS used"))
        .count();
    assert_eq!(told, 1);
}
