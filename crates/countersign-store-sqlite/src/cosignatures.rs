//! Witness cosignatures of checkpoints.

use countersign_store::{Cosignature, StoreResult};
use rusqlite::{Connection, Row, params};

use crate::codec::{backend, key_id, signature, ts};

const COLUMNS: &str = "c.tree_size, c.approver_id, c.key_id, c.signature, c.received_at";

pub(crate) fn save(conn: &Connection, c: &Cosignature) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO cosignatures (key_id, tree_size, approver_id, signature, received_at)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            c.key_id.to_string(),
            c.tree_size as i64,
            c.approver_id,
            c.signature.to_der(),
            c.received_at.as_millis(),
        ])
    })
    .map_err(backend)?;
    Ok(())
}

pub(crate) fn of_size(conn: &Connection, tree_size: u64) -> StoreResult<Vec<Cosignature>> {
    select(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM cosignatures c WHERE c.tree_size = ?1 ORDER BY c.received_at, c.key_id"
        ),
        Some(tree_size as i64),
    )
}

pub(crate) fn latest_per_key(conn: &Connection) -> StoreResult<Vec<Cosignature>> {
    select(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM cosignatures c
             JOIN (SELECT key_id, MAX(tree_size) AS size FROM cosignatures GROUP BY key_id) l
               ON c.key_id = l.key_id AND c.tree_size = l.size
             ORDER BY c.approver_id, c.key_id"
        ),
        None,
    )
}

fn select(conn: &Connection, sql: &str, size: Option<i64>) -> StoreResult<Vec<Cosignature>> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let raw = match size {
        Some(size) => stmt.query_map([size], columns),
        None => stmt.query_map([], columns),
    }
    .map_err(backend)?
    .collect::<Result<Vec<_>, _>>()
    .map_err(backend)?;
    raw.into_iter()
        .map(|(size, approver_id, key, der, at)| {
            Ok(Cosignature {
                tree_size: size as u64,
                approver_id,
                key_id: key_id(&key)?,
                signature: signature(&der)?,
                received_at: ts(at)?,
            })
        })
        .collect()
}

type Columns = (i64, String, String, Vec<u8>, i64);

fn columns(row: &Row<'_>) -> rusqlite::Result<Columns> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}
