//! The approver's audit mirror (`countersign-mirror`) against a real service over HTTP: it
//! verifies, indexes and searches what the service serves, cosigns what it verified, and
//! raises an alarm — keeping its last verified state — when the service's database is
//! tampered with: an event changed, dropped or reordered, or a rewritten history shown to a
//! console that never saw the original (caught through another console's cosignature).

mod harness;

use std::net::SocketAddr;
use std::path::Path;

use countersign_client::Client;
use countersign_client::approver::open_session;
use countersign_core::{
    AuditEvent, Decision, Digest, EventKind, Nonce, Signature, SignedDecision, Verdict,
};
use countersign_mirror::{AlarmKind, Mirror, MirrorError, SearchQuery, Witness};
use harness::Harness;
use p256::ecdsa::signature::Signer as _;
use serde_json::json;
use sqlx::Connection as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

struct Running {
    h: Harness,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

async fn serve_on(h: &Harness, listener: TcpListener) -> JoinHandle<()> {
    let state = h.state.clone();
    tokio::spawn(async move {
        let _ = countersign_server::serve(listener, state, std::future::pending()).await;
    })
}

impl Running {
    async fn start(h: Harness) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = serve_on(&h, listener).await;
        Self { h, addr, server }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the service and starts it again over the same data directory and address, so it
    /// rebuilds its Merkle tree from what the database now holds.
    async fn restart(self) -> Self {
        self.server.abort();
        let _ = self.server.await;
        let h = self.h.reopen().await;
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        let server = serve_on(&h, listener).await;
        Self {
            h,
            addr: self.addr,
            server,
        }
    }

    async fn session(&self, who: usize) -> Client {
        let key = self.h.approvers[who].key.clone();
        let client = Client::new(&self.url()).expect("client");
        open_session(
            &client,
            self.h.approvers[who].public.key_id(),
            move |m: &[u8]| Ok(Signature::from_p256(key.sign(m))),
        )
        .await
        .expect("session")
    }

    /// Syncs `mirror` as approver `who`, cosigning with their key.
    async fn sync(
        &self,
        mirror: &Mirror,
        who: usize,
    ) -> Result<countersign_mirror::SyncReport, MirrorError> {
        let client = self.session(who).await;
        let key = self.h.approvers[who].key.clone();
        let sign =
            move |m: &[u8]| -> Result<Signature, String> { Ok(Signature::from_p256(key.sign(m))) };
        let witness = Witness {
            approver_id: self.h.approvers[who].id.into(),
            public_key: self.h.approvers[who].public.clone(),
            sign: &sign,
        };
        mirror.sync(&client, Some(&witness), &|_| {}, None).await
    }
}

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn decide(
    h: &Harness,
    who: usize,
    id: Uuid,
    digest: Digest,
    verdict: Verdict,
    comment: &str,
) -> SignedDecision {
    let n = NONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    let a = &h.approvers[who];
    let decision = Decision {
        request_id: id,
        request_digest: digest,
        verdict,
        approver_id: a.id.into(),
        key_id: a.public.key_id(),
        decided_at: h.now(),
        comment: comment.into(),
        nonce: Nonce(nonce),
        verification_code: None,
    };
    let signature = Signature::from_p256(a.key.sign(&decision.signing_payload().expect("payload")));
    SignedDecision {
        decision,
        signature,
    }
}

async fn submit(h: &Harness, body: serde_json::Value) -> (Uuid, Digest) {
    let (status, body) = h.submit(body).await;
    assert!(status.is_success(), "{body}");
    (
        body["id"].as_str().expect("id").parse().expect("uuid"),
        body["digest"]
            .as_str()
            .expect("digest")
            .parse()
            .expect("digest"),
    )
}

/// A known data set: `n` deploys approved by bob and carol, one PII export denied by bob with
/// a comment, one read allowed by policy, one frozen change denied by policy.
async fn populate(h: &Harness, n: usize) -> Uuid {
    for i in 0..n {
        let (id, digest) = submit(h, json!({"resource": format!("cluster/prod/web-{i}")})).await;
        for who in [0, 1] {
            let d = decide(h, who, id, digest, Verdict::Approve, "looks right");
            let (status, body) = h.post_decision(id, &d).await;
            assert!(status.is_success(), "{body}");
        }
    }
    let (export, digest) = submit(
        h,
        json!({"type": "db.export", "resource": "postgres://prod/customers",
               "justification": "quarterly churn analysis", "tags": ["pii"],
               "parameters": {"table": "customers", "rows": 52000}}),
    )
    .await;
    let d = decide(
        h,
        0,
        export,
        digest,
        Verdict::Deny,
        "no ticket for a PII export",
    );
    let (status, body) = h.post_decision(export, &d).await;
    assert!(status.is_success(), "{body}");
    submit(h, json!({"type": "s3.read", "resource": "s3://reports/q3"})).await;
    submit(h, json!({"environment": "frozen"})).await;
    export
}

async fn audit_size(r: &Running) -> u64 {
    r.h.state.store.audit_size().await.expect("size")
}

fn alarm_kind(result: Result<countersign_mirror::SyncReport, MirrorError>) -> AlarmKind {
    match result {
        Err(MirrorError::Alarm(a)) => a.kind,
        other => panic!("expected an alarm, got {other:?}"),
    }
}

/// Rewrites the service's stored event `seq` with `change`, leaf hash and all, as an attacker
/// with the database would (the service refuses to serve a row whose hash does not match).
async fn rewrite(db: &Path, seq: i64, change: impl FnOnce(&mut AuditEvent)) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open");
    let body: String = sqlx::query_scalar("SELECT event_json FROM audit_events WHERE seq = ?")
        .bind(seq)
        .fetch_one(&mut conn)
        .await
        .expect("event");
    let mut event: AuditEvent = serde_json::from_str(&body).expect("parse");
    change(&mut event);
    let bytes = event.leaf_bytes().expect("canonical");
    let leaf = countersign_core::merkle::leaf_hash(&bytes);
    sqlx::query("UPDATE audit_events SET event_json = ?, leaf_hash = ? WHERE seq = ?")
        .bind(String::from_utf8(bytes).expect("utf-8"))
        .bind(leaf.0.to_vec())
        .bind(seq)
        .execute(&mut conn)
        .await
        .expect("update");
}

async fn seq_of_kind(db: &Path, kind: &str) -> i64 {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open");
    sqlx::query_scalar("SELECT seq FROM audit_events WHERE kind = ? ORDER BY seq LIMIT 1")
        .bind(kind)
        .fetch_one(&mut conn)
        .await
        .expect("seq")
}

#[tokio::test]
async fn mirror_verifies_indexes_searches_and_cosigns() {
    let r = Running::start(Harness::new().await).await;
    let export = populate(&r.h, 3).await;
    let dir = tempfile::tempdir().expect("dir");
    let bob = Mirror::open(&dir.path().join("bob.db"))
        .await
        .expect("mirror");
    let served = Client::new(&r.url())
        .expect("client")
        .server_key()
        .await
        .expect("server key");
    let other = r.h.approvers[0].public.clone();
    assert!(
        bob.holds_log("elsewhere", &other).await.expect("holds"),
        "a mirror not yet bound takes any log"
    );

    let report = r.sync(&bob, 0).await.expect("sync");
    assert_eq!(report.from_size, 0);
    // Bound now: the console keeps another service's history in another file.
    assert!(
        bob.holds_log(&served.name, &served.public_key)
            .await
            .expect("holds")
    );
    assert!(!bob.holds_log(&served.name, &other).await.expect("holds"));
    assert!(
        !bob.holds_log("elsewhere", &served.public_key)
            .await
            .expect("holds")
    );
    assert_eq!(report.to_size, audit_size(&r).await);
    assert!(report.cosigned, "bob's cosignature was not taken");

    // Search: free text over resource, justification, comments, parameters; filters.
    let find = |q: SearchQuery| {
        let bob = bob.clone();
        async move { bob.search(&q).await.expect("search").items }
    };
    let hits = find(SearchQuery {
        text: "customers".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
        vec![export.to_string()]
    );
    assert_eq!(hits[0].status, "denied");
    assert_eq!(hits[0].approvers, vec!["bob".to_owned()]);
    for text in ["no ticket", "churn", "52000", "pii", "quarter"] {
        let hits = find(SearchQuery {
            text: text.into(),
            ..Default::default()
        })
        .await;
        assert_eq!(hits.len(), 1, "{text}");
        assert_eq!(hits[0].id, export.to_string(), "{text}");
    }
    let approved = find(SearchQuery {
        status: Some("approved".into()),
        approver: Some("carol".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(approved.len(), 3);
    assert!(
        approved.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first"
    );
    assert!(
        approved
            .iter()
            .all(|a| a.approvers == ["bob", "carol"] && a.time_to_decision_ms.is_some())
    );
    let web1 = find(SearchQuery {
        text: "web-1".into(),
        action_type: Some("k8s.deploy".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(web1.len(), 1);
    assert_eq!(web1[0].resource, "cluster/prod/web-1");
    let by_policy = find(SearchQuery {
        status: Some("denied".into()),
        environment: Some("frozen".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_policy.len(), 1);
    assert!(by_policy[0].approvers.is_empty());
    let tagged = find(SearchQuery {
        tags: vec!["prod-change".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(
        tagged.len(),
        5,
        "all but the export carry the harness's default tag"
    );
    assert_eq!(bob.count(&SearchQuery::default()).await.expect("count"), 6);
    let page = bob
        .search(&SearchQuery {
            limit: Some(4),
            ..Default::default()
        })
        .await
        .expect("page");
    let rest = bob
        .search(&SearchQuery {
            limit: Some(4),
            after: page.next,
            ..Default::default()
        })
        .await
        .expect("page");
    assert_eq!(page.items.len() + rest.items.len(), 6);
    assert!(rest.next.is_none());

    // The full request, each event proven against the checkpoint.
    let detail = bob.request(export).await.expect("detail");
    assert!(detail.verified);
    assert_eq!(detail.checkpoint_size, report.to_size);
    assert_eq!(detail.decisions.len(), 1);
    assert_eq!(detail.decisions[0].approver_id, "bob");
    assert!(!detail.decisions[0].hardware);
    let kinds: Vec<_> = detail.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&"request_created"));
    assert!(
        kinds.contains(&"decision_recorded") && kinds.contains(&"denied"),
        "{kinds:?}"
    );

    // The service serves bob's cosignature with the checkpoint.
    let client = r.session(1).await;
    let note = client.checkpoint().await.expect("checkpoint").note;
    assert!(note.contains("\n\u{2014} bob "), "{note}");

    // Incremental: only the new events are fetched.
    populate(&r.h, 1).await;
    let again = r.sync(&bob, 0).await.expect("sync");
    assert_eq!(again.from_size, report.to_size);
    assert_eq!(again.to_size, audit_size(&r).await);
    assert_eq!(bob.count(&SearchQuery::default()).await.expect("count"), 10);

    // Carol's console checks bob's cosigned checkpoint against her own view.
    let carol = Mirror::open(&dir.path().join("carol.db"))
        .await
        .expect("mirror");
    let report = r.sync(&carol, 1).await.expect("sync");
    assert!(
        report.witnesses.iter().any(|w| w.approver_id == "bob"),
        "{:?}",
        report.witnesses
    );
    assert!(bob.alarms().await.expect("alarms").is_empty());
}

#[tokio::test]
async fn rewritten_history_is_caught_by_the_mirror_that_saw_it_and_by_a_new_one() {
    let r = Running::start(Harness::new().await).await;
    populate(&r.h, 2).await;
    let dir = tempfile::tempdir().expect("dir");
    let bob = Mirror::open(&dir.path().join("bob.db"))
        .await
        .expect("mirror");
    let before = r.sync(&bob, 0).await.expect("sync").to_size;

    // An attacker with the database rewrites why a request was approved, leaf hash and all,
    // and the service restarts over it and signs new checkpoints of the new tree.
    let db = r.h.dir.path().join("countersign.db");
    let seq = seq_of_kind(&db, "approved").await;
    rewrite(&db, seq, |e| {
        if let EventKind::Approved { reason, .. } = &mut e.event {
            *reason = "approved by the CTO".into();
        }
    })
    .await;
    let r = r.restart().await;
    populate(&r.h, 1).await;

    assert_eq!(alarm_kind(r.sync(&bob, 0).await), AlarmKind::Inconsistent);
    let status = bob.status().await.expect("status");
    assert_eq!(
        status.verified_size, before,
        "the last verified state is kept"
    );
    assert_eq!(status.alarms.len(), 1);
    assert!(
        status.alarms[0].alarm.message.contains("rewritten"),
        "{}",
        status.alarms[0].alarm.message
    );

    // Carol never saw the original; bob's cosignature of it gives the rewrite away.
    let carol = Mirror::open(&dir.path().join("carol.db"))
        .await
        .expect("mirror");
    assert_eq!(alarm_kind(r.sync(&carol, 1).await), AlarmKind::SplitView);
}

#[tokio::test]
async fn changed_dropped_and_reordered_events_are_caught() {
    let r = Running::start(Harness::new().await).await;
    populate(&r.h, 2).await;
    let db = r.h.dir.path().join("countersign.db");
    let dir = tempfile::tempdir().expect("dir");
    let bob = Mirror::open(&dir.path().join("bob.db"))
        .await
        .expect("mirror");
    let size = r.sync(&bob, 0).await.expect("sync").to_size;

    // Changed, leaf hash and all: the service still serves the checkpoint it signed before,
    // and the events it now serves do not hash to that root.
    let seq = seq_of_kind(&db, "denied").await;
    rewrite(&db, seq, |e| {
        if let EventKind::Denied { reason, .. } = &mut e.event {
            *reason = "nothing to see".into();
        }
    })
    .await;
    let r = r.restart().await;
    let fresh = Mirror::open(&dir.path().join("fresh1.db"))
        .await
        .expect("mirror");
    assert_eq!(alarm_kind(r.sync(&fresh, 1).await), AlarmKind::RootMismatch);
    assert_eq!(fresh.status().await.expect("status").verified_size, 0);

    // Reordered: two events swap places, rewritten consistently with their new positions.
    let a = seq_of_kind(&db, "decision_recorded").await;
    let swap = |to: u64| move |e: &mut AuditEvent| e.seq = to;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open");
    sqlx::query("UPDATE audit_events SET seq = -1 WHERE seq = ?")
        .bind(a)
        .execute(&mut conn)
        .await
        .expect("move");
    sqlx::query("UPDATE audit_events SET seq = ? WHERE seq = ?")
        .bind(a)
        .bind(a + 1)
        .execute(&mut conn)
        .await
        .expect("move");
    sqlx::query("UPDATE audit_events SET seq = ? WHERE seq = -1")
        .bind(a + 1)
        .execute(&mut conn)
        .await
        .expect("move");
    drop(conn);
    rewrite(&db, a, swap(a as u64)).await;
    rewrite(&db, a + 1, swap(a as u64 + 1)).await;
    let r = r.restart().await;
    populate(&r.h, 1).await;
    assert_eq!(alarm_kind(r.sync(&bob, 0).await), AlarmKind::Inconsistent);

    // Dropped: an event removed from the middle of the log.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open");
    sqlx::query("DELETE FROM audit_events WHERE seq = ?")
        .bind(a + 3)
        .execute(&mut conn)
        .await
        .expect("delete");
    drop(conn);
    let r = r.restart().await;
    let fresh = Mirror::open(&dir.path().join("fresh2.db"))
        .await
        .expect("mirror");
    let kind = alarm_kind(r.sync(&fresh, 2).await);
    assert!(
        matches!(kind, AlarmKind::SequenceGap | AlarmKind::RootMismatch),
        "{kind:?}"
    );
    assert!(bob.status().await.expect("status").verified_size == size);
}

/// Reports from a known data set: the CSV parses back to the index's rows (a formula in an
/// agent's text neutralised), the evidence bundle verifies offline and fails on any changed
/// byte, and the PDF's text carries the right totals.
#[tokio::test]
async fn reports_from_a_known_data_set() {
    use countersign_report::{Control, bundle, csv_export, pdf};

    let r = Running::start(Harness::new().await).await;
    populate(&r.h, 3).await;
    let formula = "=HYPERLINK(\"http://evil.example\",\"click\")";
    submit(
        &r.h,
        json!({"type": "s3.read", "resource": "s3://reports/q4", "justification": formula}),
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let bob = Mirror::open(&dir.path().join("bob.db"))
        .await
        .expect("mirror");
    r.sync(&bob, 0).await.expect("sync");
    let all = SearchQuery::default();
    let now = r.h.now();

    // CSV: RFC 4180 with a BOM; every row reads back as the index has it.
    let mut out = Vec::new();
    let rows = csv_export::write(&bob, &all, &mut out, Control::none())
        .await
        .expect("csv");
    assert_eq!(rows, 7);
    assert!(out.starts_with(b"\xEF\xBB\xBF"));
    assert!(out.windows(2).any(|w| w == b"\r\n"), "CRLF line ends");
    let mut reader = csv::Reader::from_reader(&out[3..]);
    assert_eq!(
        reader.headers().expect("header").iter().collect::<Vec<_>>(),
        csv_export::HEADER.to_vec()
    );
    let records: Vec<csv::StringRecord> =
        reader.records().collect::<Result<_, _>>().expect("records");
    assert_eq!(records.len(), 7);
    let index = bob
        .search(&SearchQuery {
            sort: countersign_mirror::Sort::Oldest,
            ..Default::default()
        })
        .await
        .expect("search")
        .items;
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let bob_key = r.h.approvers[0].public.key_id().to_string();
    for (record, row) in records.iter().zip(&index) {
        assert_eq!(&record[col("request_id")], row.id);
        assert_eq!(&record[col("action_type")], row.action_type);
        assert_eq!(&record[col("resource")], row.resource);
        assert_eq!(&record[col("requester")], row.requester);
        // Every agent here used the API token the harness issued.
        assert_eq!(&record[col("requester_authentication")], "api_token");
        assert_eq!(&record[col("verdict")], row.status);
        assert_eq!(
            &record[col("justification")],
            csv_export::safe_cell(&row.justification)
        );
        if let Some(ms) = row.time_to_decision_ms {
            let seconds: f64 = record[col("time_to_decision_seconds")]
                .parse()
                .expect("seconds");
            assert!((seconds * 1000.0 - ms as f64).abs() < 1.0);
        }
        // Approvers and deniers apart; keys and hardware only where someone signed.
        match row.action_type.as_str() {
            "db.export" => {
                assert_eq!(&record[col("approved_by")], "");
                assert_eq!(&record[col("denied_by")], "bob");
                assert_eq!(&record[col("comments")], "no ticket for a PII export");
                assert_eq!(&record[col("decision_key_ids")], bob_key);
                assert_eq!(&record[col("hardware_keys_only")], "false");
            }
            "k8s.deploy" if row.status == "approved" => {
                assert_eq!(&record[col("approved_by")], "bob carol");
                assert_eq!(&record[col("denied_by")], "");
                assert_eq!(
                    record[col("decision_key_ids")].split(' ').count(),
                    2,
                    "{record:?}"
                );
                assert_eq!(&record[col("policy_reason")], "two from security");
            }
            _ => {
                // Decided by policy alone: nobody signed, so no key can be said to be hardware.
                assert_eq!(&record[col("approved_by")], "");
                assert_eq!(&record[col("decision_key_ids")], "");
                assert_eq!(&record[col("hardware_keys_only")], "");
                assert!(!record[col("policy_reason")].is_empty(), "{record:?}");
            }
        }
    }
    assert!(
        records
            .iter()
            .any(|r| r[col("justification")] == format!("'{formula}")),
        "formula neutralised"
    );

    // Evidence bundle, signed by bob.
    let key = r.h.approvers[0].key.clone();
    let sign =
        move |m: &[u8]| -> Result<Signature, String> { Ok(Signature::from_p256(key.sign(m))) };
    let exporter = bundle::Exporter {
        approver_id: "bob".into(),
        key_id: r.h.approvers[0].public.key_id(),
        sign: &sign,
    };
    let mut evidence = Vec::new();
    let written = bundle::write(&bob, &all, &mut evidence, &exporter, now, Control::none())
        .await
        .expect("bundle");
    assert_eq!(written.requests, 7);
    let verified = bundle::verify(evidence.as_slice(), None).expect("verifies");
    assert_eq!(verified.requests, 7);
    assert_eq!(verified.events, written.events);
    assert_eq!(verified.exported_by.approver_id, "bob");
    assert!(
        verified.cosigned_by.contains(&"bob".to_owned()),
        "{:?}",
        verified.cosigned_by
    );
    let service_key = r.h.state.key.public().key_id();
    bundle::verify(evidence.as_slice(), Some(&service_key)).expect("pinned to the service key");
    let other = harness::key(99).1.key_id();
    assert!(bundle::verify(evidence.as_slice(), Some(&other)).is_err());
    // Any changed byte fails: try one in every 61 (header, events, proofs and the end line).
    for at in (0..evidence.len()).step_by(61).chain([evidence.len() - 2]) {
        let mut changed = evidence.clone();
        changed[at] ^= 0x01;
        assert!(
            bundle::verify(changed.as_slice(), None).is_err(),
            "byte {at} changed and still verifies"
        );
    }
    let cut = evidence[..evidence.len() - 1]
        .rsplitn(2, |b| *b == b'\n')
        .nth(1)
        .expect("lines")
        .len()
        + 1;
    let err = bundle::verify(&evidence[..cut], None).expect_err("truncated");
    assert!(err.message.contains("truncated"), "{err}");

    // PDF: its text holds the totals of the data set.
    // The PDF names the bundle by its hash; both are anchored to the same checkpoint.
    let sha256 = {
        use sha2::Digest as _;
        sha2::Sha256::digest(&evidence)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let named = pdf::Evidence {
        file: "evidence.jsonl".into(),
        sha256: sha256.clone(),
        requests: written.requests,
        events: written.events,
        tree_size: written.tree_size,
    };
    let bytes = pdf::write(&bob, &all, now, Some(&named), Control::none())
        .await
        .expect("pdf");
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, &bytes).expect("write");
    let text = std::process::Command::new("pdftotext")
        .args(["-layout"])
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) runs");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    for expected in [
        "Countersign audit report",
        "Requests: 7",
        "Approved: 5",
        "Denied: 2",
        "Expired: 0",
        "Pending: 0",
        "API token issued by this service: 7",
        "Decided requests: 7",
        "k8s.deploy",
        "db.export",
        "postgres://prod/customers",
        "countersign.test/log",
        "Every decision (7)",
        "no ticket for a PII export",
        "Evidence bundle: evidence.jsonl (7 requests",
        &format!("SHA-256 {sha256}"),
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from the PDF text:\n{text}"
        );
    }
    // Every decision with its key: the harness's keys are software, claimed.
    assert!(
        text.matches("claimed").count() >= 7,
        "each decision says its key's attestation:\n{text}"
    );
    let bob_row = text
        .lines()
        .find(|l| l.trim_start().starts_with("bob"))
        .expect("bob's row");
    assert_eq!(
        bob_row.split_whitespace().collect::<Vec<_>>(),
        ["bob", "3", "1", "4"]
    );

    // A mirror indexed before the CSV's decision columns existed takes them from its stored
    // events when it is upgraded: the same export, byte for byte.
    drop(bob);
    let db = dir.path().join("bob.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("db");
    for column in ["policy_reason", "approved_by", "denied_by", "key_ids"] {
        sqlx::query(&format!("ALTER TABLE requests DROP COLUMN {column}"))
            .execute(&mut conn)
            .await
            .expect("drop");
    }
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 3")
        .execute(&mut conn)
        .await
        .expect("forget");
    conn.close().await.expect("close");
    let upgraded = Mirror::open(&db).await.expect("mirror");
    let mut again = Vec::new();
    csv_export::write(&upgraded, &all, &mut again, Control::none())
        .await
        .expect("csv");
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(&out)
    );
}

/// `{"a": {"a": … 1 …}}` with `levels` objects: the body around it adds one level.
fn nested_context(levels: usize) -> serde_json::Value {
    let mut value = json!(1);
    for _ in 0..levels {
        value = json!({ "a": value });
    }
    value
}

/// Whatever intake accepts, every reader reads: a request at the deepest nesting the service
/// takes is served back to the agent and to approvers (inbox and view), synced and verified by
/// a mirror without an alarm, and exported into an evidence bundle that verifies; one level
/// deeper is refused at the door with nothing written.
#[tokio::test]
async fn deepest_accepted_request_is_readable_by_every_reader() {
    use countersign_report::{Control, bundle};
    let max = countersign_core::json_budget::MAX_DEPTH;
    let r = Running::start(Harness::new().await).await;

    let before = audit_size(&r).await;
    let (status, body) = r.h.submit(json!({"context": nested_context(max)})).await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert_eq!(harness::code(&body), "json_too_deep");
    let (status, body) =
        r.h.submit(json!({"parameters": {"n": 9007199254740992u64}}))
            .await;
    assert_eq!(
        (status.as_u16(), harness::code(&body)),
        (400, "unsafe_integer"),
        "{body}"
    );
    assert_eq!(audit_size(&r).await, before, "refusals wrote nothing");

    // The body is level 1, `context` level 2: max - 1 objects inside it reach the limit.
    let (id, _) = submit(&r.h, json!({"context": nested_context(max - 1)})).await;
    let bob = r.session(0).await;
    let pending = bob.pending().await.expect("inbox reads");
    assert!(pending.iter().any(|v| v.id == id));
    let view = bob.view(id).await.expect("view reads");
    assert!(view.action.request.context.0["a"]["a"]["a"].is_object());

    let dir = tempfile::tempdir().expect("dir");
    let mirror = Mirror::open(&dir.path().join("bob.db"))
        .await
        .expect("mirror");
    let report = r.sync(&mirror, 0).await.expect("the mirror reads it");
    assert_eq!(report.to_size, audit_size(&r).await);
    let key = r.h.approvers[0].key.clone();
    let sign =
        move |m: &[u8]| -> Result<Signature, String> { Ok(Signature::from_p256(key.sign(m))) };
    let exporter = bundle::Exporter {
        approver_id: "bob".into(),
        key_id: r.h.approvers[0].public.key_id(),
        sign: &sign,
    };
    let mut evidence = Vec::new();
    bundle::write(
        &mirror,
        &SearchQuery::default(),
        &mut evidence,
        &exporter,
        r.h.now(),
        Control::none(),
    )
    .await
    .expect("bundle");
    let verified = bundle::verify(evidence.as_slice(), None).expect("bundle verifies");
    assert_eq!(verified.requests, 1);
}

/// A service whose database lost the checkpoint a witness cosigned says so instead of serving
/// a shorter list of cosignatures.
#[tokio::test]
async fn witness_evidence_is_never_silently_dropped() {
    let r = Running::start(Harness::new().await).await;
    populate(&r.h, 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let bob = Mirror::open(&dir.path().join("bob.db"))
        .await
        .expect("mirror");
    let report = r.sync(&bob, 0).await.expect("sync");
    assert!(report.cosigned);

    let db = r.h.dir.path().join("countersign.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open");
    sqlx::query("DELETE FROM checkpoints")
        .execute(&mut conn)
        .await
        .expect("delete");
    let served = r.session(1).await.cosignatures().await;
    assert!(
        matches!(&served, Err(e) if e.code() == Some("corrupt_data")),
        "{served:?}"
    );
}

/// A service that takes a witness's cosignature (201) but never serves it is caught by that
/// witness: the evidence it just gave must be what every other console is shown.
#[tokio::test]
async fn a_witness_notices_its_cosignature_is_not_served() {
    let r = Running::start(Harness::new().await).await;
    populate(&r.h, 1).await;
    let db = r.h.dir.path().join("countersign.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open");
    sqlx::query(
        "CREATE TRIGGER hide_cosignatures AFTER INSERT ON cosignatures
         BEGIN DELETE FROM cosignatures WHERE key_id = NEW.key_id; END",
    )
    .execute(&mut conn)
    .await
    .expect("trigger");
    let dir = tempfile::tempdir().expect("dir");
    let bob = Mirror::open(&dir.path().join("bob.db"))
        .await
        .expect("mirror");
    assert_eq!(
        alarm_kind(r.sync(&bob, 0).await),
        AlarmKind::CosignatureHidden
    );
}

/// A proof of one request (`countersign audit proof`, the console's "Save proof"): its
/// events with their inclusion proofs, the checkpoint, and only the keys it needs — those that
/// decided it and the exporter's; it verifies offline on its own and fails on any changed byte.
#[tokio::test]
async fn a_proof_of_one_request_stands_alone() {
    use countersign_report::{Control, bundle};

    let r = Running::start(Harness::new().await).await;
    let export = populate(&r.h, 2).await;
    let dir = tempfile::tempdir().expect("dir");
    let bob = Mirror::open(&dir.path().join("bob.db"))
        .await
        .expect("mirror");
    r.sync(&bob, 0).await.expect("sync");

    let key = r.h.approvers[0].key.clone();
    let sign =
        move |m: &[u8]| -> Result<Signature, String> { Ok(Signature::from_p256(key.sign(m))) };
    let exporter = bundle::Exporter {
        approver_id: "bob".into(),
        key_id: r.h.approvers[0].public.key_id(),
        sign: &sign,
    };
    let one = SearchQuery {
        id: Some(export.to_string()),
        ..Default::default()
    };
    let mut proof = Vec::new();
    let written = bundle::write(
        &bob,
        &one,
        &mut proof,
        &exporter,
        r.h.now(),
        Control::none(),
    )
    .await
    .expect("proof");
    let verified = bundle::verify(proof.as_slice(), Some(&r.h.state.key.public().key_id()))
        .expect("verifies offline");
    assert_eq!((written.requests, verified.requests), (1, 1));
    // Its events (created, decision, denied) and bob's key enrolment: nobody else's key.
    let kinds: Vec<String> = proof
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|l| l["type"] == "event")
        .map(|l| {
            l["event"]["event"]["type"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "key_enrolled").count(),
        1,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"request_created".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"decision_recorded".to_owned()), "{kinds:?}");
    for at in (0..proof.len()).step_by(37).chain([proof.len() - 2]) {
        let mut changed = proof.clone();
        changed[at] ^= 0x01;
        assert!(
            bundle::verify(changed.as_slice(), None).is_err(),
            "byte {at} changed and the proof still verifies"
        );
    }
}

/// A witness policy, signed with the service key: bob's and carol's keys, two of them.
fn witness_policy(h: &Harness) -> countersign_core::witness_policy::SignedWitnessPolicy {
    use countersign_core::witness_policy::{
        FORMAT, PolicyWitness, SignedWitnessPolicy, WitnessPolicy,
    };
    let policy = WitnessPolicy {
        format: FORMAT.into(),
        origin: "countersign.test/log".into(),
        threshold: 2,
        witnesses: h.approvers[..2]
            .iter()
            .map(|a| PolicyWitness {
                name: a.id.into(),
                key_id: a.public.key_id(),
            })
            .collect(),
        issued_at: h.now(),
    };
    let signature = h
        .state
        .key
        .sign(&policy.signing_payload().expect("payload"))
        .expect("sign");
    SignedWitnessPolicy { policy, signature }
}

/// Syncs `mirror` as approver `who` without cosigning (a reviewer's mirror, not a witness).
async fn sync_as_reader(
    r: &Running,
    mirror: &Mirror,
    who: usize,
) -> Result<countersign_mirror::SyncReport, MirrorError> {
    let client = r.session(who).await;
    mirror.sync(&client, None, &|_| {}, None).await
}

/// A service that rewrites its log must drop the witnesses' cosignatures of the old history (they
/// would expose it), and a fresh mirror alone cannot tell; one that pinned the deployment's
/// witness policy can: too few of its witnesses vouch for what it is shown.
#[tokio::test]
async fn a_rewritten_log_with_dropped_cosignatures_alarms_a_fresh_mirror_under_a_witness_policy() {
    let r = Running::start(Harness::new().await).await;
    populate(&r.h, 2).await;
    let dir = tempfile::tempdir().expect("dir");
    let policy = witness_policy(&r.h);
    // The witnesses, bob and carol, verify and cosign.
    for (who, name) in [(0, "bob"), (1, "carol")] {
        let m = Mirror::open(&dir.path().join(format!("{name}.db")))
            .await
            .expect("mirror");
        r.sync(&m, who).await.expect("sync");
    }
    // A reviewer's mirror under the policy: both cosigned, so the history is witnessed.
    let dave = Mirror::open(&dir.path().join("dave.db"))
        .await
        .expect("mirror");
    dave.pin_witness_policy(&policy).await.expect("pin");
    let report = sync_as_reader(&r, &dave, 2).await.expect("witnessed");
    assert_eq!(report.witnessed_size, Some(report.to_size));
    // A policy the service key did not sign is refused.
    let mut forged = policy.clone();
    forged.policy.threshold = 1;
    assert!(dave.pin_witness_policy(&forged).await.is_err());

    // The attacker rewrites history, the service signs the new tree and no longer serves the
    // cosignatures that would give it away.
    let db = r.h.dir.path().join("countersign.db");
    let seq = seq_of_kind(&db, "approved").await;
    rewrite(&db, seq, |e| {
        if let EventKind::Approved { reason, .. } = &mut e.event {
            *reason = "approved by the CTO".into();
        }
    })
    .await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open");
    sqlx::query("DELETE FROM cosignatures")
        .execute(&mut conn)
        .await
        .expect("drop cosignatures");
    conn.close().await.expect("close");
    let r = r.restart().await;
    populate(&r.h, 1).await;

    // Without a policy, a fresh mirror sees a consistent, signed log and nothing to doubt.
    let erin = Mirror::open(&dir.path().join("erin.db"))
        .await
        .expect("mirror");
    sync_as_reader(&r, &erin, 2)
        .await
        .expect("fooled without a policy");
    // Under the policy, the same view raises the alarm, and says who is missing.
    let frank = Mirror::open(&dir.path().join("frank.db"))
        .await
        .expect("mirror");
    frank.pin_witness_policy(&policy).await.expect("pin");
    let result = sync_as_reader(&r, &frank, 2).await;
    let Err(MirrorError::Alarm(alarm)) = result else {
        panic!("expected the unwitnessed alarm, got {result:?}")
    };
    assert_eq!(alarm.kind, AlarmKind::Unwitnessed);
    assert!(
        alarm.message.contains("bob") && alarm.message.contains("carol"),
        "{}",
        alarm.message
    );
}

/// Enrols a TPM key for carol straight into the store as attested by `root` (the service's own
/// checks of the attestation are tests/attestation.rs's): returns it.
async fn enrol_attested_key(
    h: &Harness,
    root: &str,
) -> (p256::ecdsa::SigningKey, countersign_core::PublicKey) {
    use countersign_core::{Actor, KeyKind};
    use countersign_store::{ApproverKey, NewEvent};
    let (k, p) = harness::key(99);
    let now = h.now();
    let (code, _) = countersign_server::admin::issue_enrolment_code(
        h.state.store.as_ref(),
        "root",
        "carol",
        3600,
        now,
    )
    .await
    .expect("code");
    let key = ApproverKey {
        key_id: p.key_id(),
        approver_id: "carol".into(),
        kind: KeyKind::Tpm,
        public_key: p.clone(),
        label: "laptop tpm".into(),
        attestation: None,
        attested_by: Some(root.into()),
        enrolled_via: None,
        signed_in_at: None,
        enrolled_at: now,
        revoked_at: None,
    };
    let event = NewEvent::new(
        Actor::Approver("carol".into()),
        EventKind::KeyEnrolled {
            approver_id: "carol".into(),
            key_id: p.key_id(),
            key_kind: KeyKind::Tpm,
            public_key: p.clone(),
            attestation_key: None,
            attested_by: Some(root.into()),
        },
    );
    h.state
        .store
        .enrol_key(&countersign_server::secrets::hash(&code), &key, event)
        .await
        .expect("enrolled");
    h.state.log_grew();
    (k, p)
}

/// Each decision carries the attestation its key was enrolled with, and every report shows it:
/// the history's decision, the CSV's `attested_keys_only`/`attesting_roots`, the PDF's line. A
/// service that claims an attestation for a decision its key's enrolment never had is caught
/// by a fresh mirror.
#[tokio::test]
async fn attestation_reaches_every_report_and_a_claimed_one_the_log_never_proved_alarms() {
    use countersign_report::{Control, csv_export, pdf};

    const ROOT: &str = "CN=Example TPM Root CA,O=Example";
    let r = Running::start(Harness::new().await).await;
    let (k, p) = enrol_attested_key(&r.h, ROOT).await;
    // A hardware-only request carol approves alone with her attested TPM key, and a two-person
    // one bob (software) and she approve.
    let carol_decides = |id: Uuid, digest: Digest| {
        let decision = Decision {
            request_id: id,
            request_digest: digest,
            verdict: Verdict::Approve,
            approver_id: "carol".into(),
            key_id: p.key_id(),
            decided_at: r.h.now(),
            comment: String::new(),
            nonce: Nonce([NONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst) as u8; 16]),
            verification_code: None,
        };
        let signature = Signature::from_p256(k.sign(&decision.signing_payload().expect("payload")));
        SignedDecision {
            decision,
            signature,
        }
    };
    let (alone, digest) = submit(&r.h, json!({"type": "hsm.rotate", "resource": "hsm/prod"})).await;
    let (status, body) =
        r.h.post_decision(alone, &carol_decides(alone, digest))
            .await;
    assert!(status.is_success(), "{body}");
    let (pair, digest) = submit(&r.h, json!({"resource": "cluster/prod/api"})).await;
    let (status, body) =
        r.h.post_decision(pair, &decide(&r.h, 0, pair, digest, Verdict::Approve, "ok"))
            .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = r.h.post_decision(pair, &carol_decides(pair, digest)).await;
    assert!(status.is_success(), "{body}");

    let dir = tempfile::tempdir().expect("dir");
    let mirror = Mirror::open(&dir.path().join("bob.db"))
        .await
        .expect("mirror");
    r.sync(&mirror, 0).await.expect("sync");
    let detail = mirror.request(pair).await.expect("detail");
    let attested: Vec<_> = detail
        .decisions
        .iter()
        .map(|d| (d.approver_id.as_str(), d.attested_by.as_deref()))
        .collect();
    assert_eq!(attested, [("bob", None), ("carol", Some(ROOT))]);

    let mut out = Vec::new();
    csv_export::write(&mirror, &SearchQuery::default(), &mut out, Control::none())
        .await
        .expect("csv");
    let mut reader = csv::Reader::from_reader(&out[3..]);
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("rows");
    let row = |id: Uuid| {
        rows.iter()
            .find(|r| r[col("request_id")] == id.to_string())
            .expect("row")
    };
    assert_eq!(&row(alone)[col("attested_keys_only")], "true");
    assert_eq!(&row(alone)[col("attesting_roots")], ROOT);
    assert_eq!(&row(pair)[col("attested_keys_only")], "false");
    assert_eq!(&row(pair)[col("attesting_roots")], ROOT);

    let pdf_path = dir.path().join("report.pdf");
    let bytes = pdf::write(
        &mirror,
        &SearchQuery::default(),
        r.h.now(),
        None,
        Control::none(),
    )
    .await
    .expect("pdf");
    std::fs::write(&pdf_path, &bytes).expect("write");
    let text = pdf_words(&pdf_path);
    assert_eq!(
        text.matches("attested by CN=Example TPM Root").count(),
        2,
        "{text}"
    );
    assert!(text.contains("claimed"), "{text}");

    // The service claims bob's software key was attested in his decision: the decision
    // claims more than the key's enrolment proved.
    let db = r.h.dir.path().join("countersign.db");
    let seq = seq_of_kind(&db, "decision_recorded").await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open");
    let bobs: i64 = sqlx::query_scalar(
        "SELECT seq FROM audit_events WHERE kind = 'decision_recorded' AND event_json LIKE '%\"approver_id\":\"bob\"%' ORDER BY seq LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("bob's decision");
    drop(conn);
    assert!(bobs >= seq);
    rewrite(&db, bobs, |e| {
        if let EventKind::DecisionRecorded { attested_by, .. } = &mut e.event {
            *attested_by = Some(ROOT.into());
        }
    })
    .await;
    let r = r.restart().await;
    // A new checkpoint over the rewritten log, so only the claim itself can give it away.
    submit(&r.h, json!({"type": "s3.read", "resource": "s3://x"})).await;
    let fresh = Mirror::open(&dir.path().join("fresh.db"))
        .await
        .expect("mirror");
    let result = r.sync(&fresh, 0).await;
    let message = match &result {
        Err(MirrorError::Alarm(a)) => a.message.clone(),
        other => panic!("expected an alarm, got {other:?}"),
    };
    assert_eq!(alarm_kind(result), AlarmKind::BadEvent);
    assert!(message.contains("attestation"), "{message}");
}

#[tokio::test]
async fn break_glass_uses_and_their_review_state_reach_the_csv_and_the_pdf() {
    use countersign_report::{Control, csv_export, pdf};

    let r = Running::start(Harness::new().await).await;
    let (glass, digest) = submit(
        &r.h,
        json!({"type": "incident.fix", "resource": "db/payments", "break_glass": true}),
    )
    .await;
    let (reviewed, reviewed_digest) = submit(
        &r.h,
        json!({"type": "incident.fix", "resource": "cluster/prod/web", "break_glass": true}),
    )
    .await;
    let (ordinary, _) = submit(&r.h, json!({"resource": "cluster/prod/api"})).await;
    // One review of two on the first; both on the second, carol with a concern.
    let (status, body) =
        r.h.post_review(glass, &r.h.review(0, glass, digest, false, 201))
            .await;
    assert!(status.is_success(), "{body}");
    for (who, concern, nonce) in [(0, false, 202), (1, true, 203)] {
        let (status, body) =
            r.h.post_review(
                reviewed,
                &r.h.review(who, reviewed, reviewed_digest, concern, nonce),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }

    let dir = tempfile::tempdir().expect("dir");
    let mirror = Mirror::open(&dir.path().join("bob.db"))
        .await
        .expect("mirror");
    r.sync(&mirror, 0)
        .await
        .expect("sync: reviews verify against the enrolled keys");

    let mut out = Vec::new();
    csv_export::write(&mirror, &SearchQuery::default(), &mut out, Control::none())
        .await
        .expect("csv");
    let mut reader = csv::Reader::from_reader(&out[3..]);
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("rows");
    let row = |id: Uuid| {
        rows.iter()
            .find(|r| r[col("request_id")] == id.to_string())
            .expect("row")
    };
    let cells = |id: Uuid| {
        let r = row(id);
        [
            r[col("break_glass")].to_owned(),
            r[col("review_state")].to_owned(),
            r[col("reviewed_by")].to_owned(),
            r[col("review_concerns")].to_owned(),
        ]
    };
    assert_eq!(cells(glass), ["true", "awaiting review", "bob", "0"]);
    assert_eq!(
        cells(reviewed),
        ["true", "reviewed", "bob carol:concern", "1"]
    );
    assert_eq!(cells(ordinary), ["false", "", "", ""]);

    let pdf_path = dir.path().join("report.pdf");
    let bytes = pdf::write(
        &mirror,
        &SearchQuery::default(),
        r.h.now(),
        None,
        Control::none(),
    )
    .await
    .expect("pdf");
    std::fs::write(&pdf_path, &bytes).expect("write");
    let text = pdf_words(&pdf_path);
    assert!(text.contains("Break-glass uses (2)"), "{text}");
    assert!(text.contains("AWAITING REVIEW (1/2)"), "{text}");
    assert!(text.contains("1 concern"), "{text}");
}

/// The words of a PDF's text (`pdftotext -layout`), single-spaced.
fn pdf_words(path: &std::path::Path) -> String {
    let out = std::process::Command::new("pdftotext")
        .args(["-layout"])
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
