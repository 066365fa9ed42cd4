//! The console's live connection (`countersign_approver::live`) against a real service through
//! a TCP relay the test can cut or stall: requests are announced once, never twice across
//! reconnects; what happened while offline shows after the reconnect; a stalled connection is
//! noticed by the heartbeat.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use countersign_approver::inbox::{InboxChange, RemovedBecause};
use countersign_approver::live::{self, LiveConfig, LiveEvent};
use countersign_core::{Signature, Verdict};
use harness::Harness;
use p256::ecdsa::signature::Signer as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A TCP relay to the service that can refuse, cut or stall connections.
struct Relay {
    url: String,
    up: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (u, s, l) = (up.clone(), stalled.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let mut links = l.lock().await;
                links.push(tokio::spawn(pump(cr, sw, s.clone())));
                links.push(tokio::spawn(pump(sr, cw, s.clone())));
            }
        });
        Self {
            url,
            up,
            stalled,
            links,
        }
    }

    /// Cuts every open connection and refuses new ones until `restore`.
    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        // A stalled link swallows bytes and sends nothing: a connection that is silently dead.
        if stalled.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn serve(h: &Harness) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = h.state.clone();
    tokio::spawn(async move {
        let _ = countersign_server::serve(listener, state, std::future::pending()).await;
    });
    addr
}

fn config(h: &Harness, url: &str) -> LiveConfig {
    let key = h.approvers[0].key.clone();
    let mut config = LiveConfig::new(
        url,
        h.approvers[0].public.key_id(),
        Arc::new(move |m: &[u8]| Ok(Signature::from_p256(key.sign(m)))),
    );
    config.heartbeat = Duration::from_millis(200);
    config.backoff_min = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(300);
    config
}

/// Collects events until `done` says so; fails after 10 s.
async fn until(
    events: &mut mpsc::UnboundedReceiver<LiveEvent>,
    seen: &mut Vec<LiveEvent>,
    done: impl Fn(&[LiveEvent]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(seen) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => seen.push(event),
            Ok(None) => panic!("live connection stopped; saw {seen:?}"),
            Err(_) => panic!("timed out; saw {seen:?}"),
        }
    }
}

fn added(events: &[LiveEvent]) -> Vec<Uuid> {
    events
        .iter()
        .flat_map(|e| match e {
            LiveEvent::Changes(c) => c.clone(),
            _ => Vec::new(),
        })
        .filter_map(|c| match c {
            InboxChange::Added(v) => Some(v.id),
            _ => None,
        })
        .collect()
}

fn removed(events: &[LiveEvent], id: Uuid) -> Option<RemovedBecause> {
    events.iter().rev().find_map(|e| match e {
        LiveEvent::Changes(c) => c.iter().find_map(|c| match c {
            InboxChange::Removed { id: r, reason } if *r == id => Some(*reason),
            _ => None,
        }),
        _ => None,
    })
}

fn onlines(events: &[LiveEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, LiveEvent::Online { .. }))
        .count()
}

#[tokio::test]
async fn reconnect_shows_what_happened_offline_and_announces_nothing_twice() {
    let h = Harness::new().await;
    let relay = Relay::start(serve(&h).await).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let live = live::start(config(&h, &relay.url), tx);
    let mut seen = Vec::new();
    until(&mut rx, &mut seen, |s| onlines(s) == 1).await;

    let (a, a_digest) = h.submit_pending().await;
    until(&mut rx, &mut seen, |s| added(s).contains(&a)).await;

    relay.cut().await;
    until(&mut rx, &mut seen, |s| {
        s.iter().any(|e| matches!(e, LiveEvent::Offline { .. }))
    })
    .await;
    // While the console is offline: carol denies A, and B arrives.
    let deny = h.decision(1, a, a_digest, Verdict::Deny, 1);
    let (status, body) = h.post_decision(a, &deny).await;
    assert!(status.is_success(), "{body}");
    let (b, _) = h.submit_pending().await;

    relay.restore();
    until(&mut rx, &mut seen, |s| {
        onlines(s) == 2 && added(s).contains(&b)
    })
    .await;
    assert_eq!(
        removed(&seen, a),
        Some(RemovedBecause::NoLongerPending),
        "{seen:?}"
    );
    assert_eq!(
        added(&seen),
        vec![a, b],
        "each request announced exactly once"
    );
    let inbox = live.inbox.lock().expect("inbox");
    let ids: Vec<Uuid> = inbox.pending().iter().map(|v| v.id).collect();
    assert_eq!(ids, vec![b]);
}

#[tokio::test]
async fn silent_connection_is_noticed_by_the_heartbeat_and_replaced() {
    let h = Harness::new().await;
    let relay = Relay::start(serve(&h).await).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _live = live::start(config(&h, &relay.url), tx);
    let mut seen = Vec::new();
    until(&mut rx, &mut seen, |s| onlines(s) == 1).await;

    // The link stays open but carries nothing, as when a laptop sleeps or a NAT forgets it.
    relay.stalled.store(true, Ordering::SeqCst);
    until(&mut rx, &mut seen, |s| {
        s.iter().any(|e| {
            matches!(e, LiveEvent::Offline { reason, .. } if reason.contains("no answer from the service"))
        })
    })
    .await;
    relay.restore();
    let (a, _) = h.submit_pending().await;
    until(&mut rx, &mut seen, |s| {
        onlines(s) >= 2 && added(s).contains(&a)
    })
    .await;
}

#[tokio::test]
async fn revoked_key_stops_retrying() {
    let h = Harness::new().await;
    let relay = Relay::start(serve(&h).await).await;
    countersign_server::admin::revoke_key(
        h.state.store.as_ref(),
        "root",
        &h.approvers[0].public.key_id(),
        "laptop lost",
        h.now(),
    )
    .await
    .expect("revoke");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _live = live::start(config(&h, &relay.url), tx);
    let mut seen = Vec::new();
    until(&mut rx, &mut seen, |s| {
        s.iter().any(|e| matches!(e, LiveEvent::Refused { .. }))
    })
    .await;
    assert_eq!(onlines(&seen), 0);
}
