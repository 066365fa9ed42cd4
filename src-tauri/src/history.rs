//! The History view's side: the verified audit mirror (`countersign-mirror`), kept in sync
//! while the console is live, its search, and exports (`countersign-report`). No Tauri types.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use countersign_approver::{export, history};
use countersign_client::approver::now;
use countersign_core::{KeyId, PublicKey};
use countersign_keys::Signer;
use countersign_mirror::{Mirror, Progress};
use countersign_report::{Control, ExportProgress};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::ConsoleError;
pub use crate::events::HistoryStatus;
use crate::events::{ConsoleEvent, EventSink};

/// How often the mirror syncs with nothing else prompting it.
const PERIOD: Duration = Duration::from_secs(60);

/// Export formats.
#[derive(utoipa::ToSchema, Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// One row per request.
    Csv,
    /// Signed, offline-verifiable evidence.
    Bundle,
    /// The auditors' report.
    Pdf,
}

/// A finished export.
#[derive(utoipa::ToSchema, Clone, Debug, Serialize)]
pub struct ExportDone {
    /// Where it was written.
    #[schema(value_type = String)]
    pub path: PathBuf,
}

/// What syncing needs from the console: who, where, and the unlocked key.
#[derive(Clone)]
pub struct SyncContext {
    /// Service URL.
    pub server: String,
    /// Approver.
    pub approver_id: String,
    /// The enrolled key's id.
    pub key_id: KeyId,
    /// The unlocked key: opens sessions and cosigns checkpoints.
    pub signer: Arc<dyn Signer>,
}

/// The mirror and its sync loop.
pub struct History {
    /// The mirror's file; another when the console moves to another service's log.
    path: std::sync::Mutex<PathBuf>,
    /// Opened on first use; emptied when the file changes.
    mirror: tokio::sync::Mutex<Option<Mirror>>,
    /// Whom to sync as; replaced when the key or service changes.
    context: std::sync::Mutex<Option<SyncContext>>,
    wake: Notify,
    status: std::sync::Mutex<HistoryStatus>,
    cancel_export: AtomicBool,
    events: EventSink,
}

/// The witness policy file the console pins, beside its history files.
pub const WITNESS_POLICY_FILE: &str = "witness-policy.json";

/// Where exports are written: `COUNTERSIGN_EXPORT_DIR`, the XDG downloads folder, `~/Downloads`.
pub fn exports_dir() -> PathBuf {
    std::env::var_os("COUNTERSIGN_EXPORT_DIR")
        .or_else(|| std::env::var_os("XDG_DOWNLOAD_DIR"))
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join("Downloads")))
        .unwrap_or_else(std::env::temp_dir)
}

impl History {
    /// The history kept in `path`.
    pub fn new(path: PathBuf, events: EventSink) -> Self {
        Self {
            path: std::sync::Mutex::new(path),
            mirror: tokio::sync::Mutex::default(),
            context: std::sync::Mutex::default(),
            wake: Notify::new(),
            status: std::sync::Mutex::default(),
            cancel_export: AtomicBool::new(false),
            events,
        }
    }

    /// The mirror, opened on first use.
    pub async fn mirror(&self) -> Result<Mirror, ConsoleError> {
        let mut mirror = self.mirror.lock().await;
        if let Some(m) = &*mirror {
            return Ok(m.clone());
        }
        let opened = Mirror::open(&self.path())
            .await
            .map_err(ConsoleError::History)?;
        *mirror = Some(opened.clone());
        Ok(opened)
    }

    /// The mirror's file.
    pub fn path(&self) -> PathBuf {
        lock(&self.path).clone()
    }

    /// Keeps the history in `path` from now on (a sync or export still running finishes in
    /// the old file, which stays as it is).
    pub async fn use_file(&self, path: PathBuf) {
        if path == self.path() {
            return;
        }
        let mut mirror = self.mirror.lock().await;
        *lock(&self.path) = path;
        *mirror = None;
        drop(mirror);
        self.publish(|s| *s = HistoryStatus::default());
    }

    /// Whether the mirror holds the log `origin` signed by `server_key`, or none yet.
    pub async fn holds_log(
        &self,
        origin: &str,
        server_key: &PublicKey,
    ) -> Result<bool, ConsoleError> {
        self.mirror()
            .await?
            .holds_log(origin, server_key)
            .await
            .map_err(ConsoleError::History)
    }

    /// Syncs as `ctx` from now on, starting soon.
    pub fn set_context(&self, ctx: SyncContext) {
        *lock(&self.context) = Some(ctx);
        self.wake();
    }

    /// Where the mirror stands (alarms read from the mirror).
    pub async fn status(&self) -> Result<HistoryStatus, ConsoleError> {
        let s = self
            .mirror()
            .await?
            .status()
            .await
            .map_err(ConsoleError::History)?;
        let mut status = lock(&self.status);
        status.verified_size = s.verified_size;
        status.checkpoint = s.checkpoint;
        status.alarms = s.alarms;
        Ok(status.clone())
    }

    fn publish(&self, change: impl FnOnce(&mut HistoryStatus)) {
        let status = {
            let mut s = lock(&self.status);
            change(&mut s);
            s.clone()
        };
        (self.events)(ConsoleEvent::History { status });
    }

    /// Asks for a sync soon (several asks in a burst make one sync).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Syncs now, then whenever woken and at least every minute, for as long as the console
    /// runs, as whoever [`History::set_context`] last named.
    pub async fn keep_synced(self: Arc<Self>) {
        loop {
            let ctx = lock(&self.context).clone();
            if let Some(ctx) = ctx {
                self.sync_once(&ctx).await;
            }
            let _ = tokio::time::timeout(PERIOD, self.wake.notified()).await;
            // Let a burst of changes settle into one sync.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn sync_once(&self, ctx: &SyncContext) {
        self.publish(|s| {
            s.syncing = true;
            s.progress = None;
        });
        let result = self.sync_with(ctx).await;
        let alarms = match self.mirror().await {
            Ok(m) => m.alarms().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        self.publish(|s| {
            s.syncing = false;
            s.progress = None;
            s.alarms = alarms;
            match result {
                Ok(report) => {
                    s.verified_size = report.to_size;
                    s.checkpoint = Some(report.checkpoint);
                    s.witnesses = report.witnesses;
                    s.witnessed_size = report.witnessed_size;
                    s.last_sync = Some(now());
                    s.last_error = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "history sync failed");
                    s.last_error = Some(e.to_string());
                }
            }
        });
    }

    async fn sync_with(
        &self,
        ctx: &SyncContext,
    ) -> Result<countersign_mirror::SyncReport, ConsoleError> {
        let mirror = self.mirror().await?;
        // The deployment's witness policy, when its operator placed one beside the history
        // (out of band: configuration management, the enrolment bundle).
        let pinned = self
            .path()
            .parent()
            .map(|dir| dir.join(WITNESS_POLICY_FILE))
            .filter(|p| p.exists());
        if let Some(path) = pinned {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConsoleError::Settings(format!("{}: {e}", path.display())))?;
            let policy = serde_json::from_str(&text).map_err(|e| {
                ConsoleError::Settings(format!("{} is not a witness policy: {e}", path.display()))
            })?;
            mirror
                .pin_witness_policy(&policy)
                .await
                .map_err(ConsoleError::History)?;
        }
        let approver = history::Approver {
            server: &ctx.server,
            approver_id: &ctx.approver_id,
            key_id: ctx.key_id,
            signer: ctx.signer.as_ref(),
        };
        let progress = |p: Progress| self.publish(|s| s.progress = Some(p));
        history::sync_as_witness(&mirror, &approver, &progress)
            .await
            .map_err(|e| match e {
                history::SyncError::Mirror(e) => ConsoleError::History(e),
                history::SyncError::Session(e) => ConsoleError::Approver(e),
            })
    }

    /// Writes an export of the requests matching `query` into the downloads folder. A bundle
    /// is signed with `exporter`'s key.
    pub async fn export(
        &self,
        format: ExportFormat,
        query: &countersign_mirror::SearchQuery,
        exporter: Option<&SyncContext>,
    ) -> Result<ExportDone, ConsoleError> {
        let mirror = self.mirror().await?;
        self.cancel_export.store(false, Ordering::SeqCst);
        let dir = exports_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| ConsoleError::Export(format!("creating {}: {e}", dir.display())))?;
        let stamp = now().to_string().replace([':', '.'], "-");
        let format = match format {
            ExportFormat::Csv => export::Format::Csv,
            ExportFormat::Bundle => export::Format::Bundle,
            ExportFormat::Pdf => export::Format::Pdf,
        };
        // A bundle of one request is that request's proof, named for it.
        let name = match (&query.id, format) {
            (Some(id), export::Format::Bundle) => format!("countersign-proof-{id}-{stamp}"),
            _ => format!("countersign-audit-{stamp}"),
        };
        let path = dir.join(format!("{name}.{}", format.extension()));
        let events = self.events.clone();
        let progress = move |p: ExportProgress| {
            events(ConsoleEvent::Export {
                done: p.done,
                total: p.total,
            })
        };
        let control = Control {
            progress: &progress,
            cancel: Some(&self.cancel_export),
        };
        let exporter = exporter.map(|ctx| export::Exporter {
            approver_id: &ctx.approver_id,
            key_id: ctx.key_id,
            signer: ctx.signer.as_ref(),
        });
        export::write(
            &mirror,
            query,
            format,
            &path,
            exporter.as_ref(),
            now(),
            control,
        )
        .await
        .map_err(|e| match e {
            export::ExportError::Report(e) => ConsoleError::Report(e),
            export::ExportError::NoExporter => ConsoleError::Locked,
            export::ExportError::File(message) => ConsoleError::Export(message),
        })?;
        Ok(ExportDone { path })
    }

    /// Stops a running export at its next page.
    pub fn cancel_export(&self) {
        self.cancel_export.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
