//! The store conformance suite against SQLite, one fresh database file per test.

use countersign_store_sqlite::SqliteStore;
use tempfile::TempDir;

async fn fresh() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("countersign.db"))
        .await
        .expect("open");
    (store, dir)
}

countersign_store::conformance_tests!(fresh());
