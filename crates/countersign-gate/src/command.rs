//! Commands the gate runs itself: the program and its argument template come from the gate's
//! configuration, each `{name}` filled with the call's argument `name` as one argument of its
//! own — never through a shell, so an argument cannot become a second command. The child gets
//! its secrets and `PATH`/`HOME`, nothing else of the gate's environment; what it prints is kept
//! up to a bound (the rest is read and dropped, so a flood cannot fill the gate's memory), and it
//! is killed at its timeout.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::config::Secret;

/// Why a command did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The template names an argument the call did not give.
    #[error("missing argument {0:?}")]
    MissingArgument(String),
    /// An argument is not text or a number.
    #[error("argument {0:?} must be text or a number")]
    NotText(String),
    /// An argument holds a NUL byte, which no program argument can carry.
    #[error("argument {0:?} contains a NUL byte")]
    Nul(String),
    /// The program could not be started.
    #[error("cannot start {program}: {message}")]
    Start {
        /// Which.
        program: String,
        /// Why.
        message: String,
    },
}

/// How a command went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRan {
    /// Its exit status; `None` when it was killed (timeout, signal).
    pub exit_code: Option<i32>,
    /// Standard output, up to the bound.
    pub stdout: String,
    /// Standard error, up to the bound.
    pub stderr: String,
    /// More was printed than kept.
    pub truncated: bool,
    /// It ran past its timeout and was killed.
    pub timed_out: bool,
}

impl CommandRan {
    /// Whether it exited 0 in time.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// The program's arguments: `template` with each `{name}` replaced by `arguments[name]`.
pub fn render(
    template: &[String],
    arguments: &Map<String, Value>,
) -> Result<Vec<String>, CommandError> {
    template
        .iter()
        .map(|part| {
            let mut out = String::new();
            let mut rest = part.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                let close = after.find('}').unwrap_or(after.len());
                let name = &after[..close];
                let value = match arguments.get(name) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(_) => return Err(CommandError::NotText(name.to_owned())),
                    None => return Err(CommandError::MissingArgument(name.to_owned())),
                };
                if value.contains('\0') {
                    return Err(CommandError::Nul(name.to_owned()));
                }
                out.push_str(&value);
                rest = after.get(close + 1..).unwrap_or("");
            }
            out.push_str(rest);
            Ok(out)
        })
        .collect()
}

/// Reads all of `from`, keeping the first `limit` bytes; whether more came.
async fn bounded(mut from: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut more = false;
    let mut buffer = [0u8; 8192];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
                if n > room {
                    more = true;
                }
            }
        }
    }
    (kept, more)
}

/// Runs `program` with `args`, `env` and nothing else of the gate's environment but `PATH`
/// and `HOME`; kills it after `timeout`; keeps at most `max_output` bytes of each stream.
pub async fn run(
    program: &Path,
    args: &[String],
    env: &BTreeMap<String, Secret>,
    timeout: Duration,
    max_output: usize,
) -> Result<CommandRan, CommandError> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for inherited in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(inherited) {
            command.env(inherited, value);
        }
    }
    for (key, value) in env {
        command.env(key, value.expose());
    }
    let mut child = command.spawn().map_err(|e| CommandError::Start {
        program: program.display().to_string(),
        message: e.to_string(),
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out = tokio::spawn(async move {
        match stdout {
            Some(s) => bounded(s, max_output).await,
            None => (Vec::new(), false),
        }
    });
    let err = tokio::spawn(async move {
        match stderr {
            Some(s) => bounded(s, max_output).await,
            None => (Vec::new(), false),
        }
    });
    let (exit_code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => (status.code(), false),
        Ok(Err(_)) => (None, false),
        Err(_) => {
            let _ = child.kill().await;
            (None, true)
        }
    };
    let (stdout, more_out) = out.await.unwrap_or_default();
    let (stderr, more_err) = err.await.unwrap_or_default();
    Ok(CommandRan {
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        truncated: more_out || more_err,
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn each_placeholder_fills_one_argument_and_nothing_more() {
        let template = vec![
            "--service={service}".to_owned(),
            "{count}".to_owned(),
            "fixed".to_owned(),
        ];
        let rendered = render(
            &template,
            &args(json!({"service": "api; rm -rf / $(reboot)", "count": 3})),
        )
        .expect("renders");
        assert_eq!(
            rendered,
            vec!["--service=api; rm -rf / $(reboot)", "3", "fixed"]
        );
        assert_eq!(
            render(&template, &args(json!({"service": "api"}))),
            Err(CommandError::MissingArgument("count".into()))
        );
        assert_eq!(
            render(&template, &args(json!({"service": ["a"], "count": 1}))),
            Err(CommandError::NotText("service".into()))
        );
        assert_eq!(
            render(&template, &args(json!({"service": "a\u{0}b", "count": 1}))),
            Err(CommandError::Nul("service".into()))
        );
    }

    #[tokio::test]
    async fn a_command_gets_its_secrets_and_never_a_shell() {
        let dir = tempfile::tempdir().expect("dir");
        let marker = dir.path().join("pwned");
        let mut env = BTreeMap::new();
        env.insert("OPS_TOKEN".to_owned(), Secret::new("t0ken"));
        let ran = run(
            Path::new("/bin/sh"),
            &[
                "-c".to_owned(),
                "printf '%s|%s|%s' \"$OPS_TOKEN\" \"$CARGO_PKG_NAME\" \"$1\"".to_owned(),
                "sh".to_owned(),
                format!("$(touch {})", marker.display()),
            ],
            &env,
            Duration::from_secs(10),
            1024,
        )
        .await
        .expect("runs");
        assert!(ran.succeeded(), "{ran:?}");
        assert_eq!(ran.stdout, format!("t0ken||$(touch {})", marker.display()));
        assert!(!marker.exists(), "an argument ran as a command");
    }

    #[tokio::test]
    async fn a_flood_is_bounded_and_a_hang_is_killed() {
        let flood = run(
            Path::new("/usr/bin/yes"),
            &[],
            &BTreeMap::new(),
            Duration::from_millis(500),
            4096,
        )
        .await
        .expect("runs");
        assert!(flood.truncated && flood.timed_out, "{}", flood.stdout.len());
        assert_eq!(flood.stdout.len(), 4096);
        let hang = run(
            Path::new("/bin/sleep"),
            &["30".to_owned()],
            &BTreeMap::new(),
            Duration::from_millis(300),
            1024,
        )
        .await
        .expect("runs");
        assert!(hang.timed_out && !hang.succeeded(), "{hang:?}");
        let failed = run(
            Path::new("/bin/false"),
            &[],
            &BTreeMap::new(),
            Duration::from_secs(5),
            10,
        )
        .await
        .expect("runs");
        assert_eq!(failed.exit_code, Some(1));
        assert!(matches!(
            run(
                Path::new("/nonexistent/program"),
                &[],
                &BTreeMap::new(),
                Duration::from_secs(1),
                10
            )
            .await,
            Err(CommandError::Start { .. })
        ));
    }
}
