//! Several replicas appending to one log at once: three stores (three connection pools, as
//! three replicas have) on one database, many concurrent writers each. The log stays one
//! sequence with no gap, no duplicate and no lost event, and every stored leaf hash is the hash
//! of its stored event.

use std::collections::HashSet;

use countersign_core::{Actor, EventKind, Timestamp, merkle};
use countersign_store::{AuditLog as _, NewEvent};
use countersign_store_postgres::PgStore;
use countersign_testdevices::Postgres;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appends_from_three_replicas_keep_one_gapless_log() {
    let url = Postgres::shared().fresh_database();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(PgStore::connect(&url).await.expect("connect"));
    }
    let now = Timestamp::from_millis(1_795_000_000_000).expect("time");
    let mut writers = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        for w in 0..8 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..25 {
                    // Mixed batch sizes, like a request (one event) and a decision reaching
                    // quorum (several).
                    let events = (0..1 + i % 3)
                        .map(|k| {
                            NewEvent::new(
                                Actor::Admin(format!("replica{r}")),
                                EventKind::AdminChanged {
                                    operation: "append".into(),
                                    subject: format!("r{r}w{w}i{i}k{k}"),
                                    detail: String::new(),
                                },
                            )
                        })
                        .collect();
                    store.append_events(events, now).await.expect("append");
                }
            }));
        }
    }
    for w in writers {
        w.await.expect("writer");
    }
    let expected: u64 = 3 * 8 * (0..25u64).map(|i| 1 + i % 3).sum::<u64>();
    let store = &replicas[0];
    assert_eq!(store.audit_size().await.expect("size"), expected);
    let events = store.audit_events(0, 5000).await.expect("events");
    let leaves = store.audit_leaves(0, 5000).await.expect("leaves");
    let hashes = store.leaf_hashes(0, 5000).await.expect("hashes");
    assert_eq!(events.len() as u64, expected);
    let mut subjects = HashSet::new();
    for (i, ((event, (seq, text)), hash)) in events.iter().zip(&leaves).zip(&hashes).enumerate() {
        assert_eq!(event.seq, i as u64, "no gap, in order");
        assert_eq!(*seq, i as u64);
        assert_eq!(merkle::leaf_hash(text.as_bytes()), *hash);
        let EventKind::AdminChanged { subject, .. } = &event.event else {
            panic!("unexpected event {event:?}");
        };
        assert!(subjects.insert(subject.clone()), "{subject} appended twice");
    }
    assert_eq!(subjects.len() as u64, expected, "nothing lost");
}
