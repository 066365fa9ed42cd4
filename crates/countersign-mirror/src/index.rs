//! The request index: one row per request, derived from its events and written in batches
//! (a request's events sit close together in the log, so most are created and decided within
//! one batch and written once).

use std::collections::HashMap;

use countersign_core::{Action, AuditEvent, EventKind, PolicyOutcome, Verdict};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;

use crate::verifier::KnownRequest;
use crate::{MirrorError, MirrorResult};

/// A request's index row.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestRow {
    pub seq: i64,
    pub id: String,
    pub digest: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub action_type: String,
    pub resource: String,
    pub environment: String,
    pub requester: String,
    pub on_behalf_of: Option<String>,
    pub tags: String,
    pub justification: String,
    pub parameters: String,
    pub policy_outcome: String,
    pub quorum: i64,
    pub status: String,
    pub decided_at: Option<i64>,
    pub approvers: String,
    pub comments: String,
    pub approvals: i64,
    pub denials: i64,
    pub hardware_only: bool,
    pub grant_id: Option<String>,
    pub redeemed_at: Option<i64>,
    pub outcome: Option<String>,
    pub last_seq: i64,
    pub requester_auth: Option<String>,
    pub policy_reason: String,
    pub approved_by: String,
    pub denied_by: String,
    pub key_ids: String,
    /// Whether every decision's key was attested by a trusted root (true while none signed).
    pub attested_only: bool,
    /// The distinct roots that vouched for the deciding keys, one per line.
    pub attesting_roots: String,
    /// Reviews a break-glass request needs (0 for any other).
    pub review_quorum: i64,
    /// Who reviewed it, one word each (`name:concern` for a concern).
    pub reviewed_by: String,
    /// How many reviews raised a concern.
    pub review_concerns: i64,
    /// When its reviews were complete.
    pub reviewed_at: Option<i64>,
}

const COLUMNS: &str = "seq, id, digest, created_at, expires_at, action_type, resource, environment, \
    requester, on_behalf_of, tags, justification, parameters, policy_outcome, quorum, status, \
    decided_at, approvers, comments, approvals, denials, hardware_only, grant_id, redeemed_at, \
    outcome, last_seq, requester_auth, policy_reason, approved_by, denied_by, key_ids, attested_only, attesting_roots, \
    review_quorum, reviewed_by, review_concerns, reviewed_at";

/// Appends `word` to a space-separated list.
fn push_word(list: &mut String, word: &str) {
    if !list.is_empty() {
        list.push(' ');
    }
    list.push_str(word);
}

/// Parameters as searchable text: `key value` pairs, nested objects flattened with dots.
fn parameters_text(value: &serde_json::Value, prefix: &str, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                parameters_text(v, &key, out);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                parameters_text(v, prefix, out);
            }
        }
        other => {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(prefix);
            out.push(' ');
            match other {
                serde_json::Value::String(s) => out.push_str(s),
                v => out.push_str(&v.to_string()),
            }
        }
    }
}

impl RequestRow {
    fn new(seq: u64, action: &Action, digest: &countersign_core::Digest) -> Self {
        let mut parameters = String::new();
        parameters_text(
            &serde_json::Value::Object(action.request.parameters.0.clone()),
            "",
            &mut parameters,
        );
        let (policy_outcome, quorum) = match &action.policy.outcome {
            PolicyOutcome::Allow {} => ("allow", 0),
            PolicyOutcome::Deny {} => ("deny", 0),
            PolicyOutcome::RequireApproval { quorum, .. } => ("require_approval", *quorum),
            PolicyOutcome::BreakGlass { .. } => ("break_glass", 0),
        };
        let review_quorum = match &action.policy.outcome {
            PolicyOutcome::BreakGlass { review_quorum, .. } => i64::from(*review_quorum),
            _ => 0,
        };
        Self {
            seq: seq as i64,
            id: action.id.to_string(),
            digest: digest.to_hex(),
            created_at: action.created_at.as_millis(),
            expires_at: action.expires_at.as_millis(),
            action_type: action.request.action_type.as_str().to_owned(),
            resource: action.request.resource.clone(),
            environment: action.request.environment.clone(),
            requester: action.requester.clone(),
            on_behalf_of: action.request.on_behalf_of.clone(),
            tags: action
                .request
                .tags
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            justification: action.request.justification.clone(),
            policy_reason: action.policy.reason.clone(),
            parameters,
            policy_outcome: policy_outcome.into(),
            quorum: i64::from(quorum),
            status: "pending".into(),
            hardware_only: true,
            attested_only: true,
            review_quorum,
            last_seq: seq as i64,
            ..Self::default()
        }
    }

    /// What the signature checks need to know about this request.
    pub fn known(&self) -> MirrorResult<KnownRequest> {
        Ok(KnownRequest {
            digest: self
                .digest
                .parse()
                .map_err(|_| MirrorError::Corrupt(format!("request {} digest", self.id)))?,
            requester: self.requester.clone(),
            on_behalf_of: self.on_behalf_of.clone(),
        })
    }

    fn decide(&mut self, status: &str, at: i64) {
        if self.status == "pending" {
            self.status = status.into();
            self.decided_at = Some(at);
        }
    }
}

/// Requests touched by a batch of events, written together at its end.
#[derive(Default)]
pub(crate) struct Batch {
    rows: HashMap<Uuid, RequestRow>,
    approvers: Vec<(i64, String, &'static str)>,
    tags: Vec<(String, i64)>,
}

impl Batch {
    /// Ids of requests the events name but the batch does not hold yet.
    pub fn missing<'a>(&self, events: impl Iterator<Item = &'a AuditEvent>) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = events
            .filter(|e| !matches!(e.event, EventKind::RequestCreated { .. }))
            .filter_map(|e| e.event.action_id())
            .filter(|id| !self.rows.contains_key(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Adds rows loaded from the database.
    pub fn add_loaded(&mut self, rows: Vec<RequestRow>) {
        for row in rows {
            if let Ok(id) = row.id.parse() {
                self.rows.insert(id, row);
            }
        }
    }

    /// The row of a request, if the batch holds it.
    pub fn row(&self, id: &Uuid) -> Option<&RequestRow> {
        self.rows.get(id)
    }

    /// Applies one (verified) event.
    pub fn apply(&mut self, event: &AuditEvent) {
        let at = event.recorded_at.as_millis();
        let seq = event.seq as i64;
        if let EventKind::RequestCreated {
            action,
            digest,
            authenticated_by,
        } = &event.event
        {
            let mut row = RequestRow::new(event.seq, action, digest);
            row.requester_auth = authenticated_by.as_ref().map(|a| a.label());
            for tag in &action.request.tags {
                self.tags.push((tag.as_str().to_owned(), row.seq));
            }
            self.rows.insert(action.id, row);
            return;
        }
        let Some(row) = event
            .event
            .action_id()
            .and_then(|id| self.rows.get_mut(&id))
        else {
            return;
        };
        row.last_seq = seq;
        match &event.event {
            EventKind::DecisionRecorded {
                decision,
                key_kind,
                attested_by,
            } => {
                let d = &decision.decision;
                row.attested_only &= attested_by.is_some();
                if let Some(root) = attested_by
                    && !row.attesting_roots.lines().any(|r| r == root)
                {
                    if !row.attesting_roots.is_empty() {
                        row.attesting_roots.push('\n');
                    }
                    row.attesting_roots.push_str(root);
                }
                if !row.approvers.is_empty() {
                    row.approvers.push(' ');
                }
                row.approvers.push_str(&d.approver_id);
                if !d.comment.is_empty() {
                    if !row.comments.is_empty() {
                        row.comments.push('\n');
                    }
                    row.comments.push_str(&d.comment);
                }
                let (verdict, by) = match d.verdict {
                    Verdict::Approve => {
                        row.approvals += 1;
                        ("approve", &mut row.approved_by)
                    }
                    Verdict::Deny => {
                        row.denials += 1;
                        ("deny", &mut row.denied_by)
                    }
                };
                push_word(by, &d.approver_id);
                push_word(&mut row.key_ids, &d.key_id.to_string());
                row.hardware_only &= key_kind.is_hardware();
                self.approvers
                    .push((row.seq, d.approver_id.clone(), verdict));
            }
            EventKind::ReviewRecorded { review, .. } => {
                let r = &review.review;
                if r.concern {
                    row.review_concerns += 1;
                    push_word(&mut row.reviewed_by, &format!("{}:concern", r.reviewer_id));
                } else {
                    push_word(&mut row.reviewed_by, &r.reviewer_id);
                }
            }
            EventKind::ReviewCompleted { .. } => row.reviewed_at = Some(at),
            EventKind::Approved { .. } => row.decide("approved", at),
            EventKind::Denied { .. } => row.decide("denied", at),
            EventKind::Expired { .. } => row.decide("expired", at),
            EventKind::Cancelled { .. } => row.decide("cancelled", at),
            EventKind::GrantIssued { grant } => {
                row.grant_id = Some(grant.grant.grant_id.to_string());
            }
            EventKind::GrantRedeemed { .. } => row.redeemed_at = Some(at),
            EventKind::ExecutionReported { outcome, .. } => {
                row.outcome = Some(
                    if outcome.succeeded {
                        "succeeded"
                    } else {
                        "failed"
                    }
                    .into(),
                );
            }
            _ => {}
        }
    }

    /// Writes every touched row, in the caller's transaction.
    pub async fn write(self, conn: &mut SqliteConnection) -> MirrorResult<()> {
        let rows: Vec<RequestRow> = self.rows.into_values().collect();
        // SQLite allows 32,766 bound values a statement: 26 columns × 1,000 rows fits.
        for chunk in rows.chunks(1000) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("INSERT INTO requests ({COLUMNS}) "));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.seq)
                    .push_bind(&r.id)
                    .push_bind(&r.digest)
                    .push_bind(r.created_at)
                    .push_bind(r.expires_at)
                    .push_bind(&r.action_type)
                    .push_bind(&r.resource)
                    .push_bind(&r.environment)
                    .push_bind(&r.requester)
                    .push_bind(&r.on_behalf_of)
                    .push_bind(&r.tags)
                    .push_bind(&r.justification)
                    .push_bind(&r.parameters)
                    .push_bind(&r.policy_outcome)
                    .push_bind(r.quorum)
                    .push_bind(&r.status)
                    .push_bind(r.decided_at)
                    .push_bind(&r.approvers)
                    .push_bind(&r.comments)
                    .push_bind(r.approvals)
                    .push_bind(r.denials)
                    .push_bind(r.hardware_only)
                    .push_bind(&r.grant_id)
                    .push_bind(r.redeemed_at)
                    .push_bind(&r.outcome)
                    .push_bind(r.last_seq)
                    .push_bind(&r.requester_auth)
                    .push_bind(&r.policy_reason)
                    .push_bind(&r.approved_by)
                    .push_bind(&r.denied_by)
                    .push_bind(&r.key_ids)
                    .push_bind(r.attested_only)
                    .push_bind(&r.attesting_roots)
                    .push_bind(r.review_quorum)
                    .push_bind(&r.reviewed_by)
                    .push_bind(r.review_concerns)
                    .push_bind(r.reviewed_at);
            });
            q.push(
                " ON CONFLICT (seq) DO UPDATE SET status = excluded.status, \
                 decided_at = excluded.decided_at, approvers = excluded.approvers, \
                 comments = excluded.comments, approvals = excluded.approvals, \
                 denials = excluded.denials, hardware_only = excluded.hardware_only, \
                 grant_id = excluded.grant_id, redeemed_at = excluded.redeemed_at, \
                 outcome = excluded.outcome, last_seq = excluded.last_seq, \
                 approved_by = excluded.approved_by, denied_by = excluded.denied_by, \
                 key_ids = excluded.key_ids, attested_only = excluded.attested_only, \
                 attesting_roots = excluded.attesting_roots, \
                 reviewed_by = excluded.reviewed_by, review_concerns = excluded.review_concerns, \
                 reviewed_at = excluded.reviewed_at \
                 WHERE excluded.last_seq > requests.last_seq",
            );
            q.build().execute(&mut *conn).await?;
        }
        for chunk in self.approvers.chunks(5000) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR IGNORE INTO request_approvers (request_seq, approver_id, verdict) ",
            );
            q.push_values(chunk, |mut b, (seq, approver, verdict)| {
                b.push_bind(seq).push_bind(approver).push_bind(*verdict);
            });
            q.build().execute(&mut *conn).await?;
        }
        for chunk in self.tags.chunks(5000) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT OR IGNORE INTO request_tags (tag, request_seq) ");
            q.push_values(chunk, |mut b, (tag, seq)| {
                b.push_bind(tag).push_bind(seq);
            });
            q.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Loads the rows of `ids` (those already in the database).
pub(crate) async fn load(
    conn: &mut SqliteConnection,
    ids: &[Uuid],
) -> MirrorResult<Vec<RequestRow>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {COLUMNS} FROM requests WHERE id IN ("));
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(id.to_string());
        }
        q.push(")");
        let rows = q.build().fetch_all(&mut *conn).await?;
        for row in rows {
            out.push(decode(&row)?);
        }
    }
    Ok(out)
}

pub(crate) fn decode(row: &sqlx::sqlite::SqliteRow) -> MirrorResult<RequestRow> {
    use sqlx::Row;
    Ok(RequestRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        digest: row.try_get("digest")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        action_type: row.try_get("action_type")?,
        resource: row.try_get("resource")?,
        environment: row.try_get("environment")?,
        requester: row.try_get("requester")?,
        on_behalf_of: row.try_get("on_behalf_of")?,
        tags: row.try_get("tags")?,
        justification: row.try_get("justification")?,
        parameters: row.try_get("parameters")?,
        policy_outcome: row.try_get("policy_outcome")?,
        quorum: row.try_get("quorum")?,
        status: row.try_get("status")?,
        decided_at: row.try_get("decided_at")?,
        approvers: row.try_get("approvers")?,
        comments: row.try_get("comments")?,
        approvals: row.try_get("approvals")?,
        denials: row.try_get("denials")?,
        hardware_only: row.try_get("hardware_only")?,
        grant_id: row.try_get("grant_id")?,
        redeemed_at: row.try_get("redeemed_at")?,
        outcome: row.try_get("outcome")?,
        last_seq: row.try_get("last_seq")?,
        requester_auth: row.try_get("requester_auth")?,
        policy_reason: row.try_get("policy_reason")?,
        approved_by: row.try_get("approved_by")?,
        denied_by: row.try_get("denied_by")?,
        key_ids: row.try_get("key_ids")?,
        attested_only: row.try_get("attested_only")?,
        attesting_roots: row.try_get("attesting_roots")?,
        review_quorum: row.try_get("review_quorum")?,
        reviewed_by: row.try_get("reviewed_by")?,
        review_concerns: row.try_get("review_concerns")?,
        reviewed_at: row.try_get("reviewed_at")?,
    })
}
