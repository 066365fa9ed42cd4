//! The whole flow across processes: `countersign serve`, an agent running `countersign run`,
//! approvers running `countersign approve|deny` with enrolled software keys, and `admin`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use countersign_core::api::ServerMessage;
use countersign_testdevices::{Postgres, SoftHsm, Swtpm};
use support::*;

#[test]
fn approved_request_runs_the_command_once_and_reports_the_outcome() {
    let w = World::new();
    let server = Server::start(&w.data);
    let bob = w.enroll("bob", &server.url);
    let carol = w.enroll("carol", &server.url);
    let marker = w.root.join("marker");

    let agent = w.run_agent(&server.url, "60", &marker);
    let id = wait_pending(&bob);
    assert!(!marker.exists(), "the command ran before approval");
    let first = ok(&["approve", &id, "--profile", &bob, "--comment", "ok by me"]);
    assert!(first.contains("counted (1/2"), "{first}");
    assert!(!marker.exists(), "the command ran before quorum");
    let second = ok(&["approve", &id, "--profile", &carol]);
    assert!(second.contains("approved"), "{second}");

    let out = agent.wait_with_output().expect("agent exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agent failed: {stderr}");
    assert!(stderr.contains("outcome reported: succeeded"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&marker).expect("marker").trim(),
        "executed"
    );

    // Deciding again after the fact is refused.
    let again = cs(&["deny", &id, "--profile", &carol]);
    assert!(!again.status.success());
    server.stop();
}

#[test]
fn denied_request_never_runs_the_command() {
    let w = World::new();
    let server = Server::start(&w.data);
    let bob = w.enroll("bob", &server.url);
    let marker = w.root.join("marker");
    let agent = w.run_agent(&server.url, "60", &marker);
    let id = wait_pending(&bob);
    let denied = ok(&[
        "deny",
        &id,
        "--profile",
        &bob,
        "--comment",
        "not this quarter",
    ]);
    assert!(denied.contains("denied"), "{denied}");
    let out = agent.wait_with_output().expect("agent exits");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!marker.exists(), "a denied command ran");
    server.stop();
}

#[test]
fn requester_cannot_approve_and_ineligible_approver_is_refused() {
    let w = World::new();
    let server = Server::start(&w.data);
    let bob = w.enroll("bob", &server.url);
    let erin = w.enroll("erin", &server.url);
    // The agent acts for bob; it submits and stops waiting at once (exit 5: still pending).
    let out = request(
        &server.url,
        &w.token,
        "db.export",
        "for bob",
        &["--tag", "pii", "--on-behalf-of", "bob"],
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let id = view["id"].as_str().expect("id").to_owned();
    assert_eq!(view["status"], "pending");

    assert_eq!(
        ok(&["pending", "--profile", &bob]),
        "",
        "bob must not see his own request"
    );
    let refused = cs(&["approve", &id, "--profile", &bob]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("self_approval"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = cs(&["approve", &id, "--profile", &erin]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not_eligible"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    server.stop();
}

#[test]
fn restart_keeps_pending_requests_and_the_signed_log_consistent() {
    let w = World::new();
    let server = Server::start(&w.data);
    let bob = w.enroll("bob", &server.url);
    let marker = w.root.join("marker");
    let agent = w.run_agent(&server.url, "3", &marker);
    let id = wait_pending(&bob);
    let _ = agent.wait_with_output();
    let url = server.url.clone();
    server.stop();

    let server = Server::start_at(&w.data, url.trim_start_matches("http://"));
    let after = ok(&["pending", "--profile", &bob]);
    assert!(
        after.contains(&id),
        "pending request lost across restart: {after}"
    );
    let pem = ok(&[
        "admin",
        "--data-dir",
        &w.data.display().to_string(),
        "server-key",
    ]);
    assert!(pem.contains("BEGIN PUBLIC KEY"));
    server.stop();
}

/// A policy that wants two security approvers signing with hardware keys.
const HARDWARE_POLICY: &str = r#"package countersign
import rego.v1
decision := {
	"outcome": "require_approval",
	"reason": "two security approvers with hardware keys",
	"quorum": 2, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": true, "quick_approve": false,
}
"#;

#[test]
fn decisions_signed_on_a_pkcs11_token_and_a_tpm_are_accepted_and_software_is_not() {
    let token = SoftHsm::init();
    let tpm = Swtpm::start();
    let w = World::new();
    // A third security approver, on a development key.
    let d = w.data.display().to_string();
    ok(&[
        "admin",
        "--data-dir",
        &d,
        "approver",
        "dan",
        "--group",
        "security",
    ]);
    let policy = w.root.join("policy.rego");
    std::fs::write(&policy, HARDWARE_POLICY).expect("policy");
    let server = Server::start_with(
        &w.data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--policy",
            &policy.display().to_string(),
        ],
    );

    let conf = token.conf().display().to_string();
    let module = token.module().display().to_string();
    let hsm_env = [
        ("SOFTHSM2_CONF", conf.as_str()),
        ("COUNTERSIGN_PIN", SoftHsm::PIN),
    ];
    let bob = w.enroll_with(
        "bob",
        &server.url,
        &[
            "--backend",
            "pkcs11",
            "--module",
            &module,
            "--token-label",
            SoftHsm::LABEL,
            "--label",
            "bob-yubikey",
        ],
        &hsm_env,
    );
    let tcti = tpm.tcti();
    let carol = w.enroll_with(
        "carol",
        &server.url,
        &[
            "--backend",
            "tpm",
            "--tcti",
            &tcti,
            "--label",
            "carol-laptop",
        ],
        &[],
    );
    let dan = w.enroll("dan", &server.url);
    // The TPM key was enrolled with a TPM2_Certify statement the service verified and kept.
    let db = w.data.join("countersign.db").display().to_string();
    let attested = Command::new("sqlite3")
        .args([
            &db,
            "SELECT kind, attestation IS NOT NULL FROM approver_keys ORDER BY kind",
        ])
        .output()
        .expect("sqlite3");
    let attested = String::from_utf8_lossy(&attested.stdout);
    assert_eq!(attested.trim(), "pkcs11|0\nsoftware|0\ntpm|1", "{attested}");

    // keys list shows each backend and whether it is hardware, without a device or PIN.
    let listed = ok(&[
        "keys",
        "list",
        "--key",
        &w.root.join("bob.key.json").display().to_string(),
        "--profile",
        &bob,
    ]);
    assert!(listed.starts_with("pkcs11    hardware"), "{listed}");
    assert!(listed.contains("enrolled as bob"), "{listed}");
    let listed = ok(&[
        "keys",
        "list",
        "--key",
        &w.root.join("dan.key.json").display().to_string(),
    ]);
    assert!(
        listed.contains("NOT hardware") && listed.contains("software — not hardware-backed"),
        "{listed}"
    );
    // keys test signs once on the device and verifies.
    let tested = ok_env(
        &[
            "keys",
            "test",
            "--key",
            &w.root.join("bob.key.json").display().to_string(),
        ],
        &hsm_env,
    );
    assert!(
        tested.contains("signed and verified with") && tested.contains("PKCS#11 token"),
        "{tested}"
    );
    let tested = ok(&[
        "keys",
        "test",
        "--key",
        &w.root.join("carol.key.json").display().to_string(),
    ]);
    assert!(tested.contains("[TPM 2.0]"), "{tested}");

    let marker = w.root.join("marker");
    let agent = w.run_agent(&server.url, "60", &marker);
    let id = wait_pending(&dan);
    let refused = cs(&["approve", &id, "--profile", &dan]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("hardware-backed key"), "{said}");

    // A wrong PIN stops the approval before anything is signed or sent.
    let wrong = cs_env(
        &["approve", &id, "--profile", &bob],
        &[
            ("SOFTHSM2_CONF", conf.as_str()),
            ("COUNTERSIGN_PIN", "0000"),
        ],
    );
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("wrong PIN for token"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let first = ok_env(&["approve", &id, "--profile", &bob], &hsm_env);
    assert!(first.contains("counted (1/2"), "{first}");
    let second = ok(&["approve", &id, "--profile", &carol]);
    assert!(second.contains("approved"), "{second}");
    let out = agent.wait_with_output().expect("agent exits");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists(), "the approved command ran");
    server.stop();
}

/// A policy that wants one security approver whose device a trusted manufacturer vouched for.
const ATTESTED_POLICY: &str = r#"package countersign
import rego.v1
decision := {
	"outcome": "require_approval",
	"reason": "one security approver on an attested device",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": true, "quick_approve": false, "require_attested_key": true,
}
"#;

/// Three TPMs: one whose endorsement key certificate chains to the root the service trusts,
/// one manufactured by another authority, one with no certificate. The first enrols attested
/// (by that root) and approves under `require_attested_key`; the second is refused at
/// enrolment; the third enrols as claimed and its approval is refused. The audit trail says
/// which root vouched for the deciding key, and a mirror checks the decision claims no more
/// than the enrolment proved.
#[test]
fn a_tpm_whose_endorsement_chains_to_a_trusted_root_is_attested_and_no_other_is() {
    let (trusted, ca) = Swtpm::start_with_ek_certificate();
    let (foreign, _other_ca) = Swtpm::start_with_ek_certificate();
    let plain = Swtpm::start();
    let w = World::new();
    w.admin(&["approver", "dan", "--group", "security"]);
    let policy = w.root.join("policy.rego");
    std::fs::write(&policy, ATTESTED_POLICY).expect("policy");
    let config = w.root.join("countersign.toml");
    std::fs::write(
        &config,
        format!(
            "[attestation]\ntpm_roots = [{:?}]\ntpm_intermediates = [{:?}]\n",
            ca.root.display().to_string(),
            ca.intermediate.display().to_string()
        ),
    )
    .expect("config");
    let server = Server::start_with(
        &w.data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--policy",
            &policy.display().to_string(),
            "--config",
            &config.display().to_string(),
        ],
    );
    let tpm = |tcti: &'static str, label: &'static str| {
        ["--backend", "tpm", "--tcti", tcti, "--label", label]
    };
    // Each TCTI lives as long as the test.
    let tcti = |t: &Swtpm| -> &'static str { Box::leak(t.tcti().into_boxed_str()) };

    let bob_init = tpm(tcti(&trusted), "bob-laptop");
    let (enrolled, bob) = w.try_enroll_with("bob", &server.url, &bob_init, &[]);
    let said = String::from_utf8_lossy(&enrolled.stderr);
    assert!(enrolled.status.success(), "{said}");
    assert!(
        said.contains("attestation: the device is attested by") && said.contains("swtpm-localca"),
        "{said}"
    );

    let carol_init = tpm(tcti(&foreign), "carol-laptop");
    let (refused, _) = w.try_enroll_with("carol", &server.url, &carol_init, &[]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("endorsement_untrusted") && said.contains("does not chain to a trusted root"),
        "{said}"
    );

    let dan_init = tpm(tcti(&plain), "dan-vm");
    let (enrolled, dan) = w.try_enroll_with("dan", &server.url, &dan_init, &[]);
    let said = String::from_utf8_lossy(&enrolled.stderr);
    assert!(enrolled.status.success(), "{said}");
    assert!(said.contains("attestation: claimed"), "{said}");

    let db = w.data.join("countersign.db").display().to_string();
    let keys = Command::new("sqlite3")
        .args([
            &db,
            "SELECT approver_id, attested_by IS NOT NULL, attestation IS NOT NULL FROM approver_keys ORDER BY approver_id",
        ])
        .output()
        .expect("sqlite3");
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert_eq!(keys.trim(), "bob|1|1\ndan|0|1", "{keys}");

    let marker = w.root.join("marker");
    let agent = w.run_agent(&server.url, "60", &marker);
    let id = wait_pending(&dan);
    let refused = cs(&["approve", &id, "--profile", &dan]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("attested_key_required") && said.contains("only claimed"),
        "{said}"
    );
    let approved = ok(&["approve", &id, "--profile", &bob]);
    assert!(approved.contains("approved"), "{approved}");
    let out = agent.wait_with_output().expect("agent exits");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The mirror verifies the log (a decision's attestation must be its key's enrolment's)
    // and the CSV names the root behind the approval.
    let mirror = w.root.join("mirror.db").display().to_string();
    ok(&["audit", "sync", "--mirror", &mirror, "--profile", &bob]);
    let csv_path = w.root.join("report.csv").display().to_string();
    ok(&[
        "audit",
        "export",
        "--mirror",
        &mirror,
        "--format",
        "csv",
        "--out",
        &csv_path,
        "--profile",
        &bob,
    ]);
    let mut reader = csv::Reader::from_path(&csv_path).expect("csv");
    let headers = reader.headers().expect("header").clone();
    let row = reader.records().next().expect("a row").expect("record");
    let cell = |name: &str| {
        let at = headers.iter().position(|h| h == name).expect(name);
        row.get(at).expect("cell").to_owned()
    };
    assert_eq!(cell("attested_keys_only"), "true");
    assert!(
        cell("attesting_roots").contains("swtpm-localca"),
        "{}",
        cell("attesting_roots")
    );
    server.stop();
}

#[test]
fn service_on_postgresql_approves_and_keeps_its_state_across_a_restart() {
    let pg = Postgres::start();
    let w = World::with_database(Some(pg.fresh_database()));
    let server = w.replica();
    let bob = w.enroll("bob", &server.url);
    let carol = w.enroll("carol", &server.url);
    let out = request(
        &server.url,
        &w.token,
        "db.export",
        "quarterly report",
        &["--tag", "pii"],
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = wait_pending(&bob);
    let first = ok(&["approve", &id, "--profile", &bob]);
    assert!(first.contains("counted (1/2"), "{first}");

    // The service restarts (same database, a new process); the request is still pending and
    // the second approval, sent to the new process, completes it.
    server.stop();
    let server = w.replica();
    let mut profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&carol).expect("profile")).expect("json");
    profile["server"] = serde_json::Value::String(server.url.clone());
    let moved = w.root.join("carol-moved.json");
    std::fs::write(&moved, profile.to_string()).expect("profile");
    let second = ok(&["approve", &id, "--profile", &moved.display().to_string()]);
    assert!(second.contains("approved"), "{second}");
    let listed = w.admin(&["list-approvers"]);
    assert!(
        listed.contains("bob") && listed.contains("carol"),
        "{listed}"
    );
    server.stop();
}

#[test]
fn audit_sync_search_exports_and_offline_verification() {
    let w = World::new();
    let server = Server::start(&w.data);
    let bob = w.enroll("bob", &server.url);
    let marker = w.root.join("marker");
    let agent = w.run_agent(&server.url, "60", &marker);
    let id = wait_pending(&bob);
    ok(&[
        "deny",
        &id,
        "--profile",
        &bob,
        "--comment",
        "not this quarter",
    ]);
    agent.wait_with_output().expect("agent exits");

    let mirror = w.root.join("mirror.db").display().to_string();
    let synced = ok(&["audit", "sync", "--mirror", &mirror, "--profile", &bob]);
    assert!(
        synced.contains("verified checkpoint") && synced.contains("cosigned: yes"),
        "{synced}"
    );
    let again = ok(&["audit", "sync", "--mirror", &mirror, "--profile", &bob]);
    assert!(again.contains("; 0 new events;"), "{again}");
    let found = ok(&[
        "audit",
        "search",
        "--mirror",
        &mirror,
        "--text",
        "this quarter",
    ]);
    assert!(
        found.contains(&id) && found.contains("denied") && found.contains("decided by bob"),
        "{found}"
    );
    let none = ok(&[
        "audit",
        "search",
        "--mirror",
        &mirror,
        "--verdict",
        "approved",
    ]);
    assert!(none.is_empty(), "{none}");
    let status = ok(&["audit", "status", "--mirror", &mirror]);
    assert!(status.contains("1 requests"), "{status}");

    let export = |format: &str, file: &str| {
        let out = w.root.join(file).display().to_string();
        ok(&[
            "audit",
            "export",
            "--mirror",
            &mirror,
            "--format",
            format,
            "--out",
            &out,
            "--profile",
            &bob,
        ]);
        std::fs::read(&out).expect("export written")
    };
    let csv = export("csv", "report.csv");
    assert!(String::from_utf8_lossy(&csv).contains(&id));
    assert!(export("pdf", "report.pdf").starts_with(b"%PDF-"));
    // With a profile to sign it, the PDF comes with the evidence bundle it names by its hash.
    let companion = w.root.join("report.evidence.jsonl");
    assert!(companion.exists(), "the PDF's evidence bundle");
    let bundle = export("bundle", "evidence.jsonl");
    let path = w.root.join("evidence.jsonl").display().to_string();
    // Consistent in itself but tied to nothing: not "VERIFIED", and not exit 0 unless asked.
    let unanchored = cs(&["audit", "verify", &path]);
    let text = String::from_utf8_lossy(&unanchored.stdout);
    assert_eq!(unanchored.status.code(), Some(4), "{text}");
    assert!(
        text.starts_with("UNANCHORED")
            && text.contains("NOT checked")
            && !text.contains("VERIFIED"),
        "{text}"
    );
    let accepted = ok(&["audit", "verify", &path, "--accept-unanchored"]);
    assert!(accepted.starts_with("UNANCHORED"), "{accepted}");
    let data = w.data.display().to_string();
    let service_key = cs(&["admin", "--data-dir", &data, "server-key"]);
    let service_key = String::from_utf8_lossy(&service_key.stderr);
    let key_id = service_key
        .lines()
        .find_map(|l| l.strip_prefix("service key id ").map(str::trim))
        .unwrap_or_else(|| panic!("no key id in {service_key}"))
        .to_owned();
    let verified = ok(&["audit", "verify", &path, "--server-key-id", &key_id]);
    assert!(
        verified.starts_with("VERIFIED") && verified.contains("1 requests"),
        "{verified}"
    );
    let other_key = "0".repeat(64);
    let wrong = cs(&["audit", "verify", &path, "--server-key-id", &other_key]);
    assert_eq!(wrong.status.code(), Some(3));
    // The operator's witness policy (bob's console, one of one), pinned on the mirror: the next
    // sync says how far the witnesses vouch for the history.
    let policy = w.root.join("witness-policy.json").display().to_string();
    w.admin(&[
        "witness-policy",
        "--threshold",
        "1",
        "--witness",
        "bob",
        "--out",
        &policy,
    ]);
    let pinned = ok(&["audit", "pin-witness-policy", "--mirror", &mirror, &policy]);
    assert!(pinned.contains("1 of bob"), "{pinned}");
    let witnessed = ok(&["audit", "sync", "--mirror", &mirror, "--profile", &bob]);
    assert!(witnessed.contains("witnessed:"), "{witnessed}");
    // The proof of the one request, as an auditor attaches it to a control sample.
    let proof = w.root.join("proof.jsonl").display().to_string();
    ok(&[
        "audit",
        "proof",
        "--mirror",
        &mirror,
        &id,
        "--out",
        &proof,
        "--profile",
        &bob,
    ]);
    let verified = ok(&["audit", "verify", &proof, "--server-key-id", &key_id]);
    assert!(
        verified.starts_with("VERIFIED") && verified.contains("1 requests"),
        "{verified}"
    );
    let unknown = cs(&[
        "audit",
        "proof",
        "--mirror",
        &mirror,
        "00000000-0000-7000-8000-000000000000",
        "--out",
        &proof,
        "--profile",
        &bob,
    ]);
    assert_ne!(unknown.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no request"));

    let mut changed = bundle.clone();
    let at = changed.len() / 2;
    changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
    let bad = w.root.join("changed.jsonl");
    std::fs::write(&bad, &changed).expect("write");
    let out = cs(&["audit", "verify", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT VERIFIED"));

    // Someone with the service's database rewrites why the request was denied (leaf hash and
    // all); the log grows; the next sync refuses the rewritten history and says so.
    let url = server.url.clone();
    server.stop();
    rewrite_denial(&w.data.join("countersign.db"));
    w.admin(&["agent-token", "agent:late"]);
    let server = Server::start_at(&w.data, url.trim_start_matches("http://"));
    let out = cs(&["audit", "sync", "--mirror", &mirror, "--profile", &bob]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("rewritten"), "{stderr}");
    let status = cs(&["audit", "status", "--mirror", &mirror]);
    assert_eq!(status.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&status.stdout).contains("ALARM"));
    server.stop();
}

/// Rewrites the `denied` event's reason in the service's SQLite file with the `sqlite3` shell,
/// recomputing its leaf hash as an attacker would.
fn rewrite_denial(db: &Path) {
    let read = Command::new("sqlite3")
        .arg(db)
        .arg("SELECT seq, event_json FROM audit_events WHERE kind = 'denied' LIMIT 1")
        .output()
        .expect("sqlite3");
    let line = String::from_utf8(read.stdout).expect("utf-8");
    let (seq, body) = line.trim_end().split_once('|').expect("a denied event");
    let mut event: countersign_core::AuditEvent = serde_json::from_str(body).expect("event");
    if let countersign_core::EventKind::Denied { reason, .. } = &mut event.event {
        *reason = "approved after all".into();
    }
    let bytes = event.leaf_bytes().expect("canonical");
    let leaf = countersign_core::merkle::leaf_hash(&bytes);
    let text = String::from_utf8(bytes).expect("utf-8").replace('\'', "''");
    let sql = format!(
        "UPDATE audit_events SET event_json = '{text}', leaf_hash = X'{}' WHERE seq = {seq}",
        leaf.to_hex()
    );
    assert!(
        Command::new("sqlite3")
            .arg(db)
            .arg(sql)
            .status()
            .expect("sqlite3")
            .success()
    );
}

/// Two replicas as separate processes on one PostgreSQL database: an approver stream on A is
/// told of a request submitted through B, decisions sent to A release the agent long-polling
/// on B, and both replicas sign the same log.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_requests_decisions_and_one_log() {
    use countersign_approver::inbox::InboxChange;
    use countersign_approver::live::LiveEvent;

    let pg = Postgres::start();
    let w = World::with_database(Some(pg.fresh_database()));
    let a = w.replica();
    let b = w.replica();
    let bob = w.enroll("bob", &a.url);
    let carol = w.enroll("carol", &a.url);

    // Bob's console-equivalent: a live approver stream on replica A.
    let (_live, mut rx) = live_stream(&w, "bob", &a.url);

    // The agent submits to B and long-polls B.
    let marker = w.root.join("marker");
    let agent = w.run_agent(&b.url, "60", &marker);
    let id = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Some(LiveEvent::Changes(changes)) => {
                    if let Some(InboxChange::Added(view)) =
                        changes.iter().find(|c| matches!(c, InboxChange::Added(_)))
                    {
                        break view.id.to_string();
                    }
                }
                Some(_) => continue,
                None => panic!("the stream ended"),
            }
        }
    })
    .await
    .expect("the stream on replica A announces the request submitted to replica B");

    // Both decisions go to A; the agent waiting on B is released and runs its command.
    let first = ok(&["approve", &id, "--profile", &bob]);
    assert!(first.contains("counted (1/2"), "{first}");
    let second = ok(&["approve", &id, "--profile", &carol]);
    assert!(second.contains("approved"), "{second}");
    let out = agent.wait_with_output().expect("agent exits");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists(), "the approved command ran");

    // One log: both replicas sign the same checkpoint over the same events.
    let checkpoint = |url: &str| {
        let client = countersign_client::Client::new(url).expect("client");
        async move { client.checkpoint().await.expect("checkpoint").checkpoint }
    };
    let (ca, cb) = (checkpoint(&a.url).await, checkpoint(&b.url).await);
    assert_eq!((ca.tree_size, ca.root_hash), (cb.tree_size, cb.root_hash));
    a.stop();
    b.stop();
}

/// An approver's live stream (as the console keeps one) to `url`, signing with `who`'s
/// development key from `keys init`.
fn live_stream(
    w: &World,
    who: &str,
    url: &str,
) -> (
    countersign_approver::live::Live,
    tokio::sync::mpsc::UnboundedReceiver<countersign_approver::live::LiveEvent>,
) {
    let (key_id, sign) = signer_of(w, who);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = countersign_approver::live::LiveConfig::new(url.to_owned(), key_id, sign);
    // Tests restart services often: reconnect within a second rather than the console's 30 s.
    config.backoff_min = Duration::from_millis(100);
    config.backoff_max = Duration::from_secs(1);
    let live = countersign_approver::live::start(config, tx);
    (live, rx)
}

/// The key of `who` (enrolled by [`World::enroll`]) and a challenge signer for it.
fn signer_of(
    w: &World,
    who: &str,
) -> (
    countersign_core::KeyId,
    countersign_approver::live::ChallengeSigner,
) {
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.root.join(format!("{who}.key.json"))).expect("key record"),
    )
    .expect("json");
    let config: countersign_keys::KeyConfig =
        serde_json::from_value(record["key"].clone()).expect("key config");
    let signer: std::sync::Arc<dyn countersign_keys::Signer> = std::sync::Arc::from(
        config
            .open(&|_: &countersign_keys::PinRequest<'_>| {
                Err(countersign_keys::KeyError::PinCancelled("no PIN".into()))
            })
            .expect("the key"),
    );
    let key_id = signer.public_key().key_id();
    (
        key_id,
        std::sync::Arc::new(move |m: &[u8]| signer.sign(m).map_err(|e| e.to_string())),
    )
}

/// A stand-in load balancer: forwards each new connection to the current upstream.
struct Balancer {
    url: String,
    upstream: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Balancer {
    async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = std::sync::Arc::new(std::sync::Mutex::new(
            upstream.trim_start_matches("http://").to_owned(),
        ));
        let target = upstream.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let to = target.lock().expect("upstream").clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { url, upstream }
    }

    fn route_to(&self, upstream: &str) {
        *self.upstream.lock().expect("upstream") =
            upstream.trim_start_matches("http://").to_owned();
    }
}

/// A replica killed with SIGKILL loses nothing it acknowledged; the approver's stream, behind a
/// load balancer, reconnects to the surviving replica and neither misses nor repeats a request.
#[tokio::test(flavor = "multi_thread")]
async fn killed_replica_loses_nothing_and_the_stream_resumes_on_another() {
    use countersign_approver::inbox::InboxChange;
    use countersign_approver::live::LiveEvent;

    let pg = Postgres::start();
    let w = World::with_database(Some(pg.fresh_database()));
    let a = w.replica();
    let b = w.replica();
    let bob = w.enroll("bob", &a.url);
    let balancer = Balancer::start(&a.url).await;

    let (_live, mut rx) = live_stream(&w, "bob", &balancer.url);
    let submit = |server: &str| {
        let out = request(server, &w.token, "db.export", "failover test", &[]);
        assert_eq!(
            out.status.code(),
            Some(5),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        view["id"].as_str().expect("id").to_owned()
    };
    let mut announced: Vec<String> = Vec::new();
    let mut online = 0;
    async fn until(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<LiveEvent>,
        announced: &mut Vec<String>,
        online: &mut u32,
        done: impl Fn(&[String], u32) -> bool,
    ) {
        tokio::time::timeout(Duration::from_secs(30), async {
            while !done(announced, *online) {
                match rx.recv().await.expect("stream events") {
                    LiveEvent::Online { .. } => *online += 1,
                    LiveEvent::Changes(changes) => {
                        for c in changes {
                            if let InboxChange::Added(v) = c {
                                announced.push(v.id.to_string());
                            }
                        }
                    }
                    _ => {}
                }
            }
        })
        .await
        .expect("the stream got there");
    }

    // A request acknowledged by A reaches the stream through the balancer.
    let first = submit(&a.url);
    until(&mut rx, &mut announced, &mut online, |a, _| a.len() == 1).await;
    assert_eq!(announced, vec![first.clone()]);

    // A dies mid-traffic; the balancer sends new connections to B.
    a.kill9();
    balancer.route_to(&b.url);
    until(&mut rx, &mut announced, &mut online, |_, o| o >= 2).await;
    let second = submit(&b.url);
    until(&mut rx, &mut announced, &mut online, |a, _| a.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(event) = rx.try_recv() {
        if let LiveEvent::Changes(changes) = event {
            for c in changes {
                if let InboxChange::Added(v) = c {
                    announced.push(v.id.to_string());
                }
            }
        }
    }
    assert_eq!(
        announced,
        vec![first.clone(), second],
        "each request announced exactly once"
    );

    // What A acknowledged is still there: B takes the decision on it.
    let mut profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bob).expect("profile")).expect("json");
    profile["server"] = serde_json::Value::String(b.url.clone());
    let moved = w.root.join("bob-on-b.json");
    std::fs::write(&moved, profile.to_string()).expect("profile");
    let decided = ok(&["approve", &first, "--profile", &moved.display().to_string()]);
    assert!(decided.contains("approved"), "{decided}");
    b.stop();
}

/// An embedded deployment moved to PostgreSQL: everything copied, the log proven identical, and
/// an approver's mirror that verified the SQLite service's log keeps verifying the PostgreSQL
/// one (same key, consistent checkpoints).
#[test]
fn migrate_store_moves_a_deployment_to_postgresql_and_the_log_stays_consistent() {
    let w = World::new();
    let server = Server::start(&w.data);
    let bob = w.enroll("bob", &server.url);
    let carol = w.enroll("carol", &server.url);
    let marker = w.root.join("marker");
    let agent = w.run_agent(&server.url, "60", &marker);
    let id = wait_pending(&bob);
    ok(&["approve", &id, "--profile", &bob]);
    ok(&["approve", &id, "--profile", &carol]);
    assert!(agent.wait_with_output().expect("agent").status.success());
    let mirror = w.root.join("mirror.db").display().to_string();
    let before = ok(&["audit", "sync", "--mirror", &mirror, "--profile", &bob]);
    assert!(before.contains("cosigned: yes"), "{before}");
    let url = server.url.clone();
    server.stop();

    let pg = Postgres::start();
    let database = pg.fresh_database();
    let from = format!("sqlite:{}", w.data.display());
    let moved = ok(&["admin", "migrate-store", "--from", &from, "--to", &database]);
    assert!(
        moved.contains("matches the last signed checkpoint"),
        "{moved}"
    );
    let again = cs(&["admin", "migrate-store", "--from", &from, "--to", &database]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // The same service (same key, same address) now on PostgreSQL: the request is there, and
    // bob's mirror verifies the new checkpoint against the one it verified before the move.
    let server = Server::start_with(
        &w.data,
        &[
            "--database-url",
            &database,
            "--listen",
            url.trim_start_matches("http://"),
        ],
    );
    let after = ok(&["audit", "sync", "--mirror", &mirror, "--profile", &bob]);
    assert!(after.contains("verified checkpoint"), "{after}");
    let found = ok(&[
        "audit",
        "search",
        "--mirror",
        &mirror,
        "--verdict",
        "approved",
    ]);
    assert!(found.contains(&id), "{found}");
    server.stop();
}

/// PostgreSQL restarts under two replicas: both reconnect by themselves, and requests submitted
/// through one after the restart reach an approver stream on the other.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_recover_by_themselves_when_postgresql_restarts() {
    use countersign_approver::inbox::InboxChange;
    use countersign_approver::live::LiveEvent;

    let pg = Postgres::start();
    let w = World::with_database(Some(pg.fresh_database()));
    let a = w.replica();
    let b = w.replica();
    let bob = w.enroll("bob", &a.url);
    let (_live, mut rx) = live_stream(&w, "bob", &a.url);
    // Submits through B, retrying while the database comes back; returns the request id.
    let submit = |server: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = request(server, &w.token, "db.export", "restart test", &[]);
            if out.status.code() == Some(5) {
                let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
                return view["id"].as_str().expect("id").to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the replica did not recover: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    async fn announced(rx: &mut tokio::sync::mpsc::UnboundedReceiver<LiveEvent>, id: String) {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(LiveEvent::Changes(changes)) = rx.recv().await
                    && changes
                        .iter()
                        .any(|c| matches!(c, InboxChange::Added(v) if v.id.to_string() == id))
                {
                    return;
                }
            }
        })
        .await
        .expect("the stream on A announces the request submitted to B");
    }
    let first = submit(&b.url);
    announced(&mut rx, first).await;

    pg.kill();
    std::thread::sleep(Duration::from_millis(500));
    pg.restart();

    let second = submit(&b.url);
    announced(&mut rx, second.clone()).await;
    let decided = ok(&["approve", &second, "--profile", &bob]);
    assert!(decided.contains("approved"), "{decided}");
    a.stop();
    b.stop();
}

/// `keys init --key X.pem` once wrote the private key to X.pem and then the key record over it:
/// the key was lost and the command said nothing. The record and the key are now two files,
/// and an existing file is never written over.
#[test]
fn keys_init_never_overwrites_key_material() {
    let dir = tempfile::tempdir().expect("dir");
    let record = dir.path().join("approver.pem");
    let record_s = record.display().to_string();
    let out = ok(&["keys", "init", "--backend", "software", "--key", &record_s]);
    assert_eq!(out.len(), 64, "prints the key id: {out}");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).expect("record")).expect("record is JSON");
    let key_path = written["key"]["path"]
        .as_str()
        .expect("key path")
        .to_owned();
    assert_ne!(key_path, record_s);
    let pem = std::fs::read_to_string(&key_path).expect("key file");
    assert!(pem.contains("PRIVATE KEY"), "{pem}");
    // The key still signs, and verifies against the public key in the record.
    ok(&["keys", "test", "--key", &record_s]);

    // A second init at the same place refuses and changes neither file.
    let again = cs(&["keys", "init", "--backend", "software", "--key", &record_s]);
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&key_path).expect("key"), pem);
    // Naming the key file the same as the record is refused before anything is written.
    let other = dir.path().join("other.json").display().to_string();
    let same = cs(&[
        "keys",
        "init",
        "--backend",
        "software",
        "--key",
        &other,
        "--path",
        &other,
    ]);
    assert!(!same.status.success());
    assert!(!dir.path().join("other.json").exists());
}

/// Each request shown once, none missed, through a storm of service restarts: 16 restarts,
/// SIGTERM and SIGKILL in turn, while an agent keeps submitting (retrying idempotently) and an
/// approver's live inbox keeps reconnecting. Every acknowledged request is announced exactly
/// once; misses and repeats are counted and must both be zero.
#[tokio::test(flavor = "multi_thread")]
async fn restart_storm_neither_misses_nor_repeats_a_request() {
    use countersign_approver::inbox::InboxChange;
    use countersign_approver::live::LiveEvent;
    use std::collections::HashMap;

    const RESTARTS: usize = 16;
    let w = World::new();
    let mut server = Server::start(&w.data);
    let url = server.url.clone();
    let listen = url.trim_start_matches("http://").to_owned();
    w.enroll("bob", &url);
    let (_live, mut rx) = live_stream(&w, "bob", &url);

    // The agent: submits continuously, each submission under its own idempotency key,
    // retried through the restarts; acknowledged ids are what must be announced.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let agents: Vec<_> = (0..4)
        .map(|agent| {
            let stop = stop.clone();
            let client = countersign_client::Client::new(&url)
                .expect("client")
                .with_token(w.token.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let request: countersign_core::ActionRequest =
                        serde_json::from_value(serde_json::json!({
                            "type": "db.export", "resource": format!("postgres://prod/a{agent}-{n}"),
                            "environment": "prod", "justification": "restart storm"
                        }))
                        .expect("request");
                    if let Ok(view) = client.submit_with_retries(&request, 30).await {
                        assert_eq!(view.status, countersign_core::ActionStatus::Pending);
                        acknowledged.push(view.id.to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                acknowledged
            })
        })
        .collect();

    // The protocol itself, on a raw stream reconnecting after every restart: per connection,
    // `seq` never decreases and no request is announced twice or after its snapshot held it.
    let raw = {
        let stop = stop.clone();
        let url = url.clone();
        let (key_id, sign) = signer_of(&w, "bob");
        tokio::spawn(async move {
            let mut seen: std::collections::HashSet<String> = Default::default();
            let (mut out_of_order, mut repeats, mut connections) = (0usize, 0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((mut stream, snapshot)) =
                    countersign_client::stream::ApproverStream::connect(&url, key_id, &*sign).await
                else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                connections += 1;
                let mut last = snapshot.seq;
                let mut shown: std::collections::HashSet<String> =
                    snapshot.requests.iter().map(|v| v.id.to_string()).collect();
                seen.extend(shown.iter().cloned());
                while let Ok(Ok(Some(message))) =
                    tokio::time::timeout(Duration::from_secs(2), stream.next()).await
                {
                    let (seq, id, new) = match &message {
                        ServerMessage::Request { seq, view } => (*seq, view.id.to_string(), true),
                        ServerMessage::Update { seq, view } => (*seq, view.id.to_string(), false),
                        _ => continue,
                    };
                    if seq < last {
                        out_of_order += 1;
                    }
                    last = seq;
                    if new && !shown.insert(id.clone()) {
                        repeats += 1;
                    }
                    seen.insert(id);
                }
            }
            (seen, out_of_order, repeats, connections)
        })
    };

    let mut announced: HashMap<String, usize> = HashMap::new();
    let mut online = 0;
    let drain = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<LiveEvent>,
                 announced: &mut HashMap<String, usize>,
                 online: &mut usize| {
        while let Ok(event) = rx.try_recv() {
            match event {
                LiveEvent::Online { .. } => *online += 1,
                LiveEvent::Changes(changes) => {
                    for c in changes {
                        if let InboxChange::Added(v) = c {
                            *announced.entry(v.id.to_string()).or_default() += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    };
    for i in 0..RESTARTS {
        tokio::time::sleep(Duration::from_millis(500 + 60 * (i as u64 % 5))).await;
        drain(&mut rx, &mut announced, &mut online);
        let old = server;
        tokio::task::block_in_place(|| {
            if i % 2 == 0 {
                old.stop();
            } else {
                old.kill9();
            }
        });
        server = tokio::task::block_in_place(|| Server::start_at(&w.data, &listen));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for agent in agents {
        acknowledged.extend(agent.await.expect("agent"));
    }
    assert!(
        acknowledged.len() >= 40,
        "only {} submissions",
        acknowledged.len()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Stop the raw watcher's current connection by restarting once more.
    let last = server;
    tokio::task::block_in_place(|| last.stop());
    server = tokio::task::block_in_place(|| Server::start_at(&w.data, &listen));
    let (seen, out_of_order, raw_repeats, connections) = raw.await.expect("raw watcher");
    let raw_missed = acknowledged.iter().filter(|id| !seen.contains(*id)).count();
    eprintln!(
        "restart storm, raw protocol: {connections} connections, {raw_missed} missed, {raw_repeats} announced twice on one connection, {out_of_order} messages with a lower seq than the one before"
    );
    assert_eq!((raw_missed, raw_repeats, out_of_order), (0, 0, 0));
    assert!(connections > RESTARTS / 2, "{connections} raw connections");

    // Let the stream catch up with everything acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        drain(&mut rx, &mut announced, &mut online);
        if acknowledged.iter().all(|id| announced.contains_key(id))
            || tokio::time::Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain(&mut rx, &mut announced, &mut online);
    let missed: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !announced.contains_key(*id))
        .collect();
    let repeated: Vec<(&String, &usize)> = announced.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "restart storm: {RESTARTS} restarts, {} reconnects, {} requests acknowledged, {} announced, {} missed, {} repeated",
        online,
        acknowledged.len(),
        announced.len(),
        missed.len(),
        repeated.len()
    );
    assert!(
        online > RESTARTS / 2,
        "the stream reconnected only {online} times"
    );
    assert!(missed.is_empty(), "missed: {missed:?}");
    assert!(repeated.is_empty(), "repeated: {repeated:?}");
    server.stop();
}

/// Revoking a key on the shared database closes the streams it opened on every replica, at
/// once: the stream on replica B ends within seconds of a revocation made on the store (as
/// `countersign admin --database-url` does), without carrying another request.
#[tokio::test(flavor = "multi_thread")]
async fn revocation_closes_the_keys_stream_on_every_replica() {
    let pg = Postgres::start();
    let w = World::with_database(Some(pg.fresh_database()));
    let a = w.replica();
    let b = w.replica();
    w.enroll("bob", &a.url);
    let (key_id, sign) = signer_of(&w, "bob");
    let (mut on_b, _) = countersign_client::stream::ApproverStream::connect(&b.url, key_id, &*sign)
        .await
        .expect("stream on B");
    tokio::task::block_in_place(|| {
        w.admin(&["revoke-key", &key_id.to_string(), "--reason", "laptop lost"])
    });
    // A request submitted through A after the revocation never reaches the closed stream.
    tokio::task::block_in_place(|| request(&a.url, &w.token, "db.export", "after revocation", &[]));
    loop {
        match tokio::time::timeout(Duration::from_secs(10), on_b.next()).await {
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Ok(Ok(Some(ServerMessage::Request { view, .. }))) => {
                panic!("the revoked key's stream on B received {}", view.id)
            }
            Ok(Ok(Some(_))) => continue,
            Err(_) => panic!("the revoked key's stream on B is still open after 10 s"),
        }
    }
    // And it cannot come back.
    let again = countersign_client::stream::ApproverStream::connect(&b.url, key_id, &*sign).await;
    assert!(again.is_err(), "a revoked key opened a stream");
    a.stop();
    b.stop();
}

/// `countersign demo` (what `make demo` runs, without the console): the simulated approvers
/// decide the simulated agent's requests (approving most, denying the risky one), and the
/// simulated MCP agent's writes go through the gate, wait for an approver and are applied.
#[test]
fn the_demo_decides_requests_and_its_mcp_agent_writes_through_the_gate() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("demo");
    let out = Command::new(BIN)
        .args(["demo", "--data-dir"])
        .arg(&data)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-console",
            "--interval",
            "2",
            "--approver-delay",
            "3",
            "--duration",
            "25",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("demo runs");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("APPROVED  k8s.deploy"), "{log}");
    assert!(
        log.contains("DENIED    network.security_group.update"),
        "{log}"
    );
    assert!(log.contains("mcp agent (simulated): written"), "{log}");
    assert!(
        log.contains("(critical risk)"),
        "the policy's risk is in the log: {log}"
    );
    assert!(
        log.contains(" pending --profile ") && log.contains("you@example.com.json"),
        "the printed commands act as you: {log}"
    );
    let written = std::fs::read_to_string(data.join("mcp-files/deploy.yaml")).expect("file");
    assert!(
        !written.contains("replicas: 2\n"),
        "the approved write changed the file: {written}"
    );
}

/// Ctrl-C stops the demo promptly even with requests pending (nobody decides them here): the
/// agent's long polls and the service's connections do not hold it open.
#[test]
fn the_demo_stops_promptly_on_ctrl_c_with_requests_pending() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().expect("dir");
    let mut demo = Command::new(BIN)
        .args(["demo", "--data-dir"])
        .arg(dir.path().join("demo"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-console",
            "--interval",
            "1",
            "--approver-delay",
            "600",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("demo runs");
    let mut lines = BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let mut requests = 0;
    while requests < 3 {
        let line = lines.next().expect("the demo logs").expect("a line");
        if line.contains("  REQUEST  ") {
            requests += 1;
        }
    }
    let pid = demo.id().to_string();
    let signalled = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    // Drain the log so the demo never blocks writing it.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let deadline = signalled + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = demo.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = demo.kill();
            panic!("the demo was still running 15 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let rest = drain.join().expect("log");
    assert!(
        rest.iter().any(|l| l.contains("final checkpoint")),
        "it closed the log cleanly: {rest:?}"
    );
}

#[test]
fn a_notice_no_receiver_takes_is_listed_dead_and_can_be_sent_again() {
    let w = World::new();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = w.root.join("countersign.toml");
    std::fs::write(
        &config,
        format!(
            "[channels]\nfirst_retry_ms = 100\nmax_attempts = 2\n\n[[channels.channel]]\nname = \"hooks\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
        ),
    )
    .expect("config");
    let server = Server::start_with(
        &w.data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            &config.display().to_string(),
        ],
    );
    let out = request(&server.url, &w.token, "db.export", "quarterly numbers", &[]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("waiting for approval"), "{said}");
    let dead = (0..100)
        .find_map(|_| {
            let listed = w.admin(&["notices"]);
            if listed.contains("dead") {
                return Some(listed);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            None
        })
        .expect("the notice is set aside after its attempts");
    let line = dead.lines().next().expect("a line");
    assert!(
        line.contains("hooks") && line.contains("request.waiting"),
        "{line}"
    );
    assert!(line.contains("attempts 2"), "{line}");
    let id = line.split('\t').next().expect("id");
    // Sending it again is an administrator's change in the log.
    let d = w.data.display().to_string();
    let again = cs(&["admin", "--data-dir", &d, "notices", "--retry", id]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("queued again"));
    let not_dead = cs(&["admin", "--data-dir", &d, "notices", "--retry", "999999"]);
    assert!(!not_dead.status.success());
    assert!(String::from_utf8_lossy(&not_dead.stderr).contains("no dead notice 999999"));
    server.stop();
    let log = Command::new("sqlite3")
        .arg(w.data.join("countersign.db"))
        .arg("SELECT event_json FROM audit_events WHERE kind = 'admin_changed'")
        .output()
        .expect("sqlite3");
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.contains("notice_requeued") && log.contains("hooks"),
        "{log}"
    );
}

const BREAK_GLASS_POLICY: &str = r#"package countersign
import rego.v1
decision := {"outcome": "break_glass", "reason": "on-call emergency", "review_quorum": 1,
             "review_groups": ["security"]} if input.action.break_glass == true
else := {"outcome": "require_approval", "reason": "one approver", "quorum": 1, "groups": ["security"],
         "ttl_seconds": 900, "require_hardware_key": false, "quick_approve": false}
"#;

#[test]
fn break_glass_runs_at_once_and_a_reviewer_signs_the_review_from_the_command_line() {
    let w = World::new();
    let policy = w.root.join("policy.rego");
    std::fs::write(&policy, BREAK_GLASS_POLICY).expect("policy");
    let server = Server::start_with(
        &w.data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--policy",
            &policy.display().to_string(),
        ],
    );
    let bob = w.enroll("bob", &server.url);
    let erin = w.enroll("erin", &server.url);
    let out = request(
        &server.url,
        &w.token,
        "db.restore",
        "payments down, restoring last night's snapshot",
        &["--break-glass"],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "granted at once: {said}");
    let listed = ok(&["reviews", "--profile", &bob]);
    let line = listed.lines().next().expect("one break-glass use");
    assert!(
        line.contains("BREAK-GLASS") && line.contains("db.restore"),
        "{line}"
    );
    let id = line.split_whitespace().next().expect("id");
    // Erin is in finance: not a reviewer here.
    let refused = cs(&["review", id, "--profile", &erin]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only members of security"));
    let reviewed = ok(&[
        "review",
        id,
        "--concern",
        "--comment",
        "no ticket",
        "--profile",
        &bob,
    ]);
    assert!(
        reviewed.contains("with a concern") && reviewed.contains("1/1 reviews, complete"),
        "{reviewed}"
    );
    assert!(ok(&["reviews", "--profile", &bob]).is_empty());
    server.stop();
}
