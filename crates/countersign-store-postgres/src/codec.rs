//! The PostgreSQL side of the shared column conversions.

use countersign_store::StoreError;
pub(crate) use countersign_store::codec::*;

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}
