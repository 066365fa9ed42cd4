//! Figures for reports, computed in SQL over the request index so a report on a million
//! requests reads aggregates, not rows.

use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::search::{
    RequestSummary, SearchQuery, fetch_summaries, push_from_where, summaries_query,
};
use crate::{Mirror, MirrorError, MirrorResult};

/// Requests per verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// All.
    pub total: u64,
    /// Approved (by quorum or by policy).
    pub approved: u64,
    /// Denied (by an approver or by policy).
    pub denied: u64,
    /// Nobody decided in time.
    pub expired: u64,
    /// Withdrawn.
    pub cancelled: u64,
    /// Still waiting.
    pub pending: u64,
}

/// One approver's decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApproverRow {
    /// Who.
    pub approver_id: String,
    /// Approvals given.
    pub approvals: u64,
    /// Denials given.
    pub denials: u64,
}

/// One action type's requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypeRow {
    /// Action type.
    pub action_type: String,
    /// Requests.
    pub total: u64,
    /// Approved.
    pub approved: u64,
    /// Denied.
    pub denied: u64,
    /// Expired.
    pub expired: u64,
    /// Still waiting.
    pub pending: u64,
}

/// One decision of a report, as the log recorded it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionLine {
    /// The request.
    pub request_id: String,
    /// Its action type.
    pub action_type: String,
    /// Its resource.
    pub resource: String,
    /// Who decided.
    pub approver_id: String,
    /// Approve or deny.
    pub verdict: countersign_core::Verdict,
    /// When the service recorded it.
    pub recorded_at: countersign_core::Timestamp,
    /// The signing key.
    pub key_id: countersign_core::KeyId,
    /// Its kind.
    pub key_kind: countersign_core::KeyKind,
    /// The TPM attestation key that certified it at enrolment, when the enrolment carried one.
    pub certified_by: Option<countersign_core::KeyId>,
    /// The trusted manufacturer's root that vouched for its device, as the decision's event
    /// records; `None`: its hardware is only claimed.
    pub attested_by: Option<String>,
    /// The approver's comment.
    pub comment: String,
}

/// Everything a report shows.
#[derive(Clone, Debug, Serialize)]
pub struct ReportStats {
    /// Break-glass uses (granted without quorum), oldest first, up to the exceptions' limit.
    pub break_glass: Vec<BreakGlassRow>,
    /// How many break-glass uses match.
    pub break_glass_total: u64,
    /// Per verdict.
    pub totals: Totals,
    /// Milliseconds from request to decision, sorted, for every decided request.
    pub decision_times_ms: Vec<i64>,
    /// Per approver.
    pub approvers: Vec<ApproverRow>,
    /// Per action type.
    pub types: Vec<TypeRow>,
    /// Denied and expired requests, oldest first, at most `exceptions_limit`.
    pub exceptions: Vec<RequestSummary>,
    /// How many denied and expired requests there are in all.
    pub exceptions_total: u64,
    /// Requests per time bucket: `(bucket start ms, count)`.
    pub volume: Vec<(i64, u64)>,
    /// Width of a volume bucket.
    pub bucket_ms: i64,
    /// Earliest and latest request times.
    pub span: Option<(i64, i64)>,
    /// Requests per way their agent authenticated (`api_token`, `workload_token:<issuer>`;
    /// `None`: not recorded), most first.
    pub authentication: Vec<(Option<String>, u64)>,
}

/// `(nearest-rank)` percentile `p` (0–100) of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A break-glass use and its review state.
#[derive(Clone, Debug, Serialize)]
pub struct BreakGlassRow {
    /// When it was granted (ms).
    pub created_at: i64,
    /// Action type.
    pub action_type: String,
    /// Resource.
    pub resource: String,
    /// The agent.
    pub requester: String,
    /// Reviews needed.
    pub review_quorum: i64,
    /// Who reviewed (`name:concern` for a concern), space-separated.
    pub reviewed_by: String,
    /// Reviews that raised a concern.
    pub review_concerns: i64,
    /// When the reviews were complete (ms), if they are.
    pub reviewed_at: Option<i64>,
}

fn filtered(select: &str, q: &SearchQuery) -> QueryBuilder<'static, Sqlite> {
    let mut b = QueryBuilder::new(select.to_owned());
    // Without a cursor: a report covers every match.
    push_from_where(&mut b, q, false);
    b
}

impl Mirror {
    /// Figures for the requests matching `q`, with at most `exceptions_limit` listed
    /// exceptions and about `buckets` volume buckets.
    pub async fn report_stats(
        &self,
        q: &SearchQuery,
        exceptions_limit: u32,
        buckets: u32,
    ) -> MirrorResult<ReportStats> {
        let mut totals = Totals::default();
        let rows = filtered("SELECT r.status, COUNT(*)", q)
            .push(" GROUP BY r.status")
            .build()
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let status: String = row.try_get(0)?;
            let n = row.try_get::<i64, _>(1)? as u64;
            totals.total += n;
            match status.as_str() {
                "approved" => totals.approved += n,
                "denied" => totals.denied += n,
                "expired" => totals.expired += n,
                "cancelled" => totals.cancelled += n,
                _ => totals.pending += n,
            }
        }
        let mut times: Vec<i64> = filtered("SELECT r.decided_at - r.created_at", q)
            .push(" AND r.decided_at IS NOT NULL")
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await?;
        times.sort_unstable();

        // Approvers of the filtered requests.
        let mut b = QueryBuilder::new(
            "SELECT a.approver_id, SUM(a.verdict = 'approve'), SUM(a.verdict = 'deny') \
             FROM request_approvers a WHERE a.request_seq IN (SELECT r.seq",
        );
        push_from_where(&mut b, q, false);
        b.push(") GROUP BY a.approver_id ORDER BY a.approver_id");
        let approvers = b
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(ApproverRow {
                    approver_id: row.try_get(0)?,
                    approvals: row.try_get::<i64, _>(1)? as u64,
                    denials: row.try_get::<i64, _>(2)? as u64,
                })
            })
            .collect::<MirrorResult<Vec<_>>>()?;

        let types = filtered(
            "SELECT r.action_type, COUNT(*), SUM(r.status = 'approved'), \
             SUM(r.status = 'denied'), SUM(r.status = 'expired'), SUM(r.status = 'pending')",
            q,
        )
        .push(" GROUP BY r.action_type ORDER BY COUNT(*) DESC, r.action_type")
        .build()
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(TypeRow {
                action_type: row.try_get(0)?,
                total: row.try_get::<i64, _>(1)? as u64,
                approved: row.try_get::<i64, _>(2)? as u64,
                denied: row.try_get::<i64, _>(3)? as u64,
                expired: row.try_get::<i64, _>(4)? as u64,
                pending: row.try_get::<i64, _>(5)? as u64,
            })
        })
        .collect::<MirrorResult<Vec<_>>>()?;

        let exceptions_total = totals.denied + totals.expired;
        let mut b = summaries_query();
        push_from_where(&mut b, q, false);
        b.push(" AND r.status IN ('denied', 'expired') ORDER BY r.seq LIMIT ");
        b.push_bind(i64::from(exceptions_limit));
        let exceptions = fetch_summaries(b, &self.pool).await?;

        // Every break-glass use, with its review state (rare by design: all listed up to the
        // same limit as exceptions).
        let mut b = filtered(
            "SELECT r.created_at, r.action_type, r.resource, r.requester, r.review_quorum, \
             r.reviewed_by, r.review_concerns, r.reviewed_at",
            q,
        );
        b.push(" AND r.policy_outcome = 'break_glass' ORDER BY r.seq LIMIT ");
        b.push_bind(i64::from(exceptions_limit));
        let break_glass = b
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(BreakGlassRow {
                    created_at: row.try_get(0)?,
                    action_type: row.try_get(1)?,
                    resource: row.try_get(2)?,
                    requester: row.try_get(3)?,
                    review_quorum: row.try_get(4)?,
                    reviewed_by: row.try_get(5)?,
                    review_concerns: row.try_get(6)?,
                    reviewed_at: row.try_get(7)?,
                })
            })
            .collect::<MirrorResult<Vec<_>>>()?;
        let break_glass_total = filtered("SELECT COUNT(*)", q)
            .push(" AND r.policy_outcome = 'break_glass'")
            .build_query_scalar::<i64>()
            .fetch_one(&self.pool)
            .await? as u64;

        let authentication = filtered("SELECT r.requester_auth, COUNT(*)", q)
            .push(" GROUP BY r.requester_auth ORDER BY COUNT(*) DESC, r.requester_auth")
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<Option<String>, _>(0)?,
                    row.try_get::<i64, _>(1)? as u64,
                ))
            })
            .collect::<MirrorResult<Vec<_>>>()?;

        let span: Option<(Option<i64>, Option<i64>)> =
            filtered("SELECT MIN(r.created_at), MAX(r.created_at)", q)
                .build_query_as()
                .fetch_optional(&self.pool)
                .await?;
        let span = span.and_then(|(a, b)| a.zip(b));
        let (volume, bucket_ms) = match span {
            Some((first, last)) => {
                let bucket_ms = bucket_width(last - first, buckets.max(1));
                let mut b = filtered(
                    &format!("SELECT (r.created_at - {first}) / {bucket_ms}, COUNT(*)"),
                    q,
                );
                b.push(" GROUP BY 1 ORDER BY 1");
                let rows = b.build().fetch_all(&self.pool).await?;
                let volume = rows
                    .iter()
                    .map(|row| {
                        Ok((
                            first + row.try_get::<i64, _>(0)? * bucket_ms,
                            row.try_get::<i64, _>(1)? as u64,
                        ))
                    })
                    .collect::<MirrorResult<Vec<_>>>()?;
                (volume, bucket_ms)
            }
            None => (Vec::new(), 3_600_000),
        };
        Ok(ReportStats {
            break_glass,
            break_glass_total,
            totals,
            decision_times_ms: times,
            approvers,
            types,
            exceptions,
            exceptions_total,
            volume,
            bucket_ms,
            span,
            authentication,
        })
    }
}

impl Mirror {
    /// The decisions on the requests matching `q`, in log order, at most `limit`, and how many
    /// there are in all.
    pub async fn decision_lines(
        &self,
        q: &SearchQuery,
        limit: u32,
    ) -> MirrorResult<(Vec<DecisionLine>, u64)> {
        use countersign_core::{AuditEvent, EventKind};
        let total: i64 = filtered("SELECT COALESCE(SUM(r.approvals + r.denials), 0)", q)
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await?;
        let mut attested = std::collections::HashMap::new();
        for e in self.key_events().await? {
            if let Ok(AuditEvent {
                event:
                    EventKind::KeyEnrolled {
                        key_id,
                        attestation_key,
                        ..
                    },
                ..
            }) = serde_json::from_str::<AuditEvent>(&e.body)
            {
                attested.insert(key_id, attestation_key);
            }
        }
        let mut b = QueryBuilder::new(
            "SELECT r.action_type, r.resource, e.body FROM events e JOIN requests r ON r.id = e.action_id \
             WHERE e.kind = 'decision_recorded' AND r.seq IN (SELECT r.seq",
        );
        push_from_where(&mut b, q, false);
        b.push(") ORDER BY e.seq LIMIT ");
        b.push_bind(i64::from(limit));
        let rows = b.build().fetch_all(&self.pool).await?;
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            let body: String = row.try_get(2)?;
            let event: AuditEvent = serde_json::from_str(&body)
                .map_err(|e| MirrorError::Corrupt(format!("stored decision: {e}")))?;
            let EventKind::DecisionRecorded {
                decision,
                key_kind,
                attested_by,
            } = event.event
            else {
                continue;
            };
            let d = decision.decision;
            lines.push(DecisionLine {
                request_id: d.request_id.to_string(),
                action_type: row.try_get(0)?,
                resource: row.try_get(1)?,
                approver_id: d.approver_id,
                verdict: d.verdict,
                recorded_at: event.recorded_at,
                certified_by: attested.get(&d.key_id).copied().flatten(),
                attested_by,
                key_id: d.key_id,
                key_kind,
                comment: d.comment,
            });
        }
        Ok((lines, u64::try_from(total).unwrap_or(0)))
    }
}

/// A round bucket width (minute, hour, day, week) giving at most about `buckets` bars.
fn bucket_width(span_ms: i64, buckets: u32) -> i64 {
    const MINUTE: i64 = 60_000;
    for width in [
        MINUTE,
        10 * MINUTE,
        60 * MINUTE,
        6 * 60 * MINUTE,
        24 * 60 * MINUTE,
        7 * 24 * 60 * MINUTE,
    ] {
        if span_ms / width < i64::from(buckets) {
            return width;
        }
    }
    (span_ms / i64::from(buckets)).max(1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn buckets_are_round_and_few() {
        assert_eq!(bucket_width(30 * 60_000, 40), 60_000);
        assert_eq!(bucket_width(3 * 24 * 3_600_000, 40), 6 * 3_600_000);
        assert_eq!(bucket_width(30 * 24 * 3_600_000, 40), 24 * 3_600_000);
    }
}
