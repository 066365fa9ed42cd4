//! What the console remembers between runs: which service, who, and where the key lives. No
//! secret is stored: the key stays on its device, PINs are never kept, and sessions are opened
//! by signing a fresh challenge on each start instead of keeping a bearer token on disk.

use std::path::{Path, PathBuf};

use countersign_approver::KeyRecord;
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
    pub key: KeyRecord,
    /// The audit mirror's file in the config directory: one per log, so a console moved to
    /// another service starts a new history and keeps the old one.
    #[serde(default = "default_history_file")]
    pub history_file: String,
}

/// The mirror file of the first service.
pub fn default_history_file() -> String {
    "mirror.db".to_string()
}

/// Where the settings live.
pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("console.json")
}

/// Reads the settings; `None` before the first enrolment.
pub fn load(config_dir: &Path) -> Result<Option<Settings>, String> {
    let path = path(config_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let settings: Settings = serde_json::from_str(&text)
                .map_err(|e| format!("{} is damaged: {e}", path.display()))?;
            // A hand-edited file must not point the mirror outside the config directory.
            if Path::new(&settings.history_file).file_name()
                != Some(std::ffi::OsStr::new(&settings.history_file))
            {
                return Err(format!(
                    "{} is damaged: history_file must be a file name, not {:?}",
                    path.display(),
                    settings.history_file
                ));
            }
            Ok(Some(settings))
        }
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

#[cfg(test)]
mod tests {
    use countersign_core::KeyKind;
    use countersign_keys::{KeyConfig, Signer as _, SoftwareKey};

    use super::*;

    fn settings(dir: &Path) -> Settings {
        let key_path = dir.join("dev.pem");
        let key = SoftwareKey::generate(&key_path).expect("key");
        Settings {
            server: "http://127.0.0.1:8080".into(),
            approver_id: "bob@example.com".into(),
            key: KeyRecord {
                key: KeyConfig::Software { path: key_path },
                kind: KeyKind::Software,
                label: "dev".into(),
                public_key: key.public_key(),
                attested_by: None,
            },
            history_file: default_history_file(),
        }
    }

    #[test]
    fn saved_settings_read_back_the_same() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(load(dir.path()).expect("load"), None);
        let mut s = settings(dir.path());
        s.history_file = "mirror-0123456789abcdef.db".into();
        save(dir.path(), &s).expect("save");
        assert_eq!(load(dir.path()).expect("load"), Some(s));
    }

    #[test]
    fn settings_from_before_per_log_history_use_the_first_mirror_file() {
        let dir = tempfile::tempdir().expect("dir");
        let s = settings(dir.path());
        let mut json = serde_json::to_value(&s).expect("json");
        json.as_object_mut().expect("object").remove("history_file");
        std::fs::write(path(dir.path()), json.to_string()).expect("write");
        let loaded = load(dir.path()).expect("load").expect("settings");
        assert_eq!(loaded.history_file, "mirror.db");
    }

    #[test]
    fn history_file_outside_the_config_directory_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let good = settings(dir.path());
        for bad in ["../elsewhere.db", "/etc/passwd", "sub/mirror.db", ""] {
            let mut s = good.clone();
            s.history_file = bad.into();
            save(dir.path(), &s).expect("save");
            let err = load(dir.path()).expect_err(bad);
            assert!(
                err.contains("history_file must be a file name"),
                "{bad}: {err}"
            );
        }
    }
}
