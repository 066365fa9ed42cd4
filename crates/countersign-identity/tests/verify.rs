//! Tokens from an issuer served on loopback (its metadata and its JWKS, which the test rotates
//! and takes down): what verifies, and everything that must not.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use countersign_identity::jwks::KeyError;
use countersign_identity::{ClaimMapping, Expectations, KeySet, TokenError, Verifier, discover};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::{Value, json};

/// A signing key and its public JWK.
struct Signer {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

fn signer(kid: &str) -> Signer {
    let secret = SigningKey::random(&mut rand_core::OsRng);
    let der = secret.to_pkcs8_der().expect("pkcs8");
    let point = secret.verifying_key().to_encoded_point(false);
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    Signer {
        kid: kid.to_owned(),
        key: EncodingKey::from_ec_der(der.as_bytes()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y")),
        }),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// The issuer: its URL, and the JWKS it serves (`None`: down, 503).
struct Issuer {
    url: String,
    jwks: Arc<Mutex<Option<Value>>>,
}

async fn issuer(keys: &[&Signer]) -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let jwks = Arc::new(Mutex::new(Some(
        json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}),
    )));
    let metadata = json!({
        "issuer": url, "jwks_uri": format!("{url}/jwks"),
        "authorization_endpoint": format!("{url}/auth"), "token_endpoint": format!("{url}/token"),
        "id_token_signing_alg_values_supported": ["ES256"],
    });
    let served = jwks.clone();
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(metadata) }),
        )
        .route(
            "/jwks",
            axum::routing::get(move || {
                let served = served.clone();
                async move {
                    match served.lock().expect("lock").clone() {
                        Some(v) => Ok(axum::Json(v)),
                        None => Err(axum::http::StatusCode::SERVICE_UNAVAILABLE),
                    }
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    Issuer { url, jwks }
}

fn token(by: &Signer, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(by.kid.clone());
    encode(&header, &claims, &by.key).expect("encode")
}

fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer, "aud": "countersign", "sub": "248289761001",
        "email": "Alice@Example.com", "groups": ["okta-security", "everyone"],
        "iat": now(), "exp": now() + 300, "auth_time": now() - 10, "nonce": "n-0S6_WzA2Mj",
    })
}

fn expect() -> Expectations {
    Expectations {
        audience: "countersign".into(),
        check_authorized_party: true,
        nonce: Some("n-0S6_WzA2Mj".into()),
        nonce_may_be_absent: false,
        max_auth_age: Some(Duration::from_secs(3600)),
    }
}

async fn verifier(issuer: &Issuer, min_refresh: Duration) -> Verifier {
    let http = reqwest::Client::new();
    let metadata = discover(&http, &issuer.url).await.expect("discovery");
    let keys = KeySet::with_intervals(
        http,
        metadata.jwks_uri,
        min_refresh,
        Duration::from_secs(600),
    );
    Verifier::new(metadata.issuer, Arc::new(keys))
}

#[tokio::test]
async fn a_good_id_token_verifies_and_maps_to_one_spelling() {
    let key = signer("k1");
    let idp = issuer(&[&key]).await;
    let v = verifier(&idp, Duration::from_secs(30)).await;
    let verified = v
        .verify(&token(&key, claims(&idp.url)), &expect())
        .await
        .expect("verifies");
    assert_eq!(verified.subject, "248289761001");
    assert!(verified.nonce_matched);
    // Where a missing nonce is allowed (device sign-in), another nonce is still refused.
    let lenient = Expectations {
        nonce_may_be_absent: true,
        ..expect()
    };
    let mut without = claims(&idp.url);
    without.as_object_mut().expect("object").remove("nonce");
    let unbound = v
        .verify(&token(&key, without), &lenient)
        .await
        .expect("no nonce");
    assert!(!unbound.nonce_matched);
    let mut other = claims(&idp.url);
    other["nonce"] = json!("someone-else");
    assert!(v.verify(&token(&key, other), &lenient).await.is_err());
    let mapping: ClaimMapping = serde_json::from_value(json!({
        "id_claim": "email", "groups_claim": "groups",
        "groups": {"okta-security": "security"},
    }))
    .expect("mapping");
    let who = mapping.map(&verified).expect("maps");
    assert_eq!(who.id, "alice@example.com");
    assert_eq!(who.groups.into_iter().collect::<Vec<_>>(), ["security"]);
}

#[tokio::test]
async fn forged_expired_misdirected_and_replayed_tokens_are_refused() {
    let key = signer("k1");
    let stranger = signer("k1");
    let idp = issuer(&[&key]).await;
    let v = verifier(&idp, Duration::from_secs(30)).await;
    let good = claims(&idp.url);
    let with = |change: Value| {
        let mut c = good.clone();
        for (k, val) in change.as_object().expect("object") {
            if val.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = val.clone();
            }
        }
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "forged (another key, same kid)",
            token(&stranger, good.clone()),
            "InvalidSignature",
        ),
        (
            "expired",
            token(&key, with(json!({"exp": now() - 120}))),
            "Expired",
        ),
        (
            "not yet valid",
            token(&key, with(json!({"nbf": now() + 600}))),
            "Immature",
        ),
        (
            "issued in the future",
            token(&key, with(json!({"iat": now() + 600}))),
            "future",
        ),
        (
            "another audience",
            token(&key, with(json!({"aud": "another-app"}))),
            "Audience",
        ),
        (
            "another issuer",
            token(&key, with(json!({"iss": "https://evil.example"}))),
            "Issuer",
        ),
        (
            "another sign-in's nonce",
            token(&key, with(json!({"nonce": "replayed"}))),
            "nonce",
        ),
        (
            "no nonce",
            token(&key, with(json!({"nonce": null}))),
            "nonce",
        ),
        (
            "another client's",
            token(&key, with(json!({"azp": "another-app"}))),
            "another client",
        ),
        (
            "several audiences, no azp",
            token(&key, with(json!({"aud": ["countersign", "x"]}))),
            "authorised party",
        ),
        (
            "an old sign-in",
            token(&key, with(json!({"auth_time": now() - 7200}))),
            "too old",
        ),
        ("no subject", token(&key, with(json!({"sub": null}))), "sub"),
    ];
    for (what, t, why) in cases {
        match v.verify(&t, &expect()).await {
            Err(e) => assert!(e.to_string().contains(why), "{what}: {e}"),
            Ok(_) => panic!("{what} was accepted"),
        }
    }
    // `alg: none`, and an HMAC "signed" with the public key, are refused before any key is used.
    let parts: Vec<String> = token(&key, good.clone())
        .split('.')
        .map(str::to_owned)
        .collect();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "k1"})),
        parts[1]
    );
    assert!(matches!(
        v.verify(&none, &expect()).await,
        Err(TokenError::Malformed(_) | TokenError::Algorithm(_))
    ));
    let hs = encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &good,
        &EncodingKey::from_secret(key.jwk.to_string().as_bytes()),
    )
    .expect("hs256");
    assert!(matches!(
        v.verify(&hs, &expect()).await,
        Err(TokenError::Algorithm(_))
    ));
    assert!(matches!(
        v.verify(&"x".repeat(20_000), &expect()).await,
        Err(TokenError::Malformed(_))
    ));
}

#[tokio::test]
async fn a_rotated_key_is_fetched_and_an_issuer_that_is_down_keeps_the_last_good_keys() {
    let old = signer("2026-10");
    let new = signer("2026-11");
    let idp = issuer(&[&old]).await;
    let v = verifier(&idp, Duration::from_millis(200)).await;
    v.verify(&token(&old, claims(&idp.url)), &expect())
        .await
        .expect("old key");
    // The issuer rotates: a token with the new key id makes the verifier fetch again.
    *idp.jwks.lock().expect("lock") = Some(json!({"keys": [new.jwk.clone()]}));
    tokio::time::sleep(Duration::from_millis(250)).await;
    v.verify(&token(&new, claims(&idp.url)), &expect())
        .await
        .expect("rotated key");
    // Made-up key ids cannot make it fetch more than once per interval.
    let ghost = signer("ghost");
    for _ in 0..20 {
        assert!(matches!(
            v.verify(&token(&ghost, claims(&idp.url)), &expect()).await,
            Err(TokenError::Key(KeyError::Unknown(_)))
        ));
    }
    // The issuer goes down: what is known keeps working; an unknown key is a clear error.
    *idp.jwks.lock().expect("lock") = None;
    tokio::time::sleep(Duration::from_millis(250)).await;
    v.verify(&token(&new, claims(&idp.url)), &expect())
        .await
        .expect("known key while the issuer is down");
    let unknown = v.verify(&token(&ghost, claims(&idp.url)), &expect()).await;
    assert!(
        matches!(unknown, Err(TokenError::Key(KeyError::Unknown(_)))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn a_provider_that_names_another_issuer_is_refused() {
    let key = signer("k1");
    let idp = issuer(&[&key]).await;
    let http = reqwest::Client::new();
    let err = discover(&http, &format!("{}/", idp.url))
        .await
        .expect_err("mismatch");
    assert!(err.to_string().contains("names itself"), "{err}");
    let down = discover(&http, "http://127.0.0.1:9")
        .await
        .expect_err("down");
    assert!(down.to_string().contains("could not be reached"), "{down}");
}

#[test]
fn identities_without_a_countersign_spelling_are_refused() {
    let mapping: ClaimMapping =
        serde_json::from_value(json!({"id_claim": "email"})).expect("mapping");
    let verified = |email: &str| countersign_identity::Verified {
        subject: "s".into(),
        issued_at: 0,
        expires_at: 0,
        auth_time: None,
        nonce_matched: false,
        claims: json!({"email": email}).as_object().expect("object").clone(),
    };
    for bad in [
        "josé@example.com",
        "alice\u{200b}@example.com",
        " alice@example.com",
        "",
    ] {
        assert!(mapping.map(&verified(bad)).is_err(), "{bad:?}");
    }
    assert!(
        mapping
            .map(&countersign_identity::Verified {
                claims: serde_json::Map::new(),
                ..verified("x")
            })
            .is_err()
    );
}
