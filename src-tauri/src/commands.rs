//! The commands the window may call (each granted in `capabilities/default.json`): parse,
//! call the console, map the error. Nothing else.

use countersign_core::Verdict;
use countersign_core::api::{ActionView, DecisionResult};
use tauri::State;
use uuid::Uuid;

use crate::console::{Console, ConsoleState, KeyView, NewKey};
use crate::devices::{self, Candidate};
use crate::error::ConsoleError;
use crate::notifications::Notifier;

/// What to show first.
#[tauri::command]
pub async fn console_state(console: State<'_, Console>) -> Result<ConsoleState, ConsoleError> {
    Ok(console.state().await)
}

/// Where a new key could live.
#[tauri::command]
pub async fn detect_keys() -> Result<Vec<Candidate>, ConsoleError> {
    // Loading PKCS#11 modules and asking tokens blocks; keep it off the async workers.
    tokio::task::spawn_blocking(devices::detect)
        .await
        .map_err(|e| ConsoleError::Device(e.to_string()))
}

/// Creates a key on the chosen device.
#[tauri::command]
pub async fn create_key(
    console: State<'_, Console>,
    key: NewKey,
    pin: Option<String>,
) -> Result<KeyView, ConsoleError> {
    console.create_key(key, pin).await
}

/// Enrols the new key with a one-time code.
#[tauri::command]
pub async fn enroll(
    console: State<'_, Console>,
    server: String,
    approver_id: String,
    code: String,
) -> Result<ConsoleState, ConsoleError> {
    console.enroll(server, approver_id, code).await
}

/// Opens the enrolled key and connects.
#[tauri::command]
pub async fn unlock(
    console: State<'_, Console>,
    pin: Option<String>,
) -> Result<ConsoleState, ConsoleError> {
    console.unlock(pin).await
}

/// The pending requests.
#[tauri::command]
pub async fn inbox(console: State<'_, Console>) -> Result<Vec<ActionView>, ConsoleError> {
    Ok(console.inbox().await)
}

/// One request.
#[tauri::command]
pub async fn request(console: State<'_, Console>, id: Uuid) -> Result<ActionView, ConsoleError> {
    console.request(id).await
}

/// Signs and sends a decision.
#[tauri::command]
pub async fn decide(
    console: State<'_, Console>,
    id: Uuid,
    verdict: Verdict,
    comment: String,
) -> Result<DecisionResult, ConsoleError> {
    console.decide(id, verdict, comment).await
}

/// Silences notifications for `minutes` (0 ends the snooze).
#[tauri::command]
pub fn snooze(notifier: State<'_, Notifier>, minutes: u32) {
    notifier.snooze(minutes);
}
