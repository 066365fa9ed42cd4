//! The evidence bundle: JSON Lines that an auditor verifies offline with
//! `countersign audit verify`, needing nothing but the file (and, to pin it, the service's key
//! id).
//!
//! ```text
//! {"type":"header","format":"countersign-evidence/v1","origin":…,"server_key":…,"checkpoint":"<signed note>",…}
//! {"type":"event","index":17,"proof":["<base64>",…],"event":{…the event's RFC 8785 bytes…}}
//! …                                        events in log order: every event of every request
//!                                          in the export, and every key enrolment/revocation
//! {"type":"end","events":N,"sha256":"<hex of every byte before this line>","signature":"…"}
//! ```
//!
//! Each event's `index` and `proof` with the header's checkpoint form a C2SP `tlog-proof`
//! (RFC 9162 inclusion proof against a signed checkpoint). The last line is the exporting
//! approver's signature (key enrolled in the log, so proven by the bundle itself) over the
//! digest of everything before it: a changed byte anywhere fails.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use countersign_core::checkpoint::{SignedCheckpoint, cosignature_key_id};
use countersign_core::{
    AuditEvent, Checkpoint, Digest, EventKind, InclusionProof, KeyId, PublicKey, Signature,
    Timestamp, domain, merkle,
};
use countersign_mirror::verifier::EventChecker;
use countersign_mirror::{Mirror, SearchQuery};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{Control, Pages, ReportError};

/// The format name in the header.
pub const FORMAT: &str = "countersign-evidence/v1";

/// Who exports, and how they sign.
pub struct Exporter<'a> {
    /// The approver.
    pub approver_id: String,
    /// Their enrolled key.
    pub key_id: KeyId,
    /// Signs with that key.
    pub sign: &'a (dyn Fn(&[u8]) -> Result<Signature, String> + Send + Sync),
}

/// The exporter as named in the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedBy {
    /// The approver.
    pub approver_id: String,
    /// Their key.
    pub key_id: KeyId,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    origin: String,
    server_key: PublicKey,
    checkpoint: String,
    exported_at: Timestamp,
    exported_by: ExportedBy,
    filters: SearchQuery,
    requests: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Header(Box<Header>),
    Event {
        index: u64,
        proof: Vec<String>,
        event: serde_json::Value,
    },
    End {
        events: u64,
        sha256: String,
        signature: Signature,
    },
}

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Written {
    /// Requests.
    pub requests: u64,
    /// Event lines.
    pub events: u64,
    /// The anchoring checkpoint's size.
    pub tree_size: u64,
}

fn payload(sha256: &[u8]) -> Vec<u8> {
    domain::prefixed(domain::EVIDENCE, sha256)
}

/// Writes the evidence for the requests matching `q`.
pub async fn write<W: Write>(
    mirror: &Mirror,
    q: &SearchQuery,
    out: W,
    exporter: &Exporter<'_>,
    now: Timestamp,
    control: Control<'_>,
) -> Result<Written, ReportError> {
    let anchor = mirror.anchor().await?;
    let size = anchor.checkpoint.checkpoint.tree_size;
    let tree = mirror.tree().await?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut hasher = Sha256::new();
    let mut emit = |line: &[u8], out: &mut std::io::BufWriter<W>| -> std::io::Result<()> {
        hasher.update(line);
        hasher.update(b"\n");
        out.write_all(line)?;
        out.write_all(b"\n")
    };
    let header = Line::Header(Box::new(Header {
        format: FORMAT.into(),
        origin: anchor.origin.clone(),
        server_key: anchor.server_key.clone(),
        checkpoint: anchor.checkpoint.to_note(),
        exported_at: now,
        exported_by: ExportedBy {
            approver_id: exporter.approver_id.clone(),
            key_id: exporter.key_id,
        },
        filters: q.clone(),
        requests: mirror.count(q).await?,
    }));
    emit(
        &serde_json::to_vec(&header).map_err(std::io::Error::other)?,
        &mut out,
    )?;

    // Events must come out in log order, but a request's later events can follow the next
    // page's requests: buffer them and write what no later page can precede.
    let mut pending: BTreeMap<u64, String> = key_events(mirror, q, exporter).await?;
    let mut events = 0u64;
    let mut write_until = |limit: u64,
                           pending: &mut BTreeMap<u64, String>,
                           out: &mut std::io::BufWriter<W>|
     -> Result<(), ReportError> {
        while let Some(entry) = pending.first_entry() {
            if *entry.key() >= limit {
                break;
            }
            let (seq, body) = entry.remove_entry();
            let proof = tree
                .inclusion_proof(seq, size)
                .map_err(|e| ReportError::Io(std::io::Error::other(e.to_string())))?;
            let proof: Vec<String> = proof.iter().map(|h| BASE64.encode(h.0)).collect();
            // The event is written as its stored bytes, verbatim.
            let line = format!(
                "{{\"type\":\"event\",\"index\":{seq},\"proof\":{},\"event\":{body}}}",
                serde_json::to_string(&proof).map_err(std::io::Error::other)?
            );
            emit(line.as_bytes(), out)?;
            events += 1;
        }
        Ok(())
    };
    let mut pages = Pages::new(mirror, q, control).await?;
    while let Some(page) = pages.next().await? {
        if let Some(first) = page.first() {
            write_until(first.seq as u64, &mut pending, &mut out)?;
        }
        let ids: Vec<String> = page.iter().map(|r| r.id.clone()).collect();
        for e in mirror.events_of(&ids).await? {
            pending.insert(e.seq, e.body);
        }
    }
    let requests = pages.done();
    write_until(u64::MAX, &mut pending, &mut out)?;
    let digest = hasher.finalize();
    let signature = (exporter.sign)(&payload(&digest)).map_err(ReportError::Sign)?;
    let end = Line::End {
        events,
        sha256: hex_of(&digest),
        signature,
    };
    out.write_all(&serde_json::to_vec(&end).map_err(std::io::Error::other)?)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(Written {
        requests,
        events,
        tree_size: size,
    })
}

/// The key enrolments and revocations the bundle carries, by position: every one, or for one
/// request (a per-action proof) only those of the keys that decided it and of the exporter's
/// key — all its checks need, and a file an auditor can attach per sample.
async fn key_events(
    mirror: &Mirror,
    q: &SearchQuery,
    exporter: &Exporter<'_>,
) -> Result<BTreeMap<u64, String>, ReportError> {
    let all = mirror.key_events().await?;
    let Some(id) = &q.id else {
        return Ok(all.into_iter().map(|e| (e.seq, e.body)).collect());
    };
    let parse = |body: &str| serde_json::from_str::<AuditEvent>(body).ok();
    let mut keys = vec![exporter.key_id];
    for e in mirror.events_of(std::slice::from_ref(id)).await? {
        if let Some(AuditEvent {
            event: EventKind::DecisionRecorded { decision, .. },
            ..
        }) = parse(&e.body)
        {
            keys.push(decision.decision.key_id);
        }
    }
    Ok(all
        .into_iter()
        .filter(|e| {
            matches!(parse(&e.body), Some(AuditEvent {
                event: EventKind::KeyEnrolled { key_id, .. } | EventKind::KeyRevoked { key_id, .. },
                ..
            }) if keys.contains(&key_id))
        })
        .map(|e| (e.seq, e.body))
        .collect())
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a bundle did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("evidence bundle does not verify: line {line}: {message}")]
pub struct BundleError {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What failed.
    pub message: String,
}

/// What a verified bundle proves.
#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    /// The log.
    pub origin: String,
    /// The service key that signed the checkpoint (compare with the service's published id).
    pub server_key_id: KeyId,
    /// The checkpoint every event is proven against.
    pub checkpoint: Checkpoint,
    /// Witnesses whose cosignature of that checkpoint verified against keys the bundle proves.
    pub cosigned_by: Vec<String>,
    /// Who exported it (their signature verified).
    pub exported_by: ExportedBy,
    /// When.
    pub exported_at: Timestamp,
    /// The filters it was exported with.
    pub filters: SearchQuery,
    /// Requests in it.
    pub requests: u64,
    /// Events in it, each proven included and checked.
    pub events: u64,
}

/// Verifies a bundle offline; `pinned` (when given) must be the service key's id.
pub fn verify<R: BufRead>(input: R, pinned: Option<&KeyId>) -> Result<Verified, BundleError> {
    let mut hasher = Sha256::new();
    let mut header = None;
    let mut checker: Option<EventChecker> = None;
    let mut last_index: Option<u64> = None;
    let mut events = 0u64;
    let mut requests = 0u64;
    let mut end = None;
    for (i, line) in input.split(b'\n').enumerate() {
        let n = i + 1;
        let fail = |message: String| BundleError { line: n, message };
        let line = line.map_err(|e| fail(format!("cannot read: {e}")))?;
        if end.is_some() {
            if line.is_empty() {
                continue;
            }
            return Err(fail("data after the end line".into()));
        }
        let parsed: Line =
            serde_json::from_slice(&line).map_err(|e| fail(format!("not a bundle line: {e}")))?;
        match parsed {
            Line::Header(h) => {
                let Header {
                    format,
                    origin,
                    server_key,
                    checkpoint,
                    exported_at,
                    exported_by,
                    filters,
                    requests: declared,
                } = *h;
                if n != 1 {
                    return Err(fail("a second header".into()));
                }
                if format != FORMAT {
                    return Err(fail(format!(
                        "unknown format {format:?}, expected {FORMAT}"
                    )));
                }
                if let Some(pin) = pinned
                    && server_key.key_id() != *pin
                {
                    return Err(fail(format!(
                        "signed by service key {}, not the expected {}",
                        server_key.key_id(),
                        pin
                    )));
                }
                let cp = SignedCheckpoint::parse_note(&checkpoint)
                    .map_err(|e| fail(format!("checkpoint: {e}")))?;
                cp.verify(&origin, &server_key)
                    .map_err(|e| fail(format!("checkpoint: {e}")))?;
                checker = Some(EventChecker::new(server_key.clone(), HashMap::new()));
                header = Some((
                    origin,
                    server_key,
                    cp,
                    exported_at,
                    exported_by,
                    filters,
                    declared,
                ));
            }
            Line::Event {
                index,
                proof,
                event,
            } => {
                let (Some((_, _, cp, ..)), Some(checker)) = (&header, checker.as_mut()) else {
                    return Err(fail("an event before the header".into()));
                };
                if last_index.is_some_and(|l| index <= l) {
                    return Err(fail(format!("event {index} is out of log order")));
                }
                last_index = Some(index);
                let event: AuditEvent = serde_json::from_value(event)
                    .map_err(|e| fail(format!("event {index}: {e}")))?;
                if event.seq != index {
                    return Err(fail(format!("event {} is listed as {index}", event.seq)));
                }
                let bytes = event
                    .leaf_bytes()
                    .map_err(|e| fail(format!("event {index}: {e}")))?;
                let hashes = proof
                    .iter()
                    .map(|h| {
                        BASE64
                            .decode(h)
                            .ok()
                            .and_then(|b| <[u8; 32]>::try_from(b).ok())
                            .map(Digest)
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        fail(format!(
                            "event {index}: proof hash is not 32 bytes of base64"
                        ))
                    })?;
                InclusionProof {
                    leaf_index: index,
                    tree_size: cp.checkpoint.tree_size,
                    hashes,
                }
                .verify(&merkle::leaf_hash(&bytes), &cp.checkpoint.root_hash)
                .map_err(|e| {
                    fail(format!(
                        "event {index} is not in checkpoint {}: {e}",
                        cp.checkpoint.tree_size
                    ))
                })?;
                checker.check(&event).map_err(|a| fail(a.message))?;
                if matches!(event.event, EventKind::RequestCreated { .. }) {
                    requests += 1;
                }
                events += 1;
            }
            Line::End {
                events: declared,
                sha256,
                signature,
            } => {
                let digest = hasher.clone().finalize();
                if sha256 != hex_of(&digest) {
                    return Err(fail(
                        "the digest does not match the bundle: it was changed".into(),
                    ));
                }
                if declared != events {
                    return Err(fail(format!(
                        "declares {declared} events but holds {events}"
                    )));
                }
                end = Some((digest, signature));
                continue;
            }
        }
        hasher.update(&line);
        hasher.update(b"\n");
    }
    let fail = |message: &str| BundleError {
        line: 0,
        message: message.into(),
    };
    let (
        Some((origin, server_key, cp, exported_at, exported_by, filters, declared)),
        Some(checker),
    ) = (header, checker)
    else {
        return Err(fail("no header: not an evidence bundle"));
    };
    let Some((digest, signature)) = end else {
        return Err(fail("no end line: the bundle is truncated"));
    };
    if declared != requests {
        return Err(fail("the header's request count does not match the events"));
    }
    let exporter = checker
        .keys()
        .get(&exported_by.key_id)
        .filter(|k| k.approver_id == exported_by.approver_id)
        .ok_or_else(|| fail("the exporter's key is not enrolled in the bundle's log"))?;
    exporter
        .public_key
        .verify(&payload(&digest), &signature)
        .map_err(|_| fail("the exporter's signature does not verify: the bundle was changed"))?;
    let cosigned_by = cp
        .signatures
        .iter()
        .filter_map(|line| {
            checker.keys().values().find(|k| {
                k.approver_id == line.name
                    && cosignature_key_id(&line.name, &k.public_key) == line.key_id
                    && cp.verify_cosignature(&line.name, &k.public_key).is_ok()
            })?;
            Some(line.name.clone())
        })
        .collect();
    Ok(Verified {
        origin,
        server_key_id: server_key.key_id(),
        checkpoint: cp.checkpoint,
        cosigned_by,
        exported_by,
        exported_at,
        filters,
        requests,
        events,
    })
}
