//! Opening connections with the settings every connection to the file must share.

use std::path::Path;
use std::time::Duration;

use countersign_store::StoreResult;
use rusqlite::{Connection, OpenFlags};

use crate::codec::backend;

/// How long a statement waits for another process's lock (e.g. `countersign admin` writing
/// while the service runs) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The read-write connection the writer thread owns. Commits are `synchronous = FULL`: an
/// acknowledged write survives a crash of the process or of the machine.
pub(crate) fn open_writer(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )
    .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A read-only connection.
pub(crate) fn open_read_only(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}
