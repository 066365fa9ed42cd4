//! A test notification server (org.freedesktop.Notifications) on the private session bus:
//! records what the console sends and presses its buttons.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::Variant;
use zbus::object_server::SignalEmitter;

/// One notification as the console sent it.
#[derive(Clone, Debug)]
pub struct Sent {
    pub id: u32,
    pub app: String,
    pub summary: String,
    pub body: String,
    pub actions: Vec<String>,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// Records every notification; presses buttons by emitting ActionInvoked.
#[derive(Clone, Default)]
pub struct Server {
    pub sent: Arc<Mutex<Vec<Sent>>>,
    /// The ids the console asked to close (CloseNotification).
    pub closed: Arc<Mutex<Vec<u32>>>,
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
            at: Instant::now(),
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

    /// As real servers do: forgets it and says it closed (reason 3: closed by a call).
    async fn close_notification(
        &self,
        id: u32,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) {
        self.closed.lock().expect("lock").push(id);
        let _ = Server::notification_closed(&emitter, id, 3).await;
    }

    #[zbus(signal)]
    async fn notification_closed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        reason: u32,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn action_invoked(
        emitter: &SignalEmitter<'_>,
        id: u32,
        action_key: &str,
    ) -> zbus::Result<()>;
}

impl Server {
    /// Waits until the console has closed notification `id`.
    pub async fn wait_closed(&self, id: u32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.closed.lock().expect("lock").contains(&id) {
            assert!(
                Instant::now() < deadline,
                "notification {id} was never closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether a notification whose summary contains `what` was sent.
    pub fn has(&self, what: &str) -> bool {
        self.sent
            .lock()
            .expect("lock")
            .iter()
            .any(|s| s.summary.contains(what))
    }

    /// Waits for a notification whose summary contains `what`.
    pub async fn wait_for(&self, what: &str) -> Sent {
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
pub async fn press(conn: &zbus::Connection, id: u32, key: &str, done: impl Fn() -> bool) {
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

/// Serves [`Server`] on `bus_address` under the well-known name.
pub async fn serve(bus_address: &str, server: Server) -> zbus::Connection {
    zbus::connection::Builder::address(bus_address)
        .name("org.freedesktop.Notifications")
        .serve_at("/org/freedesktop/Notifications", server)
        .build()
        .await
        .expect("test notification server on the private bus")
}
