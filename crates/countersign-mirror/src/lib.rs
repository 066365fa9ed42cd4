//! An approver's verified local mirror of the service's audit log.
//!
//! The mirror copies every event it may see into a local SQLite database and trusts nothing it
//! has not checked: each checkpoint's signature against the service key pinned at the first
//! sync, that each checkpoint extends the last one it verified (RFC 9162 consistency), that the
//! events it stored hash to exactly the tree the checkpoint commits to, and that every decision
//! and grant in them carries a valid signature. A failed check raises an [`Alarm`], keeps the
//! last verified state and is recorded; nothing unverified is ever written. The console then
//! cosigns what it verified (a witness signature) and compares its view with every other
//! witness's, so a service that shows different histories to different people is caught.
//!
//! On top of the events it keeps a request index with SQLite FTS5 for search and reports.

mod alarm;
mod database;
mod detail;
mod export;
mod index;
mod search;
mod stats;
mod sync;
pub mod verifier;
pub mod witness;

pub use alarm::{Alarm, AlarmKind};
pub use database::{Mirror, MirrorStatus, RaisedAlarm};
pub use detail::{DecisionDetail, EventEntry, RequestDetail};
pub use export::{Anchor, ExportRow, StoredEvent};
pub use search::{Facets, MAX_PAGE, Page, RequestSummary, SearchQuery, Sort, search_sql};
pub use stats::{
    ApproverRow, BreakGlassRow, DecisionLine, ReportStats, Totals, TypeRow, percentile,
};
pub use sync::{Progress, SyncReport, Witness};

use countersign_client::ClientError;

/// Why a mirror operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A verification failed: the service's history does not check out.
    #[error("{0}")]
    Alarm(Alarm),
    /// The service could not be reached or refused.
    #[error("talking to the service: {0}")]
    Client(#[from] ClientError),
    /// The local database failed.
    #[error("mirror database: {0}")]
    Database(String),
    /// The local database holds something that does not parse: it was changed outside the
    /// mirror.
    #[error("mirror database is corrupt: {0}")]
    Corrupt(String),
    /// The request asked for does not make sense (unknown id, bad query).
    #[error("{0}")]
    Invalid(String),
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl From<sqlx::Error> for MirrorError {
    fn from(e: sqlx::Error) -> Self {
        MirrorError::Database(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for MirrorError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        MirrorError::Database(format!("migrating: {e}"))
    }
}

/// Result of mirror operations.
pub type MirrorResult<T> = Result<T, MirrorError>;
