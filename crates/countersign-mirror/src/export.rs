//! What exports read: the checkpoint the mirror's data is anchored to, and stored events
//! verbatim.

use countersign_core::PublicKey;
use countersign_core::checkpoint::SignedCheckpoint;
use rusqlite::OpenFlags;
use sqlx::{QueryBuilder, Sqlite};

use crate::search::{SearchQuery, Sort, push_from_where, push_order};
use crate::{Mirror, MirrorError, MirrorResult};

/// A request row for bulk exports, borrowed from SQLite's own buffers.
#[derive(Clone, Copy, Debug)]
pub struct ExportRow<'a> {
    /// Position of its `request_created` event.
    pub seq: i64,
    /// Request id.
    pub id: &'a str,
    /// Created (ms).
    pub created_at: i64,
    /// Decided (ms).
    pub decided_at: Option<i64>,
    /// Action type.
    pub action_type: &'a str,
    /// Resource.
    pub resource: &'a str,
    /// Environment.
    pub environment: &'a str,
    /// Who asked.
    pub requester: &'a str,
    /// For whom.
    pub on_behalf_of: Option<&'a str>,
    /// Who decided, space-separated, in order.
    pub approvers: &'a str,
    /// Who approved, space-separated.
    pub approved_by: &'a str,
    /// Who denied, space-separated.
    pub denied_by: &'a str,
    /// The signing keys of the decisions (hex ids), space-separated, in order.
    pub key_ids: &'a str,
    /// Approvers' comments, one per line, in order.
    pub comments: &'a str,
    /// Why policy decided as it did.
    pub policy_reason: &'a str,
    /// Verdict.
    pub status: &'a str,
    /// Approvals.
    pub approvals: i64,
    /// Denials.
    pub denials: i64,
    /// Approvals needed.
    pub quorum: i64,
    /// Every decision signed by a hardware key.
    pub hardware_only: bool,
    /// Every decision signed by a key a trusted manufacturer's root vouched for.
    pub attested_only: bool,
    /// The roots that vouched for the deciding keys, one per line.
    pub attesting_roots: &'a str,
    /// Reported outcome.
    pub outcome: Option<&'a str>,
    /// Grant redeemed (ms).
    pub redeemed_at: Option<i64>,
    /// Tags, space-separated.
    pub tags: &'a str,
    /// Justification.
    pub justification: &'a str,
    /// How the agent authenticated (`api_token`, `workload_token:<issuer>`), when recorded.
    pub requester_auth: Option<&'a str>,
    /// The policy's outcome (`require_approval`, `break_glass`, ...).
    pub policy_outcome: &'a str,
    /// Reviews a break-glass request needs (0 for any other).
    pub review_quorum: i64,
    /// Who reviewed it (`name:concern` for a concern), space-separated.
    pub reviewed_by: &'a str,
    /// How many reviews raised a concern.
    pub review_concerns: i64,
    /// When its reviews were complete.
    pub reviewed_at: Option<i64>,
}

const EXPORT_COLUMNS: &str = "r.seq, r.id, r.created_at, r.decided_at, r.action_type, r.resource, \
    r.environment, r.requester, r.on_behalf_of, r.approvers, r.status, r.approvals, r.denials, \
    r.quorum, r.hardware_only, r.outcome, r.redeemed_at, r.tags, r.justification, r.requester_auth, \
    r.approved_by, r.denied_by, r.key_ids, r.comments, r.policy_reason, r.attested_only, \
    r.attesting_roots, r.policy_outcome, r.review_quorum, r.reviewed_by, r.review_concerns, \
    r.reviewed_at";

/// The verified checkpoint an export is anchored to.
#[derive(Clone, Debug)]
pub struct Anchor {
    /// The log's origin.
    pub origin: String,
    /// The pinned service key.
    pub server_key: PublicKey,
    /// The checkpoint, with the cosignatures it was served with.
    pub checkpoint: SignedCheckpoint,
}

/// An event as stored: its position and leaf bytes.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// Position.
    pub seq: u64,
    /// Leaf bytes (RFC 8785 JSON).
    pub body: String,
}

impl Mirror {
    /// The checkpoint everything stored is verified against.
    pub async fn anchor(&self) -> MirrorResult<Anchor> {
        let trust = self
            .trust()
            .await?
            .ok_or_else(|| MirrorError::Invalid("the mirror has not synced yet".into()))?;
        let checkpoint = trust
            .checkpoint
            .filter(|c| c.checkpoint.tree_size == trust.verified_size)
            .ok_or_else(|| {
                MirrorError::Invalid(
                    "the last sync did not finish: sync again before exporting".into(),
                )
            })?;
        Ok(Anchor {
            origin: trust.origin,
            server_key: trust.server_key,
            checkpoint,
        })
    }

    /// Every event of the requests `ids`, in log order.
    pub async fn events_of(&self, ids: &[String]) -> MirrorResult<Vec<StoredEvent>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let mut b: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT seq, body FROM events WHERE action_id IN (");
            let mut sep = b.separated(", ");
            for id in chunk {
                sep.push_bind(id.clone());
            }
            b.push(") ORDER BY seq");
            let rows: Vec<(i64, String)> = b.build_query_as().fetch_all(&self.pool).await?;
            out.extend(rows.into_iter().map(|(seq, body)| StoredEvent {
                seq: seq as u64,
                body,
            }));
        }
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    /// Every key enrolment and revocation, in log order (decisions verify against them).
    pub async fn key_events(&self) -> MirrorResult<Vec<StoredEvent>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, body FROM events WHERE kind IN ('key_enrolled', 'key_revoked') ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, body)| StoredEvent {
                seq: seq as u64,
                body,
            })
            .collect())
    }
}

impl Mirror {
    /// Calls `each` with every request matching `q`, oldest first, until it returns `false`;
    /// returns how many it saw. Reads SQLite directly through its own read-only connection: a
    /// bulk export reads a million rows, and the async driver's hand-off per row would cost
    /// more than the rows. Blocking: call it from a blocking thread.
    pub fn export_rows(
        &self,
        q: &SearchQuery,
        mut each: impl FnMut(&ExportRow<'_>) -> bool,
    ) -> MirrorResult<u64> {
        let failed = |e: rusqlite::Error| MirrorError::Database(e.to_string());
        let conn = rusqlite::Connection::open_with_flags(
            self.path(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(failed)?;
        let mut q = q.clone();
        q.sort = Sort::Oldest;
        q.after = None;
        q.offset = None;
        let mut sql = format!("SELECT {EXPORT_COLUMNS}");
        push_from_where(&mut sql, &q, false);
        push_order(&mut sql, &q);
        let mut statement = conn.prepare(&sql).map_err(failed)?;
        let mut rows = statement.query([]).map_err(failed)?;
        let mut n = 0;
        fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, rusqlite::Error> {
            Ok(row.get_ref(i)?.as_str()?)
        }
        fn optional_text<'r>(
            row: &'r rusqlite::Row<'_>,
            i: usize,
        ) -> Result<Option<&'r str>, rusqlite::Error> {
            Ok(row.get_ref(i)?.as_str_or_null()?)
        }
        while let Some(row) = rows.next().map_err(failed)? {
            let view = (|| -> Result<ExportRow<'_>, rusqlite::Error> {
                Ok(ExportRow {
                    seq: row.get(0)?,
                    id: text(row, 1)?,
                    created_at: row.get(2)?,
                    decided_at: row.get(3)?,
                    action_type: text(row, 4)?,
                    resource: text(row, 5)?,
                    environment: text(row, 6)?,
                    requester: text(row, 7)?,
                    on_behalf_of: row
                        .get_ref(8)?
                        .as_str_or_null()
                        .map_err(rusqlite::Error::from)?,
                    approvers: text(row, 9)?,
                    status: text(row, 10)?,
                    approvals: row.get(11)?,
                    denials: row.get(12)?,
                    quorum: row.get(13)?,
                    hardware_only: row.get::<_, i64>(14)? != 0,
                    outcome: row
                        .get_ref(15)?
                        .as_str_or_null()
                        .map_err(rusqlite::Error::from)?,
                    redeemed_at: row.get(16)?,
                    tags: text(row, 17)?,
                    justification: text(row, 18)?,
                    requester_auth: optional_text(row, 19)?,
                    approved_by: text(row, 20)?,
                    denied_by: text(row, 21)?,
                    key_ids: text(row, 22)?,
                    comments: text(row, 23)?,
                    policy_reason: text(row, 24)?,
                    attested_only: row.get::<_, i64>(25)? != 0,
                    attesting_roots: text(row, 26)?,
                    policy_outcome: text(row, 27)?,
                    review_quorum: row.get(28)?,
                    reviewed_by: text(row, 29)?,
                    review_concerns: row.get(30)?,
                    reviewed_at: row.get(31)?,
                })
            })()
            .map_err(|e| MirrorError::Corrupt(format!("request index row: {e}")))?;
            n += 1;
            if !each(&view) {
                break;
            }
        }
        Ok(n)
    }
}
