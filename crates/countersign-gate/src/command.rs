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
use crate::template::{Piece, pieces};

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
    /// The configured argument template is malformed.
    #[error("the argument template is malformed: {0}")]
    Template(String),
    /// The program could not be started.
    #[error("cannot start {program}: {message}")]
    Start {
        /// Which.
        program: String,
        /// Why.
        message: String,
    },
}

/// Which of a program's streams a piece of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Output as the program prints it, for whoever follows it live (within the same bound).
pub type Live = tokio::sync::mpsc::Sender<(Stream, String)>;

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
            // Templates are checked when the configuration is read.
            let parts = pieces(part).map_err(CommandError::Template)?;
            for piece in parts {
                let name = match piece {
                    Piece::Text(text) => {
                        out.push_str(text);
                        continue;
                    }
                    Piece::Argument(name) => name,
                };
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
            }
            Ok(out)
        })
        .collect()
}

/// Reads all of `from`, keeping the first `limit` bytes (and passing them to `live` as text as
/// they come); whether more came.
async fn bounded(
    mut from: impl AsyncRead + Unpin,
    limit: usize,
    live: Option<(Stream, Live)>,
) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut more = false;
    let mut buffer = [0u8; 8192];
    // Where the text passed on so far ends: a character split across reads waits for its rest.
    let mut sent = 0;
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
                if n > room {
                    more = true;
                }
                if let Some((stream, live)) = &live {
                    let end = match std::str::from_utf8(&kept[sent..]) {
                        Ok(_) => kept.len(),
                        Err(e) if e.error_len().is_none() => sent + e.valid_up_to(),
                        Err(_) => kept.len(),
                    };
                    if end > sent {
                        let text = String::from_utf8_lossy(&kept[sent..end]).into_owned();
                        sent = end;
                        // A follower that went away does not stop the program.
                        let _ = live.send((*stream, text)).await;
                    }
                }
            }
        }
    }
    if let Some((stream, live)) = &live
        && kept.len() > sent
    {
        let _ = live
            .send((*stream, String::from_utf8_lossy(&kept[sent..]).into_owned()))
            .await;
    }
    (kept, more)
}

/// Runs `program` with `args`, `env` and nothing else of the gate's environment but `PATH`
/// and `HOME`; kills it after `timeout`; keeps at most `max_output` bytes of each stream,
/// passing them to `live` as they are printed when given.
pub async fn run(
    program: &Path,
    args: &[String],
    env: &BTreeMap<String, Secret>,
    timeout: Duration,
    max_output: usize,
    live: Option<Live>,
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
    let live_out = live.clone().map(|l| (Stream::Stdout, l));
    let live_err = live.map(|l| (Stream::Stderr, l));
    let out = tokio::spawn(async move {
        match stdout {
            Some(s) => bounded(s, max_output, live_out).await,
            None => (Vec::new(), false),
        }
    });
    let err = tokio::spawn(async move {
        match stderr {
            Some(s) => bounded(s, max_output, live_err).await,
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
            None,
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
            None,
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
            None,
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
            None,
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
                10,
                None
            )
            .await,
            Err(CommandError::Start { .. })
        ));
    }

    #[tokio::test]
    async fn output_is_passed_on_as_it_is_printed_within_the_bound() {
        let (live, mut followed) = tokio::sync::mpsc::channel(16);
        let running = tokio::spawn(async move {
            run(
                Path::new("/bin/sh"),
                &[
                    "-c".to_owned(),
                    // A character split across two writes, then a pause, then a flood.
                    "printf 'caf\\303'; sleep 0.2; printf '\\251\\n'; echo oops >&2; sleep 1; yes | head -c 100000".to_owned(),
                ],
                &BTreeMap::new(),
                Duration::from_secs(10),
                64,
                Some(live),
            )
            .await
        });
        let (stream, first) = followed.recv().await.expect("first piece");
        assert_eq!((stream, first.as_str()), (Stream::Stdout, "caf"));
        let (_, second) = followed.recv().await.expect("second piece");
        assert_eq!(second, "\u{e9}\n", "the split character arrives whole");
        assert!(
            !running.is_finished(),
            "passed on while the program still runs"
        );
        let (stream, err) = followed.recv().await.expect("stderr");
        assert_eq!((stream, err.as_str()), (Stream::Stderr, "oops\n"));
        let mut rest = 0;
        while let Some((_, text)) = followed.recv().await {
            rest += text.len();
        }
        let ran = running.await.expect("joined").expect("runs");
        assert_eq!(
            rest + "caf\u{e9}\n".len(),
            64,
            "the bound holds for what is passed on"
        );
        assert!(ran.truncated);
    }
}
