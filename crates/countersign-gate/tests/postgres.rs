//! Per-grant roles on a real PostgreSQL (started from Debian's package by the test devices):
//! the statement runs as a role that exists only while it runs and holds only the parsed
//! statement's privileges on the parsed tables; a preview changes nothing; a statement past its
//! timeout is stopped; leftovers are swept.

use std::collections::BTreeMap;

use countersign_core::Timestamp;
use countersign_gate::config::Secret;
use countersign_gate::postgres::{PgError, ROLE_PREFIX, Run, run_as_grant_role, sweep};
use countersign_gate::sql::{Classification, analyse};
use countersign_testdevices::Postgres;
use sqlx::{Connection as _, Executor as _, PgConnection};
use uuid::Uuid;

async fn seeded() -> (String, Secret) {
    let pg = Postgres::shared();
    let url = pg.fresh_database();
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    conn.execute(
        "CREATE TABLE customers (id int PRIMARY KEY, email text, plan text);
         CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total int);
         INSERT INTO customers VALUES (1, 'a@example.com', 'free'), (2, 'b@example.com', 'free'), (3, 'c@example.com', 'pro');
         INSERT INTO orders VALUES (10, 1, 5), (11, 3, 7);",
    )
    .await
    .expect("seed");
    (url.clone(), Secret::new(url))
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect(sql)
}

fn run<'a>(
    dsn: &'a Secret,
    analysis: &'a countersign_gate::sql::Analysis,
    sql: &'a str,
    commit: bool,
) -> Run<'a> {
    Run {
        connection: "crm",
        dsn,
        grant_id: Uuid::now_v7(),
        valid_until: Timestamp::from_system_time(
            std::time::SystemTime::now() + std::time::Duration::from_secs(300),
        ),
        analysis,
        sql,
        timeout_seconds: 2,
        commit,
        max_rows: 100,
        expect_rows: None,
        mask: None,
    }
}

#[tokio::test]
async fn a_statement_runs_as_a_role_that_exists_only_while_it_runs() {
    let (url, dsn) = seeded().await;
    let classification = Classification::new(&BTreeMap::new());
    let roles =
        format!("SELECT count(*) FROM pg_roles WHERE starts_with(rolname, '{ROLE_PREFIX}')");

    // A preview changes nothing, and says how many rows the write would change.
    let sql = "UPDATE customers SET plan = 'pro' WHERE plan = 'free'";
    let analysis = analyse(sql, false, &classification).expect("parses");
    let preview = run_as_grant_role(&run(&dsn, &analysis, sql, false))
        .await
        .expect("preview");
    assert_eq!((preview.rows_affected, preview.committed), (2, false));
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM customers WHERE plan = 'pro'").await,
        1
    );
    assert_eq!(
        scalar(&url, &roles).await,
        0,
        "the role is gone after the preview"
    );

    // The preview shows the rows the write changes, before and after, classified values masked.
    let mut map = BTreeMap::new();
    map.insert("customers.email".to_owned(), vec!["pii".to_owned()]);
    let pii = Classification::new(&map);
    let shown = countersign_gate::postgres::preview(&run(&dsn, &analysis, sql, true), &pii)
        .await
        .expect("preview");
    assert_eq!((shown.rows_affected, shown.committed), (2, false));
    assert_eq!(shown.before.len(), 2);
    assert!(
        shown
            .before
            .iter()
            .all(|r| r["plan"] == "free" && r["email"] == "••• (classified)"),
        "{shown:?}"
    );
    assert!(shown.rows.iter().all(|r| r["plan"] == "pro"), "{shown:?}");
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM customers WHERE plan = 'pro'").await,
        1
    );
    assert_eq!(
        scalar(&url, &roles).await,
        0,
        "the role is gone after the preview"
    );

    // The approved run commits exactly that.
    let done = run_as_grant_role(&run(&dsn, &analysis, sql, true))
        .await
        .expect("run");
    assert_eq!((done.rows_affected, done.committed), (2, true));
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM customers WHERE plan = 'pro'").await,
        3
    );
    assert_eq!(
        scalar(&url, &roles).await,
        0,
        "the role is gone after the run"
    );

    // While it runs, the statement is the grant's role, not the minting role.
    let who = "SELECT current_user AS who FROM customers LIMIT 1";
    let analysis = analyse(who, false, &classification).expect("parses");
    let grant = run(&dsn, &analysis, who, false);
    let expected = countersign_gate::postgres::role_name("crm", grant.grant_id);
    let ran = run_as_grant_role(&grant).await.expect("query");
    assert_eq!(ran.rows[0]["who"], expected.as_str());

    // The role holds only the parsed tables: reaching another one fails under it.
    let customers_only =
        analyse("SELECT id FROM customers", false, &classification).expect("parses");
    let sneaky = "SELECT total FROM orders";
    let refused = run_as_grant_role(&run(&dsn, &customers_only, sneaky, false)).await;
    match refused {
        Err(PgError::Statement(message)) => {
            assert!(message.contains("permission denied"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // A query may not write: its role has no UPDATE.
    let write = "UPDATE customers SET plan = 'x'";
    let as_query = analyse("SELECT id FROM customers", false, &classification).expect("parses");
    assert!(
        run_as_grant_role(&run(&dsn, &as_query, write, true))
            .await
            .is_err()
    );
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM customers WHERE plan = 'x'").await,
        0
    );

    // Nothing in the statement reaches the minting role: its session is the grant role's own.
    let escape_write = "SELECT set_config('role', 'none', false); UPDATE orders SET total = 0";
    let customers_write = analyse(
        "UPDATE customers SET plan = 'p'; SELECT 1",
        true,
        &classification,
    )
    .expect("parses");
    let refused = run_as_grant_role(&run(&dsn, &customers_write, escape_write, true)).await;
    assert!(
        refused.is_err(),
        "resetting the role reached the minting role: {refused:?}"
    );
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM orders WHERE total = 0").await,
        0
    );

    // Past its timeout, a statement is stopped and rolled back.
    let slow = "SELECT pg_sleep(10) FROM customers";
    let analysis = analyse(slow, false, &classification).expect("parses");
    match run_as_grant_role(&run(&dsn, &analysis, slow, false)).await {
        Err(PgError::Statement(message)) => {
            assert!(message.contains("statement timeout"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // DDL is not brokered through per-grant roles.
    let ddl = "DROP TABLE customers";
    let analysis = analyse(ddl, false, &classification).expect("parses");
    assert!(matches!(
        run_as_grant_role(&run(&dsn, &analysis, ddl, true)).await,
        Err(PgError::Unsupported(_))
    ));
    assert_eq!(
        scalar(&url, &roles).await,
        0,
        "no role outlives its statement"
    );

    // A role left by a crash is swept.
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let leftover = countersign_gate::postgres::role_name("crm", Uuid::now_v7());
    let elsewhere = countersign_gate::postgres::role_name("other", Uuid::now_v7());
    conn.execute(
        format!("CREATE ROLE {leftover} NOLOGIN; CREATE ROLE {elsewhere} NOLOGIN").as_str(),
    )
    .await
    .expect("leftover");
    assert_eq!(sweep(&dsn, "crm").await.expect("sweep"), 1);
    // Another connection's roles are that gate's to sweep.
    assert_eq!(sweep(&dsn, "other").await.expect("sweep"), 1);
    assert_eq!(scalar(&url, &roles).await, 0);
}
