//! Errors as the window sees them: a stable code to act on and a message for people.

use countersign_client::ClientError;
use countersign_client::approver::ApproverError;
use countersign_keys::KeyError;
use countersign_mirror::MirrorError;
use countersign_report::ReportError;
use serde::ser::SerializeStruct as _;

/// Why a console command failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The settings file could not be read or written.
    #[error("{0}")]
    Settings(String),
    /// No key was created yet.
    #[error("create a key first")]
    NoKey,
    /// No key is enrolled yet.
    #[error("this console is not enrolled yet")]
    NotEnrolled,
    /// The key is not unlocked.
    #[error("unlock your key first")]
    Locked,
    /// The request is no longer waiting for me.
    #[error("this request is no longer waiting for your decision")]
    NotInInbox,
    /// The device failed.
    #[error("{0}")]
    Device(String),
    /// The key backend refused.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The service refused or was unreachable.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Preparing the decision failed.
    #[error(transparent)]
    Approver(#[from] ApproverError),
    /// The audit mirror failed, or its verification raised an alarm.
    #[error(transparent)]
    History(MirrorError),
    /// An export failed or was cancelled.
    #[error(transparent)]
    Report(ReportError),
    /// Writing an export failed.
    #[error("{0}")]
    Export(String),
    /// Signing in at the organisation's OpenID Provider failed.
    #[error(transparent)]
    SignIn(countersign_approver::signin::SignInError),
}

impl From<countersign_approver::signin::SignInError> for ConsoleError {
    fn from(e: countersign_approver::signin::SignInError) -> Self {
        use countersign_approver::signin::SignInError;
        match e {
            SignInError::Service(e) => ConsoleError::Client(e),
            SignInError::Enrol(e) => ConsoleError::Approver(e),
            other => ConsoleError::SignIn(other),
        }
    }
}

impl From<countersign_approver::KeyProblem> for ConsoleError {
    fn from(e: countersign_approver::KeyProblem) -> Self {
        match e {
            countersign_approver::KeyProblem::Key(e) => ConsoleError::Key(e),
            countersign_approver::KeyProblem::Device(message) => ConsoleError::Device(message),
        }
    }
}

impl ConsoleError {
    /// The code the window acts on.
    pub fn code(&self) -> String {
        match self {
            ConsoleError::Settings(_) => "settings".into(),
            ConsoleError::NoKey => "no_key".into(),
            ConsoleError::NotEnrolled => "not_enrolled".into(),
            ConsoleError::Locked => "locked".into(),
            ConsoleError::NotInInbox => "not_in_inbox".into(),
            ConsoleError::Device(_) => "device".into(),
            ConsoleError::Key(e) => match e {
                KeyError::PinCancelled(_) => "pin_required".into(),
                KeyError::WrongPin { .. } => "wrong_pin".into(),
                KeyError::PinLocked(_) => "pin_locked".into(),
                _ => "device".into(),
            },
            ConsoleError::Client(e) | ConsoleError::Approver(ApproverError::Client(e)) => e
                .code()
                .map(str::to_owned)
                .unwrap_or_else(|| "unreachable".into()),
            ConsoleError::Approver(ApproverError::DigestMismatch) => "digest_mismatch".into(),
            ConsoleError::Approver(_) => "signing".into(),
            ConsoleError::History(MirrorError::Alarm(_)) => "audit_alarm".into(),
            ConsoleError::History(MirrorError::Invalid(_)) => "invalid".into(),
            ConsoleError::History(MirrorError::Client(e)) => e
                .code()
                .map(str::to_owned)
                .unwrap_or_else(|| "unreachable".into()),
            ConsoleError::History(_) => "history".into(),
            ConsoleError::Report(ReportError::Cancelled) => "cancelled".into(),
            ConsoleError::Report(_) | ConsoleError::Export(_) => "export".into(),
            ConsoleError::SignIn(countersign_approver::signin::SignInError::Declined) => {
                "sign_in_declined".into()
            }
            ConsoleError::SignIn(_) => "sign_in".into(),
        }
    }
}

impl serde::Serialize for ConsoleError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ConsoleError", 2)?;
        s.serialize_field("code", &self.code())?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}
