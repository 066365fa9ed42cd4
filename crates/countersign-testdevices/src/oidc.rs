//! A certified OpenID Provider for tests: `oidc-provider` (npm, locked in `tests/oidc`) run by
//! Node on a free loopback port, with its own sign-in pages, the public native client
//! `countersign`, people in groups, and a key it rotates on `POST /test/rotate`.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running provider; stopped when dropped.
pub struct OidcProvider {
    child: Child,
    /// Its issuer URL (`http://127.0.0.1:PORT`).
    pub url: String,
}

impl OidcProvider {
    /// Starts `tests/oidc/provider.mjs` (`npm ci` there first; `scripts/setup.sh` does it).
    pub fn start() -> Self {
        let port = crate::free_port();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc");
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(port.to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node tests/oidc/provider.mjs (npm ci in tests/oidc)");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("provider output");
        assert!(line.starts_with("ready"), "the provider said {line:?}");
        // Keep reading: a provider writing to a closed pipe would die.
        std::thread::spawn(move || for _ in out.lines() {});
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Stops it at once (the provider down).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}
