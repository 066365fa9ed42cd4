//! What a failed verification reports.

use serde::{Deserialize, Serialize};

/// Which check failed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// A checkpoint is not signed by the pinned service key.
    BadCheckpointSignature,
    /// A new checkpoint does not extend the last verified one (history was rewritten).
    Inconsistent,
    /// The log is smaller than a checkpoint already verified.
    LogShrank,
    /// The events served do not hash to the root the checkpoint commits to.
    RootMismatch,
    /// An event is missing, repeated or out of order.
    SequenceGap,
    /// An event does not check on its own (bad decision or grant signature, unknown key,
    /// digest that does not match its request, malformed body).
    BadEvent,
    /// Another witness cosigned a checkpoint that is not part of the history verified here.
    SplitView,
    /// The service does not serve the cosignature this console has just given it: witness
    /// evidence is being hidden from other consoles.
    CosignatureHidden,
    /// Fewer witnesses than the pinned witness policy requires have cosigned a checkpoint of
    /// the history verified here.
    Unwitnessed,
}

/// A failed verification: what disagreed, in words for people.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("AUDIT LOG VERIFICATION FAILED ({kind:?}): {message}")]
pub struct Alarm {
    /// Which check.
    pub kind: AlarmKind,
    /// What disagreed.
    pub message: String,
}

impl Alarm {
    /// An alarm of `kind`.
    pub fn new(kind: AlarmKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The stable text of the kind, as stored.
    pub fn kind_text(&self) -> &'static str {
        match self.kind {
            AlarmKind::BadCheckpointSignature => "bad_checkpoint_signature",
            AlarmKind::Inconsistent => "inconsistent",
            AlarmKind::LogShrank => "log_shrank",
            AlarmKind::RootMismatch => "root_mismatch",
            AlarmKind::SequenceGap => "sequence_gap",
            AlarmKind::BadEvent => "bad_event",
            AlarmKind::SplitView => "split_view",
            AlarmKind::CosignatureHidden => "cosignature_hidden",
            AlarmKind::Unwitnessed => "unwitnessed",
        }
    }
}
