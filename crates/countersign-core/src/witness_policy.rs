//! A witness policy: which witnesses must have cosigned a checkpoint of this log, and how many
//! of them, before a mirror counts it as verified. Written by whoever operates the deployment
//! (signed with the service key, so a mirror that pinned the key can tell it is theirs) and
//! distributed out of band — a pinned file — so a service that rewrites its log and drops the
//! witnesses' cosignatures cannot also lower the bar.

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalError, to_canonical_vec};
use crate::domain;
use crate::ecdsa::{KeyId, PublicKey, Signature};
use crate::timestamp::Timestamp;

/// The format name.
pub const FORMAT: &str = "countersign-witness-policy/v1";
/// Most witnesses one policy may name.
pub const MAX_WITNESSES: usize = 64;

/// One witness: its name in cosignature lines (an approver id) and one of its keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyWitness {
    /// The witness's name.
    pub name: String,
    /// A key whose cosignatures count for it.
    pub key_id: KeyId,
}

/// What a mirror requires of a checkpoint's cosignatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessPolicy {
    /// Always [`FORMAT`].
    pub format: String,
    /// The log it is for.
    pub origin: String,
    /// How many distinct witnesses (by name) must have cosigned.
    pub threshold: u32,
    /// The witnesses; a name may appear with several keys.
    pub witnesses: Vec<PolicyWitness>,
    /// When it was made.
    pub issued_at: Timestamp,
}

/// A policy and the service key's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedWitnessPolicy {
    /// The policy.
    pub policy: WitnessPolicy,
    /// Over [`WitnessPolicy::signing_payload`].
    pub signature: Signature,
}

impl WitnessPolicy {
    /// `countersign/witness-policy/v1\n || JCS(policy)`.
    pub fn signing_payload(&self) -> Result<Vec<u8>, CanonicalError> {
        Ok(domain::prefixed(
            domain::WITNESS_POLICY,
            &to_canonical_vec(self)?,
        ))
    }

    /// Distinct witness names.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.witnesses.iter().map(|w| w.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Whether `key_id` counts for witness `name`.
    pub fn counts(&self, name: &str, key_id: &KeyId) -> bool {
        self.witnesses
            .iter()
            .any(|w| w.name == name && w.key_id == *key_id)
    }

    /// Checks its shape: the format, a threshold between one and the number of witnesses,
    /// at most [`MAX_WITNESSES`] entries, no key listed twice.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("not a witness policy (format {:?})", self.format));
        }
        if self.witnesses.is_empty() || self.witnesses.len() > MAX_WITNESSES {
            return Err(format!("a policy names 1 to {MAX_WITNESSES} witness keys"));
        }
        let names = self.names().len() as u32;
        if self.threshold == 0 || self.threshold > names {
            return Err(format!(
                "threshold {} is outside 1..={names} (the witnesses it names)",
                self.threshold
            ));
        }
        let mut keys: Vec<&KeyId> = self.witnesses.iter().map(|w| &w.key_id).collect();
        keys.sort_unstable_by_key(|k| k.to_string());
        keys.dedup();
        if keys.len() != self.witnesses.len() {
            return Err("a key is listed twice".into());
        }
        Ok(())
    }
}

impl SignedWitnessPolicy {
    /// Checks the policy is well formed, for `origin`, and signed by `server_key`.
    pub fn verify(&self, origin: &str, server_key: &PublicKey) -> Result<(), String> {
        self.policy.check()?;
        if self.policy.origin != origin {
            return Err(format!(
                "the witness policy is for the log {}, not {origin}",
                self.policy.origin
            ));
        }
        let payload = self
            .policy
            .signing_payload()
            .map_err(|e| format!("witness policy: {e}"))?;
        server_key
            .verify(&payload, &self.signature)
            .map_err(|_| "the witness policy is not signed by this log's service key".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn witness(name: &str, n: u8) -> PolicyWitness {
        PolicyWitness {
            name: name.into(),
            key_id: KeyId(crate::Digest([n; 32])),
        }
    }

    fn policy(threshold: u32, witnesses: Vec<PolicyWitness>) -> WitnessPolicy {
        WitnessPolicy {
            format: FORMAT.into(),
            origin: "countersign.test/log".into(),
            threshold,
            witnesses,
            issued_at: Timestamp::from_millis(0).expect("time"),
        }
    }

    #[test]
    fn threshold_counts_distinct_witnesses_and_keys_appear_once() {
        // Two keys of one witness are one witness.
        let two_keys = vec![witness("alice", 1), witness("alice", 2), witness("bob", 3)];
        assert!(policy(2, two_keys.clone()).check().is_ok());
        assert!(policy(3, two_keys).check().is_err());
        assert!(policy(0, vec![witness("alice", 1)]).check().is_err());
        assert!(
            policy(1, vec![witness("alice", 1), witness("bob", 1)])
                .check()
                .is_err()
        );
        assert!(policy(1, Vec::new()).check().is_err());
    }

    #[test]
    fn a_policy_verifies_only_for_its_log_and_its_service_key() {
        use p256::ecdsa::SigningKey;
        use p256::ecdsa::signature::Signer as _;
        let service = SigningKey::from_bytes(&[7; 32].into()).expect("key");
        let public = PublicKey::from_verifying_key(*service.verifying_key());
        let p = policy(1, vec![witness("alice", 1)]);
        let signed = SignedWitnessPolicy {
            signature: Signature::from_p256(service.sign(&p.signing_payload().expect("payload"))),
            policy: p,
        };
        assert!(signed.verify("countersign.test/log", &public).is_ok());
        assert!(signed.verify("another/log", &public).is_err());
        let other = SigningKey::from_bytes(&[8; 32].into()).expect("key");
        let other = PublicKey::from_verifying_key(*other.verifying_key());
        assert!(signed.verify("countersign.test/log", &other).is_err());
        let mut lowered = signed.clone();
        lowered.policy.threshold = 0;
        assert!(lowered.verify("countersign.test/log", &public).is_err());
    }
}
