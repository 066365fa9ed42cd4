//! Signed checkpoints: the log's size and root at an instant, in the C2SP `tlog-checkpoint`
//! text form, signed as a C2SP `signed-note`.
//!
//! ```text
//! countersign.example/log            origin
//! 42                                 tree size
//! qINS1GRFhWHwdkUeqLEoP4y...=        root hash, base64
//! time 2026-11-21T10:00:00.000Z      extension line: when it was signed
//!
//! — countersign.example/log AbCdEf...  signature line(s)
//! ```
//!
//! Signatures are ECDSA P-256/SHA-256 over `countersign/checkpoint/v1\n || note text`. That
//! prefix is not part of any signature type C2SP assigns, so the signature lines use type
//! `0xff` followed by the identifier `countersign/checkpoint/v1`, and the key id is
//! `SHA-256(key name || 0x0A || 0xff || "countersign/checkpoint/v1" || SPKI DER)[:4]`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::domain;
use crate::ecdsa::{PublicKey, Signature, SignatureError};
use crate::timestamp::Timestamp;

/// Signature type bytes that go into a checkpoint key id.
const SIGNATURE_TYPE: &[u8] = b"\xffcountersign/checkpoint/v1";
/// Signature type bytes that go into a witness cosignature key id: a distinct type, so a
/// log signature can never pass for a witness's and the other way round.
const COSIGNATURE_TYPE: &[u8] = b"\xffcountersign/cosignature/v1";
/// Most signature lines a note may carry (C2SP asks verifiers to accept at least 16).
const MAX_SIGNATURES: usize = 64;

/// Why a checkpoint note was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// The note text is not a well-formed checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// No signature from the expected key.
    #[error("checkpoint carries no signature by {0}")]
    Unsigned(String),
    /// A signature by the expected key does not verify.
    #[error("checkpoint signature by {name} does not verify: {source}")]
    BadSignature {
        /// Key name.
        name: String,
        /// The failure.
        source: SignatureError,
    },
}

/// The log's state at one instant.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The log's unique name, schema-less URL style.
    pub origin: String,
    /// Number of leaves.
    pub tree_size: u64,
    /// Merkle root of those leaves.
    pub root_hash: Digest,
    /// When it was signed.
    pub timestamp: Timestamp,
}

impl Checkpoint {
    /// The note text, ending in a newline.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.tree_size,
            BASE64.encode(self.root_hash.0),
            self.timestamp
        )
    }

    /// Parses note text produced by [`Checkpoint::to_text`], strictly.
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("text must end in a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, time] = lines.as_slice() else {
            return Err(CheckpointError::Malformed(
                "expected origin, size, root and time lines",
            ));
        };
        check_origin(origin)?;
        let canonical_size = !size.is_empty() && (size == &"0" || !size.starts_with('0'));
        let tree_size = size
            .parse::<u64>()
            .ok()
            .filter(|_| canonical_size && size.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(CheckpointError::Malformed(
                "tree size is not a decimal number",
            ))?;
        let root = BASE64
            .decode(root)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(CheckpointError::Malformed(
                "root hash is not 32 bytes of base64",
            ))?;
        let timestamp = time
            .strip_prefix("time ")
            .and_then(|t| Timestamp::parse(t).ok())
            .ok_or(CheckpointError::Malformed(
                "time line is not `time <RFC 3339>`",
            ))?;
        let checkpoint = Self {
            origin: (*origin).to_owned(),
            tree_size,
            root_hash: Digest(root),
            timestamp,
        };
        // One spelling per checkpoint: re-encoding must give back the same bytes.
        if checkpoint.to_text() != text {
            return Err(CheckpointError::Malformed("not in canonical form"));
        }
        Ok(checkpoint)
    }

    /// The bytes the log key signs.
    pub fn signing_payload(&self) -> Vec<u8> {
        domain::prefixed(domain::CHECKPOINT, self.to_text().as_bytes())
    }

    /// The bytes a witness signs to say "I verified this checkpoint is consistent with every
    /// checkpoint I saw before".
    pub fn cosigning_payload(&self) -> Vec<u8> {
        domain::prefixed(domain::COSIGNATURE, self.to_text().as_bytes())
    }
}

fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    let ok = !origin.is_empty()
        && origin.len() <= 256
        && !origin.starts_with('\u{2014}')
        && origin
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CheckpointError::Malformed(
            "origin must be 1 to 256 printable characters without spaces",
        ))
    }
}

/// The 4-byte key id of `key` under `name` for checkpoint signatures.
pub fn note_key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    key_id_of_type(name, SIGNATURE_TYPE, key)
}

/// The 4-byte key id of a witness's `key` under `name` for cosignatures.
pub fn cosignature_key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    key_id_of_type(name, COSIGNATURE_TYPE, key)
}

fn key_id_of_type(name: &str, signature_type: &[u8], key: &PublicKey) -> [u8; 4] {
    let mut preimage = Vec::new();
    preimage.extend_from_slice(name.as_bytes());
    preimage.push(b'\n');
    preimage.extend_from_slice(signature_type);
    preimage.extend_from_slice(&key.to_spki_der());
    let hash = Digest::of(&preimage);
    [hash.0[0], hash.0[1], hash.0[2], hash.0[3]]
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// 4-byte key id.
    pub key_id: [u8; 4],
    /// The signature.
    pub signature: Signature,
}

/// A checkpoint with its signature lines (the log's own, then any witnesses').
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Signatures, in note order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedCheckpoint {
    /// A checkpoint signed once, by `name`'s `key`.
    pub fn new(checkpoint: Checkpoint, name: &str, key: &PublicKey, signature: Signature) -> Self {
        let mut signed = Self {
            checkpoint,
            signatures: Vec::new(),
        };
        signed.add_signature(name, key, signature);
        signed
    }

    /// Adds a log signature line.
    pub fn add_signature(&mut self, name: &str, key: &PublicKey, signature: Signature) {
        self.signatures.push(NoteSignature {
            name: name.to_owned(),
            key_id: note_key_id(name, key),
            signature,
        });
    }

    /// Adds a witness's cosignature line (signed over [`Checkpoint::cosigning_payload`]).
    pub fn add_cosignature(&mut self, name: &str, key: &PublicKey, signature: Signature) {
        self.signatures.push(NoteSignature {
            name: name.to_owned(),
            key_id: cosignature_key_id(name, key),
            signature,
        });
    }

    /// The whole signed note.
    pub fn to_note(&self) -> String {
        let mut note = self.checkpoint.to_text();
        note.push('\n');
        for s in &self.signatures {
            let mut blob = s.key_id.to_vec();
            blob.extend_from_slice(&s.signature.to_der());
            note.push_str(&format!("\u{2014} {} {}\n", s.name, BASE64.encode(blob)));
        }
        note
    }

    /// Parses a signed note. Signatures are parsed, not verified: call [`Self::verify`].
    pub fn parse_note(note: &str) -> Result<Self, CheckpointError> {
        let (text, sigs) = note.split_once("\n\n").ok_or(CheckpointError::Malformed(
            "no blank line before the signatures",
        ))?;
        let checkpoint = Checkpoint::parse_text(&format!("{text}\n"))?;
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("note must end in a newline"))?;
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(CheckpointError::Malformed("too many signatures"));
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or(CheckpointError::Malformed(
                    "signature line must start with an em dash",
                ))?;
            let (name, blob) = rest.split_once(' ').ok_or(CheckpointError::Malformed(
                "signature line needs a name and a signature",
            ))?;
            check_origin(name)?;
            let blob = BASE64
                .decode(blob)
                .map_err(|_| CheckpointError::Malformed("signature is not base64"))?;
            if blob.len() < 5 {
                return Err(CheckpointError::Malformed("signature too short"));
            }
            let signature = Signature::from_der(&blob[4..])
                .map_err(|_| CheckpointError::Malformed("signature is not DER ECDSA"))?;
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id: [blob[0], blob[1], blob[2], blob[3]],
                signature,
            });
        }
        if signatures.is_empty() {
            return Err(CheckpointError::Malformed("no signature lines"));
        }
        Ok(Self {
            checkpoint,
            signatures,
        })
    }

    /// Verifies the signature(s) of `name`'s `key`. Lines from unknown keys are ignored, as
    /// C2SP requires; at least one line from this key must exist and all of them must verify.
    pub fn verify(&self, name: &str, key: &PublicKey) -> Result<(), CheckpointError> {
        self.verify_lines(
            name,
            key,
            note_key_id(name, key),
            &self.checkpoint.signing_payload(),
        )
    }

    /// Verifies the cosignature(s) of witness `name`'s `key`, by the same rules as
    /// [`Self::verify`].
    pub fn verify_cosignature(&self, name: &str, key: &PublicKey) -> Result<(), CheckpointError> {
        self.verify_lines(
            name,
            key,
            cosignature_key_id(name, key),
            &self.checkpoint.cosigning_payload(),
        )
    }

    fn verify_lines(
        &self,
        name: &str,
        key: &PublicKey,
        key_id: [u8; 4],
        payload: &[u8],
    ) -> Result<(), CheckpointError> {
        let mut found = false;
        for s in self
            .signatures
            .iter()
            .filter(|s| s.name == name && s.key_id == key_id)
        {
            found = true;
            key.verify(payload, &s.signature)
                .map_err(|source| CheckpointError::BadSignature {
                    name: name.to_owned(),
                    source,
                })?;
        }
        if found {
            Ok(())
        } else {
            Err(CheckpointError::Unsigned(name.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecdsa::tests::{sign, test_key};

    const LOG: &str = "countersign.test/log";

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: LOG.into(),
            tree_size: 42,
            root_hash: Digest::of(b"root"),
            timestamp: Timestamp::from_millis(1_795_000_000_000).expect("in range"),
        }
    }

    fn signed() -> (SignedCheckpoint, PublicKey) {
        let key = test_key(11);
        let public = PublicKey::from_verifying_key(*key.verifying_key());
        let cp = checkpoint();
        let sig = sign(&key, &cp.signing_payload());
        (SignedCheckpoint::new(cp, LOG, &public, sig), public)
    }

    #[test]
    fn note_round_trips_and_verifies() {
        let (signed, key) = signed();
        let note = signed.to_note();
        assert!(note.starts_with("countersign.test/log\n42\n"), "{note}");
        assert!(note.contains("\ntime 2026-11-18T11:06:40.000Z\n\n\u{2014} countersign.test/log "));
        let parsed = SignedCheckpoint::parse_note(&note).expect("parses");
        assert_eq!(parsed, signed);
        assert_eq!(parsed.verify(LOG, &key), Ok(()));
    }

    #[test]
    fn changed_size_fails_verification() {
        let (signed, key) = signed();
        let note = signed.to_note().replacen("\n42\n", "\n43\n", 1);
        let parsed = SignedCheckpoint::parse_note(&note).expect("parses");
        assert!(matches!(
            parsed.verify(LOG, &key),
            Err(CheckpointError::BadSignature { .. })
        ));
    }

    #[test]
    fn unknown_signers_are_ignored_but_one_known_is_required() {
        let (mut signed, key) = signed();
        let witness = test_key(12);
        let witness_pub = PublicKey::from_verifying_key(*witness.verifying_key());
        let sig = sign(&witness, &signed.checkpoint.signing_payload());
        signed.add_signature("witness.test/w1", &witness_pub, sig);
        let parsed = SignedCheckpoint::parse_note(&signed.to_note()).expect("parses");
        assert_eq!(parsed.verify(LOG, &key), Ok(()));
        assert_eq!(parsed.verify("witness.test/w1", &witness_pub), Ok(()));
        assert_eq!(
            parsed.verify("witness.test/w2", &witness_pub),
            Err(CheckpointError::Unsigned("witness.test/w2".into()))
        );
    }

    #[test]
    fn cosignature_verifies_only_as_a_cosignature() {
        let (mut signed, log_key) = signed();
        let witness = test_key(14);
        let witness_pub = PublicKey::from_verifying_key(*witness.verifying_key());
        let sig = sign(&witness, &signed.checkpoint.cosigning_payload());
        signed.add_cosignature("bob", &witness_pub, sig);
        let parsed = SignedCheckpoint::parse_note(&signed.to_note()).expect("parses");
        assert_eq!(parsed.verify(LOG, &log_key), Ok(()));
        assert_eq!(parsed.verify_cosignature("bob", &witness_pub), Ok(()));
        // The same key's line is not a log signature, and a log signature is not a cosignature.
        assert_eq!(
            parsed.verify("bob", &witness_pub),
            Err(CheckpointError::Unsigned("bob".into()))
        );
        assert_eq!(
            parsed.verify_cosignature(LOG, &log_key),
            Err(CheckpointError::Unsigned(LOG.into()))
        );
        // A cosignature made over the log's payload does not verify as a cosignature.
        let (mut other, _) = self::signed();
        let wrong = sign(&witness, &other.checkpoint.signing_payload());
        other.add_cosignature("bob", &witness_pub, wrong);
        assert!(matches!(
            other.verify_cosignature("bob", &witness_pub),
            Err(CheckpointError::BadSignature { .. })
        ));
    }

    #[test]
    fn non_canonical_text_is_rejected() {
        let text = checkpoint().to_text();
        for bad in [
            text.replacen("\n42\n", "\n042\n", 1),
            text.replacen("\n42\n", "\n+42\n", 1),
            text.trim_end().to_owned(),
            format!("{text}extra\n"),
            text.replacen(LOG, "has space", 1),
        ] {
            assert!(Checkpoint::parse_text(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(Checkpoint::parse_text(&text), Ok(checkpoint()));
    }

    #[test]
    fn signature_by_another_key_under_the_log_name_is_ignored() {
        let (signed, key) = signed();
        let impostor = test_key(13);
        let impostor_pub = PublicKey::from_verifying_key(*impostor.verifying_key());
        let sig = sign(&impostor, &signed.checkpoint.signing_payload());
        let forged = SignedCheckpoint::new(signed.checkpoint.clone(), LOG, &impostor_pub, sig);
        assert_eq!(
            forged.verify(LOG, &key),
            Err(CheckpointError::Unsigned(LOG.into()))
        );
    }
}
