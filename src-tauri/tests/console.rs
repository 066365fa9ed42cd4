//! The real console binary under Xvfb, driven through tauri-driver and WebKitWebDriver,
//! against a real `countersign serve`, with its key on a real SoftHSM2 token: first run
//! (key on the token, PIN in the console's dialog, enrolment), a request submitted by the
//! agent CLI shows in the inbox with its diff, approving signs and the agent's command runs,
//! denying stops it, and an expired request can no longer be approved.
//!
//! Needs `tauri-driver` (`cargo install tauri-driver --locked`), `WebKitWebDriver`
//! (webkit2gtk-driver), `xvfb-run` and `dbus-daemon`; `scripts/setup.sh` installs them. The
//! `countersign` binary comes from the same `cargo test --workspace` build.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use countersign_testdevices::SoftHsm;
use fantoccini::{Client, ClientBuilder, Locator};

const CONSOLE: &str = env!("CARGO_BIN_EXE_countersign-console");

/// A policy with a short-lived request type for the expiry path; otherwise one approver from
/// security.
const POLICY: &str = r#"package countersign
import rego.v1
decision := {
	"outcome": "require_approval", "reason": "short-lived test request",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 10,
	"require_hardware_key": true, "quick_approve": false,
} if input.action.type == "test.short"
else := {
	"outcome": "require_approval", "reason": "IAM changes in production need one approver from security",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": true, "quick_approve": false,
}
"#;

fn countersign() -> PathBuf {
    let path = Path::new(CONSOLE).with_file_name("countersign");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p countersign-cli` (cargo test --workspace does)",
        path.display()
    );
    path
}

fn ok(args: &[&str]) -> String {
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
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct World {
    dir: tempfile::TempDir,
    url: String,
    agent_token: String,
    driver_port: u16,
    // Dropped in this order after the test: the console's driver, the bus, the service,
    // then the token's directory.
    _driver: Running,
    _bus: Running,
    _server: Running,
    _token: SoftHsm,
}

impl World {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let d = data.display().to_string();
        ok(&[
            "admin",
            "--data-dir",
            &d,
            "approver",
            "bob@example.com",
            "--group",
            "security",
        ]);
        let agent_token = ok(&[
            "admin",
            "--data-dir",
            &d,
            "agent-token",
            "agent:release-bot",
        ]);
        let policy = dir.path().join("policy.rego");
        std::fs::write(&policy, POLICY).expect("policy");
        let mut server = Command::new(countersign())
            .args([
                "serve",
                "--data-dir",
                &d,
                "--listen",
                "127.0.0.1:0",
                "--policy",
            ])
            .arg(&policy)
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
        let driver = Command::new("xvfb-run")
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tauri-driver (cargo install tauri-driver --locked) under xvfb-run");
        let world = Self {
            dir,
            url,
            agent_token,
            driver_port,
            _driver: Running(driver),
            _bus: Running(bus),
            _server: Running(server),
            _token: token,
        };
        world.wait_for_driver();
        world
    }

    fn wait_for_driver(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.driver_port)).is_err() {
            assert!(Instant::now() < deadline, "tauri-driver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn console(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "tauri:options".into(),
            serde_json::json!({ "application": CONSOLE }),
        );
        caps.insert("browserName".into(), "wry".into());
        let _ = rustls::crypto::ring::default_provider().install_default();
        ClientBuilder::rustls()
            .expect("rustls WebDriver client")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.driver_port))
            .await
            .expect("WebDriver session with the console")
    }

    /// Starts `countersign run` for a request; it runs `touch marker` only if approved.
    fn agent(&self, kind: &str, diff: Option<&str>, marker: &Path) -> Child {
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

async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
        .text()
        .await
        .expect("text")
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn type_into(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .expect("typing");
}

/// Waits until `check` holds on the page's text.
async fn until_page(c: &Client, what: &str, check: impl Fn(&str) -> bool) -> String {
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

fn wait_exit(mut child: Child, within: Duration) -> (Option<i32>, String) {
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

fn screenshot_dir() -> PathBuf {
    std::env::var_os("COUNTERSIGN_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts"))
}

#[tokio::test(flavor = "multi_thread")]
async fn first_run_then_approve_deny_and_expiry_in_the_real_console() {
    let w = World::start();
    let d = w.dir.path().join("data").display().to_string();
    let code = ok(&[
        "admin",
        "--data-dir",
        &d,
        "enrolment-code",
        "bob@example.com",
    ]);
    let c = w.console().await;

    enrol_in_ui(&c, &w, &code).await;

    // A request from the agent CLI shows in the inbox with its diff; approving runs it.
    let marker = w.dir.path().join("approved");
    let diff = "--- a/policy.json\n+++ b/policy.json\n@@ -1,3 +1,4 @@\n {\n   \"Action\": [\"s3:GetObject\"\n+  , \"s3:PutObject\"\n ]\n";
    let agent = w.agent("iam.role.update", Some(diff), &marker);
    click(&c, "[data-testid=inbox-item]").await;
    let page = until_page(&c, "the request view shows the diff", |t| {
        t.contains("iam.role.update") && t.contains("s3:PutObject") && t.contains("+1")
    })
    .await;
    assert!(
        page.contains("Release 4.2 uploads build artefacts"),
        "{page}"
    );
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).expect("artifacts dir");
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(
        shots.join("console-request.png"),
        c.screenshot().await.expect("screenshot"),
    )
    .expect("save screenshot");
    click(&c, "[data-testid=approve]").await;
    let result = text_of(&c, "[data-testid=result]").await;
    assert!(result.contains("Approved"), "{result}");
    let (status, err) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(0), "{err}");
    assert!(marker.exists(), "the approved command ran");

    // Deny: the agent's command never runs.
    let denied_marker = w.dir.path().join("denied");
    let agent = w.agent("iam.policy.attach", None, &denied_marker);
    until_page(&c, "the second request arrives", |t| {
        t.contains("iam.policy.attach")
    })
    .await;
    click(&c, "[data-testid=inbox-item]").await;
    click(&c, "[data-testid=deny]").await;
    let result = text_of(&c, "[data-testid=result]").await;
    assert!(result.contains("Denied"), "{result}");
    let (status, _) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(3), "a denied request exits 3");
    assert!(!denied_marker.exists(), "a denied command ran");

    // Expiry: once the request is past its time it cannot be approved from the console.
    let short_marker = w.dir.path().join("short");
    let agent = w.agent("test.short", None, &short_marker);
    until_page(&c, "the short-lived request arrives", |t| {
        t.contains("test.short")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(
        shots.join("console-inbox.png"),
        c.screenshot().await.expect("screenshot"),
    )
    .expect("save screenshot");
    let (status, _) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(4), "an expired request exits 4");
    until_page(&c, "the expired request leaves the inbox", |t| {
        !t.contains("test.short")
    })
    .await;
    assert!(!short_marker.exists());

    c.close().await.expect("close session");
}

/// First run in the UI: the SoftHSM2 token is offered; the key is made on the token, the PIN
/// is asked in the console's own dialog; then the enrolment form.
async fn enrol_in_ui(c: &Client, w: &World, code: &str) {
    click(c, "[data-testid=candidate-pkcs11]").await;
    click(c, "[data-testid=create-key]").await;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("[data-testid=pin]"))
        .await
        .expect("PIN dialog");
    type_into(c, "[data-testid=pin]", SoftHsm::PIN).await;
    click(c, "[data-testid=pin-submit]").await;
    let made = text_of(c, "[data-testid=key-made]").await;
    assert!(made.contains("PKCS#11 token"), "{made}");
    type_into(c, "[data-testid=server]", &w.url).await;
    type_into(c, "[data-testid=approver]", "bob@example.com").await;
    type_into(c, "[data-testid=code]", code).await;
    click(c, "[data-testid=enroll]").await;
    until_page(c, "the console goes live", |t| t.contains("Live")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_request_is_shown_as_text_with_warnings_and_a_5_mb_diff_stays_usable() {
    let w = World::start();
    let d = w.dir.path().join("data").display().to_string();
    let code = ok(&[
        "admin",
        "--data-dir",
        &d,
        "enrolment-code",
        "bob@example.com",
    ]);
    let c = w.console().await;
    enrol_in_ui(&c, &w, &code).await;

    // HTML and script in the justification, a right-to-left override in the resource, a
    // zero-width space in a parameter, and a diff of about 5 MB.
    let script = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>";
    let diff_path = w.dir.path().join("huge.diff");
    let mut diff = String::from("--- a/data.json\n+++ b/data.json\n@@ -0,0 +1,75000 @@\n");
    for i in 0..75_000 {
        diff.push_str(&format!(
            "+  \"key{i:05}\": \"value {i} lorem ipsum dolor sit amet consectetur\",\n"
        ));
    }
    assert!(diff.len() > 5_000_000, "{} bytes", diff.len());
    std::fs::write(&diff_path, &diff).expect("diff");
    let marker = w.dir.path().join("hostile");
    let agent = Command::new(countersign())
        .args(["run", "--server", &w.url, "--token", &w.agent_token])
        .args(["--type", "iam.role.update", "--environment", "prod"])
        .args(["--resource", "s3://bucket/report\u{202E}fdp.exe"])
        .args(["--justification", &format!("{script} ship it")])
        .args(["--param", "note=admin\u{200B}"])
        .arg("--diff")
        .arg(&diff_path)
        .args(["--diff-language", "json", "--wait", "60", "--", "touch"])
        .arg(&marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent");

    click(&c, "[data-testid=inbox-item]").await;
    let page = until_page(&c, "the hostile request is shown", |t| {
        t.contains("ship it")
    })
    .await;
    assert!(
        page.contains("<script>window.__pwned=2</script>"),
        "the markup shows as text"
    );
    assert!(page.contains("⟦U+202E⟧"), "the override is made visible");
    assert!(
        page.contains("⟦U+200B⟧"),
        "the zero-width space is made visible"
    );
    let warning = text_of(&c, "[role=alert]").await;
    assert!(
        warning.contains("hidden character") && warning.contains("bidirectional"),
        "{warning}"
    );
    let dom = c
        .execute(
            "return [window.__pwned === undefined, document.querySelectorAll('img').length, \
             document.querySelectorAll('script').length]",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(
        dom,
        serde_json::json!([true, 0, 1]),
        "nothing from the agent executed"
    );

    // The diff is paged, never cut silently, and the view still answers.
    let held = text_of(&c, "[data-testid=diff-held]").await;
    assert!(held.contains("more lines not shown yet"), "{held}");
    click(&c, ".segmented button:nth-child(2)").await;
    let held = text_of(&c, "[data-testid=diff-held]").await;
    assert!(held.contains("more lines not shown yet"), "{held}");
    click(&c, "[data-testid=deny]").await;
    let result = text_of(&c, "[data-testid=result]").await;
    assert!(result.contains("Denied"), "{result}");
    let (status, _) = wait_exit(agent, Duration::from_secs(60));
    assert_eq!(status, Some(3));
    assert!(!marker.exists());
    c.close().await.expect("close session");
}
