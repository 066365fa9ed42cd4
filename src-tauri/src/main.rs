//! The Countersign approver console.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    countersign_console::webview::set_engine_env();
    countersign_console::run();
}
