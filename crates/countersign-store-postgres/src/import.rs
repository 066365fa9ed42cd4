//! Moving an embedded deployment onto PostgreSQL: every table of the SQLite store copied, row
//! for row, into an empty PostgreSQL store in one transaction. The two schemas have the same
//! shape (same tables, same columns; INTEGER→BIGINT, BLOB→BYTEA), so the copy is by column
//! name and the PostgreSQL column type; anything the source has that the destination does not
//! is refused rather than dropped.

use std::path::Path;
use std::str::FromStr;

use countersign_store::{StoreError, StoreResult};
use sqlx::postgres::PgArguments;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Arguments as _, Connection as _, Row};

use crate::PgStore;
use crate::codec::backend;

/// Tables in an order that satisfies the foreign keys.
const TABLES: [&str; 19] = [
    "audit_events",
    "checkpoints",
    "api_tokens",
    "approvers",
    "approver_keys",
    "enrolment_codes",
    "challenges",
    "sessions",
    "actions",
    "decisions",
    "grants",
    "outcomes",
    "cosignatures",
    "directory_users",
    "directory_groups",
    "directory_members",
    "outbox",
    "outbox_position",
    "reviews",
];

/// What was copied.
#[derive(Clone, Debug, Default)]
pub struct Imported {
    /// Rows per table, in copy order.
    pub tables: Vec<(String, u64)>,
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bytes,
}

fn kind(data_type: &str) -> StoreResult<Kind> {
    match data_type {
        "bigint" | "integer" | "smallint" => Ok(Kind::Int),
        "text" | "character varying" => Ok(Kind::Text),
        "bytea" => Ok(Kind::Bytes),
        other => Err(StoreError::Backend(format!(
            "unexpected PostgreSQL column type {other}"
        ))),
    }
}

fn bind(args: &mut PgArguments, row: &SqliteRow, i: usize, kind: Kind) -> StoreResult<()> {
    let decode = |e: sqlx::Error| StoreError::Backend(format!("reading the SQLite store: {e}"));
    let added = match kind {
        Kind::Int => args.add(row.try_get::<Option<i64>, _>(i).map_err(decode)?),
        Kind::Text => args.add(row.try_get::<Option<String>, _>(i).map_err(decode)?),
        Kind::Bytes => args.add(row.try_get::<Option<Vec<u8>>, _>(i).map_err(decode)?),
    };
    added.map_err(|e| StoreError::Backend(format!("binding a value: {e}")))
}

impl PgStore {
    /// Copies the SQLite store at `sqlite` (already migrated to the current schema) into this
    /// store, which must be empty. All or nothing: one transaction.
    pub async fn import_sqlite(&self, sqlite: &Path) -> StoreResult<Imported> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", sqlite.display()))
            .map_err(backend)?
            .read_only(true);
        let mut source = sqlx::SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", sqlite.display())))?;
        let source_tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
        )
        .fetch_all(&mut source)
        .await
        .map_err(backend)?;
        if let Some(unknown) = source_tables.iter().find(|t| !TABLES.contains(&t.as_str())) {
            return Err(StoreError::Backend(format!(
                "the SQLite store has a table this version does not know ({unknown}): upgrade countersign first"
            )));
        }
        let mut tx = self.begin().await?;
        for table in ["audit_events", "approvers", "actions"] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
            if n > 0 {
                return Err(StoreError::Backend(format!(
                    "the PostgreSQL store is not empty ({table} has {n} rows): migrate into a new database"
                )));
            }
        }
        let mut imported = Imported::default();
        for table in TABLES {
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            let kinds = columns
                .iter()
                .map(|(_, t)| kind(t))
                .collect::<StoreResult<Vec<_>>>()?;
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            let list = names.join(", ");
            let rows: Vec<SqliteRow> = sqlx::query(&format!("SELECT {list} FROM {table}"))
                .fetch_all(&mut source)
                .await
                .map_err(|e| StoreError::Backend(format!("reading {table}: {e}")))?;
            // PostgreSQL takes at most 65,535 values a statement.
            let per = (65_535 / names.len().max(1)).max(1);
            for chunk in rows.chunks(per) {
                let mut args = PgArguments::default();
                let mut values = Vec::with_capacity(chunk.len());
                let mut n = 1;
                for row in chunk {
                    let mut placeholders = Vec::with_capacity(names.len());
                    for (i, kind) in kinds.iter().enumerate() {
                        bind(&mut args, row, i, *kind)?;
                        placeholders.push(format!("${n}"));
                        n += 1;
                    }
                    values.push(format!("({})", placeholders.join(", ")));
                }
                let sql = format!("INSERT INTO {table} ({list}) VALUES {}", values.join(", "));
                sqlx::query_with(&sql, args)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::Backend(format!("writing {table}: {e}")))?;
            }
            imported.tables.push((table.to_owned(), rows.len() as u64));
        }
        // The one generated key: continue after the copied rows.
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('decisions', 'rowid_'), \
             COALESCE((SELECT MAX(rowid_) FROM decisions), 0) + 1, false)",
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(imported)
    }
}
