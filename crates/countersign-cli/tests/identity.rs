//! A headless approver enrols by signing in with the organisation's OpenID Provider instead of
//! an administrator's code: `countersign keys enroll --sign-in` against a real `countersign serve`
//! configured with a real, certified provider (`oidc-provider`, npm, `tests/oidc`); the CLI shows
//! a code, the person enters it at the provider on another device (driven here through the
//! provider's own pages by `tests/oidc/browser.py`), and the key is enrolled for the identity the
//! provider vouched for, who can then approve.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use countersign_testdevices::OidcProvider;
use support::*;

#[test]
fn a_headless_approver_enrols_with_the_device_sign_in_and_approves() {
    let provider = OidcProvider::start();
    let w = World::new();
    let config = w.root.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            r#"[oidc]
issuer = "{issuer}"
client_id = "countersign"
groups_claim = "groups"
[oidc.groups]
"okta-security" = "security"
"#,
            issuer = provider.url
        ),
    )
    .expect("serve.toml");
    let server = Server::start_with(
        &w.data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            &config.display().to_string(),
        ],
    );
    let record = w.root.join("alice.key.json").display().to_string();
    ok(&["keys", "init", "--key", &record, "--backend", "software"]);
    let profile = w.root.join("alice.json").display().to_string();
    let mut enrol = Command::new(BIN)
        .args(["keys", "enroll", "--sign-in", "--server", &server.url])
        .args(["--key", &record, "--profile", &profile])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keys enroll --sign-in");
    let mut lines = BufReader::new(enrol.stderr.take().expect("stderr")).lines();
    let mut shown = Vec::new();
    let direct = loop {
        let line = lines
            .next()
            .expect("the CLI shows the code")
            .expect("utf-8");
        shown.push(line.clone());
        if let Some(rest) = line.strip_prefix("(or open ") {
            break rest.trim_end_matches(')').to_owned();
        }
    };
    assert!(
        shown
            .iter()
            .any(|l| l.starts_with("To sign in, open ") && l.contains("enter the code")),
        "{shown:?}"
    );
    let browser = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc/browser.py"))
        .args([&direct, "alice"])
        .output()
        .expect("python3 tests/oidc/browser.py");
    assert!(
        browser.status.success(),
        "{}",
        String::from_utf8_lossy(&browser.stderr)
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = enrol.wait().expect("enrol exits");
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("for alice@example.com")),
        "{rest:?}"
    );

    // She is an approver in security now, and approves with the key she enrolled.
    let listed = w.admin(&["list-approvers"]);
    assert!(
        listed.contains("alice@example.com") && listed.contains("security"),
        "{listed}"
    );
    let out = request(
        &server.url,
        &w.token,
        "iam.role.update",
        "rotate the key",
        &[],
    );
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let pending = wait_pending(&profile);
    assert_eq!(pending, id);
    ok(&["approve", &id, "--profile", &profile]);
    drop(provider);
    server.stop();
}
