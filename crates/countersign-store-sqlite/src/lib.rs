//! The embedded SQLite store: one file in the data directory, WAL journal, nothing to start.
//!
//! One thread owns the only read-write connection and runs each write operation whole, with
//! group commit (see [`writer`]); reads run on a small pool of read-only connections. Commits
//! are `synchronous = FULL`: an acknowledged request, decision or grant survives a crash of the
//! process or of the machine.

mod actions;
mod audit;
mod codec;
mod connection;
mod cosignatures;
mod identity;
mod query;
mod readers;
mod writer;

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use countersign_core::{
    ActionStatus, AuditEvent, Digest, ExecutionOutcome, KeyId, KeyKind, SignedDecision, Timestamp,
};
use countersign_store::{
    ActionRecord, ApiToken, Approver, ApproverKey, Cosignature, DecisionContext, DecisionEffects,
    DecisionOutcome, DecisionRecord, EnrolmentCode, GrantRecord, NewAction, NewEvent, Session,
    Store, StoreError, StoreResult,
};
use rusqlite::Connection;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use uuid::Uuid;

use crate::readers::Readers;
use crate::writer::Writer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and applies migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        migrate(path).await?;
        let writer = Writer::start(connection::open_writer(path)?)?;
        Ok(Self {
            writer,
            readers: Readers::new(path),
        })
    }

    async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(op).await
    }

    async fn read<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.readers.read(op).await
    }

    /// Waits for queued writes to finish and closes idle read connections; the writer thread
    /// ends when the last handle to the store is dropped.
    pub async fn close(&self) {
        let _ = self.write(|_| Ok(())).await;
        self.readers.close();
    }
}

/// Applies the schema migrations, through sqlx's migrator so that databases created by
/// earlier versions keep their migration history.
async fn migrate(path: &Path) -> StoreResult<()> {
    let url = format!("sqlite://{}", path.display());
    let mut conn = SqliteConnectOptions::from_str(&url)
        .map_err(|e| StoreError::Backend(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
    MIGRATOR
        .run(&mut conn)
        .await
        .map_err(|e| StoreError::Backend(format!("migrating {}: {e}", path.display())))?;
    sqlx::Connection::close(conn)
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))
}

#[async_trait]
impl Store for SqliteStore {
    async fn append_events(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let events = audit::encode(events, now)?;
        self.write(move |c| audit::append(c, events)).await
    }

    async fn audit_size(&self) -> StoreResult<u64> {
        self.read(audit::size).await
    }

    async fn audit_events(&self, from: u64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        self.read(move |c| audit::events(c, from, limit)).await
    }

    async fn audit_leaves(&self, from: u64, limit: u32) -> StoreResult<Vec<(u64, String)>> {
        self.read(move |c| audit::leaves(c, from, limit)).await
    }

    async fn latest_event_of_kind(&self, kind: &str) -> StoreResult<Option<AuditEvent>> {
        let kind = kind.to_owned();
        self.read(move |c| audit::latest_of_kind(c, &kind)).await
    }

    async fn leaf_hashes(&self, from: u64, limit: u32) -> StoreResult<Vec<Digest>> {
        self.read(move |c| audit::leaf_hashes(c, from, limit)).await
    }

    async fn save_checkpoint(&self, tree_size: u64, note: &str) -> StoreResult<()> {
        let note = note.to_owned();
        self.write(move |c| {
            query::execute(
                c,
                "INSERT INTO checkpoints (tree_size, note) VALUES (?, ?) ON CONFLICT DO NOTHING",
                rusqlite::params![tree_size as i64, note],
            )
            .map(drop)
        })
        .await
    }

    async fn latest_checkpoint(&self) -> StoreResult<Option<(u64, String)>> {
        self.read(|c| {
            query::select_one(
                c,
                "SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1",
                [],
                |row| {
                    Ok((
                        codec::col::<i64>(row, "tree_size")? as u64,
                        codec::col(row, "note")?,
                    ))
                },
            )
        })
        .await
    }

    async fn checkpoint_note(&self, tree_size: u64) -> StoreResult<Option<String>> {
        self.read(move |c| {
            query::select_one(
                c,
                "SELECT note FROM checkpoints WHERE tree_size = ?",
                [tree_size as i64],
                |row| codec::col(row, "note"),
            )
        })
        .await
    }

    async fn save_cosignature(&self, cosignature: &Cosignature) -> StoreResult<()> {
        let cosignature = cosignature.clone();
        self.write(move |c| cosignatures::save(c, &cosignature))
            .await
    }

    async fn cosignatures(&self, tree_size: u64) -> StoreResult<Vec<Cosignature>> {
        self.read(move |c| cosignatures::of_size(c, tree_size))
            .await
    }

    async fn latest_cosignatures(&self) -> StoreResult<Vec<Cosignature>> {
        self.read(cosignatures::latest_per_key).await
    }

    async fn create_api_token(&self, token: &ApiToken, event: NewEvent) -> StoreResult<()> {
        let token = token.clone();
        let event = audit::encode_one(event, token.created_at)?;
        self.write(move |c| identity::create_api_token(c, &token, event))
            .await
    }

    async fn api_token(&self, token_hash: &Digest) -> StoreResult<Option<ApiToken>> {
        let hash = *token_hash;
        self.read(move |c| identity::api_token_by_hash(c, &hash))
            .await
    }

    async fn api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        self.read(identity::api_tokens).await
    }

    async fn revoke_api_token(
        &self,
        token_id: Uuid,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let event = audit::encode_one(event, now)?;
        self.write(move |c| identity::revoke_api_token(c, token_id, event, now))
            .await
    }

    async fn put_approver(
        &self,
        approver: &Approver,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let approver = approver.clone();
        let event = audit::encode_one(event, now)?;
        self.write(move |c| identity::put_approver(c, &approver, event))
            .await
    }

    async fn approver(&self, id: &str) -> StoreResult<Option<Approver>> {
        let id = id.to_owned();
        self.read(move |c| identity::approver_by_id(c, &id)).await
    }

    async fn approvers(&self) -> StoreResult<Vec<Approver>> {
        self.read(identity::approvers).await
    }

    async fn create_enrolment_code(
        &self,
        code: &EnrolmentCode,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let code = code.clone();
        let event = audit::encode_one(event, now)?;
        self.write(move |c| identity::create_enrolment_code(c, &code, event))
            .await
    }

    async fn enrol_key(
        &self,
        code_hash: &Digest,
        key: &ApproverKey,
        event: NewEvent,
    ) -> StoreResult<()> {
        let (code_hash, key) = (*code_hash, key.clone());
        let event = audit::encode_one(event, key.enrolled_at)?;
        self.write(move |c| identity::enrol_key(c, &code_hash, &key, event))
            .await
    }

    async fn key(&self, key_id: &KeyId) -> StoreResult<Option<ApproverKey>> {
        let key_id = *key_id;
        self.read(move |c| identity::key(c, &key_id)).await
    }

    async fn keys(&self, approver_id: Option<&str>) -> StoreResult<Vec<ApproverKey>> {
        let approver_id = approver_id.map(str::to_owned);
        self.read(move |c| identity::keys(c, approver_id.as_deref()))
            .await
    }

    async fn revoke_key(&self, key_id: &KeyId, event: NewEvent, now: Timestamp) -> StoreResult<()> {
        let key_id = *key_id;
        let event = audit::encode_one(event, now)?;
        self.write(move |c| identity::revoke_key(c, &key_id, event, now))
            .await
    }

    async fn use_challenge(
        &self,
        challenge: &Digest,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        let challenge = *challenge;
        self.write(move |c| identity::use_challenge(c, &challenge, expires_at, now))
            .await
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let session = session.clone();
        self.write(move |c| identity::create_session(c, &session))
            .await
    }

    async fn session(&self, token_hash: &Digest, now: Timestamp) -> StoreResult<Option<Session>> {
        let hash = *token_hash;
        self.read(move |c| identity::session(c, &hash, now)).await
    }

    async fn create_action(
        &self,
        action: &NewAction,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let action = action.clone();
        let events = audit::encode(events, now)?;
        let text = actions::canonical_text(&action.record.action)?;
        self.write(move |c| actions::create(c, &action, text, events, now))
            .await
    }

    async fn action(&self, id: Uuid) -> StoreResult<ActionRecord> {
        self.read(move |c| actions::get(c, id)).await
    }

    async fn action_by_idempotency_key(&self, scoped_key: &str) -> StoreResult<Option<Uuid>> {
        let key = scoped_key.to_owned();
        self.read(move |c| actions::by_idempotency_key(c, &key))
            .await
    }

    async fn actions_by_status(
        &self,
        status: ActionStatus,
        limit: u32,
    ) -> StoreResult<Vec<ActionRecord>> {
        self.read(move |c| actions::by_status(c, status, limit))
            .await
    }

    async fn count_actions(&self, status: ActionStatus) -> StoreResult<u64> {
        self.read(move |c| actions::count(c, status)).await
    }

    async fn decisions(&self, action_id: Uuid) -> StoreResult<Vec<DecisionRecord>> {
        self.read(move |c| actions::decisions(c, action_id)).await
    }

    async fn decision_context(
        &self,
        action_id: Uuid,
        key_id: &KeyId,
        approver_id: &str,
    ) -> StoreResult<DecisionContext> {
        let (key_id, approver_id) = (*key_id, approver_id.to_owned());
        self.read(move |c| {
            Ok(DecisionContext {
                record: actions::get(c, action_id)?,
                key: identity::key(c, &key_id)?,
                approver: identity::approver_by_id(c, &approver_id)?,
            })
        })
        .await
    }

    async fn record_decision(
        &self,
        decision: &SignedDecision,
        key_kind: KeyKind,
        effects: DecisionEffects,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<(DecisionOutcome, Vec<AuditEvent>)> {
        let prepared = actions::PreparedDecision::new(decision, key_kind, effects, event, now)?;
        self.write(move |c| actions::record_decision(c, prepared, now))
            .await
    }

    async fn grant_for_action(&self, action_id: Uuid) -> StoreResult<Option<GrantRecord>> {
        self.read(move |c| actions::grant_for_action(c, action_id))
            .await
    }

    async fn grant_action(&self, grant_id: Uuid) -> StoreResult<Option<Uuid>> {
        self.read(move |c| actions::grant_action(c, grant_id)).await
    }

    async fn redeem_grant(
        &self,
        grant_id: Uuid,
        digest: &Digest,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<(GrantRecord, Vec<AuditEvent>)> {
        let digest = *digest;
        let event = audit::encode_one(event, now)?;
        self.write(move |c| actions::redeem_grant(c, grant_id, &digest, event, now))
            .await
    }

    async fn report_outcome(
        &self,
        action_id: Uuid,
        outcome: &ExecutionOutcome,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let outcome = outcome.clone();
        let event = audit::encode_one(event, now)?;
        self.write(move |c| actions::report_outcome(c, action_id, &outcome, event, now))
            .await
    }

    async fn outcome(&self, action_id: Uuid) -> StoreResult<Option<ExecutionOutcome>> {
        self.read(move |c| actions::outcome(c, action_id)).await
    }

    async fn expire_due(
        &self,
        now: Timestamp,
        event_for: &(dyn Fn(Uuid) -> NewEvent + Send + Sync),
    ) -> StoreResult<Vec<AuditEvent>> {
        // The events are made here (the writer thread cannot borrow `event_for`); the write
        // re-checks each request, so one decided or expired meanwhile is skipped.
        let due = self.read(move |c| actions::due(c, now)).await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let due = due
            .into_iter()
            .map(|id| Ok((id, audit::encode_one(event_for(id), now)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        self.write(move |c| actions::expire(c, due, now)).await
    }

    async fn cancel_action(
        &self,
        id: Uuid,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let event = audit::encode_one(event, now)?;
        self.write(move |c| actions::cancel(c, id, event, now))
            .await
    }

    async fn next_expiry(&self) -> StoreResult<Option<Timestamp>> {
        self.read(actions::next_expiry).await
    }
}
