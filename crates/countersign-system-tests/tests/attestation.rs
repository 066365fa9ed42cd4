//! Attested TPM enrolment against real swtpms with manufacturer (EK) certificates: the service
//! seals a credential to a certified EK for the attestation key, and only the TPM holding both
//! gives the secret back. Every way of answering without that TPM is refused, and the service
//! keeps nothing for a challenge it hands out.

mod harness;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use countersign_core::api::TpmChallengeRequest;
use countersign_core::{EnrolmentRequest, KeyKind, TpmCertification, TpmEndorsementProof};
use countersign_keys::Signer as _;
use countersign_keys::credential::Credential;
use countersign_keys::tpm::{TpmConfig, TpmKey};
use countersign_server::Config;
use countersign_testdevices::{EkCa, Swtpm};
use harness::{Harness, code, test_config};
use reqwest::StatusCode;
use serde_json::json;

fn trusting(ca: &EkCa) -> Config {
    Config {
        attestation: countersign_server::attestation::AttestationConfig {
            tpm_roots: vec![ca.root.clone()],
            tpm_intermediates: vec![ca.intermediate.clone()],
            piv_roots: vec![],
        },
        ..test_config()
    }
}

fn tpm_key(tpm: &Swtpm, dir: &tempfile::TempDir, name: &str) -> TpmKey {
    let config = TpmConfig {
        tcti: tpm.tcti(),
        key_file: dir.path().join(format!("{name}.json")),
    };
    TpmKey::generate(&config, name, None).expect("TPM key")
}

/// An enrolment of `key` for carol with a fresh code, its attestation built by `attest` from
/// the key's own TPM2_Certify statement.
async fn enrol_tpm(
    h: &Harness,
    key: &TpmKey,
    attest: impl FnOnce(&mut TpmCertification),
) -> (StatusCode, serde_json::Value) {
    let (code, _) = countersign_server::admin::issue_enrolment_code(
        h.state.store.as_ref(),
        "root",
        "carol",
        3600,
        h.now(),
    )
    .await
    .expect("code");
    let public = key.public_key();
    let payload = EnrolmentRequest::proof_payload(
        "carol",
        KeyKind::Tpm,
        "laptop",
        &public,
        "countersign.test/log",
    )
    .expect("payload");
    let mut certification = TpmCertification::decode(
        &key.attest(&TpmCertification::nonce(&payload))
            .expect("certify")
            .expect("attests"),
    )
    .expect("decodes");
    attest(&mut certification);
    let request = EnrolmentRequest {
        approver_id: "carol".into(),
        code,
        key_kind: KeyKind::Tpm,
        label: "laptop".into(),
        public_key: public,
        attestation: Some(certification.encode()),
        proof: key.sign(&payload).expect("proof"),
    };
    h.call(
        "POST",
        "/v1/enroll",
        None,
        Some(serde_json::to_value(request).expect("json")),
    )
    .await
}

/// What the TPM behind `key` answers to a challenge for its own EK and AK.
async fn answered(h: &Harness, key: &TpmKey) -> TpmEndorsementProof {
    let endorsement = key
        .endorsement()
        .expect("read")
        .expect("has an EK certificate");
    let request = TpmChallengeRequest {
        ek_certificate: B64.encode(&endorsement.ek_certificate),
        attestation_key_public: B64.encode(&endorsement.attestation_key_public),
    };
    let (status, body) = h
        .call(
            "POST",
            "/v1/enroll/tpm-challenge",
            None,
            Some(serde_json::to_value(&request).expect("json")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let challenge: countersign_core::api::TpmChallenge =
        serde_json::from_value(body).expect("challenge");
    assert!(
        challenge.root.contains("swtpm-localca"),
        "{}",
        challenge.root
    );
    let secret = key
        .activate_credential(&Credential {
            id_object: B64.decode(&challenge.credential_blob).expect("b64"),
            encrypted_secret: B64.decode(&challenge.encrypted_secret).expect("b64"),
        })
        .expect("the TPM activates it");
    TpmEndorsementProof {
        ek_certificate: request.ek_certificate,
        attestation_key_public: request.attestation_key_public,
        challenge_expires_at: challenge.expires_at,
        secret: B64.encode(secret.as_slice()),
    }
}

#[tokio::test]
async fn an_endorsement_is_accepted_only_from_the_tpm_the_credential_was_sealed_to() {
    let (tpm, ca) = Swtpm::start_with_ek_certificate();
    let (other, _) = Swtpm::start_with_ek_certificate();
    let h = Harness::with_config(trusting(&ca)).await;
    h.set_to_wall_clock();
    let dir = tempfile::tempdir().expect("dir");
    let key = tpm_key(&tpm, &dir, "laptop");
    let genuine = answered(&h, &key).await;

    // A guessed secret, or the genuine one moved to another TPM's certified key (whose own AK
    // then certified the enrolled key): refused, nothing enrolled, nothing logged.
    let mut guessed = genuine.clone();
    guessed.secret = B64.encode([7u8; 32]);
    let (status, body) = enrol_tpm(&h, &key, |c| c.endorsement = Some(guessed)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "bad_attestation"),
        "{body}"
    );
    let other_key = tpm_key(&other, &dir, "other");
    let (status, body) = enrol_tpm(&h, &other_key, |c| c.endorsement = Some(genuine.clone())).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "bad_attestation"),
        "{body}"
    );
    assert!(
        code(&body) == "bad_attestation"
            && body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not the one that certified"),
        "{body}"
    );
    // A stretched deadline breaks the MAC; a genuine answer after the deadline is late.
    let mut stretched = genuine.clone();
    stretched.challenge_expires_at = stretched.challenge_expires_at.add_seconds(3600);
    let (status, body) = enrol_tpm(&h, &key, |c| c.endorsement = Some(stretched)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "bad_attestation"),
        "{body}"
    );
    h.advance(301);
    let (status, body) = enrol_tpm(&h, &key, |c| c.endorsement = Some(genuine.clone())).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "bad_attestation"),
        "{body}"
    );
    assert!(format!("{body}").contains("expired"), "{body}");
    let carols = h.state.store.keys(Some("carol")).await.expect("keys");
    assert_eq!(
        carols.len(),
        1,
        "refused enrolments enrol nothing: {carols:?}"
    );

    // The TPM's own answer in time: enrolled, attested by the trusted root, in the log.
    h.set_to_wall_clock();
    let fresh = answered(&h, &key).await;
    let (status, body) = enrol_tpm(&h, &key, |c| c.endorsement = Some(fresh)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let root = body["attested_by"].as_str().expect("attested").to_owned();
    assert!(root.contains("swtpm-localca"), "{root}");
    let keys = h.state.store.keys(Some("carol")).await.expect("keys");
    let enrolled = keys
        .iter()
        .find(|k| k.key_id == key.public_key().key_id())
        .expect("enrolled");
    assert_eq!(enrolled.attested_by.as_deref(), Some(root.as_str()));
}

#[tokio::test]
async fn a_challenge_is_refused_for_an_untrusted_certificate_or_a_key_that_is_no_attestation_key() {
    let (tpm, ca) = Swtpm::start_with_ek_certificate();
    let (foreign, _) = Swtpm::start_with_ek_certificate();
    let h = Harness::with_config(trusting(&ca)).await;
    h.set_to_wall_clock();
    let dir = tempfile::tempdir().expect("dir");
    let key = tpm_key(&tpm, &dir, "laptop");
    let endorsement = key.endorsement().expect("read").expect("EK certificate");
    let foreign_key = tpm_key(&foreign, &dir, "foreign");
    let foreign_endorsement = foreign_key.endorsement().expect("read").expect("EK");
    let challenge = |ek: &[u8], ak: &[u8]| json!({"ek_certificate": B64.encode(ek), "attestation_key_public": B64.encode(ak)});
    let cases = [
        (
            "another authority's TPM",
            challenge(
                &foreign_endorsement.ek_certificate,
                &endorsement.attestation_key_public,
            ),
            StatusCode::FORBIDDEN,
            "endorsement_untrusted",
        ),
        (
            // The enrolled key itself: a signing key that is not restricted could sign a
            // forged statement, so it is no attestation key.
            "an unrestricted key as the AK",
            challenge(
                &endorsement.ek_certificate,
                &key.tpm_public().expect("area"),
            ),
            StatusCode::BAD_REQUEST,
            "attestation_invalid",
        ),
        (
            "a certificate that is not one",
            challenge(b"not a certificate", &endorsement.attestation_key_public),
            StatusCode::BAD_REQUEST,
            "attestation_invalid",
        ),
        (
            "a certificate over the size limit",
            challenge(&vec![0x30; 64 * 1024], &endorsement.attestation_key_public),
            StatusCode::BAD_REQUEST,
            "attestation_invalid",
        ),
    ];
    for (what, body, status, expected) in cases {
        let (got, answer) = h
            .call("POST", "/v1/enroll/tpm-challenge", None, Some(body))
            .await;
        assert_eq!((got, code(&answer)), (status, expected), "{what}: {answer}");
    }

    // Without trusted roots the service says so, and the enrolment goes on unendorsed.
    let plain = Harness::new().await;
    let (status, body) = plain
        .call(
            "POST",
            "/v1/enroll/tpm-challenge",
            None,
            Some(challenge(
                &endorsement.ek_certificate,
                &endorsement.attestation_key_public,
            )),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "attestation_not_configured"),
        "{body}"
    );
}

/// Runs `openssl` in `dir`, failing the test with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PIV attestation hierarchy made the way a YubiKey's is (a root, the device's f9
/// certificate, the slot's attestation of a key) for the public key in `public_pem`; returns
/// the root, device and attestation certificate files.
fn piv_chain(dir: &std::path::Path, name: &str, public_pem: &str) -> [std::path::PathBuf; 3] {
    let p = |f: &str| format!("{name}-{f}");
    std::fs::write(dir.join(p("ca.ext")), "basicConstraints=critical,CA:TRUE\n").expect("ext");
    std::fs::write(dir.join(p("subject.pub.pem")), public_pem).expect("public key");
    for (key, _) in [("root.key", ()), ("device.key", ()), ("throwaway.key", ())] {
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &p(key),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &p("root.key"),
            "-subj",
            &format!("/CN={name} PIV Root CA"),
            "-days",
            "2",
            "-out",
            &p("root.pem"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &p("device.key"),
            "-subj",
            "/CN=Yubico PIV Attestation",
            "-out",
            &p("device.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &p("device.csr"),
            "-CA",
            &p("root.pem"),
            "-CAkey",
            &p("root.key"),
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            &p("ca.ext"),
            "-out",
            &p("device.pem"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &p("throwaway.key"),
            "-subj",
            "/CN=YubiKey PIV Attestation 9c",
            "-out",
            &p("slot.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &p("slot.csr"),
            "-force_pubkey",
            &p("subject.pub.pem"),
            "-CA",
            &p("device.pem"),
            "-CAkey",
            &p("device.key"),
            "-set_serial",
            "3",
            "-days",
            "2",
            "-out",
            &p("attestation.pem"),
        ],
    );
    [p("root.pem"), p("device.pem"), p("attestation.pem")].map(|f| dir.join(f))
}

/// Enrols a software-held key for carol as a PKCS#11 key carrying `document`.
async fn enrol_piv(
    h: &Harness,
    key: &countersign_keys::SoftwareKey,
    document: &countersign_core::PivAttestationDocument,
) -> (StatusCode, serde_json::Value) {
    let (code, _) = countersign_server::admin::issue_enrolment_code(
        h.state.store.as_ref(),
        "root",
        "carol",
        3600,
        h.now(),
    )
    .await
    .expect("code");
    let public = key.public_key();
    let payload = EnrolmentRequest::proof_payload(
        "carol",
        KeyKind::Pkcs11,
        "yubikey",
        &public,
        "countersign.test/log",
    )
    .expect("payload");
    let request = EnrolmentRequest {
        approver_id: "carol".into(),
        code,
        key_kind: KeyKind::Pkcs11,
        label: "yubikey".into(),
        public_key: public,
        attestation: Some(document.encode()),
        proof: key.sign(&payload).expect("proof"),
    };
    h.call(
        "POST",
        "/v1/enroll",
        None,
        Some(serde_json::to_value(request).expect("json")),
    )
    .await
}

fn der(path: &std::path::Path) -> Vec<u8> {
    countersign_keys::endorsement::certificates(&std::fs::read(path).expect("read"))
        .expect("certificate")
        .remove(0)
}

/// A PIV attestation chaining to a trusted PIV root enrols the key it attests as attested by
/// that root; the same attestation for another key, or a chain to another root, is refused.
/// Real YubiKey material (Yubico's root, a YubiKey 5's f9 and slot 9c certificates) chains
/// too, and is refused because its key is not the enrolled one.
#[tokio::test]
async fn a_piv_attestation_attests_only_its_own_key_under_a_trusted_root() {
    let dir = tempfile::tempdir().expect("dir");
    let key =
        countersign_keys::SoftwareKey::generate(&dir.path().join("slot-9c.pem")).expect("key");
    let other =
        countersign_keys::SoftwareKey::generate(&dir.path().join("other.pem")).expect("key");
    let public_pem = String::from_utf8(
        std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(dir.path().join("slot-9c.pem"))
            .output()
            .expect("openssl")
            .stdout,
    )
    .expect("pem");
    let [root, device, attestation] = piv_chain(dir.path(), "vendor", &public_pem);
    let [_, rogue_device, rogue_attestation] = piv_chain(dir.path(), "rogue", &public_pem);
    let yubico = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../countersign-keys/tests/data/yubikey-piv");
    let config = Config {
        attestation: countersign_server::attestation::AttestationConfig {
            piv_roots: vec![root, yubico.join("yubico-piv-root-ca.pem")],
            ..Default::default()
        },
        ..test_config()
    };
    let h = Harness::with_config(config).await;
    h.set_to_wall_clock();
    let document = countersign_core::PivAttestationDocument::new(&der(&attestation), &der(&device));

    let (status, body) = enrol_piv(&h, &other, &document).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "bad_attestation"),
        "{body}"
    );
    assert!(format!("{body}").contains("another key"), "{body}");
    let rogue = countersign_core::PivAttestationDocument::new(
        &der(&rogue_attestation),
        &der(&rogue_device),
    );
    let (status, body) = enrol_piv(&h, &key, &rogue).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "bad_attestation"),
        "{body}"
    );
    let real = countersign_core::PivAttestationDocument::new(
        &der(&yubico.join("slot-9c-attestation.pem")),
        &der(&yubico.join("slot-f9-device.pem")),
    );
    let (status, body) = enrol_piv(&h, &key, &real).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "bad_attestation"),
        "{body}"
    );
    assert!(
        format!("{body}").contains("not P-256"),
        "the real chain verified: {body}"
    );

    let (status, body) = enrol_piv(&h, &key, &document).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["attested_by"], "CN=vendor PIV Root CA", "{body}");
}
