//! `countersign://request/<id>` links, as notice channels send them: following one opens the
//! request in the console. Never more: a link cannot approve, deny or change anything, and any
//! other shape of link is ignored.
//!
//! The desktop starts the console with the link as its argument. When a console is already
//! running with the same configuration directory, the new process hands the link to it over
//! the session bus and exits; otherwise it starts and opens the request once it can. (Tauri's
//! single-instance plugin would close every second console on the desktop, one per profile
//! included; this is keyed by the configuration directory instead.)

use std::path::Path;

use tauri::{AppHandle, Emitter as _};
use uuid::Uuid;

/// The URL scheme the console handles.
pub const SCHEME: &str = "countersign";

/// The request a link opens, if it is exactly `countersign://request/<uuid>` (an optional
/// trailing `/`; nothing else, no query or fragment).
pub fn request_of(link: &str) -> Option<Uuid> {
    let (scheme, rest) = link.split_once("://")?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let id = rest.strip_prefix("request/")?;
    let id = id.strip_suffix('/').unwrap_or(id);
    if id.len() != 36 {
        return None;
    }
    Uuid::parse_str(id).ok()
}

/// The link among the process's arguments, if one was given.
pub fn link_in_args(args: impl IntoIterator<Item = String>) -> Option<String> {
    args.into_iter()
        .skip(1)
        .find(|a| a.to_ascii_lowercase().starts_with("countersign:"))
}

/// The session-bus name of the console using `config_dir`.
fn bus_name(config_dir: &Path) -> String {
    let digest = countersign_core::Digest::of(config_dir.as_os_str().as_encoded_bytes());
    format!("dev.countersign.Console.d{}", &digest.to_hex()[..16])
}

const PATH: &str = "/dev/countersign/Console";
const INTERFACE: &str = "dev.countersign.Console";

/// Hands `link` to the console already running with `config_dir`; true when one answered
/// (it opens the request, or ignores a link that names none).
pub async fn forward(config_dir: &Path, link: &str) -> bool {
    let Ok(bus) = zbus::Connection::session().await else {
        return false;
    };
    let reply = bus
        .call_method(
            Some(bus_name(config_dir).as_str()),
            PATH,
            Some(INTERFACE),
            "Open",
            &(link,),
        )
        .await;
    reply.is_ok()
}

/// What the running console serves on the bus.
struct Opener {
    app: AppHandle,
}

#[zbus::interface(name = "dev.countersign.Console")]
impl Opener {
    /// Opens the request `link` names; false for a link that names none.
    async fn open(&self, link: String) -> bool {
        open(&self.app, &link)
    }
}

/// Shows the window and the request `link` names; false (and nothing done) for any other link.
pub fn open(app: &AppHandle, link: &str) -> bool {
    let Some(id) = request_of(link) else {
        tracing::warn!("ignored a link that does not name a request");
        return false;
    };
    tracing::info!(%id, "opening a request from a link");
    crate::show_window(app);
    let _ = app.emit("open-request", Some(id));
    true
}

/// Takes this configuration directory's name on the session bus and answers `Open` until the
/// app ends. Without a session bus (or with another console holding the name), links reach
/// this console only at its start.
pub async fn serve(app: AppHandle, config_dir: &Path) -> Option<zbus::Connection> {
    let built = async {
        zbus::connection::Builder::session()
            .name(bus_name(config_dir))
            .serve_at(PATH, Opener { app })
            .build()
            .await
    };
    match built.await {
        Ok(connection) => Some(connection),
        Err(e) => {
            tracing::info!(error = %e, "links from a second start will not reach this console");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_link_opens_anything() {
        let id = "0191e7a4-5a6b-7c8d-9e0f-a1b2c3d4e5f6";
        for good in [
            format!("countersign://request/{id}"),
            format!("COUNTERSIGN://request/{id}/"),
        ] {
            assert_eq!(
                request_of(&good).map(|u| u.to_string()),
                Some(id.into()),
                "{good}"
            );
        }
        for bad in [
            format!("countersign://approve/{id}"),
            format!("countersign://request/{id}?verdict=approve"),
            format!("countersign://request/{id}#x"),
            format!("countersign://request/{}", id.replace('-', "")),
            format!("https://request/{id}"),
            "countersign://request/".into(),
            format!("countersign://request/{id}/../../x"),
        ] {
            assert_eq!(request_of(&bad), None, "{bad}");
        }
    }

    #[test]
    fn the_link_is_found_among_the_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            link_in_args(args(&["console", "countersign://request/x"])).as_deref(),
            Some("countersign://request/x")
        );
        assert_eq!(link_in_args(args(&["countersign://request/x"])), None);
        assert_eq!(link_in_args(args(&["console", "--memory-floor"])), None);
    }
}
