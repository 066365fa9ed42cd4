//! Requests, decisions, grants and outcomes. Every rule that concurrent writers could race
//! (pending, unexpired, distinct approvers, fresh nonce, single use) is checked here, inside the
//! write transaction.

use countersign_core::{
    Action, ActionStatus, AuditEvent, Digest, ExecutionOutcome, KeyKind, SignedDecision,
    SignedGrant, Timestamp, Verdict,
};
use countersign_store::{
    ActionRecord, Conflict, DecisionEffects, DecisionOutcome, DecisionRecord, GrantRecord,
    NewAction, NewEvent, StoreError, StoreResult,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::audit;
use crate::codec::{
    backend, corrupt, digest, enum_from, enum_text, json, key_kind, opt_ts, to_json, ts,
};

fn record(row: &PgRow) -> StoreResult<ActionRecord> {
    let id: String = row.get("id");
    let action: Action = json("action", row.get("action_json"))?;
    let stored_digest = digest(row.get("digest"))?;
    // The digest is what approvers sign; a row whose content no longer hashes to it was altered.
    let actual = action.digest().map_err(|e| corrupt("action", e))?;
    if actual != stored_digest || action.id.to_string() != id {
        return Err(corrupt(
            &format!("action {id}"),
            "content does not match its digest",
        ));
    }
    Ok(ActionRecord {
        action,
        digest: stored_digest,
        status: enum_from("action status", row.get("status"))?,
        quorum: u32::try_from(row.get::<i64, _>("quorum")).map_err(|e| corrupt("quorum", e))?,
        updated_at: ts(row.get("updated_at"))?,
    })
}

pub(crate) async fn create(
    conn: &mut PgConnection,
    new: &NewAction,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let r = &new.record;
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM actions WHERE id = $1")
        .bind(r.action.id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    if exists.is_some() {
        return Err(StoreError::Conflict(Conflict::Exists));
    }
    if let Some(key) = &new.idempotency_key {
        let used: Option<String> =
            sqlx::query_scalar("SELECT id FROM actions WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
        if used.is_some() {
            return Err(StoreError::Conflict(Conflict::IdempotencyKeyUsed));
        }
    }
    sqlx::query(
        "INSERT INTO actions (id, created_at, expires_at, updated_at, status, quorum, digest, action_json, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(r.action.id.to_string())
    .bind(r.action.created_at.as_millis())
    .bind(r.action.expires_at.as_millis())
    .bind(now.as_millis())
    .bind(enum_text(&r.status)?)
    .bind(i64::from(r.quorum))
    .bind(r.digest.to_hex())
    .bind(to_json(&r.action)?)
    .bind(&new.idempotency_key)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if let Some(grant) = &new.grant {
        insert_grant(&mut *conn, grant).await?;
    }
    audit::append(conn, events, now).await
}

pub(crate) async fn by_idempotency_key(
    conn: &mut PgConnection,
    key: &str,
) -> StoreResult<Option<Uuid>> {
    let id: Option<String> =
        sqlx::query_scalar("SELECT id FROM actions WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(conn)
            .await
            .map_err(backend)?;
    id.map(|id| crate::codec::uuid(&id)).transpose()
}

async fn insert_grant(conn: &mut PgConnection, grant: &SignedGrant) -> StoreResult<()> {
    sqlx::query("INSERT INTO grants (grant_id, action_id, signed_json) VALUES ($1, $2, $3)")
        .bind(grant.grant.grant_id.to_string())
        .bind(grant.grant.request_id.to_string())
        .bind(to_json(grant)?)
        .execute(conn)
        .await
        .map_err(backend)?;
    Ok(())
}

pub(crate) async fn get(conn: &mut PgConnection, id: Uuid) -> StoreResult<ActionRecord> {
    let row = sqlx::query("SELECT * FROM actions WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("action"))?;
    record(&row)
}

pub(crate) async fn by_status(
    conn: &mut PgConnection,
    status: ActionStatus,
    limit: u32,
) -> StoreResult<Vec<ActionRecord>> {
    sqlx::query("SELECT * FROM actions WHERE status = $1 ORDER BY created_at, id LIMIT $2")
        .bind(enum_text(&status)?)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
        .map_err(backend)?
        .iter()
        .map(record)
        .collect()
}

pub(crate) async fn count(conn: &mut PgConnection, status: ActionStatus) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM actions WHERE status = $1")
        .bind(enum_text(&status)?)
        .fetch_one(conn)
        .await
        .map_err(backend)?;
    Ok(n as u64)
}

pub(crate) async fn decisions(
    conn: &mut PgConnection,
    action_id: Uuid,
) -> StoreResult<Vec<DecisionRecord>> {
    sqlx::query("SELECT signed_json, key_kind, recorded_at FROM decisions WHERE action_id = $1 ORDER BY rowid_")
        .bind(action_id.to_string())
        .fetch_all(conn)
        .await
        .map_err(backend)?
        .iter()
        .map(|row| {
            Ok(DecisionRecord {
                decision: json("decision", row.get("signed_json"))?,
                key_kind: key_kind(row.get("key_kind"))?,
                recorded_at: ts(row.get("recorded_at"))?,
            })
        })
        .collect()
}

pub(crate) async fn record_decision(
    conn: &mut PgConnection,
    signed: &SignedDecision,
    key_kind: KeyKind,
    effects: DecisionEffects,
    event: NewEvent,
    now: Timestamp,
) -> StoreResult<(DecisionOutcome, Vec<AuditEvent>)> {
    let d = &signed.decision;
    let id = d.request_id.to_string();
    // Every check, the approval count and the log's end in one round trip.
    let row = sqlx::query(
        "SELECT status, expires_at,
                (SELECT COUNT(*) FROM decisions WHERE action_id = $1 AND approver_id = $2) AS decided,
                (SELECT COUNT(*) FROM decisions WHERE nonce = $3) AS nonce_seen,
                (SELECT COUNT(DISTINCT approver_id) FROM decisions
                  WHERE action_id = $1 AND verdict = 'approve') AS approvals,
                (SELECT COUNT(*) FROM approver_keys WHERE key_id = $4 AND approver_id = $2
                  AND revoked_at IS NULL) AS key_active,
                (SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_events) AS next_seq
         FROM actions WHERE id = $1",
    )
    .bind(&id)
    .bind(&d.approver_id)
    .bind(d.nonce.to_string())
    .bind(d.key_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?
    .ok_or(StoreError::NotFound("action"))?;
    // Checked here, under the write lock every replica's writes take, so a revocation committed
    // a moment earlier always wins (the service's check before it is only a fast refusal).
    if row.get::<i64, _>("key_active") == 0 {
        return Err(StoreError::Conflict(Conflict::KeyRevoked));
    }
    let status: ActionStatus = enum_from("action status", row.get("status"))?;
    if status != ActionStatus::Pending {
        return Err(StoreError::Conflict(Conflict::NotPending));
    }
    if now >= ts(row.get("expires_at"))? {
        return Err(StoreError::Conflict(Conflict::Expired));
    }
    if row.get::<i64, _>("decided") > 0 {
        return Err(StoreError::Conflict(Conflict::AlreadyDecided));
    }
    if row.get::<i64, _>("nonce_seen") > 0 {
        return Err(StoreError::Conflict(Conflict::NonceReused));
    }
    let prior_approvals = u32::try_from(row.get::<i64, _>("approvals")).unwrap_or(u32::MAX);
    let next_seq: i64 = row.get("next_seq");
    sqlx::query(
        "INSERT INTO decisions (action_id, approver_id, verdict, nonce, key_kind, recorded_at, signed_json)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&d.approver_id)
    .bind(enum_text(&d.verdict)?)
    .bind(d.nonce.to_string())
    .bind(enum_text(&key_kind)?)
    .bind(now.as_millis())
    .bind(to_json(signed)?)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;

    let mut events = vec![event];
    let outcome = match d.verdict {
        Verdict::Deny => {
            set_status(&mut *conn, &id, ActionStatus::Denied, now).await?;
            events.extend(effects.on_deny);
            DecisionOutcome::Denied
        }
        Verdict::Approve => {
            // This approver had not decided (checked above), so they add one distinct approval.
            let approvals = prior_approvals.saturating_add(1);
            if approvals >= effects.quorum {
                let (grant, more) = effects.on_quorum.ok_or_else(|| {
                    StoreError::Backend("quorum reached but no grant was prepared".into())
                })?;
                set_status(&mut *conn, &id, ActionStatus::Approved, now).await?;
                insert_grant(&mut *conn, &grant).await?;
                events.extend(more);
                DecisionOutcome::Approved(grant)
            } else {
                DecisionOutcome::Counted { approvals }
            }
        }
    };
    let appended = audit::append_at(conn, next_seq, events, now).await?;
    Ok((outcome, appended))
}

async fn set_status(
    conn: &mut PgConnection,
    id: &str,
    status: ActionStatus,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query("UPDATE actions SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(enum_text(&status)?)
        .bind(now.as_millis())
        .bind(id)
        .execute(conn)
        .await
        .map_err(backend)?;
    Ok(())
}

fn grant_record(row: &PgRow) -> StoreResult<GrantRecord> {
    Ok(GrantRecord {
        grant: json("grant", row.get("signed_json"))?,
        redeemed_at: opt_ts(row.get("redeemed_at"))?,
    })
}

pub(crate) async fn grant_for_action(
    conn: &mut PgConnection,
    action_id: Uuid,
) -> StoreResult<Option<GrantRecord>> {
    sqlx::query("SELECT signed_json, redeemed_at FROM grants WHERE action_id = $1")
        .bind(action_id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .as_ref()
        .map(grant_record)
        .transpose()
}

pub(crate) async fn grant_action(
    conn: &mut PgConnection,
    grant_id: Uuid,
) -> StoreResult<Option<Uuid>> {
    let id: Option<String> = sqlx::query_scalar("SELECT action_id FROM grants WHERE grant_id = $1")
        .bind(grant_id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(backend)?;
    id.map(|id| crate::codec::uuid(&id)).transpose()
}

pub(crate) async fn redeem_grant(
    conn: &mut PgConnection,
    grant_id: Uuid,
    presented: &Digest,
    event: NewEvent,
    now: Timestamp,
) -> StoreResult<(GrantRecord, Vec<AuditEvent>)> {
    let row = sqlx::query("SELECT signed_json, redeemed_at FROM grants WHERE grant_id = $1")
        .bind(grant_id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("grant"))?;
    let mut record = grant_record(&row)?;
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
    let done = sqlx::query(
        "UPDATE grants SET redeemed_at = $1 WHERE grant_id = $2 AND redeemed_at IS NULL",
    )
    .bind(now.as_millis())
    .bind(grant_id.to_string())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(Conflict::GrantRedeemed));
    }
    record.redeemed_at = Some(now);
    let events = audit::append(conn, vec![event], now).await?;
    Ok((record, events))
}

pub(crate) async fn report_outcome(
    conn: &mut PgConnection,
    action_id: Uuid,
    outcome: &ExecutionOutcome,
    event: NewEvent,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let redeemed: Option<Option<i64>> =
        sqlx::query_scalar("SELECT redeemed_at FROM grants WHERE action_id = $1")
            .bind(action_id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    if !matches!(redeemed, Some(Some(_))) {
        return Err(StoreError::Conflict(Conflict::NoOutcomeExpected));
    }
    let done = sqlx::query(
        "INSERT INTO outcomes (action_id, outcome_json, reported_at) VALUES ($1, $2, $3)
         ON CONFLICT (action_id) DO NOTHING",
    )
    .bind(action_id.to_string())
    .bind(to_json(outcome)?)
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(Conflict::NoOutcomeExpected));
    }
    audit::append(conn, vec![event], now).await
}

pub(crate) async fn outcome(
    conn: &mut PgConnection,
    action_id: Uuid,
) -> StoreResult<Option<ExecutionOutcome>> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT outcome_json FROM outcomes WHERE action_id = $1")
            .bind(action_id.to_string())
            .fetch_optional(conn)
            .await
            .map_err(backend)?;
    text.map(|t| json("outcome", &t)).transpose()
}

pub(crate) async fn expire_due(
    conn: &mut PgConnection,
    now: Timestamp,
    event_for: &(dyn Fn(Uuid) -> NewEvent + Send + Sync),
) -> StoreResult<Vec<AuditEvent>> {
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM actions WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at, id",
    )
    .bind(now.as_millis())
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut events = Vec::with_capacity(due.len());
    for id in due {
        set_status(&mut *conn, &id, ActionStatus::Expired, now).await?;
        events.push(event_for(crate::codec::uuid(&id)?));
    }
    audit::append(conn, events, now).await
}

pub(crate) async fn cancel(
    conn: &mut PgConnection,
    id: Uuid,
    event: NewEvent,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let record = get(&mut *conn, id).await?;
    if record.status != ActionStatus::Pending {
        return Err(StoreError::Conflict(Conflict::NotPending));
    }
    set_status(&mut *conn, &id.to_string(), ActionStatus::Cancelled, now).await?;
    audit::append(conn, vec![event], now).await
}

pub(crate) async fn next_expiry(conn: &mut PgConnection) -> StoreResult<Option<Timestamp>> {
    let ms: Option<i64> =
        sqlx::query_scalar("SELECT MIN(expires_at) FROM actions WHERE status = 'pending'")
            .fetch_one(conn)
            .await
            .map_err(backend)?;
    opt_ts(ms)
}
