//! The PKCS#11 backend against a real SoftHSM2 token, one fresh token per test (each test runs
//! in its own child process; see `SoftHsm::isolated`).
#![cfg(feature = "pkcs11")]

mod support;

use countersign_keys::pkcs11::{KeySelector, Pkcs11Config, Pkcs11Key, TokenSelector};
use countersign_keys::{KeyError, PinRequest, Signer};
use countersign_testdevices::SoftHsm;
use zeroize::Zeroizing;

fn config(token: &SoftHsm, key: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: token.module().to_path_buf(),
        token: TokenSelector::Label(SoftHsm::LABEL.into()),
        key: KeySelector::Label(key.into()),
    }
}

fn pin(value: &'static str) -> impl Fn(&PinRequest<'_>) -> Result<Zeroizing<String>, KeyError> {
    move |_| Ok(Zeroizing::new(value.to_string()))
}

#[test]
fn key_generated_on_the_token_is_sensitive_and_not_extractable() {
    SoftHsm::isolated(
        "key_generated_on_the_token_is_sensitive_and_not_extractable",
        |token| {
            let key = Pkcs11Key::generate(&config(token, "approver"), &pin(SoftHsm::PIN))
                .expect("generate");
            let protection = key.protection().expect("attributes");
            assert!(protection.sensitive, "{protection:?}");
            assert!(!protection.extractable, "{protection:?}");
            assert!(protection.is_bound_to_token(), "{protection:?}");
            assert_eq!(key.try_read_private_value().expect("asked"), None);
            let info = key.describe();
            assert_eq!(info.kind, countersign_core::KeyKind::Pkcs11);
            assert!(info.kind.is_hardware());
            drop(key);

            let again =
                Pkcs11Key::open(&config(token, "approver"), &pin(SoftHsm::PIN)).expect("open");
            assert_eq!(again.describe().key_id, info.key_id, "same key reopened");
        },
    );
}

#[test]
fn signature_verifies_with_p256_and_openssl() {
    SoftHsm::isolated("signature_verifies_with_p256_and_openssl", |token| {
        let key =
            Pkcs11Key::generate(&config(token, "signer"), &pin(SoftHsm::PIN)).expect("generate");
        for message in [&b"countersign/decision/v1\n{}"[..], b"", &[0u8; 4096]] {
            let signature = key.sign(message).expect("sign");
            support::assert_verifies_everywhere(&key.public_key(), message, &signature);
        }
    });
}

#[test]
fn wrong_pin_fails_clearly_and_does_not_lock_the_token() {
    SoftHsm::isolated(
        "wrong_pin_fails_clearly_and_does_not_lock_the_token",
        |token| {
            Pkcs11Key::generate(&config(token, "k"), &pin(SoftHsm::PIN)).expect("generate");
            let err = Pkcs11Key::open(&config(token, "k"), &pin("9999"))
                .err()
                .expect("wrong PIN refused");
            assert!(matches!(err, KeyError::WrongPin { .. }), "{err:?}");
            assert!(
                err.to_string()
                    .starts_with(&format!("wrong PIN for token '{}'", SoftHsm::LABEL)),
                "{err}"
            );
            assert!(!err.to_string().contains("9999"), "the PIN is never echoed");
            // One wrong attempt, then the right PIN still works: the token is not locked.
            let key = Pkcs11Key::open(&config(token, "k"), &pin(SoftHsm::PIN)).expect("right PIN");
            key.sign(b"still usable").expect("sign");
        },
    );
}

#[test]
fn cancelled_pin_prompt_stops_before_login() {
    SoftHsm::isolated("cancelled_pin_prompt_stops_before_login", |token| {
        let cancel = |r: &PinRequest<'_>| Err(KeyError::PinCancelled(r.device.to_string()));
        let err = Pkcs11Key::generate(&config(token, "k"), &cancel)
            .err()
            .expect("cancelled");
        assert!(matches!(err, KeyError::PinCancelled(_)), "{err:?}");
    });
}

#[test]
fn missing_module_token_or_key_errors_are_clear() {
    SoftHsm::isolated("missing_module_token_or_key_errors_are_clear", |token| {
        let mut no_module = config(token, "k");
        no_module.module = "/usr/lib/no-such-pkcs11.so".into();
        let err = Pkcs11Key::open(&no_module, &pin(SoftHsm::PIN))
            .err()
            .expect("no module");
        assert!(
            err.to_string()
                .contains("PKCS#11 module /usr/lib/no-such-pkcs11.so does not exist"),
            "{err}"
        );

        let mut unplugged = config(token, "k");
        unplugged.token = TokenSelector::Label("yubikey".into());
        let err = Pkcs11Key::open(&unplugged, &pin(SoftHsm::PIN))
            .err()
            .expect("no token");
        let text = err.to_string();
        assert!(text.contains("no token labelled 'yubikey'"), "{text}");
        assert!(text.contains("is it plugged in?"), "{text}");
        assert!(text.contains(&format!("'{}'", SoftHsm::LABEL)), "{text}");

        let err = Pkcs11Key::open(&config(token, "never-made"), &pin(SoftHsm::PIN))
            .err()
            .expect("no key");
        assert!(matches!(err, KeyError::NotFound(_)), "{err:?}");
        assert!(err.to_string().contains("'never-made'"), "{err}");
    });
}

#[test]
fn existing_label_is_never_overwritten() {
    SoftHsm::isolated("existing_label_is_never_overwritten", |token| {
        let first = Pkcs11Key::generate(&config(token, "k"), &pin(SoftHsm::PIN)).expect("first");
        let err = Pkcs11Key::generate(&config(token, "k"), &pin(SoftHsm::PIN))
            .err()
            .expect("second refused");
        assert!(err.to_string().contains("already exists"), "{err}");
        let again = Pkcs11Key::open(&config(token, "k"), &pin(SoftHsm::PIN)).expect("open");
        assert_eq!(again.public_key(), first.public_key());
    });
}

#[test]
fn key_selected_by_id_and_token_by_serial_is_the_same_key() {
    SoftHsm::isolated(
        "key_selected_by_id_and_token_by_serial_is_the_same_key",
        |token| {
            let key =
                Pkcs11Key::generate(&config(token, "k"), &pin(SoftHsm::PIN)).expect("generate");
            let serial = countersign_keys::pkcs11::tokens(token.module())
                .expect("tokens")
                .into_iter()
                .find(|(_, info)| info.label().trim_end() == SoftHsm::LABEL)
                .map(|(_, info)| info.serial_number().trim_end().to_string())
                .expect("the test token is listed");
            let mut by_id = config(token, "k");
            by_id.token = TokenSelector::Serial(serial);
            by_id.key = KeySelector::Id(key.token_id().to_vec());
            let same = Pkcs11Key::open(&by_id, &pin(SoftHsm::PIN)).expect("open by id");
            assert_eq!(same.public_key(), key.public_key());
        },
    );
}

#[test]
fn token_removed_while_open_is_reported_not_signed_around() {
    SoftHsm::isolated(
        "token_removed_while_open_is_reported_not_signed_around",
        |token| {
            let key =
                Pkcs11Key::generate(&config(token, "k"), &pin(SoftHsm::PIN)).expect("generate");
            std::fs::remove_dir_all(token.token_dir()).expect("pull the token");
            std::fs::create_dir(token.token_dir()).expect("empty reader");
            let err = key.sign(b"after removal").expect_err("nothing signed");
            assert!(matches!(err, KeyError::Device(_)), "{err:?}");
            assert!(err.to_string().contains("was the token removed"), "{err}");
            let err = Pkcs11Key::open(&config(token, "k"), &pin(SoftHsm::PIN))
                .err()
                .expect("gone");
            assert!(
                err.to_string()
                    .contains("no token labelled 'countersign-test'")
                    && err.to_string().contains("is it plugged in?"),
                "{err}"
            );
        },
    );
}
