//! Witnessing: cosign the checkpoint this console verified, and check that every other
//! witness's latest cosigned checkpoint is part of the same history. A service that shows one
//! history to one console and another to the next cannot make both checks pass.

use std::collections::HashMap;

use countersign_client::Client;
use countersign_core::KeyId;
use countersign_core::api::CosignatureRequest;
use countersign_core::checkpoint::{NoteSignature, SignedCheckpoint, cosignature_key_id};
use serde::Serialize;

use crate::alarm::{Alarm, AlarmKind};
use crate::database::Trust;
use crate::sync::Witness;
use crate::verifier::KnownKey;
use crate::{MirrorError, MirrorResult};

/// Another witness's checkpoint found consistent with this mirror's.
#[derive(Clone, Debug, Serialize)]
pub struct WitnessCheck {
    /// The witness.
    pub approver_id: String,
    /// The size it cosigned.
    pub tree_size: u64,
}

fn split(message: String) -> MirrorError {
    MirrorError::Alarm(Alarm::new(AlarmKind::SplitView, message))
}

pub(crate) async fn cosign_and_compare(
    client: &Client,
    trust: &Trust,
    ours: &SignedCheckpoint,
    witness: Option<&Witness<'_>>,
    keys: &HashMap<KeyId, KnownKey>,
) -> MirrorResult<(bool, Vec<WitnessCheck>, Vec<NoteSignature>)> {
    let ours_cp = &ours.checkpoint;
    let mut cosigned = false;
    // Verified cosignature lines of exactly our checkpoint, ours included.
    let mut lines = Vec::new();
    if let Some(w) = witness
        && ours_cp.tree_size > 0
    {
        match (w.sign)(&ours_cp.cosigning_payload()) {
            Ok(signature) => match client
                .cosign(&CosignatureRequest {
                    tree_size: ours_cp.tree_size,
                    signature,
                })
                .await
            {
                Ok(()) => {
                    cosigned = true;
                    let mut mine = ours.clone();
                    mine.signatures.clear();
                    mine.add_cosignature(&w.approver_id, &w.public_key, signature);
                    lines.extend(mine.signatures);
                }
                Err(e) => tracing::warn!(error = %e, "the service did not take our cosignature"),
            },
            Err(e) => tracing::warn!(error = %e, "could not cosign the checkpoint"),
        }
    }
    let mut checked = Vec::new();
    let views = client.cosignatures().await?;
    // What this console has just cosigned must be what the service shows everyone else: a
    // service that drops it (or serves an older one) hides witness evidence.
    if let Some(w) = witness.filter(|_| cosigned) {
        let mine = w.public_key.key_id();
        let served = views.iter().find(|v| v.key_id == mine).map(|v| v.tree_size);
        if served.is_none_or(|size| size < ours_cp.tree_size) {
            return Err(MirrorError::Alarm(Alarm::new(
                AlarmKind::CosignatureHidden,
                format!(
                    "the service accepted this console's cosignature of checkpoint {} but serves {} for it: witness evidence is hidden from other consoles",
                    ours_cp.tree_size,
                    served.map_or("nothing".to_owned(), |s| format!("checkpoint {s}"))
                ),
            )));
        }
    }
    for view in views {
        let Ok(theirs) = SignedCheckpoint::parse_note(&view.note) else {
            tracing::warn!(witness = %view.approver_id, "unparseable cosigned checkpoint ignored");
            continue;
        };
        // Only a cosignature by a key the verified log enrolled to that witness counts: the
        // service could invent any other.
        let Some(key) = keys.get(&view.key_id).filter(|k| {
            k.approver_id == view.approver_id
                && theirs
                    .signatures
                    .iter()
                    .any(|s| s.key_id == cosignature_key_id(&view.approver_id, &k.public_key))
        }) else {
            tracing::warn!(witness = %view.approver_id, "cosignature by a key the log did not enrol ignored");
            continue;
        };
        if theirs.verify(&trust.origin, &trust.server_key).is_err()
            || theirs
                .verify_cosignature(&view.approver_id, &key.public_key)
                .is_err()
        {
            tracing::warn!(witness = %view.approver_id, "cosigned checkpoint that does not verify ignored");
            continue;
        }
        let t = &theirs.checkpoint;
        if t == ours_cp {
            let id = cosignature_key_id(&view.approver_id, &key.public_key);
            lines.extend(
                theirs
                    .signatures
                    .iter()
                    .filter(|s| s.name == view.approver_id && s.key_id == id)
                    .cloned(),
            );
        }
        let consistent = if t.tree_size == ours_cp.tree_size {
            t.root_hash == ours_cp.root_hash
        } else if t.tree_size == 0 {
            true
        } else {
            let (small, large) = if t.tree_size < ours_cp.tree_size {
                (t, ours_cp)
            } else {
                (ours_cp, t)
            };
            match client
                .consistency_proof(small.tree_size, large.tree_size)
                .await
            {
                Ok(p) => {
                    p.from_size == small.tree_size
                        && p.to_size == large.tree_size
                        && p.verify(&small.root_hash, &large.root_hash).is_ok()
                }
                Err(_) => false,
            }
        };
        if !consistent {
            return Err(split(format!(
                "{} verified and cosigned checkpoint {} (root {}), which is not part of the history verified here (checkpoint {}, root {}): the service shows different histories to different people",
                view.approver_id,
                t.tree_size,
                t.root_hash.to_hex(),
                ours_cp.tree_size,
                ours_cp.root_hash.to_hex()
            )));
        }
        checked.push(WitnessCheck {
            approver_id: view.approver_id,
            tree_size: t.tree_size,
        });
    }
    Ok((cosigned, checked, lines))
}
