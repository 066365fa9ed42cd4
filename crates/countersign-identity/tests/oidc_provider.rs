//! The verifier against a real, certified OpenID Provider: `oidc-provider` (npm, locked in
//! `tests/oidc`) started by the test. A person signs in through the provider's own pages with the
//! authorization code flow and PKCE, as the console will; the ID token is verified (nonce,
//! audience, authorised party, sign-in age) and mapped to one identifier and Countersign groups.
//! Then the provider rotates its key, goes down, and a person without an identifier spelling
//! signs in.
//!
//! Needs `tests/oidc/node_modules` (`npm ci` there; `scripts/setup.sh` does it).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use countersign_identity::{ClaimMapping, Expectations, KeySet, Verifier, discover};
use serde_json::{Value, json};
use sha2::Digest as _;

/// The provider, stopped when dropped.
struct Provider {
    child: Child,
    url: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Provider {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc");
    let mut child = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .arg(port.to_string())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node tests/oidc/provider.mjs (npm ci in tests/oidc)");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    out.read_line(&mut line).expect("provider output");
    assert!(line.starts_with("ready"), "provider said {line:?}");
    // Keep reading: a provider writing to a closed pipe would die.
    std::thread::spawn(move || for _ in out.lines() {});
    Provider {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

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
    let provider = start();
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
    drop(provider);
    verifier
        .verify(&rotated, &expect("nonce-bob-1"))
        .await
        .expect("known key while the provider is down");
    let down = discover(&http, &metadata.issuer).await.expect_err("down");
    assert!(down.to_string().contains("could not be reached"), "{down}");
}
