//! The embedded SQLite store: one file in the data directory, WAL journal, nothing to start.
//!
//! One thread owns the only read-write connection and runs each write operation whole, with
//! group commit (see [`writer`]); reads run on a small pool of read-only connections. Commits
//! are `synchronous = FULL`: an acknowledged request, decision or grant survives a crash of the
//! process or of the machine.

mod audit;
mod codec;
mod connection;
mod cosignatures;
mod directory;
mod identity;
mod outbox;
mod query;
mod readers;
mod requests;
mod writer;

use std::path::Path;
use std::str::FromStr;

use countersign_store::{StoreError, StoreResult};
use rusqlite::Connection;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

use crate::readers::Readers;
use crate::writer::Writer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The database file inside a service's data directory.
pub const DATABASE_FILE: &str = "countersign.db";

/// The SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
}

impl SqliteStore {
    /// Opens (creating both if needed) the [`DATABASE_FILE`] in the data directory `data_dir`.
    pub async fn open_in(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", data_dir.display())))?;
        Self::open(&data_dir.join(DATABASE_FILE)).await
    }

    /// Opens (creating if needed) the database file at `path` and applies migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        migrate(path).await?;
        let writer = Writer::start(connection::open_writer(path)?)?;
        Ok(Self {
            writer,
            readers: Readers::new(path),
        })
    }

    pub(crate) async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(op).await
    }

    pub(crate) async fn read<T, F>(&self, op: F) -> StoreResult<T>
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
