//! The web view's own settings. The console is a window of text and forms from its own bundle:
//! it needs no GPU compositing, no browser caches, and none of WebKit's media, WebGL, WebAudio
//! or WebRTC, so they are off — less memory, and less of WebKit for agent-supplied text to
//! reach.

use tauri::AppHandle;

/// Keeps WebKitGTK's GPU compositing and cache model when set to `1`: for a machine where they
/// render better, and the baseline of the memory benchmark. The features turned off for
/// security stay off.
pub const DEFAULTS_ENV: &str = "COUNTERSIGN_WEBVIEW_DEFAULTS";

/// The JavaScript engine's settings for the web process, as `(variable, value)`: JavaScriptCore
/// reads them from the environment the web process inherits. The optimizing tiers (DFG, and FTL
/// above it) are off: they are where most of the engine's memory-corruption bugs have been, the
/// console renders agent-supplied text, and they cost ~18 MiB PSS in an idle console
/// (BENCHMARKS.md); the baseline JIT stays, so a 10,000-line diff still renders in about a second.
/// glibc's malloc arenas are capped at two in the web and network processes.
pub const ENGINE_ENV: [(&str, &str); 2] = [("JSC_useDFGJIT", "false"), ("MALLOC_ARENA_MAX", "2")];

/// Sets [`ENGINE_ENV`] where the user has not set those variables, for the web process WebKit
/// spawns to inherit. Call first thing in `main`, while the process has one thread.
#[allow(unsafe_code)]
pub fn set_engine_env() {
    if std::env::var(DEFAULTS_ENV).is_ok_and(|v| v == "1") {
        return;
    }
    for (name, value) in ENGINE_ENV {
        if std::env::var_os(name).is_none() {
            // SAFETY: `main` calls this before it starts any thread (GTK, Tauri and the async
            // runtime all start later), so nothing reads the environment concurrently.
            // Re-executing the process with the variables instead would keep it `safe`, but
            // WebKit's WebDriver loses the process it launched.
            unsafe { std::env::set_var(name, value) };
        }
    }
}

/// Applies the settings to the main window's web view.
#[cfg(target_os = "linux")]
pub fn configure(app: &AppHandle) {
    use tauri::Manager as _;
    use webkit2gtk::{
        CacheModel, HardwareAccelerationPolicy, SettingsExt as _, WebContextExt as _,
        WebViewExt as _,
    };
    let Some(window) = app.get_webview_window("main") else {
        return;
    };
    let lighten = !std::env::var(DEFAULTS_ENV).is_ok_and(|v| v == "1");
    let applied = window.with_webview(move |webview| {
        let view = webview.inner();
        if let Some(settings) = view.settings() {
            settings.set_enable_webgl(false);
            settings.set_enable_webaudio(false);
            settings.set_enable_webrtc(false);
            settings.set_enable_media(false);
            settings.set_enable_media_stream(false);
            settings.set_enable_mediasource(false);
            settings.set_enable_encrypted_media(false);
            settings.set_enable_dns_prefetching(false);
            settings.set_enable_html5_database(false);
            settings.set_enable_offline_web_application_cache(false);
            if lighten {
                // Measured: the web process holds ~100 MiB less (BENCHMARKS.md).
                settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
            }
        }
        if lighten && let Some(context) = view.context() {
            context.set_cache_model(CacheModel::DocumentViewer);
        }
    });
    if let Err(e) = applied {
        tracing::warn!("web view settings not applied: {e}");
    }
}

/// Other platforms keep their web view's defaults.
#[cfg(not(target_os = "linux"))]
pub fn configure(_app: &AppHandle) {}
