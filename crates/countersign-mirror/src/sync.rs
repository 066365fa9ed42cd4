//! Incremental, verified sync from the service.
//!
//! 1. Fetch the latest checkpoint; check its signature with the pinned service key and that it
//!    extends the last verified checkpoint (consistency proof). 2. Fetch the events after the
//!    verified prefix in chunks; check each event on its own and its sequence number, hash it
//!    into the Merkle frontier, and at the end of a chunk prove the recomputed root is a prefix
//!    of the checkpoint (equal to its root at the end). Only then is the chunk written, with the
//!    new trust state, in one transaction. 3. Cosign the checkpoint and compare it with every
//!    other witness's latest cosigned checkpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use countersign_client::approver::now;
use countersign_client::{Client, RawEventsPage};
use countersign_core::checkpoint::SignedCheckpoint;
use countersign_core::merkle::Frontier;
use countersign_core::{Checkpoint, KeyId, Signature};
use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::alarm::{Alarm, AlarmKind};
use crate::database::{Trust, write_trust};
use crate::index::{self, Batch};
use crate::verifier::{EventChecker, KnownKey, Prepared, prepare_all, verify_all};
use crate::witness::{self, WitnessCheck};
use crate::{Mirror, MirrorError, MirrorResult};

/// Events verified and written per transaction.
const CHUNK: u64 = 20_000;
/// Events asked for per request (the service's maximum).
const PAGE: u32 = 1000;

/// The approver whose console witnesses the log: it cosigns each checkpoint it verified with
/// its session key.
pub struct Witness<'a> {
    /// The approver (the witness's name in cosignature lines).
    pub approver_id: String,
    /// The session's key.
    pub public_key: countersign_core::PublicKey,
    /// Signs the checkpoint's cosigning payload with the session's key.
    pub sign: &'a (dyn Fn(&[u8]) -> Result<Signature, String> + Send + Sync),
}

/// How far a sync is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Progress {
    /// Events verified and stored.
    pub verified: u64,
    /// The checkpoint's size.
    pub target: u64,
}

/// What a sync did.
#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    /// Verified size before.
    pub from_size: u64,
    /// Verified size after.
    pub to_size: u64,
    /// The checkpoint now trusted.
    pub checkpoint: Checkpoint,
    /// Whether this console's cosignature was accepted.
    pub cosigned: bool,
    /// Other witnesses' checkpoints found consistent with this one.
    pub witnesses: Vec<WitnessCheck>,
    /// With a pinned witness policy: the largest size its threshold of witnesses vouch for.
    pub witnessed_size: Option<u64>,
}

fn alarm(kind: AlarmKind, message: impl Into<String>) -> MirrorError {
    MirrorError::Alarm(Alarm::new(kind, message))
}

impl Mirror {
    /// Brings the mirror up to the service's latest checkpoint, verifying everything (see the
    /// module documentation). `client` must carry an approver session. A failed check is
    /// recorded as an alarm and returned as [`MirrorError::Alarm`]; what was verified before it
    /// stays, nothing after it is written.
    pub async fn sync(
        &self,
        client: &Client,
        witness: Option<&Witness<'_>>,
        progress: &(dyn Fn(Progress) + Send + Sync),
        cancel: Option<&AtomicBool>,
    ) -> MirrorResult<SyncReport> {
        let result = self.sync_inner(client, witness, progress, cancel).await;
        if let Err(MirrorError::Alarm(a)) = &result {
            self.raise(a, now()).await?;
        }
        result
    }

    async fn sync_inner(
        &self,
        client: &Client,
        witness: Option<&Witness<'_>>,
        progress: &(dyn Fn(Progress) + Send + Sync),
        cancel: Option<&AtomicBool>,
    ) -> MirrorResult<SyncReport> {
        // The log is known by its origin and key, not by URL (a load balancer may move).
        let served = client.server_key().await?;
        let mut trust = match self.trust().await? {
            Some(t) if t.origin != served.name || t.server_key != served.public_key => {
                return Err(MirrorError::Invalid(format!(
                    "this mirror holds the log {} (service key {}), but {} serves the log {} (key {}): use another mirror file, or find out why the service key changed",
                    t.origin,
                    t.server_key.key_id().short(),
                    client.base(),
                    served.name,
                    served.public_key.key_id().short()
                )));
            }
            Some(mut t) => {
                t.server_url = client.base().to_owned();
                t
            }
            // Trust on first use, like SSH: the key is pinned from here on, and every later
            // checkpoint must be signed by it.
            None => Trust {
                server_url: client.base().to_owned(),
                origin: served.name,
                server_key: served.public_key,
                checkpoint: None,
                verified_size: 0,
                frontier: Frontier::new(),
            },
        };
        let from_size = trust.verified_size;
        let signed = self.fetch_checkpoint(client, &trust).await?;
        let target = signed.checkpoint.tree_size;
        if trust.verified_size > target {
            return Err(alarm(
                AlarmKind::LogShrank,
                format!(
                    "the service's checkpoint has {target} events but {} were verified before",
                    trust.verified_size
                ),
            ));
        }
        trust.checkpoint = Some(signed.clone());
        let mut keys = self.load_keys().await?;
        progress(Progress {
            verified: trust.verified_size,
            target,
        });
        while trust.verified_size < target {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(MirrorError::Cancelled);
            }
            let end = (trust.verified_size + CHUNK).min(target);
            self.sync_chunk(client, &mut trust, &signed.checkpoint, end, &mut keys)
                .await?;
            progress(Progress {
                verified: trust.verified_size,
                target,
            });
        }
        let mut conn = self.pool.begin().await?;
        write_trust(&mut conn, &trust).await?;
        sqlx::query(
            "INSERT INTO checkpoints (tree_size, note, verified_at) VALUES (?, ?, ?)
             ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(target as i64)
        .bind(signed.to_note())
        .bind(now().as_millis())
        .execute(&mut *conn)
        .await?;
        conn.commit().await?;

        let (cosigned, witnesses, lines) =
            witness::cosign_and_compare(client, &trust, &signed, witness, &keys).await?;
        if !lines.is_empty() {
            // Keep the cosignatures of this very checkpoint with it, for exports.
            let mut with_lines = signed.clone();
            for line in lines {
                if !with_lines.signatures.contains(&line) {
                    with_lines.signatures.push(line);
                }
            }
            trust.checkpoint = Some(with_lines.clone());
            let mut conn = self.pool.begin().await?;
            write_trust(&mut conn, &trust).await?;
            sqlx::query("UPDATE checkpoints SET note = ? WHERE tree_size = ?")
                .bind(with_lines.to_note())
                .bind(target as i64)
                .execute(&mut *conn)
                .await?;
            conn.commit().await?;
        }
        let witnessed_size = match self.witness_policy().await? {
            None => None,
            Some(policy) => {
                policy
                    .verify(&trust.origin, &trust.server_key)
                    .map_err(MirrorError::Invalid)?;
                let ours = witness
                    .filter(|_| cosigned)
                    .map(|w| (w.approver_id.as_str(), w.public_key.key_id(), target));
                Some(witness::witnessed_size(&policy.policy, &witnesses, ours)?)
            }
        };
        Ok(SyncReport {
            from_size,
            to_size: trust.verified_size,
            checkpoint: signed.checkpoint,
            cosigned,
            witnesses,
            witnessed_size,
        })
    }

    /// The latest checkpoint, checked against the pinned key and the last trusted checkpoint.
    async fn fetch_checkpoint(
        &self,
        client: &Client,
        trust: &Trust,
    ) -> MirrorResult<SignedCheckpoint> {
        let view = client.checkpoint().await?;
        let signed = SignedCheckpoint::parse_note(&view.note).map_err(|e| {
            alarm(
                AlarmKind::BadCheckpointSignature,
                format!("the service's checkpoint does not parse: {e}"),
            )
        })?;
        signed
            .verify(&trust.origin, &trust.server_key)
            .map_err(|e| {
                alarm(
                    AlarmKind::BadCheckpointSignature,
                    format!(
                        "the service's checkpoint is not signed by the pinned key {}: {e}",
                        trust.server_key.key_id().short()
                    ),
                )
            })?;
        let new = &signed.checkpoint;
        if new.origin != trust.origin {
            return Err(alarm(
                AlarmKind::BadCheckpointSignature,
                format!("checkpoint is for log {}, not {}", new.origin, trust.origin),
            ));
        }
        let Some(old) = trust.checkpoint.as_ref().map(|c| &c.checkpoint) else {
            return Ok(signed);
        };
        if new.tree_size < old.tree_size {
            return Err(alarm(
                AlarmKind::LogShrank,
                format!(
                    "the service now shows {} events; checkpoint {} was verified before",
                    new.tree_size, old.tree_size
                ),
            ));
        }
        if new.tree_size == old.tree_size {
            if new.root_hash != old.root_hash {
                return Err(alarm(
                    AlarmKind::Inconsistent,
                    format!(
                        "checkpoint {} now has root {} but root {} was verified before: the history was rewritten",
                        new.tree_size,
                        new.root_hash.to_hex(),
                        old.root_hash.to_hex()
                    ),
                ));
            }
            return Ok(signed);
        }
        if old.tree_size > 0 {
            let proof = client
                .consistency_proof(old.tree_size, new.tree_size)
                .await?;
            if proof.from_size != old.tree_size || proof.to_size != new.tree_size {
                return Err(alarm(
                    AlarmKind::Inconsistent,
                    "the service answered a consistency proof for other sizes",
                ));
            }
            proof.verify(&old.root_hash, &new.root_hash).map_err(|e| {
                alarm(
                    AlarmKind::Inconsistent,
                    format!(
                        "checkpoint {} does not extend the verified checkpoint {}: the history was rewritten ({e})",
                        new.tree_size, old.tree_size
                    ),
                )
            })?;
        }
        Ok(signed)
    }

    async fn load_keys(&self) -> MirrorResult<HashMap<KeyId, KnownKey>> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(String, String, String, String, i64, Option<i64>, Option<String>)> =
            sqlx::query_as(
                "SELECT key_id, approver_id, kind, public_key, enrolled_seq, revoked_seq, attested_by FROM keys",
            )
        .fetch_all(&self.pool)
        .await?;
        let corrupt = |what: &str| MirrorError::Corrupt(format!("stored key: {what}"));
        rows.into_iter()
            .map(
                |(id, approver_id, kind, key, enrolled, revoked, attested_by)| {
                    let key_id: KeyId = id.parse().map_err(|_| corrupt("id"))?;
                    Ok((
                        key_id,
                        KnownKey {
                            approver_id,
                            kind: serde_json::from_value(serde_json::Value::String(kind))
                                .map_err(|_| corrupt("kind"))?,
                            public_key: serde_json::from_value(serde_json::Value::String(key))
                                .map_err(|_| corrupt("public key"))?,
                            enrolled_seq: enrolled as u64,
                            revoked_seq: revoked.map(|r| r as u64),
                            attested_by,
                        },
                    ))
                },
            )
            .collect()
    }

    /// Verifies and writes events `[trust.verified_size, end)`.
    async fn sync_chunk(
        &self,
        client: &Client,
        trust: &mut Trust,
        checkpoint: &Checkpoint,
        end: u64,
        keys: &mut HashMap<KeyId, KnownKey>,
    ) -> MirrorResult<()> {
        let mut tx = self.pool.begin().await?;
        let mut checker =
            EventChecker::new(trust.server_key.clone(), keys.clone()).without_grant_signatures();
        let mut frontier = trust.frontier.clone();
        let mut batch = Batch::default();
        let mut verifying = Vec::new();
        let mut next = trust.verified_size;
        // The next page is fetched while this one is checked.
        let mut fetching = Some(tokio::spawn(fetch(client.clone(), next.checked_sub(1))));
        while next < end {
            let page = match fetching.take() {
                Some(handle) => handle
                    .await
                    .map_err(|e| MirrorError::Database(format!("fetch task: {e}")))??,
                None => client.audit_raw(next.checked_sub(1), PAGE).await?,
            };
            let served = page.events.len() as u64;
            if served == 0 {
                return Err(alarm(
                    AlarmKind::SequenceGap,
                    format!(
                        "checkpoint {} commits to {} events but the service serves none from {next}",
                        checkpoint.tree_size, checkpoint.tree_size
                    ),
                ));
            }
            // A gapless page ends at `next + served - 1`; if it does not, the sequence check
            // below raises the alarm and the prefetched page is dropped.
            if next + served < end {
                fetching = Some(tokio::spawn(fetch(client.clone(), Some(next + served - 1))));
            }
            let mut prepared = tokio::task::spawn_blocking(move || prepare_all(page.events))
                .await
                .map_err(|e| MirrorError::Database(format!("prepare task: {e}")))?
                .map_err(MirrorError::Alarm)?;
            prepared.retain(|p| p.event.seq < end);
            let missing = batch.missing(prepared.iter().map(|p| &p.event));
            if !missing.is_empty() {
                batch.add_loaded(index::load(&mut tx, &missing).await?);
            }
            for id in &missing {
                if let Some(row) = batch.row(id) {
                    checker.add_request(*id, row.known()?);
                }
            }
            let mut jobs = Vec::new();
            for p in &prepared {
                if p.event.seq != next {
                    return Err(alarm(
                        AlarmKind::SequenceGap,
                        format!(
                            "expected event {next} but the service served event {}: an event was dropped or reordered",
                            p.event.seq
                        ),
                    ));
                }
                checker
                    .check_deferred(&p.event, p.content_digest, &mut jobs)
                    .map_err(MirrorError::Alarm)?;
                frontier.push(p.hash);
                batch.apply(&p.event);
                next += 1;
            }
            // Signatures are checked while the page is written and the next one prepared;
            // every check is awaited before the chunk commits, so nothing unverified lands.
            verifying.push(tokio::task::spawn_blocking(move || verify_all(&jobs)));
            insert_events(&mut tx, &prepared).await?;
        }
        for check in verifying {
            check
                .await
                .map_err(|e| MirrorError::Database(format!("verify task: {e}")))?
                .map_err(MirrorError::Alarm)?;
        }
        if let Some(handle) = fetching {
            handle.abort();
        }
        let root = frontier.root();
        if end == checkpoint.tree_size {
            if root != checkpoint.root_hash {
                return Err(alarm(
                    AlarmKind::RootMismatch,
                    format!(
                        "the {end} events served hash to root {} but checkpoint {} commits to {}: an event was changed, dropped or reordered",
                        root.to_hex(),
                        checkpoint.tree_size,
                        checkpoint.root_hash.to_hex()
                    ),
                ));
            }
        } else {
            let proof = client.consistency_proof(end, checkpoint.tree_size).await?;
            let ok = proof.from_size == end
                && proof.to_size == checkpoint.tree_size
                && proof.verify(&root, &checkpoint.root_hash).is_ok();
            if !ok {
                return Err(alarm(
                    AlarmKind::RootMismatch,
                    format!(
                        "events 0..{end} as served are not the start of checkpoint {}: an event was changed, dropped or reordered",
                        checkpoint.tree_size
                    ),
                ));
            }
        }
        batch.write(&mut tx).await?;
        write_keys(&mut tx, checker.keys(), keys).await?;
        trust.verified_size = end;
        trust.frontier = frontier;
        write_trust(&mut tx, trust).await?;
        tx.commit().await?;
        *keys = checker.keys().clone();
        Ok(())
    }
}

async fn fetch(client: Client, after: Option<u64>) -> MirrorResult<RawEventsPage> {
    Ok(client.audit_raw(after, PAGE).await?)
}

async fn insert_events(conn: &mut SqliteConnection, rows: &[Prepared]) -> MirrorResult<()> {
    for chunk in rows.chunks(5000) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO events (seq, recorded_at, kind, action_id, leaf_hash, body) ",
        );
        q.push_values(chunk, |mut b, p| {
            b.push_bind(p.event.seq as i64)
                .push_bind(p.event.recorded_at.as_millis())
                .push_bind(p.event.event.type_name())
                .push_bind(p.event.event.action_id().map(|id| id.to_string()))
                .push_bind(p.hash.0.to_vec())
                .push_bind(String::from_utf8_lossy(&p.bytes).into_owned());
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn write_keys(
    conn: &mut SqliteConnection,
    now: &HashMap<KeyId, KnownKey>,
    before: &HashMap<KeyId, KnownKey>,
) -> MirrorResult<()> {
    for (id, key) in now {
        if before.get(id) == Some(key) {
            continue;
        }
        let text = |v: serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_default();
        sqlx::query(
            "INSERT INTO keys (key_id, approver_id, kind, public_key, enrolled_seq, revoked_seq, attested_by)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (key_id) DO UPDATE SET revoked_seq = excluded.revoked_seq",
        )
        .bind(id.to_string())
        .bind(&key.approver_id)
        .bind(text(serde_json::to_value(key.kind).unwrap_or_default()))
        .bind(text(
            serde_json::to_value(&key.public_key).unwrap_or_default(),
        ))
        .bind(key.enrolled_seq as i64)
        .bind(key.revoked_seq.map(|r| r as i64))
        .bind(&key.attested_by)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
