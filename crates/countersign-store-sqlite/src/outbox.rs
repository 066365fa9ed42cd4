//! The outbox of notices for outbound channels.

use async_trait::async_trait;
use countersign_core::Timestamp;
use countersign_store::{
    Conflict, NewOutboxItem, Outbox, OutboxItem, OutboxSettlement, OutboxState, StoreError,
    StoreResult,
};
use rusqlite::{Connection, Row, params};

use crate::SqliteStore;
use crate::codec::{col, corrupt, ts};
use crate::query::{execute, select, select_one};

const COLUMNS: &str =
    "id, channel, message_id, payload, created_at, attempts, next_attempt_at, state, last_error";

fn decode(row: &Row<'_>) -> StoreResult<OutboxItem> {
    let state: String = col(row, "state")?;
    let attempts: i64 = col(row, "attempts")?;
    Ok(OutboxItem {
        id: col(row, "id")?,
        channel: col(row, "channel")?,
        message_id: col(row, "message_id")?,
        payload: col(row, "payload")?,
        created_at: ts(col(row, "created_at")?)?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("outbox attempts", e))?,
        next_attempt_at: ts(col(row, "next_attempt_at")?)?,
        state: OutboxState::parse(&state).ok_or_else(|| corrupt("outbox state", &state))?,
        last_error: col(row, "last_error")?,
    })
}

fn position(conn: &Connection) -> StoreResult<Option<u64>> {
    select_one(
        conn,
        "SELECT next_seq FROM outbox_position WHERE id = 1",
        [],
        |row| Ok(col::<i64>(row, "next_seq")? as u64),
    )
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn outbox_position(&self) -> StoreResult<Option<u64>> {
        self.read(position).await
    }

    async fn enqueue_outbox(
        &self,
        expected: Option<u64>,
        to: u64,
        items: Vec<NewOutboxItem>,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.write(move |conn| {
            if position(conn)? != expected {
                return Err(StoreError::Conflict(Conflict::Stale));
            }
            execute(
                conn,
                "INSERT INTO outbox_position (id, next_seq) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET next_seq = excluded.next_seq",
                [to as i64],
            )?;
            for item in items {
                execute(
                    conn,
                    "INSERT INTO outbox (channel, message_id, payload, created_at, next_attempt_at, state)
                     VALUES (?1, ?2, ?3, ?4, ?4, 'pending') ON CONFLICT DO NOTHING",
                    params![item.channel, item.message_id, item.payload, now.as_millis()],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_outbox(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<OutboxItem>> {
        self.write(move |conn| {
            select(
                conn,
                &format!(
                    "UPDATE outbox SET leased_until = ?2
                     WHERE id IN (SELECT id FROM outbox
                                  WHERE state = 'pending' AND next_attempt_at <= ?1
                                    AND (leased_until IS NULL OR leased_until <= ?1)
                                  ORDER BY next_attempt_at, id LIMIT ?3)
                     RETURNING {COLUMNS}"
                ),
                params![now.as_millis(), lease_until.as_millis(), limit],
                decode,
            )
        })
        .await
    }

    async fn settle_outbox(&self, id: i64, settlement: OutboxSettlement) -> StoreResult<()> {
        self.write(move |conn| {
            let (state, at, error) = settlement.into_parts();
            let changed = execute(
                conn,
                "UPDATE outbox SET state = ?2, next_attempt_at = ?3, last_error = ?4,
                        attempts = attempts + 1, leased_until = NULL
                 WHERE id = ?1 AND state = 'pending'",
                params![id, state.as_str(), at.as_millis(), error],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound("pending outbox item"));
            }
            Ok(())
        })
        .await
    }

    async fn outbox_items(&self, state: OutboxState, limit: u32) -> StoreResult<Vec<OutboxItem>> {
        self.read(move |conn| {
            select(
                conn,
                &format!("SELECT {COLUMNS} FROM outbox WHERE state = ?1 ORDER BY id DESC LIMIT ?2"),
                params![state.as_str(), limit],
                decode,
            )
        })
        .await
    }

    async fn retry_outbox(&self, id: i64, now: Timestamp) -> StoreResult<()> {
        self.write(move |conn| {
            let changed = execute(
                conn,
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?2, attempts = 0,
                        leased_until = NULL
                 WHERE id = ?1 AND state = 'dead'",
                params![id, now.as_millis()],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound("dead outbox item"));
            }
            Ok(())
        })
        .await
    }

    async fn prune_outbox(&self, before: Timestamp) -> StoreResult<u64> {
        self.write(move |conn| {
            let n = execute(
                conn,
                "DELETE FROM outbox WHERE state = 'delivered' AND next_attempt_at < ?1",
                [before.as_millis()],
            )?;
            Ok(n as u64)
        })
        .await
    }
}
