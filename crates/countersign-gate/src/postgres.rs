//! Credentials that exist only for one grant: the gate connects with its minting role, creates
//! a login role with a random password holding only the privileges the parsed statement needs
//! on the tables it touches (`VALID UNTIL` the grant's expiry), opens a connection *as that
//! role* and runs the statement there inside one transaction with a statement timeout — rolled
//! back for a preview, committed for the approved run — then drops the role, whatever happened.
//! Roles left by a crash are swept at start.
//!
//! The statement's session is the grant role's own (not `SET ROLE` under the minting role), so
//! nothing in it — `RESET ROLE`, `set_config('role', …)` — can reach the minting role's
//! privileges. The minting role needs `CREATEROLE` and, on each table it may broker, the
//! privileges it hands out `WITH GRANT OPTION` (or ownership); `pg_hba.conf` must let the grant
//! roles log in with a password from the gate's host. It never runs an agent's statement.

use countersign_core::Timestamp;
use rand_core::RngCore as _;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, Row as _};
use uuid::Uuid;

use crate::config::Secret;
use crate::sql::{Analysis, Classification, write_preview};

/// Most bytes of a query's rows (as JSON text) kept for the caller.
pub const MAX_RESULT_BYTES: usize = 8 * 1024 * 1024;

/// Every per-grant role's name starts with this.
pub const ROLE_PREFIX: &str = "cs_grant_";

/// Why a statement did not run.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The database could not be reached or refused the minting role.
    #[error("database: {0}")]
    Connect(String),
    /// A kind of statement the gate does not broker (DDL, `TRUNCATE`, `GRANT`, …).
    #[error("the gate does not run {0} statements through per-grant roles")]
    Unsupported(String),
    /// The statement failed (a privilege it lacks, a constraint, its timeout); rolled back.
    #[error("the statement failed and was rolled back: {0}")]
    Statement(String),
    /// The approved write changed another number of rows than the preview showed; rolled back.
    #[error(
        "the statement would change {actual} rows where the approvers were shown {expected} \
         (at most {tolerance} more or fewer allowed); it was rolled back"
    )]
    RowCount {
        /// Rows the preview showed.
        expected: u64,
        /// Rows the run changed.
        actual: u64,
        /// The connection's `row_count_tolerance`.
        tolerance: u64,
    },
    /// Tables the statement names do not exist (or the minting role cannot see them).
    #[error("unknown table(s): {0}")]
    UnknownTables(String),
}

/// How many rows an approved write may change: the preview's count, give or take a tolerance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowBound {
    /// Rows the preview showed.
    pub expected: u64,
    /// How many more or fewer are accepted.
    pub tolerance: u64,
}

/// What a statement did.
#[derive(Clone, Debug, PartialEq)]
pub struct Ran {
    /// Rows it changed (writes) or returned (queries).
    pub rows_affected: u64,
    /// A query's rows, or for a previewed write the rows as it would leave them, as JSON
    /// objects, at most the asked number (classified values masked in a preview).
    pub rows: Vec<Value>,
    /// For a previewed `UPDATE`, the same rows as they are now.
    pub before: Vec<Value>,
    /// More rows than that came back.
    pub truncated: bool,
    /// Whether it was committed (the approved run) or rolled back (a preview).
    pub committed: bool,
}

/// How one statement runs.
pub struct Run<'a> {
    /// The connection's name (it scopes the roles' names).
    pub connection: &'a str,
    /// The minting role's DSN.
    pub dsn: &'a Secret,
    /// The grant the role is for.
    pub grant_id: Uuid,
    /// When the role stops being valid (the grant's expiry).
    pub valid_until: Timestamp,
    /// The statement's description (its tables and kinds decide the privileges).
    pub analysis: &'a Analysis,
    /// The statement, exactly as approved.
    pub sql: &'a str,
    /// Longest it may take.
    pub timeout_seconds: u64,
    /// Commit (the approved run) or roll back (a preview).
    pub commit: bool,
    /// Most rows of a query kept.
    pub max_rows: usize,
    /// For an approved write: the rows it may change, else it is rolled back.
    pub expect_rows: Option<RowBound>,
    /// For a query: mask the values of classified columns in its rows with this.
    pub mask: Option<&'a Classification>,
}

/// Refuses, before anything runs, statement kinds the gate does not broker.
pub fn check_kinds(analysis: &Analysis) -> Result<(), PgError> {
    analysis
        .kinds
        .iter()
        .try_for_each(|k| privileges(k).map(drop))
}

/// Refuses statements naming tables that do not exist, with their names.
pub async fn check_tables(dsn: &Secret, analysis: &Analysis) -> Result<(), PgError> {
    let mut conn = connect(dsn).await?;
    let mut missing = Vec::new();
    for table in &analysis.tables {
        let (_, name) = qualified(table);
        let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&name)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| PgError::Statement(e.to_string()))?;
        if found.is_none() {
            missing.push(table.clone());
        }
    }
    drop(conn);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PgError::UnknownTables(missing.join(", ")))
    }
}

/// The start of the names of the roles minted for `connection`: [`ROLE_PREFIX`] and a short
/// hash of the connection's name, so gates brokering other connections on the same cluster
/// never sweep each other's roles.
pub fn role_prefix(connection: &str) -> String {
    let hash = countersign_core::Digest::of(connection.as_bytes()).to_hex();
    format!("{ROLE_PREFIX}{}_", &hash[..8])
}

/// The per-grant role's name.
pub fn role_name(connection: &str, grant_id: Uuid) -> String {
    format!("{}{}", role_prefix(connection), grant_id.simple())
}

/// `"name"`, with quotes inside doubled.
fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// `"schema"."table"` of a `schema.table` from the analysis.
fn qualified(table: &str) -> (String, String) {
    match table.split_once('.') {
        Some((schema, name)) => (
            quoted(schema),
            format!("{}.{}", quoted(schema), quoted(name)),
        ),
        None => (
            quoted("public"),
            format!("{}.{}", quoted("public"), quoted(table)),
        ),
    }
}

/// The table privileges a statement kind needs (reading where it filters or returns).
fn privileges(kind: &str) -> Result<&'static str, PgError> {
    Ok(match kind {
        "select" => "SELECT",
        "insert" => "INSERT, SELECT",
        "update" => "UPDATE, SELECT",
        "delete" => "DELETE, SELECT",
        other => return Err(PgError::Unsupported(other.to_owned())),
    })
}

/// Most open connections of one minting role.
const MINTING_CONNECTIONS: u32 = 4;

/// A connection of the minting role at `dsn`, from a small pool per DSN kept for the process:
/// minting a role, checking tables and dropping the role are a few statements each, and a new
/// authenticated connection for each would cost more than they do. Nothing in a minting
/// session outlives its statements (no role set, no temporary objects).
async fn connect(dsn: &Secret) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, PgError> {
    static POOLS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<countersign_core::Digest, sqlx::PgPool>>,
    > = std::sync::OnceLock::new();
    let key = countersign_core::Digest::of(dsn.expose().as_bytes());
    let pool = {
        let mut pools = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match pools.get(&key) {
            Some(pool) => pool.clone(),
            None => {
                let options: PgConnectOptions = dsn
                    .expose()
                    .parse()
                    .map_err(|e: sqlx::Error| PgError::Connect(e.to_string()))?;
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(MINTING_CONNECTIONS)
                    .acquire_timeout(std::time::Duration::from_secs(5))
                    .idle_timeout(std::time::Duration::from_secs(60))
                    .connect_lazy_with(options);
                pools.insert(key, pool.clone());
                pool
            }
        }
    };
    pool.acquire()
        .await
        .map_err(|e| PgError::Connect(e.to_string()))
}

/// What to do in the grant role's session.
enum Work<'a> {
    /// Run the statement (committed or rolled back as `Run::commit` says).
    Statement,
    /// Run a single write rolled back, keeping the rows it changes, masked.
    Preview(&'a Classification),
}

/// Runs `run.sql` as a role minted for `run.grant_id` and dropped after.
pub async fn run_as_grant_role(run: &Run<'_>) -> Result<Ran, PgError> {
    with_grant_role(run, Work::Statement).await
}

/// What `run.sql` would do, rolled back, as a role minted for it: for a single `INSERT`,
/// `UPDATE` or `DELETE` of one table, the rows it would change (and, for an `UPDATE`, the same
/// rows before), classified values masked; for anything else, the count alone.
pub async fn preview(run: &Run<'_>, classification: &Classification) -> Result<Ran, PgError> {
    with_grant_role(run, Work::Preview(classification)).await
}

async fn with_grant_role(run: &Run<'_>, work: Work<'_>) -> Result<Ran, PgError> {
    let needed: Vec<&str> = run
        .analysis
        .kinds
        .iter()
        .map(|k| privileges(k))
        .collect::<Result<_, _>>()?;
    let mut conn = connect(run.dsn).await?;
    let role = role_name(run.connection, run.grant_id);
    let result = mint_and_run(&mut conn, &role, &needed, run, work).await;
    // Whatever happened, the role goes: its privileges first, then the role.
    let dropped = drop_role(&mut conn, &role).await;
    let ran = result?;
    dropped?;
    Ok(ran)
}

async fn mint_and_run(
    conn: &mut PgConnection,
    role: &str,
    needed: &[&str],
    run: &Run<'_>,
    work: Work<'_>,
) -> Result<Ran, PgError> {
    let statement = |e: sqlx::Error| PgError::Statement(e.to_string());
    let mut secret = [0u8; 24];
    rand_core::OsRng.fill_bytes(&mut secret);
    let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    sqlx::query(&format!(
        "CREATE ROLE {} LOGIN PASSWORD '{password}' VALID UNTIL '{}'",
        quoted(role),
        run.valid_until
    ))
    .execute(&mut *conn)
    .await
    .map_err(statement)?;
    for table in &run.analysis.tables {
        let (schema, name) = qualified(table);
        sqlx::query(&format!(
            "GRANT USAGE ON SCHEMA {schema} TO {}",
            quoted(role)
        ))
        .execute(&mut *conn)
        .await
        .map_err(statement)?;
        for privilege in needed {
            sqlx::query(&format!(
                "GRANT {privilege} ON TABLE {name} TO {}",
                quoted(role)
            ))
            .execute(&mut *conn)
            .await
            .map_err(statement)?;
        }
    }
    let options: PgConnectOptions = run
        .dsn
        .expose()
        .parse()
        .map_err(|e: sqlx::Error| PgError::Connect(e.to_string()))?;
    let mut own = options
        .username(role)
        .password(&password)
        .connect()
        .await
        .map_err(|e| PgError::Connect(format!("as the grant's role: {e}")))?;
    let ran = match (work, write_preview(run.sql)) {
        (Work::Preview(classification), Some(plan)) => {
            preview_in(&mut own, run, classification, &plan).await
        }
        (Work::Preview(_), None) => {
            run_in(
                &mut own,
                &Run {
                    commit: false,
                    ..*run
                },
            )
            .await
        }
        (Work::Statement, _) => run_in(&mut own, run).await,
    };
    let _ = own.close().await;
    ran
}

/// Rows as JSON from `SELECT row_to_json(…)::text AS row …`, masked for `table`.
fn rows_of(
    rows: &[sqlx::postgres::PgRow],
    classification: &Classification,
    table: &str,
) -> Result<Vec<Value>, PgError> {
    rows.iter()
        .map(|row| {
            let text: String = row
                .try_get("row")
                .map_err(|e| PgError::Statement(e.to_string()))?;
            let mut value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            classification.mask(table, &mut value);
            Ok(value)
        })
        .collect()
}

/// A transaction in the grant role's session, its statements stopped after `timeout_seconds`.
async fn begin(
    own: &mut PgConnection,
    timeout_seconds: u64,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, PgError> {
    let statement = |e: sqlx::Error| PgError::Statement(e.to_string());
    let mut tx = own.begin().await.map_err(statement)?;
    sqlx::query(&format!(
        "SET LOCAL statement_timeout = {}",
        timeout_seconds.saturating_mul(1000)
    ))
    .execute(&mut *tx)
    .await
    .map_err(statement)?;
    Ok(tx)
}

// Text the gate builds around an agent's statement (the row wrapper, the preview's CTE) goes
// over the extended protocol, which runs exactly one statement: should the parser and the
// server ever disagree on where a statement ends, the server refuses instead of running a
// second one.
async fn preview_in(
    own: &mut PgConnection,
    run: &Run<'_>,
    classification: &Classification,
    plan: &crate::sql::WritePreview,
) -> Result<Ran, PgError> {
    let statement = |e: sqlx::Error| PgError::Statement(e.to_string());
    let mut tx = begin(own, run.timeout_seconds).await?;
    let before = match &plan.before {
        Some(query) => {
            let rows = sqlx::query(&format!(
                "SELECT row_to_json(q)::text AS row FROM ({query}) AS q LIMIT {}",
                run.max_rows
            ))
            .fetch_all(&mut *tx)
            .await
            .map_err(statement)?;
            rows_of(&rows, classification, &plan.table)?
        }
        None => Vec::new(),
    };
    let changed = sqlx::query(&format!(
        "WITH changed AS ({}) SELECT count(*) OVER () AS n, row_to_json(changed)::text AS row FROM changed LIMIT {}",
        plan.returning, run.max_rows
    ))
    .fetch_all(&mut *tx)
    .await
    .map_err(statement)?;
    let rows_affected = match changed.first() {
        Some(row) => u64::try_from(row.try_get::<i64, _>("n").map_err(statement)?).unwrap_or(0),
        None => 0,
    };
    let rows = rows_of(&changed, classification, &plan.table)?;
    tx.rollback().await.map_err(statement)?;
    Ok(Ran {
        rows_affected,
        truncated: rows_affected > rows.len() as u64,
        rows,
        before,
        committed: false,
    })
}

async fn run_in(own: &mut PgConnection, run: &Run<'_>) -> Result<Ran, PgError> {
    let statement = |e: sqlx::Error| PgError::Statement(e.to_string());
    let mut tx = begin(own, run.timeout_seconds).await?;
    let sql = run.sql.trim().trim_end_matches(';');
    // Each statement goes over the extended protocol, which runs exactly one: several (where
    // the connection allows them) run one by one as the parser split them, so the parser and
    // the server cannot disagree on where one ends.
    let statements = match run.analysis.kinds.len() {
        1 => vec![sql.to_owned()],
        _ => crate::sql::split(sql).map_err(|e| PgError::Statement(e.to_string()))?,
    };
    // One query comes back as rows; anything else (writes, several statements) as a count.
    let query = run.analysis.kinds.len() == 1 && !run.analysis.writes();
    let ran = if !query {
        let mut rows_affected = 0;
        for one in &statements {
            rows_affected += sqlx::query(one)
                .execute(&mut *tx)
                .await
                .map_err(statement)?
                .rows_affected();
        }
        if let Some(bound) = run.expect_rows
            && rows_affected.abs_diff(bound.expected) > bound.tolerance
        {
            tx.rollback().await.map_err(statement)?;
            return Err(PgError::RowCount {
                expected: bound.expected,
                actual: rows_affected,
                tolerance: bound.tolerance,
            });
        }
        Ran {
            rows_affected,
            rows: Vec::new(),
            before: Vec::new(),
            truncated: false,
            committed: run.commit,
        }
    } else {
        let masked = match run.mask {
            Some(classification) => {
                masked_columns(&mut tx, sql, run.analysis, classification).await?
            }
            None => std::collections::BTreeSet::new(),
        };
        // A query's rows as JSON, whatever their types; one more than kept tells truncation.
        let wrapped = format!(
            "SELECT row_to_json(q)::text AS row FROM ({sql}) AS q LIMIT {}",
            run.max_rows + 1
        );
        // Rows are read one by one and kept within a row count and a byte budget: a query that
        // returns huge values cannot fill the gate's memory.
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut truncated = false;
        {
            use futures_util::TryStreamExt as _;
            let mut rows = sqlx::query(&wrapped).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.map_err(statement)? {
                let text: String = row.try_get("row").map_err(statement)?;
                bytes = bytes.saturating_add(text.len());
                if out.len() == run.max_rows || bytes > MAX_RESULT_BYTES {
                    truncated = true;
                    break;
                }
                let mut value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                if let Some(object) = value.as_object_mut() {
                    for name in &masked {
                        if let Some(v) = object.get_mut(name)
                            && !v.is_null()
                        {
                            *v = Value::String(crate::sql::MASKED.into());
                        }
                    }
                } else if !masked.is_empty() {
                    value = Value::String(crate::sql::MASKED.into());
                }
                out.push(value);
            }
        }
        Ran {
            rows_affected: out.len() as u64,
            truncated,
            rows: out,
            before: Vec::new(),
            committed: run.commit,
        }
    };
    if run.commit {
        tx.commit().await.map_err(statement)?;
    } else {
        tx.rollback().await.map_err(statement)?;
    }
    Ok(ran)
}

/// The result columns of query `sql` whose values are classified: a column read straight from
/// a table is classified when that table's column is; a computed one (an expression, an
/// aggregate, an alias of either) is, fail-closed, whenever the statement touches a classified
/// column at all. The server says where each column comes from, so aliases change nothing.
async fn masked_columns(
    conn: &mut PgConnection,
    sql: &str,
    analysis: &Analysis,
    classification: &Classification,
) -> Result<std::collections::BTreeSet<String>, PgError> {
    use sqlx::Column as _;
    let statement = |e: sqlx::Error| PgError::Statement(e.to_string());
    let columns: Vec<(String, Option<sqlx::postgres::types::Oid>, Option<i16>)> = {
        let prepared = sqlx::Executor::prepare(&mut *conn, sql)
            .await
            .map_err(statement)?;
        sqlx::Statement::columns(&prepared)
            .iter()
            .map(|c| {
                (
                    c.name().to_owned(),
                    c.relation_id(),
                    c.relation_attribute_no(),
                )
            })
            .collect()
    };
    let mut masked = std::collections::BTreeSet::new();
    for (column, relation, attribute) in columns {
        let classified = match (relation, attribute) {
            (Some(table), Some(number)) if number > 0 => {
                let name: Option<String> = sqlx::query_scalar(
                    "SELECT n.nspname || '.' || c.relname || '.' || a.attname \
                     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE a.attrelid = $1 AND a.attnum = $2",
                )
                .bind(table)
                .bind(number)
                .fetch_optional(&mut *conn)
                .await
                .map_err(statement)?;
                name.is_none_or(|n| classification.classifies(&n))
            }
            _ => !analysis.tags.is_empty(),
        };
        if classified {
            masked.insert(column);
        }
    }
    Ok(masked)
}

async fn drop_role(conn: &mut PgConnection, role: &str) -> Result<(), PgError> {
    let statement = |e: sqlx::Error| PgError::Statement(format!("dropping {role}: {e}"));
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut *conn)
            .await
            .map_err(statement)?;
    if exists {
        // DROP OWNED (which takes the privileges granted to the role with it) needs the
        // minting role to hold the grant role's privileges; a role it created, it may join.
        sqlx::query(&format!("GRANT {} TO CURRENT_USER", quoted(role)))
            .execute(&mut *conn)
            .await
            .map_err(statement)?;
        sqlx::query(&format!("DROP OWNED BY {}", quoted(role)))
            .execute(&mut *conn)
            .await
            .map_err(statement)?;
        sqlx::query(&format!("DROP ROLE {}", quoted(role)))
            .execute(&mut *conn)
            .await
            .map_err(statement)?;
    }
    Ok(())
}

/// Drops the per-grant roles of `connection` left behind (the gate killed mid-statement); how
/// many there were. A role with a session open is another gate's (a replica's) statement
/// running now, and is left alone.
pub async fn sweep(dsn: &Secret, connection: &str) -> Result<usize, PgError> {
    let mut conn = connect(dsn).await?;
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) \
         AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE usename = rolname)",
    )
    .bind(role_prefix(connection))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| PgError::Statement(e.to_string()))?;
    for role in &left {
        drop_role(&mut conn, role).await?;
    }
    Ok(left.len())
}
