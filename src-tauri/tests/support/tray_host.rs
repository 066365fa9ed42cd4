//! A test tray host on the private session bus: the org.kde.StatusNotifierWatcher a desktop
//! panel runs. The console's tray icon (libayatana-appindicator, through Tauri) registers with
//! it; the test reads the icon's label and clicks its menu items through com.canonical.dbusmenu,
//! as a panel does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::message::Header;
use zbus::{OwnedObjectPath, OwnedVariant, Variant};

/// A registered tray item: its bus name and object path.
#[derive(Clone, Debug)]
pub struct Item {
    pub bus_name: String,
    pub path: String,
}

/// Records the items that register.
#[derive(Clone, Default)]
pub struct Watcher {
    pub items: Arc<Mutex<Vec<Item>>>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    fn register_status_notifier_item(&self, service: &str, #[zbus(header)] header: Header<'_>) {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        // Ayatana passes its object path; other implementations pass a bus name.
        let item = if service.starts_with('/') {
            Item {
                bus_name: sender,
                path: service.to_owned(),
            }
        } else {
            Item {
                bus_name: service.to_owned(),
                path: "/StatusNotifierItem".to_owned(),
            }
        };
        self.items.lock().expect("lock").push(item);
    }

    fn register_status_notifier_host(&self, _service: &str) {}

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        let items = self.items.lock().expect("lock");
        items.iter().map(|i| i.bus_name.clone()).collect()
    }

    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }
}

impl Watcher {
    /// Waits for the first item to register.
    pub async fn item(&self) -> Item {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(item) = self.items.lock().expect("lock").first() {
                return item.clone();
            }
            assert!(Instant::now() < deadline, "no tray icon registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Serves [`Watcher`] on `bus_address` under the well-known name, before the console starts.
pub async fn serve(bus_address: &str, watcher: Watcher) -> zbus::Connection {
    zbus::connection::Builder::address(bus_address)
        .name("org.kde.StatusNotifierWatcher")
        .serve_at("/StatusNotifierWatcher", watcher)
        .build()
        .await
        .expect("test tray host on the private bus")
}

async fn property(conn: &zbus::Connection, item: &Item, name: &str) -> OwnedVariant {
    conn.call_method(
        Some(item.bus_name.as_str()),
        item.path.as_str(),
        Some("org.freedesktop.DBus.Properties"),
        "Get",
        &("org.kde.StatusNotifierItem", name),
    )
    .await
    .unwrap_or_else(|e| panic!("reading the tray icon's {name}: {e}"))
    .body()
    .deserialize::<OwnedVariant>()
    .expect("a property value")
}

/// The text the panel shows beside the icon.
pub async fn label(conn: &zbus::Connection, item: &Item) -> String {
    let value = property(conn, item, "XAyatanaLabel").await;
    String::try_from(&*value).expect("a string label")
}

/// Waits until the label is `want`.
pub async fn until_label(conn: &zbus::Connection, item: &Item, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = label(conn, item).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tray label {now:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tray menu's items as a panel reads them (dbusmenu GetLayout): id and label.
pub async fn menu(conn: &zbus::Connection, item: &Item) -> Vec<(i32, String)> {
    let menu = OwnedObjectPath::try_from(property(conn, item, "Menu").await).expect("menu path");
    let reply = conn
        .call_method(
            Some(item.bus_name.as_str()),
            menu.as_str(),
            Some("com.canonical.dbusmenu"),
            "GetLayout",
            &(0i32, -1i32, vec!["label"]),
        )
        .await
        .expect("the tray menu's layout");
    type Node = (i32, HashMap<String, OwnedVariant>, Vec<OwnedVariant>);
    let (_revision, root): (u32, Node) = reply.body().deserialize().expect("layout");
    let mut items = Vec::new();
    let mut stack = root.2;
    while let Some(child) = stack.pop() {
        let (id, props, children): Node = unwrap_variant(child).try_into().expect("menu item");
        let label = props
            .get("label")
            .and_then(|l| String::try_from(&**l).ok())
            .unwrap_or_default();
        items.push((id, label.replace('_', "")));
        stack.extend(children);
    }
    items
}

/// Clicks the menu item whose label contains `what`, as a panel does when a person picks it.
pub async fn click_menu(conn: &zbus::Connection, item: &Item, what: &str) {
    let items = menu(conn, item).await;
    let id = items
        .iter()
        .find(|(_, label)| label.contains(what))
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("no menu item {what:?} in {items:?}"));
    let path = OwnedObjectPath::try_from(property(conn, item, "Menu").await).expect("menu path");
    conn.call_method(
        Some(item.bus_name.as_str()),
        path.as_str(),
        Some("com.canonical.dbusmenu"),
        "Event",
        &(id, "clicked", Variant::from(""), 0u32),
    )
    .await
    .expect("clicking the menu item");
}

/// A child of a dbusmenu layout may arrive wrapped in one more variant.
fn unwrap_variant(v: OwnedVariant) -> OwnedVariant {
    match &*v {
        Variant::Variant(inner) => {
            OwnedVariant::try_from((**inner).try_clone().expect("clone")).expect("owned")
        }
        _ => v,
    }
}
