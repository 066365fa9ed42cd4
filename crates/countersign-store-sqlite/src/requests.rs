//! Requests, decisions, grants and outcomes. Every rule that concurrent writers could race
//! (pending, unexpired, distinct approvers, fresh nonce, single use) is checked here, inside the
//! write transaction.

use async_trait::async_trait;
use countersign_core::{
    ActionStatus, AuditEvent, Digest, EncodedEvent, ExecutionOutcome, KeyId, KeyKind,
    SignedDecision, SignedGrant, SignedReview, TimedStep, Timestamp,
};
use countersign_store::{
    Conflict, DecisionContext, DecisionEffects, DecisionOutcome, DecisionRecord, GrantRecord,
    NewEvent, NewRequest, RequestRecord, Requests, ReviewRecord, StoreError, StoreResult, rules,
};
use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use crate::SqliteStore;
use crate::audit;
use crate::codec::{
    col, corrupt, digest, enum_from, enum_text, json, key_kind, opt_ts, to_json, ts,
};
use crate::query::{execute, select, select_one};

fn record(row: &Row<'_>) -> StoreResult<RequestRecord> {
    let stored_digest = digest(&col::<String>(row, "digest")?)?;
    let action = rules::stored_action(
        &col::<String>(row, "id")?,
        &col::<String>(row, "action_json")?,
        &stored_digest,
    )?;
    Ok(RequestRecord {
        action,
        digest: stored_digest,
        status: enum_from("action status", &col::<String>(row, "status")?)?,
        quorum: u32::try_from(col::<i64>(row, "quorum")?).map_err(|e| corrupt("quorum", e))?,
        updated_at: ts(col(row, "updated_at")?)?,
        steps_taken: u32::try_from(col::<i64>(row, "steps_taken")?)
            .map_err(|e| corrupt("steps_taken", e))?,
    })
}

pub(crate) fn create(
    conn: &Connection,
    new: &NewRequest,
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
        "INSERT INTO actions (id, created_at, expires_at, updated_at, status, quorum, digest, action_json, idempotency_key, next_step_at, review_quorum)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            rules::next_step(&r.action, 0).map(|(at, _)| at.as_millis()),
            rules::review_quorum(&r.action).map(i64::from),
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

pub(crate) fn get(conn: &Connection, id: Uuid) -> StoreResult<RequestRecord> {
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
) -> StoreResult<Vec<RequestRecord>> {
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
            Ok(rules::DecisionState {
                status: enum_from("action status", &col::<String>(row, "status")?)?,
                expires_at: ts(col(row, "expires_at")?)?,
                already_decided: col::<i64>(row, "decided")? > 0,
                nonce_seen: col::<i64>(row, "nonce_seen")? > 0,
                prior_approvals: u32::try_from(col::<i64>(row, "approvals")?).unwrap_or(u32::MAX),
                key_active: col::<i64>(row, "key_active")? > 0,
            })
        },
    )?
    .ok_or(StoreError::NotFound("action"))?;
    // Checked here, in the transaction that records the decision, so a revocation committed
    // a moment earlier always wins (the service's check before it is only a fast refusal).
    let step =
        rules::decide(&state, d.verdict, prepared.quorum, now).map_err(StoreError::Conflict)?;
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
    let outcome = match step {
        rules::DecisionStep::Deny => {
            set_status(conn, &id, ActionStatus::Denied, now)?;
            events.extend(prepared.on_deny);
            DecisionOutcome::Denied
        }
        rules::DecisionStep::Count { approvals } => DecisionOutcome::Counted { approvals },
        rules::DecisionStep::Approve => {
            let (grant, json, more) = prepared.on_quorum.ok_or_else(|| {
                StoreError::Backend("quorum reached but no grant was prepared".into())
            })?;
            set_status(conn, &id, ActionStatus::Approved, now)?;
            insert_grant(conn, grant.grant.grant_id, grant.grant.request_id, &json)?;
            events.extend(more);
            DecisionOutcome::Approved(grant)
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

pub(crate) fn grant_for_request(
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

pub(crate) fn grant_request(conn: &Connection, grant_id: Uuid) -> StoreResult<Option<Uuid>> {
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
    rules::check_redeem(&record, presented, now).map_err(StoreError::Conflict)?;
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
        |row| opt_ts(col(row, "redeemed_at")?),
    )?;
    let reported = self::outcome(conn, action_id)?.is_some();
    rules::check_outcome(redeemed, reported).map_err(StoreError::Conflict)?;
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
    rules::check_cancel(record.status).map_err(StoreError::Conflict)?;
    set_status(conn, &id.to_string(), ActionStatus::Cancelled, now)?;
    audit::append(conn, vec![event])
}

/// Records `review` (its JSON `json`) with `event`, and `completed` when it completes the
/// reviews, the rules checked in this transaction.
pub(crate) fn record_review(
    conn: &Connection,
    review: &SignedReview,
    key_kind: KeyKind,
    json: String,
    event: EncodedEvent,
    completed: Box<dyn FnOnce(u32) -> StoreResult<EncodedEvent> + Send>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let r = &review.review;
    let id = r.request_id.to_string();
    let state = select_one(
        conn,
        "SELECT review_quorum,
                (SELECT COUNT(*) FROM reviews WHERE action_id = ?1) AS reviews,
                (SELECT COUNT(*) FROM reviews WHERE action_id = ?1 AND reviewer_id = ?2) AS mine,
                (SELECT COUNT(*) FROM reviews WHERE nonce = ?3) AS nonce_seen,
                (SELECT COUNT(*) FROM approver_keys WHERE key_id = ?4 AND approver_id = ?2
                  AND revoked_at IS NULL) AS key_active
         FROM actions WHERE id = ?1",
        params![id, r.reviewer_id, r.nonce.to_string(), r.key_id.to_string()],
        |row| {
            Ok(rules::ReviewState {
                quorum: col::<Option<i64>>(row, "review_quorum")?
                    .map(|q| u32::try_from(q).unwrap_or(u32::MAX)),
                reviews: u32::try_from(col::<i64>(row, "reviews")?).unwrap_or(u32::MAX),
                already_reviewed: col::<i64>(row, "mine")? > 0,
                nonce_seen: col::<i64>(row, "nonce_seen")? > 0,
                key_active: col::<i64>(row, "key_active")? > 0,
            })
        },
    )?
    .ok_or(StoreError::NotFound("action"))?;
    let completes = rules::review(&state).map_err(StoreError::Conflict)?;
    execute(
        conn,
        "INSERT INTO reviews (action_id, reviewer_id, nonce, key_kind, concern, recorded_at, signed_json)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        params![
            id,
            r.reviewer_id,
            r.nonce.to_string(),
            enum_text(&key_kind)?,
            i64::from(r.concern),
            now.as_millis(),
            json,
        ],
    )?;
    let mut events = vec![event];
    if completes {
        let concerns = select_one(
            conn,
            "SELECT COUNT(*) AS n FROM reviews WHERE action_id = ? AND concern = 1",
            [&id],
            |row| col::<i64>(row, "n"),
        )?
        .unwrap_or(0);
        events.push(completed(u32::try_from(concerns).unwrap_or(u32::MAX))?);
    }
    audit::append(conn, events)
}

fn review_record(row: &Row<'_>) -> StoreResult<ReviewRecord> {
    Ok(ReviewRecord {
        review: json("review", &col::<String>(row, "signed_json")?)?,
        key_kind: enum_from("key kind", &col::<String>(row, "key_kind")?)?,
        recorded_at: ts(col(row, "recorded_at")?)?,
    })
}

/// Pending requests whose next timed step is due.
fn due_steps(conn: &Connection, now: Timestamp) -> StoreResult<Vec<RequestRecord>> {
    select(
        conn,
        "SELECT * FROM actions WHERE status = 'pending' AND next_step_at <= ? ORDER BY next_step_at, id",
        [now.as_millis()],
        record,
    )
}

/// Takes each due step whose request is still pending and still at the step read, with its
/// event; one another writer took or decided meanwhile is skipped, so each is taken once.
fn take_steps(
    conn: &Connection,
    due: Vec<(RequestRecord, EncodedEvent)>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let mut events = Vec::with_capacity(due.len());
    for (record, event) in due {
        let taken = record.steps_taken + 1;
        let changed = execute(
            conn,
            "UPDATE actions SET steps_taken = ?1, next_step_at = ?2, updated_at = ?3
             WHERE id = ?4 AND status = 'pending' AND steps_taken = ?5 AND next_step_at <= ?3",
            params![
                i64::from(taken),
                rules::next_step(&record.action, taken).map(|(at, _)| at.as_millis()),
                now.as_millis(),
                record.action.id.to_string(),
                i64::from(record.steps_taken),
            ],
        )?;
        if changed == 1 {
            events.push(event);
        }
    }
    audit::append(conn, events)
}

/// The reviews the request needs (0 when it is not break-glass or does not exist: the
/// transaction then refuses the review).
async fn review_quorum_of(store: &SqliteStore, id: Uuid) -> StoreResult<u32> {
    store
        .read(move |c| {
            select_one(
                c,
                "SELECT review_quorum FROM actions WHERE id = ?",
                [id.to_string()],
                |row| col::<Option<i64>>(row, "review_quorum"),
            )
        })
        .await
        .map(|q| {
            q.flatten()
                .map_or(0, |q| u32::try_from(q).unwrap_or(16).min(16))
        })
}

pub(crate) fn next_step(conn: &Connection) -> StoreResult<Option<Timestamp>> {
    let ms = select_one(
        conn,
        "SELECT MIN(next_step_at) AS next FROM actions WHERE status = 'pending'",
        [],
        |row| col::<Option<i64>>(row, "next"),
    )?;
    opt_ts(ms.flatten())
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

#[async_trait]
impl Requests for SqliteStore {
    async fn create_request(
        &self,
        action: &NewRequest,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let action = action.clone();
        let events = crate::audit::encode(events, now)?;
        let text = rules::canonical_text(&action.record.action)?;
        self.write(move |c| create(c, &action, text, events, now))
            .await
    }

    async fn request(&self, id: Uuid) -> StoreResult<RequestRecord> {
        self.read(move |c| get(c, id)).await
    }

    async fn request_by_idempotency_key(&self, scoped_key: &str) -> StoreResult<Option<Uuid>> {
        let key = scoped_key.to_owned();
        self.read(move |c| by_idempotency_key(c, &key)).await
    }

    async fn requests_by_status(
        &self,
        status: ActionStatus,
        limit: u32,
    ) -> StoreResult<Vec<RequestRecord>> {
        self.read(move |c| by_status(c, status, limit)).await
    }

    async fn count_requests(&self, status: ActionStatus) -> StoreResult<u64> {
        self.read(move |c| count(c, status)).await
    }

    async fn decisions(&self, action_id: Uuid) -> StoreResult<Vec<DecisionRecord>> {
        self.read(move |c| decisions(c, action_id)).await
    }

    async fn decision_context(
        &self,
        action_id: Uuid,
        key_id: &KeyId,
        approver_id: &str,
    ) -> StoreResult<DecisionContext> {
        let (key_id, approver_id) = (*key_id, approver_id.to_owned());
        self.read(move |c| {
            Ok(DecisionContext {
                record: get(c, action_id)?,
                key: crate::identity::key(c, &key_id)?,
                approver: crate::identity::approver_by_id(c, &approver_id)?,
            })
        })
        .await
    }

    async fn record_decision(
        &self,
        decision: &SignedDecision,
        key_kind: KeyKind,
        effects: DecisionEffects,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<(DecisionOutcome, Vec<AuditEvent>)> {
        let prepared = PreparedDecision::new(decision, key_kind, effects, event, now)?;
        self.write(move |c| record_decision(c, prepared, now)).await
    }

    async fn grant_for_request(&self, action_id: Uuid) -> StoreResult<Option<GrantRecord>> {
        self.read(move |c| grant_for_request(c, action_id)).await
    }

    async fn grant_request(&self, grant_id: Uuid) -> StoreResult<Option<Uuid>> {
        self.read(move |c| grant_request(c, grant_id)).await
    }

    async fn redeem_grant(
        &self,
        grant_id: Uuid,
        digest: &Digest,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<(GrantRecord, Vec<AuditEvent>)> {
        let digest = *digest;
        let event = crate::audit::encode_one(event, now)?;
        self.write(move |c| redeem_grant(c, grant_id, &digest, event, now))
            .await
    }

    async fn report_outcome(
        &self,
        action_id: Uuid,
        outcome: &ExecutionOutcome,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let outcome = outcome.clone();
        let event = crate::audit::encode_one(event, now)?;
        self.write(move |c| report_outcome(c, action_id, &outcome, event, now))
            .await
    }

    async fn outcome(&self, action_id: Uuid) -> StoreResult<Option<ExecutionOutcome>> {
        self.read(move |c| outcome(c, action_id)).await
    }

    async fn expire_due(
        &self,
        now: Timestamp,
        event_for: &(dyn Fn(Uuid) -> NewEvent + Send + Sync),
    ) -> StoreResult<Vec<AuditEvent>> {
        // The events are made here (the writer thread cannot borrow `event_for`); the write
        // re-checks each request, so one decided or expired meanwhile is skipped.
        let due = self.read(move |c| due(c, now)).await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let due = due
            .into_iter()
            .map(|id| Ok((id, crate::audit::encode_one(event_for(id), now)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        self.write(move |c| expire(c, due, now)).await
    }

    async fn cancel_request(
        &self,
        id: Uuid,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let event = crate::audit::encode_one(event, now)?;
        self.write(move |c| cancel(c, id, event, now)).await
    }

    async fn next_expiry(&self) -> StoreResult<Option<Timestamp>> {
        self.read(next_expiry).await
    }

    async fn take_due_steps(
        &self,
        now: Timestamp,
        event_for: &(dyn for<'r> Fn(&'r RequestRecord, TimedStep) -> NewEvent + Send + Sync),
    ) -> StoreResult<Vec<AuditEvent>> {
        let due = self.read(move |c| due_steps(c, now)).await?;
        let due = due
            .into_iter()
            .filter_map(|record| {
                let (_, step) = rules::next_step(&record.action, record.steps_taken)?;
                let event = crate::audit::encode_one(event_for(&record, step), now);
                Some(event.map(|e| (record, e)))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |c| take_steps(c, due, now)).await
    }

    async fn next_step(&self) -> StoreResult<Option<Timestamp>> {
        self.read(next_step).await
    }

    async fn record_review(
        &self,
        review: &SignedReview,
        key_kind: KeyKind,
        event: NewEvent,
        completed: &(dyn Fn(u32) -> NewEvent + Send + Sync),
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let json = to_json(review)?;
        let event = crate::audit::encode_one(event, now)?;
        // Both possible completion events are made here: the writer thread cannot borrow
        // `completed`; the count of concerns is only known in the transaction.
        let quorum = review_quorum_of(self, review.review.request_id).await?;
        let made: Vec<EncodedEvent> = (0..=quorum)
            .map(|concerns| crate::audit::encode_one(completed(concerns), now))
            .collect::<StoreResult<_>>()?;
        let completed = Box::new(move |concerns: u32| {
            made.get(concerns as usize)
                .cloned()
                .ok_or_else(|| StoreError::Backend("more concerns than reviews".into()))
        });
        let review = review.clone();
        self.write(move |c| record_review(c, &review, key_kind, json, event, completed, now))
            .await
    }

    async fn reviews(&self, action_id: Uuid) -> StoreResult<Vec<ReviewRecord>> {
        self.read(move |c| {
            select(
                c,
                "SELECT * FROM reviews WHERE action_id = ? ORDER BY recorded_at, reviewer_id",
                [action_id.to_string()],
                review_record,
            )
        })
        .await
    }

    async fn awaiting_review(&self, limit: u32) -> StoreResult<Vec<RequestRecord>> {
        self.read(move |c| {
            select(
                c,
                "SELECT * FROM actions a WHERE a.review_quorum IS NOT NULL
                   AND (SELECT COUNT(*) FROM reviews r WHERE r.action_id = a.id) < a.review_quorum
                 ORDER BY a.created_at, a.id LIMIT ?",
                [limit],
                record,
            )
        })
        .await
    }
}
