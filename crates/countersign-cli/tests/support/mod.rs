//! What the cross-process tests share: the `countersign` binary, a service process, and a
//! world of approvers and an agent around one data directory.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_countersign");

pub fn cs(args: &[&str]) -> Output {
    cs_env(args, &[])
}

pub fn cs_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("countersign runs")
}

pub fn ok(args: &[&str]) -> String {
    ok_env(args, &[])
}

pub fn ok_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = cs_env(args, env);
    assert!(
        out.status.success(),
        "countersign {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `countersign request` for a `action_type` on the production customers database that stops
/// waiting at once (`--wait 0`), with `extra` flags; its output, whatever the outcome.
pub fn request(
    server: &str,
    token: &str,
    action_type: &str,
    justification: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "request",
        "--server",
        server,
        "--token",
        token,
        "--type",
        action_type,
        "--resource",
        "postgres://prod/customers",
        "--environment",
        "prod",
        "--justification",
        justification,
        "--wait",
        "0",
    ];
    args.extend_from_slice(extra);
    cs(&args)
}

pub struct Server {
    pub child: Child,
    pub url: String,
}

/// A service a failing test did not stop is killed with it, never left running.
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    pub fn start(data: &Path) -> Self {
        Self::start_at(data, "127.0.0.1:0")
    }

    pub fn start_at(data: &Path, listen: &str) -> Self {
        Self::start_with(data, &["--listen", listen])
    }

    pub fn start_with(data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--data-dir", &data.display().to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("server printed its address")
                .expect("utf-8");
            if let Some(rest) = line.strip_prefix("countersign: serving ") {
                break rest.split_whitespace().next().expect("url").to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, url }
    }

    /// SIGKILL: no shutdown, no flush beyond what was committed.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("server exits");
        assert!(status.success(), "server exited with {status}");
    }
}

pub struct World {
    pub _dir: tempfile::TempDir,
    pub data: PathBuf,
    pub root: PathBuf,
    pub token: String,
    pub database_url: Option<String>,
}

impl World {
    pub fn new() -> Self {
        Self::with_database(None)
    }

    /// A world whose service keeps its state in `database_url` (PostgreSQL) instead of the
    /// data directory's SQLite file.
    pub fn with_database(database_url: Option<String>) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path().to_owned();
        let data = root.join("data");
        let mut w = Self {
            _dir: dir,
            data,
            root,
            token: String::new(),
            database_url,
        };
        for (who, group) in [
            ("bob", "security"),
            ("carol", "security"),
            ("erin", "finance"),
        ] {
            w.admin(&["approver", who, "--group", group]);
        }
        w.token = w.admin(&["agent-token", "agent:ci"]);
        assert!(w.token.starts_with("csa_"), "{}", w.token);
        w
    }

    /// `countersign admin <args>` against this world's store.
    pub fn admin(&self, args: &[&str]) -> String {
        let d = self.data.display().to_string();
        let mut all = vec!["admin", "--data-dir", &d];
        if let Some(url) = &self.database_url {
            all.extend_from_slice(&["--database-url", url]);
        }
        all.extend_from_slice(args);
        ok(&all)
    }

    /// `serve` flags for this world's store.
    pub fn store_flags(&self) -> Vec<String> {
        match &self.database_url {
            Some(url) => vec!["--database-url".into(), url.clone()],
            None => Vec::new(),
        }
    }

    /// Starts a service on this world's data directory and store, on a free loopback port.
    pub fn replica(&self) -> Server {
        let mut flags = self.store_flags();
        flags.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Server::start_with(&self.data, &flags)
    }

    pub fn enroll(&self, who: &str, url: &str) -> String {
        self.enroll_with(who, url, &["--backend", "software"], &[])
    }

    /// Creates a key with `keys init <init>`, enrols it for `who`; returns the profile path.
    pub fn enroll_with(&self, who: &str, url: &str, init: &[&str], env: &[(&str, &str)]) -> String {
        let (out, profile) = self.try_enroll_with(who, url, init, env);
        assert!(
            out.status.success(),
            "enrolling {who} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile
    }

    /// Creates a key with `keys init <init>` and tries to enrol it for `who`: what `keys
    /// enroll` did, and the profile path it was given.
    pub fn try_enroll_with(
        &self,
        who: &str,
        url: &str,
        init: &[&str],
        env: &[(&str, &str)],
    ) -> (Output, String) {
        let code = self.admin(&["enrolment-code", who]);
        let record = self
            .root
            .join(format!("{who}.key.json"))
            .display()
            .to_string();
        let mut args = vec!["keys", "init", "--key", &record];
        args.extend_from_slice(init);
        ok_env(&args, env);
        let profile = self.root.join(format!("{who}.json")).display().to_string();
        // The code travels in the environment, never in the arguments (`ps` shows those).
        let mut env = env.to_vec();
        env.push(("COUNTERSIGN_ENROLMENT_CODE", &code));
        let out = cs_env(
            &[
                "keys",
                "enroll",
                "--server",
                url,
                "--approver",
                who,
                "--key",
                &record,
                "--profile",
                &profile,
            ],
            &env,
        );
        (out, profile)
    }

    /// `countersign run` as the agent, its token read from a file (`--token-file`).
    pub fn run_agent(&self, url: &str, wait: &str, marker: &Path) -> Child {
        let token_file = self.root.join("agent.token");
        std::fs::write(&token_file, format!("{}\n", self.token)).expect("token file");
        let token_file = token_file.display().to_string();
        let mut args = vec![
            "run",
            "--server",
            url,
            "--token-file",
            &token_file,
            "--type",
            "db.export",
            "--resource",
            "postgres://prod/customers",
            "--environment",
            "prod",
            "--tag",
            "pii",
            "--justification",
            "end-to-end test",
            "--param",
            "rows=42",
            "--wait",
            wait,
        ];
        let cmd = format!("echo executed > {}", marker.display());
        args.extend_from_slice(&["--", "sh", "-c"]);
        let mut command = Command::new(BIN);
        command
            .args(&args)
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().expect("agent starts")
    }
}

/// Polls `pending` until a request shows; returns its id.
pub fn wait_pending(profile: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = ok(&["pending", "--profile", profile]);
        if let Some(line) = out.lines().next() {
            return line.split_whitespace().next().expect("id").to_owned();
        }
        assert!(Instant::now() < deadline, "no pending request appeared");
        std::thread::sleep(Duration::from_millis(200));
    }
}
