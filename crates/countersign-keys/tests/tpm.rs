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

/// The service's software TPM2_MakeCredential against a real TPM: a secret sealed to the
/// swtpm's RSA endorsement key for its attestation key's name comes back out of
/// TPM2_ActivateCredential — and a credential sealed for another AK's name does not.
#[test]
fn a_credential_made_in_software_is_activated_only_by_the_tpm_for_its_attestation_key() {
    use countersign_keys::credential::{RsaEndorsementKey, make_credential, name_of};
    use std::str::FromStr as _;
    use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ak, ek};
    use tss_esapi::attributes::SessionAttributesBuilder;
    use tss_esapi::constants::SessionType;
    use tss_esapi::handles::AuthHandle;
    use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
    use tss_esapi::interface_types::key_bits::RsaKeyBits;
    use tss_esapi::interface_types::session_handles::PolicySession;
    use tss_esapi::structures::{EncryptedSecret, IdObject, Public, SymmetricDefinition};
    use tss_esapi::traits::Marshall as _;
    use tss_esapi::{Context, TctiNameConf};

    let tpm = Swtpm::start();
    let mut ctx =
        Context::new(TctiNameConf::from_str(&tpm.tcti()).expect("tcti")).expect("context");
    let ek_handle = ek::create_ek_object_2(
        &mut ctx,
        AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
        None,
    )
    .expect("EK");
    let (ek_public, _, _) = ctx.read_public(ek_handle).expect("EK public");
    let Public::Rsa {
        unique, parameters, ..
    } = &ek_public
    else {
        panic!("an RSA EK")
    };
    let endorsement = RsaEndorsementKey {
        modulus: unique.value().to_vec(),
        exponent: parameters.exponent().value(),
    };
    let created = ak::create_ak(
        &mut ctx,
        ek_handle,
        HashingAlgorithm::Sha256,
        SignatureSchemeAlgorithm::EcDsa,
        None,
        None,
    )
    .expect("AK");
    let ak_handle = ak::load_ak(
        &mut ctx,
        ek_handle,
        None,
        created.out_private,
        created.out_public.clone(),
    )
    .expect("load AK");
    let (_, ak_name, _) = ctx.read_public(ak_handle).expect("AK public");
    // The verifier computes the name from the AK's public area itself.
    let computed = name_of(&created.out_public.marshall().expect("marshall"));
    assert_eq!(computed, ak_name.value());

    let activate = |ctx: &mut Context, name: &[u8]| {
        let credential = make_credential(&endorsement, name, b"countersign-nonce-0123456789abcd")
            .expect("sealed in software");
        let (attributes, mask) = SessionAttributesBuilder::new().build();
        let hmac = ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Hmac,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .expect("session")
            .expect("session");
        ctx.tr_sess_set_attributes(hmac, attributes, mask)
            .expect("attributes");
        let policy = ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .expect("session")
            .expect("session");
        ctx.tr_sess_set_attributes(policy, attributes, mask)
            .expect("attributes");
        // The EK's policy: the endorsement hierarchy's authorization (empty here).
        ctx.execute_with_session(Some(hmac), |ctx| {
            ctx.policy_secret(
                PolicySession::try_from(policy).expect("policy session"),
                AuthHandle::Endorsement,
                Default::default(),
                Default::default(),
                Default::default(),
                None,
            )
        })
        .expect("policy secret");
        ctx.set_sessions((Some(hmac), Some(policy), None));
        let result = ctx.activate_credential(
            ak_handle,
            ek_handle,
            IdObject::try_from(credential.id_object).expect("id object"),
            EncryptedSecret::try_from(credential.encrypted_secret).expect("secret"),
        );
        ctx.clear_sessions();
        // A TPM holds only a few sessions at once: give these back.
        for session in [hmac, policy] {
            ctx.flush_context(tss_esapi::handles::SessionHandle::from(session).into())
                .expect("flush session");
        }
        result
    };
    let recovered = activate(&mut ctx, &computed).expect("activated by the TPM");
    assert_eq!(recovered.value(), b"countersign-nonce-0123456789abcd");
    // Sealed for another AK (a key the TPM does not hold under this name): refused.
    let mut other = computed.clone();
    other[5] ^= 0x01;
    assert!(activate(&mut ctx, &other).is_err());
}

/// The EK certificate a TPM was manufactured with chains to the root that issued it, and the
/// key it certifies is the EK the TPM uses; a TPM from another authority does not chain to
/// this one's root, and a changed certificate does not verify.
#[test]
fn an_ek_certificate_chains_to_its_manufacturers_root_and_no_other() {
    use countersign_keys::endorsement::{EndorsementError, certificates, verify};
    use std::str::FromStr as _;
    use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ek, nv};
    use tss_esapi::handles::NvIndexTpmHandle;
    use tss_esapi::interface_types::key_bits::RsaKeyBits;
    use tss_esapi::interface_types::resource_handles::NvAuth;
    use tss_esapi::interface_types::session_handles::AuthSession;
    use tss_esapi::structures::Public;
    use tss_esapi::{Context, TctiNameConf};

    fn ek_certificate(tpm: &Swtpm) -> (Vec<u8>, Vec<u8>) {
        let mut ctx =
            Context::new(TctiNameConf::from_str(&tpm.tcti()).expect("tcti")).expect("context");
        let index = NvIndexTpmHandle::new(0x01c0_0002).expect("EK certificate index");
        let der = ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                nv::read_full(ctx, NvAuth::Owner, index)
            })
            .expect("EK certificate in NV");
        let ek_handle = ek::create_ek_object_2(
            &mut ctx,
            AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            None,
        )
        .expect("EK");
        let (public, _, _) = ctx.read_public(ek_handle).expect("EK public");
        let Public::Rsa { unique, .. } = public else {
            panic!("an RSA EK")
        };
        (der, unique.value().to_vec())
    }

    let (tpm, ca) = Swtpm::start_with_ek_certificate();
    let (der, modulus) = ek_certificate(&tpm);
    // After manufacture: the certificates are valid from the second they were issued.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let roots = certificates(&std::fs::read(&ca.root).expect("root")).expect("root pem");
    let intermediates =
        certificates(&std::fs::read(&ca.intermediate).expect("intermediate")).expect("pem");
    let verified = verify(&der, &intermediates, &roots, now).expect("chains to its root");
    assert_eq!(
        verified.key.modulus, modulus,
        "the certificate is the TPM's own EK"
    );
    assert!(verified.root.contains("swtpm-localca"), "{}", verified.root);

    // Without the intermediate, or at a time outside the certificates' validity: refused.
    assert!(matches!(
        verify(&der, &[], &roots, now),
        Err(EndorsementError::Untrusted(_))
    ));
    assert!(matches!(
        verify(&der, &intermediates, &roots, 0),
        Err(EndorsementError::Expired(_))
    ));
    // A changed byte in the signed part.
    let mut changed = der.clone();
    let at = changed.len() / 2;
    changed[at] ^= 0x01;
    assert!(verify(&changed, &intermediates, &roots, now).is_err());

    // Another manufacturer's TPM does not chain to this root.
    let (other, _other_ca) = Swtpm::start_with_ek_certificate();
    let (other_der, _) = ek_certificate(&other);
    assert!(verify(&other_der, &intermediates, &roots, now).is_err());
}

/// A key's TPM names its manufacturer's EK certificate and its attestation key; a credential
/// sealed in software to that certificate's key for that AK comes back through the key's own
/// TPM, and is the AK that certifies the key. A TPM without an EK certificate has nothing to
/// prove and says so.
#[test]
fn a_tpm_key_proves_its_attestation_key_lives_in_the_certified_tpm() {
    use countersign_core::TpmCertification;
    use countersign_core::tpm_attestation::{attestation_key_from_area, name_of};
    use countersign_keys::credential::make_credential;
    use countersign_keys::endorsement::{certificates, verify};

    let (tpm, ca) = Swtpm::start_with_ek_certificate();
    let dir = tempfile::tempdir().expect("dir");
    let key = TpmKey::generate(&config(&tpm, &dir), "laptop tpm", None).expect("generate");
    let endorsement = key
        .endorsement()
        .expect("read")
        .expect("this TPM has an EK certificate");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let roots = certificates(&std::fs::read(&ca.root).expect("root")).expect("pem");
    let intermediates =
        certificates(&std::fs::read(&ca.intermediate).expect("intermediate")).expect("pem");
    let verified =
        verify(&endorsement.ek_certificate, &intermediates, &roots, now).expect("chains");
    let ak = attestation_key_from_area(&endorsement.attestation_key_public).expect("an AK");
    let certification = TpmCertification::decode(
        &key.attest(&[7; 32])
            .expect("certify")
            .expect("a TPM attests"),
    )
    .expect("decodes");
    assert_eq!(
        certification.attestation_key, ak,
        "the AK that certifies the key"
    );

    let name = name_of(&endorsement.attestation_key_public);
    let sealed = make_credential(&verified.key, &name, &[9; 32]).expect("sealed");
    let secret = key.activate_credential(&sealed).expect("activated");
    assert_eq!(secret.as_slice(), &[9; 32]);
    // Sealed for another name: the TPM refuses, and keeps working afterwards.
    let mut other = name.clone();
    other[4] ^= 1;
    let foreign = make_credential(&verified.key, &other, &[9; 32]).expect("sealed");
    assert!(key.activate_credential(&foreign).is_err());
    assert!(
        key.activate_credential(&sealed).is_ok(),
        "sessions given back"
    );
    key.sign(b"still signs").expect("sign");

    // With two keys loaded (a console replacing its key) and an authorization value on the
    // key, activation still has room, and the key still signs with its value afterwards.
    drop(key);
    let dir = tempfile::tempdir().expect("dir");
    let busy = TpmKey::generate(&config(&tpm, &dir), "old key", None).expect("generate");
    let other_dir = tempfile::tempdir().expect("dir");
    let guarded = TpmKey::generate(
        &config(&tpm, &other_dir),
        "guarded",
        Some(Zeroizing::new("s3cret".into())),
    )
    .expect("generate");
    let secret = guarded.activate_credential(&sealed).expect("activated");
    assert_eq!(secret.as_slice(), &[9; 32]);
    guarded
        .sign(b"after activation")
        .expect("the value still applies");
    busy.sign(b"still here").expect("sign");

    let plain = Swtpm::start();
    let dir = tempfile::tempdir().expect("dir");
    let key = TpmKey::generate(&config(&plain, &dir), "vm tpm", None).expect("generate");
    assert_eq!(key.endorsement().expect("no error"), None);
}
