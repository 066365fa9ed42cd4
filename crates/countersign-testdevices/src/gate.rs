//! `countersign gate` as a child process on a free port, for the tests that put real MCP
//! servers behind it (the CLI's and the console's).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running gate; stopped when dropped.
pub struct Gate {
    child: Child,
    /// Where agents reach it (`http://127.0.0.1:PORT/mcp`).
    pub url: String,
}

impl Gate {
    /// Starts `countersign` (the binary at `bin`) as `gate --config CONFIG` on a free loopback
    /// port, once it says where it serves.
    pub fn start(bin: &Path, config: &Path) -> Self {
        let mut child = Command::new(bin)
            .args(["gate", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gate starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("the gate printed its address")
                .expect("utf-8");
            if let Some(rest) = line.strip_prefix("countersign gate: serving MCP at ") {
                break rest.split_whitespace().next().expect("url").to_owned();
            }
        };
        // Keep reading so the gate never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, url }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
