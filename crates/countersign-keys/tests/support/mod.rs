//! Checks shared by the backend tests: a signature must verify with both P-256 stacks and
//! with openssl, an implementation that shares no code with ours.

use std::process::Command;

use countersign_core::{PublicKey, Signature};

/// Verifies with ring (the service's verifier), with `p256`, and with `openssl dgst`.
pub fn assert_verifies_everywhere(public: &PublicKey, message: &[u8], signature: &Signature) {
    assert_eq!(public.verify(message, signature), Ok(()), "ring");
    assert_eq!(public.verify_with_p256(message, signature), Ok(()), "p256");
    assert!(openssl_verifies(public, message, signature), "openssl");
    let mut changed = message.to_vec();
    changed.push(b'!');
    assert!(
        !openssl_verifies(public, &changed, signature),
        "openssl must reject the signature over a changed message"
    );
}

fn openssl_verifies(public: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("key.pem");
    let msg = dir.path().join("message");
    let sig = dir.path().join("sig.der");
    std::fs::write(&key, public.to_pem()).expect("key");
    std::fs::write(&msg, message).expect("message");
    std::fs::write(&sig, signature.to_der()).expect("signature");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&key)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg)
        .output()
        .expect("openssl runs");
    let said = String::from_utf8_lossy(&out.stdout);
    match (out.status.success(), said.trim()) {
        (true, "Verified OK") => true,
        (false, "Verification failure") => false,
        _ => panic!(
            "unexpected openssl answer: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
