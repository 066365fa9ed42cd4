//! What the console remembers between runs: which service, who, and where the key lives. No
//! secret is stored: the key stays on its device, PINs are never kept, and sessions are opened
//! by signing a fresh challenge on each start instead of keeping a bearer token on disk.

use std::path::{Path, PathBuf};

use countersign_core::{KeyId, KeyKind, PublicKey};
use countersign_keys::KeyConfig;
use serde::{Deserialize, Serialize};

/// Overrides the config directory (tests, several profiles side by side).
pub const DIR_ENV: &str = "COUNTERSIGN_CONSOLE_DIR";

/// The saved settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Service base URL.
    pub server: String,
    /// Who I am at that service.
    pub approver_id: String,
    /// My enrolled key.
    pub key: SavedKey,
}

/// A key the console can open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedKey {
    /// Where it lives.
    pub config: KeyConfig,
    /// What kind it is.
    pub kind: KeyKind,
    /// Label for people.
    pub label: String,
    /// Its public key, to check the device still holds it.
    pub public_key: PublicKey,
}

impl SavedKey {
    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.public_key.key_id()
    }
}

/// Where the settings live.
pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("console.json")
}

/// Reads the settings; `None` before the first enrolment.
pub fn load(config_dir: &Path) -> Result<Option<Settings>, String> {
    let path = path(config_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{} is damaged: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the settings atomically (a crash leaves the old or the new file, never half).
pub fn save(config_dir: &Path, settings: &Settings) -> Result<(), String> {
    std::fs::create_dir_all(config_dir).map_err(|e| format!("{}: {e}", config_dir.display()))?;
    let path = path(config_dir);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(settings).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, text + "\n").map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}
