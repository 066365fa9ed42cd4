//! Witness cosignatures of checkpoints.

use countersign_store::{Cosignature, StoreResult};
use sqlx::{Row, SqliteConnection};

use crate::codec::{backend, key_id, signature, ts};

const COLUMNS: &str = "c.tree_size, c.approver_id, c.key_id, c.signature, c.received_at";

pub(crate) async fn save(conn: &mut SqliteConnection, c: &Cosignature) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO cosignatures (key_id, tree_size, approver_id, signature, received_at)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(c.key_id.to_string())
    .bind(c.tree_size as i64)
    .bind(&c.approver_id)
    .bind(c.signature.to_der())
    .bind(c.received_at.as_millis())
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn of_size(
    conn: &mut SqliteConnection,
    tree_size: u64,
) -> StoreResult<Vec<Cosignature>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM cosignatures c WHERE c.tree_size = ? ORDER BY c.received_at, c.key_id"
    ))
    .bind(tree_size as i64)
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn latest_per_key(conn: &mut SqliteConnection) -> StoreResult<Vec<Cosignature>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM cosignatures c
         JOIN (SELECT key_id, MAX(tree_size) AS size FROM cosignatures GROUP BY key_id) l
           ON c.key_id = l.key_id AND c.tree_size = l.size
         ORDER BY c.approver_id, c.key_id"
    ))
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    rows.iter().map(decode).collect()
}

fn decode(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Cosignature> {
    let tree_size: i64 = row.try_get(0).map_err(backend)?;
    let key: String = row.try_get(2).map_err(backend)?;
    let der: Vec<u8> = row.try_get(3).map_err(backend)?;
    Ok(Cosignature {
        tree_size: tree_size as u64,
        approver_id: row.try_get(1).map_err(backend)?,
        key_id: key_id(&key)?,
        signature: signature(&der)?,
        received_at: ts(row.try_get(4).map_err(backend)?)?,
    })
}
