//! Requests, decisions, grants and outcomes. Every rule that concurrent writers could race
//! (pending, unexpired, distinct approvers, fresh nonce, single use) is checked here, inside the
//! write transaction.

use async_trait::async_trait;
use countersign_core::{
    ActionStatus, AuditEvent, Digest, ExecutionOutcome, KeyKind, SignedDecision, SignedGrant,
    SignedReview, TimedStep, Timestamp,
};
use countersign_store::{
    Conflict, DecisionEffects, DecisionOutcome, DecisionRecord, GrantRecord, NewEvent, NewRequest,
    RequestRecord, Requests, ReviewRecord, StoreError, StoreResult, rules,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::audit;
use crate::codec::{
    backend, corrupt, digest, enum_from, enum_text, json, key_kind, opt_ts, to_json, ts,
};
use crate::{PgStore, commit};

fn record(row: &PgRow) -> StoreResult<RequestRecord> {
    let stored_digest = digest(row.get("digest"))?;
    let action = rules::stored_action(row.get("id"), row.get("action_json"), &stored_digest)?;
    Ok(RequestRecord {
        action,
        digest: stored_digest,
        status: enum_from("action status", row.get("status"))?,
        quorum: u32::try_from(row.get::<i64, _>("quorum")).map_err(|e| corrupt("quorum", e))?,
        updated_at: ts(row.get("updated_at"))?,
        steps_taken: u32::try_from(row.get::<i64, _>("steps_taken"))
            .map_err(|e| corrupt("steps_taken", e))?,
    })
}

pub(crate) async fn create(
    conn: &mut PgConnection,
    new: &NewRequest,
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
        "INSERT INTO actions (id, created_at, expires_at, updated_at, status, quorum, digest, action_json, idempotency_key, next_step_at, review_quorum)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(r.action.id.to_string())
    .bind(r.action.created_at.as_millis())
    .bind(r.action.expires_at.as_millis())
    .bind(now.as_millis())
    .bind(enum_text(&r.status)?)
    .bind(i64::from(r.quorum))
    .bind(r.digest.to_hex())
    // Canonical, as the SQLite store keeps it: one hash of the stored text checks it on read.
    .bind(rules::canonical_text(&r.action)?)
    .bind(&new.idempotency_key)
    .bind(rules::next_step(&r.action, 0).map(|(at, _)| at.as_millis()))
    .bind(rules::review_quorum(&r.action).map(i64::from))
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

pub(crate) async fn get(conn: &mut PgConnection, id: Uuid) -> StoreResult<RequestRecord> {
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
) -> StoreResult<Vec<RequestRecord>> {
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
    let state = rules::DecisionState {
        status: enum_from("action status", row.get("status"))?,
        expires_at: ts(row.get("expires_at"))?,
        already_decided: row.get::<i64, _>("decided") > 0,
        nonce_seen: row.get::<i64, _>("nonce_seen") > 0,
        prior_approvals: u32::try_from(row.get::<i64, _>("approvals")).unwrap_or(u32::MAX),
        key_active: row.get::<i64, _>("key_active") > 0,
    };
    let step =
        rules::decide(&state, d.verdict, effects.quorum, now).map_err(StoreError::Conflict)?;
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
    let outcome = match step {
        rules::DecisionStep::Deny => {
            set_status(&mut *conn, &id, ActionStatus::Denied, now).await?;
            events.extend(effects.on_deny);
            DecisionOutcome::Denied
        }
        rules::DecisionStep::Count { approvals } => DecisionOutcome::Counted { approvals },
        rules::DecisionStep::Approve => {
            let (grant, more) = effects.on_quorum.ok_or_else(|| {
                StoreError::Backend("quorum reached but no grant was prepared".into())
            })?;
            set_status(&mut *conn, &id, ActionStatus::Approved, now).await?;
            insert_grant(&mut *conn, &grant).await?;
            events.extend(more);
            DecisionOutcome::Approved(grant)
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

pub(crate) async fn grant_for_request(
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

pub(crate) async fn grant_request(
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
    rules::check_redeem(&record, presented, now).map_err(StoreError::Conflict)?;
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
    let redeemed = redeemed.map(opt_ts).transpose()?;
    let reported = self::outcome(&mut *conn, action_id).await?.is_some();
    rules::check_outcome(redeemed, reported).map_err(StoreError::Conflict)?;
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
        // Conditioned as the SQLite store's: each request expires once, only if still pending
        // and due (rules::expires).
        let changed = sqlx::query(
            "UPDATE actions SET status = 'expired', updated_at = $1
             WHERE id = $2 AND status = 'pending' AND expires_at <= $1",
        )
        .bind(now.as_millis())
        .bind(&id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        if changed.rows_affected() == 1 {
            events.push(event_for(crate::codec::uuid(&id)?));
        }
    }
    audit::append(conn, events, now).await
}

/// Takes the due step of each pending request, conditioned as the SQLite store's: still
/// pending, still at the step read, still due; so each step is taken once.
pub(crate) async fn take_due_steps(
    conn: &mut PgConnection,
    now: Timestamp,
    event_for: &(dyn for<'r> Fn(&'r RequestRecord, TimedStep) -> NewEvent + Send + Sync),
) -> StoreResult<Vec<AuditEvent>> {
    let rows = sqlx::query(
        "SELECT * FROM actions WHERE status = 'pending' AND next_step_at <= $1 ORDER BY next_step_at, id",
    )
    .bind(now.as_millis())
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let record = record(row)?;
        let Some((_, step)) = rules::next_step(&record.action, record.steps_taken) else {
            continue;
        };
        let taken = record.steps_taken + 1;
        let changed = sqlx::query(
            "UPDATE actions SET steps_taken = $1, next_step_at = $2, updated_at = $3
             WHERE id = $4 AND status = 'pending' AND steps_taken = $5 AND next_step_at <= $3",
        )
        .bind(i64::from(taken))
        .bind(rules::next_step(&record.action, taken).map(|(at, _)| at.as_millis()))
        .bind(now.as_millis())
        .bind(record.action.id.to_string())
        .bind(i64::from(record.steps_taken))
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        if changed.rows_affected() == 1 {
            events.push(event_for(&record, step));
        }
    }
    audit::append(conn, events, now).await
}

/// Records a review under the write lock, conditioned as the SQLite store's (`rules::review`).
pub(crate) async fn record_review(
    conn: &mut PgConnection,
    review: &SignedReview,
    key_kind: KeyKind,
    event: NewEvent,
    completed: &(dyn Fn(u32) -> NewEvent + Send + Sync),
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let r = &review.review;
    let id = r.request_id.to_string();
    let row = sqlx::query(
        "SELECT review_quorum,
                (SELECT COUNT(*) FROM reviews WHERE action_id = $1) AS reviews,
                (SELECT COUNT(*) FROM reviews WHERE action_id = $1 AND reviewer_id = $2) AS mine,
                (SELECT COUNT(*) FROM reviews WHERE nonce = $3) AS nonce_seen,
                (SELECT COUNT(*) FROM approver_keys WHERE key_id = $4 AND approver_id = $2
                  AND revoked_at IS NULL) AS key_active
         FROM actions WHERE id = $1",
    )
    .bind(&id)
    .bind(&r.reviewer_id)
    .bind(r.nonce.to_string())
    .bind(r.key_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?
    .ok_or(StoreError::NotFound("action"))?;
    let count = |name: &str| -> StoreResult<i64> { row.try_get::<i64, _>(name).map_err(backend) };
    let state = rules::ReviewState {
        quorum: row
            .try_get::<Option<i64>, _>("review_quorum")
            .map_err(backend)?
            .map(|q| u32::try_from(q).unwrap_or(u32::MAX)),
        reviews: u32::try_from(count("reviews")?).unwrap_or(u32::MAX),
        already_reviewed: count("mine")? > 0,
        nonce_seen: count("nonce_seen")? > 0,
        key_active: count("key_active")? > 0,
    };
    let completes = rules::review(&state).map_err(StoreError::Conflict)?;
    sqlx::query(
        "INSERT INTO reviews (action_id, reviewer_id, nonce, key_kind, concern, recorded_at, signed_json)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&r.reviewer_id)
    .bind(r.nonce.to_string())
    .bind(enum_text(&key_kind)?)
    .bind(i64::from(r.concern))
    .bind(now.as_millis())
    .bind(to_json(review)?)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    let mut events = vec![event];
    if completes {
        let concerns: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM reviews WHERE action_id = $1 AND concern = 1")
                .bind(&id)
                .fetch_one(&mut *conn)
                .await
                .map_err(backend)?;
        events.push(completed(u32::try_from(concerns).unwrap_or(u32::MAX)));
    }
    audit::append(conn, events, now).await
}

fn review_record(row: &PgRow) -> StoreResult<ReviewRecord> {
    Ok(ReviewRecord {
        review: json("review", row.get("signed_json"))?,
        key_kind: enum_from("key kind", row.get("key_kind"))?,
        recorded_at: ts(row.get("recorded_at"))?,
    })
}

pub(crate) async fn next_step(conn: &mut PgConnection) -> StoreResult<Option<Timestamp>> {
    let ms: Option<i64> =
        sqlx::query_scalar("SELECT MIN(next_step_at) FROM actions WHERE status = 'pending'")
            .fetch_one(conn)
            .await
            .map_err(backend)?;
    opt_ts(ms)
}

pub(crate) async fn cancel(
    conn: &mut PgConnection,
    id: Uuid,
    event: NewEvent,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let record = get(&mut *conn, id).await?;
    rules::check_cancel(record.status).map_err(StoreError::Conflict)?;
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

#[async_trait]
impl Requests for PgStore {
    async fn create_request(
        &self,
        action: &NewRequest,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = create(&mut tx, action, events, now).await?;
        commit(tx, appended).await
    }

    async fn request_by_idempotency_key(&self, scoped_key: &str) -> StoreResult<Option<Uuid>> {
        by_idempotency_key(&mut *self.conn().await?, scoped_key).await
    }

    async fn request(&self, id: Uuid) -> StoreResult<RequestRecord> {
        get(&mut *self.conn().await?, id).await
    }

    async fn requests_by_status(
        &self,
        status: ActionStatus,
        limit: u32,
    ) -> StoreResult<Vec<RequestRecord>> {
        by_status(&mut *self.conn().await?, status, limit).await
    }

    async fn count_requests(&self, status: ActionStatus) -> StoreResult<u64> {
        count(&mut *self.conn().await?, status).await
    }

    async fn decisions(&self, action_id: Uuid) -> StoreResult<Vec<DecisionRecord>> {
        decisions(&mut *self.conn().await?, action_id).await
    }

    async fn record_decision(
        &self,
        decision: &SignedDecision,
        key_kind: KeyKind,
        effects: DecisionEffects,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<(DecisionOutcome, Vec<AuditEvent>)> {
        let mut tx = self.begin().await?;
        let result = record_decision(&mut tx, decision, key_kind, effects, event, now).await?;
        commit(tx, result).await
    }

    async fn grant_for_request(&self, action_id: Uuid) -> StoreResult<Option<GrantRecord>> {
        grant_for_request(&mut *self.conn().await?, action_id).await
    }

    async fn grant_request(&self, grant_id: Uuid) -> StoreResult<Option<Uuid>> {
        grant_request(&mut *self.conn().await?, grant_id).await
    }

    async fn redeem_grant(
        &self,
        grant_id: Uuid,
        digest: &Digest,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<(GrantRecord, Vec<AuditEvent>)> {
        let mut tx = self.begin().await?;
        let result = redeem_grant(&mut tx, grant_id, digest, event, now).await?;
        commit(tx, result).await
    }

    async fn report_outcome(
        &self,
        action_id: Uuid,
        outcome: &ExecutionOutcome,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = report_outcome(&mut tx, action_id, outcome, event, now).await?;
        commit(tx, appended).await
    }

    async fn outcome(&self, action_id: Uuid) -> StoreResult<Option<ExecutionOutcome>> {
        outcome(&mut *self.conn().await?, action_id).await
    }

    async fn expire_due(
        &self,
        now: Timestamp,
        event_for: &(dyn Fn(Uuid) -> NewEvent + Send + Sync),
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = expire_due(&mut tx, now, event_for).await?;
        commit(tx, appended).await
    }

    async fn take_due_steps(
        &self,
        now: Timestamp,
        event_for: &(dyn for<'r> Fn(&'r RequestRecord, TimedStep) -> NewEvent + Send + Sync),
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = take_due_steps(&mut tx, now, event_for).await?;
        commit(tx, appended).await
    }

    async fn next_step(&self) -> StoreResult<Option<Timestamp>> {
        next_step(&mut *self.conn().await?).await
    }

    async fn record_review(
        &self,
        review: &SignedReview,
        key_kind: KeyKind,
        event: NewEvent,
        completed: &(dyn Fn(u32) -> NewEvent + Send + Sync),
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = record_review(&mut tx, review, key_kind, event, completed, now).await?;
        commit(tx, appended).await
    }

    async fn reviews(&self, action_id: Uuid) -> StoreResult<Vec<ReviewRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM reviews WHERE action_id = $1 ORDER BY recorded_at, reviewer_id",
        )
        .bind(action_id.to_string())
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter().map(review_record).collect()
    }

    async fn awaiting_review(&self, limit: u32) -> StoreResult<Vec<RequestRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM actions a WHERE a.review_quorum IS NOT NULL
               AND (SELECT COUNT(*) FROM reviews r WHERE r.action_id = a.id) < a.review_quorum
             ORDER BY a.created_at, a.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        rows.iter().map(record).collect()
    }

    async fn cancel_request(
        &self,
        id: Uuid,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = cancel(&mut tx, id, event, now).await?;
        commit(tx, appended).await
    }

    async fn next_expiry(&self) -> StoreResult<Option<Timestamp>> {
        next_expiry(&mut *self.conn().await?).await
    }
}
