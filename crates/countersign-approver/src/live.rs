//! Keeps one approver stream open for a console: connects, authenticates with the enrolled
//! key, keeps the [`Inbox`] current, notices a dead connection through its own pings, and
//! reconnects with capped exponential backoff and full jitter. Every connect starts from a
//! fresh snapshot, so nothing is shown twice or missed across reconnects.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign_core::api::ServerMessage;
use countersign_core::{KeyId, Signature, Timestamp};
use rand_core::RngCore as _;
use tokio::sync::mpsc;

use crate::inbox::{Inbox, InboxChange};
use countersign_client::stream::{ApproverStream, Incoming, StreamError};

/// Signs the stream's challenge with the enrolled key.
pub type ChallengeSigner = Arc<dyn Fn(&[u8]) -> Result<Signature, String> + Send + Sync>;

/// How to connect and how patient to be.
#[derive(Clone)]
pub struct LiveConfig {
    /// Service base URL.
    pub base: String,
    /// The enrolled key.
    pub key_id: KeyId,
    /// Signs challenges with it.
    pub sign: ChallengeSigner,
    /// How often to ping; a connection silent for two intervals is dead.
    pub heartbeat: Duration,
    /// First reconnect delay (upper bound before jitter).
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
}

impl LiveConfig {
    /// Defaults for a desktop console: 15 s heartbeat, 0.5 s to 30 s backoff.
    pub fn new(base: impl Into<String>, key_id: KeyId, sign: ChallengeSigner) -> Self {
        Self {
            base: base.into(),
            key_id,
            sign,
            heartbeat: Duration::from_secs(15),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What the console hears from the connection.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveEvent {
    /// Connected and current as of the snapshot.
    Online {
        /// Who is signed in.
        approver_id: String,
    },
    /// The inbox changed.
    Changes(Vec<InboxChange>),
    /// The connection is down; the next attempt is in `retry_in`.
    Offline {
        /// Why, for people.
        reason: String,
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// The service refused the key (revoked, unknown): retrying would not help.
    Refused {
        /// The service's code.
        code: String,
        /// Its message.
        message: String,
    },
}

/// A running connection; dropping it stops it.
pub struct Live {
    /// The inbox it keeps current.
    pub inbox: Arc<Mutex<Inbox>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts keeping `inbox` current; events go to `events` (dropped events are not retried:
/// the inbox itself is the state, events only say what changed).
pub fn start(config: LiveConfig, events: mpsc::UnboundedSender<LiveEvent>) -> Live {
    let inbox = Arc::new(Mutex::new(Inbox::default()));
    let task = tokio::spawn(run(config, inbox.clone(), events));
    Live { inbox, task }
}

async fn run(
    config: LiveConfig,
    inbox: Arc<Mutex<Inbox>>,
    events: mpsc::UnboundedSender<LiveEvent>,
) {
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        let reason = match session(&config, &inbox, &events).await {
            Ok(()) => "the service closed the stream".to_string(),
            Err(StreamError::Refused { code, message }) if refusal_is_final(&code) => {
                let _ = events.send(LiveEvent::Refused { code, message });
                return;
            }
            Err(e) => e.to_string(),
        };
        // A connection that stayed up a while resets the backoff.
        if started.elapsed() > config.backoff_max {
            attempt = 0;
        }
        let retry_in = backoff(&config, attempt);
        attempt = attempt.saturating_add(1);
        if events
            .send(LiveEvent::Offline { reason, retry_in })
            .is_err()
        {
            return;
        }
        tokio::time::sleep(retry_in).await;
    }
}

/// One connection, until it fails or closes.
async fn session(
    config: &LiveConfig,
    inbox: &Arc<Mutex<Inbox>>,
    events: &mpsc::UnboundedSender<LiveEvent>,
) -> Result<(), StreamError> {
    let sign = config.sign.clone();
    let (mut stream, snapshot) =
        ApproverStream::connect(&config.base, config.key_id, move |m| sign(m)).await?;
    let changes = {
        let mut inbox = lock(inbox);
        if inbox.approver_id() != snapshot.approver_id {
            *inbox = Inbox::new(snapshot.approver_id.clone());
        }
        inbox.apply_snapshot(snapshot.seq, snapshot.requests, now())
    };
    let _ = events.send(LiveEvent::Online {
        approver_id: snapshot.approver_id,
    });
    if !changes.is_empty() {
        let _ = events.send(LiveEvent::Changes(changes));
    }
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    heartbeat.tick().await;
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            incoming = stream.next_or_activity() => {
                last_heard = Instant::now();
                match incoming? {
                    None => return Ok(()),
                    Some(Incoming::Activity) => {}
                    Some(Incoming::Message(message)) => {
                        if let ServerMessage::Error { code, message, request_id: None } = message.as_ref() {
                            return Err(StreamError::Refused { code: code.clone(), message: message.clone() });
                        }
                        let changes = lock(inbox).apply(&message);
                        if !changes.is_empty() {
                            let _ = events.send(LiveEvent::Changes(changes));
                        }
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > config.heartbeat * 2 {
                    return Err(StreamError::Transport(format!(
                        "no answer from the service for {} s",
                        last_heard.elapsed().as_secs()
                    )));
                }
                stream.ping().await?;
            }
        }
    }
}

/// Codes after which the same key will be refused again.
fn refusal_is_final(code: &str) -> bool {
    matches!(code, "unauthorized" | "unknown_key" | "key_revoked")
}

/// Full jitter: uniform in [0, min(max, min_delay × 2^attempt)], never below 50 ms.
fn backoff(config: &LiveConfig, attempt: u32) -> Duration {
    let ceiling = config
        .backoff_min
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(config.backoff_max);
    let millis = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis((rand_core::OsRng.next_u64() % millis).max(50))
}

fn lock(inbox: &Arc<Mutex<Inbox>>) -> std::sync::MutexGuard<'_, Inbox> {
    // The inbox is plain data; a panic elsewhere cannot leave it half-updated in a way that
    // matters more than losing the console, so recover it.
    inbox
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_below_it() {
        let config = LiveConfig {
            base: String::new(),
            key_id: KeyId(countersign_core::Digest([0; 32])),
            sign: Arc::new(|_| Err("unused".into())),
            heartbeat: Duration::from_secs(1),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        };
        for attempt in [0, 1, 5, 40, u32::MAX] {
            for _ in 0..50 {
                let d = backoff(&config, attempt);
                let cap = Duration::from_millis(500)
                    .saturating_mul(2u32.saturating_pow(attempt.min(16)))
                    .min(Duration::from_secs(30));
                assert!(d <= cap.max(Duration::from_millis(50)), "{attempt}: {d:?}");
            }
        }
        // Jitter: forty draws at the cap are not all the same.
        let draws: std::collections::HashSet<_> = (0..40).map(|_| backoff(&config, 10)).collect();
        assert!(draws.len() > 1);
    }
}
