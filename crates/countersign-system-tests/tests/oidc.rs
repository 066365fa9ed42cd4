//! The verifier against a real, certified OpenID Provider: `oidc-provider` (npm, locked in
//! `tests/oidc`) started by the test. A person signs in through the provider's own pages with the
//! authorization code flow and PKCE, as the console will; the ID token is verified (nonce,
//! audience, authorised party, sign-in age) and mapped to one identifier and Countersign groups.
//! Then the provider rotates its key, goes down, and a person without an identifier spelling
//! signs in.
//!
//! Needs `tests/oidc/node_modules` (`npm ci` there; `scripts/setup.sh` does it).

mod harness;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use countersign_identity::{ClaimMapping, Expectations, KeySet, Verifier, discover};
use countersign_testdevices::OidcProvider;
use serde_json::{Value, json};
use sha2::Digest as _;

/// A browser, as far as the provider's pages need one: cookies, no automatic redirects.
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: HashMap::new(),
        }
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let text = value.to_str().unwrap_or_default();
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies
                    .insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Follows redirects from `url` until one leaves the provider (the app's redirect URI).
    async fn follow(&mut self, base: &str, mut url: String) -> String {
        for _ in 0..10 {
            if !url.starts_with(base) {
                return url;
            }
            let response = self
                .http
                .get(&url)
                .header(reqwest::header::COOKIE, self.cookie_header())
                .send()
                .await
                .expect("get");
            self.keep_cookies(&response);
            let Some(location) = response.headers().get(reqwest::header::LOCATION) else {
                return url;
            };
            let location = location.to_str().expect("location").to_owned();
            url = absolute(base, &location);
        }
        panic!("too many redirects");
    }

    /// Submits the provider's form at `url` (`/interaction/UID`) with `fields`; where it leads.
    async fn submit(&mut self, url: &str, fields: &[(&str, &str)]) -> String {
        let response = self
            .http
            .post(url)
            .header(reqwest::header::COOKIE, self.cookie_header())
            .form(fields)
            .send()
            .await
            .expect("post");
        self.keep_cookies(&response);
        response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or_else(|| panic!("no redirect from {url}"))
            .to_owned()
    }
}

/// `location` as an absolute URL (the provider redirects with paths).
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_owned()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `who` in (authorization code with PKCE and a nonce); the token response.
async fn sign_in(provider: &str, who: &str, nonce: &str) -> Value {
    let verifier = b64(&rand_bytes());
    let challenge = b64(&sha2::Sha256::digest(verifier.as_bytes()));
    let redirect = "http://127.0.0.1/callback";
    let auth = reqwest::Url::parse_with_params(
        &format!("{provider}/auth"),
        &[
            ("client_id", "countersign"),
            ("response_type", "code"),
            ("scope", "openid email profile groups"),
            ("redirect_uri", redirect),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("nonce", nonce),
            ("state", "s-1"),
            // Asking for a maximum sign-in age makes the provider say when the person signed in.
            ("max_age", "600"),
        ],
    )
    .expect("url");
    let mut browser = Browser::new();
    let login = browser.follow(provider, auth.to_string()).await;
    assert!(login.contains("/interaction/"), "{login}");
    let next = browser
        .submit(
            &login,
            &[("prompt", "login"), ("login", who), ("password", "any")],
        )
        .await;
    let consent = browser.follow(provider, absolute(provider, &next)).await;
    let next = if consent.contains("/interaction/") {
        let next = browser.submit(&consent, &[("prompt", "consent")]).await;
        browser.follow(provider, absolute(provider, &next)).await
    } else {
        consent
    };
    let back = reqwest::Url::parse(&next).expect("redirect");
    assert!(next.starts_with(redirect), "{next}");
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let token = reqwest::Client::new()
        .post(format!("{provider}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", "countersign"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .expect("token");
    let status = token.status();
    let body: Value = token.json().await.expect("json");
    assert!(status.is_success(), "{body}");
    // The code is single use: exchanging it again fails at the provider.
    let again = reqwest::Client::new()
        .post(format!("{provider}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", "countersign"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .expect("token");
    assert!(!again.status().is_success());
    body
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes
}

fn expect(nonce: &str) -> Expectations {
    Expectations {
        audience: "countersign".into(),
        check_authorized_party: true,
        nonce: Some(nonce.into()),
        nonce_may_be_absent: false,
        max_auth_age: Some(Duration::from_secs(600)),
    }
}

fn mapping() -> ClaimMapping {
    serde_json::from_value(json!({
        "id_claim": "email", "groups_claim": "groups", "name_claim": "name",
        "groups": {"okta-security": "security"},
    }))
    .expect("mapping")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_at_a_real_provider_and_is_mapped_to_one_identity() {
    let mut provider = OidcProvider::start();
    let http = reqwest::Client::new();
    let metadata = discover(&http, &provider.url).await.expect("discovery");
    assert!(metadata.device_authorization_endpoint.is_some());
    let keys = Arc::new(KeySet::with_intervals(
        http.clone(),
        metadata.jwks_uri.clone(),
        Duration::from_millis(100),
        Duration::from_secs(600),
    ));
    let verifier = Verifier::new(metadata.issuer.clone(), keys);

    let tokens = sign_in(&provider.url, "alice", "nonce-alice-1").await;
    let id_token = tokens["id_token"].as_str().expect("id token");
    let verified = verifier
        .verify(id_token, &expect("nonce-alice-1"))
        .await
        .expect("verifies");
    let who = mapping().map(&verified).expect("maps");
    assert_eq!(who.id, "alice@example.com");
    assert_eq!(who.groups.iter().collect::<Vec<_>>(), ["security"]);
    assert_eq!(who.display_name.as_deref(), Some("Alice Example"));
    // The same token is not another sign-in's, nor another client's.
    assert!(
        verifier
            .verify(id_token, &expect("nonce-of-another-sign-in"))
            .await
            .is_err()
    );
    let other_client = Expectations {
        audience: "another-app".into(),
        ..expect("nonce-alice-1")
    };
    assert!(verifier.verify(id_token, &other_client).await.is_err());

    // The provider rotates its key: the next sign-in's token names the new key, which is
    // fetched; the old token still verifies while its key is published.
    reqwest::Client::new()
        .post(format!("{}/test/rotate", provider.url))
        .send()
        .await
        .expect("rotate");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let tokens = sign_in(&provider.url, "bob", "nonce-bob-1").await;
    let rotated = tokens["id_token"].as_str().expect("id token").to_owned();
    let header = jsonwebtoken::decode_header(&rotated).expect("header");
    assert_eq!(header.kid.as_deref(), Some("k2"));
    let bob = verifier
        .verify(&rotated, &expect("nonce-bob-1"))
        .await
        .expect("verifies with the rotated key");
    let bob = mapping().map(&bob).expect("maps");
    assert_eq!(bob.id, "bob@example.com");
    assert!(
        bob.groups.is_empty(),
        "an unmapped IdP group grants nothing"
    );

    // Someone whose address has no Countersign spelling is refused with the reason.
    let tokens = sign_in(&provider.url, "jose", "nonce-jose-1").await;
    let jose = verifier
        .verify(
            tokens["id_token"].as_str().expect("id token"),
            &expect("nonce-jose-1"),
        )
        .await
        .expect("verifies");
    let refused = mapping().map(&jose).expect_err("no spelling");
    assert!(
        refused.to_string().contains("josé@example.com"),
        "{refused}"
    );

    // The provider goes down: tokens signed with known keys still verify; discovery says why
    // a new sign-in cannot start.
    provider.stop();
    verifier
        .verify(&rotated, &expect("nonce-bob-1"))
        .await
        .expect("known key while the provider is down");
    let down = discover(&http, &metadata.issuer).await.expect_err("down");
    assert!(down.to_string().contains("could not be reached"), "{down}");
}

fn oidc_config(issuer: &str, provision: bool) -> countersign_server::Config {
    countersign_server::Config {
        oidc: Some(
            serde_json::from_value(json!({
                "issuer": issuer, "client_id": "countersign", "groups_claim": "groups",
                "groups": {"okta-security": "security"}, "provision": provision,
            }))
            .expect("oidc config"),
        ),
        ..harness::test_config()
    }
}

/// A new key for `nonce`'s sign-in: the enrolment body for `id_token`.
fn enrolment(id_token: &str, nonce: &str, key: &p256::ecdsa::SigningKey) -> Value {
    use p256::ecdsa::signature::Signer as _;
    let public = countersign_core::PublicKey::from_verifying_key(*key.verifying_key());
    let nonce_digest: countersign_core::Digest = nonce.parse().expect("nonce");
    let payload = countersign_core::IdpEnrolmentRequest::proof_payload(
        &nonce_digest,
        countersign_core::KeyKind::Software,
        "alice's laptop",
        &public,
        "countersign.test/log",
    )
    .expect("payload");
    let proof = countersign_core::Signature::from_p256(key.sign(&payload));
    serde_json::to_value(countersign_core::IdpEnrolmentRequest {
        id_token: id_token.to_owned(),
        nonce: nonce_digest,
        key_kind: countersign_core::KeyKind::Software,
        label: "alice's laptop".into(),
        public_key: public,
        attestation: None,
        proof,
    })
    .expect("json")
}

/// `who` signs in for a fresh nonce and enrols a new key with it; the service's answer.
async fn enrol_as(
    h: &harness::Harness,
    provider: &str,
    who: &str,
) -> (axum::http::StatusCode, Value) {
    let fresh = nonce(h).await;
    let tokens = sign_in(provider, who, &fresh).await;
    let id_token = tokens["id_token"].as_str().expect("id token");
    h.call(
        "POST",
        "/v1/enroll/idp",
        None,
        Some(enrolment(id_token, &fresh, &new_key())),
    )
    .await
}

fn new_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)
}

/// A fresh nonce from the service's sign-in endpoint.
async fn nonce(h: &harness::Harness) -> String {
    let (status, body) = h
        .call("POST", "/v1/identity/oidc/sign-in", None, None)
        .await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body}");
    body["nonce"].as_str().expect("nonce").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_enrols_with_a_fresh_sign_in_instead_of_a_code() {
    use axum::http::StatusCode;
    let provider = OidcProvider::start();
    let mut h = harness::Harness::with_config(oidc_config(&provider.url, true)).await;
    let (status, how) = h
        .call("POST", "/v1/identity/oidc/sign-in", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{how}");
    assert_eq!(how["client_id"], "countersign");
    assert_eq!(how["issuer"], provider.url.as_str());
    assert!(how["device_authorization_endpoint"].is_string(), "{how}");
    let first = how["nonce"].as_str().expect("nonce").to_owned();

    let tokens = sign_in(&provider.url, "alice", &first).await;
    let id_token = tokens["id_token"].as_str().expect("id token").to_owned();
    let key = new_key();
    let (status, body) = h
        .call(
            "POST",
            "/v1/enroll/idp",
            None,
            Some(enrolment(&id_token, &first, &key)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["approver_id"], "alice@example.com");
    // The approver was provisioned from the token: the mapped group only, the IdP's name.
    let alice = h
        .state
        .store
        .approver("alice@example.com")
        .await
        .expect("store")
        .expect("provisioned");
    assert_eq!(alice.groups, ["security"]);
    assert_eq!(alice.display_name, "Alice Example");
    // The log says the provider vouched for her.
    let events = h.state.store.audit_events(0, 1000).await.expect("events");
    assert!(events.iter().any(|e| matches!(&e.actor,
        countersign_core::Actor::Admin(who) if who == &format!("idp:{}", provider.url))));

    // A policy may take only keys the provider vouched for: bob's (an administrator's code) is
    // refused, alice's counts.
    let (status, body) = h.submit(json!({"type": "secrets.reveal"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id: uuid::Uuid = body["id"].as_str().expect("id").parse().expect("uuid");
    let digest: countersign_core::Digest = body["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    let bob = h.decision(0, id, digest, countersign_core::Verdict::Approve, 1);
    let (status, body) = h.post_decision(id, &bob).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "idp_enrolment_required");
    h.approvers.push(harness::Approve {
        id: "alice@example.com",
        public: countersign_core::PublicKey::from_verifying_key(*key.verifying_key()),
        key: key.clone(),
    });
    let alice = h.decision(
        h.approvers.len() - 1,
        id,
        digest,
        countersign_core::Verdict::Approve,
        2,
    );
    let (status, body) = h.post_decision(id, &alice).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.status_of(id).await, "approved");

    // One sign-in enrols one key: the same token and nonce again, even for another key, fail.
    for again in [&key, &new_key()] {
        let (status, body) = h
            .call(
                "POST",
                "/v1/enroll/idp",
                None,
                Some(enrolment(&id_token, &first, again)),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    // A token is for its own sign-in: with another (fresh) nonce it is refused.
    let other = nonce(&h).await;
    let (status, body) = h
        .call(
            "POST",
            "/v1/enroll/idp",
            None,
            Some(enrolment(&id_token, &other, &new_key())),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nonce"),
        "{body}"
    );
    // A nonce this service did not issue is refused before the token is looked at.
    let made_up = countersign_core::Digest::of(b"made up").to_hex();
    let (status, _) = h
        .call(
            "POST",
            "/v1/enroll/idp",
            None,
            Some(enrolment(&id_token, &made_up, &new_key())),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The proof must be the key's own.
    let fresh = nonce(&h).await;
    let tokens = sign_in(&provider.url, "alice", &fresh).await;
    let mut forged = enrolment(tokens["id_token"].as_str().expect("t"), &fresh, &new_key());
    forged["public_key"] = json!(countersign_core::PublicKey::from_verifying_key(
        *new_key().verifying_key()
    ));
    let (status, body) = h.call("POST", "/v1/enroll/idp", None, Some(forged)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "bad_proof");
    // Someone without an identifier spelling is refused with the reason.
    let (status, body) = enrol_as(&h, &provider.url, "jose").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "identity_unmapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_provisioning_or_without_the_provider_sign_in_says_why() {
    use axum::http::StatusCode;
    let provider = OidcProvider::start();
    let h = harness::Harness::with_config(oidc_config(&provider.url, false)).await;
    let (status, body) = enrol_as(&h, &provider.url, "alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "approver_not_provisioned");

    // A provider that cannot be reached: sign-in says so; code enrolment is unaffected.
    let down = harness::Harness::with_config(oidc_config("http://127.0.0.1:9", true)).await;
    let (status, body) = down
        .call("POST", "/v1/identity/oidc/sign-in", None, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "identity_provider_unavailable");
    // And a service without a provider says to use a code.
    let plain = harness::Harness::new().await;
    let (status, body) = plain
        .call("POST", "/v1/identity/oidc/sign-in", None, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "identity_provider_not_configured");
}

/// The device authorization grant (RFC 8628), as a headless CLI signs in: its ID token carries
/// no nonce, so the token itself is used up by its enrolment and cannot enrol a second key,
/// even with a fresh nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_sign_in_enrols_once() {
    use axum::http::StatusCode;
    let provider = OidcProvider::start();
    let h = harness::Harness::with_config(oidc_config(&provider.url, true)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(countersign_server::serve(
        listener,
        h.state.clone(),
        std::future::pending(),
    ));
    let client = countersign_client::Client::new(&url).expect("client");
    let browser =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc/browser.py");
    let signed_in = countersign_approver::signin::device_sign_in(&client, |prompt| {
        let direct = prompt
            .verification_uri_complete
            .clone()
            .expect("the provider fills the code in");
        // The person, on another device.
        std::thread::spawn(move || {
            let out = std::process::Command::new("python3")
                .arg(&browser)
                .args([&direct, "alice"])
                .output()
                .expect("python3 browser.py");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
    })
    .await
    .expect("signed in");
    let first = signed_in.sign_in.nonce.to_hex();
    let (status, body) = h
        .call(
            "POST",
            "/v1/enroll/idp",
            None,
            Some(enrolment(&signed_in.id_token, &first, &new_key())),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["approver_id"], "alice@example.com");
    let fresh = nonce(&h).await;
    let (status, body) = h
        .call(
            "POST",
            "/v1/enroll/idp",
            None,
            Some(enrolment(&signed_in.id_token, &fresh, &new_key())),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the same device sign-in again: {body}"
    );
}

/// An unauthenticated flood of sign-ins while the provider is down costs the provider one
/// request, not one per caller: the failure is remembered for a few seconds and answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_while_the_provider_is_down_do_not_hammer_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A "provider" that accepts each connection and closes it at once, counting them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let h = Arc::new(harness::Harness::with_config(oidc_config(&issuer, true)).await);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move {
                h.call("POST", "/v1/identity/oidc/sign-in", None, None)
                    .await
            })
        })
        .collect();
    for call in calls {
        let (status, body) = call.await.expect("joined");
        assert_eq!(status, axum::http::StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "identity_provider_unavailable");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "each sign-in asked the provider again"
    );
}

/// A key-sign-in body: `key` signs the sign-in's nonce for itself.
fn key_sign_in(id_token: &str, nonce: &str, key: &p256::ecdsa::SigningKey) -> Value {
    use p256::ecdsa::signature::Signer as _;
    let nonce: countersign_core::Digest = nonce.parse().expect("nonce");
    let key_id = countersign_core::PublicKey::from_verifying_key(*key.verifying_key()).key_id();
    let payload =
        countersign_core::IdpSignInRequest::proof_payload(&nonce, &key_id, "countersign.test/log")
            .expect("payload");
    json!({"id_token": id_token, "nonce": nonce, "key_id": key_id,
           "proof": countersign_core::Signature::from_p256(key.sign(&payload))})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_can_want_a_recent_sign_in_behind_the_key() {
    use axum::http::StatusCode;
    let provider = OidcProvider::start();
    let mut h = harness::Harness::with_config(oidc_config(&provider.url, true)).await;
    let fresh = nonce(&h).await;
    let tokens = sign_in(&provider.url, "alice", &fresh).await;
    let key = new_key();
    let (status, body) = h
        .call(
            "POST",
            "/v1/enroll/idp",
            None,
            Some(enrolment(
                tokens["id_token"].as_str().expect("t"),
                &fresh,
                &key,
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    h.approvers.push(harness::Approve {
        id: "alice@example.com",
        public: countersign_core::PublicKey::from_verifying_key(*key.verifying_key()),
        key: key.clone(),
    });
    let alice = h.approvers.len() - 1;

    // Just enrolled with a sign-in: recent enough. Bob's key (an administrator's code) has no
    // sign-in behind it at all.
    let (id, digest) = prod_break(&h).await;
    let (status, body) = h
        .post_decision(
            id,
            &h.decision(0, id, digest, countersign_core::Verdict::Approve, 1),
        )
        .await;
    assert_eq!(
        (status, harness::code(&body)),
        (StatusCode::FORBIDDEN, "sign_in_too_old"),
        "{body}"
    );
    let (status, body) = h
        .post_decision(
            id,
            &h.decision(alice, id, digest, countersign_core::Verdict::Approve, 2),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Eleven minutes on, the same key is refused, with what to do about it.
    h.advance(660);
    let (id, digest) = prod_break(&h).await;
    let (status, body) = h
        .post_decision(
            id,
            &h.decision(alice, id, digest, countersign_core::Verdict::Approve, 3),
        )
        .await;
    assert_eq!(
        (status, harness::code(&body)),
        (StatusCode::FORBIDDEN, "sign_in_too_old"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("sign in again"),
        "{body}"
    );

    // Alice signs in again and the sign-in is recorded behind her key.
    let fresh = nonce(&h).await;
    let tokens = sign_in(&provider.url, "alice", &fresh).await;
    let id_token = tokens["id_token"].as_str().expect("t").to_owned();
    let again = key_sign_in(&id_token, &fresh, &key);
    let (status, body) = h
        .call(
            "POST",
            "/v1/identity/oidc/key-sign-in",
            None,
            Some(again.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["approver_id"], "alice@example.com");
    let (status, body) = h
        .post_decision(
            id,
            &h.decision(alice, id, digest, countersign_core::Verdict::Approve, 4),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A nonce the service never issued is refused before anything is looked up.
    let made_up = countersign_core::Digest::of(b"made up").to_hex();
    let (status, body) = h
        .call(
            "POST",
            "/v1/identity/oidc/key-sign-in",
            None,
            Some(key_sign_in(&id_token, &made_up, &key)),
        )
        .await;
    assert_eq!(
        (status, harness::code(&body)),
        (StatusCode::CONFLICT, "challenge_invalid"),
        "{body}"
    );
    // Once: the same sign-in again is refused.
    let (status, _) = h
        .call("POST", "/v1/identity/oidc/key-sign-in", None, Some(again))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Bob's sign-in cannot vouch for alice's key, nor alice's sign-in for a key that is not hers
    // (the proof is checked against the key it names).
    let fresh = nonce(&h).await;
    let bob = sign_in(&provider.url, "bob", &fresh).await;
    let (status, body) = h
        .call(
            "POST",
            "/v1/identity/oidc/key-sign-in",
            None,
            Some(key_sign_in(
                bob["id_token"].as_str().expect("t"),
                &fresh,
                &key,
            )),
        )
        .await;
    assert_eq!(
        (status, harness::code(&body)),
        (StatusCode::FORBIDDEN, "identity_mismatch"),
        "{body}"
    );
    let fresh = nonce(&h).await;
    let tokens = sign_in(&provider.url, "alice", &fresh).await;
    let mut forged = key_sign_in(tokens["id_token"].as_str().expect("t"), &fresh, &new_key());
    forged["key_id"] =
        json!(countersign_core::PublicKey::from_verifying_key(*key.verifying_key()).key_id());
    let (status, body) = h
        .call("POST", "/v1/identity/oidc/key-sign-in", None, Some(forged))
        .await;
    assert_eq!(
        (status, harness::code(&body)),
        (StatusCode::FORBIDDEN, "bad_proof"),
        "{body}"
    );
    // The log records the sign-in, by alice.
    let events = h.state.store.audit_events(0, 10_000).await.expect("events");
    assert!(events.iter().any(|e| e.actor == countersign_core::Actor::Approver("alice@example.com".into())
        && matches!(&e.event, countersign_core::EventKind::AdminChanged { operation, .. } if operation == "key_signed_in")));
}

/// Submits a request whose policy wants a recent sign-in.
async fn prod_break(h: &harness::Harness) -> (uuid::Uuid, countersign_core::Digest) {
    let (status, body) = h.submit(json!({"type": "prod.break"})).await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().expect("id").parse().expect("uuid"),
        body["digest"]
            .as_str()
            .expect("digest")
            .parse()
            .expect("digest"),
    )
}
