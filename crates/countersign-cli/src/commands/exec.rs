//! `countersign exec`: an agent's (or a person's) way to a gate's brokered connection from a
//! shell. It calls the connection's MCP tool on the gate, so it runs exactly as an agent's call
//! would: the gate writes the action, previews a write, waits for approval and runs it with
//! credentials the caller never sees.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use clap::Args;
use countersign_gate::agent::GateAgent;
use serde_json::{Map, Value};

use super::agent::{EXIT_DENIED, EXIT_EXPIRED};

/// Options of `exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The gate's MCP endpoint, e.g. `http://127.0.0.1:8760/mcp`.
    #[arg(long, env = "COUNTERSIGN_GATE")]
    pub gate: String,
    /// The connection to use (a `[[connection]]` of the gate's configuration).
    #[arg(long)]
    pub connection: String,
    /// The SQL statement, for a database connection.
    #[arg(long, conflicts_with = "arguments")]
    pub sql: Option<String>,
    /// Ask for classified columns unmasked in the result (the approvers see that you asked).
    #[arg(long, requires = "sql")]
    pub reveal_classified: bool,
    /// Why this is needed, shown to the approvers.
    #[arg(long)]
    pub justification: Option<String>,
    /// The agent's API token. Prefer COUNTERSIGN_TOKEN or --token-file.
    #[arg(
        long,
        env = "COUNTERSIGN_TOKEN",
        hide_env_values = true,
        required_unless_present = "token_file"
    )]
    pub token: Option<String>,
    /// Read the agent's token from this file (`-`: standard input).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// A command connection's arguments, as `name=value` (the names its template uses).
    #[arg(last = true, value_name = "NAME=VALUE")]
    pub arguments: Vec<String>,
}

/// How much of a program's output was printed as it came.
#[derive(Default)]
struct Printed {
    stdout: usize,
    stderr: usize,
    /// The answer is in: anything later is in it.
    done: bool,
}

/// The tool arguments `args` stand for.
fn tool_arguments(args: &ExecArgs) -> anyhow::Result<Map<String, Value>> {
    let mut arguments = Map::new();
    if let Some(sql) = &args.sql {
        arguments.insert("sql".into(), Value::String(sql.clone()));
        if args.reveal_classified {
            arguments.insert("reveal_classified".into(), Value::Bool(true));
        }
    }
    for pair in &args.arguments {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("{pair:?}: give a command's arguments as name=value");
        };
        if arguments
            .insert(name.to_owned(), Value::String(value.to_owned()))
            .is_some()
        {
            bail!("argument {name:?} is given twice");
        }
    }
    if let Some(j) = &args.justification {
        arguments.insert("justification".into(), Value::String(j.clone()));
    }
    Ok(arguments)
}

/// Runs the call; the exit status is the program's for a command, 0 for a statement that ran,
/// 3 denied, 4 expired, 1 anything else refused or failed.
pub async fn run(args: ExecArgs) -> anyhow::Result<i32> {
    let arguments = tool_arguments(&args)?;
    let token = crate::secret::resolve(
        args.token.clone(),
        args.token_file.as_deref(),
        "agent token",
    )?;
    // A program's output is printed as the gate passes it on; what did not arrive that way is
    // printed from the result.
    let printed = Arc::new(Mutex::new(Printed::default()));
    let sink = {
        let printed = printed.clone();
        Arc::new(move |stream: &str, text: &str| {
            let mut p = printed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if p.done {
                return;
            }
            let _ = match stream {
                "stdout" => {
                    p.stdout += text.len();
                    std::io::stdout().write_all(text.as_bytes())
                }
                _ => {
                    p.stderr += text.len();
                    std::io::stderr().write_all(text.as_bytes())
                }
            };
        })
    };
    let agent = GateAgent::over_http_following(&args.gate, &token, Some(sink))
        .await
        .map_err(anyhow::Error::msg)?;
    let answer = agent
        .call(&args.connection, arguments)
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("calling {} on the gate", args.connection))?;
    let printed = {
        let mut p = printed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        p.done = true;
        (p.stdout, p.stderr)
    };
    match &answer.structured {
        // A program: its streams where they belong, its exit status as ours.
        Some(out) if out.get("stdout").is_some() => {
            let rest = |k: &str, from: usize| {
                let text = out.get(k).and_then(Value::as_str).unwrap_or_default();
                text.get(from..).unwrap_or_default().to_owned()
            };
            std::io::stdout().write_all(rest("stdout", printed.0).as_bytes())?;
            std::io::stderr().write_all(rest("stderr", printed.1).as_bytes())?;
            if out.get("truncated") == Some(&Value::Bool(true)) {
                eprintln!("countersign exec: output truncated at the connection's limit");
            }
            if out.get("timed_out") == Some(&Value::Bool(true)) {
                eprintln!("countersign exec: killed at the connection's timeout");
                return Ok(1);
            }
            let code = out.get("exit_code").and_then(Value::as_i64).unwrap_or(1);
            Ok(i32::try_from(code).unwrap_or(1))
        }
        Some(result) if !answer.is_error => {
            println!("{}", serde_json::to_string_pretty(result)?);
            Ok(0)
        }
        _ => {
            eprintln!("countersign exec: {}", answer.text);
            Ok(if answer.text.starts_with("denied") {
                EXIT_DENIED
            } else if answer.text.contains("expired") {
                EXIT_EXPIRED
            } else {
                1
            })
        }
    }
}
