//! Where an approver's key lives, as saved in their profile, and opening it. The CLI and the
//! console both keep one of these instead of a key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{KeyError, PinPrompt, Signer, SoftwareKey};

/// A key by backend; serialised with a `backend` tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyConfig {
    /// A development key file (PKCS#8 PEM, owner-only).
    Software {
        /// The key file.
        path: PathBuf,
    },
    /// A key on a PKCS#11 token.
    Pkcs11 {
        /// The module (shared library).
        module: PathBuf,
        /// The token's label, or
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_label: Option<String>,
        /// the token's serial number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_serial: Option<String>,
        /// The key's label, or
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_label: Option<String>,
        /// the key's id, hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
    },
    /// A key held by a TPM 2.0.
    Tpm {
        /// The TCTI, e.g. `device:/dev/tpmrm0`.
        tcti: String,
        /// The TPM's key blob file.
        key_file: PathBuf,
    },
}

impl KeyConfig {
    /// The backend's name, as `--backend` spells it.
    pub fn backend(&self) -> &'static str {
        match self {
            KeyConfig::Software { .. } => "software",
            KeyConfig::Pkcs11 { .. } => "pkcs11",
            KeyConfig::Tpm { .. } => "tpm",
        }
    }

    /// Opens the key, asking `pin` when the device needs a PIN or authorization value.
    pub fn open(&self, pin: &dyn PinPrompt) -> Result<Box<dyn Signer>, KeyError> {
        match self {
            KeyConfig::Software { path } => Ok(Box::new(SoftwareKey::load(path)?)),
            #[cfg(feature = "pkcs11")]
            KeyConfig::Pkcs11 { .. } => Ok(Box::new(crate::pkcs11::Pkcs11Key::open(
                &self.pkcs11()?,
                pin,
            )?)),
            #[cfg(feature = "tpm")]
            KeyConfig::Tpm { tcti, key_file } => Ok(Box::new(crate::tpm::TpmKey::open(
                &crate::tpm::TpmConfig {
                    tcti: tcti.clone(),
                    key_file: key_file.clone(),
                },
                pin,
            )?)),
            #[allow(unreachable_patterns)]
            other => {
                let _ = pin;
                Err(KeyError::Device(format!(
                    "this build has no {} backend",
                    other.backend()
                )))
            }
        }
    }

    /// The PKCS#11 selection, checked: exactly one of label/serial for the token and one of
    /// label/id for the key.
    #[cfg(feature = "pkcs11")]
    pub fn pkcs11(&self) -> Result<crate::pkcs11::Pkcs11Config, KeyError> {
        use crate::pkcs11::{KeySelector, Pkcs11Config, TokenSelector};
        let KeyConfig::Pkcs11 {
            module,
            token_label,
            token_serial,
            key_label,
            key_id,
        } = self
        else {
            return Err(KeyError::Format("not a PKCS#11 key".into()));
        };
        let token = match (token_label, token_serial) {
            (Some(label), None) => TokenSelector::Label(label.clone()),
            (None, Some(serial)) => TokenSelector::Serial(serial.clone()),
            _ => {
                return Err(KeyError::Format(
                    "give the token's label or its serial, not both".into(),
                ));
            }
        };
        let key = match (key_label, key_id) {
            (Some(label), None) => KeySelector::Label(label.clone()),
            (None, Some(id)) => KeySelector::Id(
                hex::decode(id).map_err(|e| KeyError::Format(format!("key id '{id}': {e}")))?,
            ),
            _ => {
                return Err(KeyError::Format(
                    "give the key's label or its id, not both".into(),
                ));
            }
        };
        Ok(Pkcs11Config {
            module: module.clone(),
            token,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_with_a_backend_tag_and_rejects_unknown_fields() {
        let config = KeyConfig::Pkcs11 {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: Some("yubikey".into()),
            token_serial: None,
            key_label: Some("approver".into()),
            key_id: None,
        };
        let json = serde_json::to_string(&config).expect("json");
        assert!(json.starts_with(r#"{"backend":"pkcs11","#), "{json}");
        assert_eq!(
            serde_json::from_str::<KeyConfig>(&json).expect("back"),
            config
        );
        let extra = json.replace('{', r#"{"pin":"1234","#);
        assert!(serde_json::from_str::<KeyConfig>(&extra).is_err());
    }

    #[cfg(feature = "pkcs11")]
    #[test]
    fn ambiguous_pkcs11_selection_is_refused() {
        let config = KeyConfig::Pkcs11 {
            module: "/m.so".into(),
            token_label: Some("a".into()),
            token_serial: Some("b".into()),
            key_label: Some("k".into()),
            key_id: None,
        };
        assert!(config.pkcs11().is_err());
    }
}
