//! The approver's copy of the audit log: brought up to date and verified by the mirror, and
//! the checkpoint it verified cosigned with the approver's key, so every approver is a witness
//! of the log (a service that shows two approvers different logs is caught).

use countersign_client::Client;
use countersign_client::approver::{ApproverError, open_session};
use countersign_core::KeyId;
use countersign_keys::Signer;
use countersign_mirror::{Mirror, MirrorError, Progress, SyncReport, Witness};

/// Why a sync did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No session could be opened with the service.
    #[error(transparent)]
    Session(#[from] ApproverError),
    /// The mirror failed, or its verification raised an alarm.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// Who syncs: the approver, their enrolled key and the service.
pub struct Approver<'a> {
    /// The service's base URL.
    pub server: &'a str,
    /// The approver's id there.
    pub approver_id: &'a str,
    /// Their enrolled key's id.
    pub key_id: KeyId,
    /// That key, opened.
    pub signer: &'a dyn Signer,
}

/// Opens a session as `approver`, brings `mirror` up to date with everything verified, and
/// cosigns the checkpoint it verified; `progress` hears how far it got.
pub async fn sync_as_witness(
    mirror: &Mirror,
    approver: &Approver<'_>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<SyncReport, SyncError> {
    let sign = |m: &[u8]| approver.signer.sign(m).map_err(|e| e.to_string());
    let client = Client::new(approver.server).map_err(ApproverError::from)?;
    let client = open_session(&client, approver.key_id, sign).await?;
    let witness = Witness {
        approver_id: approver.approver_id.to_owned(),
        public_key: approver.signer.public_key(),
        sign: &sign,
    };
    Ok(mirror.sync(&client, Some(&witness), progress, None).await?)
}
