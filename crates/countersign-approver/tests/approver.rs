//! The approver's side against a real service in-process: a key is created and enrolled, the
//! mirror syncs as a witness (the checkpoint is cosigned), and reports are written whole or not
//! at all — a cancelled export leaves neither the report nor its partial file.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use countersign_approver::enrolment;
use countersign_approver::export::{self, ExportError, Exporter, Format};
use countersign_approver::history::{self, Approver, SyncError};
use countersign_approver::key::{self, NewKey};
use countersign_client::Client;
use countersign_core::Timestamp;
use countersign_keys::{KeyError, PinRequest};
use countersign_mirror::{Mirror, SearchQuery};
use countersign_report::{Control, ExportProgress};
use countersign_server::{Config, Service, admin};
use countersign_store::{Approver as StoredApprover, TokenRole};
use zeroize::Zeroizing;

fn no_pin(request: &PinRequest<'_>) -> Result<Zeroizing<String>, KeyError> {
    Err(KeyError::PinCancelled(request.device.to_string()))
}

struct World {
    dir: tempfile::TempDir,
    url: String,
    agent: Client,
    code: String,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let store = countersign_store_sqlite::SqliteStore::open_in(&data)
        .await
        .expect("store");
    let service = Service::open(&data, Arc::new(store), None, Config::default())
        .await
        .expect("service");
    let state = service.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(countersign_server::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    let store = state.store.as_ref();
    let now = state.now();
    let (_, token) = admin::issue_token(store, "root", TokenRole::Agent, "agent:ci", now)
        .await
        .expect("token");
    admin::put_approver(
        store,
        "root",
        &StoredApprover {
            id: "bob".into(),
            display_name: "Bob".into(),
            groups: vec!["security".into()],
        },
        now,
    )
    .await
    .expect("approver");
    let (code, _) = admin::issue_enrolment_code(store, "root", "bob", 600, now)
        .await
        .expect("code");
    World {
        url: url.clone(),
        agent: Client::new(&url).expect("client").with_token(token),
        code,
        dir,
    }
}

#[tokio::test]
async fn an_enrolled_key_witnesses_the_log_and_reports_are_written_whole() {
    let w = world().await;
    let (record, signer) = key::create(
        NewKey::Software {
            path: w.dir.path().join("bob.pem"),
            label: "bob's laptop".into(),
        },
        &no_pin,
    )
    .expect("key");
    let client = Client::new(&w.url).expect("client");
    let enrolled = enrolment::enrol(
        &client,
        "bob",
        &format!("  {}  ", w.code),
        signer.as_ref(),
        record.label.clone(),
    )
    .await
    .expect("enrolled");
    assert_eq!(enrolled.key_id, record.key_id());
    // The code was for one key.
    assert!(
        enrolment::enrol(&client, "bob", &w.code, signer.as_ref(), "again".into())
            .await
            .is_err()
    );

    let request = serde_json::from_value(serde_json::json!({
        "type": "db.export", "resource": "postgres://prod/customers", "environment": "prod",
        "justification": "quarterly report"
    }))
    .expect("request");
    w.agent.submit(&request).await.expect("submitted");

    let mirror = Mirror::open(&w.dir.path().join("mirror.db"))
        .await
        .expect("mirror");
    let signer = record.open(&no_pin).expect("the recorded key opens");
    let approver = Approver {
        server: &w.url,
        approver_id: "bob",
        key_id: record.key_id(),
        signer: signer.as_ref(),
    };
    let report = history::sync_as_witness(&mirror, &approver, &|_| {})
        .await
        .expect("synced");
    assert!(report.cosigned, "{report:?}");
    assert!(report.to_size > 0);

    // A key that is not the enrolled one opens no session.
    let (_, stranger) = key::create(
        NewKey::Software {
            path: w.dir.path().join("stranger.pem"),
            label: "stranger".into(),
        },
        &no_pin,
    )
    .expect("key");
    let impostor = Approver {
        signer: stranger.as_ref(),
        ..approver
    };
    assert!(matches!(
        history::sync_as_witness(&mirror, &impostor, &|_| {}).await,
        Err(SyncError::Session(_))
    ));

    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let progress = |_: ExportProgress| {};
    let exports = w.dir.path().join("exports");
    std::fs::create_dir_all(&exports).expect("dir");
    let exporter = Exporter {
        approver_id: "bob",
        key_id: record.key_id(),
        signer: signer.as_ref(),
    };
    for format in [Format::Csv, Format::Bundle, Format::Pdf] {
        let out = exports.join(format!("report.{}", format.extension()));
        let control = Control {
            progress: &progress,
            cancel: None,
        };
        export::write(
            &mirror,
            &SearchQuery::default(),
            format,
            &out,
            Some(&exporter),
            now,
            control,
        )
        .await
        .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        let written = std::fs::read(&out).expect("report");
        assert!(!written.is_empty(), "{format:?}");
        assert!(!out.with_extension("partial").exists());
    }
    let csv = std::fs::read_to_string(exports.join("report.csv")).expect("csv");
    assert!(csv.contains("postgres://prod/customers"), "{csv}");

    // Cancelled before its first page: no report, no partial file.
    let cancelled = AtomicBool::new(true);
    let out = exports.join("cancelled.csv");
    let control = Control {
        progress: &progress,
        cancel: Some(&cancelled),
    };
    let result = export::write(
        &mirror,
        &SearchQuery::default(),
        Format::Csv,
        &out,
        None,
        now,
        control,
    )
    .await;
    assert!(matches!(result, Err(ExportError::Report(_))), "{result:?}");
    assert!(!out.exists() && !out.with_extension("partial").exists());

    // A bundle is signed: without the exporter's key nothing is written.
    let out = exports.join("unsigned.jsonl");
    let control = Control {
        progress: &progress,
        cancel: None,
    };
    let result = export::write(
        &mirror,
        &SearchQuery::default(),
        Format::Bundle,
        &out,
        None,
        now,
        control,
    )
    .await;
    assert!(matches!(result, Err(ExportError::NoExporter)), "{result:?}");
    assert!(!out.exists() && !out.with_extension("partial").exists());
}
