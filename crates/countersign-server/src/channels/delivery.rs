//! Filling the outbox from the log and sending what is due.

use std::time::Duration;

use countersign_store::{NewOutboxItem, OutboxItem, OutboxSettlement, StoreError};
use tokio::sync::watch;

use super::{ChannelConfig, ChannelKind, ChannelsConfig, Notice, notice, slack, teams, webhook};
use crate::state::AppState;

/// Events read from the log per outbox step.
const BATCH: u32 = 256;
/// Notices claimed per sending round; they are sent concurrently.
const SENDS: u32 = 16;
/// How often idle loops look again (they are also woken by new events).
const TICK: Duration = Duration::from_millis(250);
/// How often the sender deletes old delivered notices.
const PRUNE_EVERY_MS: i64 = 3_600_000;
/// How much of a failed response's body is kept as the error (the rest is the receiver's).
const ERROR_BODY_CHARS: usize = 200;

/// Follows the log into the outbox until `stop`. Starts, the first time ever, at the log's end:
/// channels announce what happens from then on, not the history.
pub async fn enqueue(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut events = state.events.subscribe();
    loop {
        let progressed = match enqueue_step(&state).await {
            Ok(progressed) => progressed,
            Err(e) => {
                tracing::warn!(error = %e, "filling the notice outbox failed; retrying");
                false
            }
        };
        if progressed {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = events.recv() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// One step: the next batch of events into the outbox. True when the position moved (there
/// may be more to read at once).
async fn enqueue_step(state: &AppState) -> Result<bool, StoreError> {
    let config = &state.config.channels;
    let now = state.now();
    let Some(from) = state.store.outbox_position().await? else {
        let end = state.store.audit_size().await?;
        return match state.store.enqueue_outbox(None, end, Vec::new(), now).await {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(true),
            Err(e) => Err(e),
        };
    };
    let events = state.store.audit_events(from, BATCH).await?;
    let Some(last) = events.last() else {
        return Ok(false);
    };
    let to = last.seq + 1;
    let mut items = Vec::new();
    for event in &events {
        let Some((kind, request_id, reason)) = notice::notice_kind(&event.event) else {
            continue;
        };
        // Channels an escalation step names are told whatever they otherwise take.
        let named: &[String] = match &event.event {
            countersign_core::EventKind::Escalated { notified, .. } => notified,
            _ => &[],
        };
        let channels: Vec<&ChannelConfig> = config
            .channels
            .iter()
            .filter(|c| c.wants(kind) || named.contains(&c.name))
            .collect();
        if channels.is_empty() {
            continue;
        }
        let record = match state.store.request(request_id).await {
            Ok(record) => record,
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let channels: Vec<&ChannelConfig> = channels
            .into_iter()
            .filter(|c| c.takes(&record.action))
            .collect();
        for channel in channels {
            let built = notice::build(
                kind,
                event,
                &record,
                reason,
                channel,
                config.public_url.as_deref(),
            );
            let payload = serde_json::to_string(&built)
                .map_err(|e| StoreError::Backend(format!("encoding a notice: {e}")))?;
            items.push(NewOutboxItem {
                channel: channel.name.clone(),
                message_id: format!("msg_{}_{}", event.seq, kind.name()),
                payload,
            });
        }
    }
    match state.store.enqueue_outbox(Some(from), to, items, now).await {
        // Another replica queued the same events first.
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Sends due notices until `stop`.
pub async fn send(state: AppState, mut stop: watch::Receiver<bool>) {
    let config = &state.config.channels;
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms))
        // A receiver that redirects is not followed: the notice goes where it was configured.
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "notice channels: no HTTP client; nothing is sent");
            return;
        }
    };
    let lease = i64::try_from(config.timeout_ms)
        .unwrap_or(i64::MAX / 4)
        .saturating_mul(2)
        .saturating_add(5_000);
    let mut pruned_at: Option<countersign_core::Timestamp> = None;
    loop {
        let now = state.now();
        // Delivered notices older than the keep are deleted about hourly: the outbox does not
        // grow with every notice ever sent.
        if pruned_at.is_none_or(|at| now.millis_since(at) >= PRUNE_EVERY_MS) {
            pruned_at = Some(now);
            let keep_ms = i64::from(config.keep_delivered_days) * 86_400_000;
            match state.store.prune_outbox(now.add_millis(-keep_ms)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "old delivered notices deleted"),
                Err(e) => tracing::warn!(error = %e, "deleting old delivered notices failed"),
            }
        }
        let claimed = state
            .store
            .claim_outbox(now, now.add_millis(lease), SENDS)
            .await;
        let items = match claimed {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(error = %e, "claiming notices failed; retrying");
                Vec::new()
            }
        };
        if items.is_empty() {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            continue;
        }
        let sends = items.into_iter().map(|item| {
            let state = state.clone();
            let client = client.clone();
            async move {
                let settlement = attempt(&state, &client, &item).await;
                if let Err(e) = state.store.settle_outbox(item.id, settlement).await {
                    tracing::warn!(error = %e, id = item.id, "recording a notice attempt failed");
                }
            }
        });
        futures_util::future::join_all(sends).await;
    }
}

/// One attempt at `item`, and what to record.
async fn attempt(
    state: &AppState,
    client: &reqwest::Client,
    item: &OutboxItem,
) -> OutboxSettlement {
    let config = &state.config.channels;
    let result = match config.channels.iter().find(|c| c.name == item.channel) {
        None => Err(Failure::Permanent(
            "the channel is no longer configured".into(),
        )),
        Some(channel) => match serde_json::from_str::<Notice>(&item.payload) {
            Err(e) => Err(Failure::Permanent(format!("unreadable notice: {e}"))),
            Ok(notice) => post(state, client, channel, &item.message_id, &notice).await,
        },
    };
    let now = state.now();
    let attempts = item.attempts + 1;
    match result {
        Ok(()) => {
            tracing::info!(channel = %item.channel, message = %item.message_id, attempts, "notice delivered");
            OutboxSettlement::Delivered { at: now }
        }
        Err(Failure::Permanent(error)) => {
            tracing::warn!(channel = %item.channel, message = %item.message_id, %error, "notice dead");
            OutboxSettlement::Dead { at: now, error }
        }
        Err(Failure::Transient(error)) if attempts >= config.max_attempts => {
            tracing::warn!(channel = %item.channel, message = %item.message_id, attempts, %error, "notice dead after its last attempt");
            OutboxSettlement::Dead { at: now, error }
        }
        Err(Failure::Transient(error)) => {
            let wait = backoff(config, attempts);
            tracing::info!(channel = %item.channel, message = %item.message_id, attempts, %error, retry_in_ms = wait, "notice not delivered; will retry");
            OutboxSettlement::Retry {
                next: now.add_millis(wait),
                error,
            }
        }
    }
}

enum Failure {
    /// Worth trying again (network, timeout, 5xx, 429, ...).
    Transient(String),
    /// Never going to work as it is.
    Permanent(String),
}

/// The wait after the `attempts`-th failure: the first retry after `first_retry_ms`, doubling,
/// at most `max_retry_ms`, less up to a fifth at random so replicas' retries spread out.
pub fn backoff(config: &ChannelsConfig, attempts: u32) -> i64 {
    let doubled = config
        .first_retry_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(40));
    let wait = doubled.min(config.max_retry_ms).max(1);
    let [r] = crate::secrets::random_bytes::<1>();
    let jitter = wait / 5 * u64::from(r) / 255;
    i64::try_from(wait - jitter).unwrap_or(i64::MAX)
}

async fn post(
    state: &AppState,
    client: &reqwest::Client,
    channel: &ChannelConfig,
    message_id: &str,
    notice: &Notice,
) -> Result<(), Failure> {
    let body = match channel.kind {
        ChannelKind::Webhook => webhook::payload(notice),
        ChannelKind::Slack => slack::payload(notice),
        ChannelKind::Teams => teams::payload(notice),
    };
    let body = serde_json::to_vec(&body).map_err(|e| Failure::Permanent(e.to_string()))?;
    let mut request = client
        .post(&channel.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if channel.kind == ChannelKind::Webhook {
        let secret = channel
            .secret
            .as_deref()
            .map(webhook::Secret::parse)
            .transpose()
            .map_err(|why| Failure::Permanent(why.into()))?
            .ok_or_else(|| Failure::Permanent("the webhook has no secret".into()))?;
        let timestamp = state.now().as_millis().div_euclid(1000);
        request = request
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                secret.sign(message_id, timestamp, &body),
            );
    }
    // Errors never carry the URL: Slack's and Teams' URLs are their secret.
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::Transient(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text: String = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(ERROR_BODY_CHARS)
        .collect();
    let error = match text.trim() {
        "" => format!("HTTP {}", status.as_u16()),
        said => format!("HTTP {}: {said}", status.as_u16()),
    };
    // 4xx other than timeouts and rate limits will not change by retrying... except that a
    // receiver being redeployed often answers 404 for a moment; only these are final.
    if matches!(status.as_u16(), 400 | 401 | 403 | 410 | 413 | 422) {
        Err(Failure::Permanent(error))
    } else {
        Err(Failure::Transient(error))
    }
}
