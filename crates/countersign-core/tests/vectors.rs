//! Test vectors in `tests/vectors/` at the repository root, for implementations in other
//! languages: canonical bytes, request digests, deterministic (RFC 6979) signatures, Merkle
//! roots and proofs, and a signed checkpoint.
//!
//! `vectors_match_the_checked_in_files` rebuilds every vector and compares; run it with
//! `COUNTERSIGN_UPDATE_VECTORS=1` to rewrite the files after a deliberate protocol change. The
//! other tests load the files and check each entry through the verifying side of the API.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use countersign_core::canonical::canonicalize_text;
use countersign_core::checkpoint::{Checkpoint, SignedCheckpoint};
use countersign_core::merkle::leaf_hash;
use countersign_core::policy::policy_hash;
use countersign_core::{
    Action, ConsistencyProof, Decision, Digest, Grant, InclusionProof, MerkleTree, Nonce,
    PolicyEvaluation, PolicyOutcome, PublicKey, Signature, SignedDecision, SignedGrant, Timestamp,
    Verdict,
};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};
use uuid::Uuid;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

fn b64(v: &Value, key: &str) -> Vec<u8> {
    BASE64.decode(str_of(v, key)).expect("base64")
}

// ---------------------------------------------------------------------------------------------
// Building the vectors

/// The signing key of the vectors. A published private key: for test vectors only.
fn vector_key() -> SigningKey {
    let scalar = Digest::of(b"countersign test vector key 1");
    SigningKey::from_bytes(&scalar.0.into()).expect("valid scalar")
}

fn public(key: &SigningKey) -> PublicKey {
    PublicKey::from_verifying_key(*key.verifying_key())
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("valid timestamp")
}

fn sample_action() -> Action {
    let request = serde_json::from_value(json!({
        "type": "iam.role.update",
        "resource": "arn:aws:iam::123456789012:role/deployer",
        "environment": "prod",
        "parameters": {"add_actions": ["s3:PutObject"], "max_session_seconds": 3600, "ratio": 0.25},
        "justification": "Release 4.2 uploads build artefacts to the new bucket.\nTicket OPS-311.",
        "context": {"pipeline": "release", "commit": "9f2c1e7", "note": "caf\u{e9} \u{20ac} \u{1f600}"},
        "diff": {"format": "unified", "language": "json", "text": "--- a/policy.json\n+++ b/policy.json\n@@ -3 +3,2 @@\n   \"s3:GetObject\"\n+  \"s3:PutObject\"\n"},
        "tags": ["credentials", "prod-change"],
        "on_behalf_of": "alice@example.com"
    }))
    .expect("valid request");
    Action {
        id: Uuid::parse_str("01936f4e-7c00-7000-8000-000000000001").expect("uuid"),
        requester: "agent:release-bot".into(),
        request,
        created_at: ts("2026-11-21T10:00:00.000Z"),
        expires_at: ts("2026-11-21T10:15:00.000Z"),
        policy: PolicyEvaluation {
            outcome: PolicyOutcome::RequireApproval {
                quorum: 2,
                groups: vec!["security".into(), "platform".into()],
                ttl_seconds: 900,
                require_hardware_key: true,
                quick_approve: false,
                verification_code: false,
                require_idp_enrolment: false,
                max_sign_in_age_seconds: None,
                require_attested_key: false,
                escalation: Vec::new(),
                remind_before_seconds: Vec::new(),
            },
            reason: "IAM changes in prod need two approvers from security or platform".into(),
            policy_hash: policy_hash(b"package countersign\n\ndefault decision := \"deny\"\n"),
            risk: None,
        },
    }
}

fn canonical_vectors() -> Value {
    let cases = [
        (
            "rfc8785-3.2.2",
            r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#,
        ),
        (
            "rfc8785-3.2.3-sorting",
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        ),
        (
            "nested-and-empty",
            r#"{"b":[{},[],""],"a":{"z":-0.0,"y":1e-7,"x":100}}"#,
        ),
        ("integer-limit", r#"[9007199254740991,-9007199254740991]"#),
    ];
    let cases: Vec<Value> = cases
        .iter()
        .map(|(name, input)| {
            let canonical = canonicalize_text(input).expect("canonical");
            json!({
                "name": name,
                "input": input,
                "canonical": String::from_utf8(canonical.clone()).expect("utf-8"),
                "sha256": Digest::of(&canonical).to_hex(),
            })
        })
        .collect();
    let too_deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
    let rejected = [
        ("duplicate-key", r#"{"a":1,"a":2}"#),
        ("unsafe-integer", r#"[9007199254740992]"#),
        ("unsafe-negative-integer", r#"[-9007199254740992]"#),
        ("integer-beyond-2-pow-64", r#"{"n":18446744073709551617}"#),
        ("too-deep", too_deep.as_str()),
        ("lone-surrogate", r#"["\ud800"]"#),
    ];
    let rejected: Vec<Value> = rejected
        .iter()
        .map(|(name, input)| json!({"name": name, "input": input}))
        .collect();
    json!({
        "description": "RFC 8785 canonical JSON. `canonical` is the exact UTF-8 output for `input`; inputs in `rejected` must be refused (I-JSON).",
        "cases": cases,
        "rejected": rejected,
    })
}

fn request_digest_vectors() -> Value {
    let action = sample_action();
    let canonical = countersign_core::to_canonical_vec(&action).expect("canonical");
    json!({
        "description": "digest = SHA-256(\"countersign/request/v1\\n\" || JCS(action)); `preimage` is the full hashed string.",
        "cases": [{
            "name": "iam-role-update",
            "action": action,
            "preimage": format!("countersign/request/v1\n{}", String::from_utf8(canonical).expect("utf-8")),
            "digest": action.digest().expect("digest"),
        }],
    })
}

fn signature_case(key: &SigningKey, name: &str, object: Value, payload: &[u8]) -> Value {
    let signature: p256::ecdsa::Signature = key.sign(payload);
    let signature = Signature::from_p256(signature);
    json!({
        "name": name,
        "object": object,
        "payload_base64": BASE64.encode(payload),
        "signature_der_base64": signature.to_base64(),
        "signature_raw_hex": hex::encode(signature.to_raw()),
    })
}

fn signature_vectors() -> Value {
    let key = vector_key();
    let pk = public(&key);
    let action = sample_action();
    let digest = action.digest().expect("digest");
    let decision = Decision {
        request_id: action.id,
        request_digest: digest,
        verdict: Verdict::Approve,
        approver_id: "bob@example.com".into(),
        key_id: pk.key_id(),
        decided_at: ts("2026-11-21T10:03:12.345Z"),
        comment: "Matches the release plan.".into(),
        nonce: Nonce(*b"0123456789abcdef"),
        verification_code: None,
    };
    let decision_payload = decision.signing_payload().expect("payload");
    let grant = Grant {
        grant_id: Uuid::parse_str("01936f55-0000-7000-8000-000000000002").expect("uuid"),
        request_id: action.id,
        request_digest: digest,
        not_before: ts("2026-11-21T10:05:00.000Z"),
        expires_at: ts("2026-11-21T10:10:00.000Z"),
        single_use: true,
    };
    let grant_payload = grant.signing_payload().expect("payload");
    let checkpoint = checkpoint();
    json!({
        "description": "ECDSA P-256 / SHA-256, deterministic nonces (RFC 6979). The signature covers the bytes of payload_base64 (domain prefix || JCS). Signatures travel as base64 DER; raw r||s is given too. The private key is published: for vectors only.",
        "key": {
            "private_scalar_hex": hex::encode(key.to_bytes()),
            "public_key_spki_base64": pk,
            "public_key_pem": pk.to_pem(),
            "key_id": pk.key_id(),
        },
        "cases": [
            signature_case(&key, "decision", serde_json::to_value(&decision).expect("json"), &decision_payload),
            signature_case(&key, "grant", serde_json::to_value(&grant).expect("json"), &grant_payload),
            signature_case(&key, "checkpoint", serde_json::to_value(&checkpoint).expect("json"), &checkpoint.signing_payload()),
        ],
    })
}

fn merkle_leaves() -> Vec<Vec<u8>> {
    // The reference leaves of RFC 6962 test suites, then a few more to reach odd sizes.
    let mut leaves: Vec<Vec<u8>> = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| hex::decode(h).expect("hex"))
    .collect();
    for i in 0u8..5 {
        leaves.push(vec![0x70 + i; usize::from(i) + 1]);
    }
    leaves
}

fn merkle_vectors() -> Value {
    let leaves = merkle_leaves();
    let tree = MerkleTree::from_leaf_hashes(leaves.iter().map(|l| leaf_hash(l)));
    let n = tree.size();
    let roots: Vec<Value> = (0..=n)
        .map(|size| json!({"size": size, "root": tree.root_at(size).expect("root")}))
        .collect();
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for size in 1..=n {
        for index in 0..size {
            let hashes = tree.inclusion_proof(index, size).expect("proof");
            inclusion.push(InclusionProof {
                leaf_index: index,
                tree_size: size,
                hashes,
            });
        }
        for from in 1..=size {
            let hashes = tree.consistency_proof(from, size).expect("proof");
            consistency.push(ConsistencyProof {
                from_size: from,
                to_size: size,
                hashes,
            });
        }
    }
    json!({
        "description": "RFC 9162 Merkle tree: leaf hash SHA-256(0x00||leaf), node hash SHA-256(0x01||l||r). Roots for every size, every inclusion proof and every consistency proof of the first 13 leaves. Hashes are lowercase hex.",
        "leaves_hex": leaves.iter().map(hex::encode).collect::<Vec<_>>(),
        "roots": roots,
        "inclusion": inclusion,
        "consistency": consistency,
    })
}

fn checkpoint() -> Checkpoint {
    let leaves = merkle_leaves();
    let tree = MerkleTree::from_leaf_hashes(leaves.iter().map(|l| leaf_hash(l)));
    Checkpoint {
        origin: "countersign.example/log".into(),
        tree_size: tree.size(),
        root_hash: tree.root(),
        timestamp: ts("2026-11-21T10:20:00.000Z"),
    }
}

fn checkpoint_vectors() -> Value {
    let key = vector_key();
    let pk = public(&key);
    let cp = checkpoint();
    let signature = Signature::from_p256(key.sign(&cp.signing_payload()));
    let signed = SignedCheckpoint::new(cp, "countersign.example/log", &pk, signature);
    json!({
        "description": "A checkpoint of the merkle.json tree as a C2SP signed note. Signature type 0xff || \"countersign/checkpoint/v1\"; the signature covers \"countersign/checkpoint/v1\\n\" || note text; key id = SHA-256(name || 0x0A || type || SPKI DER)[:4].",
        "key_name": "countersign.example/log",
        "public_key_spki_base64": pk,
        "note": signed.to_note(),
    })
}

fn all_vectors() -> Vec<(&'static str, Value)> {
    vec![
        ("canonical.json", canonical_vectors()),
        ("request-digest.json", request_digest_vectors()),
        ("signatures.json", signature_vectors()),
        ("merkle.json", merkle_vectors()),
        ("checkpoint.json", checkpoint_vectors()),
    ]
}

#[test]
fn vectors_match_the_checked_in_files() {
    let update = std::env::var_os("COUNTERSIGN_UPDATE_VECTORS").is_some();
    for (name, built) in all_vectors() {
        if update {
            let text = serde_json::to_string_pretty(&built).expect("json") + "\n";
            std::fs::write(vectors_dir().join(name), text).expect("write vectors");
            continue;
        }
        assert_eq!(
            load(name),
            built,
            "{name} differs from what the code produces; if the protocol change is deliberate, \
             rerun with COUNTERSIGN_UPDATE_VECTORS=1"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Checking the files through the verifying side

#[test]
fn canonical_vectors_hold() {
    let v = load("canonical.json");
    let cases = v["cases"].as_array().expect("cases");
    assert!(cases.len() >= 4);
    for case in cases {
        let canonical = canonicalize_text(str_of(case, "input")).expect("canonicalizes");
        assert_eq!(
            canonical,
            str_of(case, "canonical").as_bytes(),
            "{}",
            case["name"]
        );
        assert_eq!(Digest::of(&canonical).to_hex(), str_of(case, "sha256"));
    }
    for case in v["rejected"].as_array().expect("rejected") {
        assert!(
            canonicalize_text(str_of(case, "input")).is_err(),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn request_digest_vectors_hold() {
    let v = load("request-digest.json");
    for case in v["cases"].as_array().expect("cases") {
        let action: Action = serde_json::from_value(case["action"].clone()).expect("action");
        let expected: Digest = str_of(case, "digest").parse().expect("digest");
        assert_eq!(action.digest().expect("digest"), expected);
        assert_eq!(Digest::of(str_of(case, "preimage").as_bytes()), expected);
    }
}

#[test]
fn signature_vectors_verify_and_are_deterministic() {
    let v = load("signatures.json");
    let key = &v["key"];
    let pk = PublicKey::from_spki_der(&b64(key, "public_key_spki_base64")).expect("public key");
    assert_eq!(
        PublicKey::from_pem(str_of(key, "public_key_pem")).ok(),
        Some(pk.clone())
    );
    assert_eq!(pk.key_id().to_string(), str_of(key, "key_id"));
    let scalar = hex::decode(str_of(key, "private_scalar_hex")).expect("hex");
    let signing = SigningKey::from_slice(&scalar).expect("private key");

    let cases = v["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let payload = b64(case, "payload_base64");
        let signature: Signature = str_of(case, "signature_der_base64").parse().expect("sig");
        assert_eq!(pk.verify(&payload, &signature), Ok(()), "{}", case["name"]);
        let raw = hex::decode(str_of(case, "signature_raw_hex")).expect("hex");
        assert_eq!(Signature::from_raw(&raw), Ok(signature));
        let again = Signature::from_p256(signing.sign(&payload));
        assert_eq!(again, signature, "RFC 6979 signature is not reproducible");
        let mut tampered = payload.clone();
        tampered[payload.len() / 2] ^= 1;
        assert!(pk.verify(&tampered, &signature).is_err());
    }

    // The objects themselves verify through the protocol types.
    let decision: Decision = serde_json::from_value(cases[0]["object"].clone()).expect("decision");
    let signed = SignedDecision {
        decision,
        signature: str_of(&cases[0], "signature_der_base64")
            .parse()
            .expect("sig"),
    };
    assert_eq!(signed.verify(&pk), Ok(()));
    let grant: Grant = serde_json::from_value(cases[1]["object"].clone()).expect("grant");
    let signed = SignedGrant {
        signature: str_of(&cases[1], "signature_der_base64")
            .parse()
            .expect("sig"),
        grant,
    };
    let now = signed.grant.not_before;
    assert_eq!(
        signed.check(&pk, now, &signed.grant.request_digest.clone()),
        Ok(())
    );
}

#[test]
fn merkle_vectors_verify() {
    let v = load("merkle.json");
    let leaves: Vec<Digest> = v["leaves_hex"]
        .as_array()
        .expect("leaves")
        .iter()
        .map(|l| leaf_hash(&hex::decode(l.as_str().expect("hex")).expect("hex")))
        .collect();
    let roots: Vec<Digest> = v["roots"]
        .as_array()
        .expect("roots")
        .iter()
        .map(|r| str_of(r, "root").parse().expect("digest"))
        .collect();
    assert_eq!(roots.len(), leaves.len() + 1);
    let inclusion: Vec<InclusionProof> =
        serde_json::from_value(v["inclusion"].clone()).expect("inclusion proofs");
    for proof in &inclusion {
        let leaf = leaves[proof.leaf_index as usize];
        assert_eq!(
            proof.verify(&leaf, &roots[proof.tree_size as usize]),
            Ok(())
        );
    }
    let consistency: Vec<ConsistencyProof> =
        serde_json::from_value(v["consistency"].clone()).expect("consistency proofs");
    for proof in &consistency {
        let (old, new) = (
            roots[proof.from_size as usize],
            roots[proof.to_size as usize],
        );
        assert_eq!(proof.verify(&old, &new), Ok(()));
    }
    let n = leaves.len();
    assert_eq!(inclusion.len(), n * (n + 1) / 2);
    assert_eq!(consistency.len(), n * (n + 1) / 2);
}

#[test]
fn checkpoint_vector_verifies() {
    let v = load("checkpoint.json");
    let pk = PublicKey::from_spki_der(&b64(&v, "public_key_spki_base64")).expect("public key");
    let signed = SignedCheckpoint::parse_note(str_of(&v, "note")).expect("note");
    assert_eq!(signed.verify(str_of(&v, "key_name"), &pk), Ok(()));
    let merkle = load("merkle.json");
    let last = merkle["roots"]
        .as_array()
        .and_then(|r| r.last())
        .expect("roots");
    assert_eq!(
        signed.checkpoint.tree_size,
        last["size"].as_u64().expect("size")
    );
    assert_eq!(signed.checkpoint.root_hash.to_hex(), str_of(last, "root"));
}
