//! Declares the console's commands so each needs an explicit grant in `capabilities/`: the
//! webview can call only what a capability lists.

fn main() {
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&[
            "console_state",
            "detect_keys",
            "create_key",
            "enroll",
            "identity_provider",
            "enroll_with_sign_in",
            "sign_in_again",
            "change_server",
            "unlock",
            "inbox",
            "request",
            "decide",
            "snooze",
            "history_status",
            "history_search",
            "history_count",
            "history_facets",
            "history_request",
            "history_sync",
            "history_export",
            "history_cancel_export",
            "start_link",
            "pending_reviews",
            "review_request",
            "review",
        ]),
    ))
    .expect("tauri build script");
}
