//! The commands the window may call (each granted in `capabilities/default.json`): parse,
//! call the console, map the error. Nothing else.

use countersign_core::Verdict;
use countersign_core::api::{ActionView, DecisionResult};
use tauri::State;
use uuid::Uuid;

use crate::console::{Console, ConsoleState, KeyView, NewKey};
use crate::devices::{self, Candidate};
use crate::error::ConsoleError;
use crate::history::{ExportDone, ExportFormat, HistoryStatus};
use countersign_mirror::{Facets, Page, RequestDetail, SearchQuery};

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

/// The service's OpenID Provider (its issuer), if it signs approvers in with one.
#[tauri::command]
pub async fn identity_provider(
    console: State<'_, Console>,
    server: String,
) -> Result<Option<String>, ConsoleError> {
    console.identity_provider(server).await
}

/// Enrols the new key for whoever signs in at the service's OpenID Provider.
#[tauri::command]
pub async fn enroll_with_sign_in(
    console: State<'_, Console>,
    server: String,
) -> Result<ConsoleState, ConsoleError> {
    console.enroll_with_sign_in(server).await
}

/// Signs in again, vouching afresh for the enrolled key; returns when the sign-in was made.
#[tauri::command]
pub async fn sign_in_again(console: State<'_, Console>) -> Result<String, ConsoleError> {
    Ok(console.sign_in_again().await?.signed_in_at.to_string())
}

/// Moves to another address of the same service (the enrolled key must sign in there).
#[tauri::command]
pub async fn change_server(
    console: State<'_, Console>,
    server: String,
) -> Result<ConsoleState, ConsoleError> {
    console.change_server(server).await
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

/// The request a link the console was started with names, until the window asks for it.
pub struct StartLink(std::sync::Mutex<Option<Uuid>>);

impl StartLink {
    /// Holds `id` for the window.
    pub fn new(id: Option<Uuid>) -> Self {
        Self(std::sync::Mutex::new(id))
    }
}

/// The request the console was started to open (`countersign://request/<id>`), once.
#[tauri::command]
pub fn start_link(link: State<'_, StartLink>) -> Option<Uuid> {
    link.0.lock().ok().and_then(|mut id| id.take())
}

/// Break-glass uses waiting for this approver's review.
#[tauri::command]
pub async fn pending_reviews(console: State<'_, Console>) -> Result<Vec<ActionView>, ConsoleError> {
    console.pending_reviews().await
}

/// A break-glass use whole, for its review.
#[tauri::command]
pub async fn review_request(
    console: State<'_, Console>,
    id: Uuid,
) -> Result<ActionView, ConsoleError> {
    console.review_view(id).await
}

/// Signs and sends a review of a break-glass use.
#[tauri::command]
pub async fn review(
    console: State<'_, Console>,
    id: Uuid,
    concern: bool,
    comment: String,
) -> Result<countersign_core::api::ReviewResult, ConsoleError> {
    console.review(id, concern, comment).await
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
    verification_code: Option<String>,
) -> Result<DecisionResult, ConsoleError> {
    console
        .decide(id, verdict, comment, verification_code)
        .await
}

/// Silences notifications for `minutes` (0 ends the snooze).
#[tauri::command]
pub fn snooze(app: tauri::AppHandle, minutes: u32) {
    crate::snooze(&app, minutes);
}

/// Where the audit mirror stands.
#[tauri::command]
pub async fn history_status(console: State<'_, Console>) -> Result<HistoryStatus, ConsoleError> {
    console.history().status().await
}

/// A page of history.
#[tauri::command]
pub async fn history_search(
    console: State<'_, Console>,
    query: SearchQuery,
) -> Result<Page, ConsoleError> {
    let mirror = console.history().mirror().await?;
    mirror.search(&query).await.map_err(ConsoleError::History)
}

/// How many requests match.
#[tauri::command]
pub async fn history_count(
    console: State<'_, Console>,
    query: SearchQuery,
) -> Result<u64, ConsoleError> {
    let mirror = console.history().mirror().await?;
    mirror.count(&query).await.map_err(ConsoleError::History)
}

/// Values for the filter menus.
#[tauri::command]
pub async fn history_facets(console: State<'_, Console>) -> Result<Facets, ConsoleError> {
    let mirror = console.history().mirror().await?;
    mirror.facets().await.map_err(ConsoleError::History)
}

/// One request from history, in full.
#[tauri::command]
pub async fn history_request(
    console: State<'_, Console>,
    id: Uuid,
) -> Result<RequestDetail, ConsoleError> {
    let mirror = console.history().mirror().await?;
    mirror.request(id).await.map_err(ConsoleError::History)
}

/// Syncs the mirror soon.
#[tauri::command]
pub fn history_sync(console: State<'_, Console>) {
    console.history().wake();
}

/// Exports the requests matching `query` to the downloads folder.
#[tauri::command]
pub async fn history_export(
    console: State<'_, Console>,
    format: ExportFormat,
    query: SearchQuery,
) -> Result<ExportDone, ConsoleError> {
    let ctx = console.sync_context().await.ok();
    console.history().export(format, &query, ctx.as_ref()).await
}

/// Stops a running export.
#[tauri::command]
pub fn history_cancel_export(console: State<'_, Console>) {
    console.history().cancel_export();
}
