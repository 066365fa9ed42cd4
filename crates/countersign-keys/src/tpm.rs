//! Keys in a TPM 2.0. The key is created by the TPM under the owner hierarchy's storage root
//! key (fixedTPM, fixedParent, sensitiveDataOrigin), so it never exists outside the chip in
//! the clear; what is saved in the user's config dir is the TPM's own encrypted blob, which
//! only that TPM can load. The storage root key is the standard ECC P-256 template, recreated
//! from the owner seed on each open, so nothing has to be made persistent in the TPM's NV.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use countersign_core::tpm_attestation::{self, TpmCertification};
use countersign_core::{KeyKind, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ek, nv};
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{AuthHandle, KeyHandle, NvIndexTpmHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, NvAuth};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, Data, Digest, EccPoint, EccScheme, EncryptedSecret, HashScheme, IdObject,
    KeyDerivationFunctionScheme, Private, Public, PublicBuilder, PublicEccParametersBuilder,
    SignatureScheme, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall as _, UnMarshall as _};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::{Context, Error as TssError};
use zeroize::Zeroizing;

use crate::credential::Credential;
use crate::{Endorsement, KeyError, KeyInfo, PinPrompt, PinRequest, Signer, files, sha256};

/// Where a TPM key lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmConfig {
    /// The TCTI: `device:/dev/tpmrm0` on a machine, `swtpm:host=127.0.0.1,port=2321` in tests.
    pub tcti: String,
    /// The key blob file (owner-only), e.g. `~/.config/countersign/keys/tpm.json`.
    pub key_file: PathBuf,
}

/// The key blob as saved: the TPM's public area and its encrypted private area.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    label: String,
    /// Whether the key needs an authorization value (asked like a PIN).
    auth: bool,
    /// Marshalled TPMT_PUBLIC, base64.
    public: String,
    /// TPM2B_PRIVATE contents (encrypted by the storage root key), base64.
    private: String,
}

const KEY_FILE_FORMAT: &str = "countersign-tpm-key/v1";

const AUTH_REFUSED: &str = "the TPM refused the authorization value";

struct Loaded {
    context: Context,
    key: KeyHandle,
    /// The key's authorization value, kept (as the TPM library keeps it for the handle) to give
    /// the key back its value after it was set aside and loaded again: a saved context does
    /// not carry it.
    auth: Option<Auth>,
}

/// A P-256 key held by a TPM 2.0.
pub struct TpmKey {
    loaded: Mutex<Loaded>,
    public: PublicKey,
    tpm_public: Public,
    label: String,
}

impl TpmKey {
    /// Has the TPM create a key, saves its blob to `config.key_file` (which must not exist),
    /// and loads it. With `auth`, the key needs that value (asked later through a PIN prompt).
    pub fn generate(
        config: &TpmConfig,
        label: &str,
        auth: Option<Zeroizing<String>>,
    ) -> Result<Self, KeyError> {
        if config.key_file.exists() {
            return Err(KeyError::Io(format!(
                "{} already exists; a TPM key file is never overwritten",
                config.key_file.display()
            )));
        }
        let mut context = connect(&config.tcti)?;
        let srk = storage_root_key(&mut context)?;
        let tpm_auth = auth.as_ref().map(|a| auth_value(a)).transpose()?;
        let created = context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create(srk, signing_key_template()?, tpm_auth, None, None, None)
            })
            .map_err(|e| tpm_error("creating the key", e));
        flush(&mut context, srk);
        let created = created?;
        let file = KeyFile {
            format: KEY_FILE_FORMAT.into(),
            label: label.into(),
            auth: auth.is_some(),
            public: B64.encode(
                created
                    .out_public
                    .marshall()
                    .map_err(|e| tpm_error("saving the public area", e))?,
            ),
            private: B64.encode(created.out_private.value()),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| KeyError::Format(format!("encoding the key file: {e}")))?;
        if let Some(dir) = config.key_file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| KeyError::Io(format!("{}: {e}", dir.display())))?;
        }
        files::write_owner_only(&config.key_file, &json)
            .map_err(|e| KeyError::Io(format!("{}: {e}", config.key_file.display())))?;
        let pin = move |_: &PinRequest<'_>| {
            auth.clone()
                .ok_or_else(|| KeyError::PinCancelled("the new TPM key".into()))
        };
        Self::open(config, &pin)
    }

    /// Loads a saved key into the TPM; asks for its authorization value when it has one and
    /// checks it once by signing, so a wrong value is reported here, not at the first decision.
    pub fn open(config: &TpmConfig, pin: &dyn PinPrompt) -> Result<Self, KeyError> {
        files::check_owner_only(&config.key_file).map_err(|e| KeyError::Io(e.to_string()))?;
        let bytes = std::fs::read(&config.key_file)
            .map_err(|e| KeyError::Io(format!("{}: {e}", config.key_file.display())))?;
        let file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| KeyError::Format(format!("{}: {e}", config.key_file.display())))?;
        if file.format != KEY_FILE_FORMAT {
            return Err(KeyError::Format(format!(
                "{}: unknown format '{}'",
                config.key_file.display(),
                file.format
            )));
        }
        let decode = |what: &str, b64: &str| {
            B64.decode(b64).map_err(|e| {
                KeyError::Format(format!("{}: {what}: {e}", config.key_file.display()))
            })
        };
        let tpm_public = Public::unmarshall(&decode("public", &file.public)?)
            .map_err(|e| KeyError::Format(format!("{}: public: {e}", config.key_file.display())))?;
        let private = Private::try_from(decode("private", &file.private)?).map_err(|e| {
            KeyError::Format(format!("{}: private: {e}", config.key_file.display()))
        })?;
        let public = ecc_public_key(&tpm_public)?;

        let mut context = connect(&config.tcti)?;
        let srk = storage_root_key(&mut context)?;
        let key = context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.load(srk, private, tpm_public.clone())
            })
            .map_err(|e| match e {
                e if is_integrity_failure(&e) => KeyError::Device(format!(
                    "{} was not made by this TPM (or the TPM was cleared): {e}",
                    config.key_file.display()
                )),
                e => tpm_error("loading the key", e),
            });
        flush(&mut context, srk);
        let key = key?;
        let device = format!("TPM key '{}'", file.label);
        let mut auth = None;
        if file.auth {
            let value = pin.ask(&PinRequest {
                device: &device,
                warning: None,
            })?;
            let value = auth_value(&value)?;
            context
                .tr_set_auth(key.into(), value.clone())
                .map_err(|e| tpm_error("setting the authorization value", e))?;
            auth = Some(value);
        }
        let this = Self {
            loaded: Mutex::new(Loaded { context, key, auth }),
            public,
            tpm_public,
            label: file.label,
        };
        if file.auth {
            match this.sign(b"countersign/tpm-auth-check") {
                Err(KeyError::Sign(message)) if message.starts_with(AUTH_REFUSED) => {
                    return Err(KeyError::WrongPin {
                        device,
                        warning: Some("the TPM counts failures and locks out after a few"),
                    });
                }
                other => {
                    other?;
                }
            }
        }
        Ok(this)
    }

    /// The TPM's public area of the key (marshalled TPMT_PUBLIC), which states its attributes.
    pub fn tpm_public(&self) -> Result<Vec<u8>, KeyError> {
        self.tpm_public
            .marshall()
            .map_err(|e| tpm_error("encoding the public area", e))
    }

    /// The attributes the TPM enforces on the key, read back from its public area.
    pub fn protection(&self) -> TpmProtection {
        let attributes = self.tpm_public.object_attributes();
        TpmProtection {
            fixed_tpm: attributes.fixed_tpm(),
            fixed_parent: attributes.fixed_parent(),
            sensitive_data_origin: attributes.sensitive_data_origin(),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Loaded>, KeyError> {
        self.loaded
            .lock()
            .map_err(|_| KeyError::Device("the TPM context lock is poisoned".into()))
    }
}

/// The TPM-enforced attributes that keep a key on its chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpmProtection {
    /// fixedTPM: the key cannot be duplicated to another TPM.
    pub fixed_tpm: bool,
    /// fixedParent: the key cannot be moved under another parent.
    pub fixed_parent: bool,
    /// sensitiveDataOrigin: the TPM generated the private key itself.
    pub sensitive_data_origin: bool,
}

impl TpmProtection {
    /// True when all three hold.
    pub fn is_bound_to_tpm(&self) -> bool {
        self.fixed_tpm && self.fixed_parent && self.sensitive_data_origin
    }
}

impl Signer for TpmKey {
    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn describe(&self) -> KeyInfo {
        KeyInfo {
            kind: KeyKind::Tpm,
            label: self.label.clone(),
            key_id: self.public.key_id(),
        }
    }

    fn attest(&self, nonce: &[u8]) -> Result<Option<String>, KeyError> {
        let qualifying = Data::try_from(nonce.to_vec())
            .map_err(|e| KeyError::Format(format!("attestation nonce: {e}")))?;
        let key_public = self.tpm_public()?;
        let mut loaded = self.lock()?;
        let key = loaded.key;
        let (ak, ak_public) = attestation_key(&mut loaded.context)?;
        let certified = loaded.context.execute_with_sessions(
            (
                Some(AuthSession::Password),
                Some(AuthSession::Password),
                None,
            ),
            |ctx| ctx.certify(key.into(), ak, qualifying, SignatureScheme::Null),
        );
        flush(&mut loaded.context, ak);
        let (attest, signature) = certified.map_err(|e| tpm_error("certifying the key", e))?;
        let certification = TpmCertification {
            format: tpm_attestation::FORMAT.into(),
            key_public: B64.encode(key_public),
            certify_info: B64.encode(
                attest
                    .marshall()
                    .map_err(|e| tpm_error("encoding the statement", e))?,
            ),
            signature: ecdsa_signature(signature)?,
            attestation_key: ecc_public_key(&ak_public)?,
            endorsement: None,
        };
        Ok(Some(certification.encode()))
    }

    fn endorsement(&self) -> Result<Option<Endorsement>, KeyError> {
        let mut loaded = self.lock()?;
        let index = NvIndexTpmHandle::new(RSA_EK_CERTIFICATE_INDEX)
            .map_err(|e| tpm_error("naming the EK certificate index", e))?;
        let certificate = loaded
            .context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                nv::read_full(ctx, NvAuth::Owner, index)
            });
        let ek_certificate = match certificate {
            Ok(der) => der,
            // No certificate provisioned (most virtual TPMs, some machines): nothing to prove.
            Err(e) if matches!(response_kind(&e), Some(Tss2ResponseCodeKind::Handle)) => {
                return Ok(None);
            }
            Err(e) => return Err(tpm_error("reading the EK certificate", e)),
        };
        let (ak, ak_public) = attestation_key(&mut loaded.context)?;
        flush(&mut loaded.context, ak);
        Ok(Some(Endorsement {
            ek_certificate,
            attestation_key_public: ak_public
                .marshall()
                .map_err(|e| tpm_error("encoding the attestation key", e))?,
        }))
    }

    fn activate_credential(&self, credential: &Credential) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let id_object = IdObject::try_from(credential.id_object.clone())
            .map_err(|e| KeyError::Format(format!("credential blob: {e}")))?;
        let secret = EncryptedSecret::try_from(credential.encrypted_secret.clone())
            .map_err(|e| KeyError::Format(format!("encrypted secret: {e}")))?;
        let mut loaded = self.lock()?;
        // The EK and the AK must be loaded together, and a TPM without a resource manager
        // holds only three objects: this key steps out (saved by the TPM, encrypted) meanwhile.
        let key = loaded.key;
        let saved = loaded
            .context
            .context_save(key.into())
            .map_err(|e| tpm_error("setting the key aside", e))?;
        flush(&mut loaded.context, key);
        let context = &mut loaded.context;
        let activated = (|| {
            let ek = ek::create_ek_object_2(
                context,
                AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                None,
            )
            .map_err(|e| tpm_error("creating the endorsement key", e))?;
            let activated = match attestation_key(context) {
                Ok((ak, _)) => {
                    let result = activate(context, ak, ek, id_object, secret);
                    flush(context, ak);
                    result
                }
                Err(e) => Err(e),
            };
            flush(context, ek);
            activated
        })();
        let back = loaded
            .context
            .context_load(saved)
            .map_err(|e| tpm_error("loading the key again", e))?;
        loaded.key = back.into();
        if let Some(auth) = loaded.auth.clone() {
            loaded
                .context
                .tr_set_auth(back, auth)
                .map_err(|e| tpm_error("setting the authorization value again", e))?;
        }
        activated
    }

    fn sign(&self, message: &[u8]) -> Result<Signature, KeyError> {
        let digest = Digest::try_from(sha256(message).to_vec())
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        // An unrestricted key signs outside digests: the null hashcheck ticket is enough.
        let validation = TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        }
        .try_into()
        .map_err(|e: TssError| KeyError::Sign(e.to_string()))?;
        let mut loaded = self.lock()?;
        let key = loaded.key;
        let signature = loaded
            .context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.sign(key, digest, SignatureScheme::Null, validation)
            })
            .map_err(|e| {
                if is_auth_failure(&e) {
                    KeyError::Sign(format!("{AUTH_REFUSED}: {e}"))
                } else if matches!(response_kind(&e), Some(Tss2ResponseCodeKind::Lockout)) {
                    KeyError::PinLocked("the TPM (dictionary-attack lockout)".into())
                } else {
                    KeyError::Sign(format!("TPM: {e}"))
                }
            })?;
        ecdsa_signature(signature)
    }
}

impl Drop for TpmKey {
    fn drop(&mut self) {
        // A swtpm socket has no resource manager: transient objects stay until flushed.
        if let Ok(loaded) = self.loaded.get_mut() {
            let key = loaded.key;
            flush(&mut loaded.context, key);
        }
    }
}

/// The TCG's NV index of the RSA 2048 endorsement key certificate.
const RSA_EK_CERTIFICATE_INDEX: u32 = 0x01c0_0002;

/// TPM2_ActivateCredential for the attestation key `ak` with the endorsement key `ek`, whose
/// policy asks for the endorsement hierarchy's authorization (PolicySecret).
fn activate(
    context: &mut Context,
    ak: KeyHandle,
    ek: KeyHandle,
    id_object: IdObject,
    secret: EncryptedSecret,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let policy = context
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(|e| tpm_error("starting a policy session", e))?
        .ok_or_else(|| KeyError::Device("the TPM gave no policy session".into()))?;
    let result = (|| {
        let (attributes, mask) = SessionAttributesBuilder::new().build();
        context
            .tr_sess_set_attributes(policy, attributes, mask)
            .map_err(|e| tpm_error("setting up the policy session", e))?;
        let policy_session = PolicySession::try_from(policy)
            .map_err(|e| tpm_error("setting up the policy session", e))?;
        context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.policy_secret(
                    policy_session,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
            .map_err(|e| tpm_error("satisfying the endorsement key's policy", e))?;
        context
            .execute_with_sessions((Some(AuthSession::Password), Some(policy), None), |ctx| {
                ctx.activate_credential(ak, ek, id_object, secret)
            })
            .map(|digest| Zeroizing::new(digest.value().to_vec()))
            .map_err(|e| {
                KeyError::Device(format!(
                    "TPM: the credential is not for this TPM's attestation key: {e}"
                ))
            })
    })();
    // A TPM holds only a few sessions at once: give this one back whatever happened.
    let _ = context.flush_context(SessionHandle::from(policy).into());
    result
}

fn connect(tcti: &str) -> Result<Context, KeyError> {
    let conf = TctiNameConf::from_str(tcti)
        .map_err(|e| KeyError::Device(format!("TCTI '{tcti}' is not valid: {e}")))?;
    Context::new(conf).map_err(|e| {
        KeyError::Device(format!(
            "cannot reach the TPM at '{tcti}' (is it present, and may you use it?): {e}"
        ))
    })
}

/// The TCG's standard ECC P-256 storage root key template, so the same key comes back from
/// the owner seed every time.
fn storage_root_key(context: &mut Context) -> Result<KeyHandle, KeyError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(|e| tpm_error("building the storage key template", e))?;
    let template = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()
            .map_err(|e| tpm_error("building the storage key template", e))?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(|e| tpm_error("building the storage key template", e))?;
    context
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map(|created| created.key_handle)
        .map_err(|e| tpm_error("creating the storage root key", e))
}

/// The TPM's ECDSA signature as ours: r and s left-padded to 32 bytes each.
fn ecdsa_signature(signature: tss_esapi::structures::Signature) -> Result<Signature, KeyError> {
    let tss_esapi::structures::Signature::EcDsa(ecc) = signature else {
        return Err(KeyError::Sign(
            "the TPM returned a non-ECDSA signature".into(),
        ));
    };
    let mut raw = [0u8; 64];
    left_pad(ecc.signature_r().value(), &mut raw[..32])?;
    left_pad(ecc.signature_s().value(), &mut raw[32..])?;
    Signature::from_raw(&raw).map_err(|e| KeyError::Sign(e.to_string()))
}

/// A restricted signing key in the endorsement hierarchy, recreated from its seed: it can
/// only sign statements the TPM itself produces, such as TPM2_Certify.
fn attestation_key(context: &mut Context) -> Result<(KeyHandle, Public), KeyError> {
    let template = (|| {
        let attributes = ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_sensitive_data_origin(true)
            .with_user_with_auth(true)
            .with_restricted(true)
            .with_sign_encrypt(true)
            .build()?;
        PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::Ecc)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_ecc_parameters(
                PublicEccParametersBuilder::new()
                    .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
                    .with_curve(EccCurve::NistP256)
                    .with_is_signing_key(true)
                    .with_restricted(true)
                    .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                    .build()?,
            )
            .with_ecc_unique_identifier(EccPoint::default())
            .build()
    })()
    .map_err(|e| tpm_error("building the attestation key template", e))?;
    context
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
        })
        .map(|created| (created.key_handle, created.out_public))
        .map_err(|e| tpm_error("creating the attestation key", e))
}

fn signing_key_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_unrestricted_signing_key(
                EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

fn ecc_public_key(public: &Public) -> Result<PublicKey, KeyError> {
    let Public::Ecc { unique, .. } = public else {
        return Err(KeyError::Format("the TPM key is not an ECC key".into()));
    };
    let mut point = [0u8; 65];
    point[0] = 0x04;
    left_pad(unique.x().value(), &mut point[1..33])?;
    left_pad(unique.y().value(), &mut point[33..])?;
    PublicKey::from_sec1_bytes(&point).map_err(|e| KeyError::Format(e.to_string()))
}

/// TPMs drop leading zero bytes of r, s, x and y; P-256 wants 32 bytes each.
fn left_pad(value: &[u8], out: &mut [u8]) -> Result<(), KeyError> {
    let Some(start) = out.len().checked_sub(value.len()) else {
        return Err(KeyError::Format(format!(
            "a {}-byte value where at most {} fit",
            value.len(),
            out.len()
        )));
    };
    out[..start].fill(0);
    out[start..].copy_from_slice(value);
    Ok(())
}

fn auth_value(value: &str) -> Result<Auth, KeyError> {
    Auth::try_from(value.as_bytes().to_vec()).map_err(|_| {
        KeyError::Format(
            "the authorization value is too long for the TPM (at most 32 bytes)".into(),
        )
    })
}

fn flush(context: &mut Context, handle: KeyHandle) {
    // Flushing fails only when the TPM went away; the next command reports that clearly.
    let _ = context.flush_context(handle.into());
}

fn response_kind(e: &TssError) -> Option<Tss2ResponseCodeKind> {
    match e {
        TssError::Tss2Error(code) => code.kind(),
        TssError::WrapperError(_) => None,
    }
}

fn is_auth_failure(e: &TssError) -> bool {
    matches!(
        response_kind(e),
        Some(Tss2ResponseCodeKind::AuthFail | Tss2ResponseCodeKind::BadAuth)
    )
}

fn is_integrity_failure(e: &TssError) -> bool {
    matches!(response_kind(e), Some(Tss2ResponseCodeKind::Integrity))
}

fn tpm_error(doing: &str, e: TssError) -> KeyError {
    KeyError::Device(format!("TPM: {doing} failed: {e}"))
}

/// Reads the public key a key file holds without touching the TPM, for listings.
pub fn key_file_public(path: &Path) -> Result<(String, PublicKey), KeyError> {
    let bytes =
        std::fs::read(path).map_err(|e| KeyError::Io(format!("{}: {e}", path.display())))?;
    let file: KeyFile = serde_json::from_slice(&bytes)
        .map_err(|e| KeyError::Format(format!("{}: {e}", path.display())))?;
    let public_bytes = B64
        .decode(&file.public)
        .map_err(|e| KeyError::Format(format!("{}: public: {e}", path.display())))?;
    let public = Public::unmarshall(&public_bytes)
        .map_err(|e| KeyError::Format(format!("{}: public: {e}", path.display())))?;
    Ok((file.label, ecc_public_key(&public)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_left_padded_and_long_ones_refused() {
        let mut out = [0xffu8; 4];
        left_pad(&[1, 2], &mut out).expect("fits");
        assert_eq!(out, [0, 0, 1, 2]);
        assert!(left_pad(&[1, 2, 3, 4, 5], &mut out).is_err());
    }
}
