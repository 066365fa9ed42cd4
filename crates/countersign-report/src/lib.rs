//! Audit reports from the verified mirror, for a time range and the current filters:
//!
//! - [`csv_export`]: one row per request, RFC 4180, safe to open in a spreadsheet;
//! - [`bundle`]: a JSON Lines evidence bundle (events, decision signatures, the signed
//!   checkpoint and its cosignatures, inclusion proofs, keys) that [`bundle::verify`] checks
//!   fully offline, signed by the exporting approver so that any changed byte fails;
//! - [`pdf`]: a report for auditors (totals, time to decision, per-approver and per-type
//!   tables, denials and expiries, volume over time, the anchoring checkpoint).
//!
//! Long exports report progress and can be cancelled between pages.

pub mod bundle;
pub mod csv_export;
pub mod pdf;

use std::sync::atomic::{AtomicBool, Ordering};

use countersign_mirror::{Mirror, MirrorError, RequestSummary, SearchQuery, Sort};
use serde::Serialize;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the mirror failed.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// Writing the output failed.
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV writer failed.
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    /// Signing the bundle failed.
    #[error("signing the evidence bundle: {0}")]
    Sign(String),
    /// The export was cancelled; the partial output must be discarded.
    #[error("export cancelled")]
    Cancelled,
}

/// How far an export is, in requests.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ExportProgress {
    /// Requests written.
    pub done: u64,
    /// Requests to write.
    pub total: u64,
}

/// Progress callback and cancellation flag of an export.
#[derive(Clone, Copy)]
pub struct Control<'a> {
    /// Called after each page.
    pub progress: &'a (dyn Fn(ExportProgress) + Send + Sync),
    /// Set to stop the export at the next page.
    pub cancel: Option<&'a AtomicBool>,
}

impl Control<'_> {
    /// No progress, no cancellation.
    pub fn none() -> Control<'static> {
        Control {
            progress: &|_| {},
            cancel: None,
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// The pages of requests matching a query, oldest first, with progress and cancellation.
pub(crate) struct Pages<'a> {
    mirror: &'a Mirror,
    query: SearchQuery,
    control: Control<'a>,
    done: u64,
    total: u64,
    finished: bool,
}

impl<'a> Pages<'a> {
    pub(crate) async fn new(
        mirror: &'a Mirror,
        q: &SearchQuery,
        control: Control<'a>,
    ) -> Result<Self, ReportError> {
        let total = mirror.count(q).await?;
        let mut query = q.clone();
        query.sort = Sort::Oldest;
        query.after = None;
        query.offset = None;
        query.limit = Some(countersign_mirror::MAX_PAGE);
        (control.progress)(ExportProgress { done: 0, total });
        Ok(Self {
            mirror,
            query,
            control,
            done: 0,
            total,
            finished: false,
        })
    }

    /// The next page, or `None` after the last.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<RequestSummary>>, ReportError> {
        if self.finished {
            return Ok(None);
        }
        if self.control.cancelled() {
            return Err(ReportError::Cancelled);
        }
        let page = self.mirror.search(&self.query).await?;
        self.done += page.items.len() as u64;
        (self.control.progress)(ExportProgress {
            done: self.done,
            total: self.total,
        });
        match page.next {
            Some(next) => self.query.after = Some(next),
            None => self.finished = true,
        }
        Ok(Some(page.items))
    }

    /// Requests returned so far.
    pub(crate) fn done(&self) -> u64 {
        self.done
    }
}

/// RFC 3339 with milliseconds, UTC.
pub(crate) fn time_text(ms: i64) -> String {
    countersign_core::Timestamp::from_millis(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}
