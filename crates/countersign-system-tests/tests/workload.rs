//! Agents without long-lived secrets: a workload identity token (a JWT from a trusted issuer,
//! served here on loopback with its own keys) authenticates an agent as `<prefix><claim>`, and the
//! log says which way each request's agent authenticated. Forged, expired, misdirected tokens,
//! tokens of an untrusted issuer, and workloads with no identifier spelling are refused.

mod harness;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use base64::Engine as _;
use countersign_core::EventKind;
use countersign_core::audit::AgentAuthentication;
use countersign_server::Config;
use countersign_server::workload::WorkloadIssuerConfig;
use harness::{Harness, test_config};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::{Value, json};

/// A test issuer: its URL and its signing key (ES256, key id `ci-1`).
struct Issuer {
    url: String,
    key: EncodingKey,
}

async fn issuer() -> Issuer {
    let secret = SigningKey::random(&mut rand_core::OsRng);
    let point = secret.verifying_key().to_encoded_point(false);
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "ci-1",
        "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y")),
    }]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let metadata = json!({"issuer": url, "jwks_uri": format!("{url}/keys")});
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(metadata) }),
        )
        .route(
            "/keys",
            axum::routing::get(move || async move { axum::Json(jwks) }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    Issuer {
        url,
        key: EncodingKey::from_ec_der(secret.to_pkcs8_der().expect("pkcs8").as_bytes()),
    }
}

impl Issuer {
    fn token(&self, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ci-1".into());
        encode(&header, &claims, &self.key).expect("encode")
    }

    fn claims(&self, sub: &str) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        json!({"iss": self.url, "aud": "countersign", "sub": sub, "iat": now, "exp": now + 300})
    }
}

async fn harness(idp: &Issuer) -> Harness {
    Harness::with_config(Config {
        workload_issuers: vec![WorkloadIssuerConfig {
            issuer: idp.url.clone(),
            audience: "countersign".into(),
            jwks_uri: None,
            id_claim: "sub".into(),
            agent_prefix: "agent:ci:".into(),
        }],
        ..test_config()
    })
    .await
}

fn request() -> Value {
    json!({"type": "k8s.deploy", "resource": "cluster/prod/web", "environment": "prod",
           "justification": "release 4.2", "tags": ["prod-change"]})
}

/// How the log says request `id`'s agent authenticated.
async fn authenticated_by(h: &Harness, id: &str) -> Option<AgentAuthentication> {
    let events = h.state.store.audit_events(0, 1000).await.expect("events");
    events.into_iter().find_map(|e| match e.event {
        EventKind::RequestCreated {
            action,
            authenticated_by,
            ..
        } if action.id.to_string() == id => authenticated_by,
        _ => None,
    })
}

#[tokio::test]
async fn a_workload_token_authenticates_an_agent_and_the_log_says_so() {
    let idp = issuer().await;
    let h = harness(&idp).await;
    let token = idp.token(idp.claims("repo:Acme/deploy:ref:refs/heads/main"));
    let (status, body) = h
        .call("POST", "/v1/actions", Some(&token), Some(request()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["action"]["requester"],
        "agent:ci:repo:acme/deploy:ref:refs/heads/main"
    );
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        authenticated_by(&h, &id).await,
        Some(AgentAuthentication::WorkloadToken {
            issuer: idp.url.clone(),
            subject: "repo:Acme/deploy:ref:refs/heads/main".into(),
        })
    );
    // The same workload sees its own request; an API-token agent's request says so too.
    let (status, _) = h
        .call("GET", &format!("/v1/actions/{id}"), Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h
        .call("POST", "/v1/actions", Some(&h.agent_token), Some(request()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        authenticated_by(&h, body["id"].as_str().expect("id")).await,
        Some(AgentAuthentication::ApiToken)
    );

    // What a reviewer sees: the mirror's request detail, and the CSV export's column.
    let (url, _stop) = h.serve().await;
    let a = &h.approvers[0];
    let key = a.key.clone();
    let client = countersign_client::Client::new(&url).expect("client");
    let client = countersign_client::approver::open_session(&client, a.public.key_id(), move |m| {
        use p256::ecdsa::signature::Signer as _;
        Ok(countersign_core::Signature::from_p256(key.sign(m)))
    })
    .await
    .expect("session");
    let dir = tempfile::tempdir().expect("dir");
    let mirror = countersign_mirror::Mirror::open(&dir.path().join("m.db"))
        .await
        .expect("mirror");
    mirror
        .sync(&client, None, &|_| {}, None)
        .await
        .expect("sync");
    let detail = mirror
        .request(id.parse().expect("uuid"))
        .await
        .expect("detail");
    assert_eq!(
        detail.requester_authentication,
        Some(AgentAuthentication::WorkloadToken {
            issuer: idp.url.clone(),
            subject: "repo:Acme/deploy:ref:refs/heads/main".into(),
        })
    );
    let labels = csv_labels(&mirror).await;
    assert_eq!(
        labels,
        [
            format!("workload_token:{}", idp.url),
            "api_token".to_owned()
        ]
    );
    // A mirror indexed before the column existed takes it from its stored events on upgrade.
    let db = dir.path().join("m.db");
    drop(mirror);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("db");
    for sql in [
        "ALTER TABLE requests DROP COLUMN requester_auth",
        "DELETE FROM _sqlx_migrations WHERE version = 2",
    ] {
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
    pool.close().await;
    let upgraded = countersign_mirror::Mirror::open(&db).await.expect("mirror");
    assert_eq!(csv_labels(&upgraded).await, labels);
}

/// The `requester_authentication` column of the mirror's CSV export, in log order.
async fn csv_labels(mirror: &countersign_mirror::Mirror) -> Vec<String> {
    let mut out = Vec::new();
    countersign_report::csv_export::write(
        mirror,
        &countersign_mirror::SearchQuery::default(),
        &mut out,
        countersign_report::Control::none(),
    )
    .await
    .expect("csv");
    let mut reader = csv::Reader::from_reader(&out[3..]);
    let column = reader
        .headers()
        .expect("header")
        .iter()
        .position(|h| h == "requester_authentication")
        .expect("column");
    reader
        .records()
        .map(|r| r.expect("record")[column].to_owned())
        .collect()
}

#[tokio::test]
async fn bad_workload_tokens_are_refused_with_the_reason() {
    let idp = issuer().await;
    let stranger = issuer().await;
    let h = harness(&idp).await;
    let mut expired = idp.claims("job-1");
    expired["exp"] = json!(1_700_000_000);
    let mut elsewhere = idp.claims("job-1");
    elsewhere["aud"] = json!("another-service");
    let mut forged = stranger.claims("job-1");
    forged["iss"] = json!(idp.url);
    for (what, token, why) in [
        ("expired", idp.token(expired), "Expired"),
        ("another audience", idp.token(elsewhere), "Audience"),
        ("forged (another key)", stranger.token(forged), "Signature"),
        (
            "an untrusted issuer",
            stranger.token(stranger.claims("job-1")),
            "not trusted",
        ),
        (
            "no identifier spelling",
            idp.token(idp.claims("jöb 1")),
            "no agent identifier",
        ),
        (
            "not a token at all",
            "a.b.c".to_owned(),
            "not a workload identity token",
        ),
    ] {
        let (status, body) = h
            .call("POST", "/v1/actions", Some(&token), Some(request()))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{what}: {message}");
    }
}
