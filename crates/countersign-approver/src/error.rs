//! Why a key could not be created or opened.

use countersign_keys::KeyError;

/// Why a key could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    /// The backend or device refused (a wrong PIN, a missing token, an unreadable file).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The device answered, but not with the key it should hold: it was replaced, or the key
    /// it made can leave it.
    #[error("{0}")]
    Device(String),
}
