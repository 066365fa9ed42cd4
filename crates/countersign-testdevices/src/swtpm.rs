//! A swtpm (libtpms TPM 2.0 emulator) on loopback, with its state in a temporary directory,
//! stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The local CA that issued a swtpm's endorsement key certificate.
pub struct EkCa {
    /// Its root certificate (PEM): the test's trusted manufacturer root.
    pub root: std::path::PathBuf,
    /// The intermediate that signed the EK certificate (PEM).
    pub intermediate: std::path::PathBuf,
}

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
        Self::start_in(dir, &state)
    }

    /// Starts a swtpm manufactured like a real one: an RSA-2048 endorsement key and its
    /// certificate in NV (`0x01c00002`), issued by a fresh local CA (`swtpm_localca`) whose
    /// root and intermediate certificates (PEM) come back with it.
    pub fn start_with_ek_certificate() -> (Self, EkCa) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let state = dir.path().join("state");
        let ca = dir.path().join("ca");
        std::fs::create_dir(&state).expect("state directory");
        std::fs::create_dir(&ca).expect("ca directory");
        let localca = dir.path().join("localca.conf");
        std::fs::write(
            &localca,
            format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = ca.display()
            ),
        )
        .expect("localca config");
        let setup = dir.path().join("setup.conf");
        std::fs::write(
            &setup,
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n",
                localca.display()
            ),
        )
        .expect("setup config");
        let status = Command::new("swtpm_setup")
            .args(["--tpm2", "--create-ek-cert", "--overwrite", "--tpmstate"])
            .arg(&state)
            .arg("--config")
            .arg(&setup)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("swtpm_setup runs (apt install swtpm-tools; scripts/setup.sh does)");
        assert!(status.success(), "swtpm_setup --create-ek-cert failed");
        let authority = EkCa {
            root: ca.join("swtpm-localca-rootca-cert.pem"),
            intermediate: ca.join("issuercert.pem"),
        };
        (Self::start_in(dir, &state), authority)
    }

    fn start_in(dir: tempfile::TempDir, state: &std::path::Path) -> Self {
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
