//! The store conformance suite against PostgreSQL: one server for this test binary (Debian's
//! package, in a temporary directory), one fresh database per test.

use countersign_store_postgres::PgStore;
use countersign_testdevices::Postgres;

async fn fresh() -> (PgStore, ()) {
    let url = Postgres::shared().fresh_database();
    let store = PgStore::connect(&url).await.expect("connect");
    (store, ())
}

countersign_store::conformance_tests!(fresh());
