//! A real YubiKey's PIV attestation (published material, `tests/data/yubikey-piv/README.md`)
//! checked against Yubico's PIV root: the slot 9c key's attestation chains through the device's
//! slot f9 certificate, and says which device made it; a changed certificate, another root, or
//! the attestation without its device certificate are refused.

use countersign_keys::endorsement::{certificates, verify_piv_attestation};

fn data(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/yubikey-piv")
        .join(name);
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    certificates(&pem).expect("pem").remove(0)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

#[test]
fn a_yubikey_attestation_chains_to_yubicos_root_and_names_its_device() {
    let root = data("yubico-piv-root-ca.pem");
    let device = data("slot-f9-device.pem");
    let attestation = data("slot-9c-attestation.pem");
    let verified =
        verify_piv_attestation(&attestation, &device, std::slice::from_ref(&root), now())
            .expect("verifies");
    assert_eq!(verified.root, "CN=Yubico PIV Root CA Serial 263751");
    assert_eq!(verified.serial, Some(25_515_137));
    assert_eq!(verified.firmware.as_deref(), Some("5.4.3"));
    assert!(!verified.public_key.is_empty());

    // A changed byte in the attestation, or the device certificate missing: refused.
    let mut changed = attestation.clone();
    let at = changed.len() / 2;
    changed[at] ^= 0x01;
    assert!(verify_piv_attestation(&changed, &device, std::slice::from_ref(&root), now()).is_err());
    assert!(
        verify_piv_attestation(
            &attestation,
            &attestation,
            std::slice::from_ref(&root),
            now()
        )
        .is_err()
    );
    // Trusting only something that is not Yubico's root: the chain ends nowhere trusted.
    assert!(
        verify_piv_attestation(
            &attestation,
            &device,
            std::slice::from_ref(&attestation),
            now()
        )
        .is_err()
    );
}
