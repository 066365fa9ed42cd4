//! A SoftHSM2 token initialised in a temporary directory.
//!
//! SoftHSM2 reads its configuration from `SOFTHSM2_CONF` once, when the module is initialised,
//! and a module stays initialised for the life of the process. So a test that loads the module
//! runs in a child process of the test binary with its own token (see [`SoftHsm::isolated`]),
//! rather than changing the environment of a running, multi-threaded test binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The module Debian's `softhsm2` package installs.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

const CHILD_MARKER: &str = "COUNTERSIGN_SOFTHSM_TEST";

/// A token labelled [`SoftHsm::LABEL`] with user PIN [`SoftHsm::PIN`].
pub struct SoftHsm {
    conf: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl SoftHsm {
    /// The token's label.
    pub const LABEL: &'static str = "countersign-test";
    /// The user PIN.
    pub const PIN: &'static str = "1234";
    /// The security officer PIN.
    pub const SO_PIN: &'static str = "12345678";

    /// Initialises a fresh token in a new temporary directory.
    pub fn init() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let conf = init_token_in(dir.path());
        Self {
            conf,
            _dir: Some(dir),
        }
    }

    /// The module path.
    pub fn module(&self) -> &'static Path {
        Path::new(MODULE)
    }

    /// The configuration file to pass as `SOFTHSM2_CONF`.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The directory holding the token's files.
    pub fn token_dir(&self) -> PathBuf {
        self.conf.with_file_name("tokens")
    }

    /// Runs `body` in a child process of this test binary whose `SOFTHSM2_CONF` points at a
    /// fresh token; fails the calling test when the child fails. `test` is the test's full
    /// name as libtest knows it (the function name for tests at the top of the file).
    pub fn isolated(test: &str, body: impl FnOnce(&SoftHsm)) {
        if std::env::var(CHILD_MARKER).as_deref() == Ok(test) {
            let conf = std::env::var_os("SOFTHSM2_CONF").expect("SOFTHSM2_CONF set by the parent");
            body(&SoftHsm {
                conf: PathBuf::from(conf),
                _dir: None,
            });
            return;
        }
        let token = SoftHsm::init();
        let exe = std::env::current_exe().expect("test binary path");
        let out = Command::new(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env("SOFTHSM2_CONF", token.conf())
            .env(CHILD_MARKER, test)
            .output()
            .expect("test binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{test} failed in its SoftHSM2 child process:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn init_token_in(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).expect("token directory");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("softhsm2.conf");
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            SoftHsm::LABEL,
            "--so-pin",
            SoftHsm::SO_PIN,
            "--pin",
            SoftHsm::PIN,
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util runs (apt install softhsm2; scripts/setup.sh does)");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}
