//! A key in a file, for development only: every listing labels it "software — not
//! hardware-backed", and a policy that requires hardware refuses its signatures.

use std::path::{Path, PathBuf};

use countersign_core::{KeyKind, PublicKey, Signature};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};

use crate::{KeyError, KeyInfo, Signer, files};

/// A software P-256 key stored as PKCS#8 PEM, readable by its owner only.
pub struct SoftwareKey {
    key: SigningKey,
    path: PathBuf,
}

impl SoftwareKey {
    /// Generates a key and writes it to `path` (which must not exist) with mode 0600.
    pub fn generate(path: &Path) -> Result<Self, KeyError> {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Format(e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| KeyError::Io(format!("{}: {e}", dir.display())))?;
        }
        files::write_owner_only(path, pem.as_bytes())
            .map_err(|e| KeyError::Io(format!("{}: {e}", path.display())))?;
        Ok(Self {
            key,
            path: path.to_owned(),
        })
    }

    /// Loads a key file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        files::check_owner_only(path).map_err(|e| KeyError::Io(e.to_string()))?;
        let pem = std::fs::read_to_string(path)
            .map_err(|e| KeyError::Io(format!("{}: {e}", path.display())))?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| KeyError::Format(format!("{}: {e}", path.display())))?;
        Ok(Self {
            key,
            path: path.to_owned(),
        })
    }

    /// Where the key file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Signer for SoftwareKey {
    fn public_key(&self) -> PublicKey {
        PublicKey::from_verifying_key(*self.key.verifying_key())
    }

    fn describe(&self) -> KeyInfo {
        KeyInfo {
            kind: KeyKind::Software,
            label: format!("software key {}", self.path.display()),
            key_id: self.public_key().key_id(),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Signature, KeyError> {
        Ok(Signature::from_p256(self.key.sign(message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_signs_reloads_and_is_labelled_software() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("k.pem");
        let key = SoftwareKey::generate(&path).expect("generate");
        let sig = key.sign(b"payload").expect("sign");
        let again = SoftwareKey::load(&path).expect("load");
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(again.public_key().verify(b"payload", &sig), Ok(()));
        assert!(key.describe().describe().contains("not hardware-backed"));
        assert!(
            SoftwareKey::generate(&path).is_err(),
            "an existing key file is never overwritten"
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("k.pem");
        SoftwareKey::generate(&path).expect("generate");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = SoftwareKey::load(&path).err().expect("refused");
        assert!(err.to_string().contains("readable by others"), "{err}");
    }
}
