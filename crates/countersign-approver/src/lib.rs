//! The approver's side of Countersign, for every program an approver uses (the `countersign`
//! CLI and the desktop console): a signing key is created where the approver chose and recorded
//! with its public key, opened only if the device still holds that key, and enrolled with a
//! one-time code or a sign-in with the organisation's OpenID Provider ([`signin`]); the live inbox follows the service over the approver stream; the approver's copy of the audit log is kept verified and cosigned (every
//! approver a witness), and audit reports are written from it.

pub mod enrolment;
mod error;
pub mod export;
pub mod history;
pub mod inbox;
pub mod key;
pub mod live;
pub mod signin;

pub use error::KeyProblem;
pub use key::{KeyRecord, NewKey};
