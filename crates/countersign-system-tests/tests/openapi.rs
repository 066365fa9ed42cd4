//! The served OpenAPI document against the service's real answers, on every route: each
//! operation is called as its document describes it (path parameters in the path, query
//! parameters in the query, the declared body), successfully and with the failures every client
//! meets (no credentials, a value that does not parse, a body that is not JSON), and every
//! answer must be a declared status whose content type and body match the declared schema.

mod harness;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use countersign_core::{KeyKind, Signature, Verdict};
use countersign_server::admin;
use harness::{Harness, key};
use http_body_util::BodyExt as _;
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// A minimal JSON Schema check for the keywords the document uses ($ref, type, properties,
/// required, additionalProperties, items, enum, oneOf, allOf, anyOf, pattern, minimum).
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "unresolved {r}");
        return check(doc, target, value, at, errors);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(doc, s, value, at, errors);
        }
    }
    for (keyword, exactly_one) in [("oneOf", true), ("anyOf", false)] {
        if let Some(options) = schema.get(keyword).and_then(Value::as_array) {
            let matching = options
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    check(doc, s, value, at, &mut e);
                    e.is_empty()
                })
                .count();
            let ok = if exactly_one {
                matching == 1
            } else {
                matching >= 1
            };
            if !ok {
                errors.push(format!(
                    "{at}: {matching} of the {keyword} schemas match {value}"
                ));
            }
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = |t: &str| match t {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            "null" => value.is_null(),
            _ => true,
        };
        if !types.iter().any(|t| fits(t)) {
            errors.push(format!("{at}: {value} is not of type {t}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {options:?}"));
    }
    if let (Some(pattern), Some(text)) = (
        schema.get("pattern").and_then(Value::as_str),
        value.as_str(),
    ) {
        let re = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern}: {e}"));
        if !re.is_match(text) {
            errors.push(format!("{at}: {text:?} does not match {pattern}"));
        }
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        errors.push(format!("{at}: {n} is below {min}"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                errors.push(format!("{at}: required {name} missing"));
            }
        }
        for (name, v) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(s) => check(doc, s, v, &format!("{at}.{name}"), errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{at}: {name} is not a declared property"))
                    }
                    Some(s @ Value::Object(_)) => check(doc, s, v, &format!("{at}.{name}"), errors),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            check(doc, items, v, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Who calls.
#[derive(Clone, Copy)]
enum Auth {
    None,
    Agent,
    Session,
    Admin,
}

/// One call of one operation: the values of its parameters by name, its body, what must come
/// back.
struct Call {
    method: &'static str,
    path: &'static str,
    auth: Auth,
    params: Vec<(&'static str, String)>,
    body: Option<Value>,
    headers: Vec<(&'static str, &'static str)>,
    expect: u16,
}

struct Fixture {
    h: Harness,
    doc: Value,
    agent: String,
    session: String,
    admin: String,
}

impl Fixture {
    /// Sends `call` as the document describes its operation: path parameters substituted,
    /// query parameters in the query string. Returns the status and checks the answer.
    async fn send(&self, call: &Call, seen: &mut BTreeSet<(String, String)>) -> Value {
        let op = &self.doc["paths"][call.path][call.method.to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{} {} is not in the document",
            call.method,
            call.path
        );
        seen.insert((call.method.to_owned(), call.path.to_owned()));
        let mut path = call.path.to_owned();
        let mut query = Vec::new();
        let declared = op["parameters"].as_array().cloned().unwrap_or_default();
        for p in &declared {
            let name = p["name"].as_str().expect("name");
            let location = p["in"].as_str().expect("in");
            let value = call.params.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
            match (location, value) {
                ("path", Some(v)) => {
                    let placeholder = format!("{{{name}}}");
                    assert!(
                        path.contains(&placeholder),
                        "{name} declared in the path of {}",
                        call.path
                    );
                    path = path.replace(&placeholder, v);
                }
                ("path", None) => panic!(
                    "{} {}: no value for path parameter {name}",
                    call.method, call.path
                ),
                ("query", Some(v)) => query.push(format!("{name}={v}")),
                ("query", None) => assert!(
                    p["required"] != true,
                    "{} {}: required query parameter {name} not given",
                    call.method,
                    call.path
                ),
                ("header", _) => {}
                (other, _) => panic!("{name} declared in {other}"),
            }
        }
        for (name, _) in &call.params {
            assert!(
                declared.iter().any(|p| p["name"] == *name),
                "{} {}: {name} is not a declared parameter",
                call.method,
                call.path
            );
        }
        assert!(
            !path.contains('{'),
            "{path}: a path parameter is not declared"
        );
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let mut req = Request::builder().method(call.method).uri(&path);
        let token = match call.auth {
            Auth::None => None,
            Auth::Agent => Some(&self.agent),
            Auth::Session => Some(&self.session),
            Auth::Admin => Some(&self.admin),
        };
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (name, value) in &call.headers {
            req = req.header(*name, *value);
        }
        let req = match &call.body {
            Some(b) => {
                if !call.headers.iter().any(|(n, _)| *n == "content-type") {
                    req = req.header("content-type", "application/json");
                }
                req.body(Body::from(b.to_string()))
            }
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.h.app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let what = format!("{} {path} -> {status}", call.method);
        assert_eq!(
            status.as_u16(),
            call.expect,
            "{what}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let declared = &op["responses"][status.as_u16().to_string()];
        assert!(declared.is_object(), "{what}: status not declared");
        match declared["content"]["application/json"]["schema"].as_object() {
            Some(_) => {
                assert!(
                    content_type.starts_with("application/json"),
                    "{what}: content type {content_type}"
                );
                let body: Value =
                    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
                let mut errors = Vec::new();
                check(
                    &self.doc,
                    &declared["content"]["application/json"]["schema"],
                    &body,
                    "$",
                    &mut errors,
                );
                assert!(errors.is_empty(), "{what}: {errors:#?}");
                body
            }
            None if status == StatusCode::NO_CONTENT => {
                assert!(bytes.is_empty(), "{what}: a body on 204");
                Value::Null
            }
            None => {
                assert!(
                    !content_type.starts_with("application/json") || status.is_success(),
                    "{what}: undeclared JSON"
                );
                Value::Null
            }
        }
    }
}

fn call(method: &'static str, path: &'static str, auth: Auth, expect: u16) -> Call {
    Call {
        method,
        path,
        auth,
        params: Vec::new(),
        body: None,
        headers: Vec::new(),
        expect,
    }
}

impl Call {
    fn param(mut self, name: &'static str, value: impl ToString) -> Self {
        self.params.push((name, value.to_string()));
        self
    }
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
}

#[tokio::test]
async fn every_route_answers_as_its_document_says() {
    let h = Harness::new().await;
    let (_, doc) = h.call("GET", "/v1/openapi.json", None, None).await;
    let (_, admin_token) = admin::issue_token(
        h.state.store.as_ref(),
        "root",
        countersign_store::TokenRole::Admin,
        "ops",
        h.now(),
    )
    .await
    .expect("admin token");
    let f = Fixture {
        session: h.session(0).await,
        agent: h.agent_token.clone(),
        admin: admin_token,
        doc,
        h,
    };
    let mut seen = BTreeSet::new();
    let h = &f.h;
    let action = json!({"type": "k8s.deploy", "resource": "cluster/prod/web", "environment": "prod",
                        "justification": "release"});

    // Operations, liveness, the document's own fixed routes.
    f.send(&call("GET", "/healthz", Auth::None, 200), &mut seen)
        .await;
    // The web link chat notices carry: on to the console's link, or a JSON error.
    f.send(
        &call("GET", "/open/{id}", Auth::None, 303)
            .param("id", "0191e7a4-5a6b-7c8d-9e0f-a1b2c3d4e5f6"),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/open/{id}", Auth::None, 400).param("id", "not-a-uuid"),
        &mut seen,
    )
    .await;

    // Agents.
    let created = f
        .send(
            &call("POST", "/v1/actions", Auth::Agent, 201).body(action.clone()),
            &mut seen,
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let digest: countersign_core::Digest = created["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    f.send(
        &call("POST", "/v1/actions", Auth::None, 401).body(action.clone()),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions", Auth::Agent, 415)
            .body(action.clone())
            .header("content-type", "text/plain"),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions", Auth::Agent, 400).body(json!({"type": "x"})),
        &mut seen,
    )
    .await;
    let other = json!({"type": "k8s.deploy", "resource": "other", "environment": "prod", "justification": "x"});
    f.send(
        &call("POST", "/v1/actions", Auth::Agent, 201)
            .body(other.clone())
            .header("idempotency-key", "k1"),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions", Auth::Agent, 200)
            .body(other)
            .header("idempotency-key", "k1"),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions", Auth::Agent, 409)
            .body(action.clone())
            .header("idempotency-key", "k1"),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/actions/{id}", Auth::Agent, 200).param("id", &id),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/actions/{id}", Auth::Agent, 400).param("id", "not-a-uuid"),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/actions/{id}", Auth::Agent, 404).param("id", uuid::Uuid::nil()),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/actions/{id}", Auth::None, 401).param("id", &id),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/actions/{id}/wait", Auth::Agent, 200)
            .param("id", &id)
            .param("timeout", 0),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/actions/{id}/wait", Auth::Agent, 400)
            .param("id", &id)
            .param("timeout", "soon"),
        &mut seen,
    )
    .await;
    let withdrawn = f
        .send(
            &call("POST", "/v1/actions", Auth::Agent, 201).body(
                json!({"type": "k8s.deploy", "resource": "withdrawn", "environment": "prod", "justification": "x"}),
            ),
            &mut seen,
        )
        .await;
    let withdrawn = withdrawn["id"].as_str().expect("id").to_owned();
    let cancelled = f
        .send(
            &call("POST", "/v1/actions/{id}/cancel", Auth::Agent, 200).param("id", &withdrawn),
            &mut seen,
        )
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    f.send(
        &call("POST", "/v1/actions/{id}/cancel", Auth::Agent, 409).param("id", &withdrawn),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions/{id}/cancel", Auth::Agent, 404).param("id", uuid::Uuid::nil()),
        &mut seen,
    )
    .await;

    // Approvers.
    f.send(&call("GET", "/v1/pending", Auth::Session, 200), &mut seen)
        .await;
    f.send(&call("GET", "/v1/pending", Auth::None, 401), &mut seen)
        .await;
    f.send(
        &call("GET", "/v1/pending-reviews", Auth::Session, 200),
        &mut seen,
    )
    .await;
    // A break-glass request, granted at once, and its reviews.
    let glass = f
        .send(
            &call("POST", "/v1/actions", Auth::Agent, 201).body(json!({
                "type": "incident.fix", "resource": "cluster/prod/payments", "environment": "prod",
                "justification": "payments down", "break_glass": true
            })),
            &mut seen,
        )
        .await;
    let glass_id = glass["id"].as_str().expect("id").to_owned();
    let glass_uuid: uuid::Uuid = glass_id.parse().expect("uuid");
    let glass_digest: countersign_core::Digest = glass["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    f.send(
        &call("POST", "/v1/actions/{id}/reviews", Auth::None, 200)
            .param("id", &glass_id)
            .body(
                serde_json::to_value(h.review(0, glass_uuid, glass_digest, false, 90))
                    .expect("json"),
            ),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions/{id}/reviews", Auth::None, 409)
            .param("id", &glass_id)
            .body(
                serde_json::to_value(h.review(0, glass_uuid, glass_digest, true, 91))
                    .expect("json"),
            ),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions/{id}/reviews", Auth::None, 403)
            .param("id", &glass_id)
            .body(
                serde_json::to_value(h.review(2, glass_uuid, glass_digest, false, 92))
                    .expect("json"),
            ),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/actions/{id}/view", Auth::Session, 200).param("id", &id),
        &mut seen,
    )
    .await;
    let uuid: uuid::Uuid = id.parse().expect("uuid");
    let first = h.decision(0, uuid, digest, Verdict::Approve, 1);
    f.send(
        &call("POST", "/v1/actions/{id}/decisions", Auth::None, 200)
            .param("id", &id)
            .body(serde_json::to_value(&first).expect("json")),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions/{id}/decisions", Auth::None, 409)
            .param("id", &id)
            .body(
                serde_json::to_value(h.decision(0, uuid, digest, Verdict::Approve, 2))
                    .expect("json"),
            ),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions/{id}/decisions", Auth::None, 403)
            .param("id", &id)
            .body(
                serde_json::to_value(h.decision(2, uuid, digest, Verdict::Approve, 3))
                    .expect("json"),
            ),
        &mut seen,
    )
    .await;
    let second = h.decision(1, uuid, digest, Verdict::Approve, 4);
    f.send(
        &call("POST", "/v1/actions/{id}/decisions", Auth::None, 200)
            .param("id", &id)
            .body(serde_json::to_value(&second).expect("json")),
        &mut seen,
    )
    .await;
    let approved = f
        .send(
            &call("GET", "/v1/actions/{id}", Auth::Agent, 200).param("id", &id),
            &mut seen,
        )
        .await;
    let grant_id = approved["grant"]["grant"]["grant_id"]
        .as_str()
        .expect("grant")
        .to_owned();
    f.send(
        &call("POST", "/v1/grants/{id}/redeem", Auth::Agent, 200)
            .param("id", &grant_id)
            .body(json!({"request_digest": digest})),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/grants/{id}/redeem", Auth::Agent, 409)
            .param("id", &grant_id)
            .body(json!({"request_digest": digest})),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions/{id}/outcome", Auth::Agent, 204)
            .param("id", &id)
            .body(json!({"succeeded": true, "detail": "done"})),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/actions/{id}/outcome", Auth::Agent, 409)
            .param("id", &id)
            .body(json!({"succeeded": true, "detail": "again"})),
        &mut seen,
    )
    .await;

    // Sessions and enrolment.
    let challenge = f
        .send(
            &call("POST", "/v1/sessions/challenge", Auth::None, 200),
            &mut seen,
        )
        .await;
    let ch: countersign_core::Digest = challenge["challenge"]
        .as_str()
        .expect("challenge")
        .parse()
        .expect("digest");
    let a = &h.approvers[1];
    let payload =
        countersign_core::SessionRequest::payload(&ch, &a.public.key_id(), "countersign.test/log")
            .expect("payload");
    let signed = json!({"key_id": a.public.key_id(), "challenge": ch, "signature": Signature::from_p256(a.key.sign(&payload))});
    f.send(
        &call("POST", "/v1/sessions", Auth::None, 201).body(signed.clone()),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/sessions", Auth::None, 409).body(signed),
        &mut seen,
    )
    .await;
    let issued = f
        .send(
            &call(
                "POST",
                "/v1/admin/approvers/{id}/enrolment-codes",
                Auth::Admin,
                201,
            )
            .param("id", "dave")
            .body(json!({"ttl_seconds": 600})),
            &mut seen,
        )
        .await;
    f.send(
        &call(
            "POST",
            "/v1/admin/approvers/{id}/enrolment-codes",
            Auth::Admin,
            404,
        )
        .param("id", "nobody")
        .body(json!({})),
        &mut seen,
    )
    .await;
    let (k, p) = key(77);
    let proof_payload = countersign_core::EnrolmentRequest::proof_payload(
        "dave",
        KeyKind::Software,
        "spare",
        &p,
        "countersign.test/log",
    )
    .expect("payload");
    let enrol = json!({"approver_id": "dave", "code": issued["code"], "key_kind": "software", "label": "spare",
                       "public_key": p, "proof": Signature::from_p256(k.sign(&proof_payload))});
    f.send(
        &call("POST", "/v1/enroll", Auth::None, 201).body(enrol.clone()),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/enroll", Auth::None, 409).body(enrol),
        &mut seen,
    )
    .await;
    // The attested TPM enrolment's first step: this service trusts no TPM manufacturer's root
    // (tests/attestation.rs has one), and a body without the fields is malformed.
    f.send(
        &call("POST", "/v1/enroll/tpm-challenge", Auth::None, 403)
            .body(json!({"ek_certificate": "AA==", "attestation_key_public": "AA=="})),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/enroll/tpm-challenge", Auth::None, 400).body(json!({})),
        &mut seen,
    )
    .await;
    // Sign-in with an OpenID Provider: this service has none (tests/oidc.rs has one).
    f.send(
        &call("POST", "/v1/identity/oidc/sign-in", Auth::None, 403),
        &mut seen,
    )
    .await;
    let idp_payload = countersign_core::IdpEnrolmentRequest::proof_payload(
        &ch,
        KeyKind::Software,
        "spare",
        &p,
        "countersign.test/log",
    )
    .expect("payload");
    f.send(
        &call("POST", "/v1/enroll/idp", Auth::None, 403).body(json!({
            "id_token": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln", "nonce": ch, "key_kind": "software",
            "label": "spare", "public_key": p, "proof": Signature::from_p256(k.sign(&idp_payload)),
        })),
        &mut seen,
    )
    .await;
    let again_payload =
        countersign_core::IdpSignInRequest::proof_payload(&ch, &p.key_id(), "countersign.test/log")
            .expect("payload");
    f.send(
        &call("POST", "/v1/identity/oidc/key-sign-in", Auth::None, 403).body(json!({
            "id_token": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln", "nonce": ch, "key_id": p.key_id(),
            "proof": Signature::from_p256(k.sign(&again_payload)),
        })),
        &mut seen,
    )
    .await;

    // The audit log.
    let checkpoint = f
        .send(
            &call("GET", "/v1/audit/checkpoint", Auth::None, 200),
            &mut seen,
        )
        .await;
    let size = checkpoint["checkpoint"]["tree_size"]
        .as_u64()
        .expect("size");
    f.send(
        &call("GET", "/v1/audit", Auth::Session, 200)
            .param("after", 0)
            .param("limit", 5),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/audit", Auth::Session, 400).param("limit", "many"),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/audit/proof/inclusion", Auth::None, 200)
            .param("seq", 0)
            .param("tree_size", size),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/audit/proof/inclusion", Auth::None, 400)
            .param("seq", size + 5)
            .param("tree_size", size),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/audit/proof/consistency", Auth::None, 200)
            .param("from", 1)
            .param("to", size),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/audit/proof/consistency", Auth::None, 400)
            .param("from", "x")
            .param("to", size),
        &mut seen,
    )
    .await;
    f.send(&call("GET", "/v1/server-key", Auth::None, 200), &mut seen)
        .await;
    let cp =
        countersign_core::SignedCheckpoint::parse_note(checkpoint["note"].as_str().expect("note"))
            .expect("note");
    let bob = &h.approvers[0];
    let cosig = Signature::from_p256(bob.key.sign(&cp.checkpoint.cosigning_payload()));
    f.send(
        &call("POST", "/v1/audit/cosignatures", Auth::Session, 201)
            .body(json!({"tree_size": size, "signature": cosig})),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/audit/cosignatures", Auth::Session, 400).body(json!([1, 2])),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/audit/cosignatures", Auth::Session, 200),
        &mut seen,
    )
    .await;

    // Administration.
    let issued = f
        .send(
            &call("POST", "/v1/admin/agent-tokens", Auth::Admin, 201)
                .body(json!({"agent_id": "agent:spare"})),
            &mut seen,
        )
        .await;
    f.send(
        &call("POST", "/v1/admin/agent-tokens", Auth::Admin, 400)
            .body(json!({"agent_id": "Agent Spare"})),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/admin/agent-tokens", Auth::Agent, 401)
            .body(json!({"agent_id": "agent:x"})),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/admin/tokens", Auth::Admin, 200),
        &mut seen,
    )
    .await;
    f.send(
        &call("DELETE", "/v1/admin/tokens/{token_id}", Auth::Admin, 204)
            .param("token_id", issued["token_id"].as_str().expect("id")),
        &mut seen,
    )
    .await;
    f.send(
        &call("DELETE", "/v1/admin/tokens/{token_id}", Auth::Admin, 400).param("token_id", "nope"),
        &mut seen,
    )
    .await;
    f.send(
        &call("GET", "/v1/admin/approvers", Auth::Admin, 200),
        &mut seen,
    )
    .await;
    f.send(
        &call("PUT", "/v1/admin/approvers/{id}", Auth::Admin, 200)
            .param("id", "frank")
            .body(json!({"groups": ["security"]})),
        &mut seen,
    )
    .await;
    f.send(
        &call("PUT", "/v1/admin/approvers/{id}", Auth::Admin, 400)
            .param("id", "Frank")
            .body(json!({"groups": []})),
        &mut seen,
    )
    .await;
    let policy = f
        .send(
            &call("GET", "/v1/admin/policy", Auth::Admin, 200),
            &mut seen,
        )
        .await;
    f.send(
        &call("PUT", "/v1/admin/policy", Auth::Admin, 400).body(json!({"source": "package x"})),
        &mut seen,
    )
    .await;
    f.send(&call("PUT", "/v1/admin/policy", Auth::Admin, 200).body(json!({"source": format!("{}\n# v2\n", policy["source"].as_str().expect("source")), "expected_hash": policy["hash"]})), &mut seen).await;
    f.send(
        &call("POST", "/v1/admin/keys/{key_id}/revoke", Auth::Admin, 204)
            .param("key_id", p.key_id())
            .body(json!({"reason": "spare"})),
        &mut seen,
    )
    .await;
    f.send(
        &call("POST", "/v1/admin/keys/{key_id}/revoke", Auth::Admin, 400)
            .param("key_id", "zz")
            .body(json!({"reason": "x"})),
        &mut seen,
    )
    .await;

    // The stream refuses what is not a WebSocket handshake, in the API's error shape.
    f.send(&call("GET", "/v1/ws", Auth::None, 400), &mut seen)
        .await;

    // Unknown routes and methods are JSON errors too.
    let (status, body) = h.call("GET", "/v1/nothing-here", None, None).await;
    assert_eq!(
        (status, harness::code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, body) = h.call("DELETE", "/v1/pending", None, None).await;
    assert_eq!(
        (status, harness::code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    // Every operation of the document was called.
    let mut all = BTreeMap::new();
    for (path, item) in f.doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            all.insert((method.to_ascii_uppercase(), path.clone()), ());
        }
    }
    let missing: Vec<_> = all.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(missing.is_empty(), "operations never called: {missing:?}");
    // The proofs' parameters are required, in the query.
    for (path, names) in [
        ("/v1/audit/proof/inclusion", ["seq", "tree_size"]),
        ("/v1/audit/proof/consistency", ["from", "to"]),
    ] {
        for p in f.doc["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
        {
            if names.contains(&p["name"].as_str().expect("name")) {
                assert_eq!(
                    (p["in"].as_str(), p["required"].as_bool()),
                    (Some("query"), Some(true)),
                    "{path} {}",
                    p["name"]
                );
            }
        }
    }
}

/// The schema check above can fail: wrong types, missing required fields, patterns and enums
/// are caught against the served document's own schemas.
#[tokio::test]
async fn the_schema_check_catches_what_does_not_match() {
    let h = Harness::new().await;
    let (_, doc) = h.call("GET", "/v1/openapi.json", None, None).await;
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let errors = |name: &str, value: Value| {
        let mut e = Vec::new();
        check(&doc, &schema(name), &value, "$", &mut e);
        e
    };
    assert!(errors("ErrorBody", json!({"error": {"code": "x", "message": "y"}})).is_empty());
    assert!(!errors("ErrorBody", json!({"error": {"code": 1, "message": "y"}})).is_empty());
    assert!(!errors("ErrorBody", json!({"error": {"code": "x"}})).is_empty());
    assert!(errors("Timestamp", json!("2026-11-21T10:00:00.000Z")).is_empty());
    assert!(!errors("Timestamp", json!("2026-11-21T10:00:00Z")).is_empty());
    assert!(errors("ActionType", json!("db.export")).is_empty());
    assert!(!errors("ActionType", json!("db-export")).is_empty());
    assert!(!errors("ActionStatus", json!("maybe")).is_empty());
    assert!(!errors("Digest", json!("ABC")).is_empty());
}
