//! Approvers as witnesses of the log: a console's cosignature of a checkpoint it verified is
//! kept only when it verifies over the service's own checkpoint of that size, so every stored
//! cosignature is evidence of what that console saw.

use countersign_core::{Signature, SignedCheckpoint};
use countersign_store::{Cosignature, Session};

use super::{DomainError, DomainResult};
use crate::state::AppState;

/// Keeps `session`'s approver's `signature` over the checkpoint of `tree_size`.
pub async fn cosign(
    state: &AppState,
    session: &Session,
    tree_size: u64,
    signature: Signature,
) -> DomainResult<()> {
    let note = state
        .store
        .checkpoint_note(tree_size)
        .await?
        .ok_or(DomainError::NotFound("checkpoint"))?;
    let mut signed = SignedCheckpoint::parse_note(&note)
        .map_err(|e| DomainError::internal("stored checkpoint", e))?;
    let key = state
        .store
        .key(&session.key_id)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| {
            DomainError::Unauthenticated("the session's key is unknown or revoked".into())
        })?;
    signed.add_cosignature(&session.approver_id, &key.public_key, signature);
    signed
        .verify_cosignature(&session.approver_id, &key.public_key)
        .map_err(|e| {
            DomainError::refused(
                "bad_signature",
                format!(
                    "the cosignature does not verify over checkpoint {}: {e}",
                    tree_size
                ),
            )
        })?;
    state
        .store
        .save_cosignature(&Cosignature {
            tree_size,
            approver_id: session.approver_id.clone(),
            key_id: session.key_id,
            signature,
            received_at: state.now(),
        })
        .await?;
    tracing::info!(approver = %session.approver_id, tree_size = tree_size, "checkpoint cosigned");
    Ok(())
}
