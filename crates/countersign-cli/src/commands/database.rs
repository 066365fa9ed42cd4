//! Which store a command works on: the embedded SQLite file in the data directory, or the
//! PostgreSQL database several replicas share (`--database-url postgres://…`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use countersign_store::Store;
use countersign_store_sqlite::DATABASE_FILE;

/// Opens the store named by `database_url`, or the SQLite file in `data_dir` without one.
pub async fn open(data_dir: &Path, database_url: Option<&str>) -> anyhow::Result<Arc<dyn Store>> {
    match database_url {
        None => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let store = countersign_store_sqlite::SqliteStore::open(&data_dir.join(DATABASE_FILE))
                .await
                .with_context(|| format!("opening the store in {}", data_dir.display()))?;
            Ok(Arc::new(store))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = countersign_store_postgres::PgStore::connect(url)
                .await
                .with_context(|| format!("opening PostgreSQL at {}", redact(url)))?;
            Ok(Arc::new(store))
        }
        Some(url) => bail!(
            "unsupported database URL {}: use postgres://… or leave it out for the embedded SQLite store",
            redact(url)
        ),
    }
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_appear_in_messages() {
        assert_eq!(
            redact("postgres://cs:s3cret@db.internal:5432/countersign"),
            "postgres://cs:***@db.internal:5432/countersign"
        );
        assert_eq!(
            redact("postgres://db/countersign"),
            "postgres://db/countersign"
        );
    }
}
