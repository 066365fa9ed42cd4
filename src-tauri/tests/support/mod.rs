//! What the console's end-to-end tests share: a real service, a private D-Bus session, the
//! console under Xvfb through tauri-driver, and WebDriver helpers.
#![allow(dead_code)] // each test binary uses a different part

pub mod notify_server;
pub mod tray_host;

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use countersign_testdevices::{SoftHsm, Swtpm};
use fantoccini::{Client, ClientBuilder, Locator};

pub const CONSOLE: &str = env!("CARGO_BIN_EXE_countersign-console");

/// A policy with a short-lived request type for the expiry path and a 48-second one for the
/// reminder; otherwise one approver from security.
pub const POLICY: &str = r#"package countersign
import rego.v1
decision := {
	"outcome": "break_glass", "reason": "on-call emergency",
	"review_quorum": 1, "review_groups": ["security"],
} if {
	input.action.type == "incident.fix"
	input.action.break_glass == true
}
else := {
	"outcome": "require_approval", "reason": "short-lived test request",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 10,
	"require_hardware_key": true, "quick_approve": false,
} if input.action.type == "test.short"
else := {
	"outcome": "require_approval", "reason": "recalled shortly before it expires",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 48,
	"require_hardware_key": true, "quick_approve": false,
} if input.action.type == "test.remind"
else := {
	"outcome": "require_approval", "reason": "confirm with the requester",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 600,
	"require_hardware_key": true, "quick_approve": false, "verification_code": true,
} if input.action.type == "test.verify"
else := {
	"outcome": "require_approval", "reason": "needs a sign-in at the organisation this hour",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 600,
	"require_hardware_key": true, "quick_approve": false, "max_sign_in_age_seconds": 3600,
} if input.action.type == "test.recent"
else := {
	"outcome": "require_approval", "reason": "feature flags may be approved from the notification",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 600,
	"require_hardware_key": true, "quick_approve": true,
} if startswith(input.action.type, "flag.")
else := {
	"outcome": "require_approval", "reason": "IAM changes in production need one approver from security",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": true, "quick_approve": false,
}

# The policy's risk, from facts, as the default policy words it: permission changes are high.
risk := {"level": "high", "reasons": ["changes permissions (IAM)", sprintf("runs in production (environment %q)", [input.action.environment])]} if {
	startswith(input.action.type, "iam.")
}
"#;

pub fn countersign() -> PathBuf {
    let path = Path::new(CONSOLE).with_file_name("countersign");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p countersign-cli` (cargo test --workspace does)",
        path.display()
    );
    path
}

pub fn ok(args: &[&str]) -> String {
    let out = Command::new(countersign())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("countersign runs");
    assert!(
        out.status.success(),
        "countersign {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Kills the child (and waits) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child started as the leader of its own process group (`xvfb-run` and what it starts:
/// Xvfb, tauri-driver, WebKitWebDriver, the console). Dropping it, pass or fail, stops the
/// whole group — SIGTERM, then SIGKILL for whatever is left after 3 s — and reaps the leader,
/// so no test leaves a display, a driver or a zombie behind.
pub struct Group(pub Child);

impl Group {
    /// Spawns `command` in a new process group.
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0).spawn().map(Group)
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.0.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Whether any process of the group is still alive.
    fn alive(&self) -> bool {
        Command::new("pgrep")
            .args(["-g", &self.0.id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.alive() && Instant::now() < deadline {
            let _ = self.0.try_wait();
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal("-KILL");
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// What a world's service and console are set up with besides the defaults.
#[derive(Default)]
pub struct Options {
    /// The OpenID Provider (issuer URL) the service signs approvers in with.
    pub oidc: Option<String>,
    /// Who the console's "system browser" signs in as at that provider: `$BROWSER` is
    /// `tests/oidc/browser.py authorize URL LOGIN`, which drives the provider's own pages.
    pub browser_login: Option<String>,
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub agent_token: String,
    pub driver_port: u16,
    /// The private session bus the console's notifications go to.
    pub bus_address: String,
    // Dropped in this order after the test: the console's driver (with its display and the
    // console), the bus, the service, then the token's directory.
    _driver: Group,
    _bus: Running,
    server: Running,
    _token: SoftHsm,
    _tpm: Swtpm,
}

impl World {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        // The console's TPM was manufactured with an endorsement key certificate, and the
        // service trusts its maker's root: TPM keys made in the console enrol attested.
        let (tpm, ek_ca) = Swtpm::start_with_ek_certificate();
        let mut config = format!(
            "[attestation]\ntpm_roots = [{:?}]\ntpm_intermediates = [{:?}]\n",
            ek_ca.root.display().to_string(),
            ek_ca.intermediate.display().to_string()
        );
        if let Some(issuer) = &options.oidc {
            config.push_str(&format!(
                "[oidc]\nissuer = \"{issuer}\"\nclient_id = \"countersign\"\ngroups_claim = \"groups\"\n[oidc.groups]\n\"okta-security\" = \"security\"\n"
            ));
        }
        std::fs::write(dir.path().join("countersign.toml"), config).expect("config");
        let (server, url) = start_service(dir.path(), &data);
        let browser = dir.path().join("browser.sh");
        if let Some(login) = &options.browser_login {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc/browser.py");
            let log = dir.path().join("browser.log");
            std::fs::write(
                &browser,
                format!(
                    "#!/bin/sh\nexec python3 {} authorize \"$1\" {login} >> {} 2>&1\n",
                    script.display(),
                    log.display()
                ),
            )
            .expect("browser script");
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755))
                .expect("executable");
        }
        let agent_token = ok(&[
            "admin",
            "--data-dir",
            &data.display().to_string(),
            "agent-token",
            "agent:release-bot",
        ]);

        // A private session bus: notifications go there, not to the machine's.
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (apt install dbus)");
        let mut address = String::new();
        BufReader::new(bus.stdout.take().expect("stdout"))
            .read_line(&mut address)
            .expect("bus address");
        let bus_address = address.trim().to_owned();

        let token = SoftHsm::init();
        let driver_port = free_port();
        let driver = Group::spawn(
            Command::new("xvfb-run")
                .args([
                    "-a",
                    "--server-args=-screen 0 1280x800x24",
                    "tauri-driver",
                    "--port",
                ])
                .arg(driver_port.to_string())
                .arg("--native-port")
                .arg(free_port().to_string())
                .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
                .env("SOFTHSM2_CONF", token.conf())
                .env("COUNTERSIGN_CONSOLE_DIR", dir.path().join("console"))
                .env("COUNTERSIGN_PKCS11_MODULES", token.module())
                .env("COUNTERSIGN_TPM_TCTI", tpm.tcti())
                .env("COUNTERSIGN_EXPORT_DIR", dir.path().join("exports"))
                .env("BROWSER", &browser)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("tauri-driver (cargo install tauri-driver --locked) under xvfb-run");
        let world = Self {
            dir,
            url,
            agent_token,
            driver_port,
            bus_address: bus_address.clone(),
            _driver: driver,
            _bus: Running(bus),
            server,
            _token: token,
            _tpm: tpm,
        };
        world.wait_for_driver();
        world
    }

    /// The processes this world started: the driver's process group (xvfb-run, Xvfb,
    /// tauri-driver, WebKitWebDriver, the console), the bus and the service.
    pub fn processes(&self) -> (u32, u32, u32) {
        (self._driver.0.id(), self._bus.0.id(), self.server.0.id())
    }

    /// Stops the service, lets `change` alter its data directory, and starts it again at the
    /// same address (the console keeps its URL).
    pub fn restart_server(&mut self, change: impl FnOnce(&Path)) {
        let _ = self.server.0.kill();
        let _ = self.server.0.wait();
        let data = self.dir.path().join("data");
        change(&data);
        let listen = self.url.trim_start_matches("http://").to_owned();
        let (server, url) = serve(&data, &self.dir.path().join("policy.rego"), &listen);
        assert_eq!(url, self.url);
        self.server = server;
    }

    /// Another service with its own data directory and log (bob is an approver there too):
    /// the running service, its URL, and a one-time enrolment code for bob.
    pub fn other_service(&self, name: &str) -> (Running, String, String) {
        let data = self.dir.path().join(name);
        let (server, url) = start_service(self.dir.path(), &data);
        let code = ok(&[
            "admin",
            "--data-dir",
            &data.display().to_string(),
            "enrolment-code",
            "bob@example.com",
        ]);
        (server, url, code)
    }

    /// A one-time enrolment code for bob at the test's service.
    pub fn enrolment_code(&self) -> String {
        let data = self.dir.path().join("data").display().to_string();
        ok(&[
            "admin",
            "--data-dir",
            &data,
            "enrolment-code",
            "bob@example.com",
        ])
    }

    /// A console session that went through first run: key on the SoftHSM2 token, enrolled
    /// as bob@example.com, live.
    pub async fn enrolled_console(&self) -> Client {
        let code = self.enrolment_code();
        let c = self.console().await;
        enrol_in_ui(&c, self, &code).await;
        c
    }

    pub fn wait_for_driver(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.driver_port)).is_err() {
            assert!(Instant::now() < deadline, "tauri-driver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn console(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "tauri:options".into(),
            serde_json::json!({ "application": CONSOLE }),
        );
        caps.insert("browserName".into(), "wry".into());
        let _ = rustls::crypto::ring::default_provider().install_default();
        // tauri-driver accepts connections a moment before it can start sessions: a session
        // refused with a dropped connection is asked for again, a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match ClientBuilder::rustls()
                .expect("rustls WebDriver client")
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{}", self.driver_port))
                .await
            {
                Ok(client) => return client,
                Err(e)
                    if attempt < 4
                        && matches!(
                            e,
                            fantoccini::error::NewSessionError::Lost(_)
                                | fantoccini::error::NewSessionError::FailedC(_)
                        ) =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("WebDriver session with the console: {e:?}"),
            }
        }
    }

    /// Uses the break-glass path (the test policy grants `incident.fix` at once when asked):
    /// `countersign request --break-glass`, which must succeed.
    pub fn break_glass_use(&self) {
        let out = Command::new(countersign())
            .args([
                "request",
                "--server",
                &self.url,
                "--token",
                &self.agent_token,
            ])
            .args(["--type", "incident.fix", "--resource", "db/payments"])
            .args(["--environment", "prod", "--justification", "payments down"])
            .args(["--break-glass", "--wait", "0"])
            .output()
            .expect("countersign request");
        assert!(
            out.status.success(),
            "granted at once: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `countersign run` for a request; it runs `touch marker` only if approved.
    pub fn agent(&self, kind: &str, diff: Option<&str>, marker: &Path) -> Child {
        let mut cmd = Command::new(countersign());
        cmd.args(["run", "--server", &self.url, "--token", &self.agent_token])
            .args([
                "--type",
                kind,
                "--resource",
                "arn:aws:iam::123456789012:role/deployer",
            ])
            .args(["--environment", "prod", "--tag", "prod-change"])
            .args([
                "--justification",
                "Release 4.2 uploads build artefacts (OPS-311)",
            ])
            .args(["--wait", "60"]);
        if let Some(diff) = diff {
            let path = self.dir.path().join(format!("{kind}.diff"));
            std::fs::write(&path, diff).expect("diff");
            cmd.arg("--diff")
                .arg(path)
                .args(["--diff-language", "json"]);
        }
        cmd.arg("--")
            .args(["touch"])
            .arg(marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent")
    }
}

/// Starts `countersign serve` on `listen`; returns it and its URL once it serves.
/// A service over `data` (bob an approver in security) with the test policy, on a free port.
fn start_service(dir: &Path, data: &Path) -> (Running, String) {
    ok(&[
        "admin",
        "--data-dir",
        &data.display().to_string(),
        "approver",
        "bob@example.com",
        "--group",
        "security",
    ]);
    let policy = dir.join("policy.rego");
    std::fs::write(&policy, POLICY).expect("policy");
    serve(data, &policy, "127.0.0.1:0")
}

fn serve(data: &Path, policy: &Path, listen: &str) -> (Running, String) {
    let mut command = Command::new(countersign());
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", listen, "--policy"])
        .arg(policy);
    // A world keeps its configuration (trusted roots, an OpenID Provider) beside the data
    // directory.
    let config = data.parent().map(|d| d.join("countersign.toml"));
    if let Some(config) = config.filter(|c| c.exists()) {
        command.arg("--config").arg(config);
    }
    let mut server = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let url = loop {
        let line = lines.next().expect("server address").expect("utf-8");
        if let Some(rest) = line.strip_prefix("countersign: serving ") {
            break rest.split_whitespace().next().expect("url").to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Running(server), url)
}

/// The text of the element `css` selects, waiting up to 20 s for it. The view re-renders as
/// events arrive, so a node can be replaced while it is being found or read: then try again.
pub async fn text_of(c: &Client, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = match c.find(Locator::Css(css)).await {
            Ok(found) => found.text().await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(text) => return text,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                // What the page said instead is usually the explanation (an error shown).
                let page = match c.find(Locator::Css("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!("{css}: {e}\npage:\n{page}")
            }
        }
    }
}

/// Approves the open request as a person would: Approve, then, when the console asks (a risky
/// request: production, policy-marked risk, hidden characters), the confirmation naming what
/// is approved. The console then waits out its undo window before signing.
pub async fn approve_in_ui(c: &Client) {
    click(c, "[data-testid=approve]").await;
    if c.find(Locator::Css("[data-testid=confirm-approve]"))
        .await
        .is_ok()
    {
        click(c, "[data-testid=confirm-approve]").await;
        // The undo window: the decision is signed and sent when it closes.
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.find(Locator::Css("[data-testid=undo-bar]")).await.is_ok() {
            assert!(Instant::now() < deadline, "the undo window never closed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the console says of the decision just made: on the decided request while it is on
/// screen, or above the next request once that opened.
pub async fn decided(c: &Client) -> String {
    text_of(c, "[data-testid=result], [data-testid=last-decision]").await
}

/// Clicks the element `css` selects, waiting up to 20 s for it, finding it again if it was
/// replaced meanwhile.
pub async fn click(c: &Client, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = match c.find(Locator::Css(css)).await {
            Ok(found) => found.click().await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(()) => return,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("clicking {css}: {e}"),
        }
    }
}

/// Replaces the text of the input `css` selects.
pub async fn set_input(c: &Client, css: &str, text: &str) {
    let input = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    input.clear().await.expect("clearing");
    input.send_keys(text).await.expect("typing");
}

pub async fn type_into(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .expect("typing");
}

/// Waits until `check` holds on the page's text.
pub async fn until_page(c: &Client, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = c
            .find(Locator::Css("body"))
            .await
            .expect("body")
            .text()
            .await
            .unwrap_or_default();
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}; page says:\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn wait_exit(mut child: Child, within: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return (status.code(), err);
        }
        assert!(Instant::now() < deadline, "agent did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Saves a screenshot of the window as `name` in [`screenshot_dir`]. WebKitWebDriver takes a
/// screenshot after the page's next paint; without GPU compositing a page where nothing moves
/// (countdowns now change once a minute) does not paint again, and the call would wait out its
/// 60 s timeout while the agents' own waits run out. A repaint is nudged shortly after asking.
pub async fn save_screenshot(c: &Client, name: &str) {
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).expect("artifacts dir");
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.execute(
        "setTimeout(() => { document.body.style.opacity = '0.999'; \
         setTimeout(() => { document.body.style.opacity = ''; }, 50); }, 100)",
        vec![],
    )
    .await
    .expect("script runs");
    std::fs::write(shots.join(name), c.screenshot().await.expect("screenshot"))
        .expect("save screenshot");
}

pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("COUNTERSIGN_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts"))
}

/// First run in the UI: the SoftHSM2 token is offered; the key is made on the token, the PIN
/// is asked in the console's own dialog; then the enrolment form.
pub async fn enrol_in_ui(c: &Client, w: &World, code: &str) {
    enrol_in_ui_with(c, w, code, "pkcs11").await;
}

/// First run with the key on `backend` (`pkcs11`: the SoftHSM2 token, PIN in the dialog;
/// `software`: a development key, no PIN).
pub async fn enrol_in_ui_with(c: &Client, w: &World, code: &str, backend: &str) {
    create_key_in_ui(c, backend).await;
    type_into(c, "[data-testid=server]", &w.url).await;
    type_into(c, "[data-testid=approver]", "bob@example.com").await;
    type_into(c, "[data-testid=code]", code).await;
    click(c, "[data-testid=enroll]").await;
    until_page(c, "the console goes live", |t| t.contains("Live")).await;
}

/// First run's first step: the key, on `backend` (`pkcs11`: the SoftHSM2 token, its PIN typed
/// in the console's dialog).
pub async fn create_key_in_ui(c: &Client, backend: &str) {
    click(c, &format!("[data-testid=candidate-{backend}]")).await;
    click(c, "[data-testid=create-key]").await;
    if backend == "pkcs11" {
        c.wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("[data-testid=pin]"))
            .await
            .expect("PIN dialog");
        type_into(c, "[data-testid=pin]", SoftHsm::PIN).await;
        click(c, "[data-testid=pin-submit]").await;
        let made = text_of(c, "[data-testid=key-made]").await;
        assert!(made.contains("PKCS#11 token"), "{made}");
    } else {
        text_of(c, "[data-testid=key-made]").await;
    }
}
