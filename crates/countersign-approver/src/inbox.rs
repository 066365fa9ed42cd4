//! The approver's inbox as a console shows it: the pending requests they may still decide,
//! kept current from the stream's snapshot and live messages. Pure state, no I/O, so the rules
//! (a request is announced once, never twice across reconnects; messages older than the
//! snapshot are ignored; a request leaves when it is final or I decided it) are tested alone.

use std::collections::{BTreeMap, HashMap};

use countersign_core::api::{ActionView, ServerMessage};
use countersign_core::{ActionStatus, Timestamp};
use uuid::Uuid;

/// What changed, for the view and for notifications.
#[derive(Clone, Debug, PartialEq)]
pub enum InboxChange {
    /// A request seen for the first time: announce it.
    Added(Box<ActionView>),
    /// A request already in the inbox changed (a decision counted).
    Updated(Box<ActionView>),
    /// A request left the inbox.
    Removed {
        /// Which.
        id: Uuid,
        /// Why.
        reason: RemovedBecause,
    },
}

/// Why a request left the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovedBecause {
    /// It is approved, denied, expired or cancelled.
    Final(ActionStatus),
    /// I decided it.
    DecidedByMe,
    /// A fresh snapshot no longer lists it (it ended while we were offline).
    NoLongerPending,
}

/// The inbox of one approver.
#[derive(Debug, Default)]
pub struct Inbox {
    approver_id: String,
    /// The log size the inbox is current to: a snapshot's `seq` is the log size, a live
    /// message's `seq` is its event's index, so messages below this are already included.
    seq: u64,
    requests: BTreeMap<Uuid, ActionView>,
    /// Every request ever announced, with its expiry, so a reconnect never announces it again.
    announced: HashMap<Uuid, Timestamp>,
}

impl Inbox {
    /// An empty inbox for `approver_id`.
    pub fn new(approver_id: impl Into<String>) -> Self {
        Self {
            approver_id: approver_id.into(),
            ..Self::default()
        }
    }

    /// Replaces the contents with a snapshot taken at log position `seq`.
    pub fn apply_snapshot(
        &mut self,
        seq: u64,
        requests: Vec<ActionView>,
        now: Timestamp,
    ) -> Vec<InboxChange> {
        let mut changes = Vec::new();
        let mut fresh = BTreeMap::new();
        for view in requests {
            if let Some(change) = self.admit(&view) {
                changes.push(change);
            }
            fresh.insert(view.id, view);
        }
        for id in self.requests.keys() {
            if !fresh.contains_key(id) {
                changes.push(InboxChange::Removed {
                    id: *id,
                    reason: RemovedBecause::NoLongerPending,
                });
            }
        }
        self.requests = fresh;
        self.seq = seq;
        // Forget announcements of requests that have expired and are gone: they cannot
        // come back, and the set would otherwise grow for the life of the console.
        let requests = &self.requests;
        self.announced
            .retain(|id, expires| requests.contains_key(id) || *expires > now);
        changes
    }

    /// Applies one live message; messages already covered by the snapshot are ignored.
    pub fn apply(&mut self, message: &ServerMessage) -> Vec<InboxChange> {
        let (seq, view) = match message {
            ServerMessage::Request { seq, view } | ServerMessage::Update { seq, view } => {
                (*seq, view)
            }
            _ => return Vec::new(),
        };
        if seq < self.seq {
            return Vec::new();
        }
        self.seq = seq + 1;
        if view.status.is_final() {
            return self.remove(view.id, RemovedBecause::Final(view.status));
        }
        if view.decided_by(&self.approver_id) {
            return self.remove(view.id, RemovedBecause::DecidedByMe);
        }
        let change = self.admit(view);
        self.requests.insert(view.id, view.clone());
        change.into_iter().collect()
    }

    /// Records that I decided `id` (before the service's update arrives), so it leaves now.
    pub fn decided(&mut self, id: Uuid) -> Vec<InboxChange> {
        self.remove(id, RemovedBecause::DecidedByMe)
    }

    /// The pending requests, soonest to expire first.
    pub fn pending(&self) -> Vec<&ActionView> {
        let mut views: Vec<&ActionView> = self.requests.values().collect();
        views.sort_by_key(|v| (v.action.expires_at, v.id));
        views
    }

    /// One request, if it is in the inbox.
    pub fn get(&self, id: Uuid) -> Option<&ActionView> {
        self.requests.get(&id)
    }

    /// The log size the inbox is current to.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Who the inbox belongs to.
    pub fn approver_id(&self) -> &str {
        &self.approver_id
    }

    /// Added the first time a request is seen, Updated when it changed, nothing otherwise.
    fn admit(&mut self, view: &ActionView) -> Option<InboxChange> {
        if view.status.is_final() || view.decided_by(&self.approver_id) {
            return None;
        }
        if let Some(known) = self.requests.get(&view.id) {
            return (known != view).then(|| InboxChange::Updated(Box::new(view.clone())));
        }
        if self
            .announced
            .insert(view.id, view.action.expires_at)
            .is_some()
        {
            // Announced before a disconnect and back in a snapshot: show it, don't announce.
            return Some(InboxChange::Updated(Box::new(view.clone())));
        }
        Some(InboxChange::Added(Box::new(view.clone())))
    }

    fn remove(&mut self, id: Uuid, reason: RemovedBecause) -> Vec<InboxChange> {
        match self.requests.remove(&id) {
            Some(_) => vec![InboxChange::Removed { id, reason }],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(n: u8, status: &str, decided_by: &[&str]) -> ActionView {
        let decisions: Vec<_> = decided_by
            .iter()
            .map(|who| {
                json!({"approver_id": who, "verdict": "approve", "decided_at": "2026-11-21T10:01:00.000Z",
                       "key_id": "00".repeat(32), "key_kind": "pkcs11", "comment": ""})
            })
            .collect();
        serde_json::from_value(json!({
            "id": format!("01936f4e-7c00-7000-8000-0000000000{n:02x}"),
            "status": status, "digest": "00".repeat(32), "quorum": 2, "approvals": decided_by.len(),
            "decisions": decisions,
            "action": {
                "id": format!("01936f4e-7c00-7000-8000-0000000000{n:02x}"),
                "requester": "agent:bot", "created_at": "2026-11-21T10:00:00.000Z",
                "expires_at": format!("2026-11-21T10:{:02}:00.000Z", 10 + n),
                "policy": {"outcome": {"kind": "require_approval", "quorum": 2, "groups": ["security"],
                    "ttl_seconds": 900, "require_hardware_key": false, "quick_approve": false},
                    "reason": "r", "policy_hash": "00".repeat(32)},
                "request": {"type": "db.export", "resource": "db", "environment": "prod", "justification": "j"}
            }
        }))
        .expect("view")
    }

    fn now() -> Timestamp {
        Timestamp::parse("2026-11-21T10:05:00.000Z").expect("time")
    }

    fn added(changes: &[InboxChange]) -> Vec<Uuid> {
        changes
            .iter()
            .filter_map(|c| match c {
                InboxChange::Added(v) => Some(v.id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reconnect_snapshot_never_announces_a_request_twice() {
        let mut inbox = Inbox::new("bob");
        let first = inbox.apply_snapshot(10, vec![view(1, "pending", &[])], now());
        assert_eq!(added(&first), vec![view(1, "pending", &[]).id]);
        let live = inbox.apply(&ServerMessage::Request {
            seq: 11,
            view: view(2, "pending", &[]),
        });
        assert_eq!(added(&live).len(), 1);
        // Disconnected; the service's snapshot still has both, plus one that arrived meanwhile.
        let again = inbox.apply_snapshot(
            20,
            vec![
                view(1, "pending", &[]),
                view(2, "pending", &["carol"]),
                view(3, "pending", &[]),
            ],
            now(),
        );
        assert_eq!(added(&again), vec![view(3, "pending", &[]).id]);
        assert!(again.contains(&InboxChange::Updated(Box::new(view(
            2,
            "pending",
            &["carol"]
        )))));
        assert_eq!(inbox.pending().len(), 3);
    }

    #[test]
    fn request_gone_while_offline_is_removed_and_a_returning_one_not_reannounced() {
        let mut inbox = Inbox::new("bob");
        inbox.apply_snapshot(
            5,
            vec![view(1, "pending", &[]), view(2, "pending", &[])],
            now(),
        );
        let changes = inbox.apply_snapshot(9, vec![view(2, "pending", &[])], now());
        assert_eq!(
            changes,
            vec![InboxChange::Removed {
                id: view(1, "pending", &[]).id,
                reason: RemovedBecause::NoLongerPending
            }]
        );
        // A request that left and came back (a snapshot raced an update) is shown, not announced.
        let back = inbox.apply_snapshot(
            12,
            vec![view(1, "pending", &[]), view(2, "pending", &[])],
            now(),
        );
        assert!(added(&back).is_empty(), "{back:?}");
        assert_eq!(inbox.pending().len(), 2);
    }

    #[test]
    fn messages_older_than_the_snapshot_are_ignored() {
        let mut inbox = Inbox::new("bob");
        inbox.apply_snapshot(10, vec![], now());
        let stale = inbox.apply(&ServerMessage::Request {
            seq: 9,
            view: view(1, "pending", &[]),
        });
        assert!(stale.is_empty());
        assert!(inbox.pending().is_empty());
        // The snapshot's seq is the log size: the event at that index is the first new one.
        let next = inbox.apply(&ServerMessage::Request {
            seq: 10,
            view: view(1, "pending", &[]),
        });
        assert_eq!(added(&next).len(), 1);
        assert_eq!(inbox.seq(), 11);
    }

    #[test]
    fn final_or_decided_by_me_leaves_and_others_decisions_update() {
        let mut inbox = Inbox::new("bob");
        inbox.apply_snapshot(
            1,
            vec![view(1, "pending", &[]), view(2, "pending", &[])],
            now(),
        );
        let carol = inbox.apply(&ServerMessage::Update {
            seq: 2,
            view: view(1, "pending", &["carol"]),
        });
        assert!(matches!(carol.as_slice(), [InboxChange::Updated(_)]));
        let mine = inbox.apply(&ServerMessage::Update {
            seq: 3,
            view: view(1, "pending", &["carol", "bob"]),
        });
        assert!(matches!(
            mine.as_slice(),
            [InboxChange::Removed {
                reason: RemovedBecause::DecidedByMe,
                ..
            }]
        ));
        let expired = inbox.apply(&ServerMessage::Update {
            seq: 4,
            view: view(2, "expired", &[]),
        });
        assert!(matches!(
            expired.as_slice(),
            [InboxChange::Removed {
                reason: RemovedBecause::Final(ActionStatus::Expired),
                ..
            }]
        ));
        assert!(inbox.pending().is_empty());
        // An update for a request that already left changes nothing.
        assert!(
            inbox
                .apply(&ServerMessage::Update {
                    seq: 5,
                    view: view(2, "expired", &[])
                })
                .is_empty()
        );
    }

    #[test]
    fn inbox_lists_soonest_expiry_first() {
        let mut inbox = Inbox::new("bob");
        inbox.apply_snapshot(
            1,
            vec![view(3, "pending", &[]), view(1, "pending", &[])],
            now(),
        );
        let order: Vec<Uuid> = inbox.pending().iter().map(|v| v.id).collect();
        assert_eq!(
            order,
            vec![view(1, "pending", &[]).id, view(3, "pending", &[]).id]
        );
    }
}
