//! The mirror's database: opening it, the trust state, status and alarms.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use countersign_core::checkpoint::SignedCheckpoint;
use countersign_core::merkle::Frontier;
use countersign_core::{Checkpoint, MerkleTree, PublicKey, Timestamp};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::Mutex;

use crate::alarm::Alarm;
use crate::{MirrorError, MirrorResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A local mirror database.
#[derive(Clone, Debug)]
pub struct Mirror {
    pub(crate) pool: SqlitePool,
    path: PathBuf,
    /// The verified events' Merkle tree, for inclusion proofs (built on first use).
    tree: Arc<Mutex<Arc<MerkleTree>>>,
}

/// What the mirror trusts, as stored.
#[derive(Clone, Debug)]
pub(crate) struct Trust {
    pub server_url: String,
    pub origin: String,
    pub server_key: PublicKey,
    pub checkpoint: Option<SignedCheckpoint>,
    pub verified_size: u64,
    pub frontier: Frontier,
}

/// Where the mirror stands, for people.
#[derive(Clone, Debug, Serialize)]
pub struct MirrorStatus {
    /// The service it mirrors, once bound.
    pub server_url: Option<String>,
    /// The log's origin (checkpoint key name).
    pub origin: Option<String>,
    /// The last verified checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// Events stored and verified.
    pub verified_size: u64,
    /// Requests indexed.
    pub requests: u64,
    /// Alarms raised, newest first.
    pub alarms: Vec<RaisedAlarm>,
}

/// An alarm as recorded.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct RaisedAlarm {
    /// When.
    pub raised_at: Timestamp,
    /// The alarm.
    #[serde(flatten)]
    pub alarm: Alarm,
}

impl Mirror {
    /// Opens (creating if needed) the mirror database at `path`.
    pub async fn open(path: &Path) -> MirrorResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| MirrorError::Database(format!("creating {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| MirrorError::Database(format!("opening {}: {e}", path.display())))?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            path: path.to_owned(),
            tree: Arc::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn tree_cache(&self) -> Arc<MerkleTree> {
        self.tree.lock().await.clone()
    }

    pub(crate) async fn set_tree_cache(&self, tree: Arc<MerkleTree>) {
        *self.tree.lock().await = tree;
    }

    pub(crate) async fn trust(&self) -> MirrorResult<Option<Trust>> {
        read_trust(&mut *self.pool.acquire().await?).await
    }

    /// Whether this mirror is for the log `origin` signed by `server_key` (or not bound to any
    /// log yet): a mirror holds one log, pinned on first sync.
    pub async fn holds_log(&self, origin: &str, server_key: &PublicKey) -> MirrorResult<bool> {
        Ok(self
            .trust()
            .await?
            .is_none_or(|t| t.origin == origin && &t.server_key == server_key))
    }

    /// Where the mirror stands.
    pub async fn status(&self) -> MirrorResult<MirrorStatus> {
        let trust = self.trust().await?;
        let requests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests")
            .fetch_one(&self.pool)
            .await?;
        Ok(MirrorStatus {
            server_url: trust.as_ref().map(|t| t.server_url.clone()),
            origin: trust.as_ref().map(|t| t.origin.clone()),
            checkpoint: trust
                .as_ref()
                .and_then(|t| t.checkpoint.as_ref().map(|c| c.checkpoint.clone())),
            verified_size: trust.as_ref().map_or(0, |t| t.verified_size),
            requests: requests as u64,
            alarms: self.alarms().await?,
        })
    }

    /// Alarms raised, newest first.
    pub async fn alarms(&self) -> MirrorResult<Vec<RaisedAlarm>> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT raised_at, kind, message FROM alarms ORDER BY id DESC")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(at, kind, message)| {
                let kind = serde_json::from_value(serde_json::Value::String(kind.clone()))
                    .map_err(|_| MirrorError::Corrupt(format!("unknown alarm kind {kind}")))?;
                Ok(RaisedAlarm {
                    raised_at: timestamp(at)?,
                    alarm: Alarm { kind, message },
                })
            })
            .collect()
    }

    /// Pins `policy` (replacing any before): from the next sync on, a checkpoint counts as
    /// verified only with cosignatures from its threshold of witnesses. Checked against the
    /// log this mirror holds when it has synced already (and at every sync).
    pub async fn pin_witness_policy(
        &self,
        policy: &countersign_core::witness_policy::SignedWitnessPolicy,
    ) -> MirrorResult<()> {
        policy.policy.check().map_err(MirrorError::Invalid)?;
        if let Some(trust) = self.trust().await? {
            policy
                .verify(&trust.origin, &trust.server_key)
                .map_err(MirrorError::Invalid)?;
        }
        let body = serde_json::to_string(policy)
            .map_err(|e| MirrorError::Invalid(format!("witness policy: {e}")))?;
        sqlx::query(
            "INSERT INTO witness_policy (id, body) VALUES (1, ?)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        )
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The pinned witness policy, if any.
    pub async fn witness_policy(
        &self,
    ) -> MirrorResult<Option<countersign_core::witness_policy::SignedWitnessPolicy>> {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body FROM witness_policy WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        body.map(|b| {
            serde_json::from_str(&b)
                .map_err(|e| MirrorError::Corrupt(format!("pinned witness policy: {e}")))
        })
        .transpose()
    }

    /// Records an alarm (in its own transaction: whatever failed was rolled back).
    pub(crate) async fn raise(&self, alarm: &Alarm, now: Timestamp) -> MirrorResult<()> {
        tracing::error!(kind = alarm.kind_text(), message = %alarm.message, "audit log verification failed");
        sqlx::query("INSERT INTO alarms (raised_at, kind, message) VALUES (?, ?, ?)")
            .bind(now.as_millis())
            .bind(alarm.kind_text())
            .bind(&alarm.message)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

pub(crate) fn timestamp(ms: i64) -> MirrorResult<Timestamp> {
    Timestamp::from_millis(ms).map_err(|e| MirrorError::Corrupt(format!("time {ms}: {e}")))
}

/// The `trust` row: url, origin, key, checkpoint note, verified size, frontier.
type TrustRow = (String, String, String, Option<String>, i64, Vec<u8>);

pub(crate) async fn read_trust(conn: &mut SqliteConnection) -> MirrorResult<Option<Trust>> {
    let row: Option<TrustRow> = sqlx::query_as(
        "SELECT server_url, origin, server_key, checkpoint, verified_size, frontier FROM trust",
    )
    .fetch_optional(conn)
    .await?;
    let Some((server_url, origin, key, checkpoint, verified_size, frontier)) = row else {
        return Ok(None);
    };
    let server_key = serde_json::from_value(serde_json::Value::String(key))
        .map_err(|e| MirrorError::Corrupt(format!("pinned service key: {e}")))?;
    let checkpoint = checkpoint
        .map(|n| SignedCheckpoint::parse_note(&n))
        .transpose()
        .map_err(|e| MirrorError::Corrupt(format!("trusted checkpoint: {e}")))?;
    let frontier = Frontier::from_bytes(&frontier)
        .map_err(|e| MirrorError::Corrupt(format!("trusted frontier: {e}")))?;
    if frontier.size() != verified_size as u64 {
        return Err(MirrorError::Corrupt(
            "trusted frontier does not match the verified size".into(),
        ));
    }
    Ok(Some(Trust {
        server_url,
        origin,
        server_key,
        checkpoint,
        verified_size: verified_size as u64,
        frontier,
    }))
}

pub(crate) async fn write_trust(conn: &mut SqliteConnection, trust: &Trust) -> MirrorResult<()> {
    let key = serde_json::to_value(&trust.server_key)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| MirrorError::Database("service key does not encode".into()))?;
    sqlx::query(
        "INSERT INTO trust (id, server_url, origin, server_key, checkpoint, verified_size, frontier)
         VALUES (1, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET server_url = excluded.server_url, checkpoint = excluded.checkpoint,
           verified_size = excluded.verified_size, frontier = excluded.frontier",
    )
    .bind(&trust.server_url)
    .bind(&trust.origin)
    .bind(key)
    .bind(trust.checkpoint.as_ref().map(|c| c.to_note()))
    .bind(trust.verified_size as i64)
    .bind(trust.frontier.to_bytes())
    .execute(conn)
    .await?;
    Ok(())
}
