//! The Countersign desktop approver console: a Tauri 2 shell around [`console::Console`],
//! with native notifications and a tray icon showing the pending count.

pub mod commands;
pub mod console;
pub mod deep_link;
pub mod devices;
pub mod error;
pub mod events;
pub mod history;
pub mod notifications;
pub mod settings;
pub mod tray_badge;
pub mod types;
pub mod webview;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use countersign_core::{Timestamp, Verdict};
use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Emitter as _, Manager as _};

use crate::console::{Console, ConsoleEvent};
use crate::events::Connection;
use crate::notifications::{Decision, Notifier, Pressed};

const TRAY: &str = "countersign";

/// Runs the console until the window and tray are closed.
pub fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "countersign=info,countersign_console=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if std::env::args().any(|a| a == MEMORY_FLOOR_ARG) {
        return memory_floor();
    }
    // A link given to a second start goes to the console already running with this
    // configuration directory, and this process ends.
    let link = deep_link::link_in_args(std::env::args());
    let link_key = std::env::var_os(settings::DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("default"));
    if let Some(link) = &link
        && tauri::async_runtime::block_on(deep_link::forward(&link_key, link))
    {
        return;
    }
    let start_link = commands::StartLink::new(link.as_deref().and_then(deep_link::request_of));
    let result = tauri::Builder::default()
        .manage(Notifier::default())
        .manage(start_link)
        .setup(|app| {
            let config_dir = match std::env::var_os(settings::DIR_ENV) {
                Some(dir) => PathBuf::from(dir),
                None => app.path().app_config_dir()?,
            };
            let handle = app.handle().clone();
            let sink: console::EventSink = Arc::new(move |event| on_event(&handle, event));
            app.manage(Console::open(config_dir, sink)?);
            tray(app.handle())?;
            webview::configure(app.handle());
            tauri::async_runtime::spawn(review_notices(app.handle().clone()));
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                // Held for the app's life: the name on the bus is this console's.
                let _bus = deep_link::serve(handle, &link_key).await;
                std::future::pending::<()>().await;
            });
            // Keys that need no PIN (software, a TPM key without authorization) open at once;
            // the others wait for the window's unlock dialog.
            let handle = app.handle().clone();
            let demo = demo_enrolment();
            tauri::async_runtime::spawn(async move {
                let console = handle.state::<Console>();
                if let Some((server, approver, code)) = demo
                    && console.state().await.phase == console::Phase::Setup
                    && let Err(e) = enrol_development_key(&console, server, approver, code).await
                {
                    tracing::error!(code = %e.code(), "demo enrolment failed: {e}");
                }
                if let Err(e) = console.unlock(None).await {
                    tracing::info!(code = %e.code(), "key not opened at start: {e}");
                }
                let _ = handle.emit("console", console.state().await);
            });
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                let mut tick = tokio::time::interval(notifications::REMINDER_CHECK);
                loop {
                    tick.tick().await;
                    remind(&handle).await;
                }
            });
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::console_state,
            commands::detect_keys,
            commands::create_key,
            commands::enroll,
            commands::identity_provider,
            commands::enroll_with_sign_in,
            commands::sign_in_again,
            commands::change_server,
            commands::unlock,
            commands::inbox,
            commands::request,
            commands::decide,
            commands::snooze,
            commands::history_status,
            commands::history_search,
            commands::history_count,
            commands::history_facets,
            commands::history_request,
            commands::history_sync,
            commands::history_export,
            commands::history_cancel_export,
            commands::start_link,
            commands::pending_reviews,
            commands::review_request,
            commands::review,
        ])
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("countersign console: {e}");
        std::process::exit(1);
    }
}

/// Runs the console's window with nothing in it: the same window, web view settings and
/// libraries, an empty page, no console, tray or tasks. What the memory benchmark measures the
/// console against (the part no front end of ours can save).
pub const MEMORY_FLOOR_ARG: &str = "--memory-floor";

fn memory_floor() {
    let result = tauri::Builder::default()
        .setup(|app| {
            webview::configure(app.handle());
            if let Some(window) = app.get_webview_window("main") {
                let blank = "about:blank"
                    .parse()
                    .map_err(|e| format!("about:blank: {e}"))?;
                window.navigate(blank)?;
            }
            Ok(())
        })
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("countersign console (memory floor): {e}");
        std::process::exit(1);
    }
}

/// `--enrol-development-key SERVER APPROVER` with the one-time code in
/// `COUNTERSIGN_ENROLMENT_CODE`: what `countersign demo` passes so a newcomer's console starts
/// enrolled. It makes a development key, labelled as such. The code never travels in the
/// arguments, which every user of the machine can read.
fn demo_enrolment() -> Option<(String, String, String)> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--enrol-development-key")?;
    let code = std::env::var("COUNTERSIGN_ENROLMENT_CODE").ok();
    match (&args[at + 1..], code) {
        ([server, approver, ..], Some(code)) => Some((server.clone(), approver.clone(), code)),
        _ => {
            eprintln!(
                "--enrol-development-key needs SERVER APPROVER, and the code in COUNTERSIGN_ENROLMENT_CODE"
            );
            None
        }
    }
}

async fn enrol_development_key(
    console: &Console,
    server: String,
    approver: String,
    code: String,
) -> Result<(), error::ConsoleError> {
    console
        .create_key(
            console::NewKey::Software {
                label: "demo development key".into(),
            },
            None,
        )
        .await?;
    console.enroll(server, approver, code).await?;
    Ok(())
}

/// Forwards console events to the window, the tray and notifications.
fn on_event(app: &AppHandle, event: ConsoleEvent) {
    match &event {
        ConsoleEvent::Inbox { requests } => {
            if let Some(tray) = app.tray_by_id(TRAY) {
                let text = match requests.len() {
                    0 => "Countersign: nothing waiting".to_string(),
                    1 => "Countersign: 1 request waiting".to_string(),
                    n => format!("Countersign: {n} requests waiting"),
                };
                let _ = tray.set_tooltip(Some(&text));
                let _ = tray.set_title(Some(requests.len().to_string()));
                // For trays that draw only the icon (XEmbed), the count is in its pixels.
                if let Some(icon) = app.default_window_icon() {
                    let drawn = tray_badge::with_count(
                        icon.rgba(),
                        icon.width(),
                        icon.height(),
                        requests.len(),
                    );
                    let _ = tray.set_icon(Some(tauri::image::Image::new_owned(
                        drawn,
                        icon.width(),
                        icon.height(),
                    )));
                }
            }
            // Notifications about requests that no longer wait (decided here or elsewhere,
            // expired, withdrawn) close: no stale Deny button beside an empty inbox.
            let stale = app.state::<Notifier>().stale(requests);
            tauri::async_runtime::spawn(notifications::close(stale));
        }
        ConsoleEvent::Connection { connection } => {
            let notifier = app.state::<Notifier>();
            match connection {
                Connection::Offline { .. } | Connection::Refused { .. } => {
                    if notifier.went_offline() {
                        let (summary, body) = match connection {
                            Connection::Refused { .. } => (
                                "Countersign: the service refused your key",
                                "Requests cannot reach you. Open Countersign: your key may need enrolling again.",
                            ),
                            _ => (
                                "Countersign is offline",
                                "Requests cannot reach you until it reconnects; it keeps trying. Open Countersign for details.",
                            ),
                        };
                        if let Some(id) = notifications::inform(summary, body, true) {
                            notifier.offline_shown(id);
                        }
                    }
                    if let Some(tray) = app.tray_by_id(TRAY) {
                        let _ = tray
                            .set_tooltip(Some("Countersign: offline — requests cannot reach you"));
                        let _ = tray.set_title(Some("offline"));
                    }
                }
                Connection::Online => {
                    if let Some(id) = notifier.back_online() {
                        tauri::async_runtime::spawn(notifications::close(vec![id]));
                    }
                }
                Connection::Idle | Connection::Connecting => {}
            }
        }
        ConsoleEvent::Arrived { request } => {
            let notifier = app.state::<Notifier>();
            let now = Timestamp::from_system_time(std::time::SystemTime::now());
            let content = match notifier.arrival(Instant::now()) {
                Decision::Single => Some((notifications::content(request, now), Some(request.id))),
                Decision::Grouped(count) => Some((notifications::burst(count), None)),
                Decision::Quiet => None,
            };
            if let Some((content, id)) = content {
                let handle = app.clone();
                if let Some(shown) =
                    notifications::show(&content, move |pressed| pressed_on(&handle, pressed, id))
                {
                    notifier.on_screen(id, shown);
                }
            }
        }
        ConsoleEvent::Snooze { .. }
        | ConsoleEvent::History { .. }
        | ConsoleEvent::Export { .. } => {}
    }
    let _ = app.emit("console-event", &event);
}

/// Recalls each waiting request once, shortly before it expires.
async fn remind(app: &AppHandle) {
    let inbox = app.state::<Console>().inbox().await;
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let notifier = app.state::<Notifier>();
    for view in notifier.reminders(&inbox, now) {
        let (handle, id) = (app.clone(), view.id);
        if let Some(shown) =
            notifications::show(&notifications::reminder(view, now), move |pressed| {
                pressed_on(&handle, pressed, Some(id))
            })
        {
            notifier.on_screen(Some(id), shown);
        }
    }
}

/// Tells the approver, once each, of break-glass uses waiting for their review (granted
/// without approval): a notification whose Review brings the window, where the queue lists
/// them. Quiet while snoozed; what arrived meanwhile is told once the snooze ends.
async fn review_notices(app: AppHandle) {
    let mut told = std::collections::HashSet::new();
    loop {
        tokio::time::sleep(notifications::REVIEW_CHECK).await;
        let console = app.state::<Console>();
        if console.state().await.phase != console::Phase::Ready {
            continue;
        }
        let Ok(uses) = console.pending_reviews().await else {
            continue;
        };
        told.retain(|id| uses.iter().any(|v| v.id == *id));
        if app.state::<Notifier>().snoozed() {
            continue;
        }
        for view in uses {
            if told.insert(view.id) {
                let handle = app.clone();
                notifications::show(&notifications::break_glass(&view), move |pressed| {
                    if pressed != Pressed::Dismissed {
                        show_window(&handle);
                    }
                });
            }
        }
    }
}

/// What a notification button does: approve or deny right there, or open the request.
fn pressed_on(app: &AppHandle, pressed: Pressed, id: Option<uuid::Uuid>) {
    let verdict = match (pressed, id) {
        (Pressed::Approve, Some(_)) => Verdict::Approve,
        (Pressed::Deny, Some(_)) => Verdict::Deny,
        (Pressed::Dismissed, _) => return,
        _ => {
            show_window(app);
            let _ = app.emit("open-request", id);
            return;
        }
    };
    let Some(id) = id else { return };
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let console = app.state::<Console>();
        let what = console
            .inbox()
            .await
            .into_iter()
            .find(|v| v.id == id)
            .map(|v| {
                (
                    v.action.request.action_type.as_str().to_owned(),
                    v.action.request.resource,
                )
            });
        let comment = "decided from the desktop notification".to_string();
        // Never with a verification code: the policy cannot ask for one and quick approval.
        match console.decide(id, verdict, comment, None).await {
            Ok(result) => {
                // Say what the button did: it signed a decision.
                let (kind, resource) =
                    what.unwrap_or_else(|| ("the request".into(), String::new()));
                let (summary, body) = notifications::confirmation(&kind, &resource, verdict);
                notifications::inform(&summary, &body, false);
                let _ = app.emit("decided", (id, result));
            }
            Err(e) => {
                // Could not decide from the notification (locked key, PIN needed, gone):
                // say so, and open the request so the person sees why.
                tracing::warn!(code = %e.code(), "decision from notification failed: {e}");
                notifications::inform(
                    "Countersign could not record your decision",
                    &format!("{e}. The request is open in Countersign."),
                    true,
                );
                show_window(&app);
                let _ = app.emit("open-request", Some(id));
            }
        }
    });
}

/// Snoozes notifications for `minutes` (0 resumes them) and tells the window, whichever of
/// the window and the tray asked.
pub(crate) fn snooze(app: &AppHandle, minutes: u32) {
    app.state::<Notifier>().snooze(minutes);
    let until = (minutes > 0).then(|| {
        Timestamp::from_system_time(std::time::SystemTime::now())
            .add_seconds(i64::from(minutes) * 60)
    });
    if let Some(item) = app.try_state::<SnoozeItem>() {
        let _ = item.0.set_text(if minutes > 0 {
            RESUME_LABEL
        } else {
            SNOOZE_LABEL
        });
    }
    let _ = app.emit("console-event", &ConsoleEvent::Snooze { until });
}

pub(crate) fn show_window(app: &AppHandle) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
}

/// The tray menu's one snooze item: it says "Snooze…" or "Resume…" as the state is, so a tray
/// that shows every item (XEmbed) never offers both.
struct SnoozeItem(MenuItem<tauri::Wry>);

const SNOOZE_LABEL: &str = "Snooze notifications for 1 hour";
const RESUME_LABEL: &str = "Resume notifications";

fn tray(app: &AppHandle) -> tauri::Result<()> {
    let open = MenuItem::with_id(app, "open", "Open Countersign", true, None::<&str>)?;
    let snooze_item = MenuItem::with_id(app, "snooze", SNOOZE_LABEL, true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&open, &snooze_item, &quit])?;
    app.manage(SnoozeItem(snooze_item));
    let mut builder = TrayIconBuilder::with_id(TRAY)
        .tooltip("Countersign")
        .menu(&menu)
        .on_menu_event(|app, event| match event.id().as_ref() {
            "open" => show_window(app),
            "snooze" => {
                let snoozed = app.state::<Notifier>().snoozed();
                snooze(app, if snoozed { 0 } else { 60 });
            }
            "quit" => app.exit(0),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    Ok(())
}
