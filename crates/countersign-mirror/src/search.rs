//! Search over the request index: full text (FTS5) with filters, newest or oldest first, in
//! pages that continue from a cursor, so a list of a million entries is read a screen at a time.

use countersign_core::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Sqlite};

use crate::database::timestamp;
use crate::{Mirror, MirrorError, MirrorResult};

/// Most results a page returns.
pub const MAX_PAGE: u32 = 1000;

/// Order of results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Newest request first.
    #[default]
    Newest,
    /// Oldest request first.
    Oldest,
}

/// What to look for. Empty fields do not filter.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchQuery {
    /// Words to find in type, resource, requester, approvers, justification, comments,
    /// parameters and tags; every word must match, the last as a prefix.
    pub text: String,
    /// `pending`, `approved`, `denied`, `expired` or `cancelled`.
    pub status: Option<String>,
    /// Someone who decided.
    pub approver: Option<String>,
    /// Who asked.
    pub requester: Option<String>,
    /// Action type, exactly.
    pub action_type: Option<String>,
    /// Environment, exactly.
    pub environment: Option<String>,
    /// Tags the request carries (all of them).
    pub tags: Vec<String>,
    /// Created at or after.
    pub from: Option<Timestamp>,
    /// Created before.
    pub to: Option<Timestamp>,
    /// Order.
    pub sort: Sort,
    /// Continue after this cursor (from the previous page).
    pub after: Option<i64>,
    /// Or skip this many results instead (for a scrollbar that jumps; slower when deep).
    pub offset: Option<u32>,
    /// Page size (1 to 1000, default 100).
    pub limit: Option<u32>,
}

/// One request in a result list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestSummary {
    /// Position of its `request_created` event.
    pub seq: i64,
    /// Request id.
    pub id: String,
    /// Created.
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Timestamp,
    /// Action type.
    pub action_type: String,
    /// Resource.
    pub resource: String,
    /// Environment.
    pub environment: String,
    /// Who asked.
    pub requester: String,
    /// For whom.
    pub on_behalf_of: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Justification.
    pub justification: String,
    /// What policy said: `allow`, `deny`, `require_approval`.
    pub policy_outcome: String,
    /// Approvals needed.
    pub quorum: i64,
    /// `pending`, `approved`, `denied`, `expired`, `cancelled`.
    pub status: String,
    /// When it was decided.
    pub decided_at: Option<Timestamp>,
    /// Milliseconds from request to decision.
    pub time_to_decision_ms: Option<i64>,
    /// Who decided, in order.
    pub approvers: Vec<String>,
    /// Approvals.
    pub approvals: i64,
    /// Denials.
    pub denials: i64,
    /// Every decision was signed by a hardware key.
    pub hardware_only: bool,
    /// Grant redeemed at.
    pub redeemed_at: Option<Timestamp>,
    /// `succeeded`, `failed`, or none reported.
    pub outcome: Option<String>,
}

/// A page of results.
#[derive(Clone, Debug, Serialize)]
pub struct Page {
    /// The results.
    pub items: Vec<RequestSummary>,
    /// Cursor for the next page, when there may be more.
    pub next: Option<i64>,
}

/// Values present in the index, for filter menus.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Facets {
    /// Approvers who decided something.
    pub approvers: Vec<String>,
    /// Requesters.
    pub requesters: Vec<String>,
    /// Action types.
    pub action_types: Vec<String>,
    /// Environments.
    pub environments: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
}

/// The FTS5 query for free text: each word a quoted string (so no character has query
/// meaning), all required, the last one a prefix.
pub(crate) fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut q = words.join(" ");
    q.push('*');
    Some(q)
}

pub(crate) const SUMMARY_COLUMNS: &str = "r.seq, r.id, r.created_at, r.expires_at, r.action_type, \
    r.resource, r.environment, r.requester, r.on_behalf_of, r.tags, r.justification, \
    r.policy_outcome, r.quorum, r.status, r.decided_at, r.approvers, r.approvals, r.denials, \
    r.hardware_only, r.redeemed_at, r.outcome";

/// Appends `FROM … WHERE …` for `q` (no order, no limit).
pub(crate) fn push_from_where(b: &mut QueryBuilder<'_, Sqlite>, q: &SearchQuery, cursor: bool) {
    let text = fts_query(&q.text);
    if text.is_some() {
        b.push(" FROM requests_fts f JOIN requests r ON r.seq = f.rowid WHERE requests_fts MATCH ");
        b.push_bind(text);
    } else {
        b.push(" FROM requests r WHERE 1");
    }
    let eq = |b: &mut QueryBuilder<'_, Sqlite>, column: &str, value: &Option<String>| {
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
            b.push(format!(" AND r.{column} = "));
            b.push_bind(v.clone());
        }
    };
    eq(b, "status", &q.status);
    eq(b, "requester", &q.requester);
    eq(b, "action_type", &q.action_type);
    eq(b, "environment", &q.environment);
    if let Some(a) = q.approver.as_ref().filter(|a| !a.is_empty()) {
        b.push(" AND EXISTS (SELECT 1 FROM request_approvers a WHERE a.approver_id = ");
        b.push_bind(a.clone());
        b.push(" AND a.request_seq = r.seq)");
    }
    for tag in q.tags.iter().filter(|t| !t.is_empty()) {
        b.push(" AND EXISTS (SELECT 1 FROM request_tags t WHERE t.tag = ");
        b.push_bind(tag.clone());
        b.push(" AND t.request_seq = r.seq)");
    }
    if let Some(from) = q.from {
        b.push(" AND r.created_at >= ");
        b.push_bind(from.as_millis());
    }
    if let Some(to) = q.to {
        b.push(" AND r.created_at < ");
        b.push_bind(to.as_millis());
    }
    if cursor && let Some(after) = q.after {
        b.push(match q.sort {
            Sort::Newest => " AND r.seq < ",
            Sort::Oldest => " AND r.seq > ",
        });
        b.push_bind(after);
    }
}

pub(crate) fn push_order(b: &mut QueryBuilder<'_, Sqlite>, q: &SearchQuery) {
    // Ordering by the FTS rowid lets FTS5 stream matches in order and stop at the limit.
    let key = if fts_query(&q.text).is_some() {
        "f.rowid"
    } else {
        "r.seq"
    };
    b.push(format!(
        " ORDER BY {key} {}",
        match q.sort {
            Sort::Newest => "DESC",
            Sort::Oldest => "ASC",
        }
    ));
}

pub(crate) fn decode_summary(row: &sqlx::sqlite::SqliteRow) -> MirrorResult<RequestSummary> {
    use sqlx::Row;
    let created: i64 = row.try_get(2)?;
    let decided: Option<i64> = row.try_get(14)?;
    let words = |s: String| -> Vec<String> { s.split_whitespace().map(str::to_owned).collect() };
    Ok(RequestSummary {
        seq: row.try_get(0)?,
        id: row.try_get(1)?,
        created_at: timestamp(created)?,
        expires_at: timestamp(row.try_get(3)?)?,
        action_type: row.try_get(4)?,
        resource: row.try_get(5)?,
        environment: row.try_get(6)?,
        requester: row.try_get(7)?,
        on_behalf_of: row.try_get(8)?,
        tags: words(row.try_get(9)?),
        justification: row.try_get(10)?,
        policy_outcome: row.try_get(11)?,
        quorum: row.try_get(12)?,
        status: row.try_get(13)?,
        decided_at: decided.map(timestamp).transpose()?,
        time_to_decision_ms: decided.map(|d| d - created),
        approvers: words(row.try_get(15)?),
        approvals: row.try_get(16)?,
        denials: row.try_get(17)?,
        hardware_only: row.try_get(18)?,
        redeemed_at: row
            .try_get::<Option<i64>, _>(19)?
            .map(timestamp)
            .transpose()?,
        outcome: row.try_get(20)?,
    })
}

impl Mirror {
    /// One page of requests matching `q`.
    pub async fn search(&self, q: &SearchQuery) -> MirrorResult<Page> {
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(MirrorError::Invalid(format!(
                "page size {limit} is outside 1 to {MAX_PAGE}"
            )));
        }
        let mut b = QueryBuilder::new(format!("SELECT {SUMMARY_COLUMNS}"));
        push_from_where(&mut b, q, q.offset.is_none());
        push_order(&mut b, q);
        b.push(" LIMIT ");
        b.push_bind(i64::from(limit));
        if let Some(offset) = q.offset {
            b.push(" OFFSET ");
            b.push_bind(i64::from(offset));
        }
        let rows = b.build().fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(decode_summary)
            .collect::<MirrorResult<Vec<_>>>()?;
        let next = (items.len() == limit as usize)
            .then(|| items.last().map(|i| i.seq))
            .flatten();
        Ok(Page { items, next })
    }

    /// How many requests match `q` (ignoring its cursor).
    pub async fn count(&self, q: &SearchQuery) -> MirrorResult<u64> {
        let mut b = QueryBuilder::new("SELECT COUNT(*)");
        push_from_where(&mut b, q, false);
        let n: i64 = b.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    /// Values present in the index, for filter menus.
    pub async fn facets(&self) -> MirrorResult<Facets> {
        let list = |sql: &'static str| async move {
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(&self.pool)
                .await
                .map_err(MirrorError::from)
        };
        Ok(Facets {
            approvers: list("SELECT DISTINCT approver_id FROM request_approvers ORDER BY 1")
                .await?,
            requesters: list("SELECT DISTINCT requester FROM requests ORDER BY 1").await?,
            action_types: list("SELECT DISTINCT action_type FROM requests ORDER BY 1").await?,
            environments: list("SELECT DISTINCT environment FROM requests ORDER BY 1").await?,
            tags: list("SELECT DISTINCT tag FROM request_tags ORDER BY 1").await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_quoted_and_the_last_word_is_a_prefix() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(
            fts_query("prod-db cust").as_deref(),
            Some("\"prod-db\" \"cust\"*")
        );
        assert_eq!(
            fts_query("a\"b OR NEAR(").as_deref(),
            Some("\"a\"\"b\" \"OR\" \"NEAR(\"*")
        );
    }
}
