//! The gate as an approver meets it: the official Python MCP SDK (agent) calls `write_file` of
//! the real `@modelcontextprotocol/server-filesystem` through `countersign gate`; the call waits,
//! reaches the real console under Xvfb as a desktop notification (test notification server on a
//! private D-Bus session), its request view shows the gate's diff of the file, bob approves in
//! the console with his key on SoftHSM2, and the file on disk changes exactly as shown, once.
//!
//! Needs what the console's other tests need, plus `tests/mcp/node_modules` (`npm ci` there) and
//! the Python SDK in `/root/.cache/countersign-venv` (or `COUNTERSIGN_PYTHON`); `scripts/setup.sh`
//! installs them.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::notify_server::{Server, serve};
use support::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> String {
    std::env::var("COUNTERSIGN_PYTHON")
        .unwrap_or_else(|_| "/root/.cache/countersign-venv/bin/python".to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gated_write_is_approved_from_the_console_with_its_diff() {
    let w = World::start();
    let notifications = Server::default();
    let _bus = serve(&w.bus_address, notifications.clone()).await;
    let c = w.enrolled_console().await;

    let files = w.dir.path().join("files");
    std::fs::create_dir_all(&files).expect("dir");
    let deploy = files.join("deploy.yaml");
    std::fs::write(&deploy, "service: api\nreplicas: 2\n").expect("file");
    let config = w.dir.path().join("gate.toml");
    std::fs::write(
        &config,
        format!(
            r#"service = "{url}"
[[upstream]]
name = "fs"
command = "{server}"
args = ["{files}"]
environment = "prod"
tags = ["prod-change"]
[upstream.tools.write_file]
resource = "file://{{path}}"
preview = "write-file"
"#,
            url = w.url,
            server = repo()
                .join("tests/mcp/node_modules/.bin/mcp-server-filesystem")
                .display(),
            files = files.display(),
        ),
    )
    .expect("gate.toml");
    let gate = countersign_testdevices::Gate::start(&countersign(), &config);
    let gate_url = gate.url.clone();

    let path = deploy.display().to_string();
    let agent = Command::new(python())
        .arg(repo().join("tests/mcp/agent.py"))
        .arg(&gate_url)
        .args([
            "call",
            "fs__write_file",
            &serde_json::json!({"path": path, "content": "service: api\nreplicas: 3\n"})
                .to_string(),
        ])
        .env("COUNTERSIGN_TOKEN", &w.agent_token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the Python SDK agent (tests/mcp/agent.py)");

    // The desktop notification names what the gate wrote, not what an agent claimed.
    let sent = notifications.wait_for("mcp.fs.write_file").await;
    assert!(sent.summary.contains(&format!("file://{path}")), "{sent:?}");
    assert!(
        sent.body.contains("agent:release-bot") && sent.body.contains("prod"),
        "{sent:?}"
    );
    assert!(
        !sent.actions.contains(&"approve".to_owned()),
        "a file write is not approved from the notification: {sent:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&deploy).expect("file"),
        "service: api\nreplicas: 2\n",
        "nothing runs before approval"
    );

    // The request view shows the gate's diff: the file as it is against what the call writes.
    click(&c, "[data-testid=inbox-item]").await;
    until_page(&c, "the request view shows the file's diff", |t| {
        t.contains("mcp.fs.write_file") && t.contains("replicas: 2") && t.contains("replicas: 3")
    })
    .await;
    save_screenshot(&c, "console-gate-request.png").await;

    approve_in_ui(&c).await;
    let result = decided(&c).await;
    assert!(result.contains("Approved"), "{result}");
    let out = tokio::task::spawn_blocking(move || agent.wait_with_output())
        .await
        .expect("join")
        .expect("agent");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("agent's answer");
    assert_eq!(answer["is_error"], false, "{answer}");
    assert_eq!(
        std::fs::read_to_string(&deploy).expect("file"),
        "service: api\nreplicas: 3\n",
        "the file is exactly as shown"
    );
    c.close().await.expect("close session");
}

/// A database write brokered by the gate, as the approver meets it: `countersign exec` asks for
/// an `UPDATE` on a real PostgreSQL; the console's request view shows the gate's rolled-back
/// preview (how many rows, which, classified values masked) before bob approves it with his key,
/// and the statement then runs once with exactly that effect.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_write_shows_its_row_count_in_the_console() {
    let w = World::start();
    let notifications = Server::default();
    let _bus = serve(&w.bus_address, notifications.clone()).await;
    let c = w.enrolled_console().await;
    let pg = countersign_testdevices::Postgres::shared();
    let (db, minting) = pg.crm_database("console");
    std::fs::write(w.dir.path().join("crm.dsn"), &minting).expect("dsn");
    let config = w.dir.path().join("gate.toml");
    std::fs::write(
        &config,
        format!(
            r#"service = "{url}"
[[connection]]
name = "crm"
postgres_file = "crm.dsn"
environment = "prod"
[connection.classification]
"customers.email" = ["pii"]
"#,
            url = w.url,
        ),
    )
    .expect("gate.toml");
    let gate = countersign_testdevices::Gate::start(&countersign(), &config);
    let exec = Command::new(countersign())
        .args(["exec", "--gate", &gate.url, "--connection", "crm"])
        .args([
            "--sql",
            "UPDATE customers SET plan = 'pro' WHERE plan = 'free'",
        ])
        .args(["--justification", "upgrade the beta testers"])
        .env("COUNTERSIGN_TOKEN", &w.agent_token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("countersign exec");

    let sent = notifications.wait_for("sql.update").await;
    assert!(
        sent.summary.contains("postgres://crm/public.customers"),
        "{sent:?}"
    );
    click(&c, "[data-testid=inbox-item]").await;
    let page = until_page(
        &c,
        "the request view shows the rows the write changes",
        |t| {
            t.contains("2 rows affected")
                && t.contains("\"plan\":\"pro\"")
                && t.contains("(classified)")
        },
    )
    .await;
    assert!(
        !page.contains("ada@example.com"),
        "a classified value was shown"
    );
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM customers WHERE plan = 'pro'"),
        "1",
        "nothing runs before approval"
    );
    save_screenshot(&c, "console-sql-preview.png").await;

    approve_in_ui(&c).await;
    let result = decided(&c).await;
    assert!(result.contains("Approved"), "{result}");
    let out = tokio::task::spawn_blocking(move || exec.wait_with_output())
        .await
        .expect("join")
        .expect("exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("exec's answer");
    assert_eq!(answer["rows_affected"], 2, "{answer}");
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM customers WHERE plan = 'pro'"),
        "3"
    );
    drop(gate);
    c.close().await.expect("close session");
}
