//! What exports read: the checkpoint the mirror's data is anchored to, and stored events
//! verbatim.

use countersign_core::PublicKey;
use countersign_core::checkpoint::SignedCheckpoint;
use sqlx::{QueryBuilder, Sqlite};

use crate::{Mirror, MirrorError, MirrorResult};

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
