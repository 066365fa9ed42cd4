//! Keys on a PKCS#11 token: YubiKey (ykcs11 or OpenSC), smart cards, HSMs; SoftHSM2 in tests.
//! The key pair is generated on the token as sensitive and non-extractable; only the public
//! key is ever read back. Signing hashes in Rust and asks the token for raw ECDSA (`CKM_ECDSA`),
//! because not every token implements `CKM_ECDSA_SHA256`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use countersign_core::{KeyKind, PublicKey, Signature};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;

use crate::{KeyError, KeyInfo, PinPrompt, PinRequest, Signer, sha256};

/// DER of the prime256v1 (P-256) curve OID, the value of `CKA_EC_PARAMS`.
const P256_EC_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Which token to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token's label (`CKA_LABEL` of the token, as `softhsm2-util --show-slots` prints).
    Label(String),
    /// The token's serial number.
    Serial(String),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Label(label) => write!(f, "token labelled '{label}'"),
            TokenSelector::Serial(serial) => write!(f, "token with serial '{serial}'"),
        }
    }
}

/// Which key on the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySelector {
    /// The key's `CKA_LABEL`.
    Label(String),
    /// The key's `CKA_ID`.
    Id(Vec<u8>),
}

impl fmt::Display for KeySelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySelector::Label(label) => write!(f, "key labelled '{label}'"),
            KeySelector::Id(id) => write!(f, "key with id {}", hex::encode(id)),
        }
    }
}

/// Where a PKCS#11 key lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Config {
    /// The module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token in that module.
    pub token: TokenSelector,
    /// The key on that token.
    pub key: KeySelector,
}

/// How the token protects a private key, read back from the token itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyProtection {
    /// `CKA_SENSITIVE`: the private value is never revealed in the clear.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`: the key may be wrapped out of the token.
    pub extractable: bool,
    /// `CKA_NEVER_EXTRACTABLE`: the key has never been extractable.
    pub never_extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`: the key has always been sensitive.
    pub always_sensitive: bool,
}

impl KeyProtection {
    /// True when the private key cannot leave the token and never could.
    pub fn is_bound_to_token(&self) -> bool {
        self.sensitive && !self.extractable && self.never_extractable && self.always_sensitive
    }
}

/// A P-256 key on a PKCS#11 token, with a logged-in session.
pub struct Pkcs11Key {
    session: Mutex<Session>,
    private: ObjectHandle,
    id: Vec<u8>,
    public: PublicKey,
    token_label: String,
    key_label: String,
}

impl Pkcs11Key {
    /// Generates a key pair on the token, labelled as `config.key` says (a label is required),
    /// sensitive and non-extractable. Refuses when a key with that label already exists.
    pub fn generate(config: &Pkcs11Config, pin: &dyn PinPrompt) -> Result<Self, KeyError> {
        let KeySelector::Label(label) = &config.key else {
            return Err(KeyError::Format(
                "a new PKCS#11 key needs a label, not an id".into(),
            ));
        };
        let (session, token_label) = open_session(config, pin)?;
        if !find(&session, ObjectClass::PRIVATE_KEY, &config.key)?.is_empty() {
            return Err(KeyError::Io(format!(
                "{} already exists on {}; use it instead of generating one",
                config.key, config.token
            )));
        }
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        let common = |class: ObjectClass| {
            vec![
                Attribute::Class(class),
                Attribute::KeyType(KeyType::EC),
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
            ]
        };
        let mut public_template = common(ObjectClass::PUBLIC_KEY);
        public_template.extend([
            Attribute::EcParams(P256_EC_PARAMS.to_vec()),
            Attribute::Verify(true),
            Attribute::Private(false),
        ]);
        let mut private_template = common(ObjectClass::PRIVATE_KEY);
        private_template.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
        ]);
        let (public_handle, private) = session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(|e| device_error(&token_label, "generating a P-256 key", e))?;
        let public = read_public(&session, public_handle, &token_label)?;
        Ok(Self {
            session: Mutex::new(session),
            private,
            id: id.to_vec(),
            public,
            token_label,
            key_label: label.clone(),
        })
    }

    /// Opens an existing key by label or id.
    pub fn open(config: &Pkcs11Config, pin: &dyn PinPrompt) -> Result<Self, KeyError> {
        let (session, token_label) = open_session(config, pin)?;
        let private = match find(&session, ObjectClass::PRIVATE_KEY, &config.key)?.as_slice() {
            [one] => *one,
            [] => {
                return Err(KeyError::NotFound(format!(
                    "no private {} on {}",
                    config.key, config.token
                )));
            }
            _ => {
                return Err(KeyError::NotFound(format!(
                    "several private keys match {} on {}; select it by id",
                    config.key, config.token
                )));
            }
        };
        let attrs = session
            .get_attributes(private, &[AttributeType::Id, AttributeType::Label])
            .map_err(|e| device_error(&token_label, "reading the key", e))?;
        let mut id = None;
        let mut key_label = config.key.to_string();
        for attr in attrs {
            match attr {
                Attribute::Id(value) => id = Some(value),
                Attribute::Label(value) => key_label = String::from_utf8_lossy(&value).into(),
                _ => {}
            }
        }
        // The public half is found through the shared CKA_ID: private EC objects need not
        // carry the point.
        let id = id.ok_or_else(|| {
            KeyError::NotFound(format!(
                "{} has no CKA_ID to find its public key",
                config.key
            ))
        })?;
        let public_handle = find(
            &session,
            ObjectClass::PUBLIC_KEY,
            &KeySelector::Id(id.clone()),
        )?
        .into_iter()
        .next()
        .ok_or_else(|| {
            KeyError::NotFound(format!(
                "the public key of {} is not on {}",
                config.key, config.token
            ))
        })?;
        let public = read_public(&session, public_handle, &token_label)?;
        Ok(Self {
            session: Mutex::new(session),
            private,
            id,
            public,
            token_label,
            key_label,
        })
    }

    /// The key's `CKA_ID` on the token.
    pub fn token_id(&self) -> &[u8] {
        &self.id
    }

    /// Reads the private key's protection attributes back from the token.
    pub fn protection(&self) -> Result<KeyProtection, KeyError> {
        let session = self.lock()?;
        let attrs = session
            .get_attributes(
                self.private,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                ],
            )
            .map_err(|e| device_error(&self.token_label, "reading key attributes", e))?;
        // An attribute the token does not report counts as the unsafe value.
        let mut protection = KeyProtection {
            sensitive: false,
            extractable: true,
            never_extractable: false,
            always_sensitive: false,
        };
        for attr in attrs {
            match attr {
                Attribute::Sensitive(v) => protection.sensitive = v,
                Attribute::Extractable(v) => protection.extractable = v,
                Attribute::NeverExtractable(v) => protection.never_extractable = v,
                Attribute::AlwaysSensitive(v) => protection.always_sensitive = v,
                _ => {}
            }
        }
        Ok(protection)
    }

    /// Tries to read the private value (`CKA_VALUE`); a correct token gives nothing back.
    pub fn try_read_private_value(&self) -> Result<Option<Vec<u8>>, KeyError> {
        let session = self.lock()?;
        match session.get_attributes(self.private, &[AttributeType::Value]) {
            Ok(attrs) => Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })),
            Err(CkError::Pkcs11(RvError::AttributeSensitive, _)) => Ok(None),
            Err(e) => Err(device_error(&self.token_label, "reading CKA_VALUE", e)),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Session>, KeyError> {
        self.session
            .lock()
            .map_err(|_| KeyError::Device("the PKCS#11 session lock is poisoned".into()))
    }
}

impl Signer for Pkcs11Key {
    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn describe(&self) -> KeyInfo {
        KeyInfo {
            kind: KeyKind::Pkcs11,
            label: format!("{} on token '{}'", self.key_label, self.token_label),
            key_id: self.public.key_id(),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Signature, KeyError> {
        let digest = sha256(message);
        let raw = self
            .lock()?
            .sign(&Mechanism::Ecdsa, self.private, &digest)
            .map_err(|e| device_error(&self.token_label, "signing", e))?;
        Signature::from_raw(&raw).map_err(|e| {
            KeyError::Sign(format!(
                "token '{}' returned {} bytes, not a raw P-256 signature: {e}",
                self.token_label,
                raw.len()
            ))
        })
    }
}

/// Lists the tokens a module offers, for error messages and `keys list`.
pub fn tokens(module: &Path) -> Result<Vec<(Slot, TokenInfo)>, KeyError> {
    let pkcs11 = load(module)?;
    let slots = pkcs11.get_slots_with_token().map_err(|e| {
        KeyError::Device(format!("{}: listing slots failed: {e}", module.display()))
    })?;
    // A token that cannot be read is being pulled out (SoftHSM2 says CKR_GENERAL_ERROR when
    // its files vanish): it is not there, and the caller says which tokens are.
    Ok(slots
        .into_iter()
        .filter_map(|slot| pkcs11.get_token_info(slot).ok().map(|info| (slot, info)))
        .collect())
}

fn load(module: &Path) -> Result<Pkcs11, KeyError> {
    if !module.exists() {
        return Err(KeyError::Device(format!(
            "PKCS#11 module {} does not exist; install the token's middleware or pass its path",
            module.display()
        )));
    }
    let pkcs11 = Pkcs11::new(module).map_err(|e| {
        KeyError::Device(format!(
            "cannot load PKCS#11 module {}: {e}",
            module.display()
        ))
    })?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // The module is process-wide: a second key from the same module finds it initialised.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(pkcs11),
        Err(e) => Err(KeyError::Device(format!(
            "PKCS#11 module {} failed to initialise: {e}",
            module.display()
        ))),
    }
}

fn open_session(config: &Pkcs11Config, pin: &dyn PinPrompt) -> Result<(Session, String), KeyError> {
    let module = &config.module;
    let found = tokens(module)?;
    let matches = |info: &TokenInfo| match &config.token {
        TokenSelector::Label(label) => info.label().trim_end() == label,
        TokenSelector::Serial(serial) => info.serial_number().trim_end() == serial,
    };
    let Some((slot, info)) = found.iter().find(|(_, info)| matches(info)) else {
        let present: Vec<String> = found
            .iter()
            .map(|(_, i)| format!("'{}'", i.label().trim_end()))
            .collect();
        return Err(KeyError::Device(format!(
            "no {} in {} (is it plugged in?); tokens present: {}",
            config.token,
            module.display(),
            if present.is_empty() {
                "none".to_string()
            } else {
                present.join(", ")
            }
        )));
    };
    let token_label = info.label().trim_end().to_string();
    if info.user_pin_locked() {
        return Err(KeyError::PinLocked(format!("token '{token_label}'")));
    }
    let pkcs11 = load(module)?;
    let session = pkcs11
        .open_rw_session(*slot)
        .map_err(|e| device_error(&token_label, "opening a session", e))?;
    if info.login_required() {
        login(&session, &pkcs11, *slot, info, &token_label, pin)?;
    }
    Ok((session, token_label))
}

/// Logs in once. A wrong PIN is reported, never retried here: tokens count failures and a
/// YubiKey locks its PIV PIN after three.
fn login(
    session: &Session,
    pkcs11: &Pkcs11,
    slot: Slot,
    info: &TokenInfo,
    token_label: &str,
    pin: &dyn PinPrompt,
) -> Result<(), KeyError> {
    let device = format!("token '{token_label}'");
    let secret = pin.ask(&PinRequest {
        device: &device,
        warning: pin_warning(info),
    })?;
    let auth = AuthPin::from(secret.as_str());
    match session.login(UserType::User, Some(&auth)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            let after = pkcs11.get_token_info(slot).ok();
            if after.as_ref().is_some_and(TokenInfo::user_pin_locked) {
                return Err(KeyError::PinLocked(device));
            }
            Err(KeyError::WrongPin {
                device,
                warning: after.as_ref().and_then(pin_warning),
            })
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(KeyError::PinLocked(device)),
        Err(e) => Err(device_error(token_label, "logging in", e)),
    }
}

fn pin_warning(info: &TokenInfo) -> Option<&'static str> {
    if info.user_pin_final_try() {
        Some("one attempt left before the token locks")
    } else if info.user_pin_count_low() {
        Some("few attempts left before the token locks")
    } else {
        None
    }
}

fn find(
    session: &Session,
    class: ObjectClass,
    key: &KeySelector,
) -> Result<Vec<ObjectHandle>, KeyError> {
    let selector = match key {
        KeySelector::Label(label) => Attribute::Label(label.as_bytes().to_vec()),
        KeySelector::Id(id) => Attribute::Id(id.clone()),
    };
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::KeyType(KeyType::EC),
            selector,
        ])
        .map_err(|e| KeyError::Device(format!("searching the token failed: {e}")))
}

fn read_public(
    session: &Session,
    handle: ObjectHandle,
    token_label: &str,
) -> Result<PublicKey, KeyError> {
    let attrs = session
        .get_attributes(handle, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(|e| device_error(token_label, "reading the public key", e))?;
    let mut params = None;
    let mut point = None;
    for attr in attrs {
        match attr {
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            _ => {}
        }
    }
    if params.as_deref() != Some(&P256_EC_PARAMS[..]) {
        return Err(KeyError::Format(format!(
            "the key on token '{token_label}' is not on curve P-256"
        )));
    }
    let point = point
        .ok_or_else(|| KeyError::Format(format!("token '{token_label}' gave no CKA_EC_POINT")))?;
    PublicKey::from_sec1_bytes(ec_point_bytes(&point))
        .map_err(|e| KeyError::Format(format!("CKA_EC_POINT from '{token_label}': {e}")))
}

/// `CKA_EC_POINT` is, per the standard, a DER OCTET STRING around the SEC1 point
/// (`04 41 04‖X‖Y`); some modules return the bare point. Accept both.
fn ec_point_bytes(value: &[u8]) -> &[u8] {
    // Decided by length: a bare point's second byte is the first byte of X and may equal 0x41.
    match value {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        _ => value,
    }
}

fn device_error(token_label: &str, doing: &str, e: CkError) -> KeyError {
    match e {
        CkError::Pkcs11(
            RvError::DeviceRemoved | RvError::TokenNotPresent | RvError::SessionHandleInvalid,
            _,
        ) => KeyError::Device(format!(
            "token '{token_label}' was removed while {doing}; plug it in and try again"
        )),
        CkError::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _) => {
            KeyError::Device(format!(
                "the key is no longer on token '{token_label}' while {doing}: was the token \
                 removed or the key deleted?"
            ))
        }
        CkError::Pkcs11(RvError::UserNotLoggedIn, _) => KeyError::Device(format!(
            "token '{token_label}' is not logged in while {doing}"
        )),
        other => KeyError::Device(format!("token '{token_label}': {doing} failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_octet_string_and_bare_point_both_decode() {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let bare = point.as_bytes();
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(bare);
        assert_eq!(ec_point_bytes(&wrapped), bare);
        assert_eq!(ec_point_bytes(bare), bare);
    }
}
