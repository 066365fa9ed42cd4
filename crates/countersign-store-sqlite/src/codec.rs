//! The SQLite side of the shared column conversions.

use countersign_store::StoreError;
pub(crate) use countersign_store::codec::*;
use rusqlite::Row;
use rusqlite::types::FromSql;

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A column by name, a driver error reported as a backend failure.
pub(crate) fn col<T: FromSql>(row: &Row<'_>, name: &str) -> Result<T, StoreError> {
    row.get(name).map_err(backend)
}
