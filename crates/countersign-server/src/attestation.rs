//! The manufacturers' roots this deployment trusts to vouch for approvers' devices: TPM
//! endorsement key (EK) certificate roots with their intermediates, and PIV attestation roots
//! (Yubico's). Loaded once at start from PEM files named in `[attestation]`; a file that does not
//! read or parse stops the start rather than trusting fewer roots than the operator meant.

use std::path::PathBuf;

use serde::Deserialize;

/// `[attestation]` in the service's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationConfig {
    /// PEM files with TPM manufacturers' root certificates.
    #[serde(default)]
    pub tpm_roots: Vec<PathBuf>,
    /// PEM files with their intermediate certificates (TPMs carry only their EK certificate).
    #[serde(default)]
    pub tpm_intermediates: Vec<PathBuf>,
    /// PEM files with PIV attestation roots (e.g. Yubico's PIV root CA).
    #[serde(default)]
    pub piv_roots: Vec<PathBuf>,
}

/// The certificates `[attestation]` names, DER.
#[derive(Clone, Debug, Default)]
pub struct TrustAnchors {
    /// TPM manufacturers' roots.
    pub tpm_roots: Vec<Vec<u8>>,
    /// Their intermediates.
    pub tpm_intermediates: Vec<Vec<u8>>,
    /// PIV attestation roots.
    pub piv_roots: Vec<Vec<u8>>,
}

impl TrustAnchors {
    /// Reads every file `config` names; the first that fails is the error.
    pub fn load(config: &AttestationConfig) -> Result<Self, String> {
        let read = |paths: &[PathBuf]| -> Result<Vec<Vec<u8>>, String> {
            let mut all = Vec::new();
            for path in paths {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("[attestation] {}: {e}", path.display()))?;
                let certificates = countersign_keys::endorsement::certificates(&bytes)
                    .map_err(|e| format!("[attestation] {}: {e}", path.display()))?;
                if certificates.is_empty() {
                    return Err(format!(
                        "[attestation] {}: no certificate in it",
                        path.display()
                    ));
                }
                all.extend(certificates);
            }
            Ok(all)
        };
        Ok(Self {
            tpm_roots: read(&config.tpm_roots)?,
            tpm_intermediates: read(&config.tpm_intermediates)?,
            piv_roots: read(&config.piv_roots)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_root_file_stops_the_start() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = AttestationConfig {
            tpm_roots: vec![dir.path().join("nope.pem")],
            ..AttestationConfig::default()
        };
        assert!(
            TrustAnchors::load(&missing)
                .expect_err("missing")
                .contains("nope.pem")
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "-----BEGIN NOTHING-----\n").expect("write");
        let config = AttestationConfig {
            piv_roots: vec![empty],
            ..AttestationConfig::default()
        };
        assert!(TrustAnchors::load(&config).is_err());
        assert!(
            TrustAnchors::load(&AttestationConfig::default())
                .expect("none configured")
                .tpm_roots
                .is_empty()
        );
    }
}
