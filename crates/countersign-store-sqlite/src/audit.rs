//! The audit log table: appending inside a caller's transaction, and reading.

use async_trait::async_trait;
use countersign_core::{AuditEvent, Digest, EncodedEvent, Timestamp};
use countersign_store::{AuditLog, Cosignature, NewEvent, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::SqliteStore;
use crate::codec::{backend, corrupt};

/// The sequence number the next appended event gets.
pub(crate) fn next_seq(conn: &Connection) -> StoreResult<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_events")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(backend)
}

/// Encodes events for appending at `now`, before they reach the writer thread: the writer
/// then only adds each event's position.
pub(crate) fn encode(events: Vec<NewEvent>, now: Timestamp) -> StoreResult<Vec<EncodedEvent>> {
    events
        .into_iter()
        .map(|e| {
            EncodedEvent::new(now, e.actor, e.event)
                .map_err(|e| StoreError::Backend(format!("audit event has no canonical form: {e}")))
        })
        .collect()
}

/// Encodes one event for appending at `now`.
pub(crate) fn encode_one(event: NewEvent, now: Timestamp) -> StoreResult<EncodedEvent> {
    EncodedEvent::new(now, event.actor, event.event)
        .map_err(|e| StoreError::Backend(format!("audit event has no canonical form: {e}")))
}

/// Appends `events` after the current end of the log, in the caller's transaction: if the
/// transaction does not commit, neither the events nor the change they record exist.
pub(crate) fn append(conn: &Connection, events: Vec<EncodedEvent>) -> StoreResult<Vec<AuditEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let next = next_seq(conn)? as u64;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO audit_events (seq, recorded_at, action_id, kind, event_json, leaf_hash)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .map_err(backend)?;
    let mut appended = Vec::with_capacity(events.len());
    for (i, encoded) in events.into_iter().enumerate() {
        let seq = next + i as u64;
        let bytes = encoded.leaf_bytes(seq);
        let leaf = countersign_core::merkle::leaf_hash(&bytes);
        let text = String::from_utf8(bytes).map_err(|e| StoreError::Backend(e.to_string()))?;
        insert
            .execute(params![
                seq as i64,
                encoded.recorded_at.as_millis(),
                encoded.event.action_id().map(|id| id.to_string()),
                encoded.event.type_name(),
                text,
                leaf.0.to_vec(),
            ])
            .map_err(backend)?;
        appended.push(encoded.at(seq));
    }
    Ok(appended)
}

pub(crate) fn size(conn: &Connection) -> StoreResult<u64> {
    Ok(next_seq(conn)? as u64)
}

fn parse(seq: i64, text: &str) -> StoreResult<AuditEvent> {
    let event: AuditEvent =
        serde_json::from_str(text).map_err(|e| corrupt(&format!("audit event {seq}"), e))?;
    if event.seq != seq as u64 {
        return Err(corrupt(
            &format!("audit event {seq}"),
            "sequence number differs",
        ));
    }
    Ok(event)
}

/// Events from `from` on, as stored: the exact bytes their leaf hashes were computed over.
pub(crate) fn leaves(conn: &Connection, from: u64, limit: u32) -> StoreResult<Vec<(u64, String)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, event_json FROM audit_events WHERE seq >= ? ORDER BY seq LIMIT ?",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![from as i64, i64::from(limit)], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

pub(crate) fn events(conn: &Connection, from: u64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
    leaves(conn, from, limit)?
        .iter()
        .map(|(seq, text)| parse(*seq as i64, text))
        .collect()
}

pub(crate) fn latest_of_kind(conn: &Connection, kind: &str) -> StoreResult<Option<AuditEvent>> {
    let row: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT seq, event_json FROM audit_events WHERE kind = ? ORDER BY seq DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row([kind], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(backend)?;
    row.map(|(seq, text)| parse(seq, &text)).transpose()
}

pub(crate) fn leaf_hashes(conn: &Connection, from: u64, limit: u32) -> StoreResult<Vec<Digest>> {
    let mut stmt = conn
        .prepare_cached("SELECT leaf_hash FROM audit_events WHERE seq >= ? ORDER BY seq LIMIT ?")
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![from as i64, i64::from(limit)], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .map_err(backend)?;
    rows.map(|bytes| {
        let bytes = bytes.map_err(backend)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Digest)
            .map_err(|_| corrupt("leaf hash", "not 32 bytes"))
    })
    .collect()
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_events(
        &self,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let events = encode(events, now)?;
        self.write(move |c| append(c, events)).await
    }

    async fn audit_size(&self) -> StoreResult<u64> {
        self.read(size).await
    }

    async fn audit_events(&self, from: u64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        self.read(move |c| events(c, from, limit)).await
    }

    async fn audit_leaves(&self, from: u64, limit: u32) -> StoreResult<Vec<(u64, String)>> {
        self.read(move |c| leaves(c, from, limit)).await
    }

    async fn latest_event_of_kind(&self, kind: &str) -> StoreResult<Option<AuditEvent>> {
        let kind = kind.to_owned();
        self.read(move |c| latest_of_kind(c, &kind)).await
    }

    async fn leaf_hashes(&self, from: u64, limit: u32) -> StoreResult<Vec<Digest>> {
        self.read(move |c| leaf_hashes(c, from, limit)).await
    }

    async fn save_checkpoint(&self, tree_size: u64, note: &str) -> StoreResult<()> {
        let note = note.to_owned();
        self.write(move |c| {
            crate::query::execute(
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
            crate::query::select_one(
                c,
                "SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1",
                [],
                |row| {
                    Ok((
                        crate::codec::col::<i64>(row, "tree_size")? as u64,
                        crate::codec::col(row, "note")?,
                    ))
                },
            )
        })
        .await
    }

    async fn checkpoint_note(&self, tree_size: u64) -> StoreResult<Option<String>> {
        self.read(move |c| {
            crate::query::select_one(
                c,
                "SELECT note FROM checkpoints WHERE tree_size = ?",
                [tree_size as i64],
                |row| crate::codec::col(row, "note"),
            )
        })
        .await
    }

    async fn save_cosignature(&self, cosignature: &Cosignature) -> StoreResult<()> {
        let cosignature = cosignature.clone();
        self.write(move |c| crate::cosignatures::save(c, &cosignature))
            .await
    }

    async fn cosignatures(&self, tree_size: u64) -> StoreResult<Vec<Cosignature>> {
        self.read(move |c| crate::cosignatures::of_size(c, tree_size))
            .await
    }

    async fn latest_cosignatures(&self) -> StoreResult<Vec<Cosignature>> {
        self.read(crate::cosignatures::latest_per_key).await
    }
}
