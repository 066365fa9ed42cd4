//! The real console binary under Xvfb, driven through tauri-driver and WebKitWebDriver,
//! against a real `countersign serve`, with its key on a real SoftHSM2 token: first run
//! (key on the token, PIN in the console's dialog, enrolment), a request submitted by the
//! agent CLI shows in the inbox with its diff, approving signs and the agent's command runs,
//! denying stops it, and an expired request can no longer be approved.
//!
//! Needs `tauri-driver` (`cargo install tauri-driver --locked`), `WebKitWebDriver`
//! (webkit2gtk-driver), `xvfb-run` and `dbus-daemon`; `scripts/setup.sh` installs them. The
//! `countersign` binary comes from the same `cargo test --workspace` build.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn first_run_then_approve_deny_and_expiry_in_the_real_console() {
    let w = World::start();
    let c = w.enrolled_console().await;

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
    // The policy's risk, in words, in the request view and the inbox.
    let risk = text_of(&c, "[data-testid=risk]").await;
    assert!(
        risk.contains("High risk") && risk.contains("changes permissions (IAM)"),
        "{risk}"
    );
    // Read from the DOM: WebKitWebDriver leaves out text in clipped (ellipsised) spans.
    let row = c
        .execute(
            "return document.querySelector('[data-testid=inbox-risk]').textContent;",
            vec![],
        )
        .await
        .expect("script");
    assert!(
        row.as_str().is_some_and(|r| r.contains("High risk")),
        "{row}"
    );
    save_screenshot(&c, "console-request.png").await;
    approve_in_ui(&c).await;
    let result = decided(&c).await;
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
    let result = decided(&c).await;
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
    // It opened by itself (nothing else was on screen), and when it expires while being read
    // it stays, frozen, saying what happened, with nothing left to press.
    selected_is(&c, "test.short").await;
    let (status, _) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(4), "an expired request exits 4");
    let frozen = text_of(&c, "[data-testid=frozen]").await;
    assert!(frozen.contains("expired"), "{frozen}");
    assert!(
        text_of(&c, ".request").await.contains("test.short"),
        "the request is still on screen"
    );
    for button in ["approve", "deny"] {
        let b = c
            .find(fantoccini::Locator::Css(&format!("[data-testid={button}]")))
            .await
            .expect("button");
        assert_eq!(
            b.attr("disabled").await.expect("attr").as_deref(),
            Some("true"),
            "{button} is off on a frozen request"
        );
    }
    let inbox = text_of(&c, ".inbox").await;
    assert!(!inbox.contains("test.short"), "it left the inbox: {inbox}");
    assert!(!short_marker.exists());

    c.close().await.expect("close session");
}

/// Settings: the service's address changes only once the key has signed in at the new one;
/// the key is replaced by one made in the TPM (chosen in the UI), which then signs an approval
/// the service accepts; moving to another service starts a new verified history and keeps the
/// old one's file.
#[tokio::test(flavor = "multi_thread")]
async fn settings_move_the_service_address_and_replace_the_key_with_a_tpm_key() {
    let w = World::start();
    let c = w.enrolled_console().await;
    let console_dir = w.dir.path().join("console");
    let saved = || -> serde_json::Value {
        let text = std::fs::read_to_string(console_dir.join("console.json")).expect("settings");
        serde_json::from_str(&text).expect("settings are JSON")
    };
    until_page(&c, "the first service's log is verified", |t| {
        t.contains("Log verified to checkpoint")
    })
    .await;
    let first_key = saved()["key"]["public_key"].clone();

    // An address with nothing behind it changes nothing.
    click(&c, "[data-testid=tab-settings]").await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    set_input(&c, "[data-testid=settings-server]", &dead).await;
    click(&c, "[data-testid=settings-save-server]").await;
    let error = text_of(&c, "[data-testid=settings-error]").await;
    assert!(error.contains("Nothing was changed"), "{error}");
    assert_eq!(saved()["server"], w.url.as_str());

    // The same service under another name: the key signs in there, so the address is kept.
    let alias = w.url.replace("127.0.0.1", "localhost");
    set_input(&c, "[data-testid=settings-server]", &alias).await;
    click(&c, "[data-testid=settings-save-server]").await;
    let notice = text_of(&c, "[data-testid=settings-notice]").await;
    assert!(notice.contains(&alias), "{notice}");
    assert_eq!(saved()["server"], alias.as_str());
    assert_eq!(
        saved()["history_file"],
        "mirror.db",
        "same log, same history"
    );
    until_page(&c, "live at the new address", |t| t.contains("Live")).await;

    // Replace the key with one in the TPM, enrolled with a new code.
    click(&c, "[data-testid=settings-replace-key]").await;
    click(&c, "[data-testid=candidate-tpm]").await;
    click(&c, "[data-testid=create-key]").await;
    let made = text_of(&c, "[data-testid=key-made]").await;
    assert!(made.contains("TPM 2.0"), "{made}");
    type_into(&c, "[data-testid=code]", &w.enrolment_code()).await;
    click(&c, "[data-testid=enroll]").await;
    let notice = text_of(&c, "[data-testid=settings-notice]").await;
    assert!(notice.contains("still enrolled"), "{notice}");
    assert_eq!(saved()["key"]["kind"], "tpm");
    assert_ne!(saved()["key"]["public_key"], first_key);
    assert_eq!(saved()["server"], alias.as_str());
    let badge = text_of(&c, ".keybadge").await;
    assert!(badge.contains("TPM 2.0"), "{badge}");
    // The TPM's maker is one the service trusts: the key is attested, not just claimed.
    let attestation = text_of(&c, "[data-testid=settings-key-attestation]").await;
    assert!(
        attestation.contains("attested by") && attestation.contains("swtpm-localca"),
        "{attestation}"
    );
    assert!(
        saved()["key"]["attested_by"]
            .as_str()
            .is_some_and(|r| r.contains("swtpm-localca")),
        "{}",
        saved()
    );
    save_screenshot(&c, "console-settings.png").await;

    // The TPM key signs an approval the service accepts; the agent's command runs.
    let marker = w.dir.path().join("approved-by-tpm");
    let agent = w.agent("iam.role.update", None, &marker);
    click(&c, "[data-testid=tab-inbox]").await;
    click(&c, "[data-testid=inbox-item]").await;
    approve_in_ui(&c).await;
    let result = decided(&c).await;
    assert!(result.contains("Approved"), "{result}");
    let (status, err) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(0), "{err}");
    assert!(marker.exists());
    // The history shows which root vouched for the key behind the approval, as the log says.
    click(&c, "[data-testid=tab-history]").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let row = text_of(&c, "[data-testid=history-item]").await;
        if row.contains("approved") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the approval never reached the history: {row}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    click(&c, "[data-testid=history-item]").await;
    let decision = text_of(&c, "[data-testid=history-decision]").await;
    assert!(
        decision.contains("attested by") && decision.contains("swtpm-localca"),
        "{decision}"
    );

    // Another service keeps another log: a new enrolment there starts a new history file and
    // leaves the first one as it was.
    let (_other, other_url, other_code) = w.other_service("other");
    click(&c, "[data-testid=tab-settings]").await;
    click(&c, "[data-testid=settings-replace-key]").await;
    click(&c, "[data-testid=candidate-tpm]").await;
    click(&c, "[data-testid=create-key]").await;
    text_of(&c, "[data-testid=key-made]").await;
    set_input(&c, "[data-testid=server]", &other_url).await;
    type_into(&c, "[data-testid=code]", &other_code).await;
    click(&c, "[data-testid=enroll]").await;
    text_of(&c, "[data-testid=settings-notice]").await;
    assert_eq!(saved()["server"], other_url.as_str());
    let history_file = saved()["history_file"]
        .as_str()
        .expect("history file")
        .to_owned();
    assert!(history_file.starts_with("mirror-"), "{history_file}");
    let shown = text_of(&c, "[data-testid=settings-history-file]").await;
    assert!(shown.ends_with(&history_file), "{shown}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = mirrored_from(&console_dir.join(&history_file)).await;
        if matches!(&now, Some((url, size)) if *url == other_url && *size > 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "new history: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = mirrored_from(&console_dir.join("mirror.db")).await;
    assert!(
        matches!(&first, Some((url, size)) if *url == alias && *size > 0),
        "the first history stays: {first:?}"
    );
    click(&c, "[data-testid=tab-history]").await;
    assert!(
        c.find(fantoccini::Locator::Css("[data-testid=audit-alarm]"))
            .await
            .is_err(),
        "a new log in a new file raises no alarm"
    );
    c.close().await.expect("close session");
}

/// Keyboard first: `j`/`k` move through the inbox, `d` denies and `a` approves the selected
/// request (each reaching the agent), and letters typed into the comment field are text, not
/// shortcuts.
#[tokio::test(flavor = "multi_thread")]
async fn keyboard_moves_through_the_inbox_and_decides() {
    let w = World::start();
    let c = w.enrolled_console().await;
    let first_marker = w.dir.path().join("first");
    let first = w.agent("iam.role.update", None, &first_marker);
    until_page(&c, "the first request arrives", |t| {
        t.contains("iam.role.update")
    })
    .await;
    let second_marker = w.dir.path().join("second");
    let second = w.agent("iam.policy.attach", None, &second_marker);
    until_page(&c, "the second request arrives", |t| {
        t.contains("iam.policy.attach")
    })
    .await;
    selected_is(&c, "iam.role.update").await;
    // The inbox with two requests waiting, the first open: the README's picture.
    save_screenshot(&c, "console-inbox.png").await;

    press(&c, "j").await;
    selected_is(&c, "iam.policy.attach").await;
    press(&c, "k").await;
    selected_is(&c, "iam.role.update").await;
    // Focus and selection are one thing: once in the list, focus moves with j/k.
    click(&c, ".item.selected").await;
    press(&c, "j").await;
    selected_is(&c, "iam.policy.attach").await;
    let focused = c.active_element().await.expect("focus");
    assert!(
        focused
            .text()
            .await
            .expect("text")
            .contains("iam.policy.attach"),
        "focus follows the selection"
    );
    press(&c, "k").await;
    selected_is(&c, "iam.role.update").await;

    // With focus on the top bar, `d` decides nothing.
    click(&c, "[data-testid=snooze]").await;
    click(&c, "[data-testid=snooze]").await;
    press(&c, "d").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        c.find_all(fantoccini::Locator::Css("[data-testid=inbox-item]"))
            .await
            .expect("items")
            .len(),
        2,
        "a key pressed on the top bar decided nothing"
    );

    // In the comment field, `a` and `d` are letters.
    click(&c, "[data-testid=comment]").await;
    press(&c, "ad").await;
    click(&c, ".brand").await;
    assert_eq!(
        c.find(fantoccini::Locator::Css("[data-testid=comment]"))
            .await
            .expect("comment")
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("ad")
    );
    assert_eq!(
        c.find_all(fantoccini::Locator::Css("[data-testid=inbox-item]"))
            .await
            .expect("items")
            .len(),
        2,
        "nothing was decided while typing"
    );

    press(&c, "d").await;
    let result = decided(&c).await;
    assert!(result.contains("Denied"), "{result}");
    let (status, _) = wait_exit(first, Duration::from_secs(30));
    assert_eq!(status, Some(3), "the first request was denied");
    assert!(!first_marker.exists());

    // The next request opened by itself under the outcome; a production change asks for a
    // confirmation naming it, then waits a few seconds in which Undo sends nothing.
    selected_is(&c, "iam.policy.attach").await;
    let last = text_of(&c, "[data-testid=last-decision]").await;
    assert!(last.contains("Denied"), "{last}");
    press(&c, "j").await;
    press(&c, "a").await;
    let confirm = text_of(&c, "[data-testid=confirm]").await;
    assert!(
        confirm.contains("iam.policy.attach") && confirm.contains("prod"),
        "{confirm}"
    );
    click(&c, "[data-testid=confirm-approve]").await;
    let waiting = text_of(&c, "[data-testid=undo-bar]").await;
    assert!(waiting.contains("Approving iam.policy.attach"), "{waiting}");
    click(&c, "[data-testid=undo]").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!second_marker.exists(), "an undone approval was never sent");
    assert_eq!(
        c.find_all(fantoccini::Locator::Css("[data-testid=inbox-item]"))
            .await
            .expect("items")
            .len(),
        1,
        "still waiting after Undo"
    );
    press(&c, "a").await;
    click(&c, "[data-testid=confirm-approve]").await;
    until_page(&c, "the approval is sent after its undo window", |t| {
        t.contains("Approved")
    })
    .await;
    let (status, err) = wait_exit(second, Duration::from_secs(30));
    assert_eq!(status, Some(0), "{err}");
    assert!(second_marker.exists());
    c.close().await.expect("close session");
}

/// Waits until the selected inbox item is the one about `what`.
async fn selected_is(c: &fantoccini::Client, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = text_of(c, ".item.selected").await;
        if now.contains(what) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "selected: {now}, wanted {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types `keys` into whatever has the focus, as a person at the keyboard would.
async fn press(c: &fantoccini::Client, keys: &str) {
    c.active_element()
        .await
        .expect("focused element")
        .send_keys(keys)
        .await
        .expect("keys");
}

/// The service a mirror file is bound to and how many events it verified.
async fn mirrored_from(db: &std::path::Path) -> Option<(String, i64)> {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.ok()?;
    sqlx::query_as("SELECT server_url, verified_size FROM trust")
        .fetch_optional(&mut conn)
        .await
        .ok()
        .flatten()
}

/// Where the policy asks, the approver must pick the code the requester was shown: Approve
/// stays disabled until a code is picked, a wrong pick is refused by the service, the right
/// one approves and the agent's command runs.
#[tokio::test(flavor = "multi_thread")]
async fn verification_code_must_be_picked_before_approving() {
    let w = World::start();
    let c = w.enrolled_console().await;
    let marker = w.dir.path().join("verified");
    let mut agent = w.agent("test.verify", None, &marker);
    // The agent prints the code for its human to pass on; read it as they would.
    let stderr = agent.stderr.take().expect("agent stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.strip_prefix("verification code: ") {
                let _ = tx.send(rest.chars().take(2).collect::<String>());
            }
        }
    });
    let shown = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the agent printed a verification code");

    click(&c, "[data-testid=inbox-item]").await;
    let page = until_page(&c, "the request asks for the code", |t| {
        t.contains("test.verify") && t.to_lowercase().contains("verification code")
    })
    .await;
    assert!(page.contains(&shown), "the right code is among the choices");
    let approve = c
        .find(fantoccini::Locator::Css("[data-testid=approve]"))
        .await
        .expect("approve button");
    assert_eq!(
        approve.attr("disabled").await.expect("attr"),
        Some("true".into()),
        "Approve is disabled until a code is picked"
    );
    let codes = c
        .find_all(fantoccini::Locator::Css(".codes button"))
        .await
        .expect("choices");
    assert_eq!(codes.len(), 3);
    let mut wrong = None;
    for b in &codes {
        let text = b.text().await.expect("text");
        if text != shown {
            wrong = Some(text);
            break;
        }
    }
    let wrong = wrong.expect("a decoy");
    click(&c, &format!("[data-testid=code-{wrong}]")).await;
    approve_in_ui(&c).await;
    let error = text_of(&c, "[data-testid=error]").await;
    assert!(error.contains("verification_code_wrong"), "{error}");
    assert!(!marker.exists(), "a wrong code approved");

    click(&c, &format!("[data-testid=code-{shown}]")).await;
    approve_in_ui(&c).await;
    let result = decided(&c).await;
    assert!(result.contains("Approved"), "{result}");
    let (status, _) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(0));
    assert!(marker.exists(), "the approved command ran");
    c.close().await.expect("close session");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_request_is_shown_as_text_with_warnings_and_a_5_mb_diff_stays_usable() {
    let w = World::start();
    let c = w.enrolled_console().await;

    // HTML and script in the justification, a right-to-left override and a zero-width space in
    // parameters (data keeps them; the service refuses them in the resource since issue 15),
    // and a diff of about 5 MB.
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
        .args(["--resource", "s3://bucket/report"])
        .args(["--justification", &format!("{script} ship it")])
        .args(["--param", "file=report\u{202E}fdp.exe"])
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
    let warning = text_of(&c, ".warning[role=alert]").await;
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
    // What a page of text and forms never needs is not there to be reached: WebGL, WebAudio,
    // media elements, camera and microphone. (With WebKit's defaults this probe gives
    // [false, "function", "[object HTMLVideoElement]", "object"].)
    let features = c
        .execute(
            "return [document.createElement('canvas').getContext('webgl') === null, \
             typeof window.AudioContext, String(document.createElement('video')), \
             typeof navigator.mediaDevices]",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(
        features,
        serde_json::json!([
            true,
            "undefined",
            "[object HTMLUnknownElement]",
            "undefined"
        ]),
        "web view features the console turns off"
    );

    // The diff is paged, never cut silently, and the view still answers.
    let held = text_of(&c, "[data-testid=diff-held]").await;
    assert!(held.contains("more lines not shown yet"), "{held}");
    click(&c, ".segmented button:nth-child(2)").await;
    let held = text_of(&c, "[data-testid=diff-held]").await;
    assert!(held.contains("more lines not shown yet"), "{held}");
    click(&c, "[data-testid=deny]").await;
    let result = decided(&c).await;
    assert!(result.contains("Denied"), "{result}");
    let (status, _) = wait_exit(agent, Duration::from_secs(60));
    assert_eq!(status, Some(3));
    assert!(!marker.exists());
    c.close().await.expect("close session");
}

/// Everything a test starts ends with it, pass or fail: the display, tauri-driver, the
/// WebKitWebDriver and console it launched, the private bus and the service.
#[tokio::test(flavor = "multi_thread")]
async fn a_test_world_leaves_no_process_behind() {
    let w = World::start();
    let c = w.console().await;
    let (group, bus, service) = w.processes();
    let in_group = || {
        Command::new("pgrep")
            .args(["-g", &group.to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    };
    assert!(
        in_group() >= 3,
        "xvfb-run, Xvfb and tauri-driver run in the group"
    );
    // The session is left open, as a failing test would leave it.
    drop(c);
    drop(w);
    assert_eq!(in_group(), 0, "processes left in the driver's group");
    for (name, pid) in [("bus", bus), ("service", service)] {
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(!alive, "the {name} ({pid}) is still running");
    }
}

/// First run with the organisation's OpenID Provider: the console finds it from the service's
/// address and offers "Sign in with …"; the system browser (`$BROWSER`, here a script driving
/// the provider's own pages as alice) signs in with the authorization code flow and PKCE and
/// returns to the console's loopback address; the key made on the token is enrolled for alice,
/// whom the provider's groups make an approver in security, and her console approves.
#[tokio::test(flavor = "multi_thread")]
async fn first_run_signs_in_with_the_organisation_in_the_system_browser() {
    let provider = countersign_testdevices::OidcProvider::start();
    let w = World::start_with(Options {
        oidc: Some(provider.url.clone()),
        browser_login: Some("alice".into()),
    });
    let c = w.console().await;
    create_key_in_ui(&c, "pkcs11").await;
    type_into(&c, "[data-testid=server]", &w.url).await;
    let button = text_of(&c, "[data-testid=sign-in]").await;
    let host = provider.url.trim_start_matches("http://");
    assert_eq!(button, format!("Sign in with {host}"));
    click(&c, "[data-testid=sign-in]").await;
    until_page(&c, "alice's console goes live", |t| t.contains("Live")).await;
    let log = std::fs::read_to_string(w.dir.path().join("browser.log")).unwrap_or_default();
    assert!(log.contains("signed in"), "the browser leg: {log}");

    let marker = w.dir.path().join("approved");
    let agent = w.agent("iam.role.update", None, &marker);
    click(&c, "[data-testid=inbox-item]").await;
    until_page(&c, "the request shows", |t| t.contains("iam.role.update")).await;
    approve_in_ui(&c).await;
    let result = decided(&c).await;
    assert!(result.contains("Approved"), "{result}");
    let (status, err) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(0), "{err}");
    // The key is alice's, the person the provider vouched for, provisioned in security.
    let approvers = ok(&[
        "admin",
        "--data-dir",
        &w.dir.path().join("data").display().to_string(),
        "list-approvers",
    ]);
    assert!(approvers.contains("alice@example.com"), "{approvers}");
    c.close().await.expect("close session");
}

/// A request whose policy wants a recent sign-in: bob's key was enrolled with a code, so his
/// approval is refused with what to do; "Sign in again" opens the system browser (bob at the
/// provider), the sign-in is recorded behind his key, and the approval then goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_wanting_a_recent_sign_in_is_approved_after_signing_in_again() {
    let provider = countersign_testdevices::OidcProvider::start();
    let w = World::start_with(Options {
        oidc: Some(provider.url.clone()),
        browser_login: Some("bob".into()),
    });
    let c = w.enrolled_console().await;
    let marker = w.dir.path().join("approved");
    let agent = w.agent("test.recent", None, &marker);
    click(&c, "[data-testid=inbox-item]").await;
    until_page(&c, "the request shows", |t| t.contains("test.recent")).await;
    approve_in_ui(&c).await;
    let refused = text_of(&c, "[data-testid=error]").await;
    assert!(refused.contains("sign_in_too_old"), "{refused}");
    click(&c, "[data-testid=sign-in-again]").await;
    let result = decided(&c).await;
    assert!(result.contains("Signed in again"), "{result}");
    approve_in_ui(&c).await;
    until_page(&c, "the approval goes through", |t| t.contains("Approved")).await;
    let (status, err) = wait_exit(agent, Duration::from_secs(30));
    assert_eq!(status, Some(0), "{err}");
    assert!(marker.exists(), "the approved command ran");
    c.close().await.expect("close session");
}

/// An agent asking the same thing again and again: the near-identical requests sit together
/// under one "Deny all", which signs a denial for each (every agent hears no), and leaves the
/// different request waiting.
#[tokio::test(flavor = "multi_thread")]
async fn near_identical_requests_are_grouped_and_denied_together() {
    let w = World::start();
    let c = w.enrolled_console().await;
    let markers: Vec<_> = (0..3)
        .map(|i| w.dir.path().join(format!("same-{i}")))
        .collect();
    let same: Vec<_> = markers
        .iter()
        .map(|m| w.agent("iam.role.update", None, m))
        .collect();
    let other_marker = w.dir.path().join("other");
    let other = w.agent("iam.policy.attach", None, &other_marker);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c
        .find_all(fantoccini::Locator::Css("[data-testid=inbox-item]"))
        .await
        .expect("items")
        .len()
        < 4
    {
        assert!(std::time::Instant::now() < deadline, "four requests arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let group = text_of(&c, "[data-testid=inbox-group]").await;
    assert!(group.contains("3 near-identical requests"), "{group}");
    click(&c, "[data-testid=deny-group]").await;
    for agent in same {
        let (status, _) = wait_exit(agent, Duration::from_secs(30));
        assert_eq!(status, Some(3), "each near-identical request was denied");
    }
    assert!(markers.iter().all(|m| !m.exists()));
    until_page(&c, "only the different request waits", |t| {
        t.contains("Denied 3 near-identical requests") && t.contains("iam.policy.attach")
    })
    .await;
    assert_eq!(
        c.find_all(fantoccini::Locator::Css("[data-testid=inbox-item]"))
            .await
            .expect("items")
            .len(),
        1
    );
    drop(other);
    c.close().await.expect("close session");
}

/// A `countersign://request/<id>` link (as chat notices carry) given to a second start of the
/// console reaches the running one, which opens that request; the second process ends at once.
/// A link to a request that is not waiting says so and opens nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_countersign_link_opens_its_request_in_the_running_console() {
    let w = World::start();
    let c = w.enrolled_console().await;
    let first = w.agent("iam.role.update", None, &w.dir.path().join("first"));
    until_page(&c, "the first request arrives", |t| {
        t.contains("iam.role.update")
    })
    .await;
    let second = w.agent("iam.policy.attach", None, &w.dir.path().join("second"));
    until_page(&c, "the second request arrives", |t| {
        t.contains("iam.policy.attach")
    })
    .await;
    selected_is(&c, "iam.role.update").await;
    // The second request's id, as a notice would carry it.
    press(&c, "j").await;
    selected_is(&c, "iam.policy.attach").await;
    let second_id = text_of(&c, "[data-testid=request-id]").await;
    press(&c, "k").await;
    selected_is(&c, "iam.role.update").await;

    let follow = |link: String| {
        std::process::Command::new(CONSOLE)
            .arg(link)
            .env("DBUS_SESSION_BUS_ADDRESS", &w.bus_address)
            .env("COUNTERSIGN_CONSOLE_DIR", w.dir.path().join("console"))
            // No display: the second start must hand the link over, not open a window.
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("second console start")
    };
    let (code, stderr) = wait_exit(
        follow(format!("countersign://request/{second_id}")),
        Duration::from_secs(15),
    );
    assert_eq!(code, Some(0), "the link was handed over: {stderr}");
    selected_is(&c, "iam.policy.attach").await;
    assert_eq!(text_of(&c, "[data-testid=request-id]").await, second_id);

    // A link to a request that is not waiting: a plain notice, and the view stays.
    let (code, _) = wait_exit(
        follow("countersign://request/0191e7a4-5a6b-7c8d-9e0f-a1b2c3d4e5f6".into()),
        Duration::from_secs(15),
    );
    assert_eq!(code, Some(0));
    let notice = until_page(&c, "the link notice", |t| t.contains("not waiting for you")).await;
    assert!(notice.contains("0191e7a4-5a6b-7c8d-9e0f-a1b2c3d4e5f6"));
    selected_is(&c, "iam.policy.attach").await;
    // Anything else that looks like a link opens nothing and decides nothing.
    let (code, _) = wait_exit(
        follow(format!("countersign://approve/{second_id}")),
        Duration::from_secs(15),
    );
    assert_eq!(
        code,
        Some(0),
        "handed over and refused by the running console"
    );
    selected_is(&c, "iam.policy.attach").await;
    assert!(
        until_page(&c, "both still waiting", |t| t.contains("iam.role.update"))
            .await
            .contains("iam.policy.attach")
    );
    for agent in [first, second] {
        let mut agent = agent;
        let _ = agent.kill();
        let _ = agent.wait();
    }
}

/// A break-glass use (granted at once, without approval) appears in the reviewer's queue in
/// the real console; opening it shows what was done, and "Reviewed" signs the review with the
/// key on the token, which completes the policy's one review and clears the queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_break_glass_use_is_reviewed_from_the_console_with_the_key_on_the_token() {
    let w = World::start();
    let c = w.enrolled_console().await;
    w.break_glass_use();
    until_page(&c, "the use waits for review", |t| {
        t.contains("Break-glass uses to review (1)")
    })
    .await;
    click(&c, "[data-testid=review-item]").await;
    let pane = text_of(&c, "[data-testid=review-pane]").await;
    assert!(pane.contains("Granted without approval"), "{pane}");
    assert!(
        until_page(&c, "the use's facts", |t| t.contains("payments down"))
            .await
            .contains("db/payments")
    );
    type_into(&c, "[data-testid=review-comment]", "matches INC-42").await;
    click(&c, "[data-testid=review-ok]").await;
    let said = until_page(&c, "the review is recorded", |t| {
        t.contains("Review recorded")
    })
    .await;
    assert!(said.contains("1 of 1, complete"), "{said}");
    assert!(
        c.find_all(fantoccini::Locator::Css("[data-testid=review-item]"))
            .await
            .expect("items")
            .is_empty(),
        "the queue is empty once reviewed"
    );
}
