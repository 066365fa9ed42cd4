//! `countersign keys init|enroll|list|test`: an approver's signing key on a PKCS#11 token, a
//! TPM 2.0, or (for development) in a file.
//!
//! `init` writes a key record: where the key lives, its label and its public key, so `list`
//! can show keys without touching a device or asking a PIN. The private key stays where it
//! was made.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use countersign_approver::enrolment::{WithAttestation, enrol};
use countersign_approver::signin::{device_sign_in, enrol_with_sign_in, sign_in_with_key};
use countersign_approver::{KeyRecord, NewKey};
use countersign_client::Client;
use countersign_core::{KeyKind, PivAttestationDocument};
use countersign_keys::Signer;
use countersign_keys::pkcs11::TokenSelector;

use crate::pin;
use crate::profile::{self, Profile};

/// Key backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// A PKCS#11 token: YubiKey (ykcs11 or OpenSC), smart card, HSM.
    Pkcs11,
    /// A TPM 2.0.
    Tpm,
    /// A key file: development only, never hardware-backed.
    Software,
}

/// Options of `keys`.
#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// Key subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a signing key on a device (or, for development, in a file).
    Init(InitArgs),
    /// Enrol a key with a service using a one-time code, or by signing in with the
    /// organisation's OpenID Provider (--sign-in), and write the approver profile.
    Enroll {
        /// Service URL.
        #[arg(long, env = "COUNTERSIGN_SERVER")]
        server: String,
        /// Your approver identity (with a code; a sign-in says who you are).
        #[arg(long, required_unless_present = "sign_in")]
        approver: Option<String>,
        /// Sign in with the service's OpenID Provider on any device (the device authorization
        /// grant: a code to enter in a browser) instead of using a one-time code.
        #[arg(long, conflicts_with_all = ["code", "code_file", "approver"])]
        sign_in: bool,
        /// The one-time enrolment code. Prefer COUNTERSIGN_ENROLMENT_CODE or --code-file: a
        /// flag's value is visible to every user of the machine in `ps`.
        #[arg(
            long,
            env = "COUNTERSIGN_ENROLMENT_CODE",
            hide_env_values = true,
            required_unless_present_any = ["code_file", "sign_in"]
        )]
        code: Option<String>,
        /// Read the enrolment code from this file (`-`: standard input).
        #[arg(long)]
        code_file: Option<PathBuf>,
        #[command(flatten)]
        key: KeyArg,
        /// Label shown to admins (default: the key's own label).
        #[arg(long)]
        label: Option<String>,
        /// Profile file to write.
        #[arg(long, env = "COUNTERSIGN_PROFILE")]
        profile: Option<PathBuf>,
        /// A YubiKey's PIV attestation of the key's slot (PEM or DER, from `yubico-piv-tool -a
        /// attest -s 9c`), so the service can check the key was made on the device.
        #[arg(long, requires = "piv_device_certificate")]
        piv_attestation: Option<PathBuf>,
        /// The YubiKey's own attestation certificate (slot f9, from `yubico-piv-tool -a
        /// read-certificate -s f9`), which signed the slot's attestation.
        #[arg(long, requires = "piv_attestation")]
        piv_device_certificate: Option<PathBuf>,
    },
    /// Sign in again with the organisation's OpenID Provider (a code to enter in a browser),
    /// vouching afresh for the profile's key: for requests whose policy wants a recent sign-in.
    SignIn {
        /// Profile file.
        #[arg(long, env = "COUNTERSIGN_PROFILE")]
        profile: Option<PathBuf>,
    },
    /// List keys: backend, hardware or not, fingerprint, label. Touches no device.
    List {
        /// Key records to list (default: the default record and the profile's key).
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        /// Profile file.
        #[arg(long, env = "COUNTERSIGN_PROFILE")]
        profile: Option<PathBuf>,
    },
    /// Sign and verify once with a key, printing the latency.
    Test {
        #[command(flatten)]
        key: KeyArg,
    },
}

/// The key record to use.
#[derive(Args, Debug)]
pub struct KeyArg {
    /// Key record written by `keys init` (default: `~/.config/countersign/key.json`).
    #[arg(long = "key")]
    pub record: Option<PathBuf>,
}

impl KeyArg {
    fn path(&self) -> PathBuf {
        self.record.clone().unwrap_or_else(default_record)
    }
}

/// Options of `keys init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Where the key lives.
    #[arg(long, value_enum)]
    backend: Backend,
    /// A label for people; on a token, the key's CKA_LABEL.
    #[arg(long, default_value = "countersign approver")]
    label: String,
    /// Where to write the key record.
    #[arg(long = "key")]
    record: Option<PathBuf>,
    /// Software: the key file; TPM: the key blob file (default: beside the record).
    #[arg(long)]
    path: Option<PathBuf>,
    /// PKCS#11 module, e.g. /usr/lib/x86_64-linux-gnu/libykcs11.so.
    #[arg(long, required_if_eq("backend", "pkcs11"))]
    module: Option<PathBuf>,
    /// PKCS#11 token label.
    #[arg(long, conflicts_with = "token_serial")]
    token_label: Option<String>,
    /// PKCS#11 token serial number.
    #[arg(long)]
    token_serial: Option<String>,
    /// Use an existing key on the token (by its label) instead of generating one.
    #[arg(long)]
    existing: bool,
    /// TPM TCTI.
    #[arg(long, default_value = "device:/dev/tpmrm0")]
    tcti: String,
    /// TPM: protect the key with an authorization value (asked like a PIN).
    #[arg(long)]
    auth: bool,
}

/// Reads a key record written by `keys init`.
fn load_record(path: &Path) -> anyhow::Result<KeyRecord> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading key record {} (create one with `countersign keys init`)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("parsing key record {}", path.display()))
}

/// One line of `keys list`.
fn line(record: &KeyRecord) -> String {
    let hardware = if record.kind.is_hardware() {
        "hardware"
    } else {
        "NOT hardware"
    };
    format!(
        "{:<8}  {:<12}  {}  {}  [{}]",
        record.key.backend(),
        hardware,
        record.key_id(),
        record.label,
        record.kind.label()
    )
}

/// Where `keys init` writes the key record unless told otherwise:
/// `~/.config/countersign/key.json`.
pub fn default_record() -> PathBuf {
    profile::config_dir().join("key.json")
}

/// Tells the person how to finish a device sign-in on any device.
fn show_device_prompt(prompt: &countersign_approver::signin::DevicePrompt) {
    eprintln!(
        "To sign in, open {} and enter the code {}",
        prompt.verification_uri, prompt.user_code
    );
    if let Some(direct) = &prompt.verification_uri_complete {
        eprintln!("(or open {direct})");
    }
}

/// Runs a `keys` command.
pub async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Init(init_args) => init(init_args),
        KeysCommand::Enroll {
            server,
            approver,
            sign_in,
            code,
            code_file,
            key,
            label,
            profile,
            piv_attestation,
            piv_device_certificate,
        } => {
            let record = load_record(&key.path())?;
            let opened = record.open(&pin::ask)?;
            let info = opened.describe();
            let attested;
            let signer: &dyn Signer = match (piv_attestation, piv_device_certificate) {
                (Some(attestation), Some(device)) => {
                    if info.kind != KeyKind::Pkcs11 {
                        bail!(
                            "a PIV attestation is for a key on a PKCS#11 token (a YubiKey), not a {} key",
                            info.kind.label()
                        );
                    }
                    let document = PivAttestationDocument::new(
                        &read_certificate(&attestation)?,
                        &read_certificate(&device)?,
                    );
                    attested = WithAttestation::new(opened.as_ref(), document.encode());
                    &attested
                }
                _ => opened.as_ref(),
            };
            if let Some(warning) = countersign_client::plain_http_warning(&server) {
                eprintln!("warning: {warning}");
            }
            let client = Client::new(&server)?;
            let label = label.unwrap_or_else(|| record.label.clone());
            let enrolled = if sign_in {
                let signed_in = device_sign_in(&client, show_device_prompt)
                    .await
                    .context("signing in")?;
                enrol_with_sign_in(&client, signed_in, signer, label)
                    .await
                    .context("enrolling the key with the sign-in")?
            } else {
                let code = crate::secret::resolve(code, code_file.as_deref(), "enrolment code")?;
                let approver = approver.context("--approver is needed with a code")?;
                enrol(&client, &approver, &code, signer, label)
                    .await
                    .context("enrolling the key")?
            };
            let path = profile.unwrap_or_else(profile::default_path);
            Profile {
                server,
                approver_id: enrolled.approver_id.clone(),
                key_id: enrolled.key_id,
                key: record.key,
            }
            .save(&path)?;
            eprintln!(
                "enrolled {} for {}; profile written to {}",
                info.describe(),
                enrolled.approver_id,
                path.display()
            );
            match &enrolled.attested_by {
                Some(root) => eprintln!("attestation: the device is attested by {root}"),
                None if info.kind.is_hardware() => eprintln!(
                    "attestation: claimed (no trusted manufacturer's root vouched for the device; \
                     requests whose policy sets require_attested_key will refuse this key)"
                ),
                None => {}
            }
            Ok(())
        }
        KeysCommand::SignIn { profile } => {
            let profile = Profile::load(&profile.unwrap_or_else(profile::default_path))?;
            let signer = profile.signer()?;
            let client = Client::new(&profile.server)?;
            let signed_in = device_sign_in(&client, show_device_prompt)
                .await
                .context("signing in")?;
            let recorded = sign_in_with_key(&client, signed_in, signer.as_ref())
                .await
                .context("recording the sign-in behind the key")?;
            eprintln!(
                "signed in as {} at {}; key {} vouched for",
                recorded.approver_id,
                recorded.signed_in_at,
                recorded.key_id.short()
            );
            Ok(())
        }
        KeysCommand::List { keys, profile } => list(keys, profile),
        KeysCommand::Test { key } => {
            let record = load_record(&key.path())?;
            let signer = record.open(&pin::ask)?;
            let mut nonce = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
            let message = format!("countersign/keys-test/v1\n{}", hex::encode(nonce));
            let started = Instant::now();
            let signature = signer.sign(message.as_bytes())?;
            let elapsed = started.elapsed();
            record
                .public_key
                .verify(message.as_bytes(), &signature)
                .context("the signature does not verify with the recorded public key")?;
            println!(
                "signed and verified with {} in {:.2} ms",
                signer.describe().describe(),
                elapsed.as_secs_f64() * 1e3
            );
            Ok(())
        }
    }
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let record_path = args.record.clone().unwrap_or_else(default_record);
    if record_path.exists() {
        bail!(
            "{} already exists; pass --key to write the new record elsewhere",
            record_path.display()
        );
    }
    // The key material goes beside the record; never in the record's own file (a record named
    // `key.pem` would otherwise be written over the private key it describes).
    let beside = |ext: &str| -> anyhow::Result<PathBuf> {
        let path = args.path.clone().unwrap_or_else(|| {
            let same = record_path.with_extension(ext);
            if same == record_path {
                record_path.with_extension(format!("key.{ext}"))
            } else {
                same
            }
        });
        if path == record_path {
            bail!(
                "the key file and the key record would both be {}; give --path another file",
                path.display()
            );
        }
        Ok(path)
    };
    let new = match args.backend {
        Backend::Software => NewKey::Software {
            path: beside("pem")?,
            label: args.label.clone(),
        },
        Backend::Pkcs11 => NewKey::Pkcs11 {
            module: args.module.clone().context("--module is required")?,
            token: match (&args.token_label, &args.token_serial) {
                (Some(label), None) => TokenSelector::Label(label.clone()),
                (None, Some(serial)) => TokenSelector::Serial(serial.clone()),
                _ => bail!("give --token-label or --token-serial"),
            },
            label: args.label.clone(),
            existing: args.existing,
        },
        Backend::Tpm => NewKey::Tpm {
            tcti: args.tcti.clone(),
            key_file: beside("tpm")?,
            label: args.label.clone(),
            auth: if args.auth {
                Some(pin::ask_new(&format!("new TPM key '{}'", args.label))?)
            } else {
                None
            },
        },
    };
    let (record, signer) = countersign_approver::key::create(new, &pin::ask)?;
    let info = signer.describe();
    if let Some(dir) = record_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A new file, never one that exists (key material above all).
    countersign_keys::files::write_owner_only(
        &record_path,
        (serde_json::to_string_pretty(&record)? + "\n").as_bytes(),
    )
    .with_context(|| format!("writing {}", record_path.display()))?;
    eprintln!(
        "created {}; record in {}",
        info.describe(),
        record_path.display()
    );
    println!("{}", info.key_id);
    Ok(())
}

fn list(keys: Vec<PathBuf>, profile: Option<PathBuf>) -> anyhow::Result<()> {
    let mut records = Vec::new();
    if keys.is_empty() {
        let default = default_record();
        if default.exists() {
            records.push((default.display().to_string(), load_record(&default)?));
        }
    } else {
        for path in &keys {
            records.push((path.display().to_string(), load_record(path)?));
        }
    }
    let profile_path = profile.unwrap_or_else(profile::default_path);
    let enrolled = if profile_path.exists() {
        Some(Profile::load(&profile_path)?)
    } else {
        None
    };
    if records.is_empty() && enrolled.is_none() {
        eprintln!("no keys; create one with `countersign keys init`");
    }
    for (path, record) in &records {
        let mark = match &enrolled {
            Some(p) if p.key_id == record.public_key.key_id() => {
                format!("  enrolled as {} at {}", p.approver_id, p.server)
            }
            _ => String::new(),
        };
        println!("{}  ({path}){mark}", line(record));
    }
    if let Some(p) = enrolled
        && !records
            .iter()
            .any(|(_, r)| r.public_key.key_id() == p.key_id)
    {
        println!(
            "{:<8}  {:<12}  {}  enrolled as {} at {}  ({})",
            p.key.backend(),
            if p.key.backend() == "software" {
                "NOT hardware"
            } else {
                "hardware"
            },
            p.key_id,
            p.approver_id,
            p.server,
            profile_path.display()
        );
    }
    Ok(())
}

/// The first certificate in a PEM or DER file, DER.
fn read_certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    countersign_keys::endorsement::certificates(&bytes)
        .with_context(|| format!("{} is not a certificate", path.display()))?
        .into_iter()
        .next()
        .with_context(|| format!("{} holds no certificate", path.display()))
}
