//! What the gate is running, kept on disk so that a gate killed mid-run reports the run failed
//! when it starts again: the log then never shows an approved, redeemed action with no outcome.
//!
//! An entry is written (and synced) before the grant is redeemed and removed once the outcome is
//! reported. It holds the agent's token, because outcomes are reported as the requester: the
//! directory is the gate's own (mode 0700, files 0600), like the credentials it already holds.

use std::path::{Path, PathBuf};

use countersign_client::Client;
use countersign_core::ExecutionOutcome;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What kind of effect a run has, to say what a stopped run left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// A statement in one transaction: a stopped gate's connection ends, the database rolls back.
    Database,
    /// A program or an upstream tool: what it did before the gate stopped is unknown.
    External,
}

/// One run in progress.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    request_id: Uuid,
    agent_token: String,
    effect: Effect,
}

/// The journal directory.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: PathBuf,
}

/// Why the journal could not be written.
#[derive(Debug, thiserror::Error)]
#[error("the gate's journal at {path}: {source}")]
pub struct JournalError {
    path: PathBuf,
    source: std::io::Error,
}

impl Journal {
    /// Opens (creating) the journal in `state_dir/running`.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let dir = state_dir.join("running");
        let failed = |source| JournalError {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(failed)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for d in [state_dir, dir.as_path()] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                    .map_err(failed)?;
            }
        }
        Ok(Self { dir })
    }

    fn path(&self, request_id: Uuid) -> PathBuf {
        self.dir.join(format!("{request_id}.json"))
    }

    /// Records that the approved request `request_id` is about to run; synced before it returns.
    pub fn begin(
        &self,
        request_id: Uuid,
        agent_token: &str,
        effect: Effect,
    ) -> Result<(), JournalError> {
        use std::io::Write as _;
        let path = self.path(request_id);
        let failed = |source| JournalError {
            path: path.clone(),
            source,
        };
        let entry = Entry {
            request_id,
            agent_token: agent_token.to_owned(),
            effect,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| failed(e.into()))?;
        let partial = path.with_extension("partial");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&partial).map_err(failed)?;
        file.write_all(&bytes).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        std::fs::rename(&partial, &path).map_err(failed)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(failed)?;
        Ok(())
    }

    /// Forgets `request_id` (its outcome is reported).
    pub fn end(&self, request_id: Uuid) {
        let path = self.path(request_id);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not clear a journal entry");
        }
    }

    /// Reports every run a stopped gate left as failed, at `service`; how many were reported.
    /// Entries the service cannot take now (it is down) stay for the next start.
    pub async fn recover(&self, service: &str) -> Result<usize, JournalError> {
        let failed = |source| JournalError {
            path: self.dir.clone(),
            source,
        };
        let mut reported = 0;
        for item in std::fs::read_dir(&self.dir).map_err(failed)? {
            let path = item.map_err(failed)?.path();
            if path.extension().is_some_and(|e| e == "partial") {
                // Never completed: the grant was not redeemed after it.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let entry: Entry = match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(e) => e,
                None => {
                    tracing::warn!(path = %path.display(), "unreadable journal entry removed");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let outcome = ExecutionOutcome {
                succeeded: false,
                exit_code: None,
                detail: match entry.effect {
                    Effect::Database => "the gate stopped while the statement ran; its \
                                         transaction was rolled back by the database"
                        .into(),
                    Effect::External => "the gate stopped while it ran; what it did before \
                                         is unknown"
                        .into(),
                },
            };
            let client = match Client::new(service) {
                Ok(c) => c.with_token(entry.agent_token.clone()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the service to recover runs");
                    return Ok(reported);
                }
            };
            match client.report_outcome(entry.request_id, &outcome).await {
                Ok(_) => {
                    reported += 1;
                    tracing::warn!(request = %entry.request_id, "a run the gate stopped during is recorded as failed");
                    self.end(entry.request_id);
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(request = %entry.request_id, error = %e, "recovery deferred: the service cannot take the outcome now");
                }
                Err(e) => {
                    // Already reported, never redeemed, or the token was revoked: nothing to add.
                    tracing::info!(request = %entry.request_id, error = %e, "journal entry needs no outcome");
                    self.end(entry.request_id);
                }
            }
        }
        Ok(reported)
    }
}
