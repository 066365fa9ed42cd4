//! The webhook receiver of the channel tests: `tests/channels/receiver.py`, which checks each
//! webhook's signature with the Standard Webhooks reference library (`standardwebhooks`).

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The receiver process and what it prints.
pub struct Receiver {
    _child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    pub url: String,
}

impl Receiver {
    pub async fn start(failures: u32) -> Self {
        let python = std::env::var("COUNTERSIGN_PYTHON")
            .unwrap_or_else(|_| "/root/.cache/countersign-venv/bin/python".to_owned());
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/channels/receiver.py"
        );
        let mut child = Command::new(python)
            .arg(script)
            .arg(SECRET)
            .arg(failures.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python with standardwebhooks (scripts/setup.sh installs it)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = lines.next_line().await.expect("read").expect("port line");
        Self {
            _child: child,
            lines,
            url: format!("http://127.0.0.1:{}", port.trim()),
        }
    }

    /// The next request the receiver got.
    pub async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .expect("a delivery within 20 s")
            .expect("read")
            .expect("a line");
        serde_json::from_str(&line).expect("json line")
    }
}
