//! What credentials that exist only for one grant cost: the same one-row query of a real
//! PostgreSQL (started by the test devices) made directly with a PostgreSQL client on an open
//! connection (baseline), and through a per-grant role — mint the login role, grant, connect as
//! it, run, drop — one after the other in the same run. And a write's preview (rolled back, rows
//! returned) beside its plain run under the same scheme.
//!
//! `cargo bench -p countersign-gate --bench postgres` (PG_BENCH_RUNS, default 200)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use countersign_core::Timestamp;
use countersign_gate::config::Secret;
use countersign_gate::postgres::{Run, preview, run_as_grant_role};
use countersign_gate::sql::{Classification, analyse};
use countersign_testdevices::Postgres;
use sqlx::{Connection as _, Executor as _, PgConnection};

fn runs() -> usize {
    std::env::var("PG_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    println!(
        "{name:<58} n={:<5} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        samples.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let url = Postgres::shared().fresh_database();
        let mut direct = PgConnection::connect(&url).await.expect("connect");
        direct
            .execute(
                "CREATE TABLE customers (id int PRIMARY KEY, email text, plan text);
                 INSERT INTO customers SELECT i, 'c' || i || '@example.com', 'free' FROM generate_series(1, 1000) i;",
            )
            .await
            .expect("seed");
        let dsn = Secret::new(url.clone());
        let classification = Classification::new(&BTreeMap::new());
        let n = runs();
        let grant = |analysis, sql, commit| Run {
            connection: "bench",
            dsn: &dsn,
            grant_id: uuid::Uuid::now_v7(),
            valid_until: Timestamp::from_system_time(
                std::time::SystemTime::now() + Duration::from_secs(300),
            ),
            analysis,
            sql,
            timeout_seconds: 10,
            commit,
            max_rows: 20,
            expect_rows: None,
            mask: None,
        };

        let read = "SELECT id, email FROM customers WHERE id = 42";
        let analysis = analyse(read, false, &classification).expect("parses");
        let mut baseline = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            sqlx::raw_sql(read).fetch_all(&mut direct).await.expect("direct");
            baseline.push(started.elapsed());
        }
        let mut brokered = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            run_as_grant_role(&grant(&analysis, read, false))
                .await
                .expect("brokered");
            brokered.push(started.elapsed());
        }
        report("read, direct on an open connection (baseline)", baseline);
        report("read, through a per-grant role (mint, connect, run, drop)", brokered);

        let write = "UPDATE customers SET plan = 'pro' WHERE id BETWEEN 100 AND 149";
        let analysis = analyse(write, false, &classification).expect("parses");
        let mut previews = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            let shown = preview(&grant(&analysis, write, false), &classification)
                .await
                .expect("preview");
            assert_eq!(shown.rows_affected, 50);
            previews.push(started.elapsed());
        }
        let mut plain = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            run_as_grant_role(&grant(&analysis, write, false))
                .await
                .expect("run");
            plain.push(started.elapsed());
        }
        report("write of 50 rows, preview (rows before/after, rolled back)", previews);
        report("write of 50 rows, run rolled back (count only)", plain);
    });
}
