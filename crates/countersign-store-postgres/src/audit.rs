//! The audit log table: appending inside a caller's transaction, and reading.

use crate::{PgStore, commit};
use async_trait::async_trait;
use countersign_core::{AuditEvent, Digest, Timestamp};
use countersign_store::{AuditLog, Cosignature};
use countersign_store::{NewEvent, StoreError, StoreResult};
use sqlx::{PgConnection, Row};

use crate::codec::{backend, corrupt};

/// Appends `events` after the current end of the log, in the caller's transaction: if the
/// transaction does not commit, neither the events nor the change they record exist.
pub(crate) async fn append(
    conn: &mut PgConnection,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_events")
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
    append_at(conn, next, events, now).await
}

/// Appends `events` from sequence number `next`, which the caller read inside this same
/// transaction (the single writer makes that the end of the log), in one statement.
pub(crate) async fn append_at(
    conn: &mut PgConnection,
    next: i64,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::with_capacity(events.len());
    let mut appended = Vec::with_capacity(events.len());
    for (i, new) in events.into_iter().enumerate() {
        let event = AuditEvent {
            seq: (next + i as i64) as u64,
            recorded_at: now,
            actor: new.actor,
            event: new.event,
        };
        let bytes = event
            .leaf_bytes()
            .map_err(|e| StoreError::Backend(format!("audit event has no canonical form: {e}")))?;
        let leaf = countersign_core::merkle::leaf_hash(&bytes);
        let kind = serde_json::to_value(&event.event)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let text = String::from_utf8(bytes).map_err(|e| StoreError::Backend(e.to_string()))?;
        rows.push((
            event.seq as i64,
            event.event.action_id().map(|id| id.to_string()),
            kind,
            text,
            leaf,
        ));
        appended.push(event);
    }
    // Other replicas follow the log; the notification is delivered when this commits.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::CHANNEL)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    // Six values a row: 5,000 rows a statement stays under SQLite's 32,766 bound values
    // (and PostgreSQL's 65,535).
    for chunk in rows.chunks(5000) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO audit_events (seq, recorded_at, action_id, kind, event_json, leaf_hash) ",
        );
        insert.push_values(chunk, |mut row, (seq, action_id, kind, text, leaf)| {
            row.push_bind(*seq)
                .push_bind(now.as_millis())
                .push_bind(action_id.clone())
                .push_bind(kind.clone())
                .push_bind(text.clone())
                .push_bind(leaf.0.to_vec());
        });
        insert.build().execute(&mut *conn).await.map_err(backend)?;
    }
    Ok(appended)
}

pub(crate) async fn size(conn: &mut PgConnection) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_events")
        .fetch_one(conn)
        .await
        .map_err(backend)?;
    Ok(n as u64)
}

pub(crate) async fn events(
    conn: &mut PgConnection,
    from: u64,
    limit: u32,
) -> StoreResult<Vec<AuditEvent>> {
    let rows = sqlx::query(
        "SELECT seq, event_json FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2",
    )
    .bind(from as i64)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.get(0);
            let text: String = row.get(1);
            let event: AuditEvent = serde_json::from_str(&text)
                .map_err(|e| corrupt(&format!("audit event {seq}"), e))?;
            if event.seq != seq as u64 {
                return Err(corrupt(
                    &format!("audit event {seq}"),
                    "sequence number differs",
                ));
            }
            Ok(event)
        })
        .collect()
}

pub(crate) async fn latest_of_kind(
    conn: &mut PgConnection,
    kind: &str,
) -> StoreResult<Option<AuditEvent>> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT seq, event_json FROM audit_events WHERE kind = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(kind)
    .fetch_optional(conn)
    .await
    .map_err(backend)?;
    row.map(|(seq, text)| {
        serde_json::from_str::<AuditEvent>(&text)
            .map_err(|e| corrupt(&format!("audit event {seq}"), e))
            .and_then(|e| {
                if e.seq == seq as u64 {
                    Ok(e)
                } else {
                    Err(corrupt(
                        &format!("audit event {seq}"),
                        "sequence number differs",
                    ))
                }
            })
    })
    .transpose()
}

pub(crate) async fn leaf_hashes(
    conn: &mut PgConnection,
    from: u64,
    limit: u32,
) -> StoreResult<Vec<Digest>> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT leaf_hash FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2",
    )
    .bind(from as i64)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    rows.into_iter()
        .map(|bytes| {
            <[u8; 32]>::try_from(bytes.as_slice())
                .map(Digest)
                .map_err(|_| corrupt("leaf hash", "not 32 bytes"))
        })
        .collect()
}

#[async_trait]
impl AuditLog for PgStore {
    async fn append_events(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = append(&mut tx, events, now).await?;
        commit(tx, appended).await
    }

    async fn audit_size(&self) -> StoreResult<u64> {
        size(&mut *self.conn().await?).await
    }

    async fn audit_events(&self, from: u64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        events(&mut *self.conn().await?, from, limit).await
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
        latest_of_kind(&mut *self.conn().await?, kind).await
    }

    async fn leaf_hashes(&self, from: u64, limit: u32) -> StoreResult<Vec<Digest>> {
        leaf_hashes(&mut *self.conn().await?, from, limit).await
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
        crate::cosignatures::save(&mut *self.conn().await?, cosignature).await
    }

    async fn cosignatures(&self, tree_size: u64) -> StoreResult<Vec<Cosignature>> {
        crate::cosignatures::of_size(&mut *self.conn().await?, tree_size).await
    }

    async fn latest_cosignatures(&self) -> StoreResult<Vec<Cosignature>> {
        crate::cosignatures::latest_per_key(&mut *self.conn().await?).await
    }
}
