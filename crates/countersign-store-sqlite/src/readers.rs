//! Read-only connections, each used by one blocking task at a time: a read costs one hand-off
//! to tokio's blocking pool however many statements it runs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use countersign_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::connection;

/// At most this many reads run at once, each on its own connection (opened on first use and
/// kept): opening a connection costs far more than waiting for one.
const CONNECTIONS: usize = 8;

/// A small pool of read-only connections to one database file.
#[derive(Clone, Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    permits: Arc<Semaphore>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Readers {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            permits: Arc::new(Semaphore::new(CONNECTIONS)),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `op` on a read-only connection on tokio's blocking pool.
    pub(crate) async fn read<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.clone();
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("the database is closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match pool.take() {
                Some(conn) => conn,
                None => connection::open_read_only(&pool.path)?,
            };
            let result = op(&conn);
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("database read task failed: {e}")))?
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().ok()?.pop()
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Closes the idle connections.
    pub(crate) fn close(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
