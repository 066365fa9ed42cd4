//! Brokered connections in `gate.toml`: a database or a command the gate runs itself, with
//! credentials only it holds, so agents and people get results, never credentials.
//!
//! ```toml
//! [[connection]]
//! name = "prod-db"
//! postgres_file = "secrets/prod-db.dsn"      # the role that mints per-grant roles; a file only
//! environment = "prod"
//! tags = ["database"]
//! statement_timeout_seconds = 10
//! allow_multiple_statements = false
//! row_count_tolerance = 0                    # rows the run may differ from the preview by
//! [connection.classification]
//! "customers.email" = ["pii"]                # schema.table.column (public when omitted)
//!
//! [[connection]]
//! name = "restart"
//! command = "/usr/local/bin/restart-service"
//! args = ["--service", "{service}"]          # {name}: the call's argument `name`
//! env_files = { OPS_TOKEN = "secrets/ops.token" }
//! environment = "prod"
//! timeout_seconds = 60
//! max_output_bytes = 1048576
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use countersign_core::Tag;
use serde::Deserialize;

use crate::config::{ConfigError, Secret, read_secret, secrets};
use crate::sql::Classification;

/// Longest statement a connection may be configured to wait for.
const MAX_STATEMENT_TIMEOUT_SECONDS: u64 = 3600;
/// Most output a command may be configured to return.
const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;

/// One brokered connection.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Its name: the MCP tool and `countersign exec --connection` use it.
    pub name: String,
    /// The environment its actions act in.
    pub environment: String,
    /// Classification tags of every action through it.
    pub tags: Vec<Tag>,
    /// What it reaches.
    pub kind: ConnectionKind,
}

/// What a connection reaches.
#[derive(Clone, Debug)]
pub enum ConnectionKind {
    /// A PostgreSQL database.
    Postgres {
        /// The DSN of the role that mints per-grant roles (from a file; never shown).
        dsn: Secret,
        /// `schema.table.column` → tags, for the requests' tags and masking.
        classification: Classification,
        /// Whether one call may carry several statements.
        allow_multiple_statements: bool,
        /// Longest a statement (preview or run) may take.
        statement_timeout_seconds: u64,
        /// How many rows the approved run may differ from the preview by before it is rolled
        /// back.
        row_count_tolerance: u64,
    },
    /// A program run on the gate's host.
    Command {
        /// The program.
        program: PathBuf,
        /// Its arguments; `{name}` is replaced by the call's argument `name`, each as one
        /// argument (never through a shell).
        args: Vec<String>,
        /// Its environment (secrets; nothing of the gate's own but `PATH` and `HOME`).
        env: BTreeMap<String, Secret>,
        /// Longest it may run before it is killed.
        timeout_seconds: u64,
        /// Most bytes of standard output and error kept.
        max_output_bytes: usize,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnection {
    name: String,
    environment: String,
    #[serde(default)]
    tags: Vec<String>,
    postgres_file: Option<PathBuf>,
    #[serde(default)]
    classification: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    allow_multiple_statements: bool,
    #[serde(default = "default_statement_timeout")]
    statement_timeout_seconds: u64,
    #[serde(default)]
    row_count_tolerance: u64,
    command: Option<PathBuf>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    env_files: BTreeMap<String, PathBuf>,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    #[serde(default = "default_max_output")]
    max_output_bytes: usize,
}

fn default_statement_timeout() -> u64 {
    10
}

fn default_timeout() -> u64 {
    60
}

fn default_max_output() -> usize {
    1024 * 1024
}

fn invalid(name: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("connection {name:?}: {message}"))
}

/// Whether `name` is a plain lowercase identifier (`a-z`, `0-9`, `_`, `-`; a letter first).
fn plain_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 64
}

/// The placeholders of an argument template, checked: `{name}` with a plain name.
fn placeholders(arg: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for piece in crate::template::pieces(arg)? {
        if let crate::template::Piece::Argument(name) = piece {
            if !plain_name(name) || name.contains('-') {
                return Err(format!("{arg:?}: {{{name}}} is not a plain argument name"));
            }
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// A classification key as `schema.table.column`, lowercase and plain.
fn classification_key(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    (2..=3).contains(&parts.len()) && parts.iter().all(|p| plain_name(p) && !p.contains('-'))
}

pub(crate) fn check(raw: RawConnection, base: &Path) -> Result<Connection, ConfigError> {
    let name = raw.name;
    if !plain_name(&name) {
        return Err(invalid(
            &name,
            "a name is lowercase letters, digits, '_' and '-', a letter first, at most 64",
        ));
    }
    if raw.environment.trim().is_empty() {
        return Err(invalid(&name, "environment is empty"));
    }
    let tags = raw
        .tags
        .into_iter()
        .map(|t| Tag::new(t).map_err(|e| invalid(&name, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let kind = match (raw.postgres_file, raw.command) {
        (Some(file), None) => {
            if !raw.args.is_empty() || !raw.env.is_empty() || !raw.env_files.is_empty() {
                return Err(invalid(
                    &name,
                    "args and env belong to a command connection",
                ));
            }
            let dsn = read_secret(base, &format!("connection {name:?} postgres_file"), &file)?;
            let scheme_ok = dsn.expose().starts_with("postgres://")
                || dsn.expose().starts_with("postgresql://");
            if !scheme_ok {
                return Err(invalid(
                    &name,
                    "postgres_file must hold a postgres:// or postgresql:// URL",
                ));
            }
            if raw.statement_timeout_seconds == 0
                || raw.statement_timeout_seconds > MAX_STATEMENT_TIMEOUT_SECONDS
            {
                return Err(invalid(
                    &name,
                    format!("statement_timeout_seconds: 1 to {MAX_STATEMENT_TIMEOUT_SECONDS}"),
                ));
            }
            for (column, column_tags) in &raw.classification {
                if !classification_key(column) {
                    return Err(invalid(
                        &name,
                        format!(
                            "classification {column:?}: use table.column or schema.table.column, lowercase"
                        ),
                    ));
                }
                for tag in column_tags {
                    Tag::new(tag.clone()).map_err(|e| invalid(&name, e))?;
                }
            }
            ConnectionKind::Postgres {
                dsn,
                classification: Classification::new(&raw.classification),
                allow_multiple_statements: raw.allow_multiple_statements,
                statement_timeout_seconds: raw.statement_timeout_seconds,
                row_count_tolerance: raw.row_count_tolerance,
            }
        }
        (None, Some(program)) => {
            if !raw.classification.is_empty() {
                return Err(invalid(
                    &name,
                    "classification belongs to a postgres connection",
                ));
            }
            for arg in &raw.args {
                placeholders(arg).map_err(|e| invalid(&name, format!("args: {e}")))?;
            }
            if raw.timeout_seconds == 0 || raw.timeout_seconds > MAX_STATEMENT_TIMEOUT_SECONDS {
                return Err(invalid(
                    &name,
                    format!("timeout_seconds: 1 to {MAX_STATEMENT_TIMEOUT_SECONDS}"),
                ));
            }
            if raw.max_output_bytes == 0 || raw.max_output_bytes > MAX_OUTPUT_BYTES {
                return Err(invalid(
                    &name,
                    format!("max_output_bytes: 1 to {MAX_OUTPUT_BYTES}"),
                ));
            }
            ConnectionKind::Command {
                program,
                args: raw.args,
                env: secrets(
                    base,
                    &format!("connection {name:?} env"),
                    raw.env,
                    raw.env_files,
                )?,
                timeout_seconds: raw.timeout_seconds,
                max_output_bytes: raw.max_output_bytes,
            }
        }
        (Some(_), Some(_)) => {
            return Err(invalid(&name, "give postgres_file or command, not both"));
        }
        (None, None) => {
            return Err(invalid(&name, "give postgres_file (a database) or command"));
        }
    };
    Ok(Connection {
        name,
        environment: raw.environment,
        tags,
        kind,
    })
}

impl ConnectionKind {
    /// The argument names a command's template uses (none for a database).
    pub fn argument_names(&self) -> Vec<String> {
        match self {
            ConnectionKind::Command { args, .. } => args
                .iter()
                .filter_map(|a| placeholders(a).ok())
                .flatten()
                .collect(),
            ConnectionKind::Postgres { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_templates_name_plain_arguments_only() {
        assert_eq!(
            placeholders("--service={service}").expect("ok"),
            vec!["service".to_owned()]
        );
        assert_eq!(
            placeholders("{a}:{b_2}").expect("ok"),
            vec!["a".to_owned(), "b_2".to_owned()]
        );
        assert!(placeholders("plain").expect("ok").is_empty());
        for bad in ["{", "}", "{}", "{Service}", "{a b}", "{$(rm)}", "{a-b}"] {
            assert!(placeholders(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn classification_keys_are_plain_table_columns() {
        for good in ["customers.email", "billing.invoices.iban"] {
            assert!(classification_key(good), "{good}");
        }
        for bad in [
            "email",
            "a.b.c.d",
            "Customers.email",
            "customers.e-mail",
            "customers.",
        ] {
            assert!(!classification_key(bad), "{bad}");
        }
    }
}
