//! A real approval service on loopback for the gate's tests.
#![allow(dead_code)]

use countersign_client::Client;
use countersign_client::approver::{Choice, EnrolmentKey, enroll, open_session, sign_decision};
use countersign_core::{KeyKind, PublicKey, Signature, Verdict};
use countersign_gate::GateConfig;
use countersign_server::{Config, Service, admin};
use countersign_store::Approver;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;

/// A running service and what the tests need of it.
pub struct World {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub agent_token: String,
    pub bob: SigningKey,
    pub gate: GateConfig,
}

/// A service on loopback deciding with `policy`, an agent token for `agent:coder`, bob (group
/// `security`) enrolled with a software key, and the gate configuration `gate` (with `{url}` the
/// service's address) read from the world's directory.
pub async fn world_with(policy: &str, gate: &str) -> World {
    world_with_config(policy, gate, Config::default()).await
}

/// [`world_with`], the service running with `config` (its origin set for the tests).
pub async fn world_with_config(policy: &str, gate: &str, config: Config) -> World {
    let dir = tempfile::tempdir().expect("dir");
    let policy_text = policy;
    let policy = dir.path().join("policy.rego");
    std::fs::write(&policy, policy_text).expect("policy");
    let data = dir.path().join("data");
    let store = countersign_store_sqlite::SqliteStore::open_in(&data)
        .await
        .expect("store");
    let service = Service::open(
        &data,
        std::sync::Arc::new(store),
        Some(&policy),
        Config {
            origin: "countersign.test/log".into(),
            ..config
        },
    )
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
    let (_, agent_token) = admin::issue_token(
        store,
        "root",
        countersign_store::TokenRole::Agent,
        "agent:coder",
        now,
    )
    .await
    .expect("token");
    admin::put_approver(
        store,
        "root",
        &Approver {
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
    let bob = SigningKey::from_bytes(&[5; 32].into()).expect("key");
    let signer = bob.clone();
    enroll(
        &Client::new(&url).expect("client"),
        "bob",
        code,
        EnrolmentKey {
            kind: KeyKind::Software,
            label: "test".into(),
            public_key: PublicKey::from_verifying_key(*bob.verifying_key()),
            sign: Box::new(move |m| Ok(Signature::from_p256(signer.sign(m)))),
            attest: Box::new(|_| Ok(None)),
            endorsement: None,
        },
    )
    .await
    .expect("enrol");
    let gate = GateConfig::parse(&gate.replace("{url}", &url), dir.path()).expect("gate config");
    World {
        dir,
        url,
        agent_token,
        bob,
        gate,
    }
}

impl World {
    /// bob decides the request `id` as he would in the console: the whole request, checked
    /// against its digest, signed with his key.
    /// bob's session at the service.
    pub async fn bob(&self) -> Client {
        let key = self.bob.clone();
        let sign = move |m: &[u8]| Ok(Signature::from_p256(key.sign(m)));
        let key_id = PublicKey::from_verifying_key(*self.bob.verifying_key()).key_id();
        open_session(&Client::new(&self.url).expect("client"), key_id, &sign)
            .await
            .expect("session")
    }

    pub async fn decide(&self, id: uuid::Uuid, verdict: Verdict, comment: &str) {
        let key = self.bob.clone();
        let sign = move |m: &[u8]| Ok(Signature::from_p256(key.sign(m)));
        let key_id = PublicKey::from_verifying_key(*self.bob.verifying_key()).key_id();
        let session = open_session(&Client::new(&self.url).expect("client"), key_id, &sign)
            .await
            .expect("session");
        let view = session.view(id).await.expect("view");
        let choice = Choice {
            verdict,
            comment,
            verification_code: None,
        };
        let signed = sign_decision(&view, "bob", key_id, choice, sign).expect("sign");
        session.decide(&signed).await.expect("decided");
    }
}
