//! The PostgreSQL store, for several replicas of the service on one database.
//!
//! Every write transaction first takes one transaction-scoped advisory lock, so writes from
//! all replicas are serialized exactly as the SQLite store's single writer serializes them:
//! the audit log gets one gapless sequence (the next `seq` is read under the lock), and every
//! rule checked inside a transaction (pending, unexpired, distinct approvers, fresh nonce,
//! single use, expiry once) holds across replicas. Reads take no lock. Commits wait for the
//! WAL flush (PostgreSQL's default `synchronous_commit = on`), so what a replica acknowledged
//! survives the replica and the database server.

mod actions;
mod audit;
mod codec;
mod cosignatures;
mod identity;
mod import;

pub use import::Imported;

use std::time::Duration;

use async_trait::async_trait;
use countersign_core::{
    ActionStatus, AuditEvent, Digest, ExecutionOutcome, KeyId, KeyKind, SignedDecision, Timestamp,
};
use countersign_store::{
    ActionRecord, ApiToken, Approver, ApproverKey, Cosignature, DecisionEffects, DecisionOutcome,
    DecisionRecord, EnrolmentCode, GrantRecord, NewAction, NewEvent, Session, Store, StoreError,
    StoreResult,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

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
    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        Ok(tx)
    }

    async fn conn(&self) -> StoreResult<sqlx::pool::PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(backend)
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Commits; a connection lost while committing leaves the outcome unknown (the server may have
/// committed before the answer was lost), which is not the same as "nothing was written".
async fn commit<T>(tx: Transaction<'static, Postgres>, value: T) -> StoreResult<T> {
    tx.commit().await.map_err(|e| match e {
        // The server answered: COMMIT failed, and the transaction was rolled back.
        sqlx::Error::Database(_) => backend(e),
        other => StoreError::OutcomeUnknown(other.to_string()),
    })?;
    Ok(value)
}

#[async_trait]
impl Store for PgStore {
    async fn append_events(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = audit::append(&mut tx, events, now).await?;
        commit(tx, appended).await
    }

    async fn audit_size(&self) -> StoreResult<u64> {
        audit::size(&mut *self.conn().await?).await
    }

    async fn audit_events(&self, from: u64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        audit::events(&mut *self.conn().await?, from, limit).await
    }

    fn log_changes(&self) -> Option<tokio::sync::broadcast::Receiver<()>> {
        Some(self.changes.subscribe())
    }

    async fn audit_leaves(&self, from: u64, limit: u32) -> StoreResult<Vec<(u64, String)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, event_json FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(from as i64)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(seq, text)| (seq as u64, text))
            .collect())
    }

    async fn latest_event_of_kind(&self, kind: &str) -> StoreResult<Option<AuditEvent>> {
        audit::latest_of_kind(&mut *self.conn().await?, kind).await
    }

    async fn leaf_hashes(&self, from: u64, limit: u32) -> StoreResult<Vec<Digest>> {
        audit::leaf_hashes(&mut *self.conn().await?, from, limit).await
    }

    async fn save_checkpoint(&self, tree_size: u64, note: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO checkpoints (tree_size, note) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(tree_size as i64)
        .bind(note)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn latest_checkpoint(&self) -> StoreResult<Option<(u64, String)>> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        Ok(row.map(|(size, note)| (size as u64, note)))
    }

    async fn checkpoint_note(&self, tree_size: u64) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT note FROM checkpoints WHERE tree_size = $1")
            .bind(tree_size as i64)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(backend)
    }

    async fn save_cosignature(&self, cosignature: &Cosignature) -> StoreResult<()> {
        cosignatures::save(&mut *self.conn().await?, cosignature).await
    }

    async fn cosignatures(&self, tree_size: u64) -> StoreResult<Vec<Cosignature>> {
        cosignatures::of_size(&mut *self.conn().await?, tree_size).await
    }

    async fn latest_cosignatures(&self) -> StoreResult<Vec<Cosignature>> {
        cosignatures::latest_per_key(&mut *self.conn().await?).await
    }

    async fn create_api_token(&self, token: &ApiToken, event: NewEvent) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        identity::create_api_token(&mut tx, token, event).await?;
        commit(tx, ()).await
    }

    async fn api_token(&self, token_hash: &Digest) -> StoreResult<Option<ApiToken>> {
        identity::api_token_by_hash(&mut *self.conn().await?, token_hash).await
    }

    async fn api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        identity::api_tokens(&mut *self.conn().await?).await
    }

    async fn revoke_api_token(
        &self,
        token_id: Uuid,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        identity::revoke_api_token(&mut tx, token_id, event, now).await?;
        commit(tx, ()).await
    }

    async fn put_approver(
        &self,
        approver: &Approver,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        identity::put_approver(&mut tx, approver, event, now).await?;
        commit(tx, ()).await
    }

    async fn approver(&self, id: &str) -> StoreResult<Option<Approver>> {
        identity::approver_by_id(&mut *self.conn().await?, id).await
    }

    async fn approvers(&self) -> StoreResult<Vec<Approver>> {
        identity::approvers(&mut *self.conn().await?).await
    }

    async fn create_enrolment_code(
        &self,
        code: &EnrolmentCode,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        identity::create_enrolment_code(&mut tx, code, event, now).await?;
        commit(tx, ()).await
    }

    async fn enrol_key(
        &self,
        code_hash: &Digest,
        key: &ApproverKey,
        event: NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        identity::enrol_key(&mut tx, code_hash, key, event).await?;
        commit(tx, ()).await
    }

    async fn key(&self, key_id: &KeyId) -> StoreResult<Option<ApproverKey>> {
        identity::key(&mut *self.conn().await?, key_id).await
    }

    async fn keys(&self, approver_id: Option<&str>) -> StoreResult<Vec<ApproverKey>> {
        identity::keys(&mut *self.conn().await?, approver_id).await
    }

    async fn revoke_key(&self, key_id: &KeyId, event: NewEvent, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        identity::revoke_key(&mut tx, key_id, event, now).await?;
        commit(tx, ()).await
    }

    async fn use_challenge(
        &self,
        challenge: &Digest,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        identity::use_challenge(&mut tx, challenge, expires_at, now).await?;
        commit(tx, ()).await
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        identity::create_session(&mut tx, session).await?;
        commit(tx, ()).await
    }

    async fn session(&self, token_hash: &Digest, now: Timestamp) -> StoreResult<Option<Session>> {
        identity::session(&mut *self.conn().await?, token_hash, now).await
    }

    async fn create_action(
        &self,
        action: &NewAction,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = actions::create(&mut tx, action, events, now).await?;
        commit(tx, appended).await
    }

    async fn action_by_idempotency_key(&self, scoped_key: &str) -> StoreResult<Option<Uuid>> {
        actions::by_idempotency_key(&mut *self.conn().await?, scoped_key).await
    }

    async fn action(&self, id: Uuid) -> StoreResult<ActionRecord> {
        actions::get(&mut *self.conn().await?, id).await
    }

    async fn actions_by_status(
        &self,
        status: ActionStatus,
        limit: u32,
    ) -> StoreResult<Vec<ActionRecord>> {
        actions::by_status(&mut *self.conn().await?, status, limit).await
    }

    async fn count_actions(&self, status: ActionStatus) -> StoreResult<u64> {
        actions::count(&mut *self.conn().await?, status).await
    }

    async fn decisions(&self, action_id: Uuid) -> StoreResult<Vec<DecisionRecord>> {
        actions::decisions(&mut *self.conn().await?, action_id).await
    }

    async fn record_decision(
        &self,
        decision: &SignedDecision,
        key_kind: KeyKind,
        effects: DecisionEffects,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<(DecisionOutcome, Vec<AuditEvent>)> {
        let mut tx = self.begin().await?;
        let result =
            actions::record_decision(&mut tx, decision, key_kind, effects, event, now).await?;
        commit(tx, result).await
    }

    async fn grant_for_action(&self, action_id: Uuid) -> StoreResult<Option<GrantRecord>> {
        actions::grant_for_action(&mut *self.conn().await?, action_id).await
    }

    async fn grant_action(&self, grant_id: Uuid) -> StoreResult<Option<Uuid>> {
        actions::grant_action(&mut *self.conn().await?, grant_id).await
    }

    async fn redeem_grant(
        &self,
        grant_id: Uuid,
        digest: &Digest,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<(GrantRecord, Vec<AuditEvent>)> {
        let mut tx = self.begin().await?;
        let result = actions::redeem_grant(&mut tx, grant_id, digest, event, now).await?;
        commit(tx, result).await
    }

    async fn report_outcome(
        &self,
        action_id: Uuid,
        outcome: &ExecutionOutcome,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = actions::report_outcome(&mut tx, action_id, outcome, event, now).await?;
        commit(tx, appended).await
    }

    async fn outcome(&self, action_id: Uuid) -> StoreResult<Option<ExecutionOutcome>> {
        actions::outcome(&mut *self.conn().await?, action_id).await
    }

    async fn expire_due(
        &self,
        now: Timestamp,
        event_for: &(dyn Fn(Uuid) -> NewEvent + Send + Sync),
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = actions::expire_due(&mut tx, now, event_for).await?;
        commit(tx, appended).await
    }

    async fn cancel_action(
        &self,
        id: Uuid,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = actions::cancel(&mut tx, id, event, now).await?;
        commit(tx, appended).await
    }

    async fn next_expiry(&self) -> StoreResult<Option<Timestamp>> {
        actions::next_expiry(&mut *self.conn().await?).await
    }
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
