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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchQuery {
    /// Words to find in type, resource, requester, approvers, justification, comments,
    /// parameters and tags; every word must match, the last as a prefix.
    pub text: String,
    /// One request, by id (a per-action proof).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Reviews a break-glass request needs (0 for any other request).
    pub review_quorum: i64,
    /// Who reviewed it, in order (`name:concern` for one who raised a concern).
    pub reviewed_by: Vec<String>,
    /// Reviews that raised a concern.
    pub review_concerns: i64,
    /// When its reviews were complete.
    pub reviewed_at: Option<Timestamp>,
}

/// A page of results.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct Page {
    /// The results.
    pub items: Vec<RequestSummary>,
    /// Cursor for the next page, when there may be more.
    pub next: Option<i64>,
}

/// Values present in the index, for filter menus.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    r.hardware_only, r.redeemed_at, r.outcome, r.review_quorum, r.reviewed_by, r.review_concerns, \
    r.reviewed_at";

/// A value bound into a query.
pub(crate) enum Value {
    Text(String),
    Int(i64),
}

/// Where query text goes: a sqlx query builder (values bound), or plain SQL text (values
/// inlined, for running the very same query in the `sqlite3` shell).
pub(crate) trait SqlOut {
    fn sql(&mut self, text: &str);
    fn value(&mut self, value: Value);
}

impl SqlOut for QueryBuilder<'_, Sqlite> {
    fn sql(&mut self, text: &str) {
        self.push(text);
    }
    fn value(&mut self, value: Value) {
        match value {
            Value::Text(t) => self.push_bind(t),
            Value::Int(i) => self.push_bind(i),
        };
    }
}

impl SqlOut for String {
    fn sql(&mut self, text: &str) {
        self.push_str(text);
    }
    fn value(&mut self, value: Value) {
        match value {
            Value::Text(t) => {
                self.push('\'');
                self.push_str(&t.replace('\'', "''"));
                self.push('\'');
            }
            Value::Int(i) => self.push_str(&i.to_string()),
        }
    }
}

/// Appends `FROM … WHERE …` for `q` (no order, no limit).
pub(crate) fn push_from_where(b: &mut impl SqlOut, q: &SearchQuery, cursor: bool) {
    if let Some(text) = fts_query(&q.text) {
        b.sql(" FROM requests_fts f JOIN requests r ON r.seq = f.rowid WHERE requests_fts MATCH ");
        b.value(Value::Text(text));
    } else {
        b.sql(" FROM requests r WHERE 1");
    }
    for (column, value) in [
        ("id", &q.id),
        ("status", &q.status),
        ("requester", &q.requester),
        ("action_type", &q.action_type),
        ("environment", &q.environment),
    ] {
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
            b.sql(&format!(" AND r.{column} = "));
            b.value(Value::Text(v.clone()));
        }
    }
    if let Some(a) = q.approver.as_ref().filter(|a| !a.is_empty()) {
        b.sql(" AND EXISTS (SELECT 1 FROM request_approvers a WHERE a.approver_id = ");
        b.value(Value::Text(a.clone()));
        b.sql(" AND a.request_seq = r.seq)");
    }
    for tag in q.tags.iter().filter(|t| !t.is_empty()) {
        b.sql(" AND EXISTS (SELECT 1 FROM request_tags t WHERE t.tag = ");
        b.value(Value::Text(tag.clone()));
        b.sql(" AND t.request_seq = r.seq)");
    }
    if let Some(from) = q.from {
        b.sql(" AND r.created_at >= ");
        b.value(Value::Int(from.as_millis()));
    }
    if let Some(to) = q.to {
        b.sql(" AND r.created_at < ");
        b.value(Value::Int(to.as_millis()));
    }
    if cursor && let Some(after) = q.after {
        b.sql(match q.sort {
            Sort::Newest => " AND r.seq < ",
            Sort::Oldest => " AND r.seq > ",
        });
        b.value(Value::Int(after));
    }
}

pub(crate) fn push_order(b: &mut impl SqlOut, q: &SearchQuery) {
    // Ordering by the FTS rowid lets FTS5 stream matches in order and stop at the limit.
    let key = if fts_query(&q.text).is_some() {
        "f.rowid"
    } else {
        "r.seq"
    };
    b.sql(&format!(
        " ORDER BY {key} {}",
        match q.sort {
            Sort::Newest => "DESC",
            Sort::Oldest => "ASC",
        }
    ));
}

/// Writes the page query for `q` (order, limit and offset included) into `b`.
fn push_page(b: &mut impl SqlOut, q: &SearchQuery, limit: u32) {
    push_page_of(b, q, limit, &format!("SELECT {SUMMARY_COLUMNS}"));
}

/// The page query selecting `select`.
fn push_page_of(b: &mut impl SqlOut, q: &SearchQuery, limit: u32, select: &str) {
    b.sql(select);
    push_page_rest(b, q, limit);
}

/// Everything of the page query after its select list.
fn push_page_rest(b: &mut impl SqlOut, q: &SearchQuery, limit: u32) {
    push_from_where(b, q, q.offset.is_none());
    push_order(b, q);
    b.sql(" LIMIT ");
    b.value(Value::Int(i64::from(limit)));
    if let Some(offset) = q.offset {
        b.sql(" OFFSET ");
        b.value(Value::Int(i64::from(offset)));
    }
}

/// The SQL [`Mirror::search`] runs for `q`, with its values inlined: to run the very same
/// query in the `sqlite3` shell (benchmarks, debugging).
pub fn search_sql(q: &SearchQuery) -> String {
    let mut sql = String::new();
    push_page(&mut sql, q, q.limit.unwrap_or(100));
    sql
}

/// A summary row as `json_array` over [`SUMMARY_COLUMNS`] encodes it.
#[derive(Deserialize)]
struct SummaryJson(
    i64,
    String,
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
    String,
    Option<i64>,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    i64,
    String,
    i64,
    Option<i64>,
);

impl SummaryJson {
    fn into_summary(self) -> MirrorResult<RequestSummary> {
        let words =
            |s: String| -> Vec<String> { s.split_whitespace().map(str::to_owned).collect() };
        Ok(RequestSummary {
            seq: self.0,
            id: self.1,
            created_at: timestamp(self.2)?,
            expires_at: timestamp(self.3)?,
            action_type: self.4,
            resource: self.5,
            environment: self.6,
            requester: self.7,
            on_behalf_of: self.8,
            tags: words(self.9),
            justification: self.10,
            policy_outcome: self.11,
            quorum: self.12,
            status: self.13,
            decided_at: self.14.map(timestamp).transpose()?,
            time_to_decision_ms: self.14.map(|d| d - self.2),
            approvers: words(self.15),
            approvals: self.16,
            denials: self.17,
            hardware_only: self.18 != 0,
            redeemed_at: self.19.map(timestamp).transpose()?,
            outcome: self.20,
            review_quorum: self.21,
            reviewed_by: words(self.22),
            review_concerns: self.23,
            reviewed_at: self.24.map(timestamp).transpose()?,
        })
    }
}

/// A query whose rows are request summaries: the caller adds `FROM … WHERE …` (and order and
/// limit), then [`fetch_summaries`] runs it. SQLite encodes all the rows as one JSON text, so
/// one value crosses the driver instead of a row per result, which is most of the cost of a
/// page otherwise.
pub(crate) fn summaries_query<'a>() -> QueryBuilder<'a, Sqlite> {
    QueryBuilder::new(format!(
        "SELECT '[' || COALESCE(group_concat(j, ','), '') || ']' FROM (SELECT json_array({SUMMARY_COLUMNS}) AS j"
    ))
}

/// Runs a [`summaries_query`]; the summaries come back in the query's order.
pub(crate) async fn fetch_summaries(
    mut b: QueryBuilder<'_, Sqlite>,
    pool: &sqlx::SqlitePool,
) -> MirrorResult<Vec<RequestSummary>> {
    b.push(")");
    let text: String = b.build_query_scalar().fetch_one(pool).await?;
    let rows: Vec<SummaryJson> = serde_json::from_str(&text)
        .map_err(|e| MirrorError::Corrupt(format!("request index row: {e}")))?;
    rows.into_iter().map(SummaryJson::into_summary).collect()
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
        let mut b = summaries_query();
        push_page_rest(&mut b, q, limit);
        let mut items = fetch_summaries(b, &self.pool).await?;
        // The aggregate keeps the subquery's order; sorting again costs little and makes it
        // certain.
        match q.sort {
            Sort::Newest => items.sort_by_key(|a| std::cmp::Reverse(a.seq)),
            Sort::Oldest => items.sort_by_key(|a| a.seq),
        }
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
    fn inlined_sql_quotes_text_values() {
        let q = SearchQuery {
            text: "o'brien".into(),
            requester: Some("agent:x'; DROP TABLE requests; --".into()),
            limit: Some(10),
            ..SearchQuery::default()
        };
        let sql = search_sql(&q);
        assert!(sql.contains("MATCH '\"o''brien\"*'"), "{sql}");
        assert!(
            sql.contains("r.requester = 'agent:x''; DROP TABLE requests; --'"),
            "{sql}"
        );
        assert!(sql.ends_with("ORDER BY f.rowid DESC LIMIT 10"), "{sql}");
    }

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
