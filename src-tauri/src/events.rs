//! What the console tells the window as it happens: connection changes, the inbox, arrivals
//! (for notifications), the history's state, snoozes, export progress. The console and its
//! history both send these; neither depends on the other for them.

use std::sync::Arc;

use countersign_core::Checkpoint;
use countersign_core::Timestamp;
use countersign_core::api::ActionView;
use countersign_mirror::{Progress, RaisedAlarm};
use serde::Serialize;

/// Something the window should know now.
#[derive(utoipa::ToSchema, Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConsoleEvent {
    /// The connection changed.
    Connection {
        /// Where it stands.
        connection: Connection,
    },
    /// The inbox changed; the full list, soonest expiry first.
    Inbox {
        /// Pending requests I may decide.
        requests: Vec<ActionView>,
    },
    /// A request I may decide arrived (for notifications).
    Arrived {
        /// The request.
        request: Box<ActionView>,
    },
    /// The audit mirror's state changed (sync started, progressed, finished, alarm).
    History {
        /// Where it stands.
        status: HistoryStatus,
    },
    /// Notifications were snoozed (until `until`) or resumed (`None`), from the window or
    /// the tray.
    Snooze {
        /// When notifications come back.
        until: Option<countersign_core::Timestamp>,
    },
    /// An export progressed.
    Export {
        /// Requests written.
        done: u64,
        /// Requests to write.
        total: u64,
    },
}

/// Sends events to the window.
pub type EventSink = Arc<dyn Fn(ConsoleEvent) + Send + Sync>;

/// Where the connection to the service stands.
#[derive(utoipa::ToSchema, Clone, Debug, Default, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Connection {
    /// Not started (setup or locked).
    #[default]
    Idle,
    /// Connecting.
    Connecting,
    /// Live.
    Online,
    /// Down; retrying.
    Offline {
        /// Why.
        reason: String,
        /// Next attempt in.
        retry_in_ms: u64,
    },
    /// The service refused the key; re-enrol.
    Refused {
        /// Why.
        message: String,
    },
}

/// Where the mirror stands, for the window.
#[derive(utoipa::ToSchema, Clone, Debug, Default, Serialize)]
pub struct HistoryStatus {
    /// A sync is running.
    pub syncing: bool,
    /// Its progress.
    pub progress: Option<Progress>,
    /// Events stored and verified.
    pub verified_size: u64,
    /// The checkpoint they are verified against.
    pub checkpoint: Option<Checkpoint>,
    /// When the last sync finished well.
    pub last_sync: Option<Timestamp>,
    /// Why the last sync failed, when it did without an alarm (e.g. offline).
    pub last_error: Option<String>,
    /// Verification failures, newest first: shown loudly until explained.
    pub alarms: Vec<RaisedAlarm>,
    /// Other witnesses whose cosigned checkpoints the last sync found consistent.
    pub witnesses: Vec<countersign_mirror::witness::WitnessCheck>,
    /// With a pinned witness policy: the size its threshold of witnesses vouch for.
    pub witnessed_size: Option<u64>,
}
