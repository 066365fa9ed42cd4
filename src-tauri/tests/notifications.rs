//! The console's desktop notifications on a private D-Bus session, received by a test
//! notification server (org.freedesktop.Notifications, written with zbus) that records what
//! the console sends and presses its buttons: Approve on a quick-approve request approves it
//! (the agent's command runs); a request without quick approval offers no Approve button, and
//! Review opens it in the console.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;
use zbus::Variant;
use zbus::object_server::SignalEmitter;

/// One notification as the console sent it.
#[derive(Clone, Debug)]
struct Sent {
    id: u32,
    app: String,
    summary: String,
    body: String,
    actions: Vec<String>,
}

#[derive(Clone, Default)]
struct Server {
    sent: Arc<Mutex<Vec<Sent>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    #[allow(clippy::too_many_arguments)] // the D-Bus method's signature
    fn notify(
        &self,
        app_name: &str,
        _replaces_id: u32,
        _app_icon: &str,
        summary: &str,
        body: &str,
        actions: Vec<&str>,
        _hints: HashMap<&str, Variant<'_>>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut sent = self.sent.lock().expect("lock");
        let id = u32::try_from(sent.len()).expect("few") + 1;
        sent.push(Sent {
            id,
            app: app_name.into(),
            summary: summary.into(),
            body: body.into(),
            // Actions come as [key, label, key, label, ...].
            actions: actions.chunks(2).map(|p| p[0].to_owned()).collect(),
        });
        id
    }

    fn get_capabilities(&self) -> Vec<&str> {
        vec!["actions", "body", "body-markup"]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "test".into(),
            "countersign".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}

    #[zbus(signal)]
    async fn action_invoked(
        emitter: &SignalEmitter<'_>,
        id: u32,
        action_key: &str,
    ) -> zbus::Result<()>;
}

impl Server {
    /// Waits for a notification whose summary contains `what`.
    async fn wait_for(&self, what: &str) -> Sent {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self
                .sent
                .lock()
                .expect("lock")
                .iter()
                .find(|s| s.summary.contains(what))
            {
                return s.clone();
            }
            assert!(Instant::now() < deadline, "no notification about {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Presses `key` on notification `id`. notify-rust listens for the signal only once its
/// Notify call has returned, so a single signal can be missed: repeat it until `done`.
async fn press(conn: &zbus::Connection, id: u32, key: &str, done: impl Fn() -> bool) {
    let emitter = SignalEmitter::new(conn, "/org/freedesktop/Notifications").expect("emitter");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        Server::action_invoked(&emitter, id, key)
            .await
            .expect("signal");
        assert!(Instant::now() < deadline, "pressing {key} had no effect");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notification_buttons_approve_quick_requests_and_open_others() {
    let w = World::start();
    let server = Server::default();
    let conn = zbus::connection::Builder::address(w.bus_address.as_str())
        .name("org.freedesktop.Notifications")
        .serve_at("/org/freedesktop/Notifications", server.clone())
        .build()
        .await
        .expect("test notification server on the private bus");
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
            && sent.body.contains("prod-change")
            && sent.body.contains("left"),
        "{sent:?}"
    );
    assert!(sent.actions.contains(&"approve".to_owned()), "{sent:?}");
    let m = marker.clone();
    press(&conn, sent.id, "approve", move || m.exists()).await;
    let (status, err) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(0), "{err}");

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
    assert!(!sent.actions.contains(&"approve".to_owned()), "{sent:?}");
    assert!(sent.actions.contains(&"review".to_owned()), "{sent:?}");
    assert!(sent.actions.contains(&"deny".to_owned()), "{sent:?}");
    assert_eq!(text_of(&c, ".action-type").await, "iam.policy.attach");
    let opened = Arc::new(Mutex::new(false));
    let flag = opened.clone();
    let pressing = tokio::spawn({
        let conn = conn.clone();
        async move {
            press(&conn, sent.id, "review", move || {
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
    drop(first);
    c.close().await.expect("close session");
}
