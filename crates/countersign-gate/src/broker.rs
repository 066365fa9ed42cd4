//! A call of a brokered connection, from the agent's arguments to the action the gate writes and
//! back to the result: for a database, the statement is parsed (kinds, tables, columns, the
//! classification's tags), a write is previewed in a rolled-back transaction (its row count and a
//! sample of rows, classified values masked, as the request's diff), and the approved statement
//! runs as a role minted for its grant, rolled back when it changes another number of rows than
//! was shown; for a command, the argument template is filled and the program run with its
//! secrets. The agent gives the statement or the arguments, never the labels.

use std::time::Duration;

use countersign_core::canonical::StrictObject;
use countersign_core::{ActionRequest, ActionType, Diff, Tag, Timestamp, ValidationError};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::approval::{Approved, Ran};
use crate::connection::{Connection, ConnectionKind};
use crate::journal::Effect;
use crate::postgres::{self, PgError, RowBound};
use crate::sql::{self, Analysis, SqlError};

/// Rows of a write shown to approvers (before and after).
const PREVIEW_ROWS: usize = 5;
/// Most rows of a query returned to the agent.
const MAX_RESULT_ROWS: usize = 1000;

/// Why a call of a connection was refused before anything was asked.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The arguments are not what the connection takes.
    #[error("{0}")]
    Arguments(String),
    /// The SQL is refused (does not parse, several statements, too long).
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The database refused or failed (unknown tables, unsupported kinds, the preview failed).
    #[error(transparent)]
    Database(#[from] PgError),
    /// A command's arguments do not fill its template.
    #[error(transparent)]
    Command(#[from] crate::command::CommandError),
    /// The action breaks a rule of the service (size budgets, control characters, …).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// A call ready to be asked for: the action, and how to run it once approved.
#[derive(Debug)]
pub struct Prepared {
    /// The action the gate writes.
    pub action: ActionRequest,
    plan: Plan,
}

#[derive(Debug)]
enum Plan {
    Sql {
        sql: String,
        analysis: Analysis,
        /// The preview's row count, for a write.
        previewed: Option<u64>,
        reveal: bool,
    },
    Command {
        argv: Vec<String>,
    },
}

/// What a run gives the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The result as JSON (rows and counts; a program's streams and exit status).
    pub value: Value,
    /// Whether it failed (a program's non-zero exit).
    pub is_error: bool,
}

/// The JSON Schema of a connection's tool input.
pub fn input_schema(connection: &Connection) -> Map<String, Value> {
    let justification = json!({
        "type": "string",
        "description": "Why this is needed, shown to the approvers."
    });
    let schema = match &connection.kind {
        ConnectionKind::Postgres { .. } => json!({
            "type": "object",
            "properties": {
                "sql": {"type": "string", "description": "One PostgreSQL statement."},
                "reveal_classified": {
                    "type": "boolean",
                    "description": "Ask for classified columns unmasked in the result (the approvers see that you asked)."
                },
                "justification": justification,
            },
            "required": ["sql"],
            "additionalProperties": false,
        }),
        ConnectionKind::Command { .. } => {
            let names = connection.kind.argument_names();
            let mut properties = Map::new();
            for name in &names {
                properties.insert(name.clone(), json!({"type": "string"}));
            }
            properties.insert("justification".into(), justification);
            json!({
                "type": "object",
                "properties": properties,
                "required": names,
                "additionalProperties": false,
            })
        }
    };
    match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The tool's description for the agent.
pub fn description(connection: &Connection) -> String {
    match &connection.kind {
        ConnectionKind::Postgres { .. } => format!(
            "Run SQL on the {} database ({}). The gate parses it, shows writes' affected rows to \
             approvers first, and runs it with credentials that exist only for this call.",
            connection.name, connection.environment
        ),
        ConnectionKind::Command { program, .. } => format!(
            "Run {} ({}) with the given arguments, once approved.",
            program.display(),
            connection.environment
        ),
    }
}

/// Splits the call's arguments into the justification and the rest, refusing names the
/// connection does not take.
fn split_arguments(
    arguments: &Map<String, Value>,
    allowed: &[String],
) -> Result<(Map<String, Value>, Option<String>), BrokerError> {
    let mut parameters = Map::new();
    let mut justification = None;
    for (name, value) in arguments {
        if name == "justification" {
            match value {
                Value::String(s) => justification = Some(s.clone()),
                _ => return Err(BrokerError::Arguments("justification must be text".into())),
            }
        } else if allowed.contains(name) {
            parameters.insert(name.clone(), value.clone());
        } else {
            return Err(BrokerError::Arguments(format!(
                "unknown argument {name:?}; this connection takes {}",
                allowed.join(", ")
            )));
        }
    }
    Ok((parameters, justification))
}

fn merged_tags(connection: &Connection, more: impl IntoIterator<Item = String>) -> Vec<Tag> {
    let mut tags = connection.tags.clone();
    for t in more {
        if let Ok(tag) = Tag::new(t)
            && !tags.contains(&tag)
        {
            tags.push(tag);
        }
    }
    tags
}

fn justification_or(given: Option<String>, connection: &Connection) -> String {
    match given.map(|j| j.trim().to_owned()) {
        Some(j) if !j.is_empty() => j,
        _ => format!(
            "The agent ran this through the gate's {} connection (it gave no reason).",
            connection.name
        ),
    }
}

/// Turns a call of `connection` into the action to ask for (previewing a write).
pub async fn prepare(
    connection: &Connection,
    arguments: &Map<String, Value>,
) -> Result<Prepared, BrokerError> {
    match &connection.kind {
        ConnectionKind::Postgres { .. } => prepare_sql(connection, arguments).await,
        ConnectionKind::Command { .. } => prepare_command(connection, arguments),
    }
}

async fn prepare_sql(
    connection: &Connection,
    arguments: &Map<String, Value>,
) -> Result<Prepared, BrokerError> {
    let ConnectionKind::Postgres {
        dsn,
        classification,
        allow_multiple_statements,
        statement_timeout_seconds,
        ..
    } = &connection.kind
    else {
        return Err(BrokerError::Arguments("not a database connection".into()));
    };
    let allowed = ["sql".to_owned(), "reveal_classified".to_owned()];
    let (mut parameters, justification) = split_arguments(arguments, &allowed)?;
    let Some(Value::String(sql)) = parameters.get("sql").cloned() else {
        return Err(BrokerError::Arguments(
            "sql: give the statement as text".into(),
        ));
    };
    let reveal = match parameters.get("reveal_classified") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(BrokerError::Arguments(
                "reveal_classified must be true or false".into(),
            ));
        }
    };
    // What approvers see says plainly whether the result comes back unmasked.
    parameters.insert("reveal_classified".into(), Value::Bool(reveal));
    let analysis = sql::analyse(&sql, *allow_multiple_statements, classification)?;
    postgres::check_kinds(&analysis)?;
    postgres::check_tables(dsn, &analysis).await?;
    let (previewed, diff) = if analysis.writes() {
        let now = std::time::SystemTime::now();
        let run = postgres::Run {
            connection: &connection.name,
            dsn,
            grant_id: Uuid::now_v7(),
            valid_until: Timestamp::from_system_time(
                now + Duration::from_secs(statement_timeout_seconds.saturating_add(60)),
            ),
            analysis: &analysis,
            sql: &sql,
            timeout_seconds: *statement_timeout_seconds,
            commit: false,
            max_rows: PREVIEW_ROWS,
            expect_rows: None,
            mask: None,
        };
        let ran = postgres::preview(&run, classification).await?;
        (Some(ran.rows_affected), Some(preview_diff(&analysis, &ran)))
    } else {
        (None, None)
    };
    let kind = match analysis.kinds.as_slice() {
        [one] => one.clone(),
        _ => "batch".to_owned(),
    };
    let tables: Vec<&str> = analysis.tables.iter().map(String::as_str).collect();
    let mut described = json!({
        "kinds": analysis.kinds,
        "tables": analysis.tables,
        "columns": analysis.columns,
    });
    if let Some(rows) = previewed {
        described["preview_rows_affected"] = json!(rows);
    }
    let mut context = Map::new();
    context.insert("gate".into(), json!({"connection": connection.name}));
    context.insert("sql".into(), described);
    let action = ActionRequest {
        action_type: ActionType::new(format!("sql.{kind}"))?,
        resource: format!("postgres://{}/{}", connection.name, tables.join(",")),
        environment: connection.environment.clone(),
        parameters: StrictObject(parameters),
        justification: justification_or(justification, connection),
        context: StrictObject(context),
        diff,
        tags: merged_tags(connection, analysis.tags.iter().cloned()),
        on_behalf_of: None,
        break_glass: false,
    };
    action.validate()?;
    Ok(Prepared {
        action,
        plan: Plan::Sql {
            sql,
            analysis,
            previewed,
            reveal,
        },
    })
}

/// The preview as a diff: a header with the row count, then a sample of rows before and
/// after, one JSON object per line.
fn preview_diff(analysis: &Analysis, ran: &postgres::Ran) -> Diff {
    let kind = analysis
        .kinds
        .first()
        .map(String::as_str)
        .unwrap_or("write");
    let shown = ran.rows.len().max(ran.before.len());
    let tables = analysis
        .tables
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let plural = if ran.rows_affected == 1 { "" } else { "s" };
    let sample = if shown == 0 || shown as u64 == ran.rows_affected {
        String::new()
    } else {
        format!(" (first {shown} shown)")
    };
    let header = format!(
        "-- {} {tables}: {} row{plural} affected{sample}\n",
        kind.to_uppercase(),
        ran.rows_affected
    );
    let lines = |rows: &[Value]| -> String {
        rows.iter()
            .map(|r| format!("{r}\n"))
            .collect::<Vec<_>>()
            .concat()
    };
    // An UPDATE shows the rows before and after; a DELETE the rows it removes; an INSERT the
    // rows it adds.
    let (before, after) = match kind {
        "update" => (lines(&ran.before), lines(&ran.rows)),
        "delete" => (lines(&ran.rows), String::new()),
        _ => (String::new(), lines(&ran.rows)),
    };
    Diff::BeforeAfter {
        before: format!("{header}{before}"),
        after: format!("{header}{after}"),
        language: Some("json".into()),
    }
}

fn prepare_command(
    connection: &Connection,
    arguments: &Map<String, Value>,
) -> Result<Prepared, BrokerError> {
    let ConnectionKind::Command { program, args, .. } = &connection.kind else {
        return Err(BrokerError::Arguments("not a command connection".into()));
    };
    let names = connection.kind.argument_names();
    let (parameters, justification) = split_arguments(arguments, &names)?;
    let argv = crate::command::render(args, &parameters)?;
    let mut context = Map::new();
    context.insert("gate".into(), json!({"connection": connection.name}));
    context.insert(
        "command".into(),
        json!({"program": program.display().to_string(), "argv": argv}),
    );
    let action = ActionRequest {
        action_type: ActionType::new(format!("command.{}", connection.name))?,
        resource: format!("command://{}", connection.name),
        environment: connection.environment.clone(),
        parameters: StrictObject(parameters),
        justification: justification_or(justification, connection),
        context: StrictObject(context),
        diff: None,
        tags: connection.tags.clone(),
        on_behalf_of: None,
        break_glass: false,
    };
    action.validate()?;
    Ok(Prepared {
        action,
        plan: Plan::Command { argv },
    })
}

impl Prepared {
    /// What a stopped run leaves: a database rolls back, a program's effect is unknown.
    pub fn effect(&self) -> Effect {
        match self.plan {
            Plan::Sql { .. } => Effect::Database,
            Plan::Command { .. } => Effect::External,
        }
    }

    /// Runs the approved call (the approval flow has checked `approved` is this action).
    pub async fn run(
        &self,
        connection: &Connection,
        approved: &Approved,
        live: Option<crate::command::Live>,
    ) -> Ran<Result<Output, String>> {
        match (&self.plan, &connection.kind) {
            (
                Plan::Sql {
                    sql,
                    analysis,
                    previewed,
                    reveal,
                },
                ConnectionKind::Postgres {
                    dsn,
                    classification,
                    statement_timeout_seconds,
                    row_count_tolerance,
                    ..
                },
            ) => {
                let run = postgres::Run {
                    connection: &connection.name,
                    dsn,
                    grant_id: approved.grant_id,
                    valid_until: approved.expires_at,
                    analysis,
                    sql,
                    timeout_seconds: *statement_timeout_seconds,
                    commit: true,
                    max_rows: MAX_RESULT_ROWS,
                    expect_rows: previewed.map(|expected| RowBound {
                        expected,
                        tolerance: *row_count_tolerance,
                    }),
                    mask: (!reveal).then_some(classification),
                };
                match postgres::run_as_grant_role(&run).await {
                    Ok(ran) => {
                        let value = json!({
                            "rows_affected": ran.rows_affected,
                            "rows": ran.rows,
                            "truncated": ran.truncated,
                        });
                        let bytes = serde_json::to_vec(&value).unwrap_or_default();
                        let detail = format!(
                            "{} row(s) affected; result sha256:{}",
                            ran.rows_affected,
                            countersign_core::Digest::of(&bytes).to_hex()
                        );
                        Ran {
                            value: Ok(Output {
                                value,
                                is_error: false,
                            }),
                            succeeded: true,
                            result: bytes,
                            detail: Some(detail),
                            exit_code: None,
                        }
                    }
                    Err(e) => Ran {
                        value: Err(format!("approved, but it failed: {e}")),
                        succeeded: false,
                        result: Vec::new(),
                        detail: Some(e.to_string()),
                        exit_code: None,
                    },
                }
            }
            (
                Plan::Command { argv },
                ConnectionKind::Command {
                    program,
                    env,
                    timeout_seconds,
                    max_output_bytes,
                    ..
                },
            ) => {
                let ran = crate::command::run(
                    program,
                    argv,
                    env,
                    Duration::from_secs(*timeout_seconds),
                    *max_output_bytes,
                    live,
                )
                .await;
                match ran {
                    Ok(ran) => {
                        let value = json!({
                            "exit_code": ran.exit_code,
                            "stdout": ran.stdout,
                            "stderr": ran.stderr,
                            "truncated": ran.truncated,
                            "timed_out": ran.timed_out,
                        });
                        let bytes = serde_json::to_vec(&value).unwrap_or_default();
                        let succeeded = ran.succeeded();
                        let detail = if ran.timed_out {
                            Some(format!("killed at its timeout of {timeout_seconds} s"))
                        } else {
                            None
                        };
                        Ran {
                            value: Ok(Output {
                                value,
                                is_error: !succeeded,
                            }),
                            succeeded,
                            result: bytes,
                            detail,
                            exit_code: ran.exit_code,
                        }
                    }
                    Err(e) => Ran {
                        value: Err(format!("approved, but it did not start: {e}")),
                        succeeded: false,
                        result: Vec::new(),
                        detail: Some(e.to_string()),
                        exit_code: None,
                    },
                }
            }
            _ => Ran::not_forwarded(
                Err("the connection changed kind since the call was prepared".into()),
                "the connection changed kind",
            ),
        }
    }
}
