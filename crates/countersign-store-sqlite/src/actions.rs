//! Requests, decisions, grants and outcomes. Every rule that concurrent writers could race
//! (pending, unexpired, distinct approvers, fresh nonce, single use) is checked here, inside the
//! write transaction.

use countersign_core::{
    Action, ActionStatus, AuditEvent, Digest, EncodedEvent, ExecutionOutcome, KeyKind,
    SignedDecision, SignedGrant, Timestamp, Verdict,
};
use countersign_store::{
    ActionRecord, Conflict, DecisionEffects, DecisionOutcome, DecisionRecord, GrantRecord,
    NewAction, NewEvent, StoreError, StoreResult,
};
use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use crate::audit;
use crate::codec::{
    col, corrupt, digest, enum_from, enum_text, json, key_kind, opt_ts, to_json, ts,
};
use crate::query::{execute, select, select_one};

fn record(row: &Row<'_>) -> StoreResult<ActionRecord> {
    let id: String = col(row, "id")?;
    let text: String = col(row, "action_json")?;
    let action: Action = json("action", &text)?;
    let stored_digest = digest(&col::<String>(row, "digest")?)?;
    // The digest is what approvers sign; a row whose content no longer hashes to it was altered.
    // Requests are stored in their canonical encoding, so one hash of the stored text checks it;
    // rows written before that are re-encoded.
    let matches = Action::digest_of_canonical(text.as_bytes()) == stored_digest
        || action.digest().map_err(|e| corrupt("action", e))? == stored_digest;
    if !matches || action.id.to_string() != id {
        return Err(corrupt(
            &format!("action {id}"),
            "content does not match its digest",
        ));
    }
    Ok(ActionRecord {
        action,
        digest: stored_digest,
        status: enum_from("action status", &col::<String>(row, "status")?)?,
        quorum: u32::try_from(col::<i64>(row, "quorum")?).map_err(|e| corrupt("quorum", e))?,
        updated_at: ts(col(row, "updated_at")?)?,
    })
}

/// A request's canonical encoding, as it is stored.
pub(crate) fn canonical_text(action: &Action) -> StoreResult<String> {
    let bytes = countersign_core::to_canonical_vec(action)
        .map_err(|e| StoreError::Backend(format!("request has no canonical form: {e}")))?;
    String::from_utf8(bytes).map_err(|e| StoreError::Backend(e.to_string()))
}

pub(crate) fn create(
    conn: &Connection,
    new: &NewAction,
    text: String,
    events: Vec<EncodedEvent>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let r = &new.record;
    let exists = select_one(
        conn,
        "SELECT 1 FROM actions WHERE id = ?",
        [r.action.id.to_string()],
        |_| Ok(()),
    )?;
    if exists.is_some() {
        return Err(StoreError::Conflict(Conflict::Exists));
    }
    if let Some(key) = &new.idempotency_key
        && select_one(
            conn,
            "SELECT 1 FROM actions WHERE idempotency_key = ?",
            [key],
            |_| Ok(()),
        )?
        .is_some()
    {
        return Err(StoreError::Conflict(Conflict::IdempotencyKeyUsed));
    }
    execute(
        conn,
        "INSERT INTO actions (id, created_at, expires_at, updated_at, status, quorum, digest, action_json, idempotency_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            r.action.id.to_string(),
            r.action.created_at.as_millis(),
            r.action.expires_at.as_millis(),
            now.as_millis(),
            enum_text(&r.status)?,
            i64::from(r.quorum),
            r.digest.to_hex(),
            text,
            new.idempotency_key,
        ],
    )?;
    if let Some(grant) = &new.grant {
        insert_grant(
            conn,
            grant.grant.grant_id,
            grant.grant.request_id,
            &to_json(grant)?,
        )?;
    }
    audit::append(conn, events)
}

pub(crate) fn by_idempotency_key(conn: &Connection, key: &str) -> StoreResult<Option<Uuid>> {
    select_one(
        conn,
        "SELECT id FROM actions WHERE idempotency_key = ?",
        [key],
        |row| crate::codec::uuid(&col::<String>(row, "id")?),
    )
}

fn insert_grant(conn: &Connection, grant_id: Uuid, action_id: Uuid, json: &str) -> StoreResult<()> {
    execute(
        conn,
        "INSERT INTO grants (grant_id, action_id, signed_json) VALUES (?, ?, ?)",
        params![grant_id.to_string(), action_id.to_string(), json],
    )?;
    Ok(())
}

pub(crate) fn get(conn: &Connection, id: Uuid) -> StoreResult<ActionRecord> {
    select_one(
        conn,
        "SELECT * FROM actions WHERE id = ?",
        [id.to_string()],
        record,
    )?
    .ok_or(StoreError::NotFound("action"))
}

pub(crate) fn by_status(
    conn: &Connection,
    status: ActionStatus,
    limit: u32,
) -> StoreResult<Vec<ActionRecord>> {
    select(
        conn,
        "SELECT * FROM actions WHERE status = ? ORDER BY created_at, id LIMIT ?",
        params![enum_text(&status)?, i64::from(limit)],
        record,
    )
}

pub(crate) fn count(conn: &Connection, status: ActionStatus) -> StoreResult<u64> {
    let n = select_one(
        conn,
        "SELECT COUNT(*) AS n FROM actions WHERE status = ?",
        [enum_text(&status)?],
        |row| col::<i64>(row, "n"),
    )?;
    Ok(n.unwrap_or(0) as u64)
}

pub(crate) fn decisions(conn: &Connection, action_id: Uuid) -> StoreResult<Vec<DecisionRecord>> {
    select(
        conn,
        "SELECT signed_json, key_kind, recorded_at FROM decisions WHERE action_id = ? ORDER BY rowid_",
        [action_id.to_string()],
        |row| {
            Ok(DecisionRecord {
                decision: json("decision", &col::<String>(row, "signed_json")?)?,
                key_kind: key_kind(&col::<String>(row, "key_kind")?)?,
                recorded_at: ts(col(row, "recorded_at")?)?,
            })
        },
    )
}

/// What the decision's checks read, in one statement.
struct DecisionState {
    status: ActionStatus,
    expires_at: Timestamp,
    decided: i64,
    nonce_seen: i64,
    approvals: i64,
    key_active: i64,
}

/// A decision made ready for the writer: its stored form and every event it may append,
/// encoded beforehand so the single writer does as little as possible.
pub(crate) struct PreparedDecision {
    pub(crate) signed: SignedDecision,
    pub(crate) json: String,
    pub(crate) key_kind: KeyKind,
    pub(crate) quorum: u32,
    pub(crate) event: EncodedEvent,
    pub(crate) on_quorum: Option<(SignedGrant, String, Vec<EncodedEvent>)>,
    pub(crate) on_deny: Vec<EncodedEvent>,
}

impl PreparedDecision {
    pub(crate) fn new(
        signed: &SignedDecision,
        key_kind: KeyKind,
        effects: DecisionEffects,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Self> {
        let on_quorum = match effects.on_quorum {
            Some((grant, events)) => {
                let json = to_json(&grant)?;
                Some((grant, json, audit::encode(events, now)?))
            }
            None => None,
        };
        Ok(Self {
            signed: signed.clone(),
            json: to_json(signed)?,
            key_kind,
            quorum: effects.quorum,
            event: audit::encode_one(event, now)?,
            on_quorum,
            on_deny: audit::encode(effects.on_deny, now)?,
        })
    }
}

pub(crate) fn record_decision(
    conn: &Connection,
    prepared: PreparedDecision,
    now: Timestamp,
) -> StoreResult<(DecisionOutcome, Vec<AuditEvent>)> {
    let d = &prepared.signed.decision;
    let id = d.request_id.to_string();
    let state = select_one(
        conn,
        "SELECT status, expires_at,
                (SELECT COUNT(*) FROM decisions WHERE action_id = ?1 AND approver_id = ?2) AS decided,
                (SELECT COUNT(*) FROM decisions WHERE nonce = ?3) AS nonce_seen,
                (SELECT COUNT(DISTINCT approver_id) FROM decisions
                  WHERE action_id = ?1 AND verdict = 'approve') AS approvals,
                (SELECT COUNT(*) FROM approver_keys WHERE key_id = ?4 AND approver_id = ?2
                  AND revoked_at IS NULL) AS key_active
         FROM actions WHERE id = ?1",
        params![id, d.approver_id, d.nonce.to_string(), d.key_id.to_string()],
        |row| {
            Ok(DecisionState {
                status: enum_from("action status", &col::<String>(row, "status")?)?,
                expires_at: ts(col(row, "expires_at")?)?,
                decided: col(row, "decided")?,
                nonce_seen: col(row, "nonce_seen")?,
                approvals: col(row, "approvals")?,
                key_active: col(row, "key_active")?,
            })
        },
    )?
    .ok_or(StoreError::NotFound("action"))?;
    // Checked here, in the transaction that records the decision, so a revocation committed
    // a moment earlier always wins (the service's check before it is only a fast refusal).
    if state.key_active == 0 {
        return Err(StoreError::Conflict(Conflict::KeyRevoked));
    }
    if state.status != ActionStatus::Pending {
        return Err(StoreError::Conflict(Conflict::NotPending));
    }
    if now >= state.expires_at {
        return Err(StoreError::Conflict(Conflict::Expired));
    }
    if state.decided > 0 {
        return Err(StoreError::Conflict(Conflict::AlreadyDecided));
    }
    if state.nonce_seen > 0 {
        return Err(StoreError::Conflict(Conflict::NonceReused));
    }
    let prior_approvals = u32::try_from(state.approvals).unwrap_or(u32::MAX);
    execute(
        conn,
        "INSERT INTO decisions (action_id, approver_id, verdict, nonce, key_kind, recorded_at, signed_json)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        params![
            id,
            d.approver_id,
            enum_text(&d.verdict)?,
            d.nonce.to_string(),
            enum_text(&prepared.key_kind)?,
            now.as_millis(),
            prepared.json,
        ],
    )?;

    let mut events = vec![prepared.event];
    let outcome = match d.verdict {
        Verdict::Deny => {
            set_status(conn, &id, ActionStatus::Denied, now)?;
            events.extend(prepared.on_deny);
            DecisionOutcome::Denied
        }
        Verdict::Approve => {
            // This approver had not decided (checked above), so they add one distinct approval.
            let approvals = prior_approvals.saturating_add(1);
            if approvals >= prepared.quorum {
                let (grant, json, more) = prepared.on_quorum.ok_or_else(|| {
                    StoreError::Backend("quorum reached but no grant was prepared".into())
                })?;
                set_status(conn, &id, ActionStatus::Approved, now)?;
                insert_grant(conn, grant.grant.grant_id, grant.grant.request_id, &json)?;
                events.extend(more);
                DecisionOutcome::Approved(grant)
            } else {
                DecisionOutcome::Counted { approvals }
            }
        }
    };
    let appended = audit::append(conn, events)?;
    Ok((outcome, appended))
}

fn set_status(
    conn: &Connection,
    id: &str,
    status: ActionStatus,
    now: Timestamp,
) -> StoreResult<()> {
    execute(
        conn,
        "UPDATE actions SET status = ?, updated_at = ? WHERE id = ?",
        params![enum_text(&status)?, now.as_millis(), id],
    )?;
    Ok(())
}

fn grant_record(row: &Row<'_>) -> StoreResult<GrantRecord> {
    Ok(GrantRecord {
        grant: json("grant", &col::<String>(row, "signed_json")?)?,
        redeemed_at: opt_ts(col(row, "redeemed_at")?)?,
    })
}

pub(crate) fn grant_for_action(
    conn: &Connection,
    action_id: Uuid,
) -> StoreResult<Option<GrantRecord>> {
    select_one(
        conn,
        "SELECT signed_json, redeemed_at FROM grants WHERE action_id = ?",
        [action_id.to_string()],
        grant_record,
    )
}

pub(crate) fn grant_action(conn: &Connection, grant_id: Uuid) -> StoreResult<Option<Uuid>> {
    select_one(
        conn,
        "SELECT action_id FROM grants WHERE grant_id = ?",
        [grant_id.to_string()],
        |row| crate::codec::uuid(&col::<String>(row, "action_id")?),
    )
}

pub(crate) fn redeem_grant(
    conn: &Connection,
    grant_id: Uuid,
    presented: &Digest,
    event: EncodedEvent,
    now: Timestamp,
) -> StoreResult<(GrantRecord, Vec<AuditEvent>)> {
    let mut record = select_one(
        conn,
        "SELECT signed_json, redeemed_at FROM grants WHERE grant_id = ?",
        [grant_id.to_string()],
        grant_record,
    )?
    .ok_or(StoreError::NotFound("grant"))?;
    let g = &record.grant.grant;
    if &g.request_digest != presented {
        return Err(StoreError::Conflict(Conflict::GrantDigestMismatch));
    }
    if record.redeemed_at.is_some() {
        return Err(StoreError::Conflict(Conflict::GrantRedeemed));
    }
    if now < g.not_before || now >= g.expires_at {
        return Err(StoreError::Conflict(Conflict::GrantNotValidNow));
    }
    let done = execute(
        conn,
        "UPDATE grants SET redeemed_at = ? WHERE grant_id = ? AND redeemed_at IS NULL",
        params![now.as_millis(), grant_id.to_string()],
    )?;
    if done != 1 {
        return Err(StoreError::Conflict(Conflict::GrantRedeemed));
    }
    record.redeemed_at = Some(now);
    let events = audit::append(conn, vec![event])?;
    Ok((record, events))
}

pub(crate) fn report_outcome(
    conn: &Connection,
    action_id: Uuid,
    outcome: &ExecutionOutcome,
    event: EncodedEvent,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let redeemed = select_one(
        conn,
        "SELECT redeemed_at FROM grants WHERE action_id = ?",
        [action_id.to_string()],
        |row| col::<Option<i64>>(row, "redeemed_at"),
    )?;
    if !matches!(redeemed, Some(Some(_))) {
        return Err(StoreError::Conflict(Conflict::NoOutcomeExpected));
    }
    let done = execute(
        conn,
        "INSERT INTO outcomes (action_id, outcome_json, reported_at) VALUES (?, ?, ?)
         ON CONFLICT (action_id) DO NOTHING",
        params![action_id.to_string(), to_json(outcome)?, now.as_millis()],
    )?;
    if done != 1 {
        return Err(StoreError::Conflict(Conflict::NoOutcomeExpected));
    }
    audit::append(conn, vec![event])
}

pub(crate) fn outcome(conn: &Connection, action_id: Uuid) -> StoreResult<Option<ExecutionOutcome>> {
    select_one(
        conn,
        "SELECT outcome_json FROM outcomes WHERE action_id = ?",
        [action_id.to_string()],
        |row| json("outcome", &col::<String>(row, "outcome_json")?),
    )
}

/// The pending requests due to expire at `now`, oldest first.
pub(crate) fn due(conn: &Connection, now: Timestamp) -> StoreResult<Vec<Uuid>> {
    select(
        conn,
        "SELECT id FROM actions WHERE status = 'pending' AND expires_at <= ? ORDER BY expires_at, id",
        [now.as_millis()],
        |row| crate::codec::uuid(&col::<String>(row, "id")?),
    )
}

/// Expires each of `due` that is still pending and due, with its event; requests another
/// writer decided or expired in the meantime are skipped, so each expires exactly once.
pub(crate) fn expire(
    conn: &Connection,
    due: Vec<(Uuid, EncodedEvent)>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let mut events = Vec::with_capacity(due.len());
    for (id, event) in due {
        let changed = execute(
            conn,
            "UPDATE actions SET status = 'expired', updated_at = ?1
             WHERE id = ?2 AND status = 'pending' AND expires_at <= ?1",
            params![now.as_millis(), id.to_string()],
        )?;
        if changed == 1 {
            events.push(event);
        }
    }
    audit::append(conn, events)
}

pub(crate) fn cancel(
    conn: &Connection,
    id: Uuid,
    event: EncodedEvent,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let record = get(conn, id)?;
    if record.status != ActionStatus::Pending {
        return Err(StoreError::Conflict(Conflict::NotPending));
    }
    set_status(conn, &id.to_string(), ActionStatus::Cancelled, now)?;
    audit::append(conn, vec![event])
}

pub(crate) fn next_expiry(conn: &Connection) -> StoreResult<Option<Timestamp>> {
    let ms = select_one(
        conn,
        "SELECT MIN(expires_at) AS next FROM actions WHERE status = 'pending'",
        [],
        |row| col::<Option<i64>>(row, "next"),
    )?;
    opt_ts(ms.flatten())
}
