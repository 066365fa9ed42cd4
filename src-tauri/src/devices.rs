//! Finding where a new key can live: PKCS#11 modules with their tokens, a TPM, or (for
//! development only) a key file.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Extra PKCS#11 modules to look at, `:`-separated (tests point this at SoftHSM2).
pub const PKCS11_MODULES_ENV: &str = "COUNTERSIGN_PKCS11_MODULES";
/// The TPM's TCTI, when it is not `device:/dev/tpmrm0` (tests point this at a swtpm).
pub const TPM_TCTI_ENV: &str = "COUNTERSIGN_TPM_TCTI";

/// Where the middleware of common tokens installs its module on Linux.
const KNOWN_MODULES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libykcs11.so",
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so",
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/local/lib/libykcs11.so",
    "/opt/homebrew/lib/libykcs11.dylib",
    "/usr/local/lib/opensc-pkcs11.so",
];

/// A place a key can be created, as the first-run screen lists it.
#[derive(utoipa::ToSchema, Clone, Debug, Serialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum Candidate {
    /// A token in a PKCS#11 module.
    Pkcs11 {
        /// The module.
        #[schema(value_type = String)]
        module: PathBuf,
        /// The token's label.
        token_label: String,
        /// Its serial.
        token_serial: String,
        /// Maker and model, for people.
        description: String,
    },
    /// A module that could not be read, and why (shown, so a missing driver is explained).
    Pkcs11Unavailable {
        /// The module.
        #[schema(value_type = String)]
        module: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TPM.
    Tpm {
        /// Its TCTI.
        tcti: String,
    },
    /// A key file: development only.
    Software,
}

/// Everything found on this machine, hardware first.
pub fn detect() -> Vec<Candidate> {
    let mut found = Vec::new();
    for module in modules() {
        match countersign_keys::pkcs11::tokens(&module) {
            Ok(tokens) => {
                // A slot with an uninitialised token (SoftHSM2 always offers one) is not a
                // place for a key until someone initialises it.
                for (_, info) in tokens.into_iter().filter(|(_, i)| i.token_initialized()) {
                    found.push(Candidate::Pkcs11 {
                        module: module.clone(),
                        token_label: info.label().trim_end().to_string(),
                        token_serial: info.serial_number().trim_end().to_string(),
                        description: format!(
                            "{} {}",
                            info.manufacturer_id().trim_end(),
                            info.model().trim_end()
                        ),
                    });
                }
            }
            Err(e) => found.push(Candidate::Pkcs11Unavailable {
                module,
                reason: e.to_string(),
            }),
        }
    }
    if let Some(tcti) = tpm_tcti() {
        found.push(Candidate::Tpm { tcti });
    }
    found.push(Candidate::Software);
    found
}

fn modules() -> Vec<PathBuf> {
    let mut modules: Vec<PathBuf> = std::env::var(PKCS11_MODULES_ENV)
        .map(|v| {
            v.split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    for known in KNOWN_MODULES {
        let path = PathBuf::from(known);
        if path.exists() && !modules.contains(&path) {
            modules.push(path);
        }
    }
    modules
}

fn tpm_tcti() -> Option<String> {
    if let Ok(tcti) = std::env::var(TPM_TCTI_ENV) {
        return Some(tcti);
    }
    Path::new("/dev/tpmrm0")
        .exists()
        .then(|| "device:/dev/tpmrm0".to_string())
}
