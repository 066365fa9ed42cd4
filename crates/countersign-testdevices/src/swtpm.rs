//! A swtpm (libtpms TPM 2.0 emulator) on loopback, with its state in a temporary directory,
//! stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running swtpm.
pub struct Swtpm {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Swtpm {
    /// Starts a swtpm with fresh state, already started up (`startup-clear`).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state directory");
        // The swtpm TCTI finds the control channel on the next port up.
        let (port, ctrl) = free_port_pair();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
            .args(["--flags", "not-need-init,startup-clear"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("swtpm runs (apt install swtpm; scripts/setup.sh does)");
        let mut tpm = Self {
            child,
            port,
            _dir: dir,
        };
        tpm.wait_ready();
        tpm
    }

    /// The TCTI configuration string for tss-esapi / tpm2-tools.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Stops the TPM now, as if it were removed.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("swtpm exited early: {status}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("swtpm did not listen on {addr} within 10 s");
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two consecutive loopback ports nobody listens on right now.
fn free_port_pair() -> (u16, u16) {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = first.local_addr().expect("bound address").port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", next)).is_ok() {
            return (port, next);
        }
    }
    panic!("no two consecutive free loopback ports in 100 tries");
}
