//! The vectors' signatures verify with `openssl` alone, through the script the docs show.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn vector_signatures_verify_with_openssl() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("bash")
        .arg(root.join("scripts/verify-vectors-with-openssl.sh"))
        .arg(root.join("tests/vectors/signatures.json"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "openssl check failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.matches("Verified OK").count(), 3, "{stdout}");
}
