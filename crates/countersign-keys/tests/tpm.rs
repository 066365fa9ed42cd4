//! The TPM 2.0 backend against a real swtpm, one fresh TPM per test.
#![cfg(feature = "tpm")]

mod support;

use countersign_keys::tpm::{TpmConfig, TpmKey, key_file_public};
use countersign_keys::{KeyError, PinRequest, Signer};
use countersign_testdevices::Swtpm;
use zeroize::Zeroizing;

fn config(tpm: &Swtpm, dir: &tempfile::TempDir) -> TpmConfig {
    TpmConfig {
        tcti: tpm.tcti(),
        key_file: dir.path().join("keys").join("tpm.json"),
    }
}

fn pin(value: &'static str) -> impl Fn(&PinRequest<'_>) -> Result<Zeroizing<String>, KeyError> {
    move |_| Ok(Zeroizing::new(value.to_string()))
}

fn no_pin(r: &PinRequest<'_>) -> Result<Zeroizing<String>, KeyError> {
    panic!("no PIN should be asked for {}", r.device)
}

#[test]
fn key_is_made_by_the_tpm_and_bound_to_it() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().expect("dir");
    let key = TpmKey::generate(&config(&tpm, &dir), "laptop tpm", None).expect("generate");
    assert!(key.protection().is_bound_to_tpm(), "{:?}", key.protection());
    let info = key.describe();
    assert_eq!(info.kind, countersign_core::KeyKind::Tpm);
    assert!(info.kind.is_hardware());

    // The saved file holds the TPM's encrypted blob, readable by its owner only, and the
    // same key comes back when it is loaded again.
    let path = config(&tpm, &dir).key_file;
    countersign_keys::files::check_owner_only(&path).expect("owner-only");
    let (label, public) = key_file_public(&path).expect("listing");
    assert_eq!((label.as_str(), &public), ("laptop tpm", &key.public_key()));
    drop(key);
    let again = TpmKey::open(&config(&tpm, &dir), &no_pin).expect("open");
    assert_eq!(again.describe().key_id, info.key_id);
    again.sign(b"after reload").expect("sign");
}

#[test]
fn signature_verifies_with_p256_and_openssl() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().expect("dir");
    let key = TpmKey::generate(&config(&tpm, &dir), "k", None).expect("generate");
    // Enough signatures that some r, s have a leading zero byte to pad.
    for i in 0..64u32 {
        let message = format!("countersign/decision/v1\n{{\"n\":{i}}}");
        let signature = key.sign(message.as_bytes()).expect("sign");
        if i < 4 {
            support::assert_verifies_everywhere(&key.public_key(), message.as_bytes(), &signature);
        } else {
            assert_eq!(
                key.public_key().verify(message.as_bytes(), &signature),
                Ok(())
            );
        }
    }
}

#[test]
fn key_with_an_authorization_value_refuses_the_wrong_one() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(&tpm, &dir);
    let key = TpmKey::generate(&cfg, "k", Some(Zeroizing::new("s3cret".into()))).expect("generate");
    let public = key.public_key();
    drop(key);
    let err = TpmKey::open(&cfg, &pin("wrong")).err().expect("refused");
    assert!(matches!(err, KeyError::WrongPin { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("wrong PIN for TPM key 'k'"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("wrong\""),
        "the value is never echoed"
    );
    let key = TpmKey::open(&cfg, &pin("s3cret")).expect("right value");
    assert_eq!(key.public_key(), public);
    key.sign(b"ok").expect("sign");
}

#[test]
fn unreachable_tpm_and_foreign_key_file_errors_are_clear() {
    let dir = tempfile::tempdir().expect("dir");
    let mut tpm = Swtpm::start();
    let cfg = config(&tpm, &dir);
    TpmKey::generate(&cfg, "k", None).expect("generate");

    // A key blob made by another TPM does not load.
    let other = Swtpm::start();
    let foreign = TpmConfig {
        tcti: other.tcti(),
        key_file: cfg.key_file.clone(),
    };
    let err = TpmKey::open(&foreign, &no_pin).err().expect("foreign");
    assert!(
        err.to_string().contains("was not made by this TPM"),
        "{err}"
    );

    // The TPM goes away.
    tpm.stop();
    let err = TpmKey::open(&cfg, &no_pin).err().expect("gone");
    assert!(matches!(err, KeyError::Device(_)), "{err:?}");
    assert!(err.to_string().contains("cannot reach the TPM"), "{err}");

    let err = TpmKey::open(
        &TpmConfig {
            tcti: "nonsense".into(),
            key_file: cfg.key_file.clone(),
        },
        &no_pin,
    )
    .err()
    .expect("bad tcti");
    assert!(err.to_string().contains("TCTI 'nonsense'"), "{err}");
}

#[test]
fn key_file_is_never_overwritten() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(&tpm, &dir);
    let first = TpmKey::generate(&cfg, "k", None).expect("first");
    let err = TpmKey::generate(&cfg, "k", None).err().expect("refused");
    assert!(err.to_string().contains("never overwritten"), "{err}");
    drop(first);
}

#[test]
fn certification_proves_the_key_is_bound_to_the_tpm_for_this_enrolment_only() {
    use countersign_core::{AttestationError, TpmCertification};
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().expect("dir");
    let key = TpmKey::generate(&config(&tpm, &dir), "k", None).expect("generate");
    let nonce = TpmCertification::nonce(b"enrolment payload");
    let encoded = key.attest(&nonce).expect("certify").expect("a TPM attests");
    let certification = TpmCertification::decode(&encoded).expect("decodes");
    let ak = certification
        .verify(&key.public_key(), &nonce)
        .expect("verifies");
    assert_ne!(
        ak,
        key.describe().key_id,
        "signed by a separate attestation key"
    );

    // Another enrolment's nonce, another key, or an altered statement are refused.
    let other_nonce = TpmCertification::nonce(b"another enrolment");
    assert_eq!(
        certification.verify(&key.public_key(), &other_nonce),
        Err(AttestationError::WrongNonce)
    );
    let other = tempfile::tempdir().expect("dir");
    let other_key = TpmKey::generate(&config(&tpm, &other), "other", None).expect("generate");
    assert_eq!(
        certification.verify(&other_key.public_key(), &nonce),
        Err(AttestationError::WrongKey)
    );
    let mut altered = certification.clone();
    altered.certify_info = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut bytes = b64.decode(&certification.certify_info).expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        b64.encode(bytes)
    };
    assert_eq!(
        altered.verify(&key.public_key(), &nonce),
        Err(AttestationError::BadSignature)
    );
    // The statement about one key cannot be passed off for another key's public area.
    let mut swapped = certification.clone();
    swapped.key_public = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(other_key.tpm_public().expect("public"))
    };
    assert_eq!(
        swapped.verify(&other_key.public_key(), &nonce),
        Err(AttestationError::WrongKey)
    );
}
