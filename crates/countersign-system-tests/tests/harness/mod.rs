//! A service in-process over a temporary SQLite store, with a clock the test moves, a test
//! policy, an agent token and three enrolled approvers with software keys.
#![allow(dead_code)]

pub mod receiver;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use countersign_core::{
    Clock, Decision, Digest, EnrolmentRequest, KeyKind, Nonce, PublicKey, Signature,
    SignedDecision, Timestamp, Verdict,
};
use countersign_server::{AppState, Config, Policy, ServiceKey, admin};
use countersign_store::{Approver, Store};
use countersign_store_sqlite::SqliteStore;
use http_body_util::BodyExt as _;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};
use uuid::Uuid;

pub const POLICY: &str = r#"package countersign
import rego.v1

decision := {"outcome": "deny", "reason": "frozen"} if input.action.environment == "frozen"
else := {"outcome": "allow", "reason": "reads are fine"} if endswith(input.action.type, ".read")
else := {"outcome": "require_approval", "reason": "hardware only", "quorum": 1, "groups": ["security"],
         "ttl_seconds": 60, "require_hardware_key": true, "quick_approve": false} if input.action.type == "hsm.rotate"
else := {"outcome": "require_approval", "reason": "only keys the IdP vouched for", "quorum": 1, "groups": ["security"],
         "ttl_seconds": 60, "require_hardware_key": false, "quick_approve": false, "require_idp_enrolment": true} if input.action.type == "secrets.reveal"
else := {"outcome": "require_approval", "reason": "a recent sign-in", "quorum": 1, "groups": ["security"],
         "ttl_seconds": 3600, "require_hardware_key": false, "quick_approve": false, "max_sign_in_age_seconds": 600} if input.action.type == "prod.break"
else := {"outcome": "require_approval", "reason": "confirm with the requester", "quorum": 1, "groups": ["security"],
         "ttl_seconds": 60, "require_hardware_key": false, "quick_approve": false, "verification_code": true} if input.action.type == "iam.grant"
else := {"outcome": "break_glass", "reason": "incident response", "review_quorum": 2, "review_groups": ["security"]} if {
    input.action.type == "incident.fix"
    input.action.break_glass == true
}
else := {"outcome": "break_glass", "reason": "a policy that forgets to look", "review_quorum": 1} if input.action.type == "glass.always"
else := {"outcome": "require_approval", "reason": "page security, then finance", "quorum": 1, "groups": ["security"],
         "ttl_seconds": 600, "require_hardware_key": false, "quick_approve": false,
         "escalation": [{"after_seconds": 60, "add_groups": ["finance"], "notify": ["pager"]}],
         "remind_before_seconds": [120]} if input.action.type == "incident.page"
else := {"outcome": "require_approval", "reason": "two from security", "quorum": 2, "groups": ["security"],
         "ttl_seconds": 60, "require_hardware_key": false, "quick_approve": false}
"#;

pub struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst)).expect("in range")
    }
}

pub struct Approve {
    pub id: &'static str,
    pub key: SigningKey,
    pub public: PublicKey,
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub app: Router,
    pub clock: Arc<TestClock>,
    pub agent_token: String,
    pub approvers: Vec<Approve>,
    /// Delivery to waiters and streams, as a serving process runs it.
    _jobs: countersign_server::jobs::Jobs,
}

/// The configuration the harness's service runs with unless a test gives another.
pub fn test_config() -> Config {
    Config {
        origin: "countersign.test/log".into(),
        ..Config::default()
    }
}

pub fn key(seed: u8) -> (SigningKey, PublicKey) {
    let k = SigningKey::from_bytes(&[seed; 32].into()).expect("scalar");
    let p = PublicKey::from_verifying_key(*k.verifying_key());
    (k, p)
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_config(test_config()).await
    }

    /// A harness whose service runs with `config`.
    pub async fn with_config(config: Config) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let mut h = Self::start(dir, config).await;
        h.provision().await;
        h
    }

    /// Simulates a restart: a new state and router over the same data directory, with the
    /// same agent token and approvers.
    pub async fn reopen(self) -> Self {
        let Harness {
            dir,
            state,
            agent_token,
            approvers,
            clock,
            ..
        } = self;
        let now = clock.now();
        drop(state);
        let mut h = Self::start(dir, test_config()).await;
        h.clock.0.store(now.as_millis(), Ordering::SeqCst);
        h.agent_token = agent_token;
        h.approvers = approvers;
        h
    }

    async fn start(dir: tempfile::TempDir, config: Config) -> Self {
        let db: PathBuf = dir.path().join("countersign.db");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).await.expect("store"));
        let policy_path = dir.path().join("policy.rego");
        std::fs::write(&policy_path, POLICY).expect("policy");
        let policy = Arc::new(Policy::from_file(&policy_path).expect("policy loads"));
        let clock = Arc::new(TestClock(AtomicI64::new(1_795_000_000_000)));
        let key = Arc::new(
            ServiceKey::from_signing_key(SigningKey::from_bytes(&[42; 32].into()).expect("scalar"))
                .expect("service key"),
        );
        let state = AppState::new(store, clock.clone(), policy, key, config).await;
        let app = countersign_server::router(state.clone());
        let mut jobs = countersign_server::jobs::Jobs::delivery(&state).await;
        jobs.start_channels(&state);
        Self {
            dir,
            state,
            app,
            clock,
            agent_token: String::new(),
            approvers: Vec::new(),
            _jobs: jobs,
        }
    }

    async fn provision(&mut self) {
        let store = self.state.store.clone();
        let now = self.now();
        let (_, token) = admin::issue_token(
            store.as_ref(),
            "root",
            countersign_store::TokenRole::Agent,
            "agent:deployer",
            now,
        )
        .await
        .expect("token");
        self.agent_token = token;
        for (i, (id, groups)) in [
            ("bob", vec!["security"]),
            ("carol", vec!["security"]),
            ("dave", vec!["finance"]),
        ]
        .into_iter()
        .enumerate()
        {
            let approver = Approver {
                id: id.into(),
                display_name: id.into(),
                groups: groups.into_iter().map(String::from).collect(),
            };
            admin::put_approver(store.as_ref(), "root", &approver, now)
                .await
                .expect("approver");
            let (code, _) = admin::issue_enrolment_code(store.as_ref(), "root", id, 3600, now)
                .await
                .expect("code");
            let (k, p) = key(i as u8 + 1);
            let (status, body) = self.enroll(id, &code, &k, &p, KeyKind::Software).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            self.approvers.push(Approve {
                id,
                key: k,
                public: p,
            });
        }
    }

    pub async fn enroll(
        &self,
        id: &str,
        code: &str,
        k: &SigningKey,
        p: &PublicKey,
        kind: KeyKind,
    ) -> (StatusCode, Value) {
        self.enroll_attested(id, code, k, p, kind, None).await
    }

    pub async fn enroll_attested(
        &self,
        id: &str,
        code: &str,
        k: &SigningKey,
        p: &PublicKey,
        kind: KeyKind,
        attestation: Option<String>,
    ) -> (StatusCode, Value) {
        let payload =
            EnrolmentRequest::proof_payload(id, kind, "test key", p, "countersign.test/log")
                .expect("payload");
        let proof = Signature::from_p256(k.sign(&payload));
        let req = EnrolmentRequest {
            approver_id: id.into(),
            code: code.into(),
            key_kind: kind,
            label: "test key".into(),
            public_key: p.clone(),
            attestation,
            proof,
        };
        self.call(
            "POST",
            "/v1/enroll",
            None,
            Some(serde_json::to_value(req).expect("json")),
        )
        .await
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Serves this service on a loopback port; returns its URL and the sender that stops it.
    pub async fn serve(&self) -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = self.state.clone();
        tokio::spawn(async move {
            let _ = countersign_server::serve(listener, state, async move {
                let _ = rx.await;
            })
            .await;
        });
        (url, tx)
    }

    /// Moves the clock to the wall clock's time (for certificates issued just now).
    pub fn set_to_wall_clock(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_millis();
        self.clock
            .0
            .store(i64::try_from(now).expect("millis"), Ordering::SeqCst);
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.0.fetch_add(seconds * 1000, Ordering::SeqCst);
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        use tower::ServiceExt as _;
        let resp = self.app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// Submits a request as the agent; returns the response body.
    pub async fn submit(&self, extra: Value) -> (StatusCode, Value) {
        let mut body = json!({
            "type": "k8s.deploy", "resource": "cluster/prod/web", "environment": "prod",
            "justification": "release 4.2", "tags": ["prod-change"]
        });
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        self.call(
            "POST",
            "/v1/actions",
            Some(&self.agent_token.clone()),
            Some(body),
        )
        .await
    }

    pub async fn submit_pending(&self) -> (Uuid, Digest) {
        let (status, body) = self.submit(json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "pending");
        (
            body["id"].as_str().expect("id").parse().expect("uuid"),
            body["digest"]
                .as_str()
                .expect("digest")
                .parse()
                .expect("digest"),
        )
    }

    pub fn decision(
        &self,
        who: usize,
        id: Uuid,
        digest: Digest,
        verdict: Verdict,
        nonce: u8,
    ) -> SignedDecision {
        self.decision_with_code(who, id, digest, verdict, nonce, None)
    }

    /// A decision carrying the verification code `code` the approver picked.
    pub fn decision_with_code(
        &self,
        who: usize,
        id: Uuid,
        digest: Digest,
        verdict: Verdict,
        nonce: u8,
        code: Option<&str>,
    ) -> SignedDecision {
        let a = &self.approvers[who];
        let decision = Decision {
            request_id: id,
            request_digest: digest,
            verdict,
            approver_id: a.id.into(),
            key_id: a.public.key_id(),
            decided_at: self.now(),
            comment: String::new(),
            nonce: Nonce([nonce; 16]),
            verification_code: code.map(str::to_owned),
        };
        let signature =
            Signature::from_p256(a.key.sign(&decision.signing_payload().expect("payload")));
        SignedDecision {
            decision,
            signature,
        }
    }

    /// A review of break-glass request `id` by approver `who`, signed with their key.
    pub fn review(
        &self,
        who: usize,
        id: Uuid,
        digest: Digest,
        concern: bool,
        nonce: u8,
    ) -> countersign_core::SignedReview {
        let a = &self.approvers[who];
        let review = countersign_core::Review {
            request_id: id,
            request_digest: digest,
            reviewer_id: a.id.into(),
            key_id: a.public.key_id(),
            reviewed_at: self.now(),
            concern,
            comment: if concern {
                "no incident ticket".into()
            } else {
                String::new()
            },
            nonce: Nonce([nonce; 16]),
        };
        let signature =
            Signature::from_p256(a.key.sign(&review.signing_payload().expect("payload")));
        countersign_core::SignedReview { review, signature }
    }

    /// Posts a signed review.
    pub async fn post_review(
        &self,
        id: Uuid,
        review: &countersign_core::SignedReview,
    ) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/v1/actions/{id}/reviews"),
            None,
            Some(serde_json::to_value(review).expect("json")),
        )
        .await
    }

    /// Opens a session for approver `who` by signing a fresh challenge; returns its token.
    pub async fn session(&self, who: usize) -> String {
        let (_, ch) = self
            .call("POST", "/v1/sessions/challenge", None, None)
            .await;
        let challenge: Digest = ch["challenge"]
            .as_str()
            .expect("challenge")
            .parse()
            .expect("digest");
        let a = &self.approvers[who];
        let payload = countersign_core::SessionRequest::payload(
            &challenge,
            &a.public.key_id(),
            "countersign.test/log",
        )
        .expect("payload");
        let signature = Signature::from_p256(a.key.sign(&payload));
        let body =
            json!({"key_id": a.public.key_id(), "challenge": challenge, "signature": signature});
        let (status, opened) = self.call("POST", "/v1/sessions", None, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{opened}");
        opened["token"].as_str().expect("token").to_owned()
    }

    pub async fn post_decision(&self, id: Uuid, d: &SignedDecision) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/v1/actions/{id}/decisions"),
            None,
            Some(serde_json::to_value(d).expect("json")),
        )
        .await
    }

    pub async fn status_of(&self, id: Uuid) -> String {
        let (_, body) = self
            .call(
                "GET",
                &format!("/v1/actions/{id}"),
                Some(&self.agent_token.clone()),
                None,
            )
            .await;
        body["status"].as_str().unwrap_or_default().to_owned()
    }
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// Approver `who`'s stream from the service at `url`, and the ids its snapshot held.
pub async fn stream(
    h: &Harness,
    url: &str,
    who: usize,
) -> (countersign_client::stream::ApproverStream, Vec<Uuid>) {
    let a = &h.approvers[who];
    let (s, snapshot) =
        countersign_client::stream::ApproverStream::connect(url, a.public.key_id(), |m| {
            Ok(Signature::from_p256(a.key.sign(m)))
        })
        .await
        .expect("stream connects");
    (s, snapshot.requests.iter().map(|v| v.id).collect())
}

/// The events of request `id` in the log, in order.
pub async fn events_of(h: &Harness, id: Uuid) -> Vec<countersign_core::EventKind> {
    h.state
        .store
        .audit_events(0, 10_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event.action_id() == Some(id))
        .map(|e| e.event)
        .collect()
}
