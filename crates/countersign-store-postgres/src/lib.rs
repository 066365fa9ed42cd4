//! The PostgreSQL store, for several replicas of the service on one database.
//!
//! Every write transaction first takes one transaction-scoped advisory lock, so writes from
//! all replicas are serialized exactly as the SQLite store's single writer serializes them:
//! the audit log gets one gapless sequence (the next `seq` is read under the lock), and every
//! rule checked inside a transaction (pending, unexpired, distinct approvers, fresh nonce,
//! single use, expiry once) holds across replicas. Reads take no lock. Commits wait for the
//! WAL flush (PostgreSQL's default `synchronous_commit = on`), so what a replica acknowledged
//! survives the replica and the database server.

mod audit;
mod codec;
mod cosignatures;
mod directory;
mod identity;
mod import;
mod outbox;
mod requests;

pub use import::Imported;

use std::time::Duration;

use countersign_store::{StoreError, StoreResult};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::codec::backend;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The advisory lock key every write transaction holds ("countersign" in ASCII, truncated).
const WRITE_LOCK: i64 = 0x636f_756e_7465_7273;

/// Longest wait for a pooled connection. While the database is down, an operation fails with
/// `storage_unavailable` after this long instead of hanging; and since sqlx retries a failed
/// connect with a backoff capped at a fifth of it (0.6 s), the pool reconnects within that
/// once the database is back. With 30 s the cap was 6 s: a 5 s outage stopped the service for
/// 10.6 s (BENCHMARKS.md, failover).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Appends by any replica, from `LISTEN`.
    changes: tokio::sync::broadcast::Sender<()>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and applies migrations (several
    /// replicas starting together are fine: sqlx migrates under its own advisory lock).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, ACQUIRE_TIMEOUT).await
    }

    /// [`PgStore::connect`] with another bound on waiting for a pooled connection (the
    /// failover benchmark compares the old 30 s with [`ACQUIRE_TIMEOUT`]).
    pub async fn connect_with(url: &str, acquire_timeout: Duration) -> StoreResult<Self> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("database URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {e}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating PostgreSQL: {e}")))?;
        let (changes, _) = tokio::sync::broadcast::channel(64);
        tokio::spawn(listen(pool.clone(), changes.clone()));
        Ok(Self { pool, changes })
    }

    /// A write transaction, holding the write lock until it commits or rolls back.
    pub(crate) async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        Ok(tx)
    }

    pub(crate) async fn conn(&self) -> StoreResult<sqlx::pool::PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(backend)
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Commits; a connection lost while committing leaves the outcome unknown (the server may have
/// committed before the answer was lost), which is not the same as "nothing was written".
pub(crate) async fn commit<T>(tx: Transaction<'static, Postgres>, value: T) -> StoreResult<T> {
    tx.commit().await.map_err(|e| match e {
        // The server answered: COMMIT failed, and the transaction was rolled back.
        sqlx::Error::Database(_) => backend(e),
        other => StoreError::OutcomeUnknown(other.to_string()),
    })?;
    Ok(value)
}

/// The channel every replica's appends are announced on.
pub(crate) const CHANNEL: &str = "countersign_log";

/// Forwards `NOTIFY`s on [`CHANNEL`] until the store is dropped, reconnecting after errors
/// (sqlx's listener re-subscribes by itself; this covers failing to connect at all).
async fn listen(pool: PgPool, changes: tokio::sync::broadcast::Sender<()>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' appends; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            match listener.recv().await {
                // No follower listening is fine: nobody needs waking.
                Ok(_) => {
                    let _ = changes.send(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the LISTEN connection; reconnecting");
                    // Whatever was announced meanwhile is picked up by the followers' timer.
                    let _ = changes.send(());
                    break;
                }
            }
            if pool.is_closed() {
                return;
            }
        }
    }
}
