//! Private key files: written once, readable by their owner only, refused when others can read
//! them.

use std::path::Path;

/// Writes `bytes` to a new file at `path` with mode 0600 and syncs it; never overwrites.
#[cfg(unix)]
pub fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Writes `bytes` to a new file at `path`; never overwrites.
#[cfg(not(unix))]
pub fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Fails when anyone but the owner may read or write the file at `path`.
#[cfg(unix)]
pub fn check_owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is readable by others (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

/// No permission bits to check on this platform.
#[cfg(not(unix))]
pub fn check_owner_only(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
