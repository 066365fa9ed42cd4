//! `countersign admin --server … --admin-token …` against a running `countersign serve`: the
//! same operations as on the data directory, over HTTP, each recorded under the token's name.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

/// `countersign admin --server URL --admin-token TOKEN <args>`, whatever its outcome.
fn remote(url: &str, token: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["admin", "--server", url, "--admin-token", token];
    all.extend_from_slice(args);
    cs(&all)
}

fn remote_ok(url: &str, token: &str, args: &[&str]) -> String {
    let out = remote(url, token, args);
    assert!(
        out.status.success(),
        "admin {args:?} over HTTP failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `countersign request` for a read action (the default policy allows reads outright).
fn read_request(url: &str, token: &str) -> std::process::Output {
    request(url, token, "db.read", "admin test", &[])
}

/// The command failed and said `why` on stderr.
fn assert_refused(out: &std::process::Output, why: &str) {
    assert!(
        !out.status.success(),
        "succeeded; expected a refusal naming {why}"
    );
    assert!(stderr(out).contains(why), "{}", stderr(out));
}

/// The audit events of `kind`, as stored, read with the sqlite3 shell.
fn audit_events(data: &Path, kind: &str) -> Vec<serde_json::Value> {
    let out = Command::new("sqlite3")
        .arg(data.join(countersign_store_sqlite::DATABASE_FILE))
        .arg(format!(
            "SELECT event_json FROM audit_events WHERE kind = '{kind}' ORDER BY seq"
        ))
        .output()
        .expect("sqlite3 runs");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event"))
        .collect()
}

#[test]
fn admin_token_manages_tokens_approvers_and_keys_over_http() {
    let w = World::new();
    let server = Server::start(&w.data);
    let url = server.url.clone();
    let token = w.admin(&["admin-token", "alice-admin"]);
    assert!(token.starts_with("csadm_"), "{token}");

    // Approvers and groups.
    remote_ok(
        &url,
        &token,
        &["approver", "dave@example.com", "--group", "security"],
    );
    let listed = remote_ok(&url, &token, &["list-approvers"]);
    assert!(
        listed.contains("dave@example.com  (dave@example.com)  groups [security]"),
        "{listed}"
    );

    // An enrolment code issued over HTTP enrols a real key.
    let code = remote_ok(&url, &token, &["enrolment-code", "dave@example.com"]);
    let key = w.root.join("dave.key.json").display().to_string();
    let profile = w.root.join("dave.json").display().to_string();
    ok(&["keys", "init", "--key", &key, "--backend", "software"]);
    ok(&[
        "keys",
        "enroll",
        "--server",
        &url,
        "--approver",
        "dave@example.com",
        "--code",
        &code,
        "--key",
        &key,
        "--profile",
        &profile,
    ]);
    ok(&["pending", "--profile", &profile]);
    let listed = remote_ok(&url, &token, &["list-approvers"]);
    let key_line = listed
        .lines()
        .skip_while(|l| !l.starts_with("dave@example.com"))
        .nth(1)
        .expect("dave's key is listed");
    assert!(key_line.contains("active"), "{key_line}");
    let key_id = key_line
        .split_whitespace()
        .nth(1)
        .expect("key id")
        .to_owned();

    // Revoking the key over HTTP ends what it can do.
    remote_ok(
        &url,
        &token,
        &["revoke-key", &key_id, "--reason", "laptop lost"],
    );
    let refused = cs(&["pending", "--profile", &profile]);
    assert!(!refused.status.success(), "a revoked key still works");

    // Agent tokens: issued, listed, working, revoked.
    let agent = remote_ok(&url, &token, &["agent-token", "agent:remote"]);
    assert!(agent.starts_with("csa_"), "{agent}");
    let allowed = read_request(&url, &agent);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    let tokens = remote_ok(&url, &token, &["list-tokens"]);
    let agent_line = tokens
        .lines()
        .find(|l| l.contains("agent:remote"))
        .expect("the new token is listed");
    assert!(agent_line.contains("agent") && agent_line.contains("active"));
    assert!(
        tokens
            .lines()
            .any(|l| l.contains("admin") && l.contains("alice-admin")),
        "{tokens}"
    );
    let token_id = agent_line.split_whitespace().next().expect("id").to_owned();
    remote_ok(&url, &token, &["revoke-token", &token_id]);
    let after = read_request(&url, &agent);
    assert_refused(&after, "agent token revoked");

    // Each change is in the audit log under the admin token's name, not the shell's user.
    let changes = audit_events(&w.data, "admin_changed");
    let by_alice: Vec<&str> = changes
        .iter()
        .filter(|e| e["actor"] == serde_json::json!({"kind": "admin", "id": "alice-admin"}))
        .map(|e| e["event"]["operation"].as_str().expect("operation"))
        .collect();
    assert_eq!(
        by_alice,
        [
            "approver_set",
            "enrolment_code_issued",
            "agent_token_issued",
            "token_revoked"
        ]
    );
    let revoked = audit_events(&w.data, "key_revoked");
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        revoked[0]["actor"],
        serde_json::json!({"kind": "admin", "id": "alice-admin"})
    );
    server.stop();
}

#[test]
fn tokens_open_only_their_own_side_and_admin_tokens_are_not_minted_over_http() {
    let w = World::new();
    let server = Server::start(&w.data);
    let url = server.url.clone();
    let admin = w.admin(&["admin-token", "alice-admin"]);

    // An agent token is not an admin token, and the other way round.
    let as_agent = remote(&url, &w.token, &["list-tokens"]);
    assert_refused(&as_agent, "not an admin token");
    let as_admin = read_request(&url, &admin);
    assert_refused(&as_admin, "not an agent token");

    // A stolen admin token cannot make itself a successor.
    let mint = remote(&url, &admin, &["admin-token", "mallory"]);
    assert_refused(&mint, "only on the store");

    // Revoking the admin token (with itself) ends it at once.
    let tokens = remote_ok(&url, &admin, &["list-tokens"]);
    let id = tokens
        .lines()
        .find(|l| l.contains("alice-admin"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the admin token is listed")
        .to_owned();
    remote_ok(&url, &admin, &["revoke-token", &id]);
    let after = remote(&url, &admin, &["list-approvers"]);
    assert_refused(&after, "admin token revoked");
    // Bad input gets a clear error and changes nothing.
    let fresh = w.admin(&["admin-token", "alice-admin"]);
    let bad = remote(&url, &fresh, &["enrolment-code", "nobody@example.com"]);
    assert_refused(&bad, "approver not found");
    let short = remote(&url, &fresh, &["enrolment-code", "bob", "--ttl", "5"]);
    assert_refused(&short, "ttl_seconds");
    server.stop();
}

#[test]
fn policy_is_shown_checked_and_replaced_over_http_and_every_change_is_recorded() {
    let w = World::new();
    let policy = w.root.join("policy.rego");
    let default = include_str!("../../../policies/default.rego");
    std::fs::write(&policy, default).expect("write policy");
    let server = Server::start_with(
        &w.data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--policy",
            &policy.display().to_string(),
        ],
    );
    let url = server.url.clone();
    let admin = w.admin(&["admin-token", "alice-admin"]);

    let shown = remote(&url, &admin, &["policy", "show"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(String::from_utf8_lossy(&shown.stdout), default);
    let old_hash = stderr(&shown)
        .split_whitespace()
        .nth(1)
        .expect("hash")
        .to_owned();

    // A policy that does not decide is refused before anything is recorded or written.
    let broken = w.root.join("broken.rego");
    std::fs::write(&broken, "package countersign\n\nnot_a_decision := 1\n").expect("write");
    let check = cs(&["admin", "policy", "check", &broken.display().to_string()]);
    assert!(!check.status.success());
    let refused = remote(
        &url,
        &admin,
        &["policy", "set", &broken.display().to_string()],
    );
    assert_refused(&refused, "policy_invalid");
    assert_eq!(
        std::fs::read_to_string(&policy).expect("read"),
        default,
        "the file changed"
    );
    assert!(read_request(&url, &w.token).status.success());

    // A policy that denies reads takes effect at once and survives in the file.
    let strict = w.root.join("strict.rego");
    let strict_source = "package countersign\n\nimport rego.v1\n\ndecision := {\"outcome\": \"deny\", \"reason\": \"change freeze\"}\n";
    std::fs::write(&strict, strict_source).expect("write");
    let checked = ok(&["admin", "policy", "check", &strict.display().to_string()]);
    let new_hash = remote_ok(
        &url,
        &admin,
        &[
            "policy",
            "set",
            &strict.display().to_string(),
            "--expect",
            &old_hash,
        ],
    );
    assert_eq!(new_hash, checked);
    let denied = read_request(&url, &w.token);
    assert_eq!(denied.status.code(), Some(3), "{}", stderr(&denied));
    assert!(String::from_utf8_lossy(&denied.stdout).contains("change freeze"));
    assert_eq!(
        std::fs::read_to_string(&policy).expect("read"),
        strict_source
    );

    // A change made against a policy that has changed since is refused.
    let stale = remote(
        &url,
        &admin,
        &[
            "policy",
            "set",
            &strict.display().to_string(),
            "--expect",
            &old_hash,
        ],
    );
    assert_refused(&stale, "policy_changed");

    // Recorded: who changed it, and the policy hash chain, once. The file watcher (every
    // second) sees its file already in force and adds nothing: give it a few rounds to err.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let changes = audit_events(&w.data, "policy_changed");
    let hashes: Vec<(&str, &str)> = changes
        .iter()
        .map(|e| {
            (
                e["event"]["previous_hash"].as_str().unwrap_or(""),
                e["event"]["policy_hash"].as_str().expect("hash"),
            )
        })
        .collect();
    // The first is the service's start with its file; then the administrator's change.
    assert_eq!(
        hashes,
        [
            ("", old_hash.as_str()),
            (old_hash.as_str(), new_hash.as_str())
        ]
    );
    assert_eq!(
        changes[1]["actor"],
        serde_json::json!({"kind": "admin", "id": "alice-admin"})
    );
    server.stop();
}

#[test]
fn the_built_in_policy_cannot_be_replaced_over_http() {
    let w = World::new();
    let server = Server::start(&w.data);
    let admin = w.admin(&["admin-token", "alice-admin"]);
    let source = w.root.join("p.rego");
    std::fs::write(
        &source,
        "package countersign\n\ndecision := {\"outcome\": \"deny\", \"reason\": \"x\"}\n",
    )
    .expect("write");
    let out = remote(
        &server.url,
        &admin,
        &["policy", "set", &source.display().to_string()],
    );
    assert_refused(&out, "policy_builtin");
    // Not over HTTP, not on the store either: the policy is the service's file.
    let local = cs(&[
        "admin",
        "--data-dir",
        &w.data.display().to_string(),
        "policy",
        "show",
    ]);
    assert_refused(&local, "--server");
    server.stop();
}

/// `countersign admin` on the data directory refuses what the HTTP routes refuse, with the
/// same field named, and writes nothing for it.
#[test]
fn the_data_directory_path_refuses_the_same_bad_input_as_http() {
    let w = World::new();
    let d = w.data.display().to_string();
    let local = |args: &[&str]| {
        let mut all = vec!["admin", "--data-dir", d.as_str()];
        all.extend_from_slice(args);
        cs(&all)
    };
    w.admin(&["approver", "bob", "--group", "security"]);
    let before = audit_events(&w.data, "admin_changed").len();

    assert_refused(
        &local(&["enrolment-code", "nobody@example.com"]),
        "approver not found",
    );
    assert_refused(
        &local(&["enrolment-code", "bob", "--ttl", "5"]),
        "ttl_seconds",
    );
    assert_refused(
        &local(&["enrolment-code", "bob", "--ttl", "700000"]),
        "ttl_seconds",
    );
    let mut many = vec!["approver", "zed"];
    for _ in 0..65 {
        many.extend_from_slice(&["--group", "g"]);
    }
    assert_refused(&local(&many), "groups: at most 64 groups");
    assert_refused(
        &local(&["approver", "zed", "--name", "Zed\u{7}"]),
        "display_name",
    );
    assert_refused(&local(&["approver", " "]), "id: must not be empty");

    assert_eq!(
        audit_events(&w.data, "admin_changed").len(),
        before,
        "a refused change was recorded"
    );
    let approvers = w.admin(&["list-approvers"]);
    assert!(!approvers.contains("zed"), "{approvers}");
}
