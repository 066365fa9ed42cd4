//! An approver's signing key: where it lives, its kind, label and public key (so it can be
//! listed without the device), how to create one, and how to open it — only if the device still
//! holds the recorded key.

use std::path::PathBuf;

use countersign_core::{KeyId, KeyKind, PublicKey};
use countersign_keys::pkcs11::{KeySelector, Pkcs11Config, Pkcs11Key, TokenSelector};
use countersign_keys::tpm::{TpmConfig, TpmKey};
use countersign_keys::{KeyConfig, PinPrompt, Signer, SoftwareKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::KeyProblem;

/// What is kept about a key. The private key stays where it was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Where the key lives (`config` in the console's settings of earlier versions).
    #[serde(alias = "config")]
    pub key: KeyConfig,
    /// What kind of key it is.
    pub kind: KeyKind,
    /// Label for people.
    pub label: String,
    /// The public key, to list the key without the device and to check the device still holds
    /// it.
    pub public_key: PublicKey,
    /// The manufacturer's root the service found vouching for the key's device at enrolment;
    /// `None`: its hardware is only claimed (or it is not enrolled yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_by: Option<String>,
}

impl KeyRecord {
    /// The key's id (SHA-256 of its public key).
    pub fn key_id(&self) -> KeyId {
        self.public_key.key_id()
    }

    /// Opens the key, asking `pin` when the device wants one, and checks the device still
    /// holds the recorded key (a replaced token or TPM is refused, never silently used).
    pub fn open(&self, pin: &dyn PinPrompt) -> Result<Box<dyn Signer>, KeyProblem> {
        open_enrolled(&self.key, &self.key_id(), pin)
    }
}

/// Opens the key at `key` and checks it is the one with id `key_id` (the enrolled or recorded
/// one): the one rule every approver program applies before signing anything.
pub fn open_enrolled(
    key: &KeyConfig,
    key_id: &KeyId,
    pin: &dyn PinPrompt,
) -> Result<Box<dyn Signer>, KeyProblem> {
    let signer = key.open(pin)?;
    if signer.public_key().key_id() != *key_id {
        return Err(KeyProblem::Device(format!(
            "the {} device no longer holds the enrolled key {} (was the token or TPM replaced?)",
            key.backend(),
            key_id.short()
        )));
    }
    Ok(signer)
}

/// Where to create a key.
pub enum NewKey {
    /// On a PKCS#11 token (a YubiKey, smart card or HSM), under `label`.
    Pkcs11 {
        /// The module, e.g. `/usr/lib/x86_64-linux-gnu/libykcs11.so`.
        module: PathBuf,
        /// The token.
        token: TokenSelector,
        /// The key's label (`CKA_LABEL`).
        label: String,
        /// Use the key already on the token under `label` instead of generating one.
        existing: bool,
    },
    /// In a TPM 2.0, its key blob in `key_file`.
    Tpm {
        /// The TPM's TCTI.
        tcti: String,
        /// Where the key blob is written.
        key_file: PathBuf,
        /// The key's label.
        label: String,
        /// An authorization value protecting the key, if any.
        auth: Option<Zeroizing<String>>,
    },
    /// A development key file (never hardware-backed).
    Software {
        /// The key file.
        path: PathBuf,
        /// The key's label.
        label: String,
    },
}

/// Creates the key `new` describes (asking `pin` for a token's PIN) and its record. A token key
/// that the token reports as extractable or not always sensitive is refused: it would not be a
/// hardware key.
pub fn create(
    new: NewKey,
    pin: &dyn PinPrompt,
) -> Result<(KeyRecord, Box<dyn Signer>), KeyProblem> {
    let (config, label, signer): (KeyConfig, String, Box<dyn Signer>) = match new {
        NewKey::Pkcs11 {
            module,
            token,
            label,
            existing,
        } => {
            let config = Pkcs11Config {
                module: module.clone(),
                token: token.clone(),
                key: KeySelector::Label(label.clone()),
            };
            let key = if existing {
                Pkcs11Key::open(&config, pin)?
            } else {
                Pkcs11Key::generate(&config, pin)?
            };
            let protection = key.protection()?;
            if !protection.is_bound_to_token() {
                return Err(KeyProblem::Device(format!(
                    "the token reports the key as extractable or not always sensitive \
                     ({protection:?}); it cannot be used as a hardware key"
                )));
            }
            let (token_label, token_serial) = match token {
                TokenSelector::Label(l) => (Some(l), None),
                TokenSelector::Serial(s) => (None, Some(s)),
            };
            let config = KeyConfig::Pkcs11 {
                module,
                token_label,
                token_serial,
                key_label: None,
                key_id: Some(hex::encode(key.token_id())),
            };
            (config, label, Box::new(key))
        }
        NewKey::Tpm {
            tcti,
            key_file,
            label,
            auth,
        } => {
            let key = TpmKey::generate(
                &TpmConfig {
                    tcti: tcti.clone(),
                    key_file: key_file.clone(),
                },
                &label,
                auth,
            )?;
            (KeyConfig::Tpm { tcti, key_file }, label, Box::new(key))
        }
        NewKey::Software { path, label } => {
            let key = SoftwareKey::generate(&path)?;
            (KeyConfig::Software { path }, label, Box::new(key))
        }
    };
    let record = KeyRecord {
        key: config,
        kind: signer.describe().kind,
        label,
        public_key: signer.public_key(),
        attested_by: None,
    };
    Ok((record, signer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_keys::{KeyError, PinRequest};

    fn no_pin(request: &PinRequest<'_>) -> Result<Zeroizing<String>, KeyError> {
        Err(KeyError::PinCancelled(request.device.to_string()))
    }

    #[test]
    fn a_record_opens_only_the_key_it_recorded() {
        let dir = tempfile::tempdir().expect("dir");
        let (record, signer) = create(
            NewKey::Software {
                path: dir.path().join("a.pem"),
                label: "laptop".into(),
            },
            &no_pin,
        )
        .expect("created");
        assert_eq!(record.public_key, signer.public_key());
        assert_eq!(record.kind, KeyKind::Software);
        assert!(record.open(&no_pin).is_ok());
        // Another key file put where the recorded one was: refused, not used.
        let (_, other) = create(
            NewKey::Software {
                path: dir.path().join("b.pem"),
                label: "other".into(),
            },
            &no_pin,
        )
        .expect("created");
        std::fs::copy(dir.path().join("b.pem"), dir.path().join("a.pem")).expect("swap");
        assert_ne!(other.public_key(), record.public_key);
        assert!(matches!(record.open(&no_pin), Err(KeyProblem::Device(_))));
    }

    #[test]
    fn records_of_the_cli_and_of_earlier_consoles_read_alike() {
        let dir = tempfile::tempdir().expect("dir");
        let (record, _) = create(
            NewKey::Software {
                path: dir.path().join("k.pem"),
                label: "laptop".into(),
            },
            &no_pin,
        )
        .expect("created");
        let cli = serde_json::to_value(&record).expect("json");
        let mut console = cli.clone();
        let key = console
            .as_object_mut()
            .expect("object")
            .remove("key")
            .expect("key");
        console["config"] = key;
        for text in [cli, console] {
            let back: KeyRecord = serde_json::from_value(text).expect("reads");
            assert_eq!(back, record);
        }
    }
}
