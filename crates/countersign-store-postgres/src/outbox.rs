//! The outbox of notices for outbound channels. Claims skip rows another replica holds, so
//! replicas share the sending; the position moves under the write lock.

use async_trait::async_trait;
use countersign_core::Timestamp;
use countersign_store::{
    Conflict, NewOutboxItem, Outbox, OutboxItem, OutboxSettlement, OutboxState, StoreError,
    StoreResult,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::codec::{backend, corrupt, ts};
use crate::{PgStore, commit};

const COLUMNS: &str =
    "id, channel, message_id, payload, created_at, attempts, next_attempt_at, state, last_error";

fn decode(row: &PgRow) -> StoreResult<OutboxItem> {
    let state: String = row.try_get("state").map_err(backend)?;
    let attempts: i64 = row.try_get("attempts").map_err(backend)?;
    Ok(OutboxItem {
        id: row.try_get("id").map_err(backend)?,
        channel: row.try_get("channel").map_err(backend)?,
        message_id: row.try_get("message_id").map_err(backend)?,
        payload: row.try_get("payload").map_err(backend)?,
        created_at: ts(row.try_get("created_at").map_err(backend)?)?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("outbox attempts", e))?,
        next_attempt_at: ts(row.try_get("next_attempt_at").map_err(backend)?)?,
        state: OutboxState::parse(&state).ok_or_else(|| corrupt("outbox state", &state))?,
        last_error: row.try_get("last_error").map_err(backend)?,
    })
}

async fn position(conn: &mut PgConnection) -> StoreResult<Option<u64>> {
    let next: Option<i64> = sqlx::query_scalar("SELECT next_seq FROM outbox_position WHERE id = 1")
        .fetch_optional(conn)
        .await
        .map_err(backend)?;
    Ok(next.map(|n| n as u64))
}

#[async_trait]
impl Outbox for PgStore {
    async fn outbox_position(&self) -> StoreResult<Option<u64>> {
        position(&mut *self.conn().await?).await
    }

    async fn enqueue_outbox(
        &self,
        expected: Option<u64>,
        to: u64,
        items: Vec<NewOutboxItem>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if position(&mut tx).await? != expected {
            return Err(StoreError::Conflict(Conflict::Stale));
        }
        sqlx::query(
            "INSERT INTO outbox_position (id, next_seq) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET next_seq = excluded.next_seq",
        )
        .bind(to as i64)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        for item in items {
            sqlx::query(
                "INSERT INTO outbox (id, channel, message_id, payload, created_at, next_attempt_at, state)
                 SELECT COALESCE(MAX(id), 0) + 1, $1, $2, $3, $4, $4, 'pending' FROM outbox
                 ON CONFLICT DO NOTHING",
            )
            .bind(&item.channel)
            .bind(&item.message_id)
            .bind(&item.payload)
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        commit(tx, ()).await
    }

    async fn claim_outbox(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<OutboxItem>> {
        let rows = sqlx::query(&format!(
            "UPDATE outbox SET leased_until = $2
             WHERE id IN (SELECT id FROM outbox
                          WHERE state = 'pending' AND next_attempt_at <= $1
                            AND (leased_until IS NULL OR leased_until <= $1)
                          ORDER BY next_attempt_at, id LIMIT $3
                          FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        ))
        .bind(now.as_millis())
        .bind(lease_until.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter().map(decode).collect()
    }

    async fn settle_outbox(&self, id: i64, settlement: OutboxSettlement) -> StoreResult<()> {
        let (state, at, error) = settlement.into_parts();
        let changed = sqlx::query(
            "UPDATE outbox SET state = $2, next_attempt_at = $3, last_error = $4,
                    attempts = attempts + 1, leased_until = NULL
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(at.as_millis())
        .bind(error)
        .execute(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound("pending outbox item"));
        }
        Ok(())
    }

    async fn outbox_items(&self, state: OutboxState, limit: u32) -> StoreResult<Vec<OutboxItem>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE state = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(state.as_str())
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter().map(decode).collect()
    }

    async fn retry_outbox(&self, id: i64, now: Timestamp) -> StoreResult<()> {
        let changed = sqlx::query(
            "UPDATE outbox SET state = 'pending', next_attempt_at = $2, attempts = 0,
                    leased_until = NULL
             WHERE id = $1 AND state = 'dead'",
        )
        .bind(id)
        .bind(now.as_millis())
        .execute(&mut *self.conn().await?)
        .await
        .map_err(backend)?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound("dead outbox item"));
        }
        Ok(())
    }

    async fn prune_outbox(&self, before: Timestamp) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM outbox WHERE state = 'delivered' AND next_attempt_at < $1")
                .bind(before.as_millis())
                .execute(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
        Ok(done.rows_affected())
    }
}
