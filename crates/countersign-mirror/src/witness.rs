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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct WitnessCheck {
    /// The witness.
    pub approver_id: String,
    /// The key it cosigned with.
    pub key_id: KeyId,
    /// The size it cosigned.
    pub tree_size: u64,
}

/// How far the pinned witness policy's witnesses vouch for the history verified here: the
/// largest size that at least `threshold` of them cosigned (a checkpoint they cosigned that is
/// consistent with ours vouches for every size up to its own); an alarm when too few did.
pub(crate) fn witnessed_size(
    policy: &countersign_core::witness_policy::WitnessPolicy,
    checks: &[WitnessCheck],
    ours: Option<(&str, KeyId, u64)>,
) -> MirrorResult<u64> {
    let mut best: HashMap<&str, u64> = HashMap::new();
    let ours = ours.map(|(name, key_id, size)| WitnessCheck {
        approver_id: name.to_owned(),
        key_id,
        tree_size: size,
    });
    for c in checks.iter().chain(ours.as_ref()) {
        if policy.counts(&c.approver_id, &c.key_id) {
            let size = best.entry(c.approver_id.as_str()).or_default();
            *size = (*size).max(c.tree_size);
        }
    }
    let mut sizes: Vec<u64> = best.values().copied().collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let threshold = policy.threshold as usize;
    match sizes.get(threshold.saturating_sub(1)) {
        Some(size) if threshold > 0 => Ok(*size),
        _ => Err(MirrorError::Alarm(Alarm::new(
            AlarmKind::Unwitnessed,
            format!(
                "the witness policy needs cosignatures from {threshold} of {} ({}), but {} of them cosigned a checkpoint of the history verified here ({}): the service may be hiding a rewritten history",
                policy.names().len(),
                policy.names().join(", "),
                best.len(),
                if best.is_empty() {
                    "none".to_owned()
                } else {
                    let mut who: Vec<String> =
                        best.iter().map(|(n, s)| format!("{n} at {s}")).collect();
                    who.sort();
                    who.join(", ")
                }
            ),
        ))),
    }
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
            key_id: view.key_id,
            tree_size: t.tree_size,
        });
    }
    Ok((cosigned, checked, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_core::witness_policy::{FORMAT, PolicyWitness, WitnessPolicy};

    fn key(n: u8) -> KeyId {
        KeyId(countersign_core::Digest([n; 32]))
    }

    fn policy(threshold: u32) -> WitnessPolicy {
        WitnessPolicy {
            format: FORMAT.into(),
            origin: "o".into(),
            threshold,
            witnesses: ["alice", "bob", "carol"]
                .iter()
                .enumerate()
                .map(|(i, n)| PolicyWitness {
                    name: (*n).into(),
                    key_id: key(i as u8 + 1),
                })
                .collect(),
            issued_at: countersign_core::Timestamp::from_millis(0).expect("time"),
        }
    }

    fn check(name: &str, k: u8, size: u64) -> WitnessCheck {
        WitnessCheck {
            approver_id: name.into(),
            key_id: key(k),
            tree_size: size,
        }
    }

    #[test]
    fn the_threshold_th_largest_cosigned_size_is_witnessed() {
        let checks = [
            check("alice", 1, 10),
            check("bob", 2, 7),
            check("bob", 2, 4),
        ];
        assert_eq!(witnessed_size(&policy(2), &checks, None).expect("two"), 7);
        assert_eq!(witnessed_size(&policy(1), &checks, None).expect("one"), 10);
        // This console's own cosignature counts when it is a policy witness.
        let with_ours = witnessed_size(&policy(3), &checks, Some(("carol", key(3), 12)));
        assert_eq!(with_ours.expect("three"), 7);
    }

    #[test]
    fn too_few_witnesses_or_keys_the_policy_does_not_name_raise_the_alarm() {
        // carol's cosignature by a key the policy does not list, and a stranger's, count for nothing.
        let checks = [
            check("alice", 1, 10),
            check("carol", 9, 10),
            check("mallory", 4, 10),
        ];
        let Err(MirrorError::Alarm(alarm)) = witnessed_size(&policy(2), &checks, None) else {
            panic!("expected an alarm")
        };
        assert_eq!(alarm.kind, AlarmKind::Unwitnessed);
        assert!(alarm.message.contains("alice at 10"), "{}", alarm.message);
    }
}
