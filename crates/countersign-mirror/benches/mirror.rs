//! The audit mirror at scale: a service holding COUNTERSIGN_BENCH_EVENTS (default 1,000,000)
//! audit events of realistic requests (real signatures), then, each beside a floor measured in
//! the same run:
//!
//! - initial sync + verification into an empty mirror, vs fetching the same pages unverified;
//! - the mirror's size on disk per event;
//! - full-text queries with a filter, p50/p95, vs the same SQL in the `sqlite3` shell;
//! - CSV of every request, vs `sqlite3 -csv` writing the same rows;
//! - the PDF report, vs computing its figures alone;
//! - CSV and PDF again over a mirror of 1,000,000 requests (the index rows replicated).
//!
//! `cargo bench -p countersign-mirror --bench mirror`. The seeded service is kept in
//! `$CARGO_TARGET_DIR/countersign-bench/` (delete it to seed again).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use countersign_client::Client;
use countersign_client::approver::open_session;
use countersign_core::{
    Action, ActionRequest, Actor, Decision, EnrolmentRequest, EventKind, ExecutionOutcome, Grant,
    KeyKind, Nonce, PolicyEvaluation, PolicyOutcome, PublicKey, Signature, SignedDecision,
    SignedGrant, Timestamp, Verdict, policy::policy_hash,
};
use countersign_mirror::{Mirror, SearchQuery, Witness, search_sql};
use countersign_report::{Control, csv_export, pdf};
use countersign_server::{AppState, Config, Policy, ServiceKey, SystemClock, admin};
use countersign_store::{Approver, NewEvent, Store};
use countersign_store_sqlite::SqliteStore;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use uuid::Uuid;

const ORIGIN: &str = "countersign.bench/log";
const POLICY: &str = "package countersign\nimport rego.v1\ndecision := {\"outcome\": \"deny\", \"reason\": \"bench\"}\n";
const TYPES: [&str; 6] = [
    "k8s.deploy",
    "db.export",
    "iam.role.update",
    "s3.read",
    "secrets.rotate",
    "dns.change",
];
const WHY: [&str; 6] = [
    "Release train 4.2 rollout to the EU clusters",
    "Quarterly churn analysis for the finance team",
    "Grant the deploy bot access to the artefact bucket",
    "Nightly report export for customer success",
    "Rotate the payment gateway credentials after the incident",
    "Move the status page to the new CDN",
];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank on sorted samples.
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn key(seed: u8) -> (SigningKey, PublicKey) {
    let k = SigningKey::from_bytes(&[seed; 32].into()).expect("scalar");
    let p = PublicKey::from_verifying_key(*k.verifying_key());
    (k, p)
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).expect("time")
}

struct Service {
    url: String,
    state: AppState,
}

async fn start(data: &Path) -> Service {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&data.join("countersign.db"))
            .await
            .expect("store"),
    );
    let policy_path = data.join("bench.rego");
    std::fs::write(&policy_path, POLICY).expect("policy");
    let policy = Arc::new(Policy::from_file(&policy_path).expect("policy"));
    let key = Arc::new(ServiceKey::load_or_create(data).expect("key"));
    let config = Config {
        origin: ORIGIN.into(),
        ..Config::default()
    };
    let state = AppState::new(store, Arc::new(SystemClock), policy, key, config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let serving = state.clone();
    tokio::spawn(async move {
        countersign_server::serve(listener, serving, std::future::pending()).await
    });
    Service { url, state }
}

/// Approvers bob (1), carol (2) enrolled through the API.
async fn enrol(svc: &Service) {
    let s = svc.state.store.as_ref();
    let now = svc.state.now();
    let client = Client::new(&svc.url).expect("client");
    for (i, id) in ["bob", "carol"].into_iter().enumerate() {
        let approver = Approver {
            id: id.into(),
            display_name: id.into(),
            groups: vec!["security".into()],
        };
        admin::put_approver(s, "bench", &approver, now)
            .await
            .expect("approver");
        let (code, _) = admin::issue_enrolment_code(s, "bench", id, 600, now)
            .await
            .expect("code");
        let (k, p) = key(i as u8 + 1);
        let payload = EnrolmentRequest::proof_payload(id, KeyKind::Pkcs11, "bench", &p, ORIGIN)
            .expect("payload");
        client
            .enroll(&EnrolmentRequest {
                approver_id: id.into(),
                code,
                key_kind: KeyKind::Pkcs11,
                label: "bench".into(),
                public_key: p.clone(),
                attestation: None,
                proof: Signature::from_p256(k.sign(&payload)),
            })
            .await
            .expect("enrol");
    }
}

fn decision(
    who: usize,
    action: &Action,
    digest: countersign_core::Digest,
    verdict: Verdict,
    comment: &str,
    at: i64,
) -> NewEvent {
    let id = ["bob", "carol"][who];
    let (k, p) = key(who as u8 + 1);
    let mut nonce = [0u8; 16];
    nonce[..16].copy_from_slice(action.id.as_bytes());
    nonce[15] ^= who as u8 + 1;
    let d = Decision {
        request_id: action.id,
        request_digest: digest,
        verdict,
        approver_id: id.into(),
        key_id: p.key_id(),
        decided_at: ts(at),
        comment: comment.into(),
        nonce: Nonce(nonce),
        verification_code: None,
    };
    let signature = Signature::from_p256(k.sign(&d.signing_payload().expect("payload")));
    NewEvent::new(
        Actor::Approver(id.into()),
        EventKind::DecisionRecorded {
            decision: SignedDecision {
                decision: d,
                signature,
            },
            key_kind: KeyKind::Pkcs11,
            attested_by: None,
        },
    )
}

/// The events of request `i`, created at `at` (ms).
fn request_events(i: u64, at: i64, service: &ServiceKey) -> Vec<NewEvent> {
    let requester = format!("agent:ci-{}", i % 25);
    let request: ActionRequest = serde_json::from_value(serde_json::json!({
        "type": TYPES[(i % 6) as usize],
        "resource": format!("{}://prod-{}/{}-{}", ["k8s", "postgres", "arn", "s3", "vault", "dns"][(i % 6) as usize], i % 3, ["web", "customers", "deployer", "reports", "payments", "status"][(i % 6) as usize], i % 500),
        "environment": (["prod", "staging", "dev"][(i % 3) as usize]),
        "parameters": {"ticket": format!("OPS-{}", i % 20000), "replicas": i % 7, "region": (["eu-west-1", "us-east-1"][(i % 2) as usize])},
        "justification": format!("{} (OPS-{})", WHY[(i % 6) as usize], i % 20000),
        "tags": ([["prod-change"], ["pii"], ["iam"]][(i % 3) as usize]),
    }))
    .expect("request");
    let action = Action {
        id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)),
        requester: requester.clone(),
        request,
        created_at: ts(at),
        expires_at: ts(at + 3_600_000),
        policy: PolicyEvaluation {
            outcome: PolicyOutcome::RequireApproval {
                quorum: 2,
                groups: vec!["security".into()],
                ttl_seconds: 3600,
                require_hardware_key: true,
                quick_approve: false,
                verification_code: false,
                require_idp_enrolment: false,
                max_sign_in_age_seconds: None,
                require_attested_key: false,
                escalation: Vec::new(),
                remind_before_seconds: Vec::new(),
            },
            reason: "two approvers from security".into(),
            policy_hash: policy_hash(POLICY.as_bytes()),
            risk: None,
        },
    };
    let digest = action.digest().expect("digest");
    let id = action.id;
    let mut events = vec![NewEvent::new(
        Actor::Agent(requester),
        EventKind::RequestCreated {
            action: Box::new(action.clone()),
            digest,
            authenticated_by: None,
        },
    )];
    let decided = at + 20_000 + (i % 600) as i64 * 1000;
    match i % 20 {
        0 | 1 => {
            events.push(decision(
                0,
                &action,
                digest,
                Verdict::Deny,
                "no change ticket for this",
                decided,
            ));
            events.push(NewEvent::new(
                Actor::System,
                EventKind::Denied {
                    action_id: id,
                    reason: "denied by bob".into(),
                },
            ));
        }
        2 => events.push(NewEvent::new(
            Actor::System,
            EventKind::Expired { action_id: id },
        )),
        _ => {
            events.push(decision(
                0,
                &action,
                digest,
                Verdict::Approve,
                "ticket checks out",
                decided - 5000,
            ));
            events.push(decision(1, &action, digest, Verdict::Approve, "", decided));
            events.push(NewEvent::new(
                Actor::System,
                EventKind::Approved {
                    action_id: id,
                    reason: "quorum reached".into(),
                },
            ));
            let grant = Grant {
                grant_id: Uuid::from_u128(
                    0x0193_0000_0000_7000_9000_0000_0000_0000 | u128::from(i),
                ),
                request_id: id,
                request_digest: digest,
                not_before: ts(decided),
                expires_at: ts(decided + 300_000),
                single_use: true,
            };
            let signature = service
                .sign(&grant.signing_payload().expect("payload"))
                .expect("sign");
            events.push(NewEvent::new(
                Actor::System,
                EventKind::GrantIssued {
                    grant: SignedGrant {
                        grant: grant.clone(),
                        signature,
                    },
                },
            ));
            events.push(NewEvent::new(
                Actor::Agent(format!("agent:ci-{}", i % 25)),
                EventKind::GrantRedeemed {
                    grant_id: grant.grant_id,
                    action_id: id,
                },
            ));
            events.push(NewEvent::new(
                Actor::Agent(format!("agent:ci-{}", i % 25)),
                EventKind::ExecutionReported {
                    action_id: id,
                    outcome: ExecutionOutcome {
                        succeeded: i % 50 != 7,
                        exit_code: Some(if i % 50 == 7 { 1 } else { 0 }),
                        detail: String::new(),
                    },
                },
            ));
        }
    }
    events
}

async fn seed(data: &Path, target: u64) -> Service {
    std::fs::create_dir_all(data).expect("dir");
    let svc = start(data).await;
    let size = svc.state.store.audit_size().await.expect("size");
    if size >= target {
        return svc;
    }
    if size == 0 || size < 10 {
        enrol(&svc).await;
    }
    let service_key = ServiceKey::load_or_create(data).expect("key");
    let started = Instant::now();
    let t0 = 1_790_000_000_000i64;
    let mut i = svc.state.store.audit_size().await.expect("size");
    let mut batch = Vec::new();
    loop {
        let size = svc.state.store.audit_size().await.expect("size");
        if size >= target {
            break;
        }
        // Whole requests per batch, so every request's events share its recorded time.
        let at = t0 + i as i64 * 2_000;
        while batch.len() < 5_000 && size + (batch.len() as u64) < target {
            batch.extend(request_events(i, at, &service_key));
            i += 1;
        }
        let recorded = ts(at + 900_000);
        svc.state
            .store
            .append_events(std::mem::take(&mut batch), recorded)
            .await
            .expect("append");
        eprint!("\rseeding: {size} events");
    }
    eprintln!(
        "\rseeded {} events in {:.1} s",
        svc.state.store.audit_size().await.expect("size"),
        started.elapsed().as_secs_f64()
    );
    svc
}

/// Runs `script` through the `sqlite3` shell on `db`; returns the wall time.
fn sqlite3_run(db: &Path, script: &str) -> f64 {
    use std::io::Write as _;
    let start = Instant::now();
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sqlite3 (apt install sqlite3)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script");
    assert!(child.wait().expect("sqlite3").success());
    start.elapsed().as_secs_f64()
}

/// Mean time of `sql` in the `sqlite3` shell: `runs` repetitions in one shell, minus the same
/// shell running as many trivial statements (start-up and output).
fn sqlite3_mean_ms(db: &Path, sql: &str, runs: usize) -> f64 {
    let repeat = |stmt: &str| format!("{stmt};\n").repeat(runs);
    let with = sqlite3_run(db, &repeat(sql));
    let without = sqlite3_run(db, &repeat("SELECT 1"));
    ((with - without).max(0.0) / runs as f64) * 1000.0
}

fn file_size(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
        .map(|m| m.len())
        .sum()
}

async fn bench_search(mirror: &Mirror, db: &Path, label: &str) {
    let queries = [
        (
            "common word + verdict",
            SearchQuery {
                text: "rollout".into(),
                status: Some("approved".into()),
                ..Default::default()
            },
        ),
        (
            "rare word + environment",
            SearchQuery {
                text: "OPS-1234".into(),
                environment: Some("prod".into()),
                ..Default::default()
            },
        ),
        (
            "prefix + approver + tag",
            SearchQuery {
                text: "paym".into(),
                approver: Some("carol".into()),
                tags: vec!["pii".into()],
                ..Default::default()
            },
        ),
        (
            "comment words + type",
            SearchQuery {
                text: "change ticket".into(),
                action_type: Some("db.export".into()),
                ..Default::default()
            },
        ),
    ];
    for (name, mut q) in queries {
        q.limit = Some(100);
        let mut ours = Vec::new();
        let mut hits = 0;
        for _ in 0..200 {
            let start = Instant::now();
            let page = mirror.search(&q).await.expect("search");
            ours.push(start.elapsed().as_secs_f64() * 1000.0);
            hits = page.items.len();
        }
        ours.sort_by(|a, b| a.total_cmp(b));
        let shell = sqlite3_mean_ms(db, &search_sql(&q), 200);
        let mean = ours.iter().sum::<f64>() / ours.len() as f64;
        println!(
            "search [{label}] {name:<26} {hits:>3} hits  mirror p50 {:>6.2} ms p95 {:>6.2} ms mean {mean:>6.2} ms | sqlite3 shell mean {shell:>6.2} ms | mean ratio {:.2}",
            pct(&ours, 0.5),
            pct(&ours, 0.95),
            mean / shell.max(0.001)
        );
    }
}

async fn bench_exports(mirror: &Mirror, db: &Path, dir: &Path, label: &str) {
    let all = SearchQuery::default();
    // Reading alone: every page the export reads, nothing written.
    let start = Instant::now();
    let mut q = SearchQuery {
        sort: countersign_mirror::Sort::Oldest,
        limit: Some(countersign_mirror::MAX_PAGE),
        ..Default::default()
    };
    let mut read = 0;
    loop {
        let page = mirror.search(&q).await.expect("page");
        read += page.items.len();
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    let reading = start.elapsed().as_secs_f64();
    println!("read   [{label}] {read} index rows through the mirror's pages in {reading:.2} s");
    let out = dir.join("export.csv");
    let start = Instant::now();
    let rows = csv_export::write(
        mirror,
        &all,
        std::fs::File::create(&out).expect("csv"),
        Control::none(),
    )
    .await
    .expect("csv");
    let csv = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let status = Command::new("sqlite3")
        .args(["-csv"])
        .arg(db)
        .arg("SELECT id, created_at, decided_at, decided_at - created_at, action_type, resource, environment, requester, requester_auth, on_behalf_of, policy_reason, quorum, status, approvals, denials, approved_by, denied_by, key_ids, hardware_only, comments, outcome, redeemed_at, tags, justification FROM requests ORDER BY seq")
        .stdout(std::fs::File::create(dir.join("floor.csv")).expect("floor"))
        .status()
        .expect("sqlite3");
    assert!(status.success());
    let floor = start.elapsed().as_secs_f64();
    println!(
        "csv    [{label}] {rows} rows in {csv:.2} s ({:.0} rows/s) | floor: sqlite3 -csv of the same columns {floor:.2} s",
        rows as f64 / csv
    );

    let start = Instant::now();
    let stats = mirror.report_stats(&all, 2000, 60).await.expect("stats");
    let figures = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let bytes = pdf::write(mirror, &all, ts(1_800_000_000_000), None, Control::none())
        .await
        .expect("pdf");
    let report = start.elapsed().as_secs_f64();
    println!(
        "pdf    [{label}] {} requests, {} KiB in {report:.2} s | floor: its figures alone {figures:.2} s",
        stats.totals.total,
        bytes.len() / 1024
    );
}

/// A copy of the mirror whose request index holds `rows` requests (the synced ones replicated
/// with new keys and ids), for exports at that scale.
async fn replicate(src: &Path, dst: &Path, rows: u64) -> Mirror {
    let _ = std::fs::remove_file(dst);
    std::fs::copy(src, dst).expect("copy");
    let mirror = Mirror::open(dst).await.expect("open copy");
    let have: i64 = {
        let out = Command::new("sqlite3")
            .arg(dst)
            .arg("SELECT COUNT(*) FROM requests")
            .output()
            .expect("sqlite3");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("count")
    };
    let copies = rows.div_ceil(have as u64);
    let mut sql = String::from("BEGIN;\n");
    const SPAN: i64 = 100_000_000; // beyond every synced seq
    for k in 1..copies as i64 {
        let off = k * SPAN;
        let limit = (rows as i64 - k * have).min(have);
        sql.push_str(&format!(
            "INSERT INTO requests SELECT seq + {off}, id || '-{k}', digest, created_at, expires_at, action_type, resource, environment, requester, on_behalf_of, tags, justification, parameters, policy_outcome, quorum, status, decided_at, approvers, comments, approvals, denials, hardware_only, grant_id, redeemed_at, outcome, last_seq + {off}, requester_auth, policy_reason, approved_by, denied_by, key_ids FROM requests WHERE seq < {SPAN} ORDER BY seq LIMIT {limit};\n\
             INSERT INTO request_approvers SELECT request_seq + {off}, approver_id, verdict FROM request_approvers WHERE request_seq < {SPAN};\n\
             INSERT INTO request_tags SELECT tag, request_seq + {off} FROM request_tags WHERE request_seq < {SPAN};\n"
        ));
    }
    sql.push_str("COMMIT;\n");
    sqlite3_run(dst, &sql);
    mirror
}

fn main() {
    let events = env("COUNTERSIGN_BENCH_EVENTS", 1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let base = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
        let dir = base.join("countersign-bench").join(format!("audit-{events}"));
        let svc = seed(&dir.join("service"), events).await;
        let size = svc.state.store.audit_size().await.expect("size");
        let (k, p) = key(1);
        let client = Client::new(&svc.url).expect("client");
        let sign = move |m: &[u8]| -> Result<Signature, String> { Ok(Signature::from_p256(k.sign(m))) };
        let client = open_session(&client, p.key_id(), &sign).await.expect("session");

        // Floor: the same pages fetched and parsed, nothing verified or stored.
        let start = Instant::now();
        let mut after = None;
        let mut fetched = 0u64;
        loop {
            let page = client.audit(after, 1000).await.expect("page");
            let Some(last) = page.events.last() else { break };
            after = Some(last.seq);
            fetched += page.events.len() as u64;
        }
        let floor = start.elapsed().as_secs_f64();

        let db = dir.join("mirror.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let mirror = Mirror::open(&db).await.expect("mirror");
        let witness = Witness { approver_id: "bob".into(), public_key: p.clone(), sign: &sign };
        let start = Instant::now();
        let report = mirror.sync(&client, Some(&witness), &|_| {}, None).await.expect("sync");
        let sync = start.elapsed().as_secs_f64();
        assert_eq!(report.to_size, size);
        println!(
            "sync   initial sync + verification of {size} events: {sync:.1} s ({:.0} events/s) | floor: fetching the same {fetched} events unverified {floor:.1} s",
            size as f64 / sync
        );
        if std::env::var_os("COUNTERSIGN_BENCH_SYNC_ONLY").is_some() {
            return;
        }
        let status = mirror.status().await.expect("status");
        let bytes = file_size(&db);
        println!(
            "size   mirror {:.0} MiB for {size} events and {} requests: {:.0} bytes per event",
            bytes as f64 / 1048576.0,
            status.requests,
            bytes as f64 / size as f64
        );
        // Checkpoint the WAL so the shell and the mirror read the same file.
        sqlite3_run(&db, "PRAGMA wal_checkpoint(TRUNCATE);");
        bench_search(&mirror, &db, &format!("{size} events")).await;
        bench_exports(&mirror, &db, &dir, &format!("{} requests", status.requests)).await;

        let big = dir.join("mirror-1m-requests.db");
        let replicated = replicate(&db, &big, 1_000_000).await;
        sqlite3_run(&big, "PRAGMA wal_checkpoint(TRUNCATE);");
        bench_search(&replicated, &big, "1M requests").await;
        bench_exports(&replicated, &big, &dir, "1M requests").await;
    });
}
