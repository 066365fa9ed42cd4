//! An approver's profile: which service, who, and which key. Written by `keys enroll`, read by
//! `pending`, `approve` and `deny`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use countersign_core::{KeyId, Signature};
use countersign_keys::{KeyConfig, Signer};
use serde::{Deserialize, Serialize};

/// The profile file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Service base URL.
    pub server: String,
    /// Approver identity.
    pub approver_id: String,
    /// The enrolled key's id.
    pub key_id: KeyId,
    /// Where the key lives.
    pub key: KeyConfig,
}

/// `$XDG_CONFIG_HOME/countersign` (or `~/.config/countersign`).
pub fn config_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("countersign")
}

/// The default profile location: `$XDG_CONFIG_HOME/countersign/approver.json`.
pub fn default_path() -> PathBuf {
    config_dir().join("approver.json")
}

impl Profile {
    /// Reads a profile.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading approver profile {} (run `countersign keys enroll` first)",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing approver profile {}", path.display()))
    }

    /// Writes a profile.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Opens the key, checking it is the enrolled one.
    pub fn signer(&self) -> anyhow::Result<Box<dyn Signer>> {
        Ok(countersign_approver::key::open_enrolled(
            &self.key,
            &self.key_id,
            &crate::pin::ask,
        )?)
    }
}

/// Adapts a signer to the client's signing callback.
pub fn sign_with(signer: &dyn Signer) -> impl Fn(&[u8]) -> Result<Signature, String> + '_ {
    move |message| signer.sign(message).map_err(|e| e.to_string())
}
